"""The driver's promises (issue 13, section 2 a, e, i, j): no success above f(x0), the best
iterate on a fault, clear errors for the wrong kind of function, the run attached to an
exception, NumPy integers as options, ``jac=True`` for least squares, detached results."""

import sys

import numpy as np
import pytest

import newtonkit as nk
from newtonkit._status import Status

EPS = np.finfo(np.float64).eps
A = np.array([[2.0, 1.0], [1.0, 3.0], [0.5, -1.0]])
B = np.array([1.0, 2.0, 0.5])


def lin_res(x):
    return A @ x - B


def half_sq(r):
    return 0.5 * float(r @ r)


def _exp_fit(scale):
    """y = scale·3·exp(t/2) on t ∈ [0, 4], model x₀·exp(x₁ t) with its Jacobian."""
    t = np.linspace(0.0, 4.0, 30)
    data = scale * 3.0 * np.exp(0.5 * t)

    def res(x):
        with np.errstate(over="ignore", invalid="ignore"):
            return x[0] * np.exp(x[1] * t) - data

    def jac(x):
        with np.errstate(over="ignore", invalid="ignore"):
            e = np.exp(x[1] * t)
            return np.stack([e, x[0] * t * e], axis=1)

    return res, jac


def _recorder():
    """A new-style callback that keeps every accepted iterate and its objective."""
    seen = []

    def callback(intermediate_result):
        seen.append((intermediate_result.x.copy(), intermediate_result.fun))

    return seen, callback


def _best(x0, f0, seen):
    """The accepted iterate with the lowest objective (x0 first, so it wins ties)."""
    return min([(x0, f0), *seen], key=lambda p: p[1])


def _consistent(res, res_fn, jac):
    """fun, residual and jac of ``res`` are those at ``res.x``: the residual bitwise (the same
    elementwise evaluation), f = ½ r·r and g = Jᵀr within the rounding of an m-term sum,
    m·ε·Σ|terms|."""
    r, J = res_fn(res.x), jac(res.x)
    m = r.shape[0]
    np.testing.assert_array_equal(res.residual, r)
    assert res.fun == pytest.approx(half_sq(r), rel=m * EPS)
    np.testing.assert_allclose(res.jac, r @ J, rtol=0, atol=m * EPS * float(np.max(
        np.abs(r) @ np.abs(J))))


# -- a. divergence is never success; a fault returns the best iterate ------------------------


@pytest.mark.parametrize("method,scale,x0,opts", [
    # fixed-step HIG is not scale invariant: on data ×100 it ends "gtol met" at f > f(x0)
    ("hig", 100.0, [0.5, 0.5], {}),
    # unit Gauss-Newton steps overshoot to x₁ ≈ 34, where the residual is ~1e44
    ("gn", 1.0, [1.0, -1.0], {"line_search": False}),
])
def test_a_run_ending_above_f0_is_divergence_not_success(method, scale, x0, opts):
    res_fn, jac = _exp_fit(scale)
    x0 = np.array(x0)
    f0 = half_sq(res_fn(x0))
    seen, callback = _recorder()
    with np.errstate(over="ignore"):  # ½ r·r overflows at trial points the step rule shortens
        res = nk.minimize(res_fn, x0, method=method, jac=jac, options=opts, callback=callback)
    assert res.status == Status.DIVERGED.code == 5 and res.termination == "DIVERGED"
    assert not res.success and "diverged" in res.message
    assert seen[-1][1] > f0  # the last iterate is worse than x0; the result is not
    xb, fb = _best(x0, f0, seen)
    np.testing.assert_array_equal(res.x, xb)
    assert res.fun == fb <= f0
    _consistent(res, res_fn, jac)


