"""Half-inverse gradients: the update rule, convergence on linear and nonlinear models."""

import numpy as np
import pytest
import scipy.optimize as so
from hypothesis import given
from hypothesis import strategies as st

import newtonkit as nk


def _matrix(rng, m, n, svals):
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    k = min(m, n)
    return U[:, :k] @ np.diag(svals[:k]) @ V[:, :k].T


@given(st.integers(2, 6), st.integers(2, 6), st.integers(0, 2 ** 31 - 1))
def test_first_step_is_the_half_inverse_update(m, n, seed):
    """x₁ = x₀ − η V Σ^{-1/2} Uᵀ r(x₀), singular values ≤ truncation·σ_max dropped."""
    rng = np.random.default_rng(seed)
    s = np.sort(rng.uniform(0.2, 3.0, min(m, n)))[::-1]
    s[-1] = 1e-9 * s[0]  # below the truncation: must be discarded, not clamped
    A = _matrix(rng, m, n, s)
    b = rng.standard_normal(m)
    x0 = rng.standard_normal(n)
    it = []
    nk.minimize(lambda x: A @ x - b, x0, method="hig", jac=A,
                callback=lambda intermediate_result: it.append(intermediate_result),
                options={"step": 0.7, "truncation": 1e-6, "maxiter": 1})
    U, S, Vt = np.linalg.svd(A, full_matrices=False)
    keep = S > 1e-6 * S[0]
    d = Vt[keep].T @ ((U[:, keep].T @ (A @ x0 - b)) / np.sqrt(S[keep]))
    np.testing.assert_allclose(it[0].x, x0 - 0.7 * d, rtol=1e-8, atol=1e-10)
    assert it[0].rank == int(keep.sum())


def test_linear_model_converges():
    rng = np.random.default_rng(0)
    A = _matrix(rng, 20, 5, np.array([1.5, 1.2, 1.0, 0.7, 0.5]))
    b = rng.standard_normal(20)
    res = nk.minimize(lambda x: A @ x - b, np.zeros(5), method="hig", jac=A)
    assert res.success, res.message
    np.testing.assert_allclose(res.x, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-6)
    assert res.ranks == [5] * res.nit and len(res.singular_values) == res.nit
    np.testing.assert_allclose(res.singular_values[0], [1.5, 1.2, 1.0, 0.7, 0.5], rtol=1e-10)


def test_exponent_minus_one_is_gauss_newton():
    t = np.linspace(0, 2, 15)
    y = 1.7 * np.exp(-0.8 * t)
    res_fun = lambda p: p[0] * np.exp(-p[1] * t) - y  # noqa: E731
    jac = lambda p: np.stack([np.exp(-p[1] * t), -p[0] * t * np.exp(-p[1] * t)], 1)  # noqa
    a = nk.minimize(res_fun, np.array([1.0, 0.5]), method="hig", jac=jac,
                    options={"exponent": -1.0, "maxiter": 3})
    b = nk.minimize(res_fun, np.array([1.0, 0.5]), method="gn", jac=jac,
                    options={"line_search": False, "maxiter": 3})
    np.testing.assert_allclose(a.x, b.x, rtol=1e-10)


def test_nonlinear_model_converges_with_line_search():
    t = np.linspace(0, 3, 40)
    y = 2.0 * np.exp(-0.7 * t) + 0.5 * np.sin(1.3 * t)

    def r(p):
        return p[0] * np.exp(-p[1] * t) + p[2] * np.sin(p[3] * t) - y

    def jac(p):
        e = np.exp(-p[1] * t)
        return np.stack([e, -p[0] * t * e, np.sin(p[3] * t), p[2] * t * np.cos(p[3] * t)], 1)

    x0 = np.array([1.5, 0.5, 0.3, 1.2])
    ref = so.least_squares(r, x0, jac=jac, method="lm")
    res = nk.minimize(r, x0, method="hig", jac=jac,
                      options={"line_search": True, "maxiter": 2000})
    assert res.success, res.message
    np.testing.assert_allclose(res.x, ref.x, rtol=1e-4)


