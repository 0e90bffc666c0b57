"""newtonkit.least_squares against scipy.optimize.least_squares, robust losses, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.optimize as so
from hypothesis import given, settings
from hypothesis import strategies as st

import newtonkit as nk
from benchmarks import nls_problems as nls
from newtonkit.problems._robust import LOSSES, RobustLoss

EPS = np.finfo(float).eps
# Well-conditioned MGH problems with analytic Jacobians (cond(J) at the solution ≤ 1e4).
LM_PROBLEMS = ["rosenbrock", "bard", "osborne1", "kowalik_osborne", "box3d"]


@pytest.mark.parametrize("name", LM_PROBLEMS)
def test_lm_matches_scipy_lm(name):
    p = getattr(nls, name)()
    a = nk.least_squares(p.residual, p.x0, jac=p.jacobian)
    b = so.least_squares(p.residual, p.x0, jac=p.jacobian, method="lm")
    # Both run MINPACK's algorithm (lmder, factor 100, Jacobian scaling): the same trials, so
    # the same nfev and status; x differs by rounding only, about nfev·κ(J)·ε per trial
    # (SVD here, QR in MINPACK).  The bound below is that estimate with a factor 100.
    assert a.nfev == b.nfev and a.status == b.status and a.success
    kappa = np.linalg.cond(p.jacobian(b.x))
    bound = 100 * b.nfev * kappa * EPS
    assert bound <= 2e-8  # well-conditioned: 1e-8 (the brief's) or near it (osborne1 2e-8)
    np.testing.assert_allclose(a.x, b.x, rtol=bound, atol=bound * np.abs(b.x).max())
    # cost: stationary in x, so its relative error is below the same bound (absolute for
    # zero-residual problems, cost ~ ε²)
    assert abs(a.cost - b.cost) <= bound * b.cost + 1e-28
    np.testing.assert_allclose(a.fun, b.fun, rtol=0, atol=1e-8 * max(1.0, np.abs(b.fun).max()))
    np.testing.assert_allclose(a.jac, b.jac, rtol=1e-8, atol=1e-8 * np.abs(b.jac).max())
    assert a.optimality == pytest.approx(np.abs(a.jac.T @ a.fun).max(), rel=1e-12, abs=1e-300)
    assert a.active_mask.tolist() == [0] * p.n and a.njev >= 1


@pytest.mark.parametrize("name", ["bard", "osborne1", "kowalik_osborne"])
def test_lm_finite_differences_reach_scipy_cost(name):
    p = getattr(nls, name)()
    a = nk.least_squares(p.residual, p.x0)  # '2-point'
    b = so.least_squares(p.residual, p.x0, method="lm")
    # Difference Jacobians (different steps) stop at different x within the ftol test
    # (relative cost change ≤ 1e-8 per step); the cost is stationary, so it agrees to
    # O(ftol²) + rounding: 1e-9 relative is a bound with margin.
    assert a.success and a.njev is None
    assert abs(a.cost - b.cost) <= 1e-9 * b.cost


def test_x_scale_array_matches_scipy():
    p = nls.bard()
    s = np.array([0.1, 1.0, 3.0])
    a = nk.least_squares(p.residual, p.x0, jac=p.jacobian, x_scale=s)
    b = so.least_squares(p.residual, p.x0, jac=p.jacobian, method="lm", x_scale=s)
    # u = x/s with D = I is MINPACK's diag = 1/s exactly: same trials (rounding only, as above)
    assert a.nfev == b.nfev
    np.testing.assert_allclose(a.x, b.x, rtol=1e-8)


def test_status_codes_and_budget():
    p = nls.rosenbrock()
    a = nk.least_squares(p.residual, p.x0, jac=p.jacobian)
    assert a.status == 1 and a.success  # zero residual: MINPACK's gtol (info 4 -> 1)
    a = nk.least_squares(p.residual, p.x0, jac=p.jacobian, max_nfev=3)
    assert a.status == 0 and not a.success and a.nfev <= 3
    p = nls.bard()
    a = nk.least_squares(p.residual, p.x0, jac=p.jacobian, method="gn")
    assert a.success and a.status in (1, 2, 3, 4)
    b = so.least_squares(p.residual, p.x0, jac=p.jacobian, method="lm")
    assert abs(a.cost - b.cost) <= 1e-9 * b.cost


# -- robust losses ---------------------------------------------------------------------------
def _outlier_problem():
    rng = np.random.default_rng(0)
    t = np.linspace(0, 3, 60)
    y = 2.0 * np.exp(-1.3 * t) + 0.5 + 0.02 * rng.standard_normal(t.size)
    out = rng.choice(t.size, 6, replace=False)  # 10 % gross outliers
    y[out] += rng.choice([-1, 1], 6) * rng.uniform(1, 3, 6)

    def fun(p):
        return p[0] * np.exp(p[1] * t) + p[2] - y

    def jac(p):
        e = np.exp(p[1] * t)
        return np.stack([e, p[0] * t * e, np.ones_like(t)], 1)

    return fun, jac, np.array([1.0, -1.0, 0.0])


TIGHT = dict(ftol=1e-12, xtol=1e-12, gtol=1e-12)


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
@pytest.mark.parametrize("method", ["lm", "gn"])
def test_robust_loss_matches_scipy_trf(loss, method):
    fun, jac, x0 = _outlier_problem()
    a = nk.least_squares(fun, x0, jac=jac, loss=loss, f_scale=0.1, method=method, **TIGHT)
    b = so.least_squares(fun, x0, jac=jac, loss=loss, f_scale=0.1, method="trf", **TIGHT)
    assert a.success and b.success
    # Both stop when a step changes the cost by ≤ ftol·F; near the minimum F - F* ≤ ftol·F
    # puts x within sqrt(2·ftol·F/λ_min(H)) of x*, H = JᵀWJ the Gauss-Newton Hessian (SciPy's
    # modified J at its solution).  Each solver may be that far off: twice it, times 10 for
    # the Gauss-Newton approximation of H (the ρ″ terms of clamped rows), bounds ‖x_a - x_b‖.
    lam = np.linalg.eigvalsh(b.jac.T @ b.jac)[0]
    bound = 20 * np.sqrt(2 * 1e-12 * b.cost / lam)
    assert np.linalg.norm(a.x - b.x) <= bound, (np.linalg.norm(a.x - b.x), bound)
    assert abs(a.cost - b.cost) <= 1e-10 * b.cost  # stationary: quadratic in the x error
    # SciPy's fields at x: the modified J (ε clamp) and the gradient Jᵀρ′f
    np.testing.assert_allclose(a.fun, fun(a.x), rtol=0, atol=0)
    np.testing.assert_allclose(a.grad, b.grad, atol=1e-6)
    np.testing.assert_allclose(a.jac, b.jac, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
@pytest.mark.parametrize("name", ["jennrich_sampson", "kowalik_osborne", "osborne1"])
def test_robust_trf_is_scipy_trf(name, loss):
    """trf with a robust loss takes SciPy's Triggs model (curvature floor 0): SciPy trf's
    model up to the rounding of the loss arithmetic (newtonkit's soft_l1 avoids SciPy's
    cancellation; ρ′ = 1/√z for SciPy's z^-½), so the first trial point is SciPy's to
    rounding (cond ≤ 1e4 here: 1e-10 relative leaves a wide margin), and the run ends at
    SciPy's cost to 1e-9 relative (later steps may part where a last-bits difference flips an
    acceptance or the ftol test).  newtonkit's lm floor (δ = 0.1) fails this on all twelve
    (other weights on the outlier rows: another first step)."""
    p = nls.get(name)
    o = np.zeros(p.m)
    o[:: 5] = 10.0 * np.std(p.residual(p.x0))  # gross outliers on every fifth residual
    kw = dict(jac=p.jacobian, loss=loss, f_scale=0.1 * np.std(p.residual(p.x0)), method="trf",
              ftol=1e-10, xtol=1e-10, gtol=1e-10)
    points = []
    for solver in (nk.least_squares, so.least_squares):
        seen = []
        res = solver(lambda x, seen=seen: seen.append(np.array(x)) or p.residual(x) + o,
                     p.x0, **kw)
        points.append((seen[1], res))
    (xa, a), (xb, b) = points
    assert np.linalg.norm(xa - xb) <= 1e-10 * np.linalg.norm(xb)
    assert a.status == b.status and abs(a.cost - b.cost) <= 1e-9 * b.cost


@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
def test_huge_f_scale_is_linear(loss):
    fun, jac, x0 = _outlier_problem()
    a = nk.least_squares(fun, x0, jac=jac, loss=loss, f_scale=1e8)
    b = nk.least_squares(fun, x0, jac=jac)
    # z = (r/C)² ≤ 1e-15 here, where ρ(z) = z(1 + O(z)): the cost and every derivative are
    # those of the linear loss to a relative 1e-15; the runs agree to rounding.
    np.testing.assert_allclose(a.x, b.x, rtol=1e-10)
    assert a.cost == pytest.approx(b.cost, rel=1e-12)



@pytest.mark.parametrize("name", ["soft_l1", "huber", "cauchy", "arctan"])
def test_far_residuals_take_the_limits_without_warnings(name):
    """A far trial point (|r| beyond 1e154·C: z overflows) or an infinite residual: the loss
    takes its limits, ρ → inf (arctan: π/2), ρ′ and ρ″ → 0, with no NumPy warning (the suite
    turns the library's RuntimeWarnings into errors); soft_l1 used to give inf/inf = NaN."""
    loss = RobustLoss(name, 0.5)
    r = np.array([1e200, -1e300, np.inf, -np.inf])
    value = float(loss.value(r))
    _, (p0, p1, p2) = loss.rho(r)
    if name == "arctan":
        assert np.all(p0 == np.pi / 2) and value == 0.5 * 0.25 * 4 * (np.pi / 2)
    else:
        assert np.all(p0 == np.inf) and value == np.inf
    assert np.all(p1 == 0) and np.all(p2 == 0)
    assert np.all(np.isfinite(loss.grad(r[:2])))  # ρ′r = 0 · finite


@pytest.mark.parametrize("name", ["soft_l1", "huber", "cauchy", "arctan"])
def test_weights_where_z_overflows_are_finite(name):
    """Where z = (r/C)² overflows (|r| > 1e154·C, r finite) ρ′ and ρ″ are 0, and ρ″ adds
    nothing to the curvature weight: max(ρ′ + 2ρ″z, δρ′) is its clamp, not 0·inf = NaN (arctan
    gave NaN weights, with NumPy's warning, at a start with residuals of 1e217).  Such a row
    carries nothing: r̃ = ρ′r/√w = 0."""
    r = np.array([1e200, -1e300, 3.0])
    for floor in (0.1, 0.0):
        loss = RobustLoss(name, 0.5, floor=floor)
        w = loss.hessian_diag(r)
        rt, sw = loss.gauss_newton(r)
        # δ > 0: weight δρ′ = 0 (the row carries nothing); δ = 0: SciPy's clamp ε
        assert np.all(np.isfinite(w)) and np.array_equal(w[:2], [0.0 if floor > 0 else EPS] * 2)
        assert np.array_equal(rt[:2], [0.0, 0.0]) and np.isfinite(sw).all() and rt[2] != 0


def _flat_arctan_problem():
    """A fit (x* = 0.02) whose start x = 5 has residuals from 3.7e108 to 1.4e217: arctan's
    ρ′ = 1/(1 + z²) underflows to 0 at every one (z² or z itself overflows)."""
    t = np.linspace(0.5, 1.0, 8)
    y = np.exp(2.0 * t)

    def fun(x):
        with np.errstate(over="ignore"):  # (inf at far trial points)
            return np.exp(100.0 * x[..., :1] * t) - y

    def jac(x):
        with np.errstate(over="ignore"):
            return (100.0 * t * np.exp(100.0 * x[..., :1] * t))[..., None]

    return fun, jac


@pytest.mark.parametrize("method", ["lm", "trf", "gn", "hig"])
def test_a_loss_flat_at_every_residual_is_no_success(method):
    """Every residual beyond where arctan's slope underflows: the gradient J^T(ρ′r) is exactly
    0, so the gradient test held and the run ended GTOL, success, at x0, far from the fit
    (reached from x0 = 0.05).  It ends FLAT_LOSS."""
    fun, jac = _flat_arctan_problem()
    x0 = np.array([5.0])

    class Model:
        def __call__(self, x):
            return fun(x)

        def jacobian(self, x):
            return jac(x)

    if method in ("lm", "trf"):
        res = nk.least_squares(fun, x0, jac=jac, loss="arctan", method=method)
        assert res.status == -3
    else:
        res = nk.minimize(nk.Composite(Model(), RobustLoss("arctan")), x0, method=method)
    assert not res.success and res.termination == "FLAT_LOSS"
    assert "1.4e+217" in res.message and np.array_equal(x0, [5.0])
    good = nk.least_squares(fun, np.array([0.05]), jac=jac, loss="arctan", method="lm")
    assert good.success and abs(good.x[0] - 0.02) < 1e-8


@pytest.mark.parametrize("method", ["lm", "gn"])
def test_batched_loss_flat_at_every_residual_is_no_success(method):
    """The batched path's rows: the flat one ends FLAT_LOSS, the other converges."""
    fun, jac = _flat_arctan_problem()
    X0 = np.array([[5.0], [0.05]])
    res = nk.minimize(nk.Composite(fun, RobustLoss("arctan")), X0, method=method, jac=jac,
                      batch=True)
    assert res.termination_of(0) == "FLAT_LOSS" and not res.success[0]
    assert res.success[1] and abs(res.x[1, 0] - 0.02) < 1e-6


def test_soft_l1_is_scipys_above_one_and_cancellation_free_below():
    """ρ = 2(√(1+z) − 1), SciPy's form, for z > 1 (bit for bit); 2z/(√(1+z) + 1) for z ≤ 1,
    where SciPy's form cancels (z = 1e-20: SciPy's reads 0, the true value 2e-20·(1 − z/4))."""
    z_big = np.geomspace(1.0 + 2 * EPS, 1e300, 50)
    _, (rho, _, _) = RobustLoss("soft_l1", 1.0).rho(np.sqrt(z_big))
    assert np.array_equal(rho, 2 * ((1 + z_big) ** 0.5 - 1))
    z_small = np.array([1e-20, 1e-10, 0.5, 1.0])
    _, (rho, _, _) = RobustLoss("soft_l1", 1.0).rho(np.sqrt(z_small))
    exact = 2 * z_small / (np.sqrt(1 + z_small) + 1)
    # one correctly rounded sqrt, an add and a divide: 3 roundings, and z itself from √z²
    assert np.all(np.abs(rho - exact) <= 6 * EPS * exact)
    assert rho[0] > 0

def test_callable_loss_matches_builtin():
    fun, jac, x0 = _outlier_problem()

    def my_cauchy(z):
        return np.stack([np.log1p(z), 1 / (1 + z), -1 / (1 + z) ** 2])

    a = nk.least_squares(fun, x0, jac=jac, loss=my_cauchy, f_scale=0.1)
    b = nk.least_squares(fun, x0, jac=jac, loss="cauchy", f_scale=0.1)
    np.testing.assert_array_equal(a.x, b.x)
    with pytest.raises(ValueError, match="rho, rho', rho''"):
        nk.least_squares(fun, x0, jac=jac, loss=lambda z: z, f_scale=0.1)


def test_robust_loss_finite_differences_and_hig():
    fun, jac, x0 = _outlier_problem()
    b = so.least_squares(fun, x0, loss="soft_l1", f_scale=0.1, **TIGHT)
    a = nk.least_squares(fun, x0, loss="soft_l1", f_scale=0.1, **TIGHT)
    assert a.success and a.njev is None and a.nfev > 0
    assert abs(a.cost - b.cost) <= 1e-9 * b.cost
    a = nk.least_squares(fun, x0, jac=jac, loss="soft_l1", f_scale=0.1, method="hig")
    # HIG runs on the Composite (first-order-like here: it only approaches the minimum)
    assert a.method == "hig" and a.cost < float(RobustLoss("soft_l1", 0.1).value(fun(x0)))


# -- loss derivatives (property tests) -------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(sorted(LOSSES)), z=st.floats(0.0, 100.0))
def test_rho_derivatives_are_differences(name, z):
    xp = np.asarray
    h = 1e-4 * max(1.0, z)
    if name == "huber" and abs(z - 1.0) < 2 * h:
        return  # ρ″ jumps at z = 1
    zs = xp([max(z - h, 0.0), z, z + h])
    lo, mid = zs[0], zs[1]
    rho = LOSSES[name](np, zs)
    # Differences over [lo, z + h]: error ≤ (width)·max|ρ‴|/2 + 2ε·max(|ρ|, 1)/width, with
    # |ρ‴| ≤ 3 on z ≥ 0 for every built-in loss (cauchy: 2/(1+z)³ the largest); times 10.
    width = zs[2] - lo
    for k in (0, 1):
        fd = (rho[k][2] - rho[k][0]) / width
        exact = rho[k + 1][1] if lo == z - h else (rho[k + 1][0] + rho[k + 1][2]) / 2
        tol = 10 * (width * 3 + 2 * EPS * max(abs(rho[k]).max(), 1) / width)
        assert abs(fd - exact) <= tol, (name, z, k, fd, exact)
    assert rho[1][1] > 0 and rho[0][1] >= 0 and mid >= 0


@settings(max_examples=100, deadline=None)
@given(name=st.sampled_from(sorted(LOSSES)), r=st.floats(-50.0, 50.0),
       c=st.floats(0.01, 10.0))
def test_robust_loss_grad_is_derivative_of_value(name, r, c):
    loss = RobustLoss(name, c)
    h = 1e-5 * max(1.0, abs(r))
    v = [float(loss.value(np.array([r + s]))) for s in (-h, h)]
    fd = (v[1] - v[0]) / (2 * h)
    g = float(loss.grad(np.array([r]))[0])
    # central difference of C²ρ((r/C)²)/2: truncation h²·|L‴|/6 with |L‴| ≤ 6/C·(1 + |r|/C)
    # (bounds of ρ′, ρ″, ρ‴), rounding 2ε·|L|/h; times 10
    L = abs(float(loss.value(np.array([r])))) + 1.0
    tol = 10 * (h * h * (1 + abs(r) / c) / c + 2 * EPS * L / h)
    if name == "huber" and abs(abs(r) - c) < 2 * h:
        return
    assert abs(fd - g) <= tol, (fd, g, tol)


@pytest.mark.parametrize("name", ["soft_l1", "huber", "cauchy", "arctan"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_curvature_floor_is_relative_to_rho_prime(name, dtype):
    """With δ > 0 an outlier row's weight is max(ρ′ + 2ρ″z, δρ′), relative to its own ρ′ at
    any distance: an absolute ε beside it ruled wherever ρ′ < ε/δ (far outliers) and gave those
    rows up to ε/ρ′ times their IRLS curvature.  The residuals run from 100·C out to where z
    nears the dtype's overflow (rows whose δρ′ is below the smallest normal left out)."""
    loss = RobustLoss(name, 0.5)
    top = 1e150 if dtype == np.float64 else 1e18
    r = np.geomspace(1e2, top, 9).astype(dtype) * 0.5
    z, (_, p1, p2) = loss.rho(r)
    keep = p1 >= np.finfo(dtype).smallest_normal / loss.floor
    w = loss.hessian_diag(r)[keep]
    want = np.maximum(p1 + 2 * p2 * z, loss.floor * p1)[keep]
    # the same arithmetic: equal to the last bit
    assert np.array_equal(w, want), (w, want)
    assert np.all(w >= loss.floor * p1[keep]) and np.all(w > 0)
    assert keep.sum() >= 3
    # δ = 0 keeps SciPy's clamp at ε
    scipy_w = RobustLoss(name, 0.5, floor=0.0).hessian_diag(r)
    assert np.all(scipy_w >= np.finfo(dtype).eps)


def test_robust_lm_far_from_the_solution_is_no_success_at_x0():
    """Osborne 1 from a start with residuals up to 6e60 (x₄ < 0), soft_l1, C = 0.1: with an
    absolute curvature floor the Gauss-Newton step was 1e-49 of x and LM ended FTOL_XTOL,
    success, at x0 (cost 6e59, gradient 2e62).  The path from here runs through trial points
    near overflow and depends on the BLAS kernels (NO_PROGRESS at cost 8e31 with OpenBLAS's
    Haswell kernels, NONFINITE just below the start's cost with Prescott's); whichever it
    takes, a success must be far below the start's cost and at a small gradient."""
    p = nls.osborne1()
    s = np.array([1.0449427822643431, 1.4775895639231607, -0.9740142211034374,
                  -0.4361218609026194, 0.51420171990683])
    cost0 = float(RobustLoss("soft_l1", 0.1).value(p.residual(s)))
    res = nk.least_squares(p.residual, s, jac=p.jacobian, loss="soft_l1", f_scale=0.1)
    assert res.cost <= cost0
    scale = np.abs(res.jac).max() * np.abs(res.fun).max()
    assert not res.success or (res.cost < 1e-6 * cost0 and res.optimality < 1e-6 * scale)


# -- backends --------------------------------------------------------------------------------
def test_torch_autodiff_matches_numpy():
    torch = pytest.importorskip("torch")
    fun, jac, x0 = _outlier_problem()
    t = torch.linspace(0, 3, 60, dtype=torch.float64)
    y = torch.as_tensor(fun(np.zeros(3)) * -1.0)  # fun(0) = -y

    def tfun(p):
        return p[0] * torch.exp(p[1] * t) + p[2] - y

    for loss in ("linear", "soft_l1"):
        a = nk.least_squares(tfun, torch.tensor(x0), jac=None, loss=loss, f_scale=0.1)
        b = nk.least_squares(fun, x0, jac=jac, loss=loss, f_scale=0.1)
        assert isinstance(a.x, torch.Tensor) and a.x.dtype == torch.float64
        np.testing.assert_allclose(a.x.numpy(), b.x, rtol=1e-10)
        assert a.cost == pytest.approx(b.cost, rel=1e-12)


def test_array_api_strict():
    xps = pytest.importorskip("array_api_strict")
    p = nls.bard()
    x0 = xps.asarray(p.x0)

    def fun(x):
        return xps.asarray(p.residual(np.asarray(x)))

    def jac(x):
        return xps.asarray(p.jacobian(np.asarray(x)))

    a = nk.least_squares(fun, x0, jac=jac)
    b = nk.least_squares(p.residual, p.x0, jac=p.jacobian)
    np.testing.assert_allclose(np.asarray(a.x), b.x, rtol=1e-12)


# -- bad input -------------------------------------------------------------------------------
def test_bad_input():
    p = nls.bard()
    f, x0 = p.residual, p.x0
    with pytest.raises(ValueError, match="loss must be one of"):
        nk.least_squares(f, x0, loss="l1")
    for bad in (0.0, -1.0, np.inf, np.nan):
        with pytest.raises(ValueError, match="f_scale"):
            nk.least_squares(f, x0, loss="huber", f_scale=bad)
    with pytest.raises(ValueError, match="method must be"):
        nk.least_squares(f, x0, method="bvls")
    with pytest.raises(ValueError, match="outside of provided bounds"):
        nk.least_squares(f, x0, bounds=(2, 10))
    with pytest.raises(ValueError, match="strictly less"):
        nk.least_squares(f, x0, bounds=(1, 1))
    with pytest.raises(ValueError, match="x_scale"):
        nk.least_squares(f, x0, x_scale=[1.0, -1.0, 1.0])
    with pytest.raises(ValueError, match="x_scale"):
        nk.least_squares(f, x0, x_scale=[1.0, 1.0])
    with pytest.raises(ValueError, match="machine epsilon"):
        nk.least_squares(f, x0, ftol=1e-20)
    with pytest.raises(ValueError, match="1-D array of residuals"):
        nk.least_squares(lambda x: np.ones((3, 5)) * x[0], x0)
    with pytest.raises(ValueError, match="at most 1 dimension"):
        nk.least_squares(f, np.ones((3, 1)))
    with pytest.raises(ValueError, match="jac must be"):
        nk.least_squares(f, x0, jac="cs")
    with pytest.raises(ValueError, match="max_nfev"):
        nk.least_squares(f, x0, max_nfev=0)
    with pytest.raises(ValueError, match="verbose"):
        nk.least_squares(f, x0, verbose=3)


def test_inputs_not_modified():
    p = nls.bard()
    x0 = p.x0.copy()
    s = np.array([1.0, 2.0, 3.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        nk.least_squares(p.residual, x0, jac=p.jacobian, x_scale=s, loss="huber")
    np.testing.assert_array_equal(x0, p.x0)
    np.testing.assert_array_equal(s, [1.0, 2.0, 3.0])


def test_batch_robust_loss_with_hig_is_a_clear_error():
    # lm and gn take robust losses batched (tests/test_batch_lsq.py); hig does not
    X0 = np.ones((4, 2))
    with pytest.raises(ValueError, match="Composite with methods 'lm' and 'gn'"):
        nk.minimize(nk.Composite(lambda X: X, RobustLoss("huber")), X0, method="hig", batch=True)


def test_float32_scales_only_default_tolerances():
    """float32 runs scale the default tolerances by √(ε₃₂/ε₆₄) (1e-8 → 2.3e-4), never a
    tolerance the user passed: a given gtol = 1e-4 scaled so became 2.3, and MINPACK's gtol
    test (a cosine, ≤ 1) then held at x0, which LM and trf reported as success there."""
    from newtonkit._least_squares import DEFAULT_TOL, _tolerances

    eps32 = float(np.finfo(np.float32).eps)
    tols = _tolerances(DEFAULT_TOL, 1e-8, 1e-3, "gauss-newton", eps32)
    assert tols == dict(ftol=1e-8 * np.sqrt(eps32 / np.finfo(np.float64).eps), xtol=1e-8,
                        gtol=1e-3)
    t = np.linspace(0, 3, 40, dtype=np.float32)
    y = (2 * np.exp(-1.1 * t) + 0.3).astype(np.float32)
    x0 = np.ones(3, np.float32)
    for method in ("lm", "trf", "gn"):
        res = nk.least_squares(lambda p: p[0] * np.exp(-p[1] * t) + p[2] - y, x0,
                               method=method, gtol=1e-4)
        # zero-residual data: x* = (2, 1.1, 0.3) up to float32 rounding amplified by
        # κ(J) ≈ 1e2 and a 2.3e-4 ftol/xtol stop, far below the distance 1.0 of x0
        assert res.success and np.abs(res.x - [2.0, 1.1, 0.3]).max() < 1e-2, (method, res.x)
    popt, _ = nk.curve_fit(lambda x, a, b, c: a * np.exp(-b * x) + c, t,
                           np.stack([y, y]), p0=x0, batch=True, gtol=1e-4)
    assert np.abs(popt - [2.0, 1.1, 0.3]).max() < 1e-2


@pytest.mark.parametrize("loss", ["linear", "soft_l1", "huber"])
@pytest.mark.parametrize("method", ["trf", "lm"])
def test_difference_jacobians_keep_the_box_and_the_budget(loss, method):
    """With a robust loss too, difference Jacobians evaluate ``fun`` only in the box (also
    the final Jacobian behind ``jac``/``grad``) and count in ``max_nfev``; a model undefined
    past the bound (NaN there) is solved as SciPy solves it.  ``args`` may be a list."""
    calls = []

    def fun(x, a, b):
        calls.append(x.copy())
        wall = np.where(x[0] > 1.0, np.nan, 0.0)  # undefined outside the box
        return np.array([x[0] - a + wall, b * (x[0] - a)])

    lb, ub = -5.0, 1.0
    res = nk.least_squares(fun, [0.0], bounds=(lb, ub), method=method, loss=loss,
                           args=[3.0, 0.5])
    ref = so.least_squares(fun, [0.0], bounds=(lb, ub), method="trf", loss=loss,
                           args=(3.0, 0.5))
    assert all(lb <= z[0] <= ub for z in calls)
    # trf's stop ‖v ⊙ g‖∞ ≤ gtol leaves x within gtol/|g| ≈ 1e-8 of the bound (10× margin)
    assert res.success and ref.success and abs(res.x[0] - 1.0) <= 1e-7
    # the gradient there: 2-point differences (error ≈ √ε·|r''|/|g|) at points 1e-8 apart
    np.testing.assert_allclose(res.grad, ref.grad, rtol=1e-6)
    n_calls = [0]

    def rosen(x):
        n_calls[0] += 1
        return np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])

    for max_nfev in (5, 10):  # (2 difference calls per Jacobian)
        n_calls[0] = 0
        out = nk.least_squares(rosen, [-1.2, 1.0], loss=loss, method=method, max_nfev=max_nfev)
        # nfev counts every call but the final Jacobian's (1 + n, not counted, as SciPy)
        assert out.status == 0 and out.nfev <= max_nfev and n_calls[0] <= max_nfev + 3


@pytest.mark.parametrize("method", ["lm", "trf", "gn", "hig"])
def test_calls_of_fun_are_the_evaluations_reported(method):
    """With a callable jac, fun is called exactly nfev times and never past max_nfev: the
    Jacobian at x behind ``res.jac`` is the method's own (least_squares evaluated fun once
    more for it, uncounted: 401 calls for max_nfev=400 on NIST's MGH09, an audit found)."""
    calls = []

    t = np.linspace(0.0, 1.0, 8)
    y = 2.0 * np.exp(-1.5 * t)

    def fun(x):
        calls.append(x.copy())
        return x[0] * np.exp(-x[1] * t) - y

    def jac(x):
        e = np.exp(-x[1] * t)
        return np.stack([e, -x[0] * t * e], axis=1)

    opts = {"max_nfev": 6} if method in ("lm", "trf") else {}
    res = nk.least_squares(fun, np.array([1.0, 1.0]), jac=jac, method=method, **opts)
    assert len(calls) == res.nfev
    if opts:
        assert res.nfev <= 6
    np.testing.assert_array_equal(res.jac, jac(res.x))
