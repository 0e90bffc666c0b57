"""Batched solves: ``minimize(..., batch=True)`` and ``multistart``.

A batch of B problems must give each problem the result of its own run (the same iterates:
the batched code runs the single-problem rules row by row), isolate faults per problem, stop
evaluating finished problems, and refuse malformed input with errors that name the shapes.
"""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import strategies as S
from hypothesis import given
from hypothesis import strategies as st
from scipy.optimize import OptimizeWarning

import newtonkit as nk
from benchmarks import nls_problems as nls
from newtonkit import _backend as B

T = np.linspace(0.0, 4.0, 30)
EPS64 = float(np.finfo(np.float64).eps)


def _data(B_, seed):
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(1.0, 3.0, B_), rng.uniform(0.1, 0.6, B_)
    return a[:, None] * np.exp(b[:, None] * T) + 0.05 * rng.standard_normal((B_, T.size))


def _model(xp, backend, dtype):
    t = S.to_backend(T, backend, dtype)

    def fun(X, Y):
        return X[:, :1] * xp.exp(X[:, 1:] * t) - Y

    def jac(X, Y):
        e = xp.exp(X[:, 1:] * t)
        return xp.stack([e, X[:, :1] * t * e], axis=2)

    return fun, jac


def _one(fun, jac, Y):
    """The one-problem functions of row ``Y`` (shape (1, m)) of the batched ones."""
    return (lambda x: fun(x[None], Y)[0]), (lambda x: jac(x[None], Y)[0])


# -- batched = per problem -----------------------------------------------------------------------


def _distance_bound(x, Y):
    """A bound on ‖x − x*‖ at a point x near the minimiser x* of ½‖r‖² for the exponential fit:
    ‖∇f‖/μ with μ the smallest eigenvalue of ∇²f = JᵀJ + Σ rᵢ∇²rᵢ there (to first order)."""
    fun, jac = _model(np, "numpy", "float64")
    r, J = fun(x[None], Y[None])[0], jac(x[None], Y[None])[0]
    te = T * np.exp(x[1] * T)
    H = J.T @ J + np.array([[0.0, r @ te], [r @ te, x[0] * (r @ (T * te))]])
    mu = np.linalg.eigvalsh(H)[0]
    assert mu > 0
    return np.linalg.norm(J.T @ r) / mu


@given(B_=st.integers(1, 6), seed=st.integers(0, 2**16), backend=st.sampled_from(S.BACKENDS),
       method=st.sampled_from(["lm", "gn", "hig", "newton"]))
def test_each_problem_of_a_batch_runs_as_alone(B_, seed, backend, method):
    """A batch of B gives every problem exactly the run it gets in a batch of one: the same
    iterates bit for bit (rows never interact), status and counts."""
    xp = S.namespace(backend)
    fun, jac = _model(xp, backend, "float64")
    hess = None
    if method == "newton":
        res_fn = fun

        def fun(X, Y):
            r = res_fn(X, Y)
            return 0.5 * xp.sum(r * r, axis=1)

        jac = hess = "3-point"
    Y = S.to_backend(_data(B_, seed), backend, "float64")
    X0 = S.to_backend(np.tile([1.0, 0.3], (B_, 1)), backend, "float64")
    opts = {"maxiter": 20, **({"line_search": True} if method == "hig" else {})}
    res = nk.minimize(fun, X0, method=method, jac=jac, hess=hess, args=(Y,), batch=True,
                      options=opts)
    assert res.x.shape == (B_, 2) and res.status.shape == (B_,)
    for i in range(B_):
        one = nk.minimize(fun, X0[i:i + 1, :], method=method, jac=jac, hess=hess,
                          args=(Y[i:i + 1, :],), batch=True, options=opts)
        assert one.termination_of(0) == res.termination_of(i)
        assert (one.nfev[0], one.njev[0], one.nit[0]) == (res.nfev[i], res.njev[i], res.nit[i])
        np.testing.assert_array_equal(S.to_np(one.x[0, :]), S.to_np(res.x[i, :]))


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_lm_difference_jacobians_read_each_rows_data(backend):
    """LM linearises the rows that have just ended in the running rows' call, placed last:
    per-problem ``args`` (which a difference Jacobian reads, unlike ``jac`` here) must follow
    that order, also before any row has been compacted out."""
    xp = S.namespace(backend)
    fun, _ = _model(xp, backend, "float64")
    Y = S.to_backend(_data(6, 0), backend, "float64")
    X0 = S.to_backend(np.tile([1.0, 0.3], (6, 1)), backend, "float64")
    res = nk.minimize(fun, X0, method="lm", jac="2-point", args=(Y,), batch=True)
    assert res.nit[2] < res.nit.min(initial=99, where=np.arange(6) != 2)  # (row 2 ends first)
    for i in range(6):
        one = nk.minimize(fun, X0[i:i + 1, :], method="lm", jac="2-point",
                          args=(Y[i:i + 1, :],), batch=True)
        assert one.termination_of(0) == res.termination_of(i)
        assert (one.nfev[0], one.njev[0], one.nit[0]) == (res.nfev[i], res.njev[i], res.nit[i])
        np.testing.assert_array_equal(S.to_np(one.x[0, :]), S.to_np(res.x[i, :]))
        np.testing.assert_array_equal(S.to_np(one.jac[0, :]), S.to_np(res.jac[i, :]))


@given(B_=st.integers(1, 6), seed=st.integers(0, 2**16), method=st.sampled_from(["lm", "gn"]))
def test_batched_lm_and_gn_agree_with_single_problem_runs(B_, seed, method):
    """Against the single-problem path (another factorisation of each J: the rounding differs
    by ε·κ(J)²): both succeed, both points lie within the first-order distance bound of the
    minimiser, and the evaluation counts agree up to the end game, where a trial is accepted
    or rejected on a reduction at the rounding level (at most 2 evaluations apart)."""
    fun, jac = _model(np, "numpy", "float64")
    Y = _data(B_, seed)
    X0 = np.tile([1.0, 0.3], (B_, 1))
    res = nk.minimize(fun, X0, method=method, jac=jac, args=(Y,), batch=True)
    for i in range(B_):
        f1, j1 = _one(fun, jac, Y[i:i + 1])
        single = nk.minimize(f1, X0[i], method=method, jac=j1)
        assert res.success[i] and single.success
        dist = _distance_bound(res.x[i], Y[i]) + _distance_bound(single.x, Y[i])
        assert np.linalg.norm(res.x[i] - single.x) <= dist
        assert abs(int(res.nfev[i]) - single.nfev) <= 2


_PX, _PY = np.tile(np.arange(5.0), 5), np.repeat(np.arange(5.0), 5)


def _gauss2d(P, data):
    """Gpufit's 2-D Gaussian on 5 × 5 pixels (benchmarks/bench_batch.py): residuals (b, 25)."""
    a, x0, y0, w, b = (P[:, k:k + 1] for k in range(5))
    dx, dy = _PX.astype(P.dtype) - x0, _PY.astype(P.dtype) - y0  # (float32 stays float32)
    return a * np.exp(-(dx * dx + dy * dy) / (2 * w * w)) + b - data


def _gauss2d_jac(P, data):
    a, x0, y0, w, _ = (P[:, k:k + 1] for k in range(5))
    dx, dy = _PX.astype(P.dtype) - x0, _PY.astype(P.dtype) - y0
    r2 = dx * dx + dy * dy
    e = np.exp(-r2 / (2 * w * w))
    ae = a * e / (w * w)
    return np.stack([e, ae * dx, ae * dy, ae * r2 / w, np.ones_like(e)], axis=2)


