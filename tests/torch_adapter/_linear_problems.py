"""Linear least-squares problems ``y = J θ − t`` for the optimizer tests (momentum, averaged
Gramian): their closures and random Jacobians; and a state_dict saved before an option existed."""

from __future__ import annotations

import torch

from newtonkit_torch.optim import GaussNewton

N_PARAMS = 8


def linear_closure(theta, J, t):
    """``y = J θ − t``, ``L = ½‖y‖²``: ``g = y`` and the Jacobian ``J`` exactly."""
    def closure():
        y = (J @ theta - t).detach().requires_grad_(True)
        return y, 0.5 * (y * y).sum(), J
    closure.loss = lambda: 0.5 * ((J @ theta - t) ** 2).sum()
    return closure


def random_jacobian(rows, dtype, seed, rank=None):
    """``(J, t)``: a standard normal ``J`` (rows × N_PARAMS), of exactly the given ``rank`` if
    one is given, and a standard normal ``t``."""
    gen = torch.Generator().manual_seed(seed)
    if rank is None:
        J = torch.randn(rows, N_PARAMS, generator=gen, dtype=torch.float64)
    else:  # exactly rank-deficient: a null space of dimension N_PARAMS - rank
        J = torch.randn(rows, rank, generator=gen, dtype=torch.float64) @ \
            torch.randn(rank, N_PARAMS, generator=gen, dtype=torch.float64)
    return J.to(dtype), torch.randn(rows, generator=gen, dtype=torch.float64).to(dtype)


def option_after_loading_without(opt, params, name):
    """The option ``name`` of a new ``GaussNewton(params)`` that loads ``opt``'s state_dict
    with ``name`` deleted from every group (as saved before the option existed)."""
    old = opt.state_dict()
    for grp in old["param_groups"]:
        del grp[name]
    new = GaussNewton(params)
    new.load_state_dict(old)
    return new.param_groups[0][name]
