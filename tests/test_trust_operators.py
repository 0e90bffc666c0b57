"""Operators check what they return, and dense Hessians are checked for symmetry.

Operator results: the public ``matvec``/``rmatvec``/``matmat``/``rmatmat`` (and ``to_dense``)
refuse a result of the wrong shape, of another backend, on another device, or of a non-real
dtype, naming the operator kind, the method, what came back and what was expected; a real
floating result of another precision is cast to the operator's dtype.

Symmetry: ``regularized_cholesky_solve`` and ``HessianOperator`` refuse a dense ``H`` with
``‖H − Hᵀ‖_F > c·√n·ε·‖H‖_F`` (``c = SYMMETRY_C = 2000``, derived in
``newtonkit/operators/_tags.py`` from the rounding of a symmetric ``AᵀA``).  Both sides of the
bound are tested with ``H = S + t·K`` (``S`` symmetric, ``K`` exactly skew) at half and at twice
the bound, and symmetric matrices computed with rounding (a Gram product by GEMM, a symmetrised
finite-difference Hessian, autodiff Hessians) must pass.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import newtonkit as nk
from newtonkit.linalg import regularized_cholesky_solve
from newtonkit.operators import FunctionOperator, HessianOperator, MatrixOperator
from newtonkit.operators._tags import SYMMETRY_C

BACKENDS = ("numpy", "torch")
DTYPES = ("float32", "float64")
METHODS = ("matvec", "rmatvec", "matmat", "rmatmat")


def _asarray(a: np.ndarray, backend: str, dtype: str):
    if backend == "numpy":
        return np.asarray(a, dtype=dtype)
    torch = pytest.importorskip("torch")
    return torch.tensor(np.asarray(a, dtype=dtype))


def _np(x) -> np.ndarray:
    return np.asarray(x.detach() if hasattr(x, "detach") else x, dtype=np.float64)


def _operator(backend: str, dtype: str, bad) -> tuple[FunctionOperator, dict]:
    """A 5×3 FunctionOperator whose four callables pass their exact result through ``bad``, and
    inputs for each method."""
    A = _asarray(np.arange(15.0).reshape(5, 3) / 7, backend, dtype)
    At = A.T
    op = FunctionOperator((5, 3), lambda x: bad(A @ x), lambda y: bad(At @ y), like=A,
                          matmat=lambda X: bad(A @ X), rmatmat=lambda Y: bad(At @ Y))
    args = {"matvec": A[0, :], "rmatvec": A[:, 0], "matmat": A[:3, :2], "rmatmat": A[:, :2]}
    return op, args


def _other_backend(a):
    """``a`` on the other of NumPy / torch."""
    torch = pytest.importorskip("torch")
    return a.numpy() if isinstance(a, torch.Tensor) else torch.from_numpy(a)


def _one_row_short(a):
    return a[:-1]


# -- operator results ---------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_result_of_the_wrong_shape_is_refused(backend, method):
    op, args = _operator(backend, "float64", _one_row_short)
    with pytest.raises(ValueError, match=rf"{method} of FunctionOperator .* returned .* of shape "
                                         rf".*; expected a {backend} array of shape"):
        getattr(op, method)(args[method])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
def test_result_of_another_backend_is_refused(backend, method):
    op, args = _operator(backend, "float64", _other_backend)
    other = "torch.Tensor" if backend == "numpy" else "numpy.ndarray"
    with pytest.raises(TypeError, match=rf"{method} of FunctionOperator .* returned a {other}.*; "
                                        rf"expected a {backend} array"):
        getattr(op, method)(args[method])


@pytest.mark.parametrize("returned", [None, "list"])
def test_result_that_is_not_an_array_is_refused(returned):
    op, args = _operator("numpy", "float64",
                         lambda a: None if returned is None else a.tolist())
    kind = "NoneType" if returned is None else "list"
    with pytest.raises(TypeError, match=rf"matvec of FunctionOperator .* returned a "
                                        rf"builtins.{kind}; expected a numpy array"):
        op.matvec(args["matvec"])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", ["int64", "complex128"])
def test_result_of_another_dtype_family_is_refused(backend, method, family):
    def cast(a):
        if backend == "numpy":
            return a.astype(family)
        torch = pytest.importorskip("torch")
        return a.to(getattr(torch, family))

    op, args = _operator(backend, "float64", cast)
    with pytest.raises(TypeError, match=rf"{method} of FunctionOperator .* dtype "
                                        rf"(torch\.)?{family}.*; expected .* dtype"):
        getattr(op, method)(args[method])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_real_floating_result_of_another_precision_is_cast(backend, method, dtype):
    other = "float32" if dtype == "float64" else "float64"

    def cast(a):
        return a.astype(other) if backend == "numpy" else a.to(_torch_dtype(other))

    op, args = _operator(backend, dtype, cast)
    out = getattr(op, method)(args[method])
    assert str(out.dtype).replace("torch.", "") == dtype
    # values: a 3- or 5-term product in `dtype` (error ≤ γ_5 ≤ 3u·|A||x|, u = ε/2) plus at most
    # one rounding to float32 (≤ u32·|y|): within 2·ε32·(|A||x|) of the exact product
    A = np.asarray(np.arange(15.0).reshape(5, 3) / 7, dtype=dtype).astype(np.float64)
    A = A if method in ("matvec", "matmat") else A.T
    x = _np(args[method])
    err = np.abs(_np(out) - A @ x)
    assert np.all(err <= 2 * float(np.finfo(np.float32).eps) * (np.abs(A) @ np.abs(x)))


def _torch_dtype(name: str):
    torch = pytest.importorskip("torch")
    return getattr(torch, name)


def test_result_on_another_device_is_refused():
    pytest.importorskip("torch")
    op, args = _operator("torch", "float64", lambda a: a.to("meta"))
    with pytest.raises(ValueError, match=r"matvec of FunctionOperator .* device meta; expected "
                                         r"a torch array .* on device cpu"):
        op.matvec(args["matvec"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_to_dense_checks_the_columns(backend):
    A = _asarray(np.ones((4, 3)), backend, "float64")
    op = FunctionOperator((4, 3), lambda x: (A @ x)[:-1], lambda y: A.T @ y, like=A)
    with pytest.raises(ValueError, match=r"to_dense .* of FunctionOperator .* returned .* shape "
                                         r"\(3, 3\).*expected a .* array of shape \(4, 3\)"):
        op.to_dense()


def test_operator_kind_is_named_for_composites():
    # the adjoint of a wrong FunctionOperator: the error names the operator the call was made on
    op, args = _operator("numpy", "float64", _one_row_short)
    with pytest.raises(ValueError, match=r"matvec of AdjointOperator with shape \(3, 5\)"):
        op.T.matvec(args["rmatvec"])


def test_correct_results_pass_unchanged():
    A = np.arange(6.0).reshape(3, 2)
    op = MatrixOperator(A)
    x = np.array([1.0, -1.0])
    out = op.matvec(x)
    assert out.dtype == np.float64 and np.array_equal(out, A @ x)


# -- symmetry of dense Hessians -----------------------------------------------------------------


def _symmetric_and_skew(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A symmetric positive definite ``S`` and an exactly skew ``K`` (float64)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    S = (Q * rng.uniform(1.0, 10.0, n)) @ Q.T
    S = 0.5 * (S + S.T)
    N = rng.standard_normal((n, n))
    return S, N - N.T


def _measured(H: np.ndarray, dtype: str) -> tuple[float, float]:
    """‖H − Hᵀ‖_F and the bound c·√n·ε·‖H‖_F, in float64 from the entries the code sees."""
    n = H.shape[0]
    return (float(np.linalg.norm(H - H.T)),
            SYMMETRY_C * math.sqrt(n) * float(np.finfo(dtype).eps) * float(np.linalg.norm(H)))


def _solve_and_wrap(H, g):
    regularized_cholesky_solve(H, g)
    HessianOperator(H)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("side", [0.5, 2.0])
def test_both_sides_of_the_symmetry_bound(backend, dtype, side):
    n = 20
    S, K = _symmetric_and_skew(n, seed=1)
    # rounding S and K to the dtype keeps S symmetric and K skew exactly; H = S + t·K then has
    # H − Hᵀ = 2t·K up to one rounding per entry, ≤ ε·‖S‖_F ≪ the bound (c·√n = 8944 ε·‖H‖_F)
    S, K = S.astype(dtype).astype(np.float64), K.astype(dtype).astype(np.float64)
    bound = SYMMETRY_C * math.sqrt(n) * float(np.finfo(dtype).eps) * np.linalg.norm(S)
    t = side * bound / (2 * np.linalg.norm(K))
    H64 = (S + t * K).astype(dtype).astype(np.float64)
    asym, bound = _measured(H64, dtype)
    assert abs(asym / bound - side) <= 0.01 * side  # the construction hit the intended side
    H = _asarray(H64, backend, dtype)
    g = _asarray(np.ones(n), backend, dtype)
    if side < 1:
        _solve_and_wrap(H, g)
        return
    for call in (lambda: regularized_cholesky_solve(H, g), lambda: HessianOperator(H)):
        with pytest.raises(ValueError, match=r"not symmetric: ‖H − Hᵀ‖_F = .* exceeds .* "
                                             r"c?.*√n·ε·‖H‖_F .*\(H \+ Hᵀ\)/2"):
            call()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_clearly_non_symmetric_matrix_is_refused(backend, dtype):
    H = _asarray(np.array([[2.0, 1.0], [0.0, 2.0]]), backend, dtype)  # an upper-triangle store
    g = _asarray(np.ones(2), backend, dtype)
    with pytest.raises(ValueError, match=r"H is not symmetric: ‖H − Hᵀ‖_F = 1\.41 exceeds"):
        regularized_cholesky_solve(H, g)
    with pytest.raises(ValueError, match=r"the dense Hessian is not symmetric"):
        HessianOperator(H)
    # the operator route materialises, then checks the same way
    with pytest.raises(ValueError, match=r"H is not symmetric"):
        regularized_cholesky_solve(MatrixOperator(H), g)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_gram_product_with_rounding_passes(backend, dtype):
    # (Aᵀ diag(d)) A by GEMM: mirror entries are rounded through different products, so H is
    # asymmetric at the rounding level (k = 2000 terms per entry)
    rng = np.random.default_rng(3)
    A = _asarray(rng.standard_normal((2000, 30)), backend, dtype)
    d = _asarray(rng.uniform(0.0, 1.0, 2000), backend, dtype)
    H = (A.T * d) @ A
    asym, bound = _measured(_np(H), dtype)
    assert 0 < asym <= bound  # rounding made it asymmetric, within the bound
    _solve_and_wrap(H, _asarray(np.ones(30), backend, dtype))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_symmetrised_finite_difference_hessian_passes(backend, dtype):
    # forward differences of the gradient of the extended Rosenbrock function, then (H + Hᵀ)/2
    def grad(x):
        g = np.zeros_like(x)
        g[:-1] = -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1])
        g[1:] += 200 * (x[1:] - x[:-1] ** 2)
        return g

    n = 12
    x = np.linspace(-1.2, 1.0, n).astype(dtype)
    h = np.sqrt(np.finfo(dtype).eps) * np.maximum(1.0, np.abs(x))
    J = np.stack([(grad(x + h[j] * np.eye(n, dtype=dtype)[j]) - grad(x)) / h[j]
                  for j in range(n)], axis=1)
    assert np.linalg.norm(J - J.T) > 0  # the unsymmetrised differences are not symmetric
    H = _asarray(0.5 * (J + J.T), backend, dtype)
    _solve_and_wrap(H, _asarray(np.ones(n), backend, dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_autodiff_hessian_passes(dtype):
    # torch.func.hessian of a least-squares loss of a 3→16→1 tanh network over 20000 samples:
    # not symmetric to the last bit (the two mirror entries take different reverse-mode paths)
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    dt = getattr(torch, dtype)
    X = torch.randn(20000, 3, generator=gen, dtype=dt)
    y = torch.sin(X.sum(1))
    sizes = [(16, 3), (16,), (1, 16), (1,)]
    n = sum(math.prod(s) for s in sizes)

    def loss(theta):
        parts, i = [], 0
        for s in sizes:
            parts.append(theta[i:i + math.prod(s)].reshape(s))
            i += math.prod(s)
        W1, b1, W2, b2 = parts
        r = (torch.tanh(X @ W1.T + b1) @ W2.T + b2)[:, 0] - y
        return 0.5 * (r * r).mean()

    H = torch.func.hessian(loss)(torch.randn(n, generator=gen, dtype=dt))
    asym, bound = _measured(_np(H), dtype)
    assert 0 < asym <= bound
    _solve_and_wrap(H, torch.ones(n, dtype=dt))


def test_newton_with_a_non_symmetric_hess_says_so():
    def f(x):
        return float(x @ x)

    def hess(x):
        return np.array([[2.0, 1.0], [0.0, 2.0]])

    with pytest.raises(ValueError, match=r"not symmetric.*\(H \+ Hᵀ\)/2"):
        nk.minimize(f, np.ones(2), method="newton", jac=lambda x: 2 * x, hess=hess)
