"""``newtonkit.testing``: the checkers catch planted bugs and pass correct code.

Planted bugs (each in float64 and float32, default settings): a Jacobian entry wrong by a
relative 1e-3, an adjoint missing the transpose of a square block inside a non-square operator,
a Hessian-vector product off by a factor 2, a vjp with the wrong sign.  They are the
demonstration that the properties bite.  The property tests run the same checkers over
hypothesis-generated correct cases (matrices with κ up to 1e6 in float64, 1e3 in float32;
tanh(Ax + b) residuals and log-cosh objectives) and must never fail: the false-alarm rate over
the soak profile is recorded in docs/testing.md.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from newtonkit.operators import FunctionOperator, MatrixOperator, dottest
from newtonkit.testing import Report, check_derivatives, check_operator
from newtonkit.testing import strategies as nks

DTYPES = ("float64", "float32")
MAX_COND = {"float64": 1e6, "float32": 1e3}


# -- smooth test functions ----------------------------------------------------------------------


def sech2(u: np.ndarray) -> np.ndarray:
    """``1 − tanh²(u)`` computed without cancellation: ``4e^{−2|u|}/(1 + e^{−2|u|})²``.  (The
    form ``1 − tanh(u)²`` loses ``log10(1/sech²u)`` digits where tanh saturates; in float32
    that is a true error of the derivative, up to 4e-4 relative in Hessian products on
    generated cases, which the Taylor test then reports.)"""
    e = np.exp(-2 * np.abs(u))
    return 4 * e / (1 + e) ** 2


def tanh_model(A: np.ndarray, b: np.ndarray):
    """``F(x) = tanh(Ax + b)`` with ``J = diag(sech²) A``, in the dtype of ``A``."""

    def F(x):
        return np.tanh(A @ x + b)

    def jac(x):
        return sech2(A @ x + b)[:, None] * A

    return F, jac


def logcosh(A: np.ndarray, b: np.ndarray):
    """``f(x) = Σ log cosh(Ax + b)``, ``∇f = Aᵀ tanh(Ax + b)``, ``∇²f = Aᵀ diag(sech²) A``."""

    def f(x):
        u = A @ x + b
        return np.sum(np.logaddexp(u, -u) - np.log(2).astype(A.dtype))

    def grad(x):
        return A.T @ np.tanh(A @ x + b)

    def hess(x):
        return A.T @ (sech2(A @ x + b)[:, None] * A)

    return f, grad, hess


def _case(dtype: str, m: int = 4, n: int = 3, seed: int = 1):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n)).astype(dtype)
    b = rng.standard_normal(m).astype(dtype)
    x = rng.standard_normal(n).astype(dtype)
    return A, b, x


# -- planted bugs -------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_jacobian_with_one_entry_wrong_by_1e_3_fails_the_taylor_test(dtype):
    A, b, x = _case(dtype)
    F, jac = tanh_model(A, b)
    i, j = np.unravel_index(np.argmax(np.abs(jac(x))), (4, 3))

    def bad(z):
        J = jac(z).copy()
        J[i, j] *= 1 + 1e-3  # one entry off by a relative 1e-3 (the largest one)
        return J

    assert check_derivatives(F, x, jac=jac).ok
    report = check_derivatives(F, x, jac=bad, raise_error=False)
    # a wrong derivative leaves a remainder h·‖e‖: slope 1, below the threshold 2
    assert not report.ok and report["jac: Taylor"].measured < 1.5
    with pytest.raises(AssertionError, match="FAIL jac: Taylor"):
        check_derivatives(F, x, jac=bad)


class _Blocks:
    """``A = [B; C]`` with a square ``B`` (4 × 4) over a 3 × 4 ``C``: a 7 × 4 operator whose
    adjoint ``[Bᵀ Cᵀ]`` may be written wrong by using ``B`` for ``Bᵀ``."""

    def __init__(self, dtype: str, transpose_b: bool):
        rng = np.random.default_rng(3)
        self.B = rng.standard_normal((4, 4)).astype(dtype)
        self.C = rng.standard_normal((3, 4)).astype(dtype)
        self.Bt = self.B.T if transpose_b else self.B

    def op(self) -> FunctionOperator:
        return FunctionOperator((7, 4), lambda x: np.concatenate([self.B @ x, self.C @ x]),
                                lambda y: self.Bt @ y[:4] + self.C.T @ y[4:], like=self.B)


@pytest.mark.parametrize("dtype", DTYPES)
def test_adjoint_missing_a_block_transpose_fails_the_operator_check(dtype):
    assert check_operator(_Blocks(dtype, transpose_b=True).op()).ok
    report = check_operator(_Blocks(dtype, transpose_b=False).op(), raise_error=False)
    # B − Bᵀ is of the size of B: the error is O(‖A‖), far above the rounding bound
    assert {c.name for c in report.failures} == {"dot-product", "to_dense adjoint"}
    assert report["dot-product"].ratio > 1e3
    with pytest.raises(AssertionError, match="FAIL dot-product"):
        check_operator(_Blocks(dtype, transpose_b=False).op())


@pytest.mark.parametrize("dtype", DTYPES)
def test_hessian_vector_product_off_by_two_fails(dtype):
    A, b, x = _case(dtype, m=5, n=4)
    f, grad, hess = logcosh(A, b)

    def hessp(z, p):
        return hess(z) @ p

    def hessp2(z, p):
        return 2 * (hess(z) @ p)

    assert check_derivatives(f, x, jac=grad, hess=hess, hessp=hessp).ok
    report = check_derivatives(f, x, jac=grad, hessp=hessp2, raise_error=False)
    assert [c.name for c in report.failures] == ["hessp: Taylor"]
    # against the dense Hessian the factor 2 is an error of ‖Hv‖, far above rounding
    report = check_derivatives(f, x, jac=grad, hess=hess, hessp=hessp2, raise_error=False)
    assert {c.name for c in report.failures} == {"hessp: Taylor", "hessp vs hess"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_vjp_with_a_sign_error_fails(dtype):
    A, b, x = _case(dtype, m=5, n=3)
    F, jac = tanh_model(A, b)

    def jvp(z, v):
        return jac(z) @ v

    def vjp(z, w):
        return -(jac(z).T @ w)

    report = check_derivatives(F, x, jvp=jvp, vjp=vjp, raise_error=False)
    assert {c.name for c in report.failures} == {"vjp: Taylor", "jvp/vjp dot-product"}
    assert check_derivatives(F, x, jvp=jvp, vjp=lambda z, w: jac(z).T @ w).ok


# -- correct code passes (property tests) ---------------------------------------------------------


@st.composite
def _operator_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    return draw(nks.operators(max_cond=MAX_COND[dtype], dtype=dtype, max_size=16,
                              scale=2.0 ** draw(st.integers(-10, 10))))


@given(_operator_cases())
def test_correct_operators_pass(op):
    check_operator(op)


@st.composite
def _function_cases(draw):
    dtype = draw(st.sampled_from(DTYPES))
    A = draw(nks.matrices(max_cond=MAX_COND[dtype], dtype=dtype, max_size=10,
                          scale=10.0 ** draw(st.integers(-1, 1))))
    m, n = A.shape
    b = draw(nks.points(m, dtype=dtype))
    x = draw(nks.points(n, dtype=dtype))
    return A, b, x


@given(_function_cases())
def test_correct_residual_derivatives_pass(case):
    A, b, x = case
    F, jac = tanh_model(A, b)
    check_derivatives(F, x, jac=jac, jvp=lambda z, v: jac(z) @ v,
                      vjp=lambda z, w: jac(z).T @ w)


@given(_function_cases())
def test_correct_objective_derivatives_pass(case):
    A, b, x = case
    f, grad, hess = logcosh(A, b)
    check_derivatives(f, x, jac=grad, hess=hess, hessp=lambda z, p: hess(z) @ p)


@given(st.sampled_from(DTYPES), st.data())
def test_symmetric_strategy_is_symmetric_and_indefinite(dtype, data):
    H = data.draw(nks.symmetric_matrices(max_cond=MAX_COND[dtype], dtype=dtype))
    lam = np.linalg.eigvalsh(H.astype(np.float64))
    assert np.array_equal(H, H.T) and H.dtype == dtype
    assert H.shape[0] < 2 or (lam.min() < 0 < lam.max())
    check_operator(MatrixOperator(H, tags=("symmetric",)))


@given(st.data())
def test_matrix_strategy_has_the_rank_and_condition_asked(data):
    m, n = data.draw(st.integers(2, 10)), data.draw(st.integers(2, 10))
    r = data.draw(st.integers(1, min(m, n)))
    A = data.draw(nks.matrices((m, n), rank=r, max_cond=1e4))
    s = np.linalg.svd(A, compute_uv=False)
    # float64 rounding of U diag(s) Vᵀ: singular values move by ≤ ~10·ε·‖A‖
    assert s[0] == pytest.approx(1.0, rel=1e-12)
    assert s[r - 1] >= 1e-4 * (1 - 1e-8) and (r == min(m, n) or s[r] <= 1e-13)


# -- the report, bad input, inputs untouched ------------------------------------------------------


@pytest.mark.parametrize("which", ["jac", "jvp", "hessp"])
def test_a_non_finite_derivative_fails(which):
    """A derivative with nan or inf products fails (its Taylor test resolves no slope, and an
    unresolved test passes: an all-NaN Jacobian used to pass)."""
    rng = np.random.default_rng(0)
    A, b, x0 = rng.standard_normal((5, 4)), rng.standard_normal(5), rng.standard_normal(4)
    if which == "hessp":
        kw = dict(jac=lambda x: A.T @ np.tanh(A @ x + b), hessp=lambda x, p: np.full(4, np.nan))
        fun = lambda x: np.sum(np.log(np.cosh(A @ x + b)))  # noqa: E731
    else:
        kw = {which: (lambda x: np.full((5, 4), np.nan)) if which == "jac"
              else (lambda x, v: np.full(5, np.inf))}
        fun = lambda x: np.tanh(A @ x + b)  # noqa: E731
    report = check_derivatives(fun, x0, raise_error=False, **kw)
    assert not report.ok and ": finite" in str(report) and which in str(report)


def test_report_reads_and_raises():
    op = _Blocks("float64", transpose_b=False).op()
    report = check_operator(op, raise_error=False)
    assert isinstance(report, Report) and not report and not report.ok
    text = str(report)
    assert "FAIL dot-product" in text and "allowed <=" in text and "ratio" in text
    c = report["dot-product"]
    assert c.measured > c.bound and c.ratio == pytest.approx(c.measured / c.bound)
    with pytest.raises(KeyError, match="no check named"):
        report["nope"]


def test_bad_input_is_named():
    A, b, x = _case("float64")
    F, jac = tanh_model(A, b)
    with pytest.raises(TypeError, match="dtype"):
        check_derivatives(F, np.arange(3), jac=jac)
    with pytest.raises(ValueError, match="non-finite"):
        check_derivatives(F, np.array([np.nan, 0, 0]), jac=jac)
    with pytest.raises(ValueError, match="not finite at x"):
        check_derivatives(lambda z: np.full(4, np.inf), x, jac=jac)
    with pytest.raises(ValueError, match="jac\\(x\\) returned shape"):
        check_derivatives(F, x, jac=lambda z: jac(z)[:, :2])
    with pytest.raises(ValueError, match="need a scalar fun"):
        check_derivatives(F, x, jac=jac, hessp=lambda z, p: p)
    with pytest.raises(ValueError, match="gradient"):
        check_derivatives(lambda z: np.sum(z**2), x, hessp=lambda z, p: 2 * p)
    with pytest.raises(ValueError, match="nothing to check"):
        check_derivatives(F, x)
    with pytest.raises(TypeError, match="callable"):
        check_derivatives(F, x, jac=np.eye(3))
    with pytest.raises(ValueError, match="pairs"):
        check_operator(np.eye(2), pairs=0)


def test_inputs_are_not_modified():
    A, b, x = _case("float64")
    F, jac = tanh_model(A, b)
    x_before, A_before = x.copy(), A.copy()
    check_derivatives(F, x, jac=jac)
    check_operator(A)
    assert np.array_equal(x, x_before) and np.array_equal(A, A_before)


def test_model_object_supplies_its_derivatives():
    A, b, x = _case("float64")
    F, jac = tanh_model(A, b)

    class Model:  # a ForwardModel: __call__, jvp, vjp, jacobian
        def __call__(self, z):
            return F(z)

        def jvp(self, z, v):
            return jac(z) @ v

        def vjp(self, z, w):
            return jac(z).T @ w

        def jacobian(self, z):
            return jac(z)

    report = check_derivatives(Model(), x)
    assert report.ok and {c.name for c in report.checks} == {
        "jac: Taylor", "jvp: Taylor", "vjp: Taylor", "jvp vs jac", "vjp vs jac",
        "jvp/vjp dot-product"}


def test_noisy_function_raises_the_floor_not_a_false_alarm():
    # values with absolute noise 1e-9 (far above 10·ε·‖F‖): the floor takes the measured noise
    # (4th difference), so a right Jacobian passes and a wrong one (1e-2 of one entry) still
    # fails
    A, b, x = _case("float64")
    F, jac = tanh_model(A, b)
    rng = np.random.default_rng(0)

    def noisy(z):
        return F(z) + 1e-9 * rng.standard_normal(4)

    def bad(z):
        J = jac(z).copy()
        J[0, 0] *= 1.01
        return J

    assert check_derivatives(noisy, x, jac=jac).ok
    assert not check_derivatives(noisy, x, jac=bad, raise_error=False).ok


def test_dottest_still_works():
    op = _Blocks("float64", transpose_b=True).op()
    lhs, rhs = dottest(op)
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_hypothesis_is_optional():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "import newtonkit, newtonkit.testing\n"
        "assert newtonkit.testing.check_operator\n"
        "try:\n"
        "    import newtonkit.testing.strategies\n"
        "except ImportError as e:\n"
        "    assert 'pip install hypothesis' in str(e), e\n"
        "else:\n"
        "    raise SystemExit('strategies imported without hypothesis')\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    code = "import sys, newtonkit; assert 'newtonkit.testing' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
