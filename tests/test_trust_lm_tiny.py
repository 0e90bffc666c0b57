"""LM with residuals near the bottom of the floating-point range (1e-158 to 1e-161 in float64,
1e-21 in float32): the λ iteration once divided by φ'(0), whose square-of-the-residual scale
underflowed to 0 (ZeroDivisionError in ``_trust.lambda_iteration``), and with f = ½‖r‖²
subnormal the runs ended FTOL, a success, up to 4 % from the minimiser.  Now f below the
normal range ends UNDERFLOW at the linearization (``LeastSquaresMethod.gradient_status``)."""

from __future__ import annotations

import numpy as np
import pytest

import newtonkit as nk
from newtonkit.methods import _trust
from newtonkit.methods._lmpar import TrustRegionSubproblem

EPS, TINY = float(np.finfo(np.float64).eps), float(np.finfo(np.float64).smallest_normal)
_T = np.linspace(0.0, 4.0, 30)


def _small(c, dtype):
    """r = c·(x₀ − 1, x₁² − 2, x₀x₁), a nonzero residual at the minimiser."""
    def fun(x):
        return (c * np.array([x[0] - 1, x[1] ** 2 - 2, x[0] * x[1]])).astype(dtype)

    def jac(x):
        return (c * np.array([[1, 0], [0, 2 * x[1]], [x[1], x[0]]])).astype(dtype)

    return fun, jac, np.array([1.0, 1.0], dtype=dtype)


def _exp_fit(c, amp, dtype):
    """r = c·(x₀ exp(x₁t) − y), y = 3 exp(t/2) + amp·sin(7t) on 30 points of [0, 4]."""
    y = 3.0 * np.exp(0.5 * _T) + amp * np.sin(7.0 * _T)

    def fun(x):
        return c * (x[0] * np.exp(x[1] * _T) - y)

    def jac(x):
        e = np.exp(x[1] * _T)
        return c * np.stack([e, x[0] * _T * e], axis=1)

    return fun, jac, np.array([1.0, 0.3], dtype=dtype)


# Each of these raised ZeroDivisionError before the fix.
@pytest.mark.parametrize("case", [
    lambda: _small(10.0 ** -159.25, np.float64),
    lambda: _exp_fit(1e-159, 0.05, np.float64),
    lambda: _exp_fit(10.0 ** -159.75, 0.5, np.float64),
    lambda: _small(np.float32(1e-21), np.float32),
    lambda: _small(np.float32(1e-22), np.float32),
])
def test_tiny_residuals_end_without_success(case):
    """The run ends, on a status that promises nothing: f(x0) is subnormal (the premise), so
    every test LM could stop on reads f's rounding; the result is no worse than x0."""
    fun, jac, x0 = case()

    def f(x):  # ½‖r‖² of the dtype's residuals, summed in float64 (the same way at both)
        return 0.5 * float(np.sum(fun(x).astype(np.float64) ** 2))

    tiny = float(np.finfo(x0.dtype).smallest_normal)
    assert 0.0 < f(x0) < tiny
    res = nk.minimize(fun, x0, method="lm", jac=jac)
    assert not res.success and res.termination == "UNDERFLOW"
    assert f(res.x) <= f(x0)


def test_a_success_judged_at_a_normal_f_stands():
    """UNDERFLOW is decided at a linearization, so a run whose tests were read at a normal f
    keeps its success: r = c·(x₀² − 2, x₁ − x₀/2) with c = 1e-141 converges to (√2, √2/2),
    where r is c times rounding, and its last step, judged from a normal f, lands on a
    subnormal one (the premise): XTOL, as before."""
    c = 1e-141

    def fun(x):
        return c * np.array([x[0] ** 2 - 2, x[1] - 0.5 * x[0]])

    res = nk.minimize(fun, np.array([1.0, 1.0]), method="lm",
                      jac=lambda x: c * np.array([[2 * x[0], 0.0], [-0.5, 1.0]]))
    assert 0.0 < res.fun < TINY
    assert res.success and res.termination == "XTOL"
    # first order: ‖x − x*‖ ≤ ‖r/c‖/σ_min(J*/c), plus the rounding of x* itself
    root = np.array([np.sqrt(2.0), np.sqrt(0.5)])
    smin = np.linalg.svd([[2 * root[0], 0.0], [-0.5, 1.0]], compute_uv=False)[-1]
    bound = np.sqrt(2 * res.fun) / c / smin + EPS * np.linalg.norm(root)
    assert np.linalg.norm(res.x - root) <= bound