def test_a_newton_unit_step_onto_a_plateau_is_divergence():
    """f = −2 exp(−(x−1)²) − ½ exp(−(x+1)²) from x0 = 1.7 (f0 ≈ −1.23): the unit Newton step
    (H > 0 there, small) lands at x ≈ −41.5, where f, f′ and f″ are 0 to double precision.
    Before: GTOL success at f = 0 > f0.  Now: status 5 at the best iterate, x0."""
    def f(x):
        return float(-2 * np.exp(-(x[0] - 1) ** 2) - 0.5 * np.exp(-(x[0] + 1) ** 2))

    def g(x):
        a, b = x[0] - 1, x[0] + 1
        return np.array([4 * a * np.exp(-a * a) + b * np.exp(-b * b)])

    def h(x):
        a, b = x[0] - 1, x[0] + 1
        return np.array([[4 * np.exp(-a * a) * (1 - 2 * a * a)
                          + np.exp(-b * b) * (1 - 2 * b * b)]])

    x0 = np.array([1.7])
    res = nk.minimize(f, x0, method="newton", jac=g, hess=h, options={"line_search": False})
    assert res.termination == "DIVERGED" and not res.success
    np.testing.assert_array_equal(res.x, x0)
    assert res.fun == f(x0)
    np.testing.assert_array_equal(res.jac, g(x0))


def _stiff_diagonal():
    """r(x) = J (x − x*), J = diag(1, (2 + δ)²): fixed-step HIG (η = 1, κ = −½) multiplies the
    error along e₁ by 1 − 1 = 0 and along e₂ by 1 − (2 + δ) = −(1 + δ)."""
    delta = 0.02
    J = np.diag([1.0, (2.0 + delta) ** 2])
    xstar = np.array([0.0, 100.0])
    return (lambda x: J @ (x - xstar)), J, xstar


def test_a_small_step_that_raised_the_objective_is_not_convergence():
    """From x* + (10, 1e-3) the first step removes the e₁ error (f: 50 → 2e-6); every later step
    raises f by (1 + δ)² = 1.04 while ‖Δx‖ ≈ 2e-3 stays under xtol·(xtol + ‖x‖) ≈ 1e-2 for xtol
    = 1e-4 (until ~80 steps).  Before: XTOL success at iteration 2.  Now the test does not
    count, and 50 iterations end on the budget."""
    fun, J, xstar = _stiff_diagonal()
    x0 = xstar + np.array([10.0, 1e-3])
    seen, callback = _recorder()
    res = nk.minimize(fun, x0, method="hig", jac=J, callback=callback,
                      options={"xtol": 1e-4, "maxiter": 50})
    assert res.termination == "MAXITER" and res.status == 1 and not res.success
    assert res.nit == 50
    fs = [f for _, f in seen]
    assert all(b > a for a, b in zip(fs[1:-1], fs[2:], strict=True))  # the later steps: up
    assert res.fun < half_sq(fun(x0))  # below f(x0): a budget stop, not divergence


def test_a_small_step_that_lowered_the_objective_still_converges():
    """The same problem with a contraction along e₂ instead: the rule leaves ordinary
    convergence alone (fixed-step HIG ends on the xtol test)."""
    J = np.diag([1.0, 1.5 ** 2])  # factors 0 and 1 − 1.5 = −0.5: f falls at every step
    xstar = np.array([0.0, 100.0])
    res = nk.minimize(lambda x: J @ (x - xstar), xstar + np.array([10.0, 1e-3]), method="hig",
                      jac=J, options={"xtol": 1e-4})
    assert res.termination == "XTOL" and res.success


def test_a_nonfinite_fault_returns_the_best_iterate_not_the_last_finite_one():
    """Fixed-step HIG on 100·(A x − b) diverges (error factors 1 − √σ ≈ −18 and −10); a NaN
    from fun's 12th call on ends the run with status 3.  Before: x was the last finite iterate
    (f ~ 1e20); now it is the best one (here x0), with fun and jac evaluated there."""
    calls = {"n": 0}

    def fun(x):
        calls["n"] += 1
        r = 100.0 * lin_res(x)
        return r * np.nan if calls["n"] >= 12 else r

    x0 = np.zeros(2)
    f0 = half_sq(100.0 * lin_res(x0))
    seen, callback = _recorder()
    res = nk.minimize(fun, x0, method="hig", jac=100.0 * A, callback=callback)
    assert res.status == 3 and res.termination == "NONFINITE" and not res.success
    assert "best accepted iterate" in res.message
    assert len(seen) >= 2 and seen[-1][1] > 1e6 * f0
    xb, fb = _best(x0, f0, seen)
    np.testing.assert_array_equal(res.x, xb)
    assert res.fun == fb
    _consistent(res, lambda x: 100.0 * lin_res(x), lambda x: 100.0 * A)


