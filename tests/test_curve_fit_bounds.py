"""``curve_fit(bounds=...)`` against SciPy's ``curve_fit`` with bounds (its ``trf`` path)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize as so

import newtonkit as nk
from newtonkit._curve_fit import _initialize_feasible

X = np.linspace(0, 4, 50)
Y = 2.5 * np.exp(-1.3 * X) + 0.5 + 0.05 * np.random.default_rng(1).standard_normal(X.size)
INACTIVE = ([0.0, 0.0, 0.0], [10.0, 10.0, 10.0])  # the minimum (2.53, 1.31, 0.496) inside
ACTIVE = ([0.0, 0.0, 0.6], [10.0, 10.0, 10.0])  # c ≥ 0.6 cuts off c* = 0.496


def model(x, a, b, c):
    return a * np.exp(-b * x) + c


def model_jac(x, a, b, c):
    e = np.exp(-b * x)
    return np.stack([e, -a * x * e, np.ones_like(x)], 1)


@pytest.mark.parametrize("p0", [None, [1.0, 1.0, 1.0]])
@pytest.mark.parametrize("jac", [None, model_jac])
def test_inactive_bounds_match_scipy(p0, jac):
    popt, pcov = nk.curve_fit(model, X, Y, p0=p0, bounds=INACTIVE, jac=jac)
    ref = so.curve_fit(model, X, Y, p0=p0, bounds=INACTIVE, jac=jac)
    # Both run trf to ftol = 1e-8 (relative cost change); κ(J) ≈ 30 and the residual is 2 %
    # of the signal, so each x is within about κ·√ftol·0.02 ≈ 1e-7 relative of the minimum:
    # 1e-6 holds with margin (measured ≤ 1.5e-9 absolute).
    np.testing.assert_allclose(popt, ref[0], rtol=1e-6)
    # pcov = s²(JᵀJ)⁻¹ at those x: it moves by about κ·(x error) ≈ 3e-8 relative; 1e-6 is the
    # brief's bound (measured ≤ 1e-8).
    np.testing.assert_allclose(pcov, ref[1], rtol=1e-6)


def test_active_bound_is_met_and_matches_scipy():
    popt, pcov, info, _, ier = nk.curve_fit(model, X, Y, bounds=ACTIVE, jac=model_jac,
                                            full_output=True)
    ref = so.curve_fit(model, X, Y, bounds=ACTIVE, jac=model_jac)
    assert ier > 0
    # on the bound: trf stays strictly inside and stops on xtol = 1e-8 (relative step), so c
    # lies above 0.6 by at most that step, xtol·(1 + ‖x‖) ≤ 4e-8 (measured 1.1e-16).
    assert 0.6 <= popt[2] <= 0.6 + 1e-8 * (1 + np.linalg.norm(popt))
    np.testing.assert_allclose(popt, ref[0], rtol=1e-6)  # as above (measured 0 with jac)
    # pcov at the bounded solution from J there, as SciPy (measured 0 with jac; ≤ 3e-8
    # relative with differences)
    np.testing.assert_allclose(pcov, ref[1], rtol=1e-6)
    # the free parameters are stationary: the reduced gradient Jᵀr is ~0 in a and b (ftol
    # leaves ‖g‖ ≈ √(2·ftol·cost)·‖J‖ ≈ 1e-5; measured 1.1e-7), and points into the box in c.
    g = model_jac(X, *popt).T @ (model(X, *popt) - Y)
    assert np.all(np.abs(g[:2]) < 1e-5) and g[2] > 0


def test_default_method_is_trf_with_bounds_and_lm_refuses_them():
    a = nk.curve_fit(model, X, Y, bounds=ACTIVE, jac=model_jac)
    b = nk.curve_fit(model, X, Y, bounds=ACTIVE, jac=model_jac, method="trf")
    np.testing.assert_array_equal(a[0], b[0])  # the same run
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="'lm' only works for unconstrained"):
        nk.curve_fit(model, X, Y, bounds=ACTIVE, method="lm")
    with pytest.raises(ValueError, match="'lm' only works for unconstrained"):
        so.curve_fit(model, X, Y, bounds=ACTIVE, method="lm")
    # infinite bounds are no bounds: the default stays 'lm'
    c = nk.curve_fit(model, X, Y, bounds=(-np.inf, np.inf), method="lm")
    d = nk.curve_fit(model, X, Y)
    np.testing.assert_array_equal(c[0], d[0])


def test_default_p0_is_scipys():
    lb = np.array([0.0, -np.inf, 2.0, -np.inf])
    ub = np.array([4.0, 3.0, np.inf, np.inf])
    np.testing.assert_array_equal(_initialize_feasible(lb, ub), [2.0, 2.0, 3.0, 1.0])
    seen = []

    def spy(x, a, b, c):
        seen.append((a, b, c))
        return model(x, a, b, c)

    nk.curve_fit(spy, X, Y, bounds=([0, 0, -np.inf], [4, np.inf, 2]))
    assert seen[0] == (2.0, 1.0, 1.0)  # midpoint, lb + 1, ub − 1


def test_bounds_object_scalars_and_bad_input():
    a = nk.curve_fit(model, X, Y, bounds=so.Bounds([0, 0, 0.6], [10, 10, 10]))[0]
    b = nk.curve_fit(model, X, Y, bounds=ACTIVE)[0]
    np.testing.assert_array_equal(a, b)
    c = nk.curve_fit(model, X, Y, bounds=(0.0, 10.0))[0]  # scalars broadcast
    np.testing.assert_allclose(c, so.curve_fit(model, X, Y, bounds=(0.0, 10.0))[0], rtol=1e-6)
    with pytest.raises(ValueError, match="outside of provided bounds"):
        nk.curve_fit(model, X, Y, p0=[1, 1, 0.5], bounds=ACTIVE)
    with pytest.raises(ValueError, match="inconsistent shapes"):
        nk.curve_fit(model, X, Y, bounds=([0, 0], [1, 1]))


def test_torch_bounds():
    torch = pytest.importorskip("torch")

    def tmodel(x, a, b, c):
        return a * torch.exp(-b * x) + c

    popt, pcov = nk.curve_fit(tmodel, torch.asarray(X), torch.asarray(Y), bounds=ACTIVE)
    ref = so.curve_fit(model, X, Y, bounds=ACTIVE, jac=model_jac)
    assert isinstance(popt, torch.Tensor) and popt.dtype == torch.float64
    # autograd J against SciPy's analytic one: the same run up to J's rounding (measured
    # ≤ 1e-9); 1e-6 as above.
    np.testing.assert_allclose(popt.numpy(), ref[0], rtol=1e-6)
    np.testing.assert_allclose(pcov.numpy(), ref[1], rtol=1e-6)


# -- batched: projected Gauss-Newton (newtonkit._batch), 'lm' and 'gn' with bounds

P_SETS = np.array([[2.5, 1.3, 0.5], [1.0, 0.5, 0.7], [3.0, 2.0, 0.2], [2.0, 1.0, 0.9]])
Y_SETS = np.stack([model(X, *p) + 0.05 * np.random.default_rng(k).standard_normal(
    X.size) for k, p in enumerate(P_SETS)])  # rows 0 and 2: c* < 0.6, the bound active


def batch_jac(x, a, b, c):
    e = np.exp(-b * x)
    return np.stack(np.broadcast_arrays(e, -a * x * e, np.ones_like(e)), -1)


def _ftol_bound(p, y, lb, ub, ftol=1e-8):
    """20·√(2·ftol·F/λ_min) on the free columns: how far an ftol stop may leave x from the
    minimum (F the cost there, λ_min of JᵀJ restricted to the parameters off their bounds)."""
    J = model_jac(X, *p)
    free = (p > lb + 1e-6) & (p < ub - 1e-6)
    Jf = J[:, free]
    F = 0.5 * np.sum((model(X, *p) - y) ** 2)
    return 20 * np.sqrt(2 * ftol * F / np.linalg.eigvalsh(Jf.T @ Jf)[0])


@pytest.mark.parametrize("jac", [batch_jac, None])
@pytest.mark.parametrize("p0", [None, [1.0, 1.0, 1.0]])
def test_batched_bounds_match_scipy_per_row(jac, p0):
    lb, ub = np.array(ACTIVE[0]), np.array(ACTIVE[1])
    popt, pcov, info, _, ier = nk.curve_fit(model, X, Y_SETS, p0=p0, bounds=ACTIVE, jac=jac,
                                            batch=True, full_output=True)
    assert info["success"].all()
    assert np.all(popt >= lb) and np.all(popt <= ub)
    for i, y in enumerate(Y_SETS):
        ref_p, ref_c = so.curve_fit(model, X, y, p0=p0, bounds=ACTIVE)
        # another method to the same ftol = 1e-8 stop: within the ftol bound of each other
        # (measured ≤ 1.7e-4 absolute, on the ill-conditioned row 2, against bounds ≥ 5.9e-4)
        np.testing.assert_allclose(popt[i], ref_p, rtol=0, atol=_ftol_bound(ref_p, y, lb, ub))
        cost = 0.5 * np.sum((model(X, *popt[i]) - y) ** 2)
        ref_cost = 0.5 * np.sum((model(X, *ref_p) - y) ** 2)
        assert cost <= ref_cost * (1 + 1e-6)  # ftol-level (measured ≤ 4.9e-11 above)
        # pcov moves with x by about κ(J) ≈ 30 times x's relative error: ≤ 1e-3 (measured
        # ≤ 1.0e-4, row 2)
        np.testing.assert_allclose(pcov[i], ref_c, rtol=1e-3, atol=1e-3 * np.abs(ref_c).max())
    assert popt[0, 2] == popt[2, 2] == 0.6  # the active bound, reached exactly by P


@pytest.mark.parametrize("scheme", ["2-point", "3-point"])
def test_batched_bounds_feasible_and_projected_gradient_vanishes(scheme):
    lb, ub = np.array([0.0, 0.0, 0.6]), np.array([10.0, 10.0, 10.0])
    seen = []

    def res(Z, Yr):
        seen.append(np.array(Z))
        return model(X, Z[:, :1], Z[:, 1:2], Z[:, 2:3]) - Yr

    # on upper bounds: 2-point steps must turn back, 3-point differences be one-sided
    X0 = np.tile([10.0, 5.0, 10.0], (4, 1))
    out = nk.minimize(res, X0, method="lm", args=(Y_SETS,), bounds=(lb, ub), batch=True,
                      jac=scheme, options=dict(ftol=1e-12, xtol=1e-12, gtol=1e-9))
    Z = np.concatenate(seen)
    assert np.all(Z >= lb) and np.all(Z <= ub)  # every evaluated point in the box
    assert out["success"].all() and out["method"] == "gn"
    pg = out["x"] - np.clip(out["x"] - out["jac"], lb, ub)
    # the projected gradient at the stop: ≤ gtol for GTOL rows; an ftol = 1e-12 stop leaves
    # about √(2·ftol·F)·‖J‖ ≈ 1e-6·3 ≈ 3e-6 (measured ≤ 6.1e-7 with differences)
    assert np.abs(pg).max() <= 3e-6


@pytest.mark.parametrize("q", [1e-14, 1e-13, 1e-6, 1e-3])
def test_batched_bounds_ftol_when_rounding_in_f_shortens_the_step(q):
    """Residuals rounded to multiples of q: near the minimum the full step's decrease is below
    the rounding of f, so Armijo shortens it.  The stop there is FTOL (actual and predicted
    reductions ≤ ftol·f, MINPACK's test), not NO_PROGRESS; and no row reports success away
    from the minimum, whatever q."""
    lb, ub = np.zeros(3), np.full(3, 10.0)  # every minimum inside: the pure projected path

    def res(Z, Yr):
        return np.round((model(X, Z[:, :1], Z[:, 1:2], Z[:, 2:3]) - Yr) / q) * q

    def jac(Z, Yr):
        return np.stack([model_jac(X, *z) for z in Z])

    X0 = np.tile([1.0, 1.0, 1.0], (4, 1))
    ftol = 1e-12
    out = nk.minimize(res, X0, method="gn", jac=jac, args=(Y_SETS,), bounds=(lb, ub),
                      batch=True, options=dict(ftol=ftol, xtol=1e-15, gtol=1e-15))
    for i, y in enumerate(Y_SETS):
        ref = so.least_squares(lambda p, y=y: model(X, *p) - y, X0[i], method="lm",
                               jac=lambda p: model_jac(X, *p), xtol=1e-15, ftol=1e-15)
        sigma = np.linalg.svd(model_jac(X, *ref.x), compute_uv=False)
        # an ftol stop (the ftol bound) plus the minimiser's shift by the rounding of r,
        # ‖J⁺δr‖ ≤ √m·(q/2)/σ_min (20× margin on both)
        bound = (_ftol_bound(ref.x, y, lb, ub, ftol)
                 + 20 * np.sqrt(X.size) * q / 2 / sigma[-1])
        if out["success"][i]:
            assert np.abs(out["x"][i] - ref.x).max() <= bound, (i, out.message_of(i))
    # f's rounding, about Σ|rᵢ|·q/2 ≈ q (Σ|rᵢ| ≤ 2 here), is below ftol·f ≥ 4e-14 (f ≥ 0.043)
    # for q = 1e-14: the ftol test is in reach and every row converges; where the rounding
    # exceeds ftol·f, NO_PROGRESS is an honest stop
    if q <= 1e-14:
        assert all(out.termination_of(i) == "FTOL" for i in range(4)), out["message"]


@pytest.mark.parametrize("scheme", ["2-point", "3-point"])
def test_batched_box_differences_are_the_single_paths(scheme):
    """Each row of a batched difference Jacobian in a box is the single path's
    ``fd_jacobian(..., bounds=)`` bit for bit (same steps, same one-sided choices, same
    quotients), for points on, near and inside the bounds; a rational model, so that the
    batched and single evaluations round alike."""
    from newtonkit._batch import _Evaluator
    from newtonkit.problems._fd import fd_jacobian

    t = np.linspace(0.0, 2.0, 7)

    def fun(Z):  # (b, 3) -> (b, 7)
        return Z[:, :1] / (1.0 + Z[:, 1:2] * t) + Z[:, 2:3] * t * t

    lb, ub = np.array([0.0, -0.4, 1.0]), np.array([2.0, 3.0, 1.0 + 1e-9])
    Z = np.array([[0.0, -0.4, 1.0], [2.0, 3.0, 1.0 + 1e-9], [1e-9, 2.9999999, 1.0 + 5e-10],
                  [1.0, 0.5, 1.0], [2.0 - 1e-12, -0.4 + 1e-6, 1.0]])
    ev = _Evaluator(fun, (), scheme, None, "outputs", np, Z, False, None)
    box = (np.tile(lb, (5, 1)), np.tile(ub, (5, 1)))
    J = np.transpose(ev._differences(fun, Z, fun(Z), scheme, ev.eps, box), (0, 2, 1))
    for i, z in enumerate(Z):
        one = fd_jacobian(lambda p: fun(p[None])[0], z, fun(z[None])[0], scheme=scheme,
                          bounds=(lb, ub))
        np.testing.assert_array_equal(J[i], one)


def test_batched_bounds_per_problem_and_errors():
    lb = np.array([[0.0, 0.0, 0.6], [0.0, 0.0, 0.0]])
    ub = np.full((2, 3), 10.0)
    popt, _ = nk.curve_fit(model, X, Y_SETS[:2], p0=[1.0, 1.0, 1.0], bounds=(lb, ub),
                           batch=True)
    for i in range(2):  # each row its own box (row 1's box is inactive)
        ref = so.curve_fit(model, X, Y_SETS[i], p0=[1.0, 1.0, 1.0], bounds=(lb[i], ub[i]))[0]
        np.testing.assert_allclose(popt[i], ref, rtol=0,
                                   atol=_ftol_bound(ref, Y_SETS[i], lb[i], ub[i]))
    with pytest.raises(ValueError, match="outside of provided bounds"):
        nk.curve_fit(model, X, Y_SETS, p0=[1.0, 1.0, 0.5], bounds=ACTIVE, batch=True)
    with pytest.raises(ValueError, match="'lm' and 'gn'"):
        nk.minimize(lambda Z: Z @ Z.T, np.ones((2, 2)), method="newton", bounds=(0, 2),
                    batch=True)
    # infinite bounds are no bounds: the unbounded batched run, unchanged
    a = nk.curve_fit(model, X, Y_SETS, bounds=(-np.inf, np.inf), batch=True)[0]
    b = nk.curve_fit(model, X, Y_SETS, batch=True)[0]
    np.testing.assert_array_equal(a, b)


def test_batched_bounds_torch_autograd():
    torch = pytest.importorskip("torch")

    def tmodel(x, a, b, c):
        return a * torch.exp(-b * x) + c

    popt, _ = nk.curve_fit(tmodel, torch.asarray(X), torch.asarray(Y_SETS), bounds=ACTIVE,
                           batch=True)
    ref, _ = nk.curve_fit(model, X, Y_SETS, bounds=ACTIVE, jac=batch_jac, batch=True)
    assert isinstance(popt, torch.Tensor)
    # autograd J against the analytic one: the same iterates up to J's rounding (1e-8)
    np.testing.assert_allclose(popt.numpy(), ref, rtol=1e-8)


# -- pcov's difference Jacobian stays in the box: a model that is NaN outside it

XB = np.linspace(0, 1, 20)
YB = np.stack([2 * XB + 0.01 * np.sin(7 * XB + k) - 0.3 * XB**2 for k in range(3)])
BOX = ([-10.0, 0.0], [10.0, 1.0])  # the fit wants 1 − p = −0.3: p = 1 active


@pytest.mark.parametrize("batch", [True, False])
def test_bounded_pcov_differences_stay_in_the_box(batch):
    seen = []

    def boxed(x, a, p):  # linear in (a, p); NaN for p > 1
        seen.append(np.stack(np.broadcast_arrays(a, p), -1).reshape(-1, 2))
        return np.where(p <= 1, a * x + (1 - p) * x**2, np.nan)

    if batch:
        pcov = nk.curve_fit(boxed, XB, YB, p0=[1.0, 0.5], bounds=BOX, batch=True)[1]
    else:
        pcov = [nk.curve_fit(boxed, XB, y, p0=[1.0, 0.5], bounds=BOX)[1] for y in YB]
    P = np.concatenate(seen)
    assert np.all(P >= BOX[0]) and np.all(P <= BOX[1])  # every evaluation, fit and pcov
    # A 2-point quotient of this linear model is exact but for f's rounding, 2ε·max|f|/h with
    # h ≥ √ε: SciPy's J and ours are each within 2√ε·max|f| of J per entry, so their (JᵀJ)⁻¹
    # agree within 2κ(J)²·‖δJ‖₂/‖J‖₂, ‖δJ‖₂ ≤ √(mn)·2·2√ε·max|f| (2.7e-5 here, κ = 8.1).
    # s² = 2F/(m − n) from each popt: they differ by ≤ 2e-10 (SciPy's trf stops ~1e-11
    # inside p ≤ 1), F by ≤ 1e-10 relative; 1e-8 covers it.  Measured ≤ 4.3e-8.
    J = np.stack([XB, -XB**2], 1)
    dJ = np.sqrt(J.size) * 4 * np.sqrt(np.finfo(float).eps) * np.abs(YB).max()
    rtol = 2 * np.linalg.cond(J) ** 2 * dJ / np.linalg.norm(J, 2) + 1e-8
    for i, y in enumerate(YB):
        ref = so.curve_fit(boxed, XB, y, p0=[1.0, 0.5], bounds=BOX)[1]
        assert np.all(np.isfinite(pcov[i]))
        assert np.abs(pcov[i] - ref).max() <= rtol * np.abs(ref).max()
