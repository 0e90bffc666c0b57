"""Finite differences that lie (issue 13, 2c) and memory walls (2h).

The regression models are NIST StRD's BoxBOD and Eckerle4 (published model functions and
certified parameters); the data are generated from the certified parameters plus a fixed
deterministic perturbation, so no data files are needed.
"""

import math
import warnings

import numpy as np
import pytest
import strategies as S
from hypothesis import given
from hypothesis import strategies as st

import newtonkit as nk
from benchmarks import nls_problems as nls
from newtonkit.methods import newton as newton_module
from newtonkit.operators import LinearOperator
from newtonkit.problems import ScalarProblem, _objective

EPS = float(np.finfo(np.float64).eps)


def _data(model, b, x):
    y0 = model(b, x)
    return y0 + 0.01 * np.std(y0) * np.sin(1.7 * np.arange(x.size))


def _boxbod():
    x = np.array([1.0, 2.0, 3.0, 5.0, 7.0, 10.0])

    def model(b, x):
        return b[0] * (1.0 - np.exp(-b[1] * x))

    y = _data(model, np.array([2.1380940889e2, 5.4723748542e-1]), x)
    return lambda b: model(b, x) - y


def _eckerle4():
    x = np.linspace(400.0, 500.0, 35)

    def model(b, x):
        return (b[0] / b[1]) * np.exp(-0.5 * ((x - b[2]) / b[1]) ** 2)

    y = _data(model, np.array([1.5543827178, 4.0888321754, 4.5154121844e2]), x)
    return lambda b: model(b, x) - y


def _run(fun, x0, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nk.problems.FiniteDifferenceWarning)
        return nk.minimize(fun, np.asarray(x0, dtype=np.float64), **kw)


# -- exactly-zero difference columns ------------------------------------------------------------
def test_lm_gradient_test_through_a_zero_difference_column_is_not_success():
    # BoxBOD from NIST's start 1: b2 grows until 1 - exp(-b2 x) == 1 exactly for every x, so
    # the difference column of b2 is exactly 0 (the true one is not: its scaled gradient entry
    # is about 0.76).  This read as "gtol met" at 2e4 times the minimum.
    res = _run(_boxbod(), [1.0, 1.0], method="lm")
    assert res.termination == "FD_ZERO_COLUMN", res.message
    assert not res.success and res.status == 2
    assert "column(s) [1]" in res.message


@pytest.mark.parametrize("method", ["gn", "lm", "hig"])
def test_vanished_difference_jacobian_is_not_success(method):
    # Eckerle4 with the peak far from the data: the model is ~1e-100 against data ~1e-3, so
    # every residual is unchanged by the difference steps and the Jacobian is exactly zero.
    fun = _eckerle4()
    x0 = np.array([2.61, 14.023, 741.238])
    res = _run(fun, x0, method=method)
    assert res.termination == "FD_ZERO_COLUMN", res.message
    assert not res.success
    assert "column(s) [0, 1, 2]" in res.message


def test_zero_column_rule_leaves_analytic_jacobians_alone():
    # The same start with the exact Jacobian (complex step): its columns are tiny but not zero
    # and the run never reports FD_ZERO_COLUMN.
    fun = _eckerle4()

    def jac(b):
        cols = []
        for j in range(b.size):
            e = np.zeros(b.size, dtype=complex)
            e[j] = 1e-30j
            cols.append(np.imag(fun(b + e)) / 1e-30)
        return np.stack(cols, axis=1)

    res = _run(fun, [2.61, 14.023, 741.238], method="lm", jac=jac)
    assert res.termination != "FD_ZERO_COLUMN"


# -- zero difference entries that hide the gradient ---------------------------------------------
def _brown_badly_scaled_f32(x):
    # MGH's Brown badly scaled function, computed in float64 and rounded to float32 (so each
    # output is within half an ulp of the exact value)
    x = np.asarray(x, dtype=np.float64)
    return np.array([x[0] - 1e6, x[1] - 2e-6, x[0] * x[1] - 2.0]).astype(np.float32)


