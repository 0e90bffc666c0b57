"""Concrete operators: dense, function-defined, identity, diagonal, and the algebra."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _backend as B
from . import _tags as T
from ._base import LinearOperator


class MatrixOperator(LinearOperator):
    """A dense ``(m, n)`` matrix ``A`` (real floating, finite entries) as an operator."""

    def __init__(self, A: Any, tags: Any = ()) -> None:
        xp = B.array_namespace(A)
        if getattr(A, "ndim", None) != 2:
            raise ValueError(f"a matrix operator needs a 2-D array, got shape {tuple(A.shape)}")
        B.check_real_float(xp, A, "the matrix")
        if not B.all_finite(xp, A):
            raise ValueError("a matrix operator needs finite entries; the matrix has nan or inf")
        super().__init__(tuple(A.shape), A.dtype, xp, B.device(A), tags)
        self.A = A

    def _matvec(self, x):
        return self.A @ x

    def _rmatvec(self, y):
        return self.xp.matrix_transpose(self.A) @ y

    def _matmat(self, X):
        return self.A @ X

    def _rmatmat(self, Y):
        return self.xp.matrix_transpose(self.A) @ Y

    def to_dense(self, chunk_size=None):
        return self.A


class FunctionOperator(LinearOperator):
    """An operator defined by callables ``matvec(x) -> A x`` and ``rmatvec(y) -> Aᵀ y``.

    ``matmat``/``rmatmat`` callables are optional (columns are looped otherwise).  For a
    ``symmetric`` tag ``rmatvec`` may be omitted.  What the callables return is checked by the
    public methods (shape, backend, device; a real floating result is cast to the operator's
    dtype, any other dtype refused), see :class:`LinearOperator`.
    """

    def __init__(self, shape: tuple[int, int], matvec: Callable, rmatvec: Callable | None = None,
                 *, like: Any, matmat: Callable | None = None, rmatmat: Callable | None = None,
                 dtype: Any = None, tags: Any = ()) -> None:
        xp = B.array_namespace(like)
        super().__init__(shape, like.dtype if dtype is None else dtype, xp, B.device(like), tags)
        self._mv, self._rmv, self._mm, self._rmm = matvec, rmatvec, matmat, rmatmat

    def _matvec(self, x):
        return self._mv(x)

    def _rmatvec(self, y):
        if self._rmv is None:
            return super()._rmatvec(y)
        return self._rmv(y)

    def _matmat(self, X):
        return self._mm(X) if self._mm is not None else super()._matmat(X)

    def _rmatmat(self, Y):
        if self._rmm is not None:
            return self._rmm(Y)
        if self._rmv is None and T.SYMMETRIC in self.tags:
            return self._matmat(Y)
        return super()._rmatmat(Y)


class IdentityOperator(LinearOperator):
    """The ``n × n`` identity."""

    def __init__(self, n: int, *, like: Any, dtype: Any = None) -> None:
        xp = B.array_namespace(like)
        super().__init__((n, n), like.dtype if dtype is None else dtype, xp, B.device(like),
                         (T.PD,))

    def _matvec(self, x):
        return x

    _rmatvec = _matmat = _rmatmat = _matvec


class DiagonalOperator(LinearOperator):
    """``diag(d)`` for a 1-D array ``d`` (real floating, finite entries)."""

    def __init__(self, d: Any) -> None:
        xp = B.array_namespace(d)
        if getattr(d, "ndim", None) != 1:
            raise ValueError(f"a diagonal needs a 1-D array, got shape {tuple(d.shape)}")
        B.check_real_float(xp, d, "the diagonal")
        if not B.all_finite(xp, d):
            raise ValueError("a diagonal operator needs finite entries; the diagonal has nan or "
                             "inf")
        n = d.shape[0]
        if bool(xp.all(d > 0)):
            tags = (T.PD,)
        elif bool(xp.all(d >= 0)):
            tags = (T.PSD,)
        else:
            tags = (T.SYMMETRIC,)
        super().__init__((n, n), d.dtype, xp, B.device(d), tags)
        self.d = d

    def _matvec(self, x):
        return self.d * x

    _rmatvec = _matvec

    def _matmat(self, X):
        return self.d[:, None] * X

    _rmatmat = _matmat

    def to_dense(self, chunk_size=None):
        n = self.shape[0]
        return self.xp.eye(n, dtype=self.dtype, device=self.device) * self.d[None, :]


def _joint(a: LinearOperator, b: LinearOperator, what: str) -> tuple[Any, Any]:
    if B.backend_name(a.xp) != B.backend_name(b.xp):
        raise TypeError(f"cannot {what} operators on backends {B.backend_name(a.xp)!r} and "
                        f"{B.backend_name(b.xp)!r}")
    return a.xp, a.xp.result_type(a.dtype, b.dtype)


class SumOperator(LinearOperator):
    """``A + B``."""

    def __init__(self, A: LinearOperator, B_: LinearOperator) -> None:
        if A.shape != B_.shape:
            raise ValueError(f"cannot add operators of shapes {A.shape} and {B_.shape}")
        xp, dtype = _joint(A, B_, "add")
        super().__init__(A.shape, dtype, xp, A.device, T.of_sum(A.tags, B_.tags))
        self.ops = (A, B_)

    def _matvec(self, x):
        return self.ops[0]._matvec(x) + self.ops[1]._matvec(x)

    def _rmatvec(self, y):
        return self.ops[0]._rmatvec(y) + self.ops[1]._rmatvec(y)

    def _matmat(self, X):
        return self.ops[0]._matmat(X) + self.ops[1]._matmat(X)

    def _rmatmat(self, Y):
        return self.ops[0]._rmatmat(Y) + self.ops[1]._rmatmat(Y)


class ProductOperator(LinearOperator):
    """``A B`` (apply ``B`` first)."""

    def __init__(self, A: LinearOperator, B_: LinearOperator) -> None:
        if A.shape[1] != B_.shape[0]:
            raise ValueError(f"cannot compose operators of shapes {A.shape} and {B_.shape}: "
                             f"inner dimensions {A.shape[1]} and {B_.shape[0]} differ")
        xp, dtype = _joint(A, B_, "compose")
        super().__init__((A.shape[0], B_.shape[1]), dtype, xp, A.device)
        self.ops = (A, B_)

    def _matvec(self, x):
        return self.ops[0]._matvec(self.ops[1]._matvec(x))

    def _rmatvec(self, y):
        return self.ops[1]._rmatvec(self.ops[0]._rmatvec(y))

    def _matmat(self, X):
        return self.ops[0]._matmat(self.ops[1]._matmat(X))

    def _rmatmat(self, Y):
        return self.ops[1]._rmatmat(self.ops[0]._rmatmat(Y))


class ScaledOperator(LinearOperator):
    """``c A`` for a real scalar ``c``."""

    def __init__(self, A: LinearOperator, c: float) -> None:
        super().__init__(A.shape, A.dtype, A.xp, A.device, T.of_scaled(A.tags, c))
        self.op, self.c = A, c

    def _matvec(self, x):
        return self.c * self.op._matvec(x)

    def _rmatvec(self, y):
        return self.c * self.op._rmatvec(y)

    def _matmat(self, X):
        return self.c * self.op._matmat(X)

    def _rmatmat(self, Y):
        return self.c * self.op._rmatmat(Y)


class AdjointOperator(LinearOperator):
    """``Aᵀ``; the adjoint of an adjoint is the original operator."""

    def __init__(self, A: LinearOperator) -> None:
        m, n = A.shape
        super().__init__((n, m), A.dtype, A.xp, A.device, A.tags)
        self.op = A

    @property
    def T(self) -> LinearOperator:
        return self.op

    H = T

    def _matvec(self, x):
        return self.op._rmatvec(x)

    def _rmatvec(self, y):
        return self.op._matvec(y)

    def _matmat(self, X):
        return self.op._rmatmat(X)

    def _rmatmat(self, Y):
        return self.op._matmat(Y)


class VStackOperator(LinearOperator):
    """Vertically stacked blocks ``[A_1; A_2; ...]`` sharing ``n`` columns.

    The per-sample Jacobians of a batch form such a stack: rows are sample × output.
    """

    def __init__(self, blocks: list[LinearOperator]) -> None:
        blocks = [aslinearoperator(b) for b in blocks]
        if not blocks:
            raise ValueError("a stacked operator needs at least one block")
        n = blocks[0].shape[1]
        bad = [b.shape for b in blocks if b.shape[1] != n]
        if bad:
            raise ValueError(f"stacked blocks must share the column count {n}; got shapes {bad}")
        xp = blocks[0].xp
        dtype = xp.result_type(*[b.dtype for b in blocks])
        super().__init__((sum(b.shape[0] for b in blocks), n), dtype, xp, blocks[0].device)
        self.blocks = blocks
        self._offsets = [0]
        for b in blocks:
            self._offsets.append(self._offsets[-1] + b.shape[0])

    def _matvec(self, x):
        return self.xp.concat([b._matvec(x) for b in self.blocks])

    def _matmat(self, X):
        return self.xp.concat([b._matmat(X) for b in self.blocks], axis=0)

    def _rmatvec(self, y):
        o = self._offsets
        out = self.blocks[0]._rmatvec(y[o[0]:o[1]])
        for i, b in enumerate(self.blocks[1:], start=1):
            out = out + b._rmatvec(y[o[i]:o[i + 1]])
        return out

    def _rmatmat(self, Y):
        o = self._offsets
        out = self.blocks[0]._rmatmat(Y[o[0]:o[1], :])
        for i, b in enumerate(self.blocks[1:], start=1):
            out = out + b._rmatmat(Y[o[i]:o[i + 1], :])
        return out


def aslinearoperator(A: Any, tags: Any = ()) -> LinearOperator:
    """``A`` as a :class:`LinearOperator`.

    Accepts a newtonkit operator (returned as is), a 2-D array of any supported backend (a
    :class:`MatrixOperator`), a ``scipy.sparse.linalg.LinearOperator`` or a SciPy sparse matrix
    (wrapped on the NumPy backend; this is how pylops and curvlinops operators come in).
    """
    if isinstance(A, LinearOperator):
        return A
    mod = type(A).__module__
    if mod.startswith("scipy.sparse") or hasattr(A, "rmatvec") and hasattr(A, "shape"):
        import numpy as np
        import scipy.sparse.linalg as spla

        S = spla.aslinearoperator(A)
        dtype = np.dtype(S.dtype) if S.dtype is not None else np.dtype(np.float64)
        if dtype.kind != "f":
            raise TypeError(f"the scipy operator has dtype {dtype}; newtonkit needs real float32 "
                            f"or float64")
        like = np.zeros(1, dtype=dtype)
        return FunctionOperator(S.shape, S.matvec, S.rmatvec, like=like, matmat=S.matmat,
                                rmatmat=S.rmatmat, tags=tags)
    if hasattr(A, "ndim"):
        return MatrixOperator(A, tags=tags)
    raise TypeError(f"cannot make a linear operator from {type(A).__name__}; pass an array, a "
                    f"newtonkit or scipy LinearOperator")
