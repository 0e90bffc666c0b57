"""Array namespace and the few linear-algebra calls the array API standard lacks.

Everything in the core works on arrays through the namespace ``xp`` that
`array-api-compat` returns for them (NumPy, PyTorch, CuPy, or any other
standard-conforming library such as array-api-strict).  The functions below are
the only places where the core branches on the backend; each dispatches on the
namespace and raises a clear ``TypeError`` for a namespace it does not know.

Nothing here copies device arrays to the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import array_api_compat as _compat
import numpy as np
import scipy.linalg.lapack

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
    "qr_r",
    "svd",
    "vdot",
    "norm",
    "standard_normal",
    "smallest_eigenvalue",
    "to_numpy",
]


def array_namespace(*arrays: Any) -> Any:
    """The array-API namespace shared by ``arrays`` (``None`` and Python scalars ignored)."""
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
    if backend_name(xp) == "numpy":
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
    if name == "array_api_strict":  # (its other devices stand in for an accelerator in tests)
        return np.asarray(x.to_device(xp.Device("CPU_DEVICE")))
    return np.asarray(x)


# -- linear algebra outside the standard ------------------------------------------------------


def cholesky(xp: Any, a: Any, shift: float = 0.0) -> tuple[Any, bool]:
    """Lower Cholesky factor of ``a + shift·I`` for a symmetric ``a``, and whether it succeeded.

    Returns ``(L, True)`` with ``a + shift·I = L Lᵀ`` when that matrix is numerically positive
    definite and ``(None, False)`` otherwise; never raises for an indefinite matrix.  torch uses
    ``cholesky_ex`` (no exception to catch); other namespaces their ``linalg.cholesky``
    (``TypeError`` when they lack it), where only a ``LinAlgError`` (NumPy's or the namespace's)
    or a non-finite factor counts as failure; any other error propagates.
    """
    shift = float(shift)  # a NumPy scalar would not combine with every namespace's arrays
    if shift:
        a = a + shift * xp.eye(a.shape[0], dtype=a.dtype, device=device(a))
    if backend_name(xp) == "torch":
        import torch

        L, info = torch.linalg.cholesky_ex(a)
        # info is a 0-d tensor; reading it syncs with the device but copies one integer only.
        ok = bool(info.item() == 0)
        return (L, True) if ok else (None, False)
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

    A singular ``L`` (a zero on its diagonal) raises ``LinAlgError`` on NumPy (LAPACK
    ``trtrs``, as SciPy's ``solve_triangular``).
    """
    name = backend_name(xp)
    vec = b.ndim == 1
    if name == "numpy":
        x, info = _lapack("trtrs", L)(L, b, lower=lower, trans=1 if trans else 0)
        if info > 0:
            raise np.linalg.LinAlgError(f"singular matrix: zero on the diagonal at {info - 1}")
        return x
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


# NumPy calls the LAPACK routines of LM's subproblem (QR, SVD, triangular solves) through
# SciPy's low-level wrappers, ``scipy.linalg.lapack``: SciPy's high-level functions check and
# batch their arguments at 10–60 µs a call (SciPy 1.17), while the routines cost 1–5 µs at the
# n ≤ 10 of most fits, and LM makes several such calls per Jacobian (bench_nls, n ≤ 10: a median
# of 5.3× SciPy's lm with the high-level functions, 3.7× with these).


def _lapack(name: str, a: Any) -> Callable:
    """SciPy's wrapper of the LAPACK routine ``name`` for ``a``'s dtype, float64 (``d``) or
    float32 (``s``): ``scipy.linalg.lapack.dgeqp3`` for ``"geqp3"``."""
    return getattr(scipy.linalg.lapack, ("d" if a.dtype == np.float64 else "s") + name)


def cho_solve(xp: Any, L: Any, b: Any) -> Any:
    """Solve ``L Lᵀ x = b`` given the lower Cholesky factor ``L``: two triangular solves."""
    y = solve_triangular(xp, L, b, lower=True)
    return solve_triangular(xp, L, y, lower=True, trans=True)


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
    return xp.linalg.vector_norm(a, axis=-2)