@pytest.mark.parametrize("method", ["lm", "gn", "hig", "lm-batch", "gn-batch"])
@pytest.mark.parametrize("scheme", ["2-point", "3-point"])
def test_zero_difference_entries_that_hide_the_gradient_are_not_success(method, scheme):
    """At x0 = (1, 1) in float32 the difference step of x₁, 3.5e-4 (2-point), is below the
    rounding of r₁ = x₁ − 1e6 (an ulp of 1e6 is 0.06): ∂r₁/∂x₁ = 1 differences to exactly 0,
    g₁ loses its term −1e6 and the scaled gradient reads 1e-6 < gtol = 2.3e-4.  The column is
    not zero (r₃ = x₁x₂ − 2 shows x₁), so only the bound on what its zero entries hide
    (``_fd.unseen_gradient``, about 7e8 against gtol·‖J₁‖·‖r‖ ≈ 230 plus the rounding of
    the entry of r₃, about 7e-4) tells: FD_ZERO_COLUMN, not GTOL, success, at x0
    (f = 5e11)."""
    x0 = np.ones(2, np.float32)
    if method.endswith("-batch"):
        res = nk.minimize(lambda X: np.stack([_brown_badly_scaled_f32(x) for x in X]),
                          x0[None], method=method[:2], jac=scheme, batch=True)
        termination, ok, msg = res.termination_of(0), bool(res.success[0]), res.message_of(0)
    else:
        res = nk.minimize(_brown_badly_scaled_f32, x0, method=method, jac=scheme)
        termination, ok, msg = res.termination, res.success, res.message
    assert termination == "FD_ZERO_COLUMN" and not ok, msg
    assert "column(s) [0, 1]" in msg


@pytest.mark.parametrize("method", ["lm", "gn"])
def test_a_structural_zero_in_a_large_residual_keeps_gtol(method):
    """r_i = p·t_i − y_i with t₀ = 0: the entry of row 0 is a true zero in a residual of 3;
    what it could hide, 2ε·9/h ≈ 2.7e-7, is below what the test allows, gtol·‖J‖·‖r‖ ≈
    1.5e-6: GTOL, success, as with jac (a plain difference fit keeps SciPy's stop).  (The
    rank-1 fit of ``test_curve_fit.test_covariance_cannot_be_estimated`` is a case where only
    the rounding s_j of the nonzero entries keeps GTOL: without it that fit fails.)"""
    t = np.linspace(0.0, 4.0, 50)
    y = 3.0 * np.exp(-t / 2) + 0.1 * np.sin(7 * t)
    res = nk.minimize(lambda p: p[0] * t - y, np.array([1.0]), method=method, jac="2-point")
    assert res.termination == "GTOL" and res.success, res.message
    np.testing.assert_allclose(res.x, [t @ y / (t @ t)], rtol=1e-7)  # the 2-point step's
    # truncation is 0 (r is linear): x is exact to the rounding of J, 2ε·|r|/h ≈ 1e-7 relative


@given(data=st.data())
def test_unseen_gradient_bounds_what_zero_entries_hide(data):
    """For residuals correctly rounded to float32 (r = A x − b computed in float64), every
    exactly zero entry of a difference Jacobian hides a true derivative A_ij with
    |A_ij h_j| ≤ ulp(r_i) ≤ ε|r_i| (two roundings of half an ulp; linear, so no truncation):
    the bound u_j of ``_fd.unseen_gradient`` (c = 2 forward, 1 central, 4 one-sided) is at
    least Σ over those entries of |r_i A_ij|, the part of g_j = Σ r_i A_ij the difference
    drops.  In a box whose upper side is closer than the step, a 2-point step turns back and
    a 3-point difference is one-sided (``steps_in_box``)."""
    from newtonkit.problems._fd import difference_steps, fd_jacobian, unseen_gradient
    m = data.draw(st.integers(2, 6), label="m")
    n = data.draw(st.integers(1, 4), label="n")
    scheme = data.draw(st.sampled_from(["2-point", "3-point"]), label="scheme")
    boxed = data.draw(st.booleans(), label="box")
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)) * 10.0 ** rng.uniform(-3, 1, (m, n))
    b = rng.standard_normal(m) * 10.0 ** rng.uniform(0, 9, m)  # some residuals far above h
    x = (rng.standard_normal(n) * 10.0 ** rng.uniform(-1, 2, n)).astype(np.float32)

    def r(z):
        return (A @ np.asarray(z, np.float64) - b).astype(np.float32)

    box = None
    if boxed:
        h = difference_steps(np, x, scheme)
        box = ((x - 10 * h).astype(np.float32), (x + 0.3 * h).astype(np.float32))
    J = fd_jacobian(r, x, scheme=scheme, bounds=box)
    y = r(x)
    u, _ = unseen_gradient(np, J, y, y, x, scheme, bounds=box)
    hidden = np.sum(np.where(J == 0, np.abs(y.astype(np.float64)[:, None] * A), 0.0), axis=0)
    assert np.all(hidden <= u), (hidden, u)


