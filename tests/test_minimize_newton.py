"""Newton: Rosenbrock against SciPy trust-exact, matrix-free variant, shifts, saddle points."""

import numpy as np
import pytest
import scipy.optimize as so
from scipy.optimize import rosen, rosen_der, rosen_hess, rosen_hess_prod

import newtonkit as nk


def _x0(n):
    return np.array([-1.2, 1.0]) if n == 2 else np.linspace(-1.0, 1.5, n)


@pytest.mark.parametrize("n", [2, 10, 100])
def test_rosenbrock_reaches_trust_exact_solution(n):
    x0 = _x0(n)
    ref = so.minimize(rosen, x0, method="trust-exact", jac=rosen_der, hess=rosen_hess)
    res = nk.minimize(rosen, x0, method="newton", jac=rosen_der, hess=rosen_hess)
    assert isinstance(res, so.OptimizeResult) and isinstance(res, nk.OptimizeResult)
    assert res.success and res.status == 0, res.message
    assert np.max(np.abs(res.x - ref.x)) < 1e-5
    assert np.max(np.abs(res.x - 1.0)) < 1e-7
    assert res.fun < 1e-14 and np.max(np.abs(res.jac)) <= 1e-6
    assert res.nhev >= res.nit and res.njev >= res.nit + 1
    assert len(res.taus) == res.nit and all(t >= 0 for t in res.taus)
    assert len(res.lambda_min) == res.nit
    # Rosenbrock's Hessian is indefinite at some of these iterates: τ > 0 was needed.
    if n > 2:
        assert max(res.taus) > 0 and min(res.lambda_min) < 0


@pytest.mark.parametrize("n", [2, 10])
def test_matrix_free_newton_cg_with_hessp(n):
    x0 = _x0(n)
    res = nk.minimize(rosen, x0, method="newton", jac=rosen_der, hessp=rosen_hess_prod)
    assert res.success, res.message
    assert np.max(np.abs(res.x - 1.0)) < 1e-6
    assert len(res.cg_iterations) == res.nit and "taus" not in res
    assert res.nhev > 0  # counts Hessian-vector products


def test_hessian_as_operator_is_matrix_free():
    def hess(x):
        return nk.HessianOperator(lambda v: rosen_hess_prod(x, v), 2, like=x)

    res = nk.minimize(rosen, np.array([-1.2, 1.0]), method="newton", jac=rosen_der, hess=hess)
    assert res.success and np.allclose(res.x, 1.0, atol=1e-6)
    assert len(res.cg_iterations) == res.nit and "taus" not in res
    dense = nk.minimize(rosen, np.array([-1.2, 1.0]), method="newton", jac=rosen_der, hess=hess,
                        options={"linear_solver": "cholesky"})
    assert dense.success and len(dense.taus) == dense.nit


@pytest.mark.parametrize("shift", ["eigen", "retry"])
def test_shift_rules(shift):
    res = nk.minimize(rosen, _x0(10), method="newton", jac=rosen_der, hess=rosen_hess,
                      options={"shift": shift})
    assert res.success and np.allclose(res.x, 1.0, atol=1e-7)


def test_fixed_shift_and_lanczos_eigensolver():
    res = nk.minimize(rosen, _x0(2), method="newton", jac=rosen_der, hess=rosen_hess,
                      options={"shift": "fixed", "tau": 1.0, "maxiter": 500})
    assert res.success and all(t == 1.0 for t in res.taus)
    res = nk.minimize(rosen, _x0(10), method="newton", jac=rosen_der, hess=rosen_hess,
                      options={"eigensolver": "lanczos"})
    assert res.success and np.allclose(res.x, 1.0, atol=1e-7)


def test_unit_steps_follow_the_seed_rule():
    """line_search=False: x_{k+1} = x_k - (H + τI)^{-1} g with τ = max(-1.5 λ_min, 0)."""
    def f(x):
        return np.sum(x ** 4) / 4 + 0.5 * x @ x

    x0 = np.array([1.0, -2.0, 0.5])
    jac = lambda x: x ** 3 + x  # noqa: E731
    hess = lambda x: np.diag(3 * x ** 2 + 1)  # noqa: E731
    seen = []
    res = nk.minimize(f, x0, method="newton", jac=jac, hess=hess,
                      callback=lambda x: seen.append(x.copy()),
                      options={"line_search": False})
    x = x0.copy()
    for xk in seen:
        x = x - np.linalg.solve(hess(x), jac(x))
        np.testing.assert_allclose(xk, x, rtol=1e-12, atol=1e-15)
    assert res.success and res.step_lengths == [1.0] * res.nit


