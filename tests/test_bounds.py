"""Bounds ``l <= x <= u`` (issue 15 part 2): feasibility, first-order conditions, the unbounded
case unchanged, agreement with SciPy's ``trf``, bad input, backends and dtypes."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.optimize as so
from hypothesis import given
from hypothesis import strategies as st

import newtonkit as nk
from benchmarks import nls_problems as nls
from newtonkit._bounds import cl_scaling, projected_gradient

LSQ_METHODS = ("lm", "gn", "trf", "hig")


class Boxed:
    """A residual that asserts every point it is evaluated at lies in the box."""

    def __init__(self, fun, lb, ub):
        self.fun, self.lb, self.ub, self.calls = fun, np.asarray(lb), np.asarray(ub), 0

    def __call__(self, x):
        self.calls += 1
        xn = np.asarray(x, dtype=float)
        assert np.all(xn >= self.lb) and np.all(xn <= self.ub), (xn, self.lb, self.ub)
        return self.fun(x)


def _problem(kind, a, c):
    """Residual and Jacobian: linear ``a ⊙ x − c`` plus a coupling row, or exponential."""
    if kind == "linear":
        def r(x):
            return np.concatenate([a * x - c, [x.sum() - 1.0]])

        def j(x):
            return np.vstack([np.diag(a), np.ones((1, x.size))])
    else:
        def r(x):
            return np.exp(a * x) - c

        def j(x):
            return np.diag(a * np.exp(a * x))
    return r, j


@given(kind=st.sampled_from(["linear", "exp"]), n=st.integers(1, 4), seed=st.integers(0, 10**6),
       method=st.sampled_from(LSQ_METHODS + ("newton",)),
       scheme=st.sampled_from([None, "2-point", "3-point"]))
def test_iterates_stay_in_the_box(kind, n, seed, method, scheme):
    """Every point fun is evaluated at lies in the box, difference derivatives' included
    (``scheme``: the Jacobian, or Newton's gradient, by differences)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.5, 2.0, n)
    c = rng.uniform(0.5, 3.0, n) * (1 if kind == "exp" else rng.choice([-1, 1], n)) * 2
    lb = rng.uniform(-2.0, 0.0, n)
    ub = lb + rng.uniform(0.1, 2.0, n)
    lb[rng.random(n) < 0.2] = -np.inf
    x0 = np.where(np.isfinite(lb), lb, ub - 1.0) + rng.uniform(0, 1, n) * 0.0
    x0 = np.clip(x0 + rng.uniform(0, 0.1, n), lb, ub)  # often on or near a bound
    r, j = _problem(kind, a, c)
    boxed = Boxed(r, lb, ub)
    if method == "newton":
        res = nk.minimize(lambda x: 0.5 * boxed(x) @ boxed(x),
                          x0, method="newton",
                          jac=scheme or (lambda x: j(x).T @ r(x)),
                          hess=lambda x: j(x).T @ j(x) + _second_order(kind, a, x, r(x)),
                          bounds=(lb, ub))
    else:
        opts = {"line_search": True} if method == "hig" else {}
        res = nk.minimize(boxed, x0, method=method, jac=scheme or j, bounds=(lb, ub),
                          options=opts)
    assert boxed.calls > 0
    x = np.asarray(res.x)
    assert np.all(x >= lb) and np.all(x <= ub)
    if res.success and method != "hig":  # HIG converges linearly: not always to gtol
        pg = projected_gradient(np, x, j(x).T @ r(x), lb, ub)
        # success: a gtol stop bounds ‖x − P(x − g)‖∞ by √gtol (trf, module docstring) or gtol
        # (Newton, GN), an ftol/xtol stop only by the model's decrease: 1e-3 covers those
        # here (measured ≤ 2e-5)
        assert np.max(np.abs(pg)) <= 1e-3, (pg, res.termination)


def _second_order(kind, a, x, r):
    if kind == "linear":
        return np.zeros((x.size, x.size))
    return np.diag(r * a * a * np.exp(a * x))  # Σ r_i ∇²r_i


@pytest.mark.parametrize("method", ["trf", "lm", "gn"])
def test_projected_gradient_vanishes_at_a_gtol_stop(method):
    """ftol and xtol disabled: success can only be the gtol test, ‖v ⊙ g‖∞ < gtol, and then
    |x − P(x − g)|_i = min(dist_i, |g_i|) ≤ √(dist_i |g_i|) < √gtol."""
    p = nls.rosenbrock()
    lb, ub = np.array([-2.0, -2.0]), np.array([0.5, 2.0])  # cuts off x* = (1, 1)
    gtol = 1e-7  # above the ~1.3e-8 where |g_2| stalls at f = 1/8: steps change f below ε·f
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = nk.minimize(p.residual, p.x0, method=method, jac=p.jacobian, bounds=(lb, ub),
                          options={"gtol": gtol, "ftol": 0.0, "xtol": 0.0, "maxfev": 2000})
    assert res.success and res.termination == "GTOL"
    x = np.asarray(res.x)
    g = p.jacobian(x).T @ p.residual(x)
    assert np.max(np.abs(projected_gradient(np, x, g, lb, ub))) < math.sqrt(gtol)
    v, _ = cl_scaling(np, x, g, lb, ub)
    assert np.max(np.abs(v * g)) < gtol
    assert list(res.active_mask) == [1, 0]


def test_projected_newton_first_order_conditions():
    x0 = np.array([-1.2, 1.0, 0.7])
    lb, ub = np.array([-2.0, -2.0, 0.6]), np.array([0.5, 2.0, 2.0])
    res = nk.minimize(so.rosen, x0, jac=so.rosen_der, hess=so.rosen_hess, bounds=(lb, ub))
    assert res.success and res.termination == "GTOL"
    g = so.rosen_der(res.x)
    assert np.max(np.abs(projected_gradient(np, res.x, g, lb, ub))) <= 1e-8  # gtol
    ref = so.minimize(so.rosen, x0, jac=so.rosen_der, bounds=so.Bounds(lb, ub),
                      method="L-BFGS-B", options={"gtol": 1e-12, "ftol": 1e-15})
    assert res.fun <= ref.fun * (1 + 1e-12)
    assert list(res.active_mask) == [0, 0, -1]


def test_hig_projects_its_steps():
    r, j = _problem("linear", np.array([1.0, 2.0]), np.array([3.0, -4.0]))
    lb, ub = np.array([-1.0, -1.0]), np.array([1.0, 1.0])
    boxed = Boxed(r, lb, ub)
    res = nk.minimize(boxed, np.zeros(2), method="hig", jac=j, bounds=(lb, ub))
    assert res.success
    assert list(res.active_mask) == [1, -1]
    np.testing.assert_allclose(res.x, [1.0, -1.0])


@pytest.mark.parametrize("method", ["lm", "gn", "hig", "newton"])
def test_infinite_bounds_are_the_unbounded_method(method):
    p = nls.get("box3d")
    kw = dict(method=method, jac=p.jacobian)
    fun = p.residual
    if method == "newton":
        fun, kw = p.cost, dict(method="newton", jac=lambda x: p.jacobian(x).T @ p.residual(x),
                               hess="2-point")
    a = nk.minimize(fun, p.x0, **kw)
    b = nk.minimize(fun, p.x0, bounds=(-np.inf, np.inf), **kw)
    c = nk.minimize(fun, p.x0, bounds=so.Bounds(), **kw)
    for res in (b, c):
        np.testing.assert_array_equal(res.x, a.x)
        assert (res.fun, res.nfev, res.njev, res.nit, res.status) == (
            a.fun, a.nfev, a.njev, a.nit, a.status)
        assert list(res.active_mask) == [0, 0, 0]
    ls = nk.least_squares(p.residual, p.x0, jac=p.jacobian, method="lm")
    lb = nk.least_squares(p.residual, p.x0, jac=p.jacobian, method="lm",
                          bounds=(np.full(3, -np.inf), np.inf))
    np.testing.assert_array_equal(ls.x, lb.x)
    assert ls.nfev == lb.nfev


def _cut_bounds(p):
    """Bounds halfway between x0 and SciPy lm's solution in the coordinate that moves most:
    the unconstrained minimum is cut off."""
    xs = so.least_squares(p.residual, p.x0, jac=p.jacobian, method="lm", xtol=1e-12,
                          ftol=1e-12, gtol=1e-12).x
    j = int(np.argmax(np.abs(xs - p.x0)))
    lb, ub = np.full(p.n, -np.inf), np.full(p.n, np.inf)
    mid = 0.5 * (p.x0[j] + xs[j])
    if xs[j] > p.x0[j]:
        ub[j] = mid
    else:
        lb[j] = mid
    return lb, ub


@pytest.mark.parametrize("name", ["rosenbrock", "beale", "bard", "box3d", "kowalik_osborne",
                                  "osborne1", "watson_6"])
def test_trf_matches_scipy_trf(name):
    """Tolerances 1e-12: both runs stop where one more step would lower the cost by less than
    ftol·F (ftol test) or the gradient is below 1e-12, so each final cost is within a few ftol of
    the bounded minimum, far inside the asserted 1e-8."""
    p = nls.get(name)
    lb, ub = _cut_bounds(p)
    kw = dict(jac=p.jacobian, bounds=(lb, ub), method="trf", ftol=1e-12, xtol=1e-12,
              gtol=1e-12)
    ref = so.least_squares(p.residual, p.x0, **kw)
    res = nk.least_squares(p.residual, p.x0, **kw)
    assert res.success
    assert res.cost <= ref.cost * (1 + 1e-8) + 1e-30
    assert np.all(res.x >= lb) and np.all(res.x <= ub)
    assert list(res.active_mask) == list(ref.active_mask)
    assert res.active_mask.any()  # the bound is active at the solution
    assert res.njev <= ref.njev


def _loose_bounds(p):
    """The box of x0 and the unconstrained solution widened by 1 + the span (bench_lsq's
    inactive set): finite, so Coleman-Li's scaling is on, but no bound is active."""
    xs = so.least_squares(p.residual, p.x0, jac=p.jacobian, method="lm", xtol=1e-12,
                          ftol=1e-12, gtol=1e-12).x
    lo, hi = np.minimum(p.x0, xs), np.maximum(p.x0, xs)
    return lo - (1 + hi - lo), hi + (1 + hi - lo)


@pytest.mark.parametrize("name, box, x_scale", [
    ("biggs_exp6", "cut", None), ("wood", "cut", None), ("meyer", "cut", None),
    ("linear_rank1_5", "loose", None), ("rosenbrock", "loose", "jac"), ("bard", "cut", "jac"),
    ("bard", "cut", [1.0, 2.0, 3.0]), ("kowalik_osborne", "none", [1.0, 0.5, 2.0, 4.0]),
    ("osborne1", "none", "jac")])
def test_trf_follows_scipy_trf_bit_for_bit(name, box, x_scale):
    """trf does SciPy trf's floating-point operations (``tr_solver='exact'``) on NumPy float64:
    every evaluated point, the result and the counts are identical bit for bit.  Rounding
    decides the path where the Jacobian is rank-deficient (biggs_exp6 keeps x1 = x5 until
    rounding breaks it; linear_rank1) and on long runs, so any other rounding (a QR before the
    SVD, another order of a sum) sends these runs elsewhere; the bound is exact equality."""
    p = nls.get(name)
    bounds = {"cut": _cut_bounds, "loose": _loose_bounds}.get(box, lambda p: (-np.inf, np.inf))(p)
    kw = dict(jac=p.jacobian, bounds=bounds, method="trf", ftol=1e-10, xtol=1e-10, gtol=1e-10,
              max_nfev=100 * (p.n + 1), x_scale=x_scale)
    points = {}
    for key, solver in (("scipy", so.least_squares), ("nk", nk.least_squares)):
        points[key] = seen = []

        def fun(x, seen=seen):
            seen.append(np.array(x))
            return p.residual(x)

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = solver(fun, p.x0, **kw)
        points[key + "_res"] = res
    ref, res = points["scipy_res"], points["nk_res"]
    assert len(points["nk"]) == len(points["scipy"]) == ref.nfev
    for a, b in zip(points["scipy"], points["nk"], strict=True):
        assert np.array_equal(a, b)
    assert np.array_equal(res.x, ref.x) and res.cost == ref.cost
    assert (res.nfev, res.njev, res.status) == (ref.nfev, ref.njev, ref.status)


def test_trf_x_scale_and_dogbox_and_loss():
    p = nls.get("bard")
    lb, ub = _cut_bounds(p)
    ref = so.least_squares(p.residual, p.x0, jac=p.jacobian, bounds=(lb, ub), x_scale="jac")
    for kw in ({"x_scale": "jac"}, {"x_scale": np.array([1.0, 2.0, 3.0])},
               {"method": "dogbox"}, {"method": "lm"}, {"method": "gn"}):
        res = nk.least_squares(p.residual, p.x0, jac=p.jacobian, bounds=(lb, ub), **kw)
        assert res.success, kw
        assert res.cost <= ref.cost * (1 + 1e-6), kw  # default tolerances 1e-8: ftol·(a few)
    robust = so.least_squares(p.residual, p.x0, jac=p.jacobian, bounds=(lb, ub), loss="soft_l1")
    res = nk.least_squares(p.residual, p.x0, jac=p.jacobian, bounds=(lb, ub), loss="soft_l1",
                           method="trf")
    assert res.success and res.cost <= robust.cost * (1 + 1e-6)


def test_trf_scaling_option_checks():
    """``scaling`` is a bool or n positive finite scales (SciPy's ``x_scale``), else an error
    naming it; the array form is SciPy's fixed scaling (bit for bit above)."""
    p = nls.get("bard")
    for bad in (np.ones(4), np.array([1.0, 0.0, 1.0]), np.array([1.0, np.inf, 1.0]), "jac"):
        with pytest.raises(ValueError, match="scaling"):
            nk.minimize(p.residual, p.x0, method="trf", jac=p.jacobian,
                        options={"scaling": bad})
    res = nk.minimize(p.residual, p.x0, method="trf", jac=p.jacobian,
                      options={"scaling": np.array([1.0, 2.0, 3.0])})
    assert res.success


def test_bad_bounds():
    f = lambda x: x - 3.0  # noqa: E731
    x0 = np.array([1.0, 1.0])
    lb, ub = np.zeros(2), np.full(2, 2.0)
    keep = (lb.copy(), ub.copy(), x0.copy())
    for call in (lambda b, x: nk.least_squares(f, x, bounds=b, jac=lambda x: np.eye(2)),
                 lambda b, x: nk.minimize(f, x, method="lm", bounds=b, jac=lambda x: np.eye(2))):
        with pytest.raises(ValueError, match="strictly less"):
            call((ub, lb), x0)
        with pytest.raises(ValueError, match="strictly less"):
            call((1.0, 1.0), x0)
        with pytest.raises(ValueError, match="inconsistent shapes between bounds"):
            call((np.zeros(3), 2.0), x0)
        with pytest.raises(ValueError, match="NaN"):
            call((np.array([0.0, np.nan]), 2.0), x0)
        with pytest.raises(ValueError, match="x0 .*outside of provided bounds"):
            call((1.5, 2.0), x0)
        with pytest.raises(ValueError, match="2 elements"):
            call((0.0, 1.0, 2.0), x0)
        res = call((lb, ub), x0)
        np.testing.assert_allclose(res.x, [2.0, 2.0])
    for a, b in zip(keep, (lb, ub, x0), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="batch=True"):  # batched bounds: 'lm', 'gn' only
        nk.minimize(lambda X: X, np.ones((2, 2)), method="hig", bounds=(0, 2), batch=True)
    with pytest.raises(ValueError, match="dense Hessian"):
        nk.minimize(lambda x: x @ x, x0, method="newton", hessp=lambda x, p: 2 * p,
                    jac=lambda x: 2 * x, bounds=(lb, ub))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", ["numpy", "torch", "array_api_strict"])
@pytest.mark.parametrize("method", ["trf", "newton"])
def test_backends_and_dtypes(backend, dtype, method):
    xp = pytest.importorskip(backend)
    a = np.array([1.0, 2.0, 0.5])
    c = np.array([3.0, -4.0, 0.2])
    dt = getattr(xp, dtype)
    A, C = xp.asarray(a, dtype=dt), xp.asarray(c, dtype=dt)
    lb = np.array([-1.0, -1.0, -1.0])
    ub = np.array([1.0, 1.0, 1.0])
    x0 = xp.asarray(np.zeros(3), dtype=dt)
    if method == "trf":
        res = nk.least_squares(lambda x: A * x - C, x0, jac=lambda x: xp.eye(3, dtype=dt) * A,
                               bounds=(lb, ub), method="trf")
    else:
        res = nk.minimize(lambda x: 0.5 * xp.sum((A * x - C) ** 2), x0,
                          jac=lambda x: A * (A * x - C),
                          hess=lambda x: xp.eye(3, dtype=dt) * A * A, bounds=(lb, ub))
    assert res.success, res.message
    assert res.x.dtype == dt
    x = np.asarray(res.x if backend != "torch" else res.x.numpy(), dtype=float)
    tol = 1e-3 if dtype == "float32" else 1e-6
    np.testing.assert_allclose(x, [1.0, -1.0, 0.4], atol=tol)
    assert list(res.active_mask) == [1, -1, 0]


@pytest.mark.parametrize("method", ["trf", "lm", "gn"])
def test_bounded_underflow_is_not_a_success(method):
    """Under bounds (the trust-region reflective method) as without: residuals 1e-170·(x − 1),
    whose ½‖r‖² rounds to 0 at x0 = 0, end UNDERFLOW (the projected gradient, 1e-340, also
    rounded to 0 and ended GTOL there); residuals exactly 0 end ZERO."""
    box = ([-5.0] * 3, [5.0] * 3)
    res = nk.minimize(lambda x: 1e-170 * (x - 1), np.zeros(3), method=method, bounds=box)
    assert res.termination == "UNDERFLOW" and not res.success
    res = nk.minimize(lambda x: x - 1, np.ones(3), method=method, bounds=box)
    assert res.termination == "ZERO" and res.success


def test_trf_jac_scaling_survives_overflowing_column_norms():
    """A Jacobian column of 1e160: its sum of squares overflows, so SciPy's scale (1/‖J_j‖)
    is 0 and its trf raises on a NaN SVD (as newtonkit's did).  The norms are the
    linearization's, MINPACK's scaled ones where the squares overflow: the run ends in the
    box at x₀ = 1 (r₀ = 0)."""
    def fun(x):
        return np.array([1e160 * (x[0] - 1.0), x[1] - 2.0, 1e-3 * x[0] * x[1]])

    def jac(x):
        return np.array([[1e160, 0.0], [0.0, 1.0], [1e-3 * x[1], 1e-3 * x[0]]])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the plain norms' overflow
        res = nk.least_squares(fun, np.array([1.0, 0.0]), jac=jac, x_scale="jac",
                               bounds=([-5.0, -5.0], [5.0, 5.0]))
    assert np.isfinite(res.x).all() and res.x[0] == 1.0 and abs(res.x[1]) <= 5.0


def _rosen(x):
    return np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def _rosen_jac(x):
    return np.array([[-20 * x[0], 10.0], [-1.0, 0.0]])


@pytest.mark.parametrize("wide", [1e6, 1e10, 1e200, 1e300])
def test_trf_in_huge_boxes_and_its_zero_residual_status(wide):
    """Bounds at ±1e200: Coleman-Li's scaling makes s ≈ 1e100, and the λ iteration's
    Σ suf²/den³ overflowed to a zero derivative (ZeroDivisionError; SciPy ends XTOL at x0
    there).  With Σ q²/den the run solves it.  And at the zero residual the last gradient test
    says ZERO (SciPy's status 1), not the step test's XTOL; nfev/njev are SciPy's where SciPy
    solves it."""
    res = nk.least_squares(_rosen, [-1.2, 1.0], jac=_rosen_jac, bounds=(-wide, wide),
                           method="trf")
    assert res.success and res.termination == "ZERO" and res.status == 1
    assert np.array_equal(res.x, [1.0, 1.0])
    if wide <= 1e10:
        ref = so.least_squares(_rosen, [-1.2, 1.0], jac=_rosen_jac, bounds=(-wide, wide),
                               method="trf")
        assert (res.nfev, res.njev, res.status) == (ref.nfev, ref.njev, ref.status)
    # parameters of order 1e-150: the model's step has ‖p‖ = 0 in the λ iteration (it divided
    # by it); the run ends without an exception (XTOL's floor xtol², docs/guide.md)
    sc = 1e-150
    tiny = nk.least_squares(lambda x: _rosen(x / sc), [-1.2 * sc, sc],
                            jac=lambda x: _rosen_jac(x / sc) / sc, method="trf")
    assert tiny.termination in ("XTOL", "ZERO", "GTOL")


@given(n=st.integers(1, 6), seed=st.integers(0, 10**6),
       scheme=st.sampled_from(["2-point", "3-point"]))
def test_difference_steps_in_the_box_are_scipys(n, seed, scheme):
    """``steps_in_box`` is SciPy's ``_adjust_scheme_to_bounds`` (``approx_derivative``): the
    same signed steps and one-sided choices, bit for bit, for points on, near and away from
    the bounds, and every difference point (x + h, and x − h or x + 2h) in the box."""
    from scipy.optimize._numdiff import _adjust_scheme_to_bounds

    from newtonkit.problems._fd import difference_steps, steps_in_box

    rng = np.random.default_rng(seed)
    lb = rng.uniform(-1.0, 0.0, n)
    ub = lb + rng.choice([1e-9, 1e-7, 0.5, 2.0], n)
    lb[rng.random(n) < 0.2] = -np.inf
    ub[rng.random(n) < 0.2] = np.inf
    lo, hi = np.where(np.isfinite(lb), lb, -3.0), np.where(np.isfinite(ub), ub, 3.0)
    x = np.clip(lo + (hi - lo) * rng.choice([0.0, 1.0, 1e-9, 1 - 1e-9, 0.5], n), lb, ub)
    h = difference_steps(np, x, scheme)
    ours, one_sided = steps_in_box(np, x, h, scheme, (lb, ub))
    theirs, sided = _adjust_scheme_to_bounds(x, h, 1, "1-sided" if scheme == "2-point"
                                             else "2-sided", lb, ub)
    np.testing.assert_array_equal(ours, theirs)
    if scheme == "3-point":  # (2-point differences are all one-sided in SciPy's terms)
        np.testing.assert_array_equal(one_sided, sided)
    far = np.where(one_sided, x + 2 * ours, x - ours)
    for z in (x + ours, far if scheme == "3-point" else x):
        assert np.all(z >= lb) and np.all(z <= ub)


# -- the projected gradient: rounding and scales -------------------------------------------------


def test_projected_gradient_keeps_a_gradient_below_the_rounding_of_x():
    """A free variable's entry is g itself, however small against x: x − (x − g) rounds to 0
    where |g| < ulp(x)/2 (Meyer's function at x₃ = 2e18 had g₃ = −4e-29 and a scaled gradient
    of 0.8, read as 0: a false gtol stop).  On a bound, the part pointing out is dropped; a
    variable whose step passes a bound gets the way to it."""
    x = np.array([2e18, -2987.9, 0.5, 1.0, 0.0])
    g = np.array([-4e-29, 3e-14, 2.0, -3.0, 0.25])
    lb = np.array([0.0, -2987.9, 0.5, -1.0, -1.0])
    ub = np.array([np.inf, np.inf, 1.0, 1.5, 1.0])
    pg = projected_gradient(np, x, g, lb, ub)
    np.testing.assert_array_equal(pg, [-4e-29, 3e-14, 0.0, -0.5, 0.25])


@given(seed=st.integers(0, 10**6), k=st.sampled_from([-40, -10, 0, 13, 50]))
def test_scaled_projected_gradient_is_free_of_the_variables_scales(seed, k):
    """With h = ‖J_j‖² the projected gradient over the column norms is the projected gradient in
    z = ‖J_j‖·x, so it is the same for the variables x' = x/c (J' = cJ, g' = cg, bounds /c).
    With c powers of two every operation scales exactly: equal bit for bit.  The plain
    x − P(x − g) is not: a variable on its way to a bound contributes its distance, whose
    units are not the gradient's (c² apart here; Osborne 1: 1e-62 by MINPACK's cosine, 2.7
    from a bound, a false gtol stop at x0)."""
    rng = np.random.default_rng(seed)
    n = 6
    x = rng.uniform(-1.0, 1.0, n)
    lb, ub = x - rng.uniform(0.0, 1.0, n), x + rng.uniform(0.0, 1.0, n)
    on = rng.random(n) < 0.3
    lb[on] = x[on]  # some on a bound
    ub[rng.random(n) < 0.2] = np.inf
    g = rng.standard_normal(n) * 10.0 ** rng.uniform(-3, 3, n)
    cn = 10.0 ** rng.uniform(-3, 3, n)
    c = 2.0 ** (k + rng.integers(-2, 3, n))
    a = projected_gradient(np, x, g, lb, ub, cn) / cn
    b = projected_gradient(np, x / c, c * g, lb / c, ub / c, c * cn) / (c * cn)
    np.testing.assert_array_equal(b, a)


def test_a_bounded_run_far_from_a_bound_does_not_stop_gtol_at_x0():
    """Osborne 1 from x0 = (0.36, 0.79, −1.07, −0.22, 0.25), f = 4.4e60: x₂ and x₄ have huge
    gradients (columns of norm 1e30) pushing them to bounds 2.7 and 0.19 away.  The plain
    projected gradient (those distances) over the column norms read 1e-62 and HIG and the
    batched projected Gauss-Newton reported GTOL, success, at x0."""
    p = nls.osborne1()
    s = np.array([0.36, 0.79, -1.07, -0.22, 0.25])
    lb = np.array([-0.4, -1.95, -2.74, -1.94, -np.inf])
    ub = np.array([0.98, 3.17, np.inf, -0.03, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = nk.minimize(p.residual, s, method="hig", jac=p.jacobian, bounds=(lb, ub),
                          options={"maxiter": 5})
        bat = nk.minimize(lambda X: np.stack([p.residual(x) for x in X]), s[None],
                          method="gn", jac=lambda X: np.stack([p.jacobian(x) for x in X]),
                          bounds=(lb, ub), batch=True, options={"maxiter": 1})
    assert res.termination != "GTOL" and res.nit > 0
    assert bat.status[0] != "GTOL"