# -- Newton on a quadratic with difference derivatives -------------------------------------------
def _quadratic(x):
    return float(np.sum((x - 2.0) ** 2))


def test_forward_hessian_of_a_forward_gradient_is_not_zero():
    # The forward-difference Hessian of a forward-difference gradient used the same step
    # √ε: the gradient's own noise (≈ √ε) swamped the differences and H came out exactly 0.
    # Now the Hessian steps are η_g^(1/2)·max(1, |x|) with η_g = √ε the gradient's accuracy.
    n = 3
    x = np.zeros(n)
    p = ScalarProblem(_quadratic, x, (n,), (), "2-point", "2-point")
    H = p.hessian(x)
    # The gradient differences are exact for a quadratic up to rounding: each gradient entry
    # carries ≤ 2ε·|f|/h_g (h_g = √ε, |f| ≤ 12 + 1 near x), and H_ij divides a difference of
    # two of them by h_H = ε^(1/4) (both steps at |x_j| ≤ 1).
    f_max, h_g, h_H = 13.0, math.sqrt(EPS), EPS ** 0.25
    bound = 2 * (2 * EPS * f_max / h_g) / h_H
    assert np.max(np.abs(H - 2.0 * np.eye(n))) <= bound


def test_newton_forward_differences_on_a_quadratic_converge():
    # jac="2-point", hess="2-point" stopped at x0 after 0 iterations with status 3.
    res = _run(_quadratic, np.zeros(3), method="newton", jac="2-point", hess="2-point")
    assert res.termination == "GTOL", res.message
    assert res.nit >= 1
    # At the end |g_fd_j| ≤ gtol + e_j with e_j = h_j·|H_jj|/2 + 2ε|f|/h_j (h_j = √ε·2 at
    # x ≈ 2, H_jj = 2), and the true gradient differs from g_fd by at most e_j again:
    # |x_j − 2| = |∂_j f| / 2 ≤ (gtol + 2 e_j) / 2.
    h = math.sqrt(EPS) * 2.0
    e = h * 2.0 / 2 + 2 * EPS * max(res.fun, 1e-300) / h
    assert np.max(np.abs(res.x - 2.0)) <= (1e-8 + 2 * e) / 2


def test_newton_forward_gradient_at_the_minimum_is_success():
    # A forward-difference gradient is off by h·f''/2 ≈ 3e-8 > gtol even at the minimiser:
    # the run ended with status 2 (line search) at f = 6e-31.  Met within the derived
    # error bound, the gradient test is success.
    res = _run(_quadratic, np.zeros(3), method="newton", jac="2-point",
               hess=lambda x: 2.0 * np.eye(x.size))
    assert res.termination == "GTOL", res.message
    assert res.fun <= 1e-20  # Newton's step on a quadratic with the exact Hessian: ε-level