def test_a_budget_stop_above_f0_is_divergence():
    """The same diverging run stopped by maxiter=5: above f(x0) it is status 5, not 1."""
    x0 = np.zeros(2)
    res = nk.minimize(lambda x: 100.0 * lin_res(x), x0, method="hig", jac=100.0 * A,
                      options={"maxiter": 5})
    assert res.termination == "DIVERGED" and res.nit == 5
    np.testing.assert_array_equal(res.x, x0)
    assert res.fun == half_sq(100.0 * lin_res(x0))


def test_a_interrupt_returns_the_best_iterate():
    calls = {"n": 0}

    def fun(x):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return 100.0 * lin_res(x)

    x0 = np.zeros(2)
    seen, callback = _recorder()
    res = nk.minimize(fun, x0, method="hig", jac=100.0 * A, callback=callback)
    assert res.termination == "INTERRUPTED" and res.status == 98
    assert seen and seen[-1][1] > half_sq(100.0 * lin_res(x0))
    np.testing.assert_array_equal(res.x, x0)


# -- e. the wrong kind of function -----------------------------------------------------------


SCALARS = [lambda x: float(np.sum(x ** 2)), lambda x: np.sum(x ** 2),
           lambda x: np.asarray(np.sum(x ** 2))]


@pytest.mark.parametrize("method", ["lm", "gn", "hig"])
@pytest.mark.parametrize("fun", SCALARS)
def test_e_scalar_fun_with_a_least_squares_method_names_newton(method, fun):
    with pytest.raises(ValueError, match=r"residual vector.*method='newton'"):
        nk.minimize(fun, np.ones(2), method=method, jac=np.ones((1, 2)))


def test_e_one_residual_is_still_a_residual():
    res = nk.minimize(lambda x: np.array([x[0] - 2.0]), np.zeros(1), method="lm",
                      jac=lambda x: np.ones((1, 1)))
    assert res.success and res.x[0] == pytest.approx(2.0, rel=4 * EPS)


@pytest.mark.parametrize("method", ["newton", "lm", "gn", "hig"])
def test_e_fun_returning_none_says_so(method):
    jac = (lambda x: 2 * x) if method == "newton" else np.ones((2, 2))
    kw = {"hess": lambda x: 2 * np.eye(2)} if method == "newton" else {}
    with pytest.raises(TypeError, match="fun returned None"):
        nk.minimize(lambda x: None, np.ones(2), method=method, jac=jac, **kw)


# -- i. an exception carries the run so far ----------------------------------------------------


class Crash(RuntimeError):
    pass


@pytest.mark.parametrize("method", ["newton", "lm", "gn", "hig"])
def test_i_exception_in_fun_carries_the_best_result(method):
    calls = {"n": 0}
    if method == "newton":
        def good(x):
            return float(np.sum((x - 2.0) ** 2) + np.sum(x ** 4))
        kw = {"jac": lambda x: 2 * (x - 2.0) + 4 * x ** 3,
              "hess": lambda x: np.diag(2.0 + 12 * x ** 2)}
    else:
        def good(x):
            return np.concatenate([x - 2.0, x ** 2])
        kw = {"jac": lambda x: np.vstack([np.eye(2), np.diag(2 * x)])}

    def fun(x):
        calls["n"] += 1
        if calls["n"] == 6:
            raise Crash("simulation failed")
        return good(x)

    x0 = np.zeros(2)
    seen, callback = _recorder()
    with pytest.raises(Crash, match="simulation failed") as info:
        nk.minimize(fun, x0, method=method, callback=callback,
                    options={"gtol": 0.0, "xtol": 0.0, "ftol": 0.0}, **kw)
    res = info.value.result
    assert isinstance(res, nk.OptimizeResult)
    assert res.status == 97 and res.termination == "EXCEPTION" and not res.success
    assert "Crash: simulation failed" in res.message
    assert res.nfev == 6 and res.nit == len(seen) >= 1
    f0 = good(x0) if method == "newton" else half_sq(good(x0))
    xb, fb = _best(x0, f0, seen)
    np.testing.assert_array_equal(res.x, xb)
    assert res.fun == fb
    if sys.version_info >= (3, 11):
        assert any(".result" in note for note in info.value.__notes__)


