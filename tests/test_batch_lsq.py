"""Robust losses with ``minimize(..., batch=True)`` and the batched ``curve_fit``.

A batched problem must give each row the result of its own single-problem run: the same
trials where the factorisations agree, so the same termination and counts up to the end game
(tests/test_batch.py), and a solution within the ftol distance bound of the single one.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.optimize

import newtonkit as nk

T = np.linspace(0.0, 4.0, 30)
FTOL = 1e-8  # the batched lm/gn default ftol (float64)


def _data(B_: int, seed: int, outliers: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    a, b = rng.uniform(1.0, 3.0, B_), rng.uniform(0.1, 0.6, B_)
    Y = a[:, None] * np.exp(b[:, None] * T) + 0.05 * rng.standard_normal((B_, T.size))
    if outliers:
        Y[:, ::7] += 3.0  # 5 of 30 points gross outliers
    return Y


def fun(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    return X[:, :1] * np.exp(X[:, 1:] * T) - Y


def jac(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    e = np.exp(X[:, 1:] * T)
    return np.stack([e, X[:, :1] * T * e], axis=2)


class _One:
    """Row ``y`` as a single-problem forward model with its Jacobian."""

    def __init__(self, y: np.ndarray) -> None:
        self.y = y

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return fun(x[None], self.y[None])[0]

    def jacobian(self, x: np.ndarray) -> np.ndarray:
        return jac(x[None], self.y[None])[0]


# -- robust losses batched -----------------------------------------------------------------------


@pytest.mark.parametrize("method", ["lm", "gn"])
@pytest.mark.parametrize("loss", ["soft_l1", "huber", "cauchy", "arctan"])
def test_robust_batch_agrees_with_single_problem_runs(loss, method):
    """Each row against ``minimize(Composite(model_i, loss))``: both succeed with the same
    termination, the evaluation counts agree up to the end game (≤ 2 apart, as in
    tests/test_batch.py), the points lie within the ftol bound 20·√(2·ftol·F/λmin(J̃ᵀJ̃))
    of docs/least_squares.md, and the costs agree to 4·ftol·F (each run stops within about
    ftol·F of the minimum)."""
    Y = _data(5, 3)
    X0 = np.tile([1.0, 0.3], (5, 1))
    L = nk.RobustLoss(loss, f_scale=0.1)
    res = nk.minimize(nk.Composite(fun, L), X0, method=method, jac=jac, args=(Y,), batch=True)
    assert res.x.shape == (5, 2) and res.residual.shape == (5, T.size)
    for i in range(5):
        single = nk.minimize(nk.Composite(_One(Y[i]), L), X0[i], method=method)
        assert res.success[i] and single.success
        assert res.termination_of(i) == single.termination
        assert abs(int(res.nfev[i]) - single.nfev) <= 2
        r = fun(single.x[None], Y[i:i + 1])[0]
        _, sw = L.gauss_newton(r)
        Jt = sw[:, None] * jac(single.x[None], Y[i:i + 1])[0]
        lam = np.linalg.eigvalsh(Jt.T @ Jt)[0]
        F = float(single.fun)
        assert np.linalg.norm(res.x[i] - single.x) <= 20 * np.sqrt(2 * FTOL * F / lam)
        assert abs(float(res.fun[i]) - F) <= 4 * FTOL * F
        # the cost is ½C²Σρ of the returned (raw) residual, the gradient Jᵀρ′r
        assert float(res.fun[i]) == pytest.approx(float(L.value(res.residual[i])), rel=1e-14)
        Ji, gy = jac(res.x[i:i + 1], Y[i:i + 1])[0], L.grad(res.residual[i])
        # a sum of m = 30 products: rounding ≤ (m + 4)·ε·Σ|J||ρ′r| per entry (here 100·ε·…)
        scale = np.abs(Ji).T @ np.abs(gy)
        assert np.all(np.abs(res.jac[i] - Ji.T @ gy) <= 100 * np.finfo(float).eps * scale)


def test_robust_batch_model_jacobian_method_and_default_method():
    """A model object with ``jacobian(X, *args)`` is used without ``jac=``; a Composite
    defaults to ``"lm"`` (as the single path); the result equals the one with ``jac=``
    bit for bit (the same arithmetic)."""

    class Model:
        def __call__(self, X, Y):
            return fun(X, Y)

        def jacobian(self, X, Y):
            return jac(X, Y)

    Y = _data(3, 4)
    X0 = np.tile([1.0, 0.3], (3, 1))
    L = nk.RobustLoss("cauchy", f_scale=0.2)
    a = nk.minimize(nk.Composite(Model(), L), X0, args=(Y,), batch=True)
    b = nk.minimize(nk.Composite(fun, L), X0, method="lm", jac=jac, args=(Y,), batch=True)
    assert a.method == "lm" and np.array_equal(a.x, b.x) and np.array_equal(a.nfev, b.nfev)
    assert a.njev.sum() > 0 and a.success.all()


def test_robust_batch_torch_autodiff_matches_numpy():
    """torch float64 with autodiff Jacobians (torch.func) against NumPy with the analytic
    Jacobian: the same iterates up to rounding of J (1e-10 relative on x, far below the ftol
    bound of the test above)."""
    torch = pytest.importorskip("torch")
    Y = _data(4, 5)
    X0 = np.tile([1.0, 0.3], (4, 1))
    t = torch.as_tensor(T)

    def tfun(X, Yt):
        return X[:, :1] * torch.exp(X[:, 1:] * t) - Yt

    L = nk.RobustLoss("soft_l1", f_scale=0.1)
    rt = nk.minimize(nk.Composite(tfun, L), torch.as_tensor(X0), method="gn",
                     args=(torch.as_tensor(Y),), batch=True)
    rn = nk.minimize(nk.Composite(fun, L), X0, method="gn", jac=jac, args=(Y,), batch=True)
    assert isinstance(rt.x, torch.Tensor) and rt.x.dtype == torch.float64
    assert np.allclose(rt.x.numpy(), rn.x, rtol=1e-10, atol=0)


@pytest.mark.parametrize("method", ["hig", "newton"])
def test_robust_batch_refuses_other_methods(method):
    L = nk.RobustLoss("huber")
    with pytest.raises(ValueError, match="'lm' and 'gn'"):
        nk.minimize(nk.Composite(fun, L), np.ones((2, 2)), method=method, jac=jac,
                    args=(_data(2, 0),), batch=True)


def test_robust_batch_refuses_a_loss_without_rows():
    with pytest.raises(ValueError, match="RobustLoss"):
        nk.minimize(nk.Composite(fun, nk.L2Loss()), np.ones((2, 2)), method="lm", jac=jac,
                    args=(_data(2, 0),), batch=True)


def test_arctan_derivatives_do_not_overflow_at_far_trial_points():
    """A far trial (r/C ≈ 1e100, as a Gauss-Newton step on an exponential model makes) gave
    an overflow RuntimeWarning in (1 + z²)²; beyond z = max^(1/4) ρ′ and ρ″ are 1/z² and
    −2/z³ to working precision (relative error ≤ 1/z² ≈ 1e-154 there)."""
    L = nk.RobustLoss("arctan", f_scale=1.0)
    r = np.array([0.5, 1e100, 1e150, np.inf])
    z, (p0, p1, p2) = L.rho(r)  # the test setup turns RuntimeWarnings into errors
    assert p1[0] == 1.0 / (1.0 + z[0] ** 2) and p1[1] == (1.0 / z[1]) ** 2
    assert p2[1] == -2.0 * (1.0 / z[1]) ** 3 and p1[3] == 0.0 and p2[3] == 0.0
    assert np.all(np.isfinite(p0[:3])) and p0[3] == np.pi / 2


# -- curve_fit(..., batch=True) ------------------------------------------------------------------

XD = np.linspace(0, 4, 50)


def model(x, a, b, c):
    return a * np.exp(-b * x) + c


def model_jac(x, a, b, c):
    e = np.exp(-b * x)
    return np.stack([e, -a * x * e, np.ones_like(x)], 1)


def model_jac_batch(x, a, b, c):  # a, b, c columns (b, 1): (b, m, 3)
    e = np.exp(-b * x)
    return np.stack([e, -a * x * e, np.ones_like(e)], 2)


def _sets(B_: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    P = np.stack([rng.uniform(1, 3, B_), rng.uniform(0.5, 2, B_), rng.uniform(0, 1, B_)], 1)
    Y = np.stack([model(XD, *p) for p in P]) + 0.05 * rng.standard_normal((B_, XD.size))
    return Y, 0.05 * (1 + rng.random((B_, XD.size)))


CF_CASES = ["plain", "jac", "sigma-rows", "sigma-shared-absolute", "soft_l1", "gn"]


@pytest.mark.parametrize("case", CF_CASES)
def test_batched_curve_fit_rows_equal_single_fits(case):
    """Each row against nk.curve_fit on that data set.  popt: both stop on ftol = 1e-8 with
    κ(J) ≈ 30, so each is within ≈ κ·√ftol·(residual/signal) ≈ 1e-7 relative of the minimum
    (tests/test_curve_fit.py): 1e-6 holds (measured ≤ 6e-9; with jac= the same iterates,
    ≤ 2e-16).  pcov: the same SVD formula at points that agree to that bound, times κ: 1e-6
    relative to the scale of each entry, √(pcov_ii·pcov_jj) (the bound is normwise, on the
    correlation matrix D⁻¹·pcov·D⁻¹: an off-diagonal entry far below that scale, 1.98e-5
    against 5e-4, carries the same absolute error; with curve_fit's relative difference steps,
    √ε·|p| for the offset p ≈ 0.1, that entry differed by 1.1e-6 of itself, 4.5e-8 of its
    scale).  Measured ≤ 8e-8 on that scale."""
    Y, S = _sets(6, 2)
    kw: dict = {"plain": {}, "jac": {"jac": model_jac_batch}, "sigma-rows": {"sigma": S},
                "sigma-shared-absolute": {"sigma": S[0], "absolute_sigma": True},
                "soft_l1": {"loss": "soft_l1", "f_scale": 0.1}, "gn": {"method": "gn"}}[case]
    popt, pcov = nk.curve_fit(model, XD, Y, p0=[1, 1, 1], batch=True, **kw)
    assert popt.shape == (6, 3) and pcov.shape == (6, 3, 3)
    for i in range(6):
        kwi = dict(kw)
        if case == "jac":
            kwi["jac"] = model_jac
        if case == "sigma-rows":
            kwi["sigma"] = S[i]
        p1, c1 = nk.curve_fit(model, XD, Y[i], p0=[1, 1, 1], **kwi)
        np.testing.assert_allclose(popt[i], p1, rtol=1e-6)
        scale = np.sqrt(np.outer(np.diag(c1), np.diag(c1)))
        assert np.all(np.abs(pcov[i] - c1) <= 1e-6 * scale)


def test_batched_curve_fit_warnings_are_aggregated():
    """A data set of zeros fits a = 0 exactly (f = 0, success), where the b column of J is
    zero: rank 1 < 2, pcov inf for that row only, one OptimizeWarning naming 1 of 3.  A budget
    too small for any fit: every row NaN, one warning naming 3 of 3."""
    Y = np.stack([2.0 * np.exp(-0.5 * XD), np.zeros(XD.size), np.exp(-XD)])

    def f2(x, a, b):
        return a * np.exp(-b * x)

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        popt, pcov = nk.curve_fit(f2, XD, Y, p0=[1.0, 1.0], batch=True)
    msgs = [str(x.message) for x in w if issubclass(x.category, scipy.optimize.OptimizeWarning)]
    assert len(msgs) == 1 and "1 of 3 data sets (rows 1)" in msgs[0]
    assert np.isinf(pcov[1]).all() and np.isfinite(pcov[[0, 2]]).all()
    np.testing.assert_allclose(popt[0], [2.0, 0.5], rtol=1e-7)  # exact data: ftol-level
    with pytest.warns(scipy.optimize.OptimizeWarning, match="not found for 3 of 3"):
        popt, pcov = nk.curve_fit(f2, XD, Y + 1.0, p0=[1.0, 1.0], batch=True, max_nfev=2,
                                  jac=lambda x, a, b: np.stack(
                                      [np.exp(-b * x), -a * x * np.exp(-b * x)], 2))
    assert np.isnan(popt).all() and np.isnan(pcov).all()


def test_batched_curve_fit_torch_autograd_keeps_dtype_and_device():
    """torch float64 with autograd Jacobians (torch.func) equals the NumPy fit with the
    analytic Jacobian to the ftol bound above (1e-6); float32 keeps its dtype and device."""
    torch = pytest.importorskip("torch")
    Y, S = _sets(5, 7)

    def tmodel(x, a, b, c):
        return a * torch.exp(-b * x) + c

    popt, pcov = nk.curve_fit(tmodel, torch.as_tensor(XD), torch.as_tensor(Y), p0=[1, 1, 1],
                              sigma=torch.as_tensor(S), batch=True)
    ref, rcov = nk.curve_fit(model, XD, Y, p0=[1, 1, 1], sigma=S, jac=model_jac_batch,
                             batch=True)
    assert isinstance(popt, torch.Tensor) and popt.dtype == torch.float64
    np.testing.assert_allclose(popt.numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(pcov.numpy(), rcov, rtol=1e-6)
    Y32 = torch.as_tensor(Y, dtype=torch.float32)
    p32, c32 = nk.curve_fit(tmodel, torch.as_tensor(XD, dtype=torch.float32), Y32,
                            p0=[1, 1, 1], batch=True)
    assert p32.dtype == c32.dtype == torch.float32 and p32.device == Y32.device


def test_batched_curve_fit_bad_input():
    Y, S = _sets(3, 1)
    with pytest.raises(ValueError, match=r"\(B, m\)"):
        nk.curve_fit(model, XD, Y[0], p0=[1, 1, 1], batch=True)
    with pytest.raises(ValueError, match="covariance matrices are not batched"):
        nk.curve_fit(model, XD, Y, p0=[1, 1, 1], sigma=np.eye(XD.size), batch=True)
    with pytest.raises(ValueError, match="unconstrained"):  # 'lm' with bounds, as SciPy
        nk.curve_fit(model, XD, Y, p0=[1, 1, 1], bounds=(0, 10), method="lm", batch=True)
    with pytest.raises(ValueError, match="nan_policy"):
        nk.curve_fit(model, XD, Y, p0=[1, 1, 1], nan_policy="omit", batch=True)
    with pytest.raises(ValueError, match="x_scale"):
        nk.curve_fit(model, XD, Y, p0=[1, 1, 1], x_scale=2.0, batch=True)
    with pytest.raises(ValueError, match="p0"):
        nk.curve_fit(model, XD, Y, p0=np.ones((2, 3)), batch=True)


def test_autodiff_falls_back_to_reverse_mode_without_forward_ad():
    """A model op without forward-mode AD (a custom autograd.Function with no jvp) makes
    jacfwd raise; the batch then uses jacrev and gets the same fit (the same Jacobian to
    rounding: 1e-10 relative on x)."""
    torch = pytest.importorskip("torch")

    class Exp(torch.autograd.Function):
        generate_vmap_rule = True

        @staticmethod
        def forward(x):
            return torch.exp(x)

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(output)

        @staticmethod
        def backward(ctx, g):
            (e,) = ctx.saved_tensors
            return g * e

    t = torch.as_tensor(T)
    Y = torch.as_tensor(_data(3, 6, outliers=False))
    X0 = torch.tensor([[1.0, 0.3]] * 3, dtype=torch.float64)
    a = nk.minimize(lambda X, Yr: X[:, :1] * Exp.apply(X[:, 1:] * t) - Yr, X0, method="lm",
                    args=(Y,), batch=True)
    b = nk.minimize(lambda X, Yr: X[:, :1] * torch.exp(X[:, 1:] * t) - Yr, X0, method="lm",
                    args=(Y,), batch=True)
    assert a.success.all() and torch.allclose(a.x, b.x, rtol=1e-10, atol=0)


def test_the_bounded_gradient_test_is_free_of_the_residuals_scale():
    """Projected Gauss-Newton tested gtol on the plain projected gradient ‖X − P(X − G)‖∞:
    with residuals of scale 1e-5 the gradient is 1e-10 at x0 and the row ended GTOL, success,
    there (far from the minimiser (2, 0.3)), as soon as any bound was given.  It now reads
    MINPACK's cosine on the projected gradient, as the unbounded rows: the run reaches the
    zero-residual minimiser to 1e-5 relative (Gauss-Newton converges quadratically there; the
    stop leaves x within about xtol = 1e-8 relative, checked with a 1000× margin)."""
    t = np.linspace(0, 4, 30)
    scale = 1e-5
    y = scale * 2.0 * np.exp(0.3 * t)

    def fun(X):
        return X[:, :1] * scale * np.exp(X[:, 1:] * t) - y

    def jac(X):
        e = scale * np.exp(X[:, 1:] * t)
        return np.stack([e, X[:, :1] * t * e], axis=2)

    res = nk.minimize(fun, np.array([[1.0, 0.1]]), method="gn", jac=jac, batch=True,
                      bounds=([-100.0, -100.0], [100.0, 100.0]))
    assert res.success[0]
    np.testing.assert_allclose(res.x[0], [2.0, 0.3], rtol=1e-5)



def test_lm_terms_groups_hold_each_rows_own_terms():
    """``_trust.lm_terms`` splits a stack into its Gram rows (tried, and ε·κ(AᵀA) below
    ``GRAM_MAX_ERR``) and its SVD rows (the others, the rows not tried included): each row's
    terms are those it gets alone, bit for bit."""
    from newtonkit.methods import _trust

    eps = float(np.finfo(np.float64).eps)
    rng = np.random.default_rng(1)
    A, r = rng.standard_normal((12, 10, 4)), rng.standard_normal((12, 10))
    A[::3, :, 3] = A[::3, :, 2] + 1e-9 * rng.standard_normal((4, 10))  # κ(AᵀA) ~ 1e18
    tried = np.arange(12) % 4 != 1
    groups = _trust.lm_terms(np, A, r, eps, tried)
    assert [rows.tolist() for rows, _ in groups] == [
        (tried & (np.arange(12) % 3 != 0)).tolist(), (~tried | (np.arange(12) % 3 == 0)).tolist()]
    for rows, terms in groups:
        for j, i in enumerate(np.nonzero(rows)[0]):
            [(_, alone)] = _trust.lm_terms(np, A[i:i + 1], r[i:i + 1], eps, tried[i:i + 1])
            for a, b in zip(terms, alone, strict=True):
                np.testing.assert_array_equal(a[j], b[0])
