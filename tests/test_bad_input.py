"""Bad input raises a clear ValueError/TypeError that names the problem (issue 2, "Bad input").

One test per problem (parametrized ids), each with ``pytest.raises(match=...)`` on the words a
user needs: which argument, what was wrong.  Cases run on NumPy; the backend-specific ones
(mixed backends, to_scipy on torch) use PyTorch too.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import strategies as S

import newtonkit as nk
from newtonkit.linalg import cgls, gauss_newton_step, half_inverse, lanczos
from newtonkit.linalg import regularized_cholesky_solve as rcs
from newtonkit.operators import (
    DiagonalOperator,
    FunctionOperator,
    GramOperator,
    HessianOperator,
    JacobianOperator,
    LinearOperator,
    MatrixOperator,
    VStackOperator,
    aslinearoperator,
)

torch = S.torch  # None without torch: the cases that use it skip
NEEDS_TORCH = {"hig-J-float16-torch", "chol-H-float16-torch", "hig-mixed-backends",
               "op-mixed-backends", "op-to-scipy-torch"}
needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")

J = np.arange(12.0).reshape(4, 3) / 7.0 + np.eye(4, 3)
g4, g3 = np.ones(4), np.ones(3)
H = np.eye(3) * 2.0
NAN_J = J.copy()
NAN_J[1, 1] = np.nan
INF_G = np.array([1.0, np.inf, 0.0, 0.0])


class NoVjp:
    def __call__(self, x):
        return x

    def jvp(self, x, v):
        return v


CASES = [
    # -- half_inverse ----------------------------------------------------------------------
    ("hig-g-length", lambda: half_inverse(J, g3), ValueError, r"g must have shape \(4,\)"),
    ("hig-J-1d", lambda: half_inverse(g4, g4), ValueError, r"J must be 2-D"),
    ("hig-J-nan", lambda: half_inverse(NAN_J, g4), ValueError, r"J has non-finite"),
    ("hig-g-inf", lambda: half_inverse(J, INF_G), ValueError, r"g has non-finite"),
    ("hig-J-int", lambda: half_inverse(J.astype(np.int64), g4), TypeError, r"J has dtype int64"),
    ("hig-J-complex", lambda: half_inverse(J.astype(complex), g4), TypeError, r"complex"),
    ("hig-g-int", lambda: half_inverse(J, np.ones(4, dtype=np.int32)), TypeError, r"g has dtype"),
    # float16 passes check_real_float ("real floating") but no solver supports it: NumPy's
    # linalg raises its own message, PyTorch a NotImplementedError from a CPU kernel
    ("hig-J-float16", lambda: half_inverse(J.astype(np.float16), g4.astype(np.float16)),
     TypeError, r"J has dtype float16"),
    ("hig-J-float16-torch", lambda: half_inverse(torch.eye(3, dtype=torch.float16),
                                                 torch.ones(3, dtype=torch.float16)),
     TypeError, r"J has dtype .*float16"),
    ("chol-H-float16-torch", lambda: rcs(torch.eye(3, dtype=torch.float16),
                                         torch.ones(3, dtype=torch.float16)),
     TypeError, r"H has dtype .*float16"),
    ("hig-exponent-high", lambda: half_inverse(J, g4, 5.0), ValueError, r"exponent must be <="),
    ("hig-exponent-nan", lambda: half_inverse(J, g4, float("nan")), ValueError,
     r"exponent must be finite"),
    ("hig-exponent-str", lambda: half_inverse(J, g4, "half"), TypeError,
     r"exponent must be a real number"),
    ("hig-truncation-negative", lambda: half_inverse(J, g4, -0.5, -1e-3), ValueError,
     r"truncation must be >= 0"),
    ("hig-truncation-relative-1", lambda: half_inverse(J, g4, -0.5, 1.0), ValueError,
     r"relative truncation must lie in \[0, 1\)"),
    ("hig-truncation-inf", lambda: half_inverse(J, g4, -0.5, np.inf, relative=False),
     ValueError, r"truncation must be finite"),
    ("hig-empty", lambda: half_inverse(np.zeros((0, 3)), np.zeros(0)), ValueError, r"J is empty"),
    ("hig-route", lambda: half_inverse(J, g4, route="qr"), ValueError, r"unknown route 'qr'"),
    ("hig-rank-range", lambda: half_inverse(J, g4, route="randomized", rank=9), ValueError,
     r"rank must be an integer in \[1, 3\]"),
    ("hig-randomized-no-rank", lambda: half_inverse(J, g4, route="randomized"), ValueError,
     r"needs a target rank"),
    ("hig-mixed-backends", lambda: half_inverse(J, torch.ones(4, dtype=torch.float64)),
     TypeError, r"g is a torch array but the matrix is on 'numpy'"),
    ("hig-operator-nan", lambda: half_inverse(
        FunctionOperator((4, 3), lambda x: NAN_J @ x, lambda y: NAN_J.T @ y, like=J), g4),
     ValueError, r"non-finite"),
    ("hig-operator-nan-randomized", lambda: half_inverse(
        FunctionOperator((4, 3), lambda x: NAN_J @ x, lambda y: NAN_J.T @ y, like=J), g4,
        rank=2), ValueError, r"non-finite"),
    # -- regularized_cholesky_solve --------------------------------------------------------
    ("chol-not-square", lambda: rcs(J, g4), ValueError, r"H must be square"),
    ("chol-g-length", lambda: rcs(H, g4), ValueError, r"g must have shape \(3,\)"),
    ("chol-H-nan", lambda: rcs(np.diag([1.0, np.nan, 1.0]), g3), ValueError,
     r"H has non-finite"),
    ("chol-operator-nan", lambda: rcs(HessianOperator(lambda v: v * np.nan, 3, like=g3), g3),
     ValueError, r"H has non-finite"),
    ("chol-H-int", lambda: rcs(np.eye(3, dtype=np.int64), g3), TypeError, r"H has dtype int64"),
    ("chol-H-complex", lambda: rcs(H.astype(complex), g3), TypeError, r"complex"),
    ("chol-shift", lambda: rcs(H, g3, shift="lm"), ValueError, r"unknown shift rule 'lm'"),
    ("chol-factor", lambda: rcs(H, g3, factor=0.0), ValueError, r"factor must be > 0"),
    ("chol-growth", lambda: rcs(H, g3, shift="retry", growth=1.0), ValueError,
     r"growth must be > 1"),
    ("chol-fixed-no-tau", lambda: rcs(H, g3, shift="fixed"), ValueError, r"needs tau="),
    ("chol-tau-negative", lambda: rcs(H, g3, shift="fixed", tau=-1.0), ValueError,
     r"tau must be >= 0"),
    ("chol-tau-not-fixed", lambda: rcs(H, g3, tau=1.0), ValueError,
     r"tau= is only used with shift='fixed'"),
    ("chol-tau0-negative", lambda: rcs(-H, g3, shift="retry", tau0=-1.0), ValueError,
     r"tau0 must be >= 0"),
    ("chol-max-factorizations", lambda: rcs(H, g3, max_factorizations=0), ValueError,
     r"max_factorizations must be >= 1"),
    ("chol-eigensolver", lambda: rcs(H, g3, eigensolver="arpack"), ValueError,
     r"unknown eigensolver"),
    ("chol-empty", lambda: rcs(np.zeros((0, 0)), np.zeros(0)), ValueError, r"H is empty"),
    # -- gauss_newton_step / cgls ----------------------------------------------------------
    ("gn-r-length", lambda: gauss_newton_step(J, g3), ValueError, r"r must have shape \(4,\)"),
    ("gn-damping-negative", lambda: gauss_newton_step(J, g4, -1.0), ValueError,
     r"damping must be >= 0"),
    ("gn-damping-nan", lambda: gauss_newton_step(J, g4, float("nan")), ValueError,
     r"damping must be finite"),
    ("gn-diag-nonpositive", lambda: gauss_newton_step(J, g4, 1.0, diag=np.array([1.0, 0, 1])),
     ValueError, r"diag .* strictly positive"),
    ("gn-diag-length", lambda: gauss_newton_step(J, g4, 1.0, diag=np.ones(4)), ValueError,
     r"diag must have shape \(3,\)"),
    ("gn-J-nan", lambda: gauss_newton_step(NAN_J, g4), ValueError, r"J has non-finite"),
    ("gn-r-inf", lambda: gauss_newton_step(J, INF_G), ValueError, r"r has non-finite"),
    ("gn-J-int", lambda: gauss_newton_step(J.astype(np.int64), g4), TypeError, r"J has dtype"),
    ("gn-J-complex", lambda: gauss_newton_step(J.astype(complex), g4), TypeError, r"complex"),
    ("gn-method", lambda: gauss_newton_step(J, g4, method="svd"), ValueError,
     r"unknown method 'svd'"),
    ("gn-empty", lambda: gauss_newton_step(np.zeros((4, 0)), g4), ValueError, r"J is empty"),
    ("gn-cholesky-singular", lambda: gauss_newton_step(J.T, g3, method="cholesky"),
     np.linalg.LinAlgError, r"singular .* use damping > 0"),
    ("gn-operator-nan", lambda: gauss_newton_step(
        FunctionOperator((4, 3), lambda x: NAN_J @ x, lambda y: NAN_J.T @ y, like=J), g4,
        method="qr"), ValueError, r"non-finite"),
    ("cgls-b-length", lambda: cgls(J, g3), ValueError, r"b must have shape \(4,\)"),
    ("lanczos-not-square", lambda: lanczos(J), ValueError, r"square"),
    # -- operators -------------------------------------------------------------------------
    ("op-empty-shape", lambda: LinearOperator((0, 3), np.float64, np), ValueError,
     r"non-empty shape"),
    ("op-matrix-1d", lambda: MatrixOperator(g4), ValueError, r"needs a 2-D array"),
    ("op-matrix-int", lambda: MatrixOperator(np.eye(2, dtype=np.int64)), TypeError,
     r"the matrix has dtype int64"),
    ("op-matrix-complex", lambda: MatrixOperator(np.eye(2, dtype=complex)), TypeError,
     r"complex"),
    ("op-matrix-empty", lambda: MatrixOperator(np.zeros((0, 2))), ValueError, r"non-empty"),
    ("op-function-int-like", lambda: FunctionOperator((2, 2), lambda x: x,
                                                      like=np.zeros(1, dtype=np.int64)),
     TypeError, r"real floating"),
    ("op-matvec-shape", lambda: MatrixOperator(J).matvec(g4), ValueError,
     r"matvec of MatrixOperator with shape \(4, 3\) needs an array of shape \(3,\)"),
    ("op-rmatvec-shape", lambda: MatrixOperator(J).rmatvec(g3), ValueError,
     r"needs an array of shape \(4,\)"),
    ("op-matmat-1d", lambda: MatrixOperator(J).matmat(g3), ValueError, r"\(3, k\)"),
    ("op-sum-shapes", lambda: MatrixOperator(J) + MatrixOperator(H), ValueError,
     r"cannot add operators of shapes"),
    ("op-product-inner", lambda: MatrixOperator(J) @ MatrixOperator(J), ValueError,
     r"inner dimensions 3 and 4 differ"),
    ("op-mixed-backends", lambda: MatrixOperator(H) + MatrixOperator(torch.eye(3,
                                                                             dtype=torch.float64)),
     TypeError, r"backends 'numpy' and 'torch'"),
    ("op-vstack-columns", lambda: VStackOperator([J, H[:, :2]]), ValueError,
     r"share the column count"),
    ("op-vstack-empty", lambda: VStackOperator([]), ValueError, r"at least one block"),
    ("op-unknown-tag", lambda: MatrixOperator(H, tags="spd"), ValueError,
     r"unknown operator tags"),
    ("op-tag-not-square", lambda: MatrixOperator(J, tags="symmetric"), ValueError,
     r"need a square operator"),
    ("op-diagonal-2d", lambda: DiagonalOperator(H), ValueError, r"diagonal needs a 1-D"),
    ("op-gram-side", lambda: GramOperator(J, side="left"), ValueError, r"side must be 'normal'"),
    ("op-gram-damping", lambda: GramOperator(J, -1.0), ValueError, r"damping μ must be"),
    ("op-gram-damping-nan", lambda: GramOperator(J, float("nan")), ValueError,
     r"damping μ must be"),
    ("op-jacobian-no-vjp", lambda: JacobianOperator(NoVjp(), g3), TypeError, r"has no vjp"),
    ("op-jacobian-int-x", lambda: JacobianOperator(NoVjp(), np.ones(3, dtype=np.int64)),
     TypeError, r"x has dtype"),
    ("op-hessian-not-square", lambda: HessianOperator(J), ValueError, r"must be square"),
    ("op-hessian-hvp-no-n", lambda: HessianOperator(lambda v: v), ValueError,
     r"needs its dimension n and like="),
    ("op-to-scipy-torch", lambda: MatrixOperator(torch.eye(2, dtype=torch.float64)).to_scipy(),
     TypeError, r"scipy operators act on NumPy arrays"),
    ("op-aslinop-list", lambda: aslinearoperator([[1.0, 2.0]]), TypeError,
     r"cannot make a linear operator from list"),
    ("op-scipy-complex", lambda: aslinearoperator(spla.aslinearoperator(np.eye(2) * 1j)),
     TypeError, r"scipy operator has dtype complex128"),
]


@pytest.mark.parametrize("call,exc,match", [
    pytest.param(c, e, m, id=i, marks=[needs_torch] if i in NEEDS_TORCH else [])
    for i, c, e, m in CASES])
def test_bad_input_raises_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@pytest.mark.parametrize("backend", ["torch", "array_api_strict"])
def test_bad_input_other_backends(backend):
    # The same checks hold on the other backends (dtype and finiteness in their own terms).
    Jb = S.to_backend(J, backend, "float64")
    with pytest.raises(ValueError, match=r"J has non-finite"):
        half_inverse(S.to_backend(NAN_J, backend, "float64"), S.to_backend(g4, backend,
                                                                             "float64"))
    with pytest.raises(TypeError, match=r"J has dtype .*non-floating"):
        half_inverse(S.to_backend(J, backend, "int64"), S.to_backend(g4, backend, "float64"))
    with pytest.raises(ValueError, match=r"r must have shape \(4,\)"):
        gauss_newton_step(Jb, S.to_backend(g3, backend, "float64"))
    with pytest.raises(ValueError, match=r"H must be square"):
        rcs(Jb, S.to_backend(g4, backend, "float64"))


def test_finite_residuals_whose_square_overflows_are_named():
    """r = 1e20·(x − 1) in float32: every residual is finite, ½‖r‖² = 1e40 is not; the error
    says so (it read as if fun were not finite)."""
    x0 = np.zeros(2, dtype=np.float32)
    with np.errstate(over="ignore"), pytest.raises(ValueError, match="overflowed float32"):
        nk.minimize(lambda x: 1e20 * (x - 1), x0, method="lm",
                    jac=lambda x: np.float32(1e20) * np.eye(2, dtype=np.float32))


def test_batch_result_attributes_behave_as_attributes():
    res = nk.minimize(lambda X: X - 1.0, np.zeros((2, 2)), method="lm",
                      jac=lambda X: np.broadcast_to(np.eye(2), (X.shape[0], 2, 2)), batch=True)
    assert res.x.shape == (2, 2) and not hasattr(res, "nope")
    assert getattr(res, "nope", 7) == 7


def test_batch_inputs_are_checked_like_single_ones():
    """Found by an audit of the batched driver: a complex X0 was cast to real (its imaginary
    part dropped), m = 0 residuals raised ZeroDivisionError (single: NumPy's reduction
    error), and a torch output at NumPy X0 an unrelated dtype error."""
    fun = lambda X: X - 1.0  # noqa: E731
    with pytest.raises(TypeError, match="complex"):
        nk.minimize(fun, np.ones((2, 2)) + 1j, method="lm", jac="2-point", batch=True)
    with pytest.raises(ValueError, match="m = 0"):
        nk.minimize(lambda X: X[:, :0], np.ones((2, 2)), method="lm", jac="2-point",
                    batch=True)
    with pytest.raises(ValueError, match="m = 0"):
        nk.minimize(lambda x: x[:0], np.ones(2), method="lm", jac="2-point")
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="torch array, but x0 is a numpy array"):
        nk.minimize(lambda X: torch.as_tensor(X) - 1.0, np.ones((2, 2)), method="lm",
                    jac="2-point", batch=True)


def test_a_number_given_as_a_string_is_refused():
    """gtol='1e-3' ran as 1e-3 (``float()`` parses strings) in minimize's options, batched
    options and least_squares' tolerances; SciPy refuses it.  A clear error everywhere."""
    fun = lambda x: x - 1.0  # noqa: E731
    with pytest.raises(ValueError, match="gtol"):
        nk.minimize(fun, np.zeros(2), method="lm", jac="2-point", options={"gtol": "1e-3"})
    with pytest.raises(ValueError, match="gtol"):
        nk.minimize(fun, np.zeros((2, 2)), method="lm", jac="2-point", batch=True,
                    options={"gtol": "1e-3"})
    with pytest.raises(ValueError, match="maxfev"):
        nk.minimize(fun, np.zeros((2, 2)), method="lm", jac="2-point", batch=True,
                    options={"maxfev": True})
    with pytest.raises(ValueError, match="gtol"):
        nk.least_squares(fun, np.zeros(2), gtol="1e-3")
