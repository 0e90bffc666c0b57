"""The averaged Gramian of ``GaussNewton`` (``gram_ema=β``, ENGD): the direction
``d = (Ĝ_k + λI)⁺ J_kᵀg`` with ``Ĝ_k = G_k / (1 − β^k)``, ``G_k = β G_{k−1} + (1 − β) J_kᵀJ_k``."""

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

from newtonkit_torch.optim import AveragedGramInfo, GaussNewton

DTYPES = [torch.float32, torch.float64]
def steps(opt, theta, problems):
    """Take one step per ``(J, t)``; return ``(J, g, d)`` of each: ``g`` at the parameters
    before the step, ``d`` = θ_before − θ_after (lr = 1, no line search)."""
    out = []
    for J, t in problems:
        with torch.no_grad():
            g, before = J @ theta - t, theta.detach().clone()
        opt.step(linear_closure(theta, J, t))
        out.append((J, g, before - theta.detach()))
    return out


def residual_bound(A, d, b, eps):
    """A backward-stable solve of ``A d = b`` (n = 8): ``‖A d − b‖ ≤ c n ε (‖A‖‖d‖ + ‖b‖)``,
    c = 10; the moving average itself adds rounding ε‖A‖ per step (a few steps: in c)."""
    return 10 * N_PARAMS * eps * (float(torch.linalg.matrix_norm(A, 2)) * float(d.norm())
                                  + float(b.norm()))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [5, 12])
def test_direction_solves_the_averaged_system(dtype, rows):
    beta, lam = 0.6, 0.3
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=dtype).requires_grad_(True)
    opt = GaussNewton([theta], damping=lam, gram_ema=beta)
    taken = steps(opt, theta, [random_jacobian(rows, dtype, s) for s in (1, 2, 3)])
    eye = torch.eye(N_PARAMS, dtype=torch.float64)
    grams = [J.double().T @ J.double() for J, _, _ in taken]
    eps = torch.finfo(dtype).eps
    for k in range(1, 4):
        G = sum(beta ** (k - i) * (1 - beta) * grams[i - 1] for i in range(1, k + 1))
        A = G / (1 - beta ** k) + lam * eye
        J, g, d = taken[k - 1]
        b = J.double().T @ g.double()
        assert float((A @ d.double() - b).norm()) <= residual_bound(A, d.double(), b, eps)
    assert opt.state[theta]["gram_steps"] == 3
    assert torch.allclose(opt.state[theta]["gram"].double(), G, rtol=0,
                          atol=10 * eps * float(torch.linalg.matrix_norm(G, 2)))
    info = opt.last_info["solves"][0]
    assert isinstance(info, AveragedGramInfo) and info.steps == 3 and info.rank == N_PARAMS
    # λ_max(Ĝ₃) within the eigensolver's and the average's rounding, c n ε ‖Ĝ₃‖, c = 10
    G_hat = G / (1 - beta ** 3)
    lam_max = float(torch.linalg.eigvalsh(G_hat)[-1])
    assert abs(info.eigenvalue_max - lam_max) <= 10 * N_PARAMS * eps * lam_max
    assert opt.state[theta]["route"] == "gram-ema"