@pytest.mark.parametrize("spread", [0.1, 0.4])
def test_batched_lm_takes_the_single_runs_trials(spread):
    """Issue 14: on well-conditioned fits the batched LM evaluates the same trial points as
    the single-problem LM, each to 1e-10 relative, and ends with the same status and counts.
    Starts within ±10 % of the truth (Gpufit's benchmark: Gauss-Newton steps) and ±40 % (the
    trust region and λ > 0 at work).  Bound: the two paths factor each scaled Jacobian A
    differently (Cholesky of AᵀA against QR/SVD of A), so each step differs by at most
    c·n·ε·κ(AᵀA) relative to itself, and the iterates, which correct earlier errors, by as much
    relative to the largest step; with κ(AᵀA) ≤ 1e4 (checked at every solution), n = 5 and
    c ≈ 10 that is 10·5·ε·1e4 ≈ 1.1e-10 — the 1e-10 below.  (A 1e-6 relative error in the
    Gauss-Newton steps, or in the λ > 0 steps, fails it.)"""
    rng = np.random.default_rng(7)
    B_ = 30
    truth = np.tile([500.0, 2.0, 2.0, 1.0, 10.0], (B_, 1))
    truth[:, 1:3] += rng.uniform(-0.5, 0.5, (B_, 2))
    data = rng.poisson(_gauss2d(truth, 0.0)).astype(np.float64)
    X0 = truth.copy()
    X0[:, [0, 3, 4]] *= 1.0 + rng.uniform(-spread, spread, (B_, 3))
    X0[:, 1:3] += spread * rng.uniform(-1.0, 1.0, (B_, 2))
    seen: list[list] = [[] for _ in range(B_)]

    def fun(X, data, k):  # records the points of every problem (k: its index)
        for x, i in zip(X, k[:, 0].astype(int), strict=True):
            seen[i].append(x.copy())
        return _gauss2d(X, data)

    k = np.arange(B_, dtype=np.float64)[:, None]
    res = nk.minimize(fun, X0, method="lm", jac=lambda X, d, k: _gauss2d_jac(X, d),
                      args=(data, k), batch=True)
    lam = 0
    for i in range(B_):
        points: list = []
        f1, j1 = _one(_gauss2d, _gauss2d_jac, data[i:i + 1])
        single = nk.minimize(lambda x, p=points, f=f1: p.append(x.copy()) or f(x), X0[i],
                             method="lm", jac=j1)
        J = j1(single.x)
        A = J / np.linalg.norm(J, axis=0)
        assert np.linalg.cond(A.T @ A) <= 1e4  # the bound's premise
        assert res.termination_of(i) == single.termination and single.success
        assert (res.nfev[i], res.njev[i], res.nit[i]) == (single.nfev, single.njev, single.nit)
        assert len(seen[i]) == len(points)
        scale = max(np.linalg.norm(p) for p in points)
        for p, q in zip(seen[i], points, strict=True):
            assert np.linalg.norm(p - q) <= 1e-10 * scale
        lam += sum(d > 0 for d in single.damping)
    assert spread < 0.2 or lam > 0  # the wide starts exercise λ > 0


def test_batched_lm_on_wide_problems():
    """Fewer residuals than unknowns (m = 2 < n = 4, every row on the SVD route): r = A x − y
    with a full-rank A per problem.  Every Levenberg-Marquardt step, −D⁻¹(ÃᵀÃ + λI)⁻¹Ãᵀr with
    Ã = A D⁻¹ and D the column norms of A, lies in the range of D⁻¹Ãᵀ, so the run ends at the
    solution closest to x0 in the D-norm, x* = x0 − D⁻¹Ã⁺(A x0 − y); the batch reaches it as
    the single path does.  Bound: each step is the SVD's minimum-norm solution, accurate to
    c·n·ε·κ(Ã) relative to ‖x*‖ (c = 10 taken); the residual then is at most ‖A‖ times that."""
    rng = np.random.default_rng(3)
    B_, m, n = 5, 2, 4
    A = rng.standard_normal((B_, m, n))
    Y = rng.standard_normal((B_, m))
    X0 = np.ones((B_, n))

    def fun(X, A, Y):
        return (A @ X[:, :, None])[:, :, 0] - Y

    res = nk.minimize(fun, X0, method="lm", jac=lambda X, A, Y: A, args=(A, Y), batch=True)
    for i in range(B_):
        d = np.linalg.norm(A[i], axis=0)
        x_star = X0[i] - np.linalg.pinv(A[i] / d) @ (A[i] @ X0[i] - Y[i]) / d
        tol = 10 * n * EPS64 * np.linalg.cond(A[i] / d) * np.linalg.norm(x_star)
        single = nk.minimize(lambda x, i=i: A[i] @ x - Y[i], X0[i], method="lm",
                             jac=lambda x, i=i: A[i])
        assert res.success[i] and single.success, res.message_of(i)
        assert np.linalg.norm(res.x[i] - x_star) <= tol
        assert np.linalg.norm(single.x - x_star) <= tol
        assert np.linalg.norm(fun(res.x[i:i + 1], A[i:i + 1], Y[i:i + 1])) <= (
            np.linalg.norm(A[i], 2) * tol)


@pytest.mark.parametrize("method, opts", [("hig", {"line_search": True, "route": "svd"}),
                                          ("newton", {})])
def test_hig_and_newton_iterates_match_the_single_runs(method, opts):
    """Three iterations (before the end game, where HIG's stalls are decided by rounding):
    the batched iterates equal the single ones to 1e-10 relative."""
    Y = _data(4, 1)
    X0 = np.tile([1.0, 0.3], (4, 1))
    fun, jac = _model(np, "numpy", "float64")
    hess = None
    if method == "newton":  # ½‖r‖² with its exact gradient Jᵀr and Hessian JᵀJ + Σ rᵢ∇²rᵢ
        res_fn, res_jac = fun, jac

        def fun(X, Y):
            r = res_fn(X, Y)
            return 0.5 * np.sum(r * r, axis=1)

        def jac(X, Y):
            return np.einsum("bmn,bm->bn", res_jac(X, Y), res_fn(X, Y))

        def hess(X, Y):
            r, Jr = res_fn(X, Y), res_jac(X, Y)
            te = T * np.exp(X[:, 1:] * T)
            second = np.stack([np.stack([0 * te, te], 2), np.stack([te, X[:, :1] * T * te],
                                                                    2)], 2)
            return np.einsum("bmi,bmj->bij", Jr, Jr) + np.einsum("bm,bmij->bij", r, second)

    batch_opts = {k: v for k, v in opts.items() if k != "route"}
    res = nk.minimize(fun, X0, method=method, jac=jac, hess=hess, args=(Y,), batch=True,
                      options={**batch_opts, "maxiter": 3})
    for i in range(4):
        Yi = Y[i:i + 1]
        f1, j1 = _one(fun, jac, Yi)
        h1 = None if hess is None else (lambda x, Yi=Yi: hess(x[None], Yi)[0])
        single = nk.minimize(f1, X0[i], method=method, jac=j1, hess=h1,
                             options={**opts, "maxiter": 3})
        assert res.nit[i] == single.nit == 3
        assert np.linalg.norm(res.x[i] - single.x) <= 1e-10 * np.linalg.norm(single.x)


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_float32_batch_equals_batches_of_one(backend):
    """float32: a batch of 5 equals five batches of one (the same code on the same rounded
    data), to 10 ε₃₂·κ(J) relative with κ(J) < 1e3 on this fit."""
    xp = S.namespace(backend)
    fun, jac = _model(xp, backend, "float32")
    Y = S.to_backend(_data(5, 3), backend, "float32")
    X0 = S.to_backend(np.tile([1.0, 0.3], (5, 1)), backend, "float32")
    res = nk.minimize(fun, X0, method="lm", jac=jac, args=(Y,), batch=True)
    assert S.dtype_name(res.x) == "float32"
    bound = 10 * float(np.finfo(np.float32).eps) * 1e3
    for i in range(5):
        one = nk.minimize(fun, X0[i:i + 1, :], method="lm", jac=jac, args=(Y[i:i + 1, :],),
                          batch=True)
        assert one.termination_of(0) == res.termination_of(i)
        xo, xb = S.to_np(one.x[0, :]), S.to_np(res.x[i, :])
        assert np.linalg.norm(xb - xo) <= bound * np.linalg.norm(xo)