def test_saddle_point_is_not_success():
    """f = x² - y² from (1, 0): the iterates reach the saddle (0, 0) where g = 0."""
    f = lambda x: x[0] ** 2 - x[1] ** 2  # noqa: E731
    jac = lambda x: np.array([2 * x[0], -2 * x[1]])  # noqa: E731
    hess = lambda x: np.diag([2.0, -2.0])  # noqa: E731
    res = nk.minimize(f, np.array([1.0, 0.0]), method="newton", jac=jac, hess=hess)
    assert not res.success and res.status == 4 and res.termination == "INDEFINITE"
    assert "saddle" in res.message and "-2" in res.message
    assert np.max(np.abs(res.x)) <= 1e-6


def test_saddle_detected_matrix_free():
    f = lambda x: x[0] ** 2 - x[1] ** 2 + x[2] ** 2  # noqa: E731
    jac = lambda x: np.array([2 * x[0], -2 * x[1], 2 * x[2]])  # noqa: E731
    hessp = lambda x, p: np.array([2, -2, 2.0]) * p  # noqa: E731
    res = nk.minimize(f, np.array([1.0, 0.0, 1.0]), method="newton", jac=jac, hessp=hessp)
    assert not res.success and res.status == 4


def test_jac_true_and_args():
    def fg(x, a):
        return np.sum((x - a) ** 2), 2 * (x - a)

    res = nk.minimize(fg, np.zeros(3), method="newton", jac=True,
                      hess=lambda x, a: 2 * np.eye(3), args=(np.array([1.0, 2, 3]),))
    assert res.success and np.allclose(res.x, [1, 2, 3]) and res.nit == 1


def test_finite_differences_warn_and_converge():
    with pytest.warns(nk.FiniteDifferenceWarning) as rec:
        res = nk.minimize(rosen, np.array([-1.2, 1.0]), method="newton")
    messages = " ".join(str(w.message) for w in rec)
    assert "finite differences" in messages and "Hessian" in messages
    assert rec[0].filename == __file__  # stacklevel points at the caller
    assert res.success and np.allclose(res.x, 1.0, atol=1e-5)


def test_explicit_fd_schemes_do_not_warn(recwarn):
    res = nk.minimize(rosen, np.array([-1.2, 1.0]), method="newton", jac=rosen_der,
                      hess="2-point")
    assert res.success and np.allclose(res.x, 1.0, atol=1e-6)
    assert not [w for w in recwarn if issubclass(w.category, nk.FiniteDifferenceWarning)]


def test_composite_as_scalar_objective_for_newton():
    A = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 7.0]])
    t = np.array([1.0, 0.0, 2.0])

    class Model:
        def __call__(self, x):
            return A @ x

        def vjp(self, x, w):
            return A.T @ w

    comp = nk.Composite(Model(), nk.L2Loss(t))
    res = nk.minimize(comp, np.zeros(2), method="newton", hess=lambda x: A.T @ A)
    assert res.success
    np.testing.assert_allclose(res.x, np.linalg.lstsq(A, t, rcond=None)[0], rtol=1e-10)


