"""SPRING momentum of ``GaussNewton`` (``momentum=μ``): the direction solves
``min_d ‖J d − g‖² + λ‖d − μ d₋‖²`` (Goldshlager, Abrahamsen & Lin 2024)."""

from __future__ import annotations

import math

import pytest
import torch
from _linear_problems import (
    N_PARAMS,
    linear_closure,
    option_after_loading_without,
    random_jacobian,
)

from newtonkit.linalg import half_inverse
from newtonkit_torch.optim import GaussNewton

DTYPES = [torch.float32, torch.float64]
ROUTES = ["svd", "kernel", "normal", "matrix-free"]
def two_steps(opt, theta, dtype, rows, rank=None):
    """Two steps on two different linear problems (a resampled batch); returns
    ``(J, g, d₋, d)`` of the second: ``g`` at the parameters before it, ``d₋`` after the first."""
    J1, t1 = random_jacobian(rows, dtype, 1, rank)
    opt.step(linear_closure(theta, J1, t1))
    d_prev = opt.state[theta]["momentum_buffer"].clone()
    J2, t2 = random_jacobian(rows, dtype, 2, rank)
    with torch.no_grad():
        g = J2 @ theta - t2
    opt.step(linear_closure(theta, J2, t2))
    return J2, g, d_prev, opt.state[theta]["momentum_buffer"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("damping", [0.0, 1e-2])
@pytest.mark.parametrize("search", [None, "backtracking"])
def test_zero_momentum_is_the_plain_step_bit_for_bit(dtype, damping, search):
    J, t = random_jacobian(12, dtype, 3)
    thetas = [torch.linspace(-1, 1, N_PARAMS, dtype=dtype).requires_grad_(True)
              for _ in range(2)]
    opts = [GaussNewton([thetas[0]], damping=damping, line_search=search),
            GaussNewton([thetas[1]], damping=damping, line_search=search, momentum=0.0)]
    for _ in range(3):
        for theta, opt in zip(thetas, opts, strict=True):
            opt.step(linear_closure(theta, J, t))
    assert torch.equal(thetas[0], thetas[1])
    assert "momentum_buffer" not in opts[1].state[thetas[1]]  # nothing stored at μ = 0
    # and the plain step itself: θ − J⁺g by newtonkit.linalg, bit for bit
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=dtype).requires_grad_(True)
    with torch.no_grad():
        g = J @ theta - t
        d, _ = half_inverse(J, g, exponent=-1.0, truncation=1e-6)
        expected = theta - d
    GaussNewton([theta], momentum=0.0).step(linear_closure(theta, J, t))
    assert torch.equal(theta, expected)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("rows", [5, 12])
def test_direction_solves_the_spring_normal_equations(dtype, route, rows):
    # (JᵀJ + λI) d = Jᵀg + λ μ d₋, the normal equations of min ‖Jd − g‖² + λ‖d − μd₋‖²
    lam, mu = 0.3, 0.8
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=dtype).requires_grad_(True)
    opt = GaussNewton([theta], damping=lam, momentum=mu, route=route)
    J, g, d_prev, d = two_steps(opt, theta, dtype, rows)
    A = J.T @ J + lam * torch.eye(N_PARAMS, dtype=dtype)
    residual = float((A @ d - (J.T @ g + lam * mu * d_prev)).norm())
    # Bound: a backward-stable solve of the system with right-hand side Jᵀ(g − μJd₋), then
    # + μd₋: ‖r‖ ≤ c(nε + rtol)(‖A‖(‖d‖ + μ‖d₋‖) + ‖J‖(‖g‖ + μ‖J‖‖d₋‖)), c = 10, n = P + N;
    # rtol = 1e-10 the CG tolerance of the matrix-free route (its stopping test is this
    # residual), 0 for the direct routes.
    eps = torch.finfo(dtype).eps
    rtol = 1e-10 if route == "matrix-free" else 0.0
    nJ = float(torch.linalg.matrix_norm(J, 2))
    scale = float(torch.linalg.matrix_norm(A, 2)) * (float(d.norm()) + mu * float(d_prev.norm())) \
        + nJ * (float(g.norm()) + mu * nJ * float(d_prev.norm()))
    assert residual <= 10 * ((N_PARAMS + rows) * eps + rtol) * scale


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("rows", [5, 12])
def test_undamped_momentum_lives_in_the_null_space(dtype, route, rows):
    # λ = 0: d = J⁺g + μ(I − J⁺J)d₋, J of rank 4 < 8 parameters (a null space in both shapes)
    mu, rank = 0.7, 4
    # the Gram routes see σ² with error ε σ_max²: the cut must lie above √ε
    truncation = 1e-2 if dtype == torch.float32 else 1e-6
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=dtype).requires_grad_(True)
    opt = GaussNewton([theta], momentum=mu, truncation=truncation, route=route)
    J, g, d_prev, d = two_steps(opt, theta, dtype, rows, rank)
    U, s, Vh = torch.linalg.svd(J.double(), full_matrices=False)
    V, U, s = Vh[:rank].T, U[:, :rank], s[:rank]
    row = V @ V.T  # J⁺J, the projector on J's row space
    pinv_g = V @ ((U.T @ g.double()) / s)
    d, d_prev = d.double(), d_prev.double()
    # Bound: the kept subspace and J⁺ perturbed by the rounding of J (or of its Gram JᵀJ on
    # the kernel/normal routes): relative error ≤ c n ε κ², κ = σ₁/σ_r, c = 100, n = P + N.
    eps = torch.finfo(dtype).eps
    tol = 100 * (N_PARAMS + rows) * eps * float(s[0] / s[-1]) ** 2 \
        * (float(pinv_g.norm()) + mu * float(d_prev.norm()))
    assert float((row @ d - pinv_g).norm()) <= tol
    assert float((d - row @ d - mu * (d_prev - row @ d_prev)).norm()) <= tol
    assert float((d_prev - row @ d_prev).norm()) > 2 * tol  # the null-space part is there