def _gpufit_fits(B_, dtype):
    """Data and starts of B_ of Gpufit's benchmark fits (benchmarks/bench_batch.py, seed 0:
    Poisson noise, amplitude, width and offset ±10 %, centres ±0.1 px)."""
    rng = np.random.default_rng(0)
    truth = np.tile([500.0, 2.0, 2.0, 1.0, 10.0], (B_, 1))
    truth[:, 1:3] += rng.uniform(-0.5, 0.5, (B_, 2))
    data = rng.poisson(_gauss2d(truth, 0.0)).astype(np.float64)
    starts = truth.copy()
    starts[:, [0, 3, 4]] *= 1.0 + rng.uniform(-0.1, 0.1, (B_, 3))
    starts[:, 1:3] += 0.1 * rng.uniform(-1.0, 1.0, (B_, 2))
    return data.astype(dtype), starts.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bounded_gauss_newton_converges_at_the_rounding_level(dtype):
    """Bounded (projected) Gauss-Newton on 2,000 of Gpufit's fits, bounds inactive at the
    solutions: every fit succeeds.  In float32, near the solution the Gauss-Newton model offers
    less than f's rounding, so no trial passes the Armijo test; the full step's xtol test,
    taken before the line search as without bounds, ends such fits XTOL where 5 of these
    ended LINE_SEARCH after 60 evaluations."""
    fun, jac = _gauss2d, _gauss2d_jac
    data, X0 = _gpufit_fits(2000, dtype)
    box = ([0.0, 0.0, 0.0, 0.1, 0.0], [1e4, 4.0, 4.0, 5.0, 100.0])
    res = nk.minimize(fun, X0, method="gn", jac=jac, args=(data,), bounds=box, batch=True)
    assert res.success.all(), res.message
    free = nk.minimize(fun, X0, method="gn", jac=jac, args=(data,), batch=True)
    assert free.success.all(), free.message


def test_bounded_ftol_after_a_shortened_step_needs_a_small_model_offer():
    """Freudenstein-Roth under a lower bound (inactive at the end): the projected GN's ftol
    test after a shortened step compared ftol·f with the model's value for the clipped
    projected step, which clipping made negative (−427), so it passed at (14.03, −0.897),
    f = 31.34, where the gradient is (5.2, −70) with both variables free: FTOL, a success.
    The test now takes the most the Gauss-Newton model offers at the new point, ½‖J̃J̃⁺r̃‖²
    (all of f there: J̃ is square and nonsingular), and the run goes on to the local
    minimum f = 24.49 (SciPy's trf's)."""
    def r1(x):
        return np.array([-13 + x[0] + ((5 - x[1]) * x[1] - 2) * x[1],
                         -29 + x[0] + ((x[1] + 1) * x[1] - 14) * x[1]])

    def j1(x):
        return np.array([[1.0, (10 - 3 * x[1]) * x[1] - 2], [1.0, (3 * x[1] + 2) * x[1] - 14]])

    x0 = np.array([0.38418922, -2.53985502])
    lb, ub = np.array([-0.46719274, -3.34246314]), np.full(2, np.inf)
    res = nk.minimize(lambda X: np.stack([r1(x) for x in X]), x0[None], method="gn",
                      jac=lambda X: np.stack([j1(x) for x in X]), batch=True, bounds=(lb, ub))
    assert not (res.success[0] and res.fun[0] > 25.0), res.message_of(0)


@pytest.mark.parametrize("method", ["lm", "gn", "hig"])
def test_a_subnormal_objective_is_underflow_batched_as_single(method):
    """Residuals c·(x₀² − 3, x₀x₁ − 1, x₁ − 0.3) with c = 1e-161: f = ½‖r‖² is subnormal at
    x0 (the premise), so its few significant bits decide nothing; batched LM ended XTOL, a
    success, at (1.7447, 0.4825) against the minimiser (1.7371, 0.5071).  Batched and single
    runs end UNDERFLOW (not a success) at x0."""
    c = 1e-161

    def fun(x):
        return c * np.array([x[0] ** 2 - 3.0, x[0] * x[1] - 1.0, x[1] - 0.3])

    def jac(x):
        return c * np.array([[2 * x[0], 0.0], [x[1], x[0]], [0.0, 1.0]])

    x0 = np.array([1.0, 1.0])
    assert 0.0 < 0.5 * np.sum(fun(x0) ** 2) < np.finfo(np.float64).smallest_normal
    res = nk.minimize(lambda X: np.stack([fun(x) for x in X]), x0[None], method=method,
                      jac=lambda X: np.stack([jac(x) for x in X]), batch=True)
    one = nk.minimize(fun, x0, method=method, jac=jac)
    assert res.termination_of(0) == one.termination == "UNDERFLOW"
    assert not res.success[0] and not one.success


@pytest.mark.parametrize("c", [1e160, 1e-170])
@pytest.mark.parametrize("method", ["lm", "gn"])
def test_column_norms_that_overflow_or_underflow_batched_as_single(c, method):
    """r = (c·x₀ + 1, c·x₀ − 0.5, x₁ − 2): the first column's sum of squares is 2c², which
    overflows (c = 1e160) or underflows (c = 1e-170) while the column is finite and nonzero.
    Read as inf or 0, its norm made the scaled gradient 0, and every batched method ended
    GTOL, a success, at x0 = 0 (f = 0.625; the minimum c·x₀ = −0.25 has f = 0.5625).  The
    norms are MINPACK's scaled ones there (LM's AᵀA too): batched runs end as single ones,
    LM at the minimiser."""
    def fun(x):
        return np.array([c * x[0] + 1.0, c * x[0] - 0.5, x[1] - 2.0])

    def jac(x):
        return np.array([[c, 0.0], [c, 0.0], [0.0, 1.0]])

    x0 = np.zeros(2)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        res = nk.minimize(lambda X: np.stack([fun(x) for x in X]), x0[None], method=method,
                          jac=lambda X: np.stack([jac(x) for x in X]), batch=True)
        one = nk.minimize(fun, x0, method=method, jac=jac)
    assert res.termination_of(0) == one.termination
    np.testing.assert_allclose(res.x[0], one.x, rtol=1e-10)
    if method == "lm":
        assert one.termination == "GTOL"
        np.testing.assert_allclose(c * res.x[0, 0], -0.25, rtol=1e-10)


def test_batched_defaults_are_the_single_methods():
    """Tolerances and budgets default to the single-problem method's (``default_tol``,
    ``default_maxiter``, ``default_maxfev``).  Batched Newton had ftol = xtol = 1e-8 where the
    single path has 1e-14 and 1e-10: on Rosenbrock scaled by 1e-7 (f < 1, so ftol is absolute)
    it ended FTOL, a success, at (0.22, −0.02) with ‖∇f‖∞ = 1.3e-6; batched LM had maxfev
    100·n·(n + 1) instead of 100·n: on Meyer with 2-point differences it ran to 474
    evaluations where the single run ends MAXFEV at 300."""
    s = 1e-7

    def f(X):
        return s * (100 * (X[:, 1] - X[:, 0] ** 2) ** 2 + (1 - X[:, 0]) ** 2)

    def g(X):
        return s * np.stack([-400 * X[:, 0] * (X[:, 1] - X[:, 0] ** 2) - 2 * (1 - X[:, 0]),
                             200 * (X[:, 1] - X[:, 0] ** 2)], axis=1)

    def h(X):
        H = np.empty((X.shape[0], 2, 2))
        H[:, 0, 0] = 1200 * X[:, 0] ** 2 - 400 * X[:, 1] + 2
        H[:, 0, 1] = H[:, 1, 0] = -400 * X[:, 0]
        H[:, 1, 1] = 200
        return s * H

    x0 = np.array([-1.2, 1.0])
    res = nk.minimize(f, x0[None], method="newton", jac=g, hess=h, batch=True)
    one = nk.minimize(lambda x: f(x[None])[0], x0, method="newton", jac=lambda x: g(x[None])[0],
                      hess=lambda x: h(x[None])[0])
    assert res.termination_of(0) == one.termination == "GTOL"
    np.testing.assert_allclose(res.x[0], one.x, rtol=1e-10)
    meyer = nls.get("meyer")
    res = nk.minimize(lambda X: np.stack([meyer.residual(x) for x in X]), meyer.x0[None],
                      method="lm", jac="2-point", batch=True)
    assert res.termination_of(0) == "MAXFEV" and res.nfev[0] <= 100 * 3


# -- faults, compaction, budgets -----------------------------------------------------------------