def test_residual_to_newton_says_what_to_do():
    with pytest.raises(ValueError, match="method='gn', 'lm' or 'hig'"):
        nk.minimize(lambda x: x - 1, np.zeros(3), method="newton", jac=lambda x: np.eye(3),
                    hess=lambda x: np.eye(3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_is_kept(dtype):
    x0 = np.array([-1.2, 1.0], dtype=dtype)

    def f(x):
        return (1 - x[0]) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2

    res = nk.minimize(f, x0, method="newton", jac=lambda x: rosen_der(x).astype(x.dtype),
                      hess=lambda x: rosen_hess(x).astype(x.dtype))
    assert res.x.dtype == dtype and res.jac.dtype == dtype
    assert res.success, res.message
    tol = 1e-3 if dtype == np.float32 else 1e-8
    assert np.allclose(res.x, 1.0, atol=tol)


def test_nonfinite_dense_hessian_at_x0_is_an_error_and_x0_is_untouched():
    x0 = np.array([-1.2, 1.0])
    keep = x0.copy()

    def hess(x):
        H = rosen_hess(x)
        if np.array_equal(x, keep):
            H[0, 1] = H[1, 0] = np.nan
        return H

    with pytest.raises(ValueError, match="Hessian is not finite at x0"):
        nk.minimize(rosen, x0, method="newton", jac=rosen_der, hess=hess)
    assert np.array_equal(x0, keep)
    # the Hessian checked at x0 is the one the first step uses: one evaluation per iteration,
    # plus the final curvature check
    calls = []
    res = nk.minimize(rosen, x0, method="newton", jac=rosen_der,
                      hess=lambda x: calls.append(1) or rosen_hess(x))
    assert res.success and res.nhev == len(calls) == res.nit + 1


@pytest.mark.parametrize("route", ["cg", "hessp"])
def test_matrix_free_curvature_check_does_not_pass_an_unresolved_saddle(route):
    """Matrix-free Newton checks the final curvature by Lanczos, whose smallest Ritz value is
    only an upper bound on λ_min.  A dense spectrum in [1e-3, 1] (n = 2000) with one
    eigenvalue −1e-5, from x0 = 0 (a saddle, ∇f = 0; torch, autodiff or hessp): 80 steps
    leave θ_min = 4e-5, whose residual interval reaches below zero, and the run ended GTOL, a
    success.  It now ends CURVATURE_UNVERIFIED (not a success); the dense route says
    INDEFINITE; without the negative eigenvalue the matrix-free run succeeds (its interval
    [θ − ρ, θ + ρ] lies above the tolerance)."""
    torch = pytest.importorskip("torch")
    n = 2000
    d = torch.linspace(1e-3, 1.0, n, dtype=torch.float64)
    saddle = d.clone()
    saddle[n // 2] = -1e-5
    x0 = torch.zeros(n, dtype=torch.float64)
    for diag, expect in ((saddle, "CURVATURE_UNVERIFIED"), (d, "GTOL")):
        kw = ({"options": {"linear_solver": "cg"}} if route == "cg"
              else {"hessp": lambda x, p, diag=diag: diag * p})
        res = nk.minimize(lambda x, diag=diag: 0.5 * (diag * x * x).sum(), x0,
                          method="newton", **kw)
        assert res.termination == expect, res.message
    res = nk.minimize(lambda x: 0.5 * (saddle * x * x).sum(), x0, method="newton",
                      hess=lambda x: torch.diag(saddle))
    assert res.termination == "INDEFINITE"


def _rosen_grad(x):
    return np.array([-400 * x[0] * (x[1] - x[0] ** 2) - 2 * (1 - x[0]), 200 * (x[1] - x[0] ** 2)])


def _newton(f, x0, batch, **kw):
    """``(success, x, termination)`` of Newton on ``f`` (written for rows ``X[..., j]``) from
    ``x0``: alone, or as a batch of one."""
    if batch:
        r = nk.minimize(f, x0[None], method="newton", batch=True, **kw)
        return bool(r.success[0]), r.x[0], r.termination_of(0)
    r = nk.minimize(f, x0, method="newton", **kw)
    return r.success, r.x, r.termination


@pytest.mark.parametrize("batch", [False, True])
def test_forward_difference_bias_is_subtracted_not_allowed_for(batch):
    """A forward difference is off by b_j = h_j·H_jj/2; the gradient test subtracts it.  Allowed
    for as an error bound, it let a true gradient of twice its size pass: a float32 f (steps
    3.5e-4, b ≈ 0.1) ended GTOL, success, at (0.87, 0.76) with |∇f| = 0.21.  Success now means
    |∇f| within gtol plus the rounding 2ε₃₂|f|/h ≤ 8e-3 (f ≤ 12 on these paths); and a float64
    f still reaches GTOL (its bias, 1e-6 at the minimum, above gtol, is subtracted)."""
    def rosen32(X):
        X = np.asarray(X, dtype=np.float32)
        return 100 * (X[..., 1] - X[..., 0] ** 2) ** 2 + (1 - X[..., 0]) ** 2

    for x0 in ([-1.2, 1.0], [0.5, 0.5], [2.0, 2.0]):
        ok, x, _ = _newton(rosen32, np.array(x0), batch, jac="2-point")
        assert not ok or np.abs(_rosen_grad(x)).max() < 1e-2, (x0, x)
    if not batch:
        r = nk.minimize(rosen, np.array([-1.2, 1.0]), method="newton", jac="2-point")
        assert r.success and r.termination == "GTOL" and np.abs(r.x - 1.0).max() < 1e-6


@pytest.mark.parametrize("batch", [False, True])
def test_a_float32_gradient_gets_float32_hessian_steps(batch):
    """A ``jac`` returning float32 at float64 x: the Hessian's differences of it take steps for
    float32's accuracy (they took float64's, 1.5e-8, all rounding: 600 iterations, MAXITER).
    Rosenbrock from (−1.2, 1) reaches (1, 1) to 1e-4 in under 100 iterations; the float32
    gradient's rounding there (2e-5) is above gtol, so the run may end LINE_SEARCH rather than
    succeed."""
    def grad32(x):  # computed in float32 (x rounded to float32 first)
        return _rosen_grad(np.asarray(x, dtype=np.float32)).astype(np.float32)

    x0 = np.array([-1.2, 1.0])
    if batch:
        r = nk.minimize(lambda X: np.array([rosen(x) for x in X]), x0[None], method="newton",
                        jac=lambda X: np.stack([grad32(x) for x in X]), hess="2-point",
                        batch=True)
        nit, x = int(r["nit"][0]), r["x"][0]
    else:
        r = nk.minimize(rosen, x0, method="newton", jac=grad32, hess="2-point")
        nit, x = r.nit, r.x
    assert nit < 100 and np.abs(x - 1.0).max() < 1e-4


@pytest.mark.parametrize("batch", [False, True])
def test_after_the_switch_the_step_takes_richardsons_gradient(batch):
    """f = a·x₀ + x₀²/2 + b·x₀³/6 + (x₁ − 1)² with b = 1e4 and a = −b·h²/6 (h = ε^(1/3), the
    central step at x₀ = 0): there G(h) = a + b·h²/6 = 0 while ∇f₀ = a = −6.1e-8 (6·gtol).
    The gradient stop at x0 is steered (Richardson's gradient is exact for a cubic, a).  The
    run switched to Richardson's gradient but its next step was still found on G = 0, a
    Newton step of length 0: XTOL, success, at x0.  Now the step takes Richardson's gradient
    at the switch: success means |∇f| ≤ 2·gtol (Richardson's rounding 3ε|f|/h ≈ 1e-21 here,
    its h⁴ term 0 for a cubic) and x moved off 0."""
    h = np.finfo(np.float64).eps ** (1 / 3)
    b = 1e4
    a = -b * h * h / 6

    def f(X):
        return a * X[..., 0] + X[..., 0] ** 2 / 2 + b * X[..., 0] ** 3 / 6 + (X[..., 1] - 1) ** 2

    ok, x, _ = _newton(f, np.array([0.0, 1.0]), batch, jac="3-point")
    grad = a + x[0] + b * x[0] ** 2 / 2
    assert ok and abs(grad) <= 2e-8 and x[0] != 0.0, (ok, grad, x)


@pytest.mark.parametrize("batch", [False, True])
def test_a_central_difference_stop_is_checked_by_richardson(batch):
    """A central difference's own error h²·f‴/6 is not known: with a float32 f (h = 4.9e-3)
    Newton ended GTOL or XTOL, success, with |∇f| = 9.7e-3 = 40·gtol, where G's error cancelled
    ∇f.  A stop is now checked on Richardson's (4·G(h/2) − G(h))/3 (error O(h⁴) and the
    rounding 3ε|f|/h): the run goes on with that gradient and stops at the minimiser, single
    and batched.  Success means |∇f| ≤ 2·gtol (the rounding
    3ε₃₂|f|/h is below 1e-9 at f ≤ 1e-6, the h⁴ term below 1e-6)."""
    def rosen32(X):
        X = np.asarray(X, dtype=np.float32)
        return 100 * (X[..., 1] - X[..., 0] ** 2) ** 2 + (1 - X[..., 0]) ** 2

    X0 = np.array([[-1.2, 1.0], [0.5, 0.5]], dtype=np.float32)
    gtol = 1e-8 * np.sqrt(np.finfo(np.float32).eps / np.finfo(np.float64).eps)
    if batch:
        r = nk.minimize(rosen32, X0, method="newton", jac="3-point", hess="3-point",
                        batch=True)
        runs = [(bool(r["success"][i]), r["x"][i], r.termination_of(i)) for i in range(2)]
    else:
        runs = [(o.success, o.x, o.termination) for o in
                (nk.minimize(rosen32, x0, method="newton", jac="3-point") for x0 in X0)]
    for ok, x, term in runs:
        g = np.abs(_rosen_grad(x.astype(np.float64))).max()
        assert ok and g <= 2 * gtol, (term, g)


def _brown_badly_scaled():
    """Brown's badly scaled function (Moré, Garbow & Hillstrom #4): ½‖r‖² with r = (x₁ − 1e6,
    x₂ − 2e-6, x₁x₂ − 2), minimum 0 at (1e6, 2e-6); κ(H) ≈ 1e12 there."""
    def r(x):
        return np.array([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2])

    def J(x):
        return np.array([[1.0, 0.0], [0.0, 1.0], [x[1], x[0]]])

    def hess(x):
        return J(x).T @ J(x) + r(x)[2] * np.array([[0.0, 1.0], [1.0, 0.0]])

    return (lambda x: 0.5 * r(x) @ r(x)), (lambda x: J(x).T @ r(x)), hess


def test_a_cg_step_short_because_cg_stopped_early_is_no_convergence():
    """On the CG route (``hessp``) the truncated-CG step, one or two iterations on κ(H) ≈ 1e12,
    was 1e-8 long: the run ended XTOL, success, after 3 iterations at f = 2 with |∇f| = 2e6.
    A change-test stop after a CG step is now checked on the Newton step solved to
    ‖Hd + g‖ ≤ 1e-10‖g‖: the run goes on to the minimum (f ≤ 1e-10, f* = 0)."""
    f, g, hess = _brown_badly_scaled()
    res = nk.minimize(f, np.array([1.0, 1.0]), method="newton", jac=g,
                      hessp=lambda x, v: hess(x) @ v)
    assert res.success and res.fun <= 1e-10, (res.termination, res.fun)


def test_a_non_finite_hessian_product_at_the_stop_ends_nonfinite():
    """``hessp`` turning NaN near the end (x₀ ≤ 2): the final curvature check's Lanczos fed the
    NaN to SciPy's tridiagonal eigensolver, whose ValueError ended the run as an exception.
    Lanczos now returns NaN estimates (not converged) for a non-finite product, and the run
    ends NONFINITE, as the guide says."""
    r = nk.linalg.lanczos_ritz(nk.operators.FunctionOperator(
        (3, 3), lambda v: np.full(3, np.nan), like=np.zeros(3), tags=("symmetric",)))
    assert np.isnan(r.lambda_min) and not r.converged
    res = nk.minimize(lambda x: ((x - 1) ** 2).sum(), np.array([3.0, 3.0]), method="newton",
                      jac=lambda x: 2 * (x - 1),
                      hessp=lambda x, p: 2 * p if x[0] > 2 else np.full(2, np.nan))
    assert res.termination == "NONFINITE" and not res.success


def _jennrich_sampson32():
    """Jennrich–Sampson (Moré, Garbow & Hillstrom #6, m = 10) as a float32 ½‖r‖², with its
    float64 gradient for the checks."""
    i = np.arange(1, 11)

    def r(x):
        return 2 + 2 * i - (np.exp(i * x[0]) + np.exp(i * x[1]))

    def f32(x):
        v = r(np.asarray(x, np.float64))
        return np.float32(0.5 * v @ v)

    def grad(x):
        x = np.asarray(x, np.float64)
        J = -np.stack([i * np.exp(i * x[0]), i * np.exp(i * x[1])], 1)
        return J.T @ r(x)

    return f32, grad


@pytest.mark.parametrize("batch", [False, True])
def test_a_forward_difference_stop_is_checked_by_richardson(batch):
    """Forward differences in float32 (h = 3.5e-4·|x|): the bias h·H_jj/2 is subtracted with
    a difference Hessian's diagonal, 30 % high here, and Jennrich–Sampson from 10·x0 ended
    GTOL, success, at |∇f| = 6.9 (gtol = 2.3e-4).  A stop on a forward difference is now
    checked on Richardson's extrapolation of central differences (4n evaluations), against
    the forward test's own allowance (gtol plus G's rounding 2ε|f|/h): unconfirmed, the run
    ends GRADIENT_UNVERIFIED.  Success means |∇f| within that allowance plus Richardson's
    rounding (3ε|f|/h_c), whose float32 bound at f ≤ 70 is below 0.1."""
    f32, grad = _jennrich_sampson32()
    x0 = np.array([3.0, 4.0], np.float32)
    rows = (lambda X: np.array([f32(x) for x in X])) if batch else f32
    with np.errstate(over="ignore"):  # (f overflows at the first trials: the search halves)
        ok, x, term = _newton(rows, x0, batch, jac="2-point")
    assert not ok or np.abs(grad(x)).max() <= 0.1, (term, grad(x))