def _subproblem_case(m, n, seed):
    """A (m × n) with singular values in [1, 10] (κ(AᵀA) ≤ 100) and a residual r."""
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((m, n)))[0]
    V = np.linalg.qr(rng.standard_normal((n, n)))[0]
    return (U * np.geomspace(10.0, 1.0, n)) @ V.T, rng.standard_normal(m)


# Bound for the λ of two computations whose inputs differ by a few ulps (the norms, and the
# normalisation p̂/‖p̂‖, rounded differently): ≤ 10 safeguarded Newton steps, each of relative
# condition ≲ κ(AᵀA + λI) ≤ 100 here, on inputs 4ε apart: 10·100·4ε ≈ 9e-13.
SAME_LAMBDA = 1e-12


@pytest.mark.parametrize("m, n", [(5, 3), (24, 20)])  # SVD route; QR + Cholesky per λ
def test_lambda_iteration_is_free_of_the_scale_of_r(m, n):
    """Scaling r and Δ by c = 2⁻⁵⁴⁰ scales p̂(λ) by c and leaves λ as it is; c·r stays normal
    (exact), but ‖p̂‖² and φ'(0) = −‖A⁻ᵀp̂(0)‖²/‖p̂(0)‖ fall below the smallest subnormal:
    φ'(0) was 0 and the λ iteration divided by it."""
    A, r = _subproblem_case(m, n, seed=n)
    c = 2.0 ** -540
    gn = np.linalg.norm(np.linalg.lstsq(A, r, rcond=None)[0])  # ‖p̂(0)‖ at scale 1
    assert (c * gn) ** 2 == 0.0  # the premise: ‖p̂(0)‖² underflows
    out = []
    for scale in (1.0, c):
        sub = TrustRegionSubproblem(np, A, scale * r, EPS, TINY)
        n0 = scale * gn
        _, lam, pnorm, _ = sub.solve(0.3 * n0, 0.0)
        assert sub.use_chol == (n > 16)  # the route taken throughout
        assert lam > 0.0 and abs(pnorm - 0.3 * n0) <= 0.1 * 0.3 * n0
        out.append((lam, pnorm / scale))
    (lam1, p1), (lam_c, p_c) = out
    assert abs(lam_c - lam1) <= SAME_LAMBDA * lam1
    assert abs(p_c - p1) <= SAME_LAMBDA * p1


@pytest.mark.parametrize("a, b", [(1.0, 1.0), (2.0 ** 35, 2.0 ** -470)])
def test_scalar_and_array_lambda_iterations_agree(a, b):
    """The single path (``TrustRegionSubproblem``, Python floats) and the batched one
    (``_trust.lm_subproblem`` on arrays) run the same λ iteration: on (a·A, b·r) with Δ =
    0.3‖p̂(0)‖ they give the same λ, a²·λ of (A, r).  At a = 2³⁵, b = 2⁻⁴⁷⁰ every term is
    normal but φ'(0) ∝ ‖p̂(0)‖²/s² underflowed: the scalar path raised ZeroDivisionError, the
    array path returned an infinite λ.  Bound: the two factor A differently (SVD against the
    eigendecomposition of AᵀA), which moves each term by ≤ 16·ε·κ(AᵀA) ≤ 3.6e-13 relative
    (``_lmpar``'s module docstring), passed on by ≤ 10 Newton steps of relative condition
    ≤ κ(AᵀA + λI) ≤ 100: 3.6e-10."""
    A, r = _subproblem_case(6, 3, seed=3)
    lams = []
    for sa, sb in ((1.0, 1.0), (a, b)):
        As, rs = sa * A, sb * r
        n0 = np.linalg.norm(np.linalg.lstsq(As, rs, rcond=None)[0])  # (normal: b/a = 2⁻⁵⁰⁵)
        delta = 0.3 * n0
        _, lam, pnorm, _ = TrustRegionSubproblem(np, As, rs, EPS, TINY).solve(delta, 0.0)
        [(_, terms)] = _trust.lm_terms(np, As[None], rs[None], EPS, np.ones(1, bool))
        s2, sq, c0, _, full = terms
        _, lam_b, pnorm_b, _ = _trust.lm_subproblem(np, s2, sq, c0, full, np.array([delta]),
                                                    np.zeros(1), TINY)
        assert abs(lam_b[0] - lam) <= 3.6e-10 * lam
        assert abs(pnorm_b[0] - pnorm) <= 3.6e-10 * pnorm
        lams.append(lam / (sa * sa))
    assert abs(lams[1] - lams[0]) <= 3.6e-10 * lams[0]