def test_a_problem_that_turns_nan_stops_alone():
    """Problem 2's residual is NaN everywhere but at its start: it ends with status 3 at x0,
    and the others end exactly as in a batch without it."""
    Y = _data(5, 7)
    X0 = np.tile([1.0, 0.3], (5, 1))
    fun, jac = _model(np, "numpy", "float64")

    def poisoned(X, Y, flag):
        r = fun(X, Y)
        moved = np.any(X != np.array([1.0, 0.3]), axis=1)
        return np.where((flag > 0) & moved, np.nan, 0.0)[:, None] + r

    flag = np.array([0, 0, 1, 0, 0])
    res = nk.minimize(poisoned, X0, method="lm", jac=lambda X, Y, f: jac(X, Y),
                      args=(Y, flag), batch=True)
    clean = nk.minimize(fun, X0[[0, 1, 3, 4]], method="lm", jac=jac, args=(Y[[0, 1, 3, 4]],),
                        batch=True)
    assert res.status[2] == 3 and not res.success[2]
    np.testing.assert_array_equal(res.x[2], X0[2])  # the best (only) accepted iterate
    np.testing.assert_array_equal(res.x[[0, 1, 3, 4]], clean.x)
    np.testing.assert_array_equal(res.nfev[[0, 1, 3, 4]], clean.nfev)


@pytest.mark.parametrize("method", ["lm", "gn", "hig"])
@pytest.mark.parametrize("dtype, scale", [("float64", 1e-170), ("float32", 1e-24)])
def test_an_objective_that_underflows_is_not_a_zero_residual(method, dtype, scale):
    """Residuals scale·(x − 1) with scale² below the dtype's smallest subnormal: ½‖r‖² rounds
    to 0 at x0 = 0, where r is not 0.  That row ends UNDERFLOW (not a success, the largest
    |r_i| in its message), not ZERO; a row whose residuals are exactly 0 ends ZERO; a row on
    the ordinary scale is unaffected; the single-problem runs end the same way."""
    def fun(X, c):
        return c[:, None] * (X - 1)

    X0 = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]], dtype=dtype)
    c = np.array([scale, 1.0, 1.0], dtype=dtype)
    res = nk.minimize(fun, X0, method=method, args=(c,), batch=True)
    assert res.termination_of(0) == "UNDERFLOW" and res.termination_of(1) == "ZERO"
    assert res.success.tolist() == [False, True, True] and res.status[0] == 2
    assert f"{float(c[0]):.3g}" in res.message_of(0)
    alone = nk.minimize(fun, X0[2:], method=method, args=(c[2:],), batch=True)
    np.testing.assert_array_equal(res.x[2], alone.x[0])
    one = nk.minimize(lambda x: c[0] * (x - 1), X0[0], method=method)
    assert one.termination == "UNDERFLOW" and not one.success and one.status == 2
    assert one.message == res.message_of(0)


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("method", ["lm", "gn"])
def test_a_zero_difference_column_ends_the_row_on_every_backend(backend, method):
    """r = (x₀ − 1, x₀ + 2) does not depend on x₁: its difference column is exactly 0, so
    the gradient test met there says nothing about x₁ (FD_ZERO_COLUMN, column 1 named).
    array_api_strict raised IndexError on building that message (``blind[k]`` on a 2-D
    array)."""
    xp = S.namespace(backend)

    def fun(X):
        return xp.stack([X[:, 0] - 1.0, X[:, 0] + 2.0], axis=1)

    res = nk.minimize(fun, S.to_backend(np.zeros((1, 2)), backend, "float64"), method=method,
                      jac="2-point", batch=True)
    assert res.termination_of(0) == "FD_ZERO_COLUMN" and "[1]" in res.message_of(0)


def test_a_difference_gradient_below_the_rounding_of_f_is_not_stationary():
    """f = c + ‖x − 1‖² with forward differences: for c = 1e10 a step of h = √ε changes f by
    2h = 3e-8, below half its last bit (1e-6), so the difference gradient at x0 = 0 is exactly
    0 although ∇f = −2: FD_ZERO_COLUMN (not a success), where the strict gtol test alone
    ended GTOL at x0.  For c = 0 the difference gradient vanishes only near the minimum, where
    f is small enough to show a gradient above gtol: GTOL there."""
    def f(X, c):
        return c + np.sum((X - 1) ** 2, axis=1)

    res = nk.minimize(f, np.zeros((2, 2)), method="newton", jac="2-point",
                      args=(np.array([1e10, 0.0]),), batch=True)
    assert res.termination_of(0) == "FD_ZERO_COLUMN" and not res.success[0]
    assert "[0, 1]" in res.message_of(0)
    assert res.termination_of(1) == "GTOL" and res.success[1]
    # where the forward difference vanishes, ‖x − 1‖∞ = h/2 = √ε/2 (h = √ε·max(1, |x|))
    np.testing.assert_allclose(res.x[1], 1.0, rtol=0, atol=np.sqrt(EPS64))


def test_a_batched_saddle_is_indefinite():
    """Newton on x₀² − x₁² + x₁⁴/4 from its saddle (0, 0): INDEFINITE with the smallest
    eigenvalue (−2) in that row's message; the other row finds the minimum (0, √2)."""
    def f(X):
        return X[:, 0] ** 2 - X[:, 1] ** 2 + X[:, 1] ** 4 / 4

    def g(X):
        return np.stack([2 * X[:, 0], -2 * X[:, 1] + X[:, 1] ** 3], axis=1)

    def h(X):
        H = np.zeros((X.shape[0], 2, 2))
        H[:, 0, 0], H[:, 1, 1] = 2.0, -2.0 + 3 * X[:, 1] ** 2
        return H

    res = nk.minimize(f, np.array([[0.0, 0.0], [1.0, 1.0]]), method="newton", jac=g, hess=h,
                      batch=True)
    assert res.termination_of(0) == "INDEFINITE" and not res.success[0]
    assert "-2" in res.message_of(0)
    assert res.success[1]
    # at a success ‖∇f‖∞ ≤ gtol = 1e-8 (or a smaller step): ‖x − x*‖ ≤ √2·gtol/μ to first
    # order, μ = 2 the smallest eigenvalue of ∇²f(x*) = diag(2, 4); 1e-7 allows the rest
    np.testing.assert_allclose(res.x[1], [0.0, np.sqrt(2.0)], rtol=0, atol=1e-7)


@pytest.mark.parametrize("s", [1e4, 1e8])
def test_newton_steps_are_free_of_a_diagonal_scaling(s):
    """A convex quadratic with H = D C D, C = [[1, .9], [.9, 1]], D = diag(s, 1): the batch took
    its step from eigh(H), whose small eigenvalue is accurate to ε‖H‖ only; at s = 1e8 it took
    166 iterations and ended FTOL at |∇f| = 14·gtol (at 1e9 MAXITER), where the single path's
    Cholesky solve (free of D) takes one step.  The step now comes from a Cholesky factor of
    H + τI, as the single path's: one step to x* (to 1e-10 relative: the solve's backward
    error is ε·κ(C) with κ(C) = 19), a success as alone.  (Which test ends the run, GTOL or
    XTOL, turns on the rounding: at s = 1e8 the gradient left at x*, about ε·‖H‖·‖x‖ = 3e-8,
    is near gtol, and the two paths or two BLAS kernels fall on either side.)"""
    C = np.array([[1.0, 0.9], [0.9, 1.0]])
    H = np.diag([s, 1.0]) @ C @ np.diag([s, 1.0])
    xs = np.array([3.0 / s, -2.0])
    b = H @ xs

    def f(X):
        return 0.5 * np.einsum("bi,ij,bj->b", X, H, X) - X @ b

    def g(X):
        return X @ H - b

    res = nk.minimize(f, np.zeros((1, 2)), method="newton", jac=g, batch=True,
                      hess=lambda X: np.broadcast_to(H, (X.shape[0], 2, 2)).copy())
    one = nk.minimize(lambda x: f(x[None])[0], np.zeros(2), method="newton",
                      jac=lambda x: g(x[None])[0], hess=lambda x: H)
    assert res.success[0] and one.success and res.nit[0] == one.nit == 1
    np.testing.assert_allclose(res.x[0], xs, rtol=1e-10)


