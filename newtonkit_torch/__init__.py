"""PyTorch adapters for newtonkit (DESIGN §5).

Importing this package registers the torch derivative provider
(:func:`newtonkit_torch.autograd.torch_autodiff`) with :mod:`newtonkit.problems`, so that
``newtonkit.minimize(f, torch_x0, method=...)`` needs no derivatives from the user.

Submodules
----------
autograd
    The derivative provider: values, gradients, HVPs, JVPs/VJPs, chunked dense Jacobians and
    Hessians.
jacobians
    Per-sample Jacobians of an ``nn.Module`` composed with a physics function.
optim
    ``torch.optim`` optimizers: :class:`~newtonkit_torch.optim.HIG` and
    :class:`~newtonkit_torch.optim.GaussNewton`.
distributed
    Problems sharded over the ranks of a ``torch.distributed`` group (imported on demand).
deepwave
    The deepwave forward model (imported on demand only; deepwave is optional).
"""

from __future__ import annotations

from .autograd import TorchAutodiff, torch_autodiff
from .jacobians import flat_parameters, per_sample_jacobian, per_sample_jacobian_operator

__all__ = [
    "TorchAutodiff", "torch_autodiff", "per_sample_jacobian", "per_sample_jacobian_operator",
    "flat_parameters",
]


def _register() -> None:
    from newtonkit.problems import register_autodiff

    register_autodiff("torch", torch_autodiff)


_register()