def test_i_exception_in_the_callback_carries_the_result():
    def callback(intermediate_result):
        if intermediate_result.nit == 2:
            raise ValueError("stop here")

    with pytest.raises(ValueError, match="stop here") as info:
        nk.minimize(lambda x: 100 * lin_res(x), np.zeros(2), method="hig", jac=100 * A,
                    callback=callback)
    assert info.value.result.termination == "EXCEPTION" and info.value.result.nit == 2


def test_i_an_exceptions_own_result_attribute_is_kept():
    class WithResult(Exception):
        result = "mine"

    calls = {"n": 0}

    def fun(x):
        calls["n"] += 1
        if calls["n"] == 3:
            raise WithResult
        return np.concatenate([x - 2.0, x ** 2])  # nonlinear: the run lasts past 3 calls

    with pytest.raises(WithResult) as info:
        nk.minimize(fun, np.ones(2), method="lm",
                    jac=lambda x: np.vstack([np.eye(2), np.diag(2 * x)]),
                    options={"xtol": 0, "ftol": 0})
    assert info.value.result == "mine"


def test_i_exception_at_x0_propagates_without_a_result():
    def fun(x):
        raise Crash("at x0")

    with pytest.raises(Crash) as info:
        nk.minimize(fun, np.ones(2), method="lm", jac=A)
    assert not hasattr(info.value, "result")


# -- j. rough edges ------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [np.int64(5), np.int32(5), np.uint8(5), np.array(5), 5.0])
def test_j_numpy_integers_are_integer_options(value):
    """The diverging fixed-step HIG run of the tests above: every iteration is taken, so the
    run takes exactly maxiter of them."""
    res = nk.minimize(lambda x: 100 * lin_res(x), np.zeros(2), method="hig", jac=100 * A,
                      options={"maxiter": value, "max_backtracks": value,
                               "disp": np.int64(0)})
    assert res.nit == 5 and res.termination == "DIVERGED"


@pytest.mark.parametrize("value", [np.bool_(True), np.float64(2.5), np.int64(0), "5"])
def test_j_non_integers_are_still_refused(value):
    with pytest.raises(ValueError, match="'maxiter' must be a positive integer"):
        nk.minimize(lin_res, np.zeros(2), method="lm", jac=A, options={"maxiter": value})


def test_j_hig_exponent_accepts_numpy_numbers():
    res = nk.minimize(lin_res, np.zeros(2), method="hig", jac=A,
                      options={"exponent": np.int64(-1)})
    assert res.success


@pytest.mark.parametrize("method", ["lm", "gn", "hig"])
def test_j_jac_true_for_least_squares(method):
    """fun returns (r, J): the same iterates as with jac=callable, one call of fun per point
    (nfev counts the calls exactly), and njev the Jacobians used (at most one per call)."""
    res_fn, jac = _exp_fit(1.0)
    calls = {"n": 0}

    def both(x):
        calls["n"] += 1
        return res_fn(x), jac(x)

    x0 = np.array([1.0, 0.3])
    opts = {"line_search": True} if method == "hig" else {}
    ref = nk.minimize(res_fn, x0, method=method, jac=jac, options=opts)
    res = nk.minimize(both, x0, method=method, jac=True, options=opts)
    # the same run, whatever its end: HIG's line search on this exact fit ends at f's rounding
    # floor, with ZERO on some machines and LINE_SEARCH (not a success) on others
    assert res.termination == ref.termination and res.success == ref.success
    assert res.success or method == "hig"
    np.testing.assert_array_equal(res.x, ref.x)
    assert res.nfev == calls["n"] == ref.nfev
    assert res.njev == ref.njev <= res.nfev


def test_j_jac_true_needs_a_pair():
    with pytest.raises(ValueError, match=r"jac=True.*\(r, J\).*got a numpy ndarray"):
        nk.minimize(lin_res, np.zeros(2), method="lm", jac=True)