def test_a_tiny_newton_step_at_a_saddle_is_indefinite():
    """f = c(x₀² − x₁²) with c = 1e10 near its saddle, x = (1e-17, 1e-17): ‖∇f‖∞ = 2e-7 is
    above gtol, but the shifted Newton step (about ‖x‖ = 1.4e-17) is below xtol·(xtol + ‖x‖)
    = 1e-16; the xtol test before the line search ended the row XTOL, a success, at the
    saddle.  It now checks the curvature as every other convergence test does: INDEFINITE,
    as the single path."""
    c = 1e10

    def f(X):
        return c * (X[:, 0] ** 2 - X[:, 1] ** 2) + 1.0

    def g(X):
        return np.stack([2 * c * X[:, 0], -2 * c * X[:, 1]], axis=1)

    def h(X):
        return np.broadcast_to(np.diag([2 * c, -2 * c]), (X.shape[0], 2, 2)).copy()

    X0 = np.full((1, 2), 1e-17)
    res = nk.minimize(f, X0, method="newton", jac=g, hess=h, batch=True)
    assert res.termination_of(0) == "INDEFINITE" and not res.success[0]
    single = nk.minimize(lambda x: f(x[None])[0], X0[0], method="newton",
                         jac=lambda x: g(x[None])[0], hess=lambda x: h(x[None])[0])
    assert single.termination == "INDEFINITE"


def test_divergence_returns_the_best_iterate():
    """Fixed-step HIG runs uphill on this fit: status 5 per problem, x the best accepted
    iterate (objective at most f(x0)), with fun, the residual and the gradient at that x."""
    Y = _data(3, 4)
    fun, jac = _model(np, "numpy", "float64")
    X0 = np.tile([1.0, 0.3], (3, 1))
    res = nk.minimize(fun, X0, method="hig", jac=jac, args=(Y,), batch=True,
                      options={"maxiter": 50})
    f0 = 0.5 * np.sum(fun(X0, Y) ** 2, axis=1)
    assert (res.status == 5).all()
    assert (res.fun <= f0).all()
    r = fun(res.x, Y)
    np.testing.assert_array_equal(res.residual, r)
    np.testing.assert_array_equal(res.fun, 0.5 * np.sum(r * r, axis=1))
    np.testing.assert_allclose(res.jac, np.einsum("bmn,bm->bn", jac(res.x, Y), r),
                               rtol=0, atol=30 * EPS64 * np.abs(res.jac).max())


def test_finished_problems_are_not_evaluated():
    """Compaction, not masking: the rows fun sees add up to the problems' own counts."""
    Y = _data(40, 11)
    X0 = np.tile([1.0, 0.3], (40, 1))
    X0[::2] = [2.0, 0.35]  # half start near their solutions and finish early
    fun, jac = _model(np, "numpy", "float64")
    rows = []

    def counted(X, Y):
        rows.append(X.shape[0])
        return fun(X, Y)

    res = nk.minimize(counted, X0, method="lm", jac=jac, args=(Y,), batch=True)
    assert res.success.all()
    assert sum(rows) == int(res.nfev.sum())
    assert len(set(res.nit.tolist())) > 1  # the problems did end at different iterations


def test_maxfev_per_problem():
    Y = _data(3, 2)
    fun, jac = _model(np, "numpy", "float64")
    res = nk.minimize(fun, np.tile([1.0, 0.3], (3, 1)), method="lm", jac=jac, args=(Y,),
                      batch=True, options={"maxfev": 3})
    assert (res.nfev <= 3).all() and (res.status == 1).all()


def test_options_per_problem():
    """maxfev and gtol given per problem: each problem stops on its own budget and tolerance."""
    Y = _data(3, 2)
    fun, jac = _model(np, "numpy", "float64")
    X0 = np.tile([1.0, 0.3], (3, 1))
    res = nk.minimize(fun, X0, method="lm", jac=jac, args=(Y,), batch=True,
                      options={"maxfev": np.array([2, 3, 1000]), "ftol": 0.0, "xtol": 0.0,
                               "gtol": np.array([1e-8, 1e-8, 1.0])})
    assert res.nfev[0] == 2 and res.nfev[1] == 3 and list(res.status[:2]) == [1, 1]
    # the scaled gradient is a cosine, ≤ 1: gtol = 1 is met at x0
    assert res.termination_of(2) == "GTOL" and res.nfev[2] == 1
    with pytest.raises(ValueError, match=r"'maxfev' has one value per problem: expected an "
                                         r"array of length B=3, got shape \(2,\)"):
        nk.minimize(fun, X0, method="lm", jac=jac, args=(Y,), batch=True,
                    options={"maxfev": np.array([2, 3])})


@pytest.mark.parametrize("method", ["lm", "gn", "hig", "newton"])
def test_maxfev_is_never_exceeded_with_differences(method):
    """A difference Jacobian costs n calls per row: the budget is checked before it (and
    before every line-search trial), so nfev ≤ maxfev per problem, counted by a wrapped fun."""
    Y = _data(4, 6)
    fun, _ = _model(np, "numpy", "float64")
    if method == "newton":
        res_fn = fun

        def fun(X, Y):
            r = res_fn(X, Y)
            return 0.5 * np.sum(r * r, axis=1)

    calls = np.zeros(4, dtype=int)

    def counted(X, Y, idx):
        np.add.at(calls, idx.astype(int), 1)
        return fun(X, Y)

    maxfev = np.array([9, 10, 14, 40])
    res = nk.minimize(counted, np.tile([1.0, 0.3], (4, 1)), method=method, jac="2-point",
                      hess="2-point" if method == "newton" else None,
                      args=(Y, np.arange(4.0)), batch=True,
                      options={"maxfev": maxfev, "line_search": True} if method != "lm"
                      else {"maxfev": maxfev})
    np.testing.assert_array_equal(res.nfev, calls)
    assert (calls <= maxfev).all()


def test_callback_sees_the_batch_and_stop_iteration_stops_all():
    Y = _data(4, 5)
    fun, jac = _model(np, "numpy", "float64")
    seen = []

    def cb(intermediate_result):
        seen.append(intermediate_result.x.shape[0])
        raise StopIteration

    res = nk.minimize(fun, np.tile([1.0, 0.3], (4, 1)), method="lm", jac=jac, args=(Y,),
                      batch=True, callback=cb)
    assert seen == [4]
    assert (res.status == 99).all() and "4 of 4" not in res.message


def test_a_callback_writing_into_x_does_not_move_the_iterates():
    """The callback gets copies: one that zeroes ``intermediate_result.x`` (a buffer it thinks
    it owns) made LM report XTOL, success, at x = 0, a point it never evaluated (its ``fun``
    that of the old point).  Now the run is the one without the callback."""
    Y = _data(2, 5)
    fun, jac = _model(np, "numpy", "float64")
    X0 = np.tile([1.0, 0.3], (2, 1))

    def cb(intermediate_result):
        intermediate_result.x[...] = 0.0
        intermediate_result.fun[...] = 0.0

    res = nk.minimize(fun, X0, method="lm", jac=jac, args=(Y,), batch=True, callback=cb)
    ref = nk.minimize(fun, X0, method="lm", jac=jac, args=(Y,), batch=True)
    np.testing.assert_array_equal(res.x, ref.x)
    np.testing.assert_array_equal(res.fun, ref.fun)


@pytest.mark.parametrize("method", ["lm", "gn", "hig", "newton"])
def test_an_exception_mid_run_keeps_the_batch_so_far(method):
    """An exception from ``fun`` on its 5th call propagates, as in the single path, with the
    batch so far in ``exc.result``: the rows still running end EXCEPTION (97) at their best
    accepted iterate (f at most f(x0)), with the exception named in their message; the
    batched run used to lose everything."""
    Y = _data(3, 5)
    fun, jac = _model(np, "numpy", "float64")
    kw: dict = {"jac": jac}
    if method == "newton":
        def base(X, Y):
            r = fun(X, Y)
            return 0.5 * np.sum(r * r, axis=1)

        kw = {"jac": "3-point", "hess": "3-point"}
    else:
        base = fun
    if method == "hig":
        kw["options"] = {"line_search": True}
    calls = []

    def failing(X, Y):
        calls.append(1)
        if len(calls) == 5:
            raise RuntimeError("boom")
        return base(X, Y)

    X0 = np.tile([1.0, 0.3], (3, 1))
    with pytest.raises(RuntimeError, match="boom") as info:
        nk.minimize(failing, X0, method=method, args=(Y,), batch=True, **kw)
    res = info.value.result
    assert res.x.shape == (3, 2) and (res.status == 97).any()
    f0 = base(X0, Y) if method == "newton" else 0.5 * np.sum(fun(X0, Y) ** 2, axis=1)
    assert np.all(np.isfinite(res.x)) and np.all(res.fun <= f0)
    i = int(np.nonzero(res.status == 97)[0][0])
    assert "RuntimeError: boom" in res.message_of(i)