@pytest.mark.parametrize("dtype", DTYPES)
def test_state_dict_round_trip(dtype):
    J1, t1 = random_jacobian(12, dtype, 1)
    J2, t2 = random_jacobian(12, dtype, 2)
    thetas = [torch.linspace(-1, 1, N_PARAMS, dtype=dtype).requires_grad_(True)
              for _ in range(2)]
    a = GaussNewton([thetas[0]], damping=0.1, momentum=0.9)
    a.step(linear_closure(thetas[0], J1, t1))
    b = GaussNewton([thetas[1]], damping=0.1)  # momentum comes from the state_dict
    with torch.no_grad():
        thetas[1].copy_(thetas[0])
    b.load_state_dict(a.state_dict())
    assert b.param_groups[0]["momentum"] == 0.9
    assert torch.equal(b.state[thetas[1]]["momentum_buffer"],
                       a.state[thetas[0]]["momentum_buffer"])
    for theta, opt in zip(thetas, (a, b), strict=True):
        opt.step(linear_closure(theta, J2, t2))
    assert torch.equal(thetas[0], thetas[1])
    # a state_dict saved before momentum existed loads with none
    assert option_after_loading_without(a, [thetas[1]], "momentum") == 0.0


def test_rejected_line_search_step_restarts_the_momentum():
    # at the minimiser of a consistent problem no step lowers the loss: nothing moves and
    # the buffer is cleared, so the next step is the plain Gauss-Newton one
    J, _ = random_jacobian(12, torch.float64, 1)
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=torch.float64).requires_grad_(True)
    with torch.no_grad():
        t = J @ theta
    opt = GaussNewton([theta], momentum=0.9, line_search="backtracking")
    opt.state[theta]["momentum_buffer"] = torch.ones(N_PARAMS, dtype=torch.float64)
    before = theta.detach().clone()
    opt.step(linear_closure(theta, J, t))
    assert opt.last_info["line_search"]["step_size"] == 0.0
    assert torch.equal(theta, before)
    assert opt.state[theta]["momentum_buffer"] is None


def test_grouped_solves_and_bounds():
    # two groups with different momenta are solved apart, each with its own buffer; the
    # buffer is the unconstrained direction even where the bound clamps the parameter
    J, t = random_jacobian(12, torch.float64, 1)
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=torch.float64)
    a, b = theta[:3].clone().requires_grad_(True), theta[3:].clone().requires_grad_(True)
    opt = GaussNewton([{"params": [a], "momentum": 0.5, "bounds": (-0.9, 0.9)},
                       {"params": [b]}], damping=0.1)
    full = torch.cat([a, b])

    def closure():
        y = (J @ torch.cat([a, b]) - t).detach().requires_grad_(True)
        return y, 0.5 * (y * y).sum(), J
    opt.step(closure)
    assert len(opt.last_info["solves"]) == 2
    d = opt.state[a]["momentum_buffer"]
    assert "momentum_buffer" not in opt.state[b]
    assert torch.equal(a.detach(), (full[:3] - d).clamp(-0.9, 0.9).detach())


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, math.nan, math.inf])
def test_bad_momentum_is_a_value_error(bad):
    theta = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="momentum"):
        GaussNewton([theta], momentum=bad)
    with pytest.raises(ValueError, match="momentum"):
        GaussNewton([{"params": [theta], "momentum": bad}])
    with pytest.raises(ValueError, match="momentum"):
        GaussNewton([theta], momentum=0.5, adaptive=True)


def test_a_refused_group_is_not_added_and_the_dict_is_not_modified():
    opt = GaussNewton([torch.zeros(3, requires_grad=True)], momentum=0.5)
    group = {"params": [torch.zeros(2, requires_grad=True)], "momentum": 1.5}
    with pytest.raises(ValueError, match="momentum"):
        opt.add_param_group(group)
    group2 = {"params": [torch.zeros(2, requires_grad=True)], "adaptive": True}
    with pytest.raises(ValueError, match="momentum"):  # inherits momentum 0.5 from defaults
        opt.add_param_group(group2)
    assert len(opt.param_groups) == 1
    assert group["momentum"] == 1.5 and set(group2) == {"params", "adaptive"}
