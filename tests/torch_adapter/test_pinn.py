"""The Poisson PINN of ``examples/poisson_pinn.py``: its Laplacian, its residual Jacobian, and
a few Gauss-Newton steps with the grid line search."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.func import functional_call, hessian, vmap

from newtonkit.testing import check_derivatives
from newtonkit_torch.jacobians import flat_parameters
from newtonkit_torch.optim import GaussNewton

_spec = importlib.util.spec_from_file_location(
    "poisson_pinn", Path(__file__).resolve().parents[2] / "examples" / "poisson_pinn.py")
pp = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(pp)

EPS = torch.finfo(torch.float64).eps


def tiny(d, width=3, seed=0):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(d, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                        nn.Linear(width, 1)).to(torch.float64)
    return net, pp.PoissonPINN(net, d, n_interior=5, n_boundary=4, seed=seed)


def flat_fun(pinn):
    """θ (flat) ↦ y(θ), and θ ↦ J(θ) from the example's vmap(jacrev)."""
    names = [(k, v.shape, v.numel()) for k, v in pinn.net.named_parameters()]

    def unflat(t):
        out, i = {}, 0
        for k, shape, n in names:
            out[k] = t[i:i + n].reshape(shape)
            i += n
        return out

    def fun(t):
        return pinn.residuals(unflat(t))

    def jac(t):
        with torch.no_grad():
            for p, v in zip(pinn.net.parameters(), unflat(t).values(), strict=True):
                p.copy_(v)
        return pinn.residuals_and_jacobian()[1]

    return fun, jac


@pytest.mark.parametrize("d", [2, 5])
def test_forward_laplacian_is_the_trace_of_the_input_hessian(d):
    net, pinn = tiny(d)
    p = {k: v.detach() for k, v in net.named_parameters()}
    u, lap = pp.forward_laplacian(net, p, pinn.X_int)
    one = lambda x: functional_call(net, p, (x[None],))[0, 0]  # noqa: E731
    ref = vmap(lambda x: torch.diagonal(hessian(one)(x)).sum())(pinn.X_int)
    assert torch.allclose(u, net(pinn.X_int)[:, 0], rtol=0, atol=50 * EPS)
    # two roundings of sums of d·width·width products of O(1) terms: 50·ε·(scale of the terms)
    scale = float(ref.abs().max()) + 1.0
    assert float((lap - ref).abs().max()) <= 50 * EPS * scale


@pytest.mark.parametrize("d", [2, 5])
def test_residual_jacobian_passes_check_derivatives(d):
    net, pinn = tiny(d)
    fun, jac = flat_fun(pinn)
    x = flat_parameters(net.parameters()).clone()
    report = check_derivatives(fun, x, jac=jac)
    assert report.ok
    # the check bites: a Jacobian off by 1e-3 in one column fails its Taylor test
    def wrong(t):
        J = jac(t).clone()
        J[:, 0] *= 1 + 1e-3
        return J
    assert not check_derivatives(fun, x, jac=wrong, raise_error=False).ok


def test_exact_solutions_solve_the_problem():
    gen = torch.Generator().manual_seed(0)
    for d in (2, 5):
        X = pp.interior_points(20, d, gen).requires_grad_(True)
        u, f = pp.exact(X)
        (g,) = torch.autograd.grad(u.sum(), X, create_graph=True)
        lap = sum(torch.autograd.grad(g[:, i].sum(), X, retain_graph=True)[0][:, i]
                  for i in range(d))
        assert torch.allclose(-lap, f, rtol=0, atol=100 * EPS * d * math.pi ** 2)
    Xb = pp.boundary_points(50, 2, gen)
    on_face = ((Xb == 0) | (Xb == 1)).any(dim=1)
    assert bool(on_face.all())
    assert float(pp.exact(Xb)[0].abs().max()) <= 10 * EPS  # u* = 0 on ∂Ω for d = 2


def test_gauss_newton_with_grid_line_search_lowers_the_loss_every_step():
    net, pinn = tiny(2, width=4)
    opt = GaussNewton(net.parameters(), truncation=1e-8, line_search="grid")

    def closure():
        y, J = pinn.residuals_and_jacobian()
        y.requires_grad_(True)
        return y, 0.5 * (y * y).sum(), J

    with torch.no_grad():
        losses = [float(pinn.loss())]
    for _ in range(8):
        opt.step(closure, pinn.loss)
        with torch.no_grad():
            losses.append(float(pinn.loss()))
    assert all(b <= a for a, b in zip(losses, losses[1:], strict=False))
    assert losses[-1] < 0.5 * losses[0]


def test_averaged_gramian_on_points_drawn_anew_every_step():
    # the 5-D setting: new points before every step; each step lowers the loss on its points
    net, pinn = tiny(5, width=4)
    opt = GaussNewton(net.parameters(), damping=1e-11, gram_ema=0.6, line_search="backtracking")

    def closure():
        y, J = pinn.residuals_and_jacobian()
        y.requires_grad_(True)
        return y, 0.5 * (y * y).sum(), J

    for _ in range(6):
        pinn.resample()
        with torch.no_grad():
            before = float(pinn.loss())
        opt.step(closure, pinn.loss)
        with torch.no_grad():
            assert float(pinn.loss()) <= before
    state = opt.state[next(net.parameters())]
    assert state["gram_steps"] == 6 and state["route"] == "gram-ema"