# -- chunks --------------------------------------------------------------------------------------


def _five_methods(xp, backend):
    """``(name, kwargs)`` of every batched method (and bounded GN) on the exponential fit."""
    fun, jac = _model(xp, backend, "float64")

    def cost(X, Y):
        r = fun(X, Y)
        return 0.5 * xp.sum(r * r, axis=1)

    return [("lm", dict(fun=fun, jac=jac)), ("gn", dict(fun=fun, jac=jac)),
            ("hig", dict(fun=fun, jac=jac, options={"line_search": True})),
            ("newton", dict(fun=cost, jac="3-point", hess="3-point")),
            ("gn", dict(fun=fun, jac=jac, bounds=([0.0, 0.0], [2.5, 0.45])))]


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("case", range(5), ids=["lm", "gn", "hig", "newton", "gn-bounded"])
def test_chunks_give_the_results_of_one_block(backend, case):
    """Rows never interact, so solving the batch in chunks of 4 rows (one after another)
    gives every problem bit for bit the result of the batch solved at once."""
    xp = S.namespace(backend)
    method, kw = _five_methods(xp, backend)[case]
    fun, opts = kw.pop("fun"), {"maxiter": 30, **kw.pop("options", {})}
    B_ = 11
    Y = S.to_backend(_data(B_, 7), backend, "float64")
    X0 = S.to_backend(np.tile([1.0, 0.3], (B_, 1)), backend, "float64")
    one = nk.minimize(fun, X0, method=method, args=(Y,), batch=True, options=opts, **kw)
    parts = nk.minimize(fun, X0, method=method, args=(Y,), batch=True,
                        options={**opts, "chunk_size": 4}, **kw)
    for key in ("x", "fun", "jac"):
        np.testing.assert_array_equal(S.to_np(parts[key]), S.to_np(one[key]), err_msg=key)
    for key in ("status", "nit", "nfev", "njev"):
        np.testing.assert_array_equal(parts[key], one[key], err_msg=key)


def test_automatic_chunks_bound_the_rows_of_a_jacobian(monkeypatch):
    """By default a block's Jacobians take at most ``CHUNK_BYTES`` (rows × m × n × 8 bytes):
    with room for 3 rows of 30 × 2, no Jacobian call sees more than 3 rows."""
    from newtonkit import _batch

    monkeypatch.setattr(_batch, "CHUNK_BYTES", 3 * T.size * 2 * 8 + 7)
    Y = _data(10, 3)
    fun, jac = _model(np, "numpy", "float64")
    seen = []

    def counted(X, Y):
        seen.append(X.shape[0])
        return jac(X, Y)

    res = nk.minimize(fun, np.tile([1.0, 0.3], (10, 1)), method="lm", jac=counted, args=(Y,),
                      batch=True)
    assert res.success.all() and max(seen) == 3


def test_only_host_arrays_are_chunked():
    """Blocks are for the CPU's caches: a torch tensor on another device (here ``meta``, which
    needs no GPU) is not on the host, so its rows form one block."""
    torch = pytest.importorskip("torch")
    from newtonkit._batch import _on_cpu

    assert _on_cpu(np.zeros(2)) and _on_cpu(torch.zeros(2))
    assert not _on_cpu(torch.zeros(2, device="meta"))
    assert B.itemsize(np.float32) == B.itemsize(torch.float32) == 4
    assert B.itemsize(np.dtype("float64")) == B.itemsize(torch.float64) == 8


def test_stop_iteration_ends_the_chunks_not_started():
    """StopIteration in the first chunk stops all: its rows where they stand, the others at X0
    with no iteration and a NaN gradient (never computed)."""
    Y = _data(5, 5)
    fun, jac = _model(np, "numpy", "float64")
    seen = []

    def cb(intermediate_result):
        seen.append(intermediate_result.rows.tolist())
        raise StopIteration

    X0 = np.tile([1.0, 0.3], (5, 1))
    res = nk.minimize(fun, X0, method="lm", jac=jac, args=(Y,), batch=True, callback=cb,
                      options={"chunk_size": 2})
    assert seen == [[0, 1]]
    assert (res.status == 99).all() and not res.success.any()
    assert (res.nit[:2] == 1).all() and (res.nit[2:] == 0).all()
    np.testing.assert_array_equal(res.x[2:], X0[2:])
    assert np.isnan(res.jac[2:]).all() and np.isfinite(res.jac[:2]).all()


def test_ctrl_c_returns_the_batch_as_it_stands():
    """KeyboardInterrupt in a step of the first chunk: its rows end where they stand (status
    98), the chunks not started at X0; in the Jacobian at the start of the second chunk (GN
    linearises before its first step): the first chunk's results stand."""
    Y = _data(5, 5)
    fun, jac = _model(np, "numpy", "float64")
    X0 = np.tile([1.0, 0.3], (5, 1))
    calls = []

    def second_call_stops(X, Yr):
        calls.append(X.shape[0])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return jac(X, Yr)

    res = nk.minimize(fun, X0, method="lm", jac=second_call_stops, args=(Y,), batch=True,
                      options={"chunk_size": 2})
    assert (res.status == 98).all()
    assert (res.nit[:2] == 1).all() and (res.nit[2:] == 0).all()
    np.testing.assert_array_equal(res.x[2:], X0[2:])
    assert np.isnan(res.jac[2:]).all()

    def second_chunk_stops(X, Yr):
        if np.array_equal(Yr[0], Y[2]):
            raise KeyboardInterrupt
        return jac(X, Yr)

    alone = nk.minimize(fun, X0[:2], method="gn", jac=jac, args=(Y[:2],), batch=True)
    res = nk.minimize(fun, X0, method="gn", jac=second_chunk_stops, args=(Y,), batch=True,
                      options={"chunk_size": 2})
    assert res.success[:2].all() and (res.status[2:] == 98).all()
    np.testing.assert_array_equal(res.x[:2], alone.x)
    np.testing.assert_array_equal(res.x[2:], X0[2:])


# -- derivatives ---------------------------------------------------------------------------------


def test_differences_and_torch_autodiff_agree_with_the_analytic_jacobian():
    torch = pytest.importorskip("torch")
    Y = _data(6, 9)
    X0 = np.tile([1.0, 0.3], (6, 1))
    fun, jac = _model(np, "numpy", "float64")
    ref = nk.minimize(fun, X0, method="lm", jac=jac, args=(Y,), batch=True)
    fd = nk.minimize(fun, X0, method="lm", jac="3-point", args=(Y,), batch=True)
    tfun, _ = _model(torch, "torch", "float64")
    ad = nk.minimize(tfun, torch.tensor(X0), method="lm", args=(torch.tensor(Y),), batch=True)
    t = torch.tensor(T)

    def one(x, y):
        return x[0] * torch.exp(x[1] * t) - y

    vm = nk.minimize(one, torch.tensor(X0), method="lm", args=(torch.tensor(Y),), batch=True,
                     vectorize=True)
    assert ref.success.all() and fd.success.all() and ad.success.all() and vm.success.all()
    # autodiff is exact to rounding: the same runs; central differences are accurate to
    # ε^(2/3) ≈ 4e-11 relative, which moves the converged point by at most κ(J)·4e-11 ≈ 1e-8
    for other, tol in ((ad, 1e-10), (vm, 1e-10), (fd, 1e-6)):
        np.testing.assert_allclose(S.to_np(other.x), ref.x, rtol=tol)


# -- multistart ----------------------------------------------------------------------------------