@pytest.mark.parametrize("batch", [False, True])
def test_newton_gradient_differenced_to_zero_below_the_rounding_of_f(batch):
    """f = 1e10 + ‖x − 1‖² from x0 = 0 with a forward-difference gradient: a step h = √ε
    changes f by 2h = 3e-8, below half its last bit (1e-6), so the gradient differences to
    exactly 0 (∇f = −2): single Newton ended GTOL, a success, at x0 (its gtol test allows
    the difference's error bound, 2ε|f|/h = 298 here).  An exact 0 where that rounding
    exceeds gtol says nothing: FD_ZERO_COLUMN, as the batched path.  And with the Hessian a
    difference of those gradients (exactly 0, no curvature at all), the run no longer ends
    NONFINITE on an infinite step: on 44 + ‖x − 1‖² it reaches the minimiser."""
    def f(x):
        return 1e10 + np.sum((x - 1.0) ** 2, axis=-1)

    def g(x):
        return 44.0 + np.sum((x - 1.0) ** 2, axis=-1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nk.FiniteDifferenceWarning)
        if batch:
            res = nk.minimize(f, np.zeros((1, 2)), method="newton", jac="2-point", batch=True)
            assert res.termination_of(0) == "FD_ZERO_COLUMN" and not res.success[0]
            res = nk.minimize(g, np.zeros((1, 2)), method="newton", jac="2-point", batch=True)
            x = res.x[0]
        else:
            res = nk.minimize(f, np.zeros(2), method="newton", jac="2-point")
            assert res.termination == "FD_ZERO_COLUMN" and not res.success
            # under bounds too (the projected method ended GTOL at x0)
            res = nk.minimize(f, np.zeros(2), method="newton", jac="2-point",
                              bounds=([-5.0, -5.0], [5.0, 5.0]))
            assert res.termination == "FD_ZERO_COLUMN" and not res.success
            res = nk.minimize(g, np.zeros(2), method="newton", jac="2-point")
            x = res.x
    # the difference gradient vanishes within its rounding, |∂f| ≤ 2ε·44/h = 1.3e-6, so
    # ‖x − 1‖∞ ≤ 1.3e-6/2 to first order (f'' = 2); 1e-5 allows the shortened steps
    np.testing.assert_allclose(x, 1.0, atol=1e-5)


def test_newton_with_a_large_fixed_shift_does_not_stop_on_xtol():
    """shift='fixed' with τ = 1e12 on ‖x − 3‖² from x0 = 1000: the step −(H + τI)⁻¹g is 2e-9
    long because of τ, below xtol·‖x‖, and the run ended XTOL, a success, at x0 (∇f = 1994).
    A step shortened by a shift proves nothing: the run goes on (to MAXITER here)."""
    res = nk.minimize(lambda x: float(np.sum((x - 3.0) ** 2)), np.full(2, 1000.0),
                      method="newton", jac=lambda x: 2 * (x - 3), hess=lambda x: 2 * np.eye(2),
                      options=dict(shift="fixed", tau=1e12))
    assert not (res.success and np.max(np.abs(res.x - 3.0)) > 1.0), res.termination


def test_hess_3_point_is_central():
    # hess="3-point" was silently forward.  With an exact gradient of f = Σ x³ (g = 3x²,
    # H = diag(6x)), a central difference of g is exact up to rounding (g is quadratic), a
    # forward one is off by h·g''/2 = 3h ≈ 4.5e-8 at x = 1.
    n = 4
    x = np.ones(n)
    p = ScalarProblem(lambda z: float(np.sum(z ** 3)), x, (n,), (),
                      lambda z: 3.0 * z ** 2, "3-point")
    H = p.hessian(x)
    assert p.njev == 2 * n + 1  # g(x) and g(x ± h e_j) for every j
    # rounding: each g entry within ε·|g| (|g| ≤ 3(1 + h)² < 4), differenced over 2h with
    # h = ε^(1/3) (η = ε for an exact gradient)
    h = EPS ** (1.0 / 3.0)
    assert np.max(np.abs(H - 6.0 * np.eye(n))) <= 2 * EPS * 4.0 / (2 * h)


def test_hess_2_and_3_point_differ_in_counts():
    counts = {}
    for scheme in ("2-point", "3-point"):
        calls = []

        def f(x, calls=calls):
            calls.append(1)
            return _quadratic(x)

        res = _run(f, np.zeros(3), method="newton", jac="3-point", hess=scheme)
        assert res.termination == "GTOL", res.message
        counts[scheme] = (len(calls), res.nit)
    # a Hessian per iteration and one for the final eigenvalue check: n gradients (forward) or
    # 2n (central), each f(z) and 2n calls for its own central differences
    (c2, it2), (c3, it3) = counts["2-point"], counts["3-point"]
    n = 3
    assert it2 == it3 and c3 - c2 == (it2 + 1) * n * (2 * n + 1)


