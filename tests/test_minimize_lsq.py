"""Gauss-Newton and Levenberg-Marquardt against scipy.optimize.least_squares."""

import warnings

import numpy as np
import pytest
import scipy.optimize as so
from hypothesis import example, given
from hypothesis import strategies as st

import newtonkit as nk
from benchmarks import nls_problems as nls

EPS = float(np.finfo(np.float64).eps)
T = np.linspace(0.0, 4.0, 30)
Y_EXP = 2.5 * np.exp(-1.3 * T) + 0.02 * np.sin(7 * T)


def exp_res(p):
    return p[0] * np.exp(-p[1] * T) - Y_EXP


def exp_jac(p):
    e = np.exp(-p[1] * T)
    return np.stack([e, -p[0] * T * e], axis=1)


# Rational fit y = (a + b t) / (1 + c t) (MGH-style data).
TR = np.linspace(0.0, 3.0, 25)
Y_RAT = (1.0 + 2.0 * TR) / (1.0 + 0.5 * TR) + 0.01 * np.cos(5 * TR)


def rat_res(p):
    return (p[0] + p[1] * TR) / (1 + p[2] * TR) - Y_RAT


def rat_jac(p):
    d = 1 + p[2] * TR
    return np.stack([1 / d, TR / d, -(p[0] + p[1] * TR) * TR / d ** 2], axis=1)


def rosen_res(x):
    return np.array([10 * (x[1] - x[0] ** 2), 1 - x[0]])


def rosen_jac(x):
    return np.array([[-20 * x[0], 10.0], [-1.0, 0.0]])


# Meyer's thermistor problem (MGH 10): badly scaled, 3 parameters.
Y_MEYER = np.array([34780, 28610, 23650, 19630, 16370, 13720, 11540, 9744, 8261, 7030, 6005,
                    5147, 4427, 3820, 3307, 2872.0])
T_MEYER = 45 + 5 * np.arange(1, 17.0)


def meyer_res(x):
    return x[0] * np.exp(x[1] / (T_MEYER + x[2])) - Y_MEYER


def meyer_jac(x):
    e = np.exp(x[1] / (T_MEYER + x[2]))
    return np.stack([e, x[0] * e / (T_MEYER + x[2]),
                     -x[0] * e * x[1] / (T_MEYER + x[2]) ** 2], axis=1)


# Brown almost-linear (MGH 27), n = 10.
def bal_res(x):
    return np.concatenate([x[:-1] + x.sum() - (x.size + 1), [np.prod(x) - 1]])


def bal_jac(x):
    n = x.size
    J = np.ones((n, n)) + np.eye(n)
    J[-1] = np.prod(x) / x
    return J


PROBLEMS = [
    ("exponential", exp_res, exp_jac, np.array([1.0, 0.5])),
    ("rational", rat_res, rat_jac, np.array([0.5, 1.0, 0.1])),
    ("rosenbrock", rosen_res, rosen_jac, np.array([-1.2, 1.0])),
    ("meyer", meyer_res, meyer_jac, np.array([0.02, 4000.0, 250.0])),
    ("brown-almost-linear", bal_res, bal_jac, np.full(10, 0.5)),
]