def test_multistart_finds_the_global_minimum():
    """f(x) = ½((x − 2)² + 4 sin²(3x)) has local minima near every multiple of π/3; the global
    one (found on a fine grid) is the best of 200 starts over [−10, 10]."""
    def fun(X):
        return np.concatenate([X - 2.0, 2.0 * np.sin(3.0 * X)], axis=1)

    def jac(X):
        return np.stack([np.ones_like(X), 6.0 * np.cos(3.0 * X)], axis=1)

    grid = np.linspace(-10, 10, 2_000_001)
    f_grid = 0.5 * ((grid - 2) ** 2 + 4 * np.sin(3 * grid) ** 2)
    x_star = grid[np.argmin(f_grid)]
    starts = np.linspace(-10, 10, 200)[:, None]
    res = nk.multistart(fun, starts, method="lm", jac=jac)
    assert res.success
    # the grid's spacing 1e-5 bounds |x* − x_grid|
    assert abs(float(res.x[0]) - x_star) <= 1e-5
    distinct = np.unique(np.round(res.batch.x[res.batch.success, 0], 6))
    assert distinct.size > 3  # the other minima are kept


# -- bad input -----------------------------------------------------------------------------------


def _lsq():
    return _model(np, "numpy", "float64")


@pytest.mark.parametrize("call, exc, match", [
    pytest.param(lambda f, j: nk.minimize(f, np.ones(2), jac=j, method="lm", batch=True,
                                          args=(np.ones((1, 30)),)),
                 ValueError, r"X0 must be 2-D .*shape \(2,\)", id="x0-1d"),
    pytest.param(lambda f, j: nk.minimize(lambda X: np.ones(30), np.ones((3, 2)), method="lm",
                                          batch=True),
                 ValueError, r"fun must return \(B, m\) for X of shape \(3, 2\); got shape "
                             r"\(30,\)", id="fun-1d"),
    pytest.param(lambda f, j: nk.minimize(lambda X: np.ones((2, 30)), np.ones((3, 2)),
                                          method="lm", batch=True),
                 ValueError, r"got shape \(2, 30\)", id="fun-wrong-b"),
    pytest.param(lambda f, j: nk.minimize(f, np.ones((3, 2)), method="lm", batch=True,
                                          jac=lambda X, Y: np.ones((3, 2, 30)),
                                          args=(np.ones((3, 30)),)),
                 ValueError, r"jac must return shape \(3, 30, 2\)", id="jac-shape"),
    pytest.param(lambda f, j: nk.minimize(f, np.ones((3, 2)), method="lm", batch=True, jac=j,
                                          args=(np.ones((4, 30)),)),
                 ValueError, r"leading dimension B=3; args\[0\] has shape \(4, 30\)",
                 id="args-length"),
    pytest.param(lambda f, j: nk.minimize(f, np.ones((3, 2)), method="trust-constr",
                                          batch=True),
                 ValueError, r"no batched form", id="method"),
    pytest.param(lambda f, j: nk.minimize(f, np.ones((3, 2)), method="lm", batch=True,
                                          vectorize=True, args=(np.ones((3, 30)),)),
                 ValueError, r"vectorize=True .*torch", id="vectorize-numpy"),
    pytest.param(lambda f, j: nk.minimize(f, np.ones(2), method="lm", vectorize=True),
                 ValueError, r"needs batch=True", id="vectorize-no-batch"),
    pytest.param(lambda f, j: nk.minimize(f, np.ones((3, 2)), method="lm", batch=True, jac=j,
                                          args=(np.ones((3, 30)),), options={"chunk_size": 0}),
                 ValueError, r"'chunk_size' must be a positive integer .* got 0",
                 id="chunk-size"),
])
def test_bad_batched_input_names_the_shapes(call, exc, match):
    f, j = _lsq()
    with pytest.raises(exc, match=match):
        call(f, j)


def test_empty_batch_and_x0_untouched():
    f, j = _lsq()
    res = nk.minimize(f, np.zeros((0, 2)), method="lm", jac=j, args=(np.zeros((0, 30)),),
                      batch=True)
    assert res.x.shape == (0, 2) and res.status.shape == (0,)
    X0 = np.tile([1.0, 0.3], (3, 1))
    keep = X0.copy()
    nk.minimize(f, X0, method="lm", jac=j, args=(_data(3, 0),), batch=True)
    np.testing.assert_array_equal(X0, keep)


def test_memory_stays_a_few_working_arrays():
    """Peak traced memory of a batched LM run at B = 4,000 is a few (B, m, n) arrays (the
    Jacobian, its scaled copy and the SVD's factors), not B² or growing with iterations."""
    B_ = 4000
    Y = _data(B_, 4)
    f, j = _lsq()
    X0 = np.tile([1.0, 0.3], (B_, 1))
    tracemalloc.start()
    res = nk.minimize(f, X0, method="lm", jac=j, args=(Y,), batch=True)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert res.success.all()
    working = B_ * T.size * 2 * 8  # one (B, m, n) float64 array
    assert peak <= 12 * working, peak / working


def test_result_arrays_and_messages():
    f, j = _lsq()
    res = nk.minimize(f, np.tile([1.0, 0.3], (3, 1)), method="lm", jac=j,
                      args=(_data(3, 0),), batch=True)
    assert res.message.startswith("3 of 3 problems converged")
    assert "Optimization terminated successfully" in res.message_of(1)
    assert res.jac.shape == (3, 2) and res.residual.shape == (3, 30)
    # jac is the gradient Jᵀr at x (computed there, after the last accepted step)
    g = np.einsum("bmn,bm->bn", j(res.x, _data(3, 0)), f(res.x, _data(3, 0)))
    np.testing.assert_allclose(res.jac, g, rtol=0, atol=1e3 * EPS64 * np.abs(g).max() + 1e-12)
    assert B.to_numpy(res.fun).shape == (3,)


@pytest.mark.parametrize("jac, hess", [("2-point", "2-point"), ("2-point", "3-point"),
                                       ("3-point", "3-point")])
def test_newton_with_difference_derivatives_takes_the_single_runs_iterates(jac, hess):
    """Batched Newton on difference gradients and Hessians, as the single path: Hessian steps
    for the gradient's own accuracy (ε^(1/2) or ε^(2/3), not ε) and the gradient test with
    the difference's error bound, |g_j| ≤ gtol + e_j (a forward difference is off by
    h|H_jj|/2 ≈ 2e-8 > gtol at the minimiser).  Each row: the single run's status and nit,
    x to 1e-10 relative (the issue's bound; the two paths' solves differ at ε·κ(H))."""
    def f(X):
        Z = X - 1.6
        return np.sum(Z ** 2 + 0.5 * Z ** 4 + 0.1 * Z[:, :1] * Z, axis=1)

    X0 = np.array([[0.3, -0.5, 1.0], [2.0, 1.0, 0.0]])
    res = nk.minimize(f, X0, method="newton", jac=jac, hess=hess, batch=True)
    for i in range(2):
        one = nk.minimize(lambda x: f(x[None])[0], X0[i], method="newton", jac=jac, hess=hess)
        assert res.termination_of(i) == one.termination == "GTOL"
        assert res["nit"][i] == one.nit
        np.testing.assert_allclose(res["x"][i], one.x, rtol=1e-10)


@pytest.mark.parametrize("jac", ["2-point", "3-point"])
def test_lm_rows_ending_at_a_new_jacobian_cost_what_they_cost_alone(jac):
    """r = A x − b (linear: the first step lands on the minimiser, and the next Jacobian's
    gradient test ends the row GTOL).  The batch evaluated that difference Jacobian again for
    the row's final gradient (nfev 8 against the single path's 6 with 2-point), and reserved a
    trial's evaluation before linearising, so maxfev = the single run's nfev ended it MAXFEV.
    Now: the single run's nfev, and GTOL within that budget."""
    A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]])
    b = np.array([1.0, -1.0, 2.0])
    one = nk.minimize(lambda x: A @ x - b, np.zeros(2), method="lm", jac=jac)
    for opts in ({}, {"maxfev": int(one.nfev)}):
        res = nk.minimize(lambda X: X @ A.T - b, np.zeros((1, 2)), method="lm", jac=jac,
                          batch=True, options=opts)
        assert res.termination_of(0) == one.termination == "GTOL"
        assert res.nfev[0] == one.nfev