# -- memory walls ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_dense_hessian_over_the_budget_is_refused_up_front(backend):
    n = math.isqrt(newton_module.DENSE_HESSIAN_BUDGET // 8) + 1  # float64: just over budget
    if backend == "torch":
        torch = pytest.importorskip("torch")
        x0 = torch.zeros(n, dtype=torch.float64)
    else:
        x0 = np.zeros(n)
    calls = []

    def f(x):
        calls.append(1)
        return (x * x).sum()

    with pytest.raises(ValueError, match=r"dense \d+x\d+ Hessian .*GiB.*linear_solver.*cg"
                                         r".*hessp="):
        _run(f, x0, method="newton")
    assert calls == []  # refused before any evaluation (or allocation)


def test_newton_cg_without_a_hessian_is_matrix_free(monkeypatch):
    # linear_solver="cg" with no hess formed the dense difference Hessian (and the final
    # eigenvalue check did too).  Now both go through difference Hessian-vector products.
    def refuse(*a, **k):
        raise AssertionError("a dense Hessian was formed")

    monkeypatch.setattr(_objective, "fd_hessian_from_grad", refuse)
    monkeypatch.setattr(LinearOperator, "to_dense", refuse)
    n = 6
    A = np.diag(np.arange(1.0, n + 1))
    grads = []

    def jac(x):
        grads.append(1)
        return A @ (x - 1.0)

    res = _run(lambda x: 0.5 * float((x - 1.0) @ A @ (x - 1.0)), np.zeros(n),
               method="newton", jac=jac, options={"linear_solver": "cg"})
    assert res.termination == "GTOL", res.message
    assert res.nhev > 0 and len(grads) == res.njev
    # CG on the difference products of an affine gradient: each product exact up to the
    # rounding of g (≤ ε‖A‖‖x − 1‖ per entry, over the step t‖v‖ = √ε·max(1, ‖x‖)), so the
    # run meets gtol = 1e-8 and x is within gtol / λ_min(A) = 1e-8 of the minimiser.
    assert np.max(np.abs(res.x - 1.0)) <= 1e-8 / 1.0


def test_newton_cg_counts_its_hessian_vector_products():
    n = 5
    A = np.diag(np.arange(1.0, n + 1))
    products = []

    def hessp(x, v):
        products.append(1)
        return A @ v

    res = _run(lambda x: 0.5 * float((x - 1.0) @ A @ (x - 1.0)), np.zeros(n),
               method="newton", jac=lambda x: A @ (x - 1.0), hessp=hessp,
               options={"linear_solver": "cg"})
    assert res.termination == "GTOL", res.message
    assert res.nhev == len(products) > 0


# -- relative difference steps (SciPy's diff_step) -----------------------------------------------


@given(n=st.integers(1, 6), seed=st.integers(0, 10**6), rel=st.sampled_from([None, 1e-8, 1e-3]),
       scheme=st.sampled_from(["2-point", "3-point"]))
def test_difference_steps_are_scipys(n, seed, rel, scheme):
    """``difference_steps`` is SciPy's ``_compute_absolute_step`` (``approx_derivative``) up
    to its sign, with and without a relative step (``diff_step``), at zero, subnormal, tiny,
    moderate and large x."""
    from scipy.optimize._numdiff import _compute_absolute_step

    from newtonkit.problems._fd import difference_steps

    rng = np.random.default_rng(seed)
    x = rng.choice([0.0, 5e-324, 1e-300, 1e-9, -0.3, 2.0, -7e5], n) * rng.uniform(0.5, 2.0, n)
    ours = difference_steps(np, x, scheme, rel_step=rel)
    theirs = _compute_absolute_step(rel, x, np.zeros(1), scheme)
    np.testing.assert_array_equal(ours, np.abs(theirs))


def _nanosecond_decay():
    """a·exp(−t/τ) with τ = 1 ns, t in seconds: the parameter τ is 1e-9."""
    t = np.linspace(0.0, 5e-9, 50)
    y = 2.0 * np.exp(-t / 1e-9) + 0.01 * np.sin(1.7 * np.arange(t.size))

    def fun(p):
        return p[0] * np.exp(-t / p[1]) - y

    def jac(p):
        e = np.exp(-t / p[1])
        return np.stack([e, p[0] * t / p[1] ** 2 * e], axis=1)

    def model(t_, a, tau):
        return a * np.exp(-t_ / tau)

    return t, y, fun, jac, model


@pytest.mark.parametrize("method", ["lm", "gn", "trf"])
def test_diff_step_reaches_the_minimum_of_a_nanosecond_parameter(method):
    """τ = 1e-9: SciPy's default step √ε·max(1, |τ|) = 1.5e-8 is fifteen times τ, and the
    column a secant across the whole decay; ``diff_step=√ε`` (h = √ε·|x|) reaches the
    analytic-Jacobian minimum.  Bound: each run stops (ftol = 1e-8) within about ftol·f of
    the minimum cost; 1e-6 relative leaves a factor 100 (the default step stopped 0.1-7 %
    above it, or at x0)."""
    _, _, fun, jac, _ = _nanosecond_decay()
    x0 = np.array([1.0, 2e-9])
    exact = nk.least_squares(fun, x0, jac=jac, method="lm")
    res = nk.least_squares(fun, x0, method=method, diff_step=math.sqrt(EPS))
    assert res.success
    assert res.cost <= exact.cost * (1.0 + 1e-6)


def test_batched_diff_step_is_the_single_paths():
    """The batched LM takes the single path's relative steps: both reach the same minimum, and
    a bad value is refused by both.  The two paths factor J differently (normal equations
    against pivoted QR), so on this ill-conditioned problem their iterates agree only to
    rounding amplified along the path (1e-9 relative under OpenBLAS's Prescott kernels, 1e-16
    under Haswell's); the bound is the stop's: each run ends within about ftol·f of the
    minimum cost f, so within √(ftol·(m − n))·σ_j of it per parameter (σ² = diag of
    2f/(m − n)·(JᵀJ)⁻¹), doubled for two runs."""
    t, _, fun, jac, _ = _nanosecond_decay()
    X0 = np.array([[1.0, 2e-9], [1.5, 0.5e-9]])

    def F(X):
        return np.stack([fun(x) for x in X])

    opts = {"diff_step": math.sqrt(EPS)}
    res = nk.minimize(F, X0, method="lm", jac="2-point", batch=True, options=opts)
    for i, x0 in enumerate(X0):
        one = nk.minimize(fun, x0, method="lm", jac="2-point", options=opts)
        assert one.success and bool(res.success[i])
        J = jac(one.x)
        sigma = np.sqrt(np.diag(2 * one.fun / (t.size - 2) * np.linalg.inv(J.T @ J)))
        assert np.all(np.abs(res.x[i] - one.x) <= 2 * math.sqrt(1e-8 * (t.size - 2)) * sigma)
    for bad in (0.0, -1e-8, math.inf):
        with pytest.raises(ValueError, match="diff_step"):
            nk.minimize(F, X0, method="lm", jac="2-point", batch=True,
                        options={"diff_step": bad})
        with pytest.raises(ValueError, match="diff_step"):
            nk.minimize(fun, X0[0], method="lm", jac="2-point", options={"diff_step": bad})


@pytest.mark.parametrize("batch", [False, True])
def test_curve_fit_of_a_nanosecond_parameter_is_scipys(batch):
    """``curve_fit`` with ``'lm'`` and no Jacobian takes MINPACK ``lmdif``'s relative steps, as
    SciPy's does (``leastsq``): on τ = 1e-9 both reach the same minimum and covariance (with
    SciPy's default steps the fit stopped XTOL, as success, 7 % above the minimum cost).

    Bounds.  Parameters: each run stops (ftol = 1e-8) within about ftol·f of the minimum cost
    f, so within √(2·ftol·f) of it in the metric of JᵀJ, i.e. within √(ftol·(m − n))·σ_j per
    parameter (σ² = diag(pcov), pcov = 2f/(m − n)·(JᵀJ)⁻¹), doubled for two runs.
    Covariance: each is (JᵀJ)⁻¹ of a forward-difference J, whose columns are off by at most
    about 8√ε relative here (truncation (h/2)|r''|/|r'| ≤ 1.5√ε for t ≤ 5τ, rounding
    2ε|y|/(h|r'|) in norm a few √ε); through the inverse of the column-scaled Gram matrix,
    2κ times that per run."""
    from scipy.optimize import curve_fit

    t, y, _, jac, model = _nanosecond_decay()
    p_s, c_s = curve_fit(model, t, y, p0=(1.0, 2e-9))
    if batch:
        P, C = nk.curve_fit(model, t, np.stack([y, y]), p0=(1.0, 2e-9), batch=True)
        p_n, c_n = P[1], C[1]
    else:
        p_n, c_n = nk.curve_fit(model, t, y, p0=(1.0, 2e-9))
    sigma = np.sqrt(np.diag(c_s))
    assert np.all(np.abs(p_n - p_s) <= 2.0 * math.sqrt(1e-8 * (t.size - 2)) * sigma)
    Js = jac(p_s) / np.linalg.norm(jac(p_s), axis=0)
    kappa = np.linalg.cond(Js.T @ Js)  # (about 5)
    np.testing.assert_allclose(c_n, c_s, rtol=2 * 2 * kappa * 8 * math.sqrt(EPS))


@pytest.mark.parametrize("name", ["watson_6", "watson_9"])
def test_default_steps_solve_watson_from_zero(name):
    """Why ``least_squares`` keeps SciPy's default steps (as SciPy's own ``least_squares``):
    from Watson's standard start x0 = 0 relative steps are too short for the parameters that
    pass near 0 on a scale of 1, and LM stopped FTOL, as success, 14 % above the minimum
    (n = 6), as SciPy's ``leastsq`` does with them.  Solved = the MGH minimum to 1e-5."""
    p = {q.name: q for q in nls.all_problems()}[name]
    res = nk.least_squares(p.residual, np.zeros(p.n), method="lm")
    assert res.success and res.cost <= p.f_star * (1.0 + 1e-5)


@pytest.mark.parametrize("backend", S.ALL_BACKENDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_diff_step_on_every_backend(backend, dtype):
    """The relative steps on each backend and dtype: ``difference_steps`` equals NumPy's
    formula on the rounded x (exactly: |x|·c and a comparison), and ``least_squares`` with
    ``diff_step=√ε`` reaches the nanosecond decay's minimum, in the input's dtype.  Bound:
    within 100·ftol of the float64 analytic minimum cost, ftol the dtype's default (1e-8,
    times √(ε/ε₆₄) in float32)."""
    from newtonkit.problems._fd import difference_steps

    xp, e = S.namespace(backend), S.eps(dtype)
    x = np.array([0.0, 1e-9, -0.3, 2.0])
    h = difference_steps(xp, S.to_backend(x, backend, dtype), "2-point", rel_step=math.sqrt(e))
    xr = S.rounded(x, dtype)
    np.testing.assert_allclose(S.to_np(h), np.where(xr != 0, math.sqrt(e) * np.abs(xr),
                                                    math.sqrt(e)), rtol=e)
    t_np, y_np, fun, jac, _ = _nanosecond_decay()
    t, y = S.to_backend(t_np, backend, dtype), S.to_backend(y_np, backend, dtype)
    res = nk.least_squares(lambda p: p[0] * xp.exp(-t / p[1]) - y,
                           S.to_backend([1.0, 2e-9], backend, dtype), jac="2-point",
                           diff_step=math.sqrt(e))
    exact = nk.least_squares(fun, np.array([1.0, 2e-9]), jac=jac)
    ftol = 1e-8 * math.sqrt(e / EPS)
    assert res.success and S.dtype_name(res.x) == dtype
    assert res.cost <= exact.cost * (1.0 + 100 * ftol)


def test_diff_step_reaches_the_reported_jacobian_of_a_robust_fit():
    """With a robust loss ``least_squares`` differences J once more at the solution for
    ``res.jac`` (SciPy's √w·J): it takes ``diff_step`` too.  The a-column (a ≈ 2, any step is
    fine) gives √w; the τ-column must then be √w·∂r/∂τ to a forward difference's accuracy:
    truncation ≤ 1.5√ε and rounding a few √ε relative in norm (the nanosecond test's
    bound), 8√ε, doubled for the √w read off the other column.  With SciPy's default step
    the τ-column is a secant across fifteen τ, off by order 1."""
    _, _, fun, jac, _ = _nanosecond_decay()
    res = nk.least_squares(fun, np.array([1.0, 2e-9]), loss="soft_l1", f_scale=0.1,
                           diff_step=math.sqrt(EPS))
    assert res.success
    J = jac(res.x)
    sw = res.jac[:, 0] / J[:, 0]
    want = sw * J[:, 1]
    assert np.linalg.norm(res.jac[:, 1] - want) <= 16 * math.sqrt(EPS) * np.linalg.norm(want)