@pytest.mark.parametrize("dtype", DTYPES)
def test_first_step_is_the_damped_gauss_newton_step(dtype):
    # Ĝ₁ = J₁ᵀJ₁ (bias-corrected): the step of GaussNewton(damping=λ) on the same J
    J, t = random_jacobian(12, dtype, 4)
    thetas = [torch.linspace(-1, 1, N_PARAMS, dtype=dtype).requires_grad_(True)
              for _ in range(2)]
    GaussNewton([thetas[0]], damping=0.1, gram_ema=0.9).step(linear_closure(thetas[0], J, t))
    GaussNewton([thetas[1]], damping=0.1).step(linear_closure(thetas[1], J, t))
    # Both solve (JᵀJ + λI) d = Jᵀg backward-stably: ‖Δd‖ ≤ c n ε κ(A) ‖d‖, c = 10
    A = J.double().T @ J.double() + 0.1 * torch.eye(N_PARAMS, dtype=torch.float64)
    kappa = float(torch.linalg.cond(A))
    step = float((thetas[1].detach() - torch.linspace(-1, 1, N_PARAMS, dtype=dtype)).norm())
    tol = 10 * N_PARAMS * torch.finfo(dtype).eps * kappa * step
    assert float((thetas[0] - thetas[1]).detach().norm()) <= tol


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("damping", [0.0, 1e-30])
def test_rank_deficient_gram_is_pseudo_inverted(dtype, damping):
    # J of rank 4 < 8: without damping (truncation) or with a damping below the eigensolver's
    # rounding (the n ε λ_max cut), d = J⁺g and the rank is 4
    rank = 4
    J, t = random_jacobian(12, dtype, 5, rank)
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=dtype).requires_grad_(True)
    truncation = 1e-2 if dtype == torch.float32 else 1e-6
    opt = GaussNewton([theta], damping=damping, truncation=truncation, gram_ema=0.5)
    [(J, g, d)] = steps(opt, theta, [(J, t)])
    U, s, Vh = torch.linalg.svd(J.double(), full_matrices=False)
    pinv_g = Vh[:rank].T @ ((U[:, :rank].T @ g.double()) / s[:rank])
    # Bound: the Gram's rounding ε σ₁² perturbs J⁺ by c n ε κ², κ = σ₁/σ_r, c = 100
    tol = 100 * N_PARAMS * torch.finfo(dtype).eps * float(s[0] / s[rank - 1]) ** 2 \
        * float(pinv_g.norm())
    assert float((d.double() - pinv_g).norm()) <= tol
    assert opt.last_info["solves"][0].rank == rank


def test_state_dict_round_trip_and_older_state_dicts():
    problems = [random_jacobian(12, torch.float64, s) for s in (1, 2, 3)]
    thetas = [torch.linspace(-1, 1, N_PARAMS, dtype=torch.float64).requires_grad_(True)
              for _ in range(2)]
    a = GaussNewton([thetas[0]], damping=0.1, gram_ema=0.6)
    steps(a, thetas[0], problems[:2])
    b = GaussNewton([thetas[1]], damping=0.1)  # gram_ema comes from the state_dict
    with torch.no_grad():
        thetas[1].copy_(thetas[0])
    b.load_state_dict(a.state_dict())
    assert b.param_groups[0]["gram_ema"] == 0.6
    assert b.state[thetas[1]]["gram_steps"] == 2
    for theta, opt in zip(thetas, (a, b), strict=True):
        steps(opt, theta, problems[2:])
    assert torch.equal(thetas[0], thetas[1])
    # a state_dict saved before gram_ema existed loads with none
    assert option_after_loading_without(a, [thetas[1]], "gram_ema") == 0.0


def test_other_trainable_columns_restart_the_average():
    a = torch.ones(3, dtype=torch.float64, requires_grad=True)
    b = torch.ones(2, dtype=torch.float64, requires_grad=True)
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    opt = GaussNewton([a, b], damping=0.1, gram_ema=0.6)

    def closure():
        cols = [J[:, :3]] + ([J[:, 3:]] if b.requires_grad else [])
        y = (J @ torch.cat([a, b]) - 1).detach().requires_grad_(True)
        return y, 0.5 * (y * y).sum(), torch.cat(cols, dim=1)
    opt.step(closure)
    opt.step(closure)
    assert opt.state[a]["gram_steps"] == 2
    b.requires_grad_(False)
    opt.step(closure)
    assert opt.state[a]["gram_steps"] == 1 and opt.state[a]["gram"].shape == (3, 3)


def test_other_columns_of_the_same_number_restart_the_average():
    """[c, a, b] with a and b of one size: freezing a and training b keeps P, but the average
    of a's columns must not be applied to b's (the step is the plain damped one, restarted)."""
    gen = torch.Generator().manual_seed(0)
    c, a, b = (torch.ones(k, dtype=torch.float64, requires_grad=True) for k in (2, 3, 3))
    J = torch.randn(6, 8, generator=gen, dtype=torch.float64)
    J[:, 2:5] *= 100.0  # a's columns far larger than b's
    b.requires_grad_(False)
    opt = GaussNewton([c, a, b], damping=1e-6, gram_ema=0.9)

    def closure():
        cols = [J[:, :2]] + [J[:, 2:5]] * a.requires_grad + [J[:, 5:]] * b.requires_grad
        y = (J @ torch.cat([c, a, b]) - 1).detach().requires_grad_(True)
        return y, 0.5 * (y * y).sum(), torch.cat(cols, dim=1)
    opt.step(closure)
    opt.step(closure)
    a.requires_grad_(False)
    b.requires_grad_(True)
    before = torch.cat([c, b]).detach().clone()
    y0 = (J @ torch.cat([c, a, b]) - 1).detach()
    opt.step(closure)
    assert opt.state[c]["gram_steps"] == 1
    Jcb = torch.cat([J[:, :2], J[:, 5:]], dim=1)
    d = torch.linalg.solve(Jcb.T @ Jcb + 1e-6 * torch.eye(5, dtype=torch.float64), Jcb.T @ y0)
    # the damped step itself, by another solve (κ(JᵀJ) ≈ 1e2: agreement to 1e-10)
    torch.testing.assert_close(before - torch.cat([c, b]).detach(), d, rtol=1e-10, atol=1e-12)