def test_composite_uses_model_jacobian_and_loss_gradient():
    """HIG on Composite(F, L2Loss(t, w)) uses J = ∂F/∂x and ∂L/∂y = w (y − t)."""
    rng = np.random.default_rng(5)
    A = _matrix(rng, 8, 3, np.array([1.4, 1.0, 0.6]))
    t = rng.standard_normal(8)
    w = rng.uniform(0.5, 1.5, 8)

    class Linear:
        def __call__(self, x):
            return A @ x

        def jacobian(self, x):
            return A

    x0 = np.zeros(3)
    it = []
    nk.minimize(nk.Composite(Linear(), nk.L2Loss(t, w)), x0, method="hig",
                callback=lambda intermediate_result: it.append(intermediate_result.x),
                options={"maxiter": 1})
    U, S, Vt = np.linalg.svd(A, full_matrices=False)
    expected = x0 - Vt.T @ ((U.T @ (w * (A @ x0 - t))) / np.sqrt(S))
    np.testing.assert_allclose(it[0], expected, rtol=1e-10)


def test_divergent_fixed_step_is_reported_not_hidden():
    """σ = 9: the HIG fixed-point map multiplies the error by (1 − √9) = −2 each step."""
    A = np.diag([9.0, 1.0])
    res = nk.minimize(lambda x: A @ x - 1.0, np.zeros(2), method="hig", jac=A,
                      options={"maxiter": 20})
    assert not res.success and res.status == 5 and res.termination == "DIVERGED"
    np.testing.assert_array_equal(res.x, np.zeros(2))  # the best iterate: every step went up
    fixed = nk.minimize(lambda x: A @ x - 1.0, np.zeros(2), method="hig", jac=A,
                        options={"line_search": True})
    assert fixed.success
    np.testing.assert_allclose(fixed.x, [1 / 9, 1.0], rtol=1e-6)


@pytest.mark.parametrize("route", ["svd", "gram"])
def test_routes_agree(route):
    rng = np.random.default_rng(2)
    A = _matrix(rng, 30, 4, np.array([1.3, 1.0, 0.8, 0.5]))
    b = rng.standard_normal(30)
    res = nk.minimize(lambda x: A @ x - b, np.zeros(4), method="hig", jac=A,
                      options={"route": route, "truncation": 1e-3})
    assert res.success
    np.testing.assert_allclose(res.x, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-6)


# -- termination: a short HIG step is not convergence ---------------------------------------

_T8 = np.linspace(0.0, 1.0, 8)


def _scaled_exp_fit(scale):
    return lambda x: scale * (x[0] * np.exp(x[1] * _T8) - np.exp(-_T8))


@pytest.mark.parametrize("scale, step", [(1e-50, 1.0), (1e-150, 1.0), (1.0, 1e-12)])
def test_a_short_step_is_not_success(scale, step):
    """Residuals scaled by 1e-50 make the HIG step ∝ scale^{1/2} (and η = 1e-12 makes it
    short): ftol and xtol met by the step alone ended the run FTOL_XTOL at x0 after one
    iteration.  The Gauss-Newton step there is O(1) (scale-invariant), so there is no success;
    single and batched end alike."""
    x0 = np.array([2.0, 0.5])
    opts = {"maxiter": 30, "step": step}
    res = nk.minimize(_scaled_exp_fit(scale), x0, method="hig", options=opts)
    assert not res.success and res.termination == "MAXITER"
    fun = _scaled_exp_fit(scale)
    batch = nk.minimize(lambda X: np.stack([fun(x) for x in X]), x0[None], method="hig",
                        options=opts, batch=True)
    assert not batch.success[0] and batch.termination_of(0) == "MAXITER"


def test_the_gauss_newton_tests_still_end_a_converged_run():
    """On the unscaled fit (zero residual at (1, −1)) HIG still ends by xtol, at the solution:
    the guard costs no success where the iterates have converged."""
    res = nk.minimize(_scaled_exp_fit(1.0), np.array([2.0, 0.5]), method="hig")
    assert res.success and res.termination in ("XTOL", "FTOL_XTOL")
    # XTOL: the Gauss-Newton step bound ≤ xtol·(xtol + ‖x‖) at the last point, and near a
    # zero-residual solution ‖x − x*‖ ≈ ‖d_GN‖: 1e-10·(1 + √2), with room for the last step
    np.testing.assert_allclose(res.x, [1.0, -1.0], rtol=0, atol=1e-9)


