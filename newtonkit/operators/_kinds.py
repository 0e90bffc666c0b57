"""Concrete operators: dense, function-defined, identity, diagonal, stacked blocks."""

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