def test_an_overflowing_step_leaves_parameters_and_average_unchanged():
    # J ~ 1e200: JᵀJ overflows to inf (no eigendecomposition), so the direction is not finite
    # and the average not stored (y = J(θ − θ_k) − t: the loss ½‖t‖² stays finite).  (A Jᵀg
    # that overflows with JᵀJ finite needs |y| > |J|, and then the loss overflows first.)
    J_scale, t_scale = 1e200, 1.0
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=torch.float64).requires_grad_(True)
    opt = GaussNewton([theta], damping=0.1, gram_ema=0.6)
    J, t = random_jacobian(12, torch.float64, 1)
    opt.step(linear_closure(theta, J, t))
    saved = opt.state[theta]["gram"].clone()
    before = theta.detach().clone()
    Js = J_scale * J
    with pytest.warns(RuntimeWarning, match="non-finite"):
        opt.step(linear_closure(theta, Js, t_scale * t + Js @ before))
    assert torch.equal(theta, before)
    assert torch.equal(opt.state[theta]["gram"], saved) and opt.state[theta]["gram_steps"] == 1
    # a loss that overflows is a divergence: FloatingPointError, nothing changed
    with pytest.raises(FloatingPointError, match="loss"):
        opt.step(linear_closure(theta, Js, 1e160 * t))
    assert torch.equal(theta, before) and opt.state[theta]["gram_steps"] == 1


def test_with_a_line_search_the_loss_decreases():
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=torch.float64).requires_grad_(True)
    opt = GaussNewton([theta], damping=1e-8, gram_ema=0.6, line_search="backtracking")
    for seed in range(4):
        J, t = random_jacobian(12, torch.float64, seed)
        closure = linear_closure(theta, J, t)
        before = float(closure.loss().detach())
        opt.step(closure)
        assert opt.last_info["line_search"]["loss"] <= before


def test_a_memory_budget_below_the_average_is_a_value_error():
    # 3 P² float64 entries (the average, JᵀJ, the eigenvectors): 1,536 bytes for P = 8
    theta = torch.linspace(-1, 1, N_PARAMS, dtype=torch.float64).requires_grad_(True)
    J, t = random_jacobian(12, torch.float64, 1)
    before = theta.detach().clone()
    opt = GaussNewton([theta], damping=0.1, gram_ema=0.6, memory_budget=1535)
    with pytest.raises(ValueError, match="1,536 bytes"):
        opt.step(linear_closure(theta, J, t))
    assert torch.equal(theta, before) and "gram" not in opt.state[theta]
    GaussNewton([theta], damping=0.1, gram_ema=0.6, memory_budget=1536).step(
        linear_closure(theta, J, t))
    assert not torch.equal(theta, before)


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, math.nan, math.inf])
def test_bad_gram_ema_is_a_value_error(bad):
    theta = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="gram_ema"):
        GaussNewton([theta], gram_ema=bad)
    with pytest.raises(ValueError, match="gram_ema"):
        GaussNewton([{"params": [theta], "gram_ema": bad}])


@pytest.mark.parametrize("kw", [dict(momentum=0.5), dict(adaptive=True), dict(route="kernel"),
                                dict(route="svd"), dict(route="matrix-free")])
def test_gram_ema_refuses_what_it_does_not_combine_with(kw):
    theta = torch.zeros(3, requires_grad=True)
    with pytest.raises(ValueError, match="gram_ema"):
        GaussNewton([theta], gram_ema=0.5, **kw)
    group = {"params": [torch.zeros(2, requires_grad=True)], "gram_ema": 0.5, **kw}
    opt = GaussNewton([theta])
    with pytest.raises(ValueError, match="gram_ema"):
        opt.add_param_group(group)
    assert len(opt.param_groups) == 1