def qr_r(xp: Any, a: Any, b: Any, *, pivoting: bool = False) -> tuple[Any, Any, Any]:
    """``(R, Qᵀb, perm)`` of the reduced QR ``a[:, perm] = Q R`` of an ``(m, n)`` matrix,
    ``m >= n``; ``Q`` is not formed.

    ``pivoting`` asks for column pivoting (``|R₀₀| ≥ |R₁₁| ≥ ...``, as MINPACK), an integer
    ``perm``.  NumPy: LAPACK ``geqp3`` or ``geqrf``, then ``ormqr`` applies the reflectors to
    ``b`` (SciPy's ``qr_multiply``, without its checks).  torch and CuPy have no pivoted QR:
    they factor ``[a | b]`` with their R-only QR (``mode="r"``; Householder QR works column by
    column, so the first ``n`` columns of that factor are ``R`` and the last holds ``Qᵀb``) and
    return ``perm = None``, the identity; so do other namespaces with the standard's ``qr`` and
    ``b @ Q``.
    """
    name, n = backend_name(xp), a.shape[1]
    if name == "numpy":
        if pivoting:
            qr, jpvt, tau, _, info = _lapack("geqp3", a)(a)
            perm = jpvt - 1  # LAPACK counts from 1
        else:
            qr, tau, _, info = _lapack("geqrf", a)(a)
            perm = None
        qtb, _, info_q = _lapack("ormqr", a)("L", "T", qr, tau, b[:, None], lwork=1)
        if info != 0 or info_q != 0:
            raise ValueError(f"QR: LAPACK info {info}, {info_q}")
        return np.triu(qr[:n]), qtb[:n, 0], perm
    if name not in ("torch", "cupy"):
        Q, R = xp.linalg.qr(a)
        return R, b @ Q, None
    ab = xp.concat([a, xp.reshape(b, (-1, 1))], axis=1)
    if name == "torch":
        import torch

        Rb = torch.linalg.qr(ab, mode="r").R
    else:
        import cupy

        Rb = cupy.linalg.qr(ab, mode="r")
    return Rb[:n, :n], Rb[:n, n], None


def svd(xp: Any, a: Any, driver: str = "gesdd") -> tuple[Any, Any, Any]:
    """The reduced SVD ``(U, s, Vᵀ)`` of a 2-D ``a``.  NumPy: LAPACK's ``driver`` with the
    workspace LAPACK asks for, as SciPy's ``svd`` (``"gesdd"``, divide and conquer, the call
    SciPy's ``least_squares`` makes, so that ``method="trf"`` repeats its rounding; or
    ``"gesvd"``, QR iteration); other namespaces their ``linalg.svd``."""
    if backend_name(xp) != "numpy":
        return xp.linalg.svd(a, full_matrices=False)
    work, _ = _lapack(driver + "_lwork", a)(*a.shape, compute_uv=1, full_matrices=0)
    U, s, Vt, info = _lapack(driver, a)(a, compute_uv=1, full_matrices=0, lwork=int(work.real))
    if info != 0:
        raise np.linalg.LinAlgError(f"SVD failed (LAPACK {driver} info {info})")
    return U, s, Vt


def norm(xp: Any, v: Any) -> float:
    """``‖v‖₂`` of a real 1-D ``v`` as a float: √(v·v) (cheap), or, when v·v overflows or
    falls below the normal range, ``s ‖v / s‖`` with ``s = max |vᵢ|`` (NumPy's and torch's
    ``vector_norm`` overflow too); NaN when ``v`` has a NaN."""
    with np.errstate(over="ignore"):  # (an overflow takes the scaled form below)
        sq = vdot(xp, v, v)
    if _MIN_NORMAL64 <= sq < math.inf:
        return math.sqrt(sq)
    s = float(xp.max(xp.abs(v)))
    if not 0.0 < s < math.inf:  # v = 0, an infinite entry, or NaN
        return s
    w = v / s
    return s * math.sqrt(vdot(xp, w, w))


_MIN_NORMAL64 = float(np.finfo(np.float64).smallest_normal)


def vdot(xp: Any, a: Any, b: Any) -> float:
    """``float(xp.vecdot(a, b))`` for real 1-D ``a`` and ``b``."""
    return float(xp.vecdot(a, b))


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