@given(st.integers(0, 2 ** 31 - 1), st.sampled_from([-1.0, -0.5, 0.0, 0.5, 1.0]))
def test_gauss_newton_bounds_hold_and_are_attained(seed, kappa):
    """hig.gauss_newton_bounds ≥ the exact ‖V_kΣ_k⁻¹c‖ and ½‖c‖² (c = U_kᵀr) for any r, with
    equality when r lies along the extreme singular vector where the maximum is taken.  Both
    sides come from one float64 SVD of a well-conditioned J (σ in [0.1, 10]): the products
    and norms differ by a few ε relative, 1e-12 allows them."""
    from newtonkit.methods.hig import gauss_newton_bounds
    rng = np.random.default_rng(seed)
    m, n = rng.integers(2, 8), rng.integers(2, 8)
    s = np.sort(rng.uniform(0.1, 10.0, min(m, n)))[::-1]
    U, _, Vt = np.linalg.svd(_matrix(rng, m, n, s), full_matrices=False)

    def both(r):
        c = U.T @ r
        h = Vt.T @ (s ** kappa * c)
        step, pred = gauss_newton_bounds(np, s[-1], s[0], kappa, np.linalg.norm(h))
        return step, pred, np.linalg.norm(Vt.T @ (c / s)), 0.5 * c @ c

    step, pred, d, red = both(rng.standard_normal(m))
    assert d <= step * (1 + 1e-12) and red <= pred * (1 + 1e-12)
    # attained: ‖d‖ at σ_min for κ > −1 (σ^{−1−κ} decreasing), ½‖c‖² at σ_min for κ > 0
    step, _, d, _ = both(U[:, -1] if kappa > -1 else U[:, 0])
    assert abs(step - d) <= 1e-12 * d
    _, pred, _, red = both(U[:, -1] if kappa > 0 else U[:, 0])
    assert abs(pred - red) <= 1e-12 * red


def test_an_absolute_truncation_that_keeps_nothing_is_no_progress():
    """relative=False with a cutoff above every singular value: the step is 0, x cannot
    move; that is NO_PROGRESS at x0 (not XTOL, the test a zero step would pass)."""
    A = np.diag([3.0, 2.0])
    x0 = np.array([1.0, 1.0])
    res = nk.minimize(lambda x: A @ x, x0, method="hig", jac=A,
                      options={"truncation": 5.0, "relative": False})
    assert res.termination == "NO_PROGRESS" and not res.success and res.nit == 0
    np.testing.assert_array_equal(res.x, x0)


# NIST StRD Misra1b (https://www.itl.nist.gov/div898/strd/nls/data/misra1b.shtml):
# y = b1·(1 − (1 + b2·x/2)^(−2)), start 1 (500, 1e-4); certified residual sum of squares
# 7.5464681533e-2 at (337.99746163, 3.9039091287e-4).
_MISRA1B_X = np.array([77.6, 114.9, 141.1, 190.8, 239.9, 289.0, 332.8, 378.4, 434.8, 477.3,
                       536.8, 593.1, 689.1, 760.0])
_MISRA1B_Y = np.array([10.07, 14.73, 17.94, 23.93, 29.61, 35.18, 40.02, 44.82, 50.76, 55.05,
                       61.01, 66.40, 75.47, 81.78])
_MISRA1B_RSS = 7.5464681533e-2


def _misra1b(P):
    """Residuals (B, 14) and Jacobian (B, 14, 2) of Misra1b for parameter rows P (B, 2)."""
    b1, b2 = P[:, :1], P[:, 1:]
    u = 1.0 + b2 * _MISRA1B_X / 2
    r = b1 * (1.0 - u ** -2) - _MISRA1B_Y
    J = np.stack([1.0 - u ** -2, b1 * _MISRA1B_X * u ** -3], axis=2)
    return r, J