def test_rows_on_richardsons_gradient_stay_within_maxfev():
    """A row switched to Richardson's gradient spends 4n evaluations per gradient, and a
    Hessian of such gradients at the switch: the budget reserved 2n and nothing, and rows
    ended with nfev = 324 for maxfev = 308.  Every maxfev is now kept (a sweep over the run's
    range)."""
    def f(X):
        return 100.0 * (X[:, 1] - X[:, 0] ** 2) ** 2 + (1.0 - X[:, 0]) ** 2

    X0 = np.array([-1.2, 1.0]) + np.random.default_rng(0).uniform(-0.5, 0.5, (4, 2))
    full = nk.minimize(f, X0, method="newton", jac="3-point", batch=True)
    for maxfev in range(200, int(full.nfev.max()) + 5, 7):
        res = nk.minimize(f, X0, method="newton", jac="3-point", batch=True,
                          options={"maxfev": maxfev})
        assert (res.nfev <= maxfev).all(), (maxfev, res.nfev)


@pytest.mark.parametrize("hess", [None, "3-point"])
def test_newton_switches_to_richardson_as_the_single_path(hess):
    """Newton without ``jac``: central differences, batched as alone (the batch took forward
    ones).  On Rosenbrock the central G's own error h²·f‴/6 steers the stop (Richardson's
    gradient disagrees with G by more than gtol): the single path goes on with Richardson's
    gradient and succeeds; every row of the batch ended GRADIENT_UNVERIFIED.  Now each row
    switches as the single run does: its success and x to 1e-10 relative (the issue's bound;
    the paths' solves differ at ε·κ(H), so the last test may fall one iteration apart: nit
    within 1), and |∇f| ≤ 2·gtol at the end (Richardson's error O(h⁴) and its rounding
    3ε|f|/h ≈ 1e-11 at f ≈ 1e-16)."""
    def f(X):
        return 100.0 * (X[:, 1] - X[:, 0] ** 2) ** 2 + (1.0 - X[:, 0]) ** 2

    X0 = np.array([-1.2, 1.0]) + np.random.default_rng(0).uniform(-0.5, 0.5, (4, 2))
    with pytest.warns(nk.FiniteDifferenceWarning, match="central differences"):
        res = nk.minimize(f, X0, method="newton", hess=hess, batch=True)
    assert res.success.all(), res.message
    for i in range(4):
        with pytest.warns(nk.FiniteDifferenceWarning):
            one = nk.minimize(lambda x: f(x[None])[0], X0[i], method="newton", hess=hess)
        assert one.success and abs(int(res["nit"][i]) - one.nit) <= 1
        np.testing.assert_allclose(res["x"][i], one.x, rtol=1e-10)
        x = res["x"][i]
        grad = np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]),
                         200 * (x[1] - x[0] ** 2)])
        assert np.abs(grad).max() <= 2e-8


@pytest.mark.parametrize("method", ["lm", "gn"])
def test_a_float32_fun_at_float64_x_takes_float32_steps(method):
    """fun returning float32 at float64 X: differences with float32's steps (SciPy's rule,
    the larger ε of x's and fun's dtypes).  With float64's steps (1.5e-8) every difference
    was float32 rounding (J wrong by O(1)) and the single LM ended XTOL, success, at a
    non-stationary point (cost 2.08, true gradient 0.9)."""
    def rosen(X):
        return np.stack([10 * (X[:, 1] - X[:, 0] ** 2), 1 - X[:, 0]], axis=1).astype(np.float32)

    X0 = np.array([[-1.2, 1.0], [0.5, -0.3]])
    res = nk.minimize(rosen, X0, method=method, jac="2-point", batch=True)
    one = nk.least_squares(lambda x: rosen(x[None])[0], X0[0], method=method)
    # zero residual at (1, 1); float32 residuals (ε₃₂ = 1.2e-7) and J to √ε₃₂ leave x within
    # about 1e-3 of it (the ftol/xtol stops at the float32 rounding of r)
    assert res["success"].all() and np.abs(res["x"] - 1.0).max() < 1e-3
    assert one.success and np.abs(one.x - 1.0).max() < 1e-3


# -- the device of X0 ----------------------------------------------------------------------------


def _two_exp_on(xp, device):
    """Batched residuals and Jacobians of a·exp(−b t) + c·exp(−d t) on ``device``."""
    t = xp.asarray(np.linspace(0.0, 6.0, 40), device=device)
    y = xp.exp(-2.5 * t) + 0.6 * xp.exp(-0.3 * t)

    def F(X):
        return X[:, 0:1] * xp.exp(-X[:, 1:2] * t) + X[:, 2:3] * xp.exp(-X[:, 3:4] * t) - y

    def J(X):
        e1, e2 = xp.exp(-X[:, 1:2] * t), xp.exp(-X[:, 3:4] * t)
        return xp.stack([e1, -X[:, 0:1] * t * e1, e2, -X[:, 2:3] * t * e2], axis=2)

    return F, J


@pytest.mark.parametrize("method,kw", [
    ("lm", {}), ("lm", {"jac": "2-point"}), ("gn", {}), ("gn", {"bounds": (-100.0, 1e4)}),
    ("hig", {"options": {"line_search": True}}), ("newton", {}), ("newton", {"hess": None}),
])
def test_every_batched_array_stays_on_the_device_of_x0(method, kw):
    """array-api-strict's second device stands in for a GPU: it refuses to combine its arrays
    with the default device's, and to convert them to NumPy implicitly.  Every batched method
    ran on device1 into an error (state arrays such as LM's ``first`` and the line search's
    ``t`` made on the default device); now each runs there, to the same iterates as on the
    default device (the same operations, so bit for bit), and returns its arrays there.  The
    starts hold a rank-deficient one (b = d: the SVD route) and one whose steps overflow."""
    xps = pytest.importorskip("array_api_strict")
    starts = np.array([[0.8, 2.0, 0.5, 0.4], [1.0, 2.5, 1.0, 2.5], [1e3, -50.0, 1.0, 0.3],
                       [1.2, 3.0, 0.3, 0.2]])
    out = {}
    for name in ("CPU_DEVICE", "device1"):
        dev = xps.Device(name)
        F, J = _two_exp_on(xps, dev)
        # (Newton not from the far start: 400 iterations of difference Hessians)
        X0 = xps.asarray(starts[[0, 1, 3]] if method == "newton" else starts, device=dev)
        if method == "newton":
            def f(X, F=F):
                return 0.5 * xps.sum(F(X) ** 2, axis=1)

            def g(X, F=F, J=J):
                return xps.sum(F(X)[:, :, None] * J(X), axis=1)

            def h(X, J=J, dev=dev):
                JX = J(X)
                return xps.matrix_transpose(JX) @ JX + 1e-3 * xps.eye(4, device=dev)

            with np.errstate(over="ignore", invalid="ignore"):  # (fun at the far start)
                res = nk.minimize(f, X0, method="newton", batch=True,
                                  **{"jac": g, "hess": h, **kw})
        else:
            with np.errstate(over="ignore", invalid="ignore"):
                res = nk.minimize(F, X0, method=method, batch=True, **{"jac": J, **kw})
        assert res.x.device == dev and res.fun.device == dev
        out[name] = res
    a, b = out["CPU_DEVICE"], out["device1"]
    np.testing.assert_array_equal(a.status, b.status)
    np.testing.assert_array_equal(B.to_numpy(a.x), B.to_numpy(b.x))
    np.testing.assert_array_equal(a.nfev, b.nfev)


def test_batched_curve_fit_with_fewer_data_than_parameters_stays_on_the_device():
    """m = 2 points, n = 3 parameters: every covariance is inf (SciPy's, for a rank below n).
    That array was made on the default device, and on array-api-strict's device1 (a GPU's
    stand-in) the result's ``where`` failed; now pcov is inf on x's device."""
    xps = pytest.importorskip("array_api_strict")
    dev = xps.Device("device1")
    t = xps.asarray([0.0, 1.0], device=dev)
    Y = xps.asarray([[1.0, 2.0], [2.0, 3.0]], device=dev)
    with pytest.warns(OptimizeWarning, match="could not be estimated"):
        p, pcov = nk.curve_fit(lambda tt, a, b, c: a + b * tt + c * tt ** 2, t, Y,
                               p0=xps.ones((2, 3), device=dev), batch=True, method="gn")
    assert p.device == dev and pcov.device == dev
    assert np.all(np.isinf(B.to_numpy(pcov)))
