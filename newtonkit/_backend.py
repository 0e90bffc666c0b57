"""Array namespace and the few linear-algebra calls the array API standard lacks.

Everything in the core works on arrays through the namespace ``xp`` that
`array-api-compat` returns for them (NumPy, PyTorch, CuPy, or any other
standard-conforming library such as array-api-strict).  The functions below are
the only places where the core branches on the backend; each dispatches on the
namespace and raises a clear ``TypeError`` for a namespace it does not know.

Nothing here copies device arrays to the host.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import array_api_compat as _compat
import array_api_compat.numpy as _compat_numpy
import numpy as np

__all__ = [
    "array_namespace",
    "backend_name",
    "device",
    "check_real_float",
    "itemsize",
    "cholesky",
    "solve_triangular",
    "cho_solve",
    "column_norms",
    "reshape",
    "copy",
    "ones_like",
    "diagonal",
    "float_sum",
    "float_max",
    "float_min",
    "qr_r",
    "unpermute",
    "triu",
    "svd",
    "dot",
    "vdot",
    "norm",
    "standard_normal",
    "smallest_eigenvalue",
    "to_numpy",
]


def array_namespace(*arrays: Any) -> Any:
    """The array-API namespace shared by ``arrays`` (``None`` and Python scalars ignored)."""
    if len(arrays) == 1 and type(arrays[0]) is np.ndarray:
        return _compat_numpy  # what array-api-compat returns for it, without the lookup
    arrays = tuple(a for a in arrays if a is not None and not isinstance(a, (int, float)))
    try:
        return _compat.array_namespace(*arrays)
    except TypeError as exc:
        kinds = sorted({type(a).__module__ + "." + type(a).__name__ for a in arrays})
        raise TypeError(
            f"newtonkit needs arrays of one array-API backend (NumPy, PyTorch, CuPy, ...); "
            f"got {', '.join(kinds)}: {exc}"
        ) from None


def backend_name(xp: Any) -> str:
    """``'numpy'``, ``'torch'``, ``'cupy'``, ``'array_api_strict'`` or the module name."""
    if _compat.is_numpy_namespace(xp):
        return "numpy"
    if _compat.is_torch_namespace(xp):
        return "torch"
    if _compat.is_cupy_namespace(xp):
        return "cupy"
    if _compat.is_array_api_strict_namespace(xp):
        return "array_api_strict"
    return getattr(xp, "__name__", repr(xp))


def device(x: Any) -> Any:
    """The device ``x`` lives on (array-api-compat's portable ``device``)."""
    return _compat.device(x)


def _unsupported(xp: Any, what: str) -> TypeError:
    return TypeError(
        f"{what} is not available for the array namespace {backend_name(xp)!r}; newtonkit "
        f"supports it for numpy, torch, cupy and array_api_strict arrays"
    )


def _linalg(xp: Any, fn: str, what: str) -> Any:
    """``xp.linalg.<fn>``; the ``TypeError`` of :func:`_unsupported` when ``xp`` lacks it."""
    f = getattr(getattr(xp, "linalg", None), fn, None)
    if f is None:
        raise _unsupported(xp, what)
    return f


def itemsize(dtype: Any) -> int:
    """Bytes per entry of a float32 (4) or float64 (8) dtype of any namespace (for the memory
    estimates that choose routes and chunks)."""
    return 4 if "32" in str(dtype) else 8


def check_real_float(xp: Any, x: Any, name: str) -> None:
    """Raise ``TypeError`` unless ``x`` is float32 or float64 (the dtypes LAPACK solvers take)."""
    dt = x.dtype
    if not (dt == xp.float32 or dt == xp.float64):
        kind = "complex" if xp.isdtype(dt, "complex floating") else (
            "low-precision" if xp.isdtype(dt, "real floating") else "non-floating")
        raise TypeError(
            f"{name} has dtype {dt}, a {kind} dtype; newtonkit works on real float32 or "
            f"float64 arrays (convert with .astype(float64) or .to(torch.float64))"
        )


def check_not_complex(xp: Any, a: Any, what: str) -> None:
    """Raise ``TypeError`` where a user's output ``a`` is complex: casting it to the real
    working dtype would silently drop the imaginary part (a residual ``x − 1j`` would read 0)."""
    if xp.isdtype(a.dtype, "complex floating"):
        raise TypeError(f"{what} is complex ({a.dtype}); newtonkit minimises real functions: "
                        f"return real arrays (stack real and imaginary parts as separate "
                        f"residuals)")


def all_finite(xp: Any, a: Any) -> bool:
    """Whether every entry of ``a`` is finite.

    NumPy tests elementwise (its ``isfinite`` is fast). Elsewhere the sum decides first: it is
    finite only if every entry is (a nan or an inf makes it nan or inf), and a reduction costs a
    fraction of ``all(isfinite(a))``, which builds a boolean array (8× on a 600 × 600 CPU
    tensor). Only a non-finite sum, an overflow of finite entries included, falls back to the
    elementwise test.
    """
    if xp is _compat_numpy or _is_numpy(xp):
        return bool(np.isfinite(a).all())
    with np.errstate(all="ignore"):  # array-api-strict reduces with NumPy
        if math.isfinite(float(xp.sum(a))):
            return True
    return bool(xp.all(xp.isfinite(a)))


def scatter_rows(xp: Any, sel: np.ndarray, dev: Any) -> Callable[[Any, Any], Any]:
    """A function ``put(new, old)``: ``old`` with the rows where ``sel`` (a NumPy bool array
    over the rows of ``old``) replaced by the rows of ``new`` (one per selected row, in order);
    a new array, ``old`` is not changed.  Arrays on the device ``dev``, where the row map is
    placed once for all the arrays it scatters."""
    every = bool(sel.all())
    if not every:
        pos = xp.asarray(np.maximum(np.cumsum(sel) - 1, 0), device=dev)  # new's row, per row
        mask = xp.asarray(sel, device=dev)

    def put(new: Any, old: Any) -> Any:
        if new.shape[0] == 0:
            return old
        if every:  # all rows replaced
            return new
        rows = xp.reshape(mask, (sel.size,) + (1,) * (len(old.shape) - 1))
        return xp.where(rows, xp.take(new, pos, axis=0), old)

    return put


def to_numpy(x: Any) -> np.ndarray:
    """Copy an array to a NumPy array on the host (only for tests, benchmarks and reporting)."""
    xp = array_namespace(x)
    name = backend_name(xp)
    if name == "numpy":
        return np.asarray(x)
    if name == "torch":
        return x.detach().cpu().numpy()
    if name == "cupy":
        return x.get()
    return np.asarray(x)


# -- linear algebra outside the standard ------------------------------------------------------


def cholesky(xp: Any, a: Any, shift: float = 0.0) -> tuple[Any, bool]:
    """Lower Cholesky factor of ``a + shift·I`` for a symmetric ``a``, and whether it succeeded.

    Returns ``(L, True)`` with ``a + shift·I = L Lᵀ`` when that matrix is numerically positive
    definite and ``(None, False)`` otherwise; never raises for an indefinite matrix.  Other
    namespaces use their ``linalg.cholesky`` (``TypeError`` when they lack it); only a
    ``LinAlgError`` (NumPy's or the namespace's) or a non-finite factor counts as failure, any
    other error propagates.  NumPy float64 calls LAPACK ``potrf`` on one column-major copy of
    ``a`` with the shift added to its diagonal in place (what SciPy's ``cholesky`` computes, in
    one pass over memory instead of three: no ``shift·I`` temporary, no sum, no second copy).
    """
    shift = float(shift)  # a NumPy scalar would not combine with every namespace's arrays
    if _lapack_float64(xp, a):
        n = a.shape[0]
        f = np.array(a, order="F")  # potrf factors in place
        if shift:
            f.ravel(order="K")[:: n + 1] += shift  # the diagonal, in memory order
        L, info = _f64("potrf")[0](f, 1, 1, 1)  # lower, clean, overwrite_a
        if info < 0:
            raise ValueError(f"potrf: illegal argument {-info}")
        return (L, True) if info == 0 else (None, False)
    if shift:
        a = a + shift * xp.eye(a.shape[0], dtype=a.dtype, device=device(a))
    name = backend_name(xp)
    if name == "torch":
        import torch

        L, info = torch.linalg.cholesky_ex(a)
        # info is a 0-d tensor; reading it syncs with the device but copies one integer only.
        ok = bool(info.item() == 0)
        return (L, True) if ok else (None, False)
    if name == "numpy":
        import scipy.linalg

        try:
            L = scipy.linalg.cholesky(a, lower=True, check_finite=False)
        except np.linalg.LinAlgError:
            return None, False
        return L, True
    factor = _linalg(xp, "cholesky", "a Cholesky factorisation")
    # array-api-strict raises NumPy's LinAlgError; a namespace may define its own
    failed = (np.linalg.LinAlgError, getattr(xp.linalg, "LinAlgError", np.linalg.LinAlgError))
    try:
        L = factor(a)
    except failed:
        return None, False
    if not all_finite(xp, L):  # CuPy may return NaNs instead of raising
        return None, False
    return L, True


def solve_triangular(xp: Any, L: Any, b: Any, *, lower: bool = True, trans: bool = False) -> Any:
    """Solve ``L x = b`` (or ``Lᵀ x = b`` with ``trans``) for triangular ``L``; ``b`` 1-D or 2-D.

    A singular ``L`` (a zero on its diagonal) raises ``LinAlgError`` on NumPy float64, which
    calls LAPACK ``trtrs`` as SciPy's ``solve_triangular`` does, without its checks.
    """
    if b.dtype == np.float64 and _lapack_float64(xp, L):
        trtrs = _f64("trtrs")[0]
        # positional arguments: f2py parses keywords at ~0.1 µs each
        if L.flags.f_contiguous:
            x, info = trtrs(L, b, lower, trans)
        else:  # as SciPy: the transposed system (on C-ordered data, without a copy)
            x, info = trtrs(L.T, b, not lower, not trans)
        if info != 0:
            raise np.linalg.LinAlgError(
                f"singular matrix: resolution failed at diagonal {info - 1}")
        return x
    name = backend_name(xp)
    vec = b.ndim == 1
    if name == "numpy":
        import scipy.linalg

        return scipy.linalg.solve_triangular(
            L, b, lower=lower, trans=1 if trans else 0, check_finite=False
        )
    if name == "torch":
        import torch

        A = L.mT if trans else L
        upper = lower if trans else not lower
        B = b[:, None] if vec else b
        x = torch.linalg.solve_triangular(A, B, upper=upper)
        return x[:, 0] if vec else x
    if name == "cupy":
        import cupyx.scipy.linalg

        return cupyx.scipy.linalg.solve_triangular(L, b, lower=lower, trans=1 if trans else 0)
    # Any other namespace (array-api-strict among them): the standard has no triangular solve,
    # but its linalg extension's general solve gives the same solution, only slower.
    solve = _linalg(xp, "solve", "a triangular solve")
    A = xp.matrix_transpose(L) if trans else L
    B = b[:, None] if vec else b
    x = solve(A, B)
    return x[:, 0] if vec else x


def cho_solve(xp: Any, L: Any, b: Any) -> Any:
    """Solve ``L Lᵀ x = b`` given the lower Cholesky factor ``L`` (NumPy float64: LAPACK
    ``potrs``, the same two triangular solves in one call)."""
    if _lapack_float64(xp, L) and b.dtype == np.float64 and L.flags.f_contiguous:
        x, info = _f64("potrs")[0](L, b, 1)  # lower
        if info != 0:
            raise ValueError(f"potrs: illegal argument {-info}")
        return x
    y = solve_triangular(xp, L, b, lower=True)
    return solve_triangular(xp, L, y, lower=True, trans=True)


# NumPy float64 calls LAPACK itself: for the small matrices of a least-squares iteration
# NumPy's and SciPy's wrappers cost more than the routine (SciPy's ``cho_solve`` 20 µs against
# ``potrs``' 1 µs at n = 10, its ``svd`` 60 µs against ``gesvd``'s 30 µs at 11 × 10; loaded
# machine, 2026-12-05).  The routines are the ones those wrappers call, with the same
# workspace, so the results are the same.  One cache holds them: :func:`_f64`.


def _lapack_float64(xp: Any, a: Any) -> bool:
    # NumPy's linalg computes float32 in float64; only float64 calls LAPACK directly.
    return (xp is _compat_numpy or _is_numpy(xp)) and a.dtype == np.float64 and a.size > 0


@functools.lru_cache(maxsize=256)
def _f64(name: str, m: int = 0, n: int = 0) -> tuple[Any, int]:
    """The float64 LAPACK routine ``name`` and, for an ``(m, n)`` matrix, its optimal workspace
    (a workspace query; 1 for the routines that take none)."""
    import scipy.linalg.lapack

    def get(routine: str) -> Any:
        return scipy.linalg.lapack.get_lapack_funcs(routine, dtype=np.dtype(np.float64))

    routine, work = get(name), 1
    if name in ("gesdd", "gesvd"):
        work, _ = get(name + "_lwork")(m, n, compute_uv=1, full_matrices=0)
    elif name in ("geqrf", "geqp3"):
        out = routine(np.zeros((m, n), order="F"), lwork=-1)
        work = out[2] if name == "geqrf" else out[3]  # (qr, [jpvt,] tau, work, info)
    return routine, max(1, int(np.asarray(work).ravel()[0].real))


# NumPy fast paths of a few standard calls that the iteration loops make on small arrays: the
# same ufunc reductions NumPy's Python-level wrappers end in, without the wrappers.


def _is_numpy(xp: Any) -> bool:
    # The hot helpers test ``xp is _compat_numpy`` inline first: that saves the call, which is
    # a measurable part of a ~0.3 µs NumPy operation on the small arrays of an LM trial.
    return xp is _compat_numpy or backend_name(xp) == "numpy"


def reshape(xp: Any, a: Any, shape: tuple[int, ...]) -> Any:
    """``xp.reshape(a, shape)`` (NumPy: ``ndarray.reshape``, without the compat wrapper)."""
    return a.reshape(shape) if xp is _compat_numpy or _is_numpy(xp) else xp.reshape(a, shape)


def copy(xp: Any, a: Any) -> Any:
    """``xp.asarray(a, copy=True)`` (NumPy: ``ndarray.copy``, C-ordered)."""
    return a.copy() if xp is _compat_numpy or _is_numpy(xp) else xp.asarray(a, copy=True)


def ones_like(xp: Any, a: Any) -> Any:
    """``xp.ones_like(a)`` (NumPy: ``np.ones`` of ``a``'s shape and dtype)."""
    if xp is _compat_numpy or _is_numpy(xp):
        return np.ones(a.shape, a.dtype)
    return xp.ones_like(a)


def column_norms(xp: Any, a: Any, *, safe: bool = False) -> Any:
    """The Euclidean norms of the columns of a real 2-D ``a``, or of each matrix of a stack
    ``(..., m, n)`` (``vector_norm(a, axis=-2)``).

    That sums squares, which overflow for entries above ~1.3e154 (NumPy's own norm does the
    same).  ``safe=True`` scales each column by its largest magnitude first,
    ``s_j ‖a_j / s_j‖`` (as MINPACK's ``enorm``), finite for every finite ``a``.
    """
    if safe:
        s = xp.max(xp.abs(a), axis=-2)
        s1 = xp.where(s > 0, s, xp.ones_like(s))
        return s * column_norms(xp, a / s1[..., None, :])
    if xp is _compat_numpy or _is_numpy(xp):
        return np.sqrt(np.add.reduce(a * a, axis=-2))  # what np.linalg.norm computes
    return xp.linalg.vector_norm(a, axis=-2)


def diagonal(xp: Any, a: Any) -> Any:
    """The main diagonal of a 2-D ``a`` (``xp.linalg.diagonal``)."""
    return a.diagonal() if xp is _compat_numpy or _is_numpy(xp) else xp.linalg.diagonal(a)


def float_sum(xp: Any, v: Any) -> float:
    """``float(xp.sum(v))`` for a real 1-D ``v``."""
    return float(np.add.reduce(v) if xp is _compat_numpy or _is_numpy(xp) else xp.sum(v))


def float_max(xp: Any, v: Any) -> float:
    """``float(xp.max(v))`` for a non-empty 1-D ``v`` (NaN when ``v`` has one).  NumPy reads
    the entry at ``argmax`` (the first NaN if any): 0.25 µs instead of a ufunc reduction's
    0.8 µs on a small array (a maximum of ±0 may come back with the other sign)."""
    if xp is _compat_numpy or _is_numpy(xp):
        return v.item(v.argmax())
    return float(xp.max(v))


def count_nonzero(xp: Any, v: Any) -> int:
    """``int(xp.count_nonzero(v))`` (NumPy: ``np.count_nonzero``, a fraction of a ufunc
    reduction's ~0.8 µs on a small array)."""
    return int(np.count_nonzero(v) if xp is _compat_numpy or _is_numpy(xp)
               else xp.count_nonzero(v))


def float_min(xp: Any, v: Any) -> float:
    """``float(xp.min(v))`` for a non-empty 1-D ``v`` (NaN when ``v`` has one; NumPy: the
    entry at ``argmin``, as :func:`float_max`)."""
    if xp is _compat_numpy or _is_numpy(xp):
        return v.item(v.argmin())
    return float(xp.min(v))


def qr_r(xp: Any, a: Any, b: Any, *, pivoting: bool = False) -> tuple[Any, Any, Any]:
    """``(R, Qᵀb, perm)`` of the reduced QR ``a[:, perm] = Q R`` of an ``(m, n)`` matrix,
    ``m >= n``.

    Only the upper triangle of the ``(n, n)`` array ``R`` is meaningful: below the diagonal
    NumPy leaves LAPACK's Householder vectors (``xp.triu(R)`` is the factor;
    :func:`solve_triangular` with ``lower=False`` reads the upper triangle only).  ``Q`` is not
    formed: NumPy float64 applies the reflectors to ``b`` (LAPACK ``geqrf``, or ``geqp3`` with
    ``pivoting``, then ``ormqr``: O(mn) for ``Qᵀb`` instead of the O(mn²) of forming ``Q``).
    ``pivoting`` asks for column pivoting (``|R₀₀| ≥ |R₁₁| ≥ ...``, as MINPACK), an integer
    ``perm``; namespaces without a pivoted QR (the array API has none) factor ``a`` as it is and
    return ``perm = None``, the identity.  NumPy float32, torch and CuPy factor ``[a | b]`` with
    their R-only QR (``mode="r"``): Householder QR works column by column, so the first ``n``
    columns of that factor are ``R`` and the last holds ``Qᵀb``, again without forming ``Q``
    (half the work for ``m ≫ n``).  Other namespaces (array-api-strict: the standard's QR has no
    R-only mode) compute ``xp.linalg.qr(a)`` and ``b @ Q``.
    """
    if not (_lapack_float64(xp, a) and b.dtype == np.float64):
        name, n = backend_name(xp), a.shape[1]
        if name not in ("numpy", "torch", "cupy"):
            Q, R = xp.linalg.qr(a)
            return R, b @ Q, None
        ab = xp.concat([a, xp.reshape(b, (-1, 1))], axis=1)
        if name == "torch":
            import torch

            Rb = torch.linalg.qr(ab, mode="r").R
        elif name == "cupy":
            import cupy

            Rb = cupy.linalg.qr(ab, mode="r")
        else:
            Rb = np.linalg.qr(ab, mode="r")
        return Rb[:n, :n], Rb[:n, n], None
    m, n = a.shape
    factor, lwork_factor = _f64("geqp3" if pivoting else "geqrf", m, n)
    ormqr = _f64("ormqr")[0]
    if pivoting:
        f, jpvt, tau, _, info = factor(a, lwork_factor)
        perm = jpvt - 1  # LAPACK counts from 1
    else:
        f, tau, _, info = factor(a, lwork_factor)
        perm = None
    if info != 0:
        raise np.linalg.LinAlgError(f"QR factorisation failed (info {info})")
    # Qᵀb for one column: the minimal workspace (1) selects LAPACK's unblocked loop, which is
    # 7x faster at n = 200 than the blocked one the workspace query asks for (and never slower)
    qtb, _, info = ormqr("L", "T", f, tau, b[:, None], 1)
    if info != 0:
        raise np.linalg.LinAlgError(f"applying Qᵀ failed (ormqr info {info})")
    return f[:n], qtb[:n, 0], perm


def triu(xp: Any, a: Any) -> Any:
    """The upper triangle of a square ``a``, zeros below (``xp.triu(a)``)."""
    return xp.triu(a)


def unpermute(xp: Any, y: Any, perm: Any, axis: int = 0) -> Any:
    """``out`` with ``out[perm] = y`` (along ``axis``, 0 or 1 of a 2-D ``y``): undoes the
    column permutation of :func:`qr_r` (``perm = None``: ``y`` itself)."""
    if perm is None:
        return y
    if xp is _compat_numpy or _is_numpy(xp):
        out = np.empty_like(y)
        if axis == 0:
            out[perm] = y
        else:
            out[:, perm] = y
        return out
    return xp.take(y, xp.argsort(perm), axis=axis)


def svd(xp: Any, a: Any, *, contiguous: bool = True,
        driver: str = "gesdd") -> tuple[Any, Any, Any]:
    """Reduced SVD ``(U, s, Vᵀ)`` (``xp.linalg.svd(a, full_matrices=False)``).

    ``contiguous=False`` lets NumPy return LAPACK's column-major ``U`` and ``Vᵀ`` as they are
    (the same values, without the two copies, for callers that only multiply with them).
    ``driver`` picks NumPy's LAPACK routine: ``"gesdd"`` (divide and conquer, what
    ``np.linalg.svd`` calls) or ``"gesvd"`` (QR iteration: 5–15 % faster below ~20 columns,
    several times slower on large matrices).  Other namespaces use their own.
    """
    if not _lapack_float64(xp, a):
        return tuple(xp.linalg.svd(a, full_matrices=False))
    m, n = a.shape
    routine, lwork = _f64(driver, m, n)
    U, s, Vt, info = routine(a, 1, 0, lwork)  # compute_uv, full_matrices, lwork
    if info != 0:
        raise np.linalg.LinAlgError("SVD did not converge")
    if not contiguous:
        return U, s, Vt
    return np.ascontiguousarray(U), s, np.ascontiguousarray(Vt)


def eigh(xp: Any, a: Any) -> tuple[Any, Any]:
    """Eigenvalues (ascending) and orthonormal eigenvectors (columns) of a real symmetric
    ``a`` (``xp.linalg.eigh``; NumPy float64: LAPACK ``syev``, which reads the upper triangle:
    6 µs instead of ``np.linalg.eigh``'s 10 µs at n = 10)."""
    if not _lapack_float64(xp, a):
        w, V = xp.linalg.eigh(a)
        return w, V
    w, V, info = _f64("syev")[0](a)
    if info != 0:
        raise np.linalg.LinAlgError("the symmetric eigensolver did not converge")
    return w, V


def transpose(xp: Any, a: Any) -> Any:
    """``aᵀ`` of a 2-D ``a`` (``xp.matrix_transpose``; NumPy: ``a.T``, 0.05 µs instead of the
    compat layer's 0.6 µs)."""
    return a.T if xp is _compat_numpy or _is_numpy(xp) else xp.matrix_transpose(a)


def dot(xp: Any, a: Any, b: Any) -> Any:
    """``a @ b`` for 1-D and 2-D operands.

    NumPy uses ``ndarray.dot`` (the same BLAS call without matmul's ufunc dispatch: 0.3 µs
    instead of 0.7 µs on the small arrays of small least-squares problems).
    """
    return a.dot(b) if xp is _compat_numpy or _is_numpy(xp) else a @ b


def norm(xp: Any, v: Any) -> float:
    """``‖v‖₂`` of a real 1-D ``v`` as a float: √(v·v) (cheap), or, when v·v overflows or
    falls below the normal range, ``s ‖v / s‖`` with ``s = max |vᵢ|`` (NumPy's and torch's
    ``vector_norm`` overflow too); NaN when ``v`` has a NaN."""
    numpy = xp is _compat_numpy or _is_numpy(xp)
    sq = float(v.dot(v) if numpy else xp.vecdot(v, v))
    if _MIN_NORMAL64 <= sq < math.inf:
        return math.sqrt(sq)
    s = float_max(xp, xp.abs(v))
    if not 0.0 < s < math.inf:  # v = 0, an infinite entry, or NaN
        return s
    w = v / s
    return s * math.sqrt(float(w.dot(w) if numpy else xp.vecdot(w, w)))


_MIN_NORMAL64 = float(np.finfo(np.float64).smallest_normal)


def vdot(xp: Any, a: Any, b: Any) -> float:
    """``float(xp.vecdot(a, b))`` for real 1-D ``a`` and ``b`` (NumPy: ``ndarray.dot``)."""
    return float(a.dot(b) if xp is _compat_numpy or _is_numpy(xp) else xp.vecdot(a, b))


def standard_normal(xp: Any, shape: tuple[int, ...], dtype: Any, like: Any,
                    seed: int | None) -> Any:
    """Standard normal samples of ``shape`` and ``dtype`` on the device of ``like``."""
    name = backend_name(xp)
    if name == "numpy":
        return np.random.default_rng(seed).standard_normal(shape).astype(dtype, copy=False)
    if name == "torch":
        import torch

        dev = like.device
        gen = torch.Generator(device=dev)
        if seed is None:
            gen.seed()
        else:
            gen.manual_seed(seed)
        return torch.randn(shape, generator=gen, dtype=dtype, device=dev)
    if name == "cupy":
        import cupy

        with cupy.cuda.Device(like.device):
            return cupy.random.default_rng(seed).standard_normal(shape, dtype=dtype)
    if name == "array_api_strict":
        data = np.random.default_rng(seed).standard_normal(shape)
        return xp.asarray(data, dtype=dtype, device=device(like))
    raise _unsupported(xp, "random sampling")


_BISECTION_MAX_N = 4096


def smallest_eigenvalue(xp: Any, a: Any) -> float:
    """Smallest eigenvalue of the dense symmetric matrix ``a`` (as a Python float).

    NumPy arrays and CPU tensors (through a zero-copy view) above n = 64 use ARPACK
    (``eigsh(k=1, which="SA")``, as the deepwave seed does), except float64 matrices up to
    n = 4096, which use LAPACK's bisection for the one eigenvalue (``scipy.linalg.eigh(
    subset_by_index=[0, 0], driver="evx")``). ARPACK iterates to the dtype's ε, and when λ_min
    sits in a cluster, as in the seed's Hessian, that takes hundreds of products in float64;
    bisection costs a fixed O(n³) tridiagonalisation, within a small factor of the Cholesky that
    follows. Measured on the seed-like 600 × 600 spectrum, one thread: float64 ARPACK 80 ms,
    bisection 23 ms; float32 ARPACK 8 ms, bisection 15 ms. Other backends and devices use the
    standard's ``eigvalsh`` on the device.
    """
    n = a.shape[0]
    name = backend_name(xp)
    host = None
    if name == "numpy":
        host = a
    elif name == "torch" and a.device.type == "cpu":
        host = a.detach().numpy()  # a view of the same memory, not a copy
    bisect = host is not None and host.dtype == np.float64 and 64 < n <= _BISECTION_MAX_N
    if bisect:
        import scipy.linalg

        w = scipy.linalg.eigh(host, eigvals_only=True, subset_by_index=[0, 0], driver="evx",
                              check_finite=False)
        return float(w[0])
    if host is not None and n > 64:
        import scipy.sparse.linalg

        try:
            # A fixed start vector makes λ_min (and so Newton's path) reproducible run to run.
            v0 = np.random.default_rng(0).standard_normal(n).astype(host.dtype)
            w = scipy.sparse.linalg.eigsh(host, k=1, which="SA", v0=v0,
                                          return_eigenvectors=False)
            return float(w[0])
        except scipy.sparse.linalg.ArpackNoConvergence:
            pass  # fall through to the dense eigensolver
    w = _linalg(xp, "eigvalsh", "a symmetric eigensolver")(a)
    return float(w[0])