@pytest.mark.parametrize("name,res,jac,x0", PROBLEMS, ids=[p[0] for p in PROBLEMS])
def test_lm_reaches_least_squares_optimum(name, res, jac, x0):
    ref = so.least_squares(res, x0, jac=jac, method="lm")
    out = nk.minimize(res, x0, method="lm", jac=jac)
    assert out.success, out.message
    cost = 0.5 * np.sum(ref.fun ** 2)
    assert out.fun <= cost * (1 + 1e-6) + 1e-20
    np.testing.assert_allclose(out.x, ref.x, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(out.residual, res(out.x), rtol=1e-12)
    # economical in Jacobians: no more than MINPACK needs
    assert out.njev <= ref.njev
    assert len(out.damping) == len(out.gain_ratios) == len(out.trust_radius) > 0


@pytest.mark.parametrize("name,res,jac,x0", PROBLEMS[:3], ids=[p[0] for p in PROBLEMS[:3]])
def test_gauss_newton_reaches_least_squares_optimum(name, res, jac, x0):
    ref = so.least_squares(res, x0, jac=jac, method="lm")
    out = nk.minimize(res, x0, method="gn", jac=jac)
    assert out.success, out.message
    np.testing.assert_allclose(out.x, ref.x, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name,res,jac,x0", PROBLEMS[:3], ids=[p[0] for p in PROBLEMS[:3]])
def test_nielsen_lm_reaches_least_squares_optimum(name, res, jac, x0):
    ref = so.least_squares(res, x0, jac=jac, method="lm")
    out = nk.minimize(res, x0, method="lm", jac=jac, options={"update": "nielsen"})
    assert out.success, out.message
    assert out.damping_update == "nielsen"
    np.testing.assert_allclose(out.x, ref.x, rtol=1e-5, atol=1e-8)


def test_gn_with_damping_is_lm():
    out = nk.minimize(exp_res, np.array([1.0, 0.5]), method="gauss-newton", jac=exp_jac,
                      options={"damping": 1e-2})
    assert out.method == "lm" and out.damping_update == "nielsen" and out.success
    assert out.damping[0] < 1e-2 * 1e3  # relative to max diag(JᵀJ)/D²


@given(st.integers(1, 6), st.integers(0, 6), st.integers(0, 2 ** 31 - 1))
@example(n=6, extra=1, seed=7808)
def test_gauss_newton_solves_linear_least_squares_in_one_step(n, extra, seed):
    rng = np.random.default_rng(seed)
    m = n + extra
    A = rng.standard_normal((m, n)) + 3 * np.eye(m, n)
    b = rng.standard_normal(m)
    iterates = []
    out = nk.minimize(lambda x: A @ x - b, np.zeros(n), method="gn", jac=A,
                      callback=lambda intermediate_result: iterates.append(intermediate_result))
    x_ls = np.linalg.lstsq(A, b, rcond=None)[0]
    assert out.success and out.nit <= 2  # a zero residual needs the xtol test on a 2nd step
    np.testing.assert_allclose(iterates[0].x, x_ls, rtol=1e-8, atol=1e-10)
    assert iterates[0].step_length == 1.0
    if extra > 0:
        # non-zero residual r ⟂ range(A).  A constant jac array is dense, so the step comes
        # from a dense solver (Cholesky of AᵀA where its conditioning allows, else Householder
        # QR); both are backward stable in the sense of Higham (2002), §20.2–20.4: the computed
        # x₁ solves a problem perturbed by ‖ΔA‖ ≤ γ‖A‖, ‖Δb‖ ≤ γ‖b‖ with γ = c·m·n·ε (c = 10
        # here), so ‖Aᵀr₁‖ ≤ γ‖A‖(‖A‖‖x₁‖ + ‖b‖ + ‖r₁‖), evaluating r₁ included.  The scaled
        # gradient max |Aⱼᵀr₁|/(‖Aⱼ‖‖r₁‖) after the one step is then at most `bound`; where
        # that is below gtol = 1e-8, the gradient test (tested first) ends the run there.
        # (The soak case n = 6, m = 7, seed 7808 has ‖r‖ = 1e-3 against ‖b‖ = 2.6.)
        r_ls = A @ x_ls - b
        nA = np.linalg.norm(A, 2)
        gamma = 10 * m * n * EPS
        slack = gamma * nA * (nA * np.linalg.norm(x_ls) + np.linalg.norm(b)
                              + np.linalg.norm(r_ls))
        bound = slack / (np.linalg.norm(A, axis=0).min() * np.linalg.norm(r_ls))
        if bound <= 1e-8:
            assert out.termination == "GTOL" and out.nit == 1 and out.njev == 2
        else:
            assert out.termination in ("GTOL", "XTOL")
    # (m = n: r after the step is rounding or exactly 0, so XTOL or ZERO; only code 0 is certain)


@pytest.mark.parametrize("batch", [False, True])
def test_gauss_newton_ftol_needs_the_predicted_reduction_too(batch):
    """r = x² − 1 from x₀ = √0.2 with plain steps (line_search=False): the Gauss-Newton step
    jumps across the minimum to x₁ = 3/√5, where |r| is the same, 0.8: the actual reduction is
    rounding, but the model predicted all of f (−½gᵀd = ½r₀²).  MINPACK's ftol test needs both
    small; with the actual one alone the run ended FTOL, a success, at f = 0.32.  It goes on
    to x = 1."""
    x0 = np.array([np.sqrt(0.2)])
    opts = dict(line_search=False)
    if batch:
        res = nk.minimize(lambda X: X ** 2 - 1, x0[None], method="gn", options=opts,
                          jac=lambda X: (2 * X)[:, :, None], batch=True)
        x, ok = res.x[0], res.success[0]
    else:
        res = nk.minimize(lambda x: x ** 2 - 1, x0, method="gn", options=opts,
                          jac=lambda x: np.diag(2 * x))
        x, ok = res.x, res.success
    assert ok
    # at a success near the zero-residual minimum |x − 1| ≈ |r|/2; xtol = 1e-8 stops after
    # the Newton-like quadratic convergence, |x − 1| ≤ 1e-8 to first order (1e-6 allows the
    # rest and still excludes the false stop at 3/√5 = 1.34)
    np.testing.assert_allclose(x, [1.0], atol=1e-6)


@pytest.mark.parametrize("method", ["gn", "lm"])
def test_a_constant_jacobian_array_is_dense(method):
    """jac=A (an array) takes the dense solvers: after the first step the scaled gradient is
    rounding, ≤ 10·m·n·ε·κ(A)·‖A‖(‖A‖‖x‖ + ‖b‖)/(min‖Aⱼ‖·‖r‖) ≈ 1e-13 here (the bound of
    test_gauss_newton_solves_linear_least_squares_in_one_step), so the run ends GTOL after one
    iteration.  As an operator (CGLS, cg_rtol 1e-10) LM ended FTOL after three."""
    A = np.array([[2.0, 1.0], [1.0, 3.0], [0.5, -1.0]])
    b = np.array([1.0, 2.0, 0.5])
    out = nk.minimize(lambda x: A @ x - b, np.zeros(2), method=method, jac=A)
    assert out.termination == "GTOL" and out.nit == 1
    np.testing.assert_allclose(out.x, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-13)
    out = nk.minimize(lambda x: A @ x - b, np.zeros(2), method=method,
                      jac=nk.aslinearoperator(A))  # an operator stays matrix-free
    assert out.success


@pytest.mark.parametrize("solver", ["qr", "lstsq", "cholesky", "cgls"])
def test_gn_linear_solvers(solver):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((12, 4))
    b = rng.standard_normal(12)
    out = nk.minimize(lambda x: A @ x - b, np.zeros(4), method="gn", jac=lambda x: A,
                      options={"linear_solver": solver})
    assert out.success
    np.testing.assert_allclose(out.x, np.linalg.lstsq(A, b, rcond=None)[0], rtol=1e-7)


def test_matrix_free_jacobian_operator_uses_nielsen_cgls():
    def jac(p):
        Jd = exp_jac(p)
        return nk.FunctionOperator(Jd.shape, lambda v: Jd @ v, lambda w: Jd.T @ w, like=p)

    ref = so.least_squares(exp_res, [1.0, 0.5], jac=exp_jac, method="lm")
    out = nk.minimize(exp_res, np.array([1.0, 0.5]), method="lm", jac=jac)
    assert out.success and out.damping_update == "nielsen"
    np.testing.assert_allclose(out.x, ref.x, rtol=1e-6)
    gn = nk.minimize(exp_res, np.array([1.0, 0.5]), method="gn", jac=jac)
    assert gn.success
    np.testing.assert_allclose(gn.x, ref.x, rtol=1e-6)


def test_scipy_operator_jacobian():
    import scipy.sparse.linalg as spla

    def jac(p):
        return spla.aslinearoperator(exp_jac(p))

    out = nk.minimize(exp_res, np.array([1.0, 0.5]), method="gn", jac=jac)
    assert out.success


def test_lm_without_scaling():
    ref = so.least_squares(exp_res, [1.0, 0.5], jac=exp_jac, method="lm")
    out = nk.minimize(exp_res, np.array([1.0, 0.5]), method="lm", jac=exp_jac,
                      options={"scaling": False, "factor": 10.0})
    assert out.success
    np.testing.assert_allclose(out.x, ref.x, rtol=1e-6)


def test_finite_difference_jacobian_warns_and_matches():
    ref = so.least_squares(rat_res, [0.5, 1.0, 0.1], method="lm")
    with pytest.warns(nk.FiniteDifferenceWarning, match="finite differences"):
        out = nk.minimize(rat_res, np.array([0.5, 1.0, 0.1]), method="lm")
    assert out.success
    np.testing.assert_allclose(out.x, ref.x, rtol=1e-5)


def test_weighted_composite_matches_weighted_least_squares():
    w = np.linspace(0.5, 2.0, T.size)

    class ExpModel:
        def __call__(self, p):
            return p[0] * np.exp(-p[1] * T)

        def jacobian(self, p):
            return exp_jac(p)

    comp = nk.Composite(ExpModel(), nk.L2Loss(Y_EXP, weights=w))
    out = nk.minimize(comp, np.array([1.0, 0.5]), method="lm")
    ref = so.least_squares(lambda p: np.sqrt(w) * exp_res(p), [1.0, 0.5],
                           jac=lambda p: np.sqrt(w)[:, None] * exp_jac(p), method="lm")
    assert out.success
    np.testing.assert_allclose(out.x, ref.x, rtol=1e-6)
    assert out.fun == pytest.approx(0.5 * np.sum(ref.fun ** 2), rel=1e-8)
    assert out.outputs.shape == T.shape


def test_custom_loss_generalised_gauss_newton():
    """A user loss with a dense Hessian in y: L = ½ (y - t)ᵀ W (y - t), W SPD."""
    rng = np.random.default_rng(3)
    M = rng.standard_normal((T.size, T.size))
    W = M @ M.T / T.size + np.eye(T.size)

    class QuadLoss:
        def value(self, y):
            d = y - Y_EXP
            return 0.5 * d @ W @ d

        def grad(self, y):
            return W @ (y - Y_EXP)

        def hessian(self, y):
            return W

    class ExpModel:
        def __call__(self, p):
            return p[0] * np.exp(-p[1] * T)

        def jvp(self, p, v):
            return exp_jac(p) @ v

        def vjp(self, p, w):
            return exp_jac(p).T @ w

    L = np.linalg.cholesky(W)
    ref = so.least_squares(lambda p: L.T @ exp_res(p), [1.0, 0.5],
                           jac=lambda p: L.T @ exp_jac(p), method="lm")
    for method in ("lm", "gn"):
        out = nk.minimize(nk.Composite(ExpModel(), QuadLoss()), np.array([1.0, 0.5]),
                          method=method)
        assert out.success, out.message
        np.testing.assert_allclose(out.x, ref.x, rtol=1e-6)


def test_loss_without_hessian_needs_hig():
    class GradOnly:
        def value(self, y):
            return 0.5 * np.sum(y ** 2)

        def grad(self, y):
            return y

    class Shift:
        def __call__(self, p):
            return p - 1.0

        def jacobian(self, p):
            return np.eye(p.size)

    comp = nk.Composite(Shift(), GradOnly())
    with pytest.raises(ValueError, match="hessian_diag"):
        nk.minimize(comp, np.zeros(2), method="lm")
    assert nk.minimize(comp, np.zeros(2), method="hig").success


def test_zero_residual_stops_exactly():
    """J = I from x0 = 0: D = 1 and Δ0 = factor·1 = 100 > ‖p‖ = 3√3, so the first trial is the
    Gauss-Newton step p = 3·1, exact in floating point (the factorisation of I is exact); then
    r = 0 exactly and the next iteration stops on f = 0 before any other test."""
    out = nk.minimize(lambda x: x - 3.0, np.zeros(3), method="lm", jac=lambda x: np.eye(3))
    assert out.termination == "ZERO" and out.status == 0 and out.nit == 1
    np.testing.assert_array_equal(out.x, 3.0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lm_dtypes(dtype):
    x0 = np.array([1.0, 0.5], dtype=dtype)
    t = T.astype(dtype)
    y = Y_EXP.astype(dtype)
    out = nk.minimize(lambda p: p[0] * np.exp(-p[1] * t) - y, x0, method="lm",
                      jac=lambda p: np.stack([np.exp(-p[1] * t),
                                              -p[0] * t * np.exp(-p[1] * t)], axis=1))
    assert out.x.dtype == dtype and out.success, out.message
    ref = so.least_squares(exp_res, [1.0, 0.5], jac=exp_jac, method="lm")
    np.testing.assert_allclose(out.x, ref.x, rtol=1e-3 if dtype == np.float32 else 1e-7)


@pytest.mark.parametrize("q", [1e-14, 3e-14, 1e-13, 1e-9, 1e-6, 1e-3])
def test_gn_ftol_when_rounding_in_f_shortens_the_step(q):
    """Residuals rounded to multiples of q: near the minimum the full step's decrease is below
    the rounding of f and Armijo shortens it.  There GN stops FTOL by MINPACK's test (actual
    and predicted reductions ≤ ftol·f, the prediction −½gᵀd of the full step), not
    NO_PROGRESS; no run reports success away from the minimum, whatever q.  Single and
    batched paths alike."""
    P = np.array([[2.5, 1.3], [1.0, 0.5], [3.0, 2.0], [2.0, 1.0]])
    Y = P[:, :1] * np.exp(-P[:, 1:] * T) + 0.05 * np.sin(np.arange(1, 5)[:, None] * 3 * T)
    opts = dict(ftol=1e-12, xtol=1e-15, gtol=1e-15)

    def rounded(r):
        return np.round(r / q) * q

    def batch_res(Z, Yr):
        return rounded(Z[:, :1] * np.exp(-Z[:, 1:] * T) - Yr)

    def batch_jac(Z, Yr):
        e = np.exp(-Z[:, 1:] * T)
        return np.stack([e, -Z[:, :1] * T * e], axis=2)

    batch = nk.minimize(batch_res, np.ones((4, 2)), method="gn", jac=batch_jac, args=(Y,),
                        batch=True, options=opts)
    for i, y in enumerate(Y):
        one = nk.minimize(lambda p, y=y: rounded(p[0] * np.exp(-p[1] * T) - y), np.ones(2),
                          method="gn", jac=exp_jac, options=opts)
        ref = so.least_squares(lambda p, y=y: p[0] * np.exp(-p[1] * T) - y, np.ones(2),
                               jac=exp_jac, method="lm", xtol=1e-15, ftol=1e-15)
        s = np.linalg.svd(exp_jac(ref.x), compute_uv=False)
        # an ftol stop leaves x within about √(2·ftol·F)/σ_min of the minimum; the rounding
        # of r moves the minimiser by ‖J⁺δr‖ ≤ √m·(q/2)/σ_min (20× margin on both)
        bound = 20 * (np.sqrt(2 * opts["ftol"] * ref.cost) + np.sqrt(T.size) * q / 2) / s[-1]
        for x, success, termination in ((one.x, one.success, one.termination),
                                        (batch.x[i], batch.success[i], batch.termination_of(i))):
            if success:
                assert np.abs(x - ref.x).max() <= bound, (i, termination)
            # f's rounding, about Σ|rᵢ|·q/2 ≤ 0.48·q (Σ|rᵢ| ≤ 0.96 here), is below
            # ftol·f ≥ 1.7e-14 for q ≤ 3e-14: the ftol test is in reach; where the rounding
            # exceeds ftol·f, NO_PROGRESS is an honest stop
            if q <= 3e-14:
                assert termination == "FTOL", (i, termination)


@pytest.mark.parametrize("path", ["single", "batch", "batch-bounds"])
def test_gn_ftol_after_a_shortened_step_needs_the_model_to_agree(path):
    """With c1 = 0.9999 Armijo accepts only t ≤ 2(1 − c1) of the Gauss-Newton step (the model
    falls by t·|gᵀd|·(1 − t/2)): every step is shortened and lowers f by a small fraction of
    f − f*, below ftol = 1e-3 of f.  The actual reduction alone would call the first such step
    converged; the predicted one (the full step's, about f − f*) keeps the run going, so no
    run ends with success away from the minimum."""
    opts = dict(ftol=1e-3, c1=0.9999, maxiter=30)
    x0, ref = np.array([1.0, 1.0]), so.least_squares(exp_res, [1.0, 1.0], jac=exp_jac).x
    if path == "single":
        out = nk.minimize(exp_res, x0, method="gn", jac=exp_jac, options=opts)
        x, success = out.x, out.success
    else:
        out = nk.minimize(lambda Z: np.stack([exp_res(z) for z in Z]), x0[None], method="gn",
                          jac=lambda Z: np.stack([exp_jac(z) for z in Z]), batch=True,
                          bounds=(0.0, 10.0) if path == "batch-bounds" else None, options=opts)
        x, success = out["x"][0], out["success"][0]
    assert not success or np.abs(x - ref).max() <= 1e-2


@pytest.mark.parametrize("solver", ["auto", "kernel-cg"])
def test_gn_on_a_wide_rank_deficient_operator_is_not_a_false_xtol(solver):
    """A 20 × 30 operator J of rank 10 at μ = 0: CG on the kernel JJᵀw = r meets an
    inconsistent system and returned w = 0, so the step was 0 and GN ended XTOL (success) at
    x0 with a gradient of 37.  ``auto`` now takes CGLS there (the minimum-norm step: the
    optimum in one step), and the xtol test needs a converged solve (forcing kernel-cg ends
    without success)."""
    from newtonkit.operators import MatrixOperator

    rng = np.random.default_rng(0)
    A = rng.standard_normal((20, 10)) @ rng.standard_normal((10, 30))
    b = rng.standard_normal(20)
    res = nk.minimize(lambda x: A @ x - b, np.zeros(30), method="gn",
                      jac=lambda x: MatrixOperator(A), options={"linear_solver": solver})
    best = 0.5 * np.sum((A @ np.linalg.lstsq(A, b, rcond=None)[0] - b) ** 2)
    if solver == "auto":
        # one CGLS step at cg_rtol 1e-10: the optimal cost to within rtol·κ² relative
        assert res.success and res.fun <= best * (1 + 1e-6)
    else:
        assert not res.success


@pytest.mark.parametrize("batch", [False, True])
def test_lm_first_radius_limited_step_is_not_an_ftol_stop(batch):
    """r = [1e6·(x₀ − 1), x₁ − 2] in float32 from 0: the initial radius (factor·‖Dx₀‖) cuts the
    first step to 1e-4, whose actual and predicted relative reductions (2e-4) are below
    float32's ftol 2.3e-4: MINPACK's test ended FTOL, success, at x = (1e-4, 2e-4) with f =
    5e11.  The first trials' ftol test now also needs the Gauss-Newton step's offer; the run
    solves the problem (ZERO)."""
    s = np.float32(1e6)
    x0 = np.zeros(2, dtype=np.float32)
    if batch:
        res = nk.minimize(lambda X: np.stack([s * (X[:, 0] - 1), X[:, 1] - 2], axis=1), x0[None],
                          method="lm", batch=True,
                          jac=lambda X: np.broadcast_to(np.diag([s, 1]).astype(np.float32),
                                                        (X.shape[0], 2, 2)))
        ok, x = bool(res["success"][0]), res["x"][0]
    else:
        res = nk.minimize(lambda x: np.array([s * (x[0] - 1), x[1] - 2]), x0, method="lm",
                          jac=lambda x: np.diag([s, 1]).astype(np.float32))
        ok, x = res.success, res.x
    assert ok and np.abs(x - [1.0, 2.0]).max() < 1e-5, x


@pytest.mark.parametrize("name", ["powell_singular", "rosenbrock", "helical_valley", "box3d"])
@pytest.mark.parametrize("e", [-300, -40, 40, 300])
def test_gauss_newton_runs_are_the_same_in_any_units_of_x(name, e):
    """x in units 2^e times larger, r(x) = r_p(x/2^e): every product with a power of two is
    exact (no value here leaves the normal range), so GN, LM's Nielsen update and the batched
    GN must take the same steps bit for bit, and their xtol floor, xtol²·‖x₀‖, scales along.
    With SciPy's absolute floor xtol², every step of an x of scale 2^-40 ≈ 1e-12 passed: GN
    ended XTOL, success, at x0 after one evaluation (Nielsen after two)."""
    from benchmarks import nls_problems

    p = getattr(nls_problems, name)()
    X0 = np.stack([p.x0, 1.5 * p.x0])
    runs = []
    for s in (1.0, 2.0 ** e):
        def r(x, s=s):
            return p.residual(x / s)

        def jac(x, s=s):
            return p.jacobian(x / s) / s

        def R(X, s=s):
            return np.stack([p.residual(x / s) for x in X])

        def JJ(X, s=s):
            return np.stack([p.jacobian(x / s) / s for x in X])

        gn = nk.minimize(r, s * p.x0, method="gn", jac=jac)
        nielsen = nk.minimize(r, s * p.x0, method="lm", jac=jac, options={"update": "nielsen"})
        batch = nk.minimize(R, s * X0, method="gn", jac=JJ, batch=True)
        runs.append([(res.status, res.nfev, res.x / s) for res in (gn, nielsen)]
                    + [(tuple(batch.status), tuple(batch.nfev), batch.x / s)])
    for (status, nfev, x), (status_s, nfev_s, x_s) in zip(*runs, strict=True):
        assert status == status_s and nfev == nfev_s
        assert np.array_equal(x, x_s)
    assert all(status == 0 for status, *_ in runs[0][:2])  # (the runs converge)


def test_difference_steps_beyond_a_tiny_parameter_are_warned():
    """SciPy's default step η^½·max(1, |x|) = 1.5e-8 is 12 times a time constant of 1.2e-9:
    its Jacobian column is a secant over more than the parameter itself, and a warning names
    the parameter; none with diff_step (relative steps), a Jacobian, or a parameter at 0."""
    t = np.linspace(0.0, 1e-8, 40)
    y = np.exp(-t / 2e-9)

    def r(x):
        return x[0] * np.exp(-t / x[1]) - y + x[2]

    x0 = np.array([0.8, 1.2e-9, 0.0])
    with pytest.warns(nk.FiniteDifferenceWarning, match=r"exceed \|x0\[j\]\| for j = 1 "):
        nk.least_squares(r, x0)
    with pytest.warns(nk.FiniteDifferenceWarning, match=r"for j = 1 "):
        nk.minimize(r, x0, method="gn", jac="3-point")  # (6e-6 central steps)
    with warnings.catch_warnings():
        warnings.simplefilter("error", nk.FiniteDifferenceWarning)
        nk.least_squares(r, x0, diff_step=1.5e-8)
        nk.least_squares(r, x0 * [1, 1e9, 1])  # x of order 1: steps below |x|


def test_newton_difference_steps_beyond_a_tiny_parameter_are_warned():
    """Newton's difference Hessian (of the gradient) and difference gradient take SciPy's
    steps too: Rosenbrock in x = 1e-12·u, from 1e-12·(−1.2, 1) with the gradient given, ended
    XTOL, success, at f = 2.42 (its secants over 1.5e-8 read the function 1e4 units of u
    away).  A warning names the parameters; none with hess given, or at x of order 1."""
    s = 1e-12

    def r(x):
        u = x / s
        return np.array([10.0 * (u[1] - u[0] ** 2), 1.0 - u[0]])

    def J(x):
        u = x / s
        return np.array([[-20.0 * u[0], 10.0], [-1.0, 0.0]]) / s

    def f(x):
        return 0.5 * float(r(x) @ r(x))

    def g(x):
        return J(x).T @ r(x)

    x0 = s * np.array([-1.2, 1.0])
    with pytest.warns(nk.FiniteDifferenceWarning, match=r"exceed \|x0\[j\]\| for j = 0, 1 "):
        nk.minimize(f, x0, method="newton", jac=g)
    with pytest.warns(nk.FiniteDifferenceWarning, match=r"exceed \|x0\[j\]\| for j = 0, 1 "):
        nk.minimize(f, x0, method="newton", jac="3-point", hess=lambda x: J(x).T @ J(x))
    with warnings.catch_warnings():
        warnings.simplefilter("error", nk.FiniteDifferenceWarning)
        nk.minimize(f, x0, method="newton", jac=g, hess=lambda x: J(x).T @ J(x))
        s = 1.0  # (r and J read s: the same problem in x of order 1)
        with pytest.warns(nk.FiniteDifferenceWarning, match="no Hessian given"):
            nk.minimize(f, np.array([-1.2, 1.0]), method="newton", jac=g)


def test_batched_difference_steps_beyond_a_tiny_parameter_are_warned():
    """The batched path warns as the single one: the count of entries of X0 whose default
    difference step exceeds them, and the first (LM's 2-point Jacobian; Newton's difference
    gradient and Hessian); none with a Jacobian or diff_step."""
    t = np.linspace(0.0, 1e-8, 40)
    y = np.exp(-t / 2e-9)

    def r(X):
        return X[:, :1] * np.exp(-t / X[:, 1:2]) - y

    X0 = np.array([[0.8, 1.2e-9], [1.0, 3e-9], [0.9, 0.0]])
    with pytest.warns(nk.FiniteDifferenceWarning, match=r"at 2 entries, the first X0\[0, 1\]"):
        nk.minimize(r, X0[:2], method="lm", jac="2-point", batch=True)
    with pytest.warns(nk.FiniteDifferenceWarning, match=r"at 4 entries, the first X0\[0, 0\]"):
        nk.minimize(lambda X: np.sum(X ** 2, axis=1), 1e-12 * X0[:2], method="newton",
                    jac=lambda X: 2 * X, batch=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", nk.FiniteDifferenceWarning)
        nk.minimize(r, X0[:2], method="lm", jac="2-point", batch=True,
                    options={"diff_step": 1.5e-8})
        nk.minimize(lambda X: np.sum(X ** 2, axis=1), 1e-12 * X0[:2], method="newton",
                    jac=lambda X: 2 * X, hess=lambda X: np.broadcast_to(2 * np.eye(2),
                                                                       (2, 2, 2)),
                    batch=True)


@pytest.mark.parametrize("name, method", [
    ("jennrich_sampson", "lm"), ("jennrich_sampson", "gn"), ("osborne2", "trf"),
    ("box3d", "hig"), ("jennrich_sampson", "lm-batch"), ("jennrich_sampson", "gn-batch"),
    ("jennrich_sampson", "gn-batch-bounds")])
def test_a_change_test_on_a_zero_difference_column_is_no_success(name, method):
    """From 10·x0 these runs reach points where a parameter's effect is below the rounding of
    r (Jennrich–Sampson: x₁ at −25, e^(i·x₁) ≈ 1e-11; Osborne 2 and box 3-D: decays likewise
    gone): the 2-point Jacobian has an exactly zero column, no step moves that parameter, and
    a change test held, success (Jennrich–Sampson FTOL at f = 130, f* = 62.2; box 3-D HIG XTOL
    at f = 233, f* = 0; Osborne 2 trf FTOL at 0.89, f* = 0.020).  Such a stop proves nothing
    about that parameter, as a gradient test would not: FD_ZERO_COLUMN, also for batched rows
    (all of these ended with a success before)."""
    p = getattr(nls, name)()
    x0 = 10.0 * np.asarray(p.x0, float)
    kind, _, rest = method.partition("-")
    bounds = (-50.0, 50.0) if rest == "batch-bounds" else None
    if rest:
        res = nk.minimize(lambda X: np.stack([p.residual(x) for x in X]), x0[None],
                          method=kind, jac="2-point", batch=True, bounds=bounds)
        ok, term = bool(res.success[0]), res.termination_of(0)
    elif kind == "trf":
        res = nk.least_squares(p.residual, x0, method="trf")
        ok, term = res.success, res.termination
    else:
        res = nk.minimize(p.residual, x0, method=kind, jac="2-point")
        ok, term = res.success, res.termination
    assert not ok and term == "FD_ZERO_COLUMN", term


@pytest.mark.parametrize("backend", ["torch", "array_api_strict"])
def test_a_change_test_on_a_zero_difference_column_on_other_backends(backend):
    """The zero-column check at ftol stops on torch and array-api-strict arrays (lm, gn):
    Jennrich–Sampson from (3, 4), 2-point Jacobians, as with NumPy."""
    xp = pytest.importorskip(backend)
    i = xp.asarray(np.arange(1.0, 11.0), dtype=xp.float64)

    def r(x):
        return 2.0 + 2.0 * i - (xp.exp(i * x[0]) + xp.exp(i * x[1]))

    for method in ("lm", "gn"):
        res = nk.minimize(r, xp.asarray([3.0, 4.0], dtype=xp.float64), method=method,
                          jac="2-point")
        assert not res.success and res.termination == "FD_ZERO_COLUMN", res.termination
