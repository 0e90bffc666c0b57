"""The backend dispatch layer (newtonkit._backend) on NumPy, PyTorch and array-api-strict.

Tolerances: triangular solves and Cholesky are backward stable, so residuals are compared at
``50·n·ε`` relative to ``‖|L|‖·‖x‖`` (or ``‖A‖``); generated matrices are well conditioned
(diagonally dominant factors, eigenvalues in [0.1, 10]) so forward errors stay at that level too.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
import strategies as S
from hypothesis import given
from hypothesis import strategies as st

from newtonkit import _backend as B


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_namespace_and_name(backend):
    x = S.to_backend(np.ones(3), backend, "float32")
    xp = B.array_namespace(x, None, 2.0)  # None and Python scalars are ignored
    assert B.backend_name(xp) == backend
    assert B.device(x) is not None
    np.testing.assert_array_equal(B.to_numpy(x), np.ones(3, dtype=np.float32))


def test_mixed_backends_raise_naming_both():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match=r"one array-API backend.*(numpy|torch)"):
        B.array_namespace(np.ones(2), torch.ones(2))


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("dtype,ok", [("float32", True), ("float64", True), ("int64", False),
                                      ("complex128", False), ("bool", False)])
def test_check_real_float(backend, dtype, ok):
    xp = S.namespace(backend)
    x = S.to_backend(np.ones(2), backend, dtype)
    if ok:
        B.check_real_float(xp, x, "x")
    else:
        kind = "complex" if "complex" in dtype else "non-floating"
        with pytest.raises(TypeError, match=rf"x has dtype .*{kind}"):
            B.check_real_float(xp, x, "x")


@st.composite
def spd(draw, backend=None):
    # backend, dtype and size from the drawn seed (uniform; see strategies.svd_cases)
    seed = draw(S.seeds)
    rng = np.random.default_rng(seed)
    backend = str(rng.choice(S.BACKENDS)) if backend is None else backend
    dtype = str(rng.choice(S.DTYPES))
    n = int(rng.integers(1, 31))
    Q = S.random_orthogonal(rng, n, n)
    A = S.rounded((Q * rng.uniform(0.1, 10.0, n)) @ Q.T, dtype)
    A = np.tril(A) + np.tril(A, -1).T
    return backend, dtype, A, rng


@given(spd())
def test_cholesky_of_positive_definite(args):
    backend, dtype, A, _ = args
    xp = S.namespace(backend)
    L, ok = B.cholesky(xp, S.to_backend(A, backend, dtype))
    assert ok
    assert S.backend_of(L) == backend and S.dtype_name(L) == dtype
    L64 = S.to_np(L)
    assert np.all(np.triu(L64, 1) == 0.0)  # exactly lower triangular
    n = A.shape[0]
    assert S.rel_err(L64 @ L64.T, A, np.linalg.norm(A)) <= 50 * n * S.eps(dtype)


@given(spd())
def test_cholesky_reports_failure_without_raising(args):
    # A − (λ_min + shift)·I is indefinite (λ_min ≥ 0.1 and shift ≥ 0.2 ≫ n·ε·10).
    backend, dtype, A, rng = args
    shift = rng.uniform(0.2, 5.0)
    lam = np.linalg.eigvalsh(A)[0]
    Ab = S.to_backend(A - (lam + shift) * np.eye(A.shape[0]), backend, dtype)
    L, ok = B.cholesky(S.namespace(backend), Ab)
    assert not ok and L is None


@given(spd())
def test_solve_triangular_and_cho_solve(args):
    # Triangular solves with lower/upper, plain/transposed, 1-D/2-D right-hand sides, against
    # float64 SciPy; cho_solve solves A x = b from the Cholesky factor.
    import scipy.linalg

    backend, dtype, A, rng = args
    lower, trans = bool(rng.integers(2)), bool(rng.integers(2))
    ncols = int(rng.integers(0, 4))
    xp = S.namespace(backend)
    n = A.shape[0]
    L64 = S.rounded(np.linalg.cholesky(A), dtype)
    T64 = L64 if lower else L64.T
    b = S.rounded(rng.standard_normal((n, ncols)) if ncols else rng.standard_normal(n), dtype)
    x = B.solve_triangular(xp, S.to_backend(T64, backend, dtype), S.to_backend(b, backend, dtype),
                           lower=lower, trans=trans)
    assert S.backend_of(x) == backend and S.dtype_name(x) == dtype
    assert tuple(x.shape) == b.shape
    want = scipy.linalg.solve_triangular(T64, b, lower=lower, trans=1 if trans else 0)
    cond = np.linalg.cond(T64)
    assert S.rel_err(x, want) <= 50 * n * S.eps(dtype) * cond
    y = B.cho_solve(xp, S.to_backend(L64, backend, dtype), S.to_backend(b, backend, dtype))
    want = np.linalg.solve(L64 @ L64.T, b)
    assert S.rel_err(y, want) <= 50 * n * S.eps(dtype) * cond**2


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("dtype", S.DTYPES)
def test_standard_normal(backend, dtype):
    xp = S.namespace(backend)
    like = S.to_backend(np.zeros(1), backend, dtype)
    a = B.standard_normal(xp, (200, 3), getattr(xp, dtype), like, 7)
    b = B.standard_normal(xp, (200, 3), getattr(xp, dtype), like, 7)
    c = B.standard_normal(xp, (200, 3), getattr(xp, dtype), like, 8)
    assert S.backend_of(a) == backend and S.dtype_name(a) == dtype and tuple(a.shape) == (200, 3)
    np.testing.assert_array_equal(S.to_np(a), S.to_np(b))  # reproducible
    assert not np.array_equal(S.to_np(a), S.to_np(c))
    v = S.to_np(a)
    assert abs(v.mean()) < 0.2 and 0.8 < v.std() < 1.2  # 600 samples: 5 standard errors


@given(S.symmetric_cases(kinds=("definite", "indefinite", "negative")))
def test_smallest_eigenvalue(case):
    # Dense symmetric eigenvalues: absolute error ≲ n·ε·‖H‖ (Weyl), constant 20.
    lam = B.smallest_eigenvalue(S.namespace(case.backend), case.H)
    assert isinstance(lam, float)
    assert abs(lam - case.lam[0]) <= 20 * case.n * S.eps(case.dtype) * np.abs(case.lam).max()


@pytest.mark.parametrize("bisection_max_n", [4096, 64])
def test_smallest_eigenvalue_host_paths(monkeypatch, bisection_max_n):
    # float64 NumPy above 64: LAPACK bisection up to _BISECTION_MAX_N, ARPACK eigsh(k=1,
    # which="SA") above it (forced here by lowering the limit); both to machine precision.
    monkeypatch.setattr(B, "_BISECTION_MAX_N", bisection_max_n)
    rng = np.random.default_rng(1)
    n = 100
    Q = S.random_orthogonal(rng, n, n)
    lam = np.concatenate([[-2.0], rng.uniform(-1, 3, n - 1)])
    H = (Q * lam) @ Q.T
    H = 0.5 * (H + H.T)
    # both are backward stable (bisection; ARPACK at tol=0 stops at a Ritz residual of order
    # ε·‖H‖, which bounds the eigenvalue error for symmetric H): ≲ n·ε·‖H‖ each, constant 20
    bound = 20 * n * np.finfo(np.float64).eps * np.abs(lam).max()
    assert abs(B.smallest_eigenvalue(np, H) - np.linalg.eigvalsh(H)[0]) <= 2 * bound


@pytest.mark.parametrize("linalg", [None, (), ("eigvalsh",), ("cholesky",)],
                         ids=["no-linalg", "empty-linalg", "eigvalsh-only", "cholesky-only"])
def test_unknown_namespace_raises_clear_error(linalg):
    # A namespace outside numpy/torch/cupy/array_api_strict: the functions outside the standard
    # raise TypeError naming what is missing and the namespace (the generic Cholesky and
    # eigensolver paths too, for a namespace without linalg or with a linalg lacking the call).
    fake = types.ModuleType("fakearray")
    if linalg is not None:
        fake.linalg = types.SimpleNamespace(**{f: getattr(np.linalg, f) for f in linalg})
    assert B.backend_name(fake) == "fakearray"
    A, b = np.eye(2), np.ones(2)
    calls = [
        ("Cholesky factorisation", "cholesky", lambda: B.cholesky(fake, A)),
        ("triangular solve", None, lambda: B.solve_triangular(fake, A, b)),
        ("triangular solve", None, lambda: B.cho_solve(fake, A, b)),
        ("symmetric eigensolver", "eigvalsh", lambda: B.smallest_eigenvalue(fake, A)),
        ("random sampling", None, lambda: B.standard_normal(fake, (2,), np.float64, A, 0)),
    ]
    for what, fn, call in calls:
        if fn in (linalg or ()):
            continue  # the namespace has it: the generic path runs
        with pytest.raises(TypeError, match=rf"{what} is not available .*'fakearray'"):
            call()


def test_generic_cholesky_reports_only_factorisation_failures():
    # The generic path (a namespace without a branch of its own) maps NumPy's or the
    # namespace's LinAlgError to (None, False) and lets any other error through.
    class FactorError(Exception):
        pass

    def raising(exc):
        def cholesky(a):
            raise exc
        return cholesky

    fake = types.ModuleType("fakearray")
    fake.sum, fake.all, fake.isfinite = np.sum, np.all, np.isfinite  # for all_finite
    fake.linalg = types.SimpleNamespace(cholesky=raising(np.linalg.LinAlgError("not PD")))
    assert B.cholesky(fake, np.eye(2)) == (None, False)
    fake.linalg = types.SimpleNamespace(cholesky=raising(FactorError("not PD")),
                                        LinAlgError=FactorError)
    assert B.cholesky(fake, np.eye(2)) == (None, False)
    fake.linalg = types.SimpleNamespace(cholesky=raising(RuntimeError("device lost")))
    with pytest.raises(RuntimeError, match="device lost"):
        B.cholesky(fake, np.eye(2))
    fake.linalg = types.SimpleNamespace(cholesky=lambda a: np.full_like(a, np.nan))
    assert B.cholesky(fake, np.eye(2)) == (None, False)  # NaNs instead of an error (CuPy)
    fake.linalg = types.SimpleNamespace(cholesky=np.linalg.cholesky)
    L, ok = B.cholesky(fake, 4.0 * np.eye(2))
    assert ok and np.array_equal(L, 2.0 * np.eye(2))


@given(S.backends, st.sampled_from(["float32", "float64"]),
       st.lists(st.sampled_from([0.0, 1.0, -2.5, 1e30, 3e38, -3e38, 1.7e308, float("nan"),
                                 float("inf"), float("-inf")]), min_size=1, max_size=40))
def test_all_finite_matches_elementwise_test(backend, dtype, values):
    # The sum shortcut must agree with the elementwise test, huge finite entries whose sum
    # overflows included (3e38 in float32, 1.7e308 in float64).
    with np.errstate(over="ignore"):
        a64 = np.asarray(values, dtype=dtype)
    a = S.to_backend(a64, backend, dtype)
    assert B.all_finite(S.namespace(backend), a) == bool(np.isfinite(a64).all())


@given(S.backends, st.lists(st.booleans(), min_size=1, max_size=8), st.integers(0, 2))
def test_scatter_rows_replaces_the_selected_rows_in_order(backend, sel, extra_dims):
    # put(new, old): row i of the result is the next row of new where sel[i], else old's row i
    # (exact copies); old is left as it was.
    sel = np.asarray(sel)
    shape = (3,) * extra_dims
    old64 = np.arange(sel.size * 3**extra_dims, dtype=np.float64).reshape((sel.size, *shape))
    new64 = -1.0 - np.arange(sel.sum() * 3**extra_dims, dtype=np.float64).reshape(
        (int(sel.sum()), *shape))
    xp = S.namespace(backend)
    old, new = S.to_backend(old64, backend, "float64"), S.to_backend(new64, backend, "float64")
    want = old64.copy()
    want[sel] = new64
    out = B.scatter_rows(xp, sel, B.device(old))(new, old)
    np.testing.assert_array_equal(S.to_np(out), want)
    np.testing.assert_array_equal(S.to_np(old), old64)