@pytest.mark.parametrize("how", ["dense", "operator", "batch"])
def test_a_truncated_direction_is_checked_before_success(how):
    """HIG's ftol/xtol tests read the Gauss-Newton step on the directions it keeps only.  On
    NIST's Misra1b from start 1 J's σ_min/σ_max falls to 1e-8, below the truncation 1e-6:
    HIG crawled to FTOL, success, at 9e4 times the certified residual sum of squares, where
    the residual's cosine with a column of J is 0.6.  A change-test stop is now checked on the
    Gauss-Newton step over all of J's directions (dense: SVD; operator: CGLS; batched: SVD):
    unverified there, it ends TRUNCATED.  Success would be allowed only at the minimiser:
    RSS within 1e-6 relative of the certified value (NIST certifies it to 11 digits)."""
    x0 = np.array([500.0, 1e-4])
    if how == "batch":
        res = nk.minimize(lambda P: _misra1b(P)[0], x0[None], method="hig",
                          jac=lambda P: _misra1b(P)[1], batch=True)
        ok, x, term = bool(res.success[0]), res.x[0], res.termination_of(0)
    else:
        def jac(p):
            J = _misra1b(p[None])[1][0]
            return nk.operators.aslinearoperator(J) if how == "operator" else J

        res = nk.minimize(lambda p: _misra1b(p[None])[0][0], x0, method="hig", jac=jac)
        ok, x, term = res.success, res.x, res.termination
    rss = float(np.sum(_misra1b(np.asarray(x)[None])[0] ** 2))
    assert not ok or rss <= (1 + 1e-6) * _MISRA1B_RSS, (term, rss / _MISRA1B_RSS)
    assert term == "TRUNCATED"


@pytest.mark.parametrize("how", ["dense", "operator", "bounds", "batch"])
@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_the_truncated_direction_decides(how, offset):
    """r = A x − b with A's singular values (1, 1e-3) and truncation 1e-2: HIG moves only
    along the first right singular vector v₁.  From x* + v₁ + offset·v₂ it converges along
    v₁; with offset 0 the dropped direction is already solved (Gauss-Newton's model reduction
    there is rounding, ε²-level, below ftol·f): success at x* (to 1e-6, the HIG stop's own
    accuracy).  With offset 1 it offers ½·offset²·σ₂² = 5e-7 ≫ ftol·f: TRUNCATED, where the
    old tests (on v₁ alone) said success."""
    rng = np.random.default_rng(3)
    U, _ = np.linalg.qr(rng.standard_normal((6, 2)))
    V, _ = np.linalg.qr(rng.standard_normal((2, 2)))
    A = U @ np.diag([1.0, 1e-3]) @ V.T
    xs = np.array([0.3, -0.2])
    b = A @ xs + 0.1 * np.linalg.qr(np.c_[U, rng.standard_normal(6)])[0][:, 2]  # ⟂ range(A)
    x0 = xs + V[:, 0] + offset * V[:, 1]
    opts = {"truncation": 1e-2}
    if how == "batch":
        res = nk.minimize(lambda X: X @ A.T - b, x0[None], method="hig", batch=True,
                          jac=lambda X: np.broadcast_to(A, (X.shape[0],) + A.shape),
                          options=opts)
        ok, x, term = bool(res.success[0]), res.x[0], res.termination_of(0)
    else:
        jac = (lambda x: nk.operators.aslinearoperator(A)) if how == "operator" else (
            lambda x: A)
        bounds = ([-10.0, -10.0], [10.0, 10.0]) if how == "bounds" else None
        res = nk.minimize(lambda x: A @ x - b, x0, method="hig", jac=jac, bounds=bounds,
                          options=opts)
        ok, x, term = res.success, res.x, res.termination
    if offset == 0.0:
        assert ok and np.abs(x - xs).max() <= 1e-6, (term, x - xs)
    else:
        assert not ok and term == "TRUNCATED", term


def test_an_overflowing_trial_is_a_rejected_trial_without_warnings():
    """Powell singular in x = 2⁻³⁰⁰·u: HIG's σ^(−1/2) step is not scale-invariant, so its
    trials land where ½‖r‖² (and the steps' norms) overflow.  Those are rejected trials the
    line search handles (the run ends, not a success), not NumPy warnings (errors in this
    suite): the objective and the norm take inf and its scaled form there."""
    from benchmarks import nls_problems as nls

    p, s = nls.powell_singular(), 2.0 ** -300
    res = nk.minimize(lambda x: p.residual(x / s), s * p.x0, method="hig",
                      jac=lambda x: p.jacobian(x / s) / s)
    f0 = 0.5 * np.sum(p.residual(p.x0) ** 2)
    assert not res.success and np.isfinite(res.fun) and res.fun <= f0
    rows = nk.minimize(lambda X: np.stack([p.residual(x / s) for x in X]), s * p.x0[None],
                       method="hig", batch=True,
                       jac=lambda X: np.stack([p.jacobian(x / s) / s for x in X]))
    assert not rows.success[0] and np.isfinite(rows.fun[0]) and rows.fun[0] <= f0
