"""The abstract linear operator.

A :class:`LinearOperator` ``A`` of shape ``(m, n)`` maps vectors of length ``n`` to vectors of
length ``m`` on one array backend.  Public methods check their inputs and call the private
``_matvec``/``_rmatvec``/``_matmat``/``_rmatmat`` that subclasses implement (PyLops style), so a
subclass only computes.  The kinds that the operator's own algebra builds (``A.T``, ``A @ B``,
``A + B``, ``c * A``) live here too, so that this module imports no other.  Structure tags (see
:mod:`newtonkit.operators._tags`) tell solvers what they may assume without checking.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _backend as B
from . import _tags as tags_


class LinearOperator:
    """A real linear map ``A: R^n -> R^m`` on one array backend.

    Parameters
    ----------
    shape : tuple of int
        ``(m, n)``.
    dtype : dtype
        Real floating dtype of the operator's action (float32 or float64).
    xp : namespace
        The array namespace (from :func:`newtonkit._backend.array_namespace`).
    device : optional
        Device of the arrays the operator produces.
    tags : iterable of str
        Structure tags: ``"symmetric"``, ``"positive_semidefinite"``, ``"positive_definite"``.

    Notes
    -----
    The public ``matvec``/``rmatvec``/``matmat``/``rmatmat`` check the shape of their input and
    what the computation returns: an array of the operator's backend (``TypeError`` otherwise),
    of the expected shape (``ValueError``), on the operator's device (``ValueError``), with a real
    floating dtype (``TypeError`` otherwise), cast to the operator's dtype when it differs.  The
    checks read shapes and types only, never the data.

    ``A @ B`` composes two operators; ``A @ x`` applies ``A`` to an array (1-D: ``matvec``,
    2-D: ``matmat``); ``A + B``, ``c * A``, ``-A``, ``A - B`` build sums and scaled operators;
    ``A.T`` (also ``A.H``; the operators are real) is the adjoint.
    """

    def __init__(self, shape: tuple[int, int], dtype: Any, xp: Any, device: Any = None,
                 tags: Any = ()) -> None:
        m, n = (int(s) for s in shape)
        if m < 1 or n < 1:
            raise ValueError(f"an operator needs a non-empty shape, got {(m, n)}")
        if not xp.isdtype(dtype, "real floating"):
            raise TypeError(f"operator dtype must be real floating (float32/float64), got {dtype}")
        self.shape = (m, n)
        self.dtype = dtype
        self.xp = xp
        self.device = device
        self.tags = tags_.normalize(tags, self.shape)

    # -- subclass interface ------------------------------------------------------------------
    def _matvec(self, x: Any) -> Any:
        return self._matmat(x[:, None])[:, 0]

    def _rmatvec(self, y: Any) -> Any:
        if "symmetric" in self.tags:
            return self._matvec(y)
        raise NotImplementedError(f"{type(self).__name__} does not define its adjoint (rmatvec)")

    def _matmat(self, X: Any) -> Any:
        if type(self)._matvec is LinearOperator._matvec:
            raise NotImplementedError(f"{type(self).__name__} defines neither _matvec nor _matmat")
        cols = [self._matvec(X[:, j]) for j in range(X.shape[1])]
        return self.xp.stack(cols, axis=1)

    def _rmatmat(self, Y: Any) -> Any:
        cols = [self._rmatvec(Y[:, j]) for j in range(Y.shape[1])]
        return self.xp.stack(cols, axis=1)

    # -- public, checked ---------------------------------------------------------------------
    def _check(self, x: Any, length: int, ndim: int, what: str) -> None:
        shape = tuple(getattr(x, "shape", ()))
        if len(shape) != ndim or shape[0] != length:
            want = f"({length},)" if ndim == 1 else f"({length}, k)"
            raise ValueError(
                f"{what} of {type(self).__name__} with shape {self.shape} needs an array of shape "
                f"{want}, got shape {shape}"
            )

    def _result(self, out: Any, shape: tuple[int, ...], what: str) -> Any:
        """``out`` after checking that it is what ``what`` must return (shape and types only);
        a real floating dtype other than the operator's is cast to it."""
        backend = B.backend_name(self.xp)
        is_array = out is not None and hasattr(out, "shape") and hasattr(out, "dtype")

        def wrong(exc: type) -> Exception:
            got = f"a {type(out).__module__}.{type(out).__name__}"
            if is_array:
                got += (f" of shape {tuple(out.shape)}, dtype {out.dtype}, device "
                        f"{getattr(out, 'device', None)}")
            where = "" if self.device is None else f" on device {self.device}"
            return exc(f"{what} of {type(self).__name__} with shape {self.shape} returned {got}; "
                       f"expected a {backend} array of shape {shape} and dtype {self.dtype}{where}")

        try:
            same_backend = is_array and B.backend_name(B.array_namespace(out)) == backend
        except TypeError:
            same_backend = False
        if not same_backend:
            raise wrong(TypeError)
        if tuple(out.shape) != shape:
            raise wrong(ValueError)
        # NumPy has one device (and reading it costs more than the other checks together)
        if backend != "numpy" and self.device is not None and B.device(out) != self.device:
            raise wrong(ValueError)
        if out.dtype != self.dtype:
            if not self.xp.isdtype(out.dtype, "real floating"):
                raise wrong(TypeError)
            out = self.xp.astype(out, self.dtype)
        return out

    def matvec(self, x: Any) -> Any:
        """``A x`` for ``x`` of shape ``(n,)``."""
        self._check(x, self.shape[1], 1, "matvec")
        return self._result(self._matvec(x), (self.shape[0],), "matvec")

    def rmatvec(self, y: Any) -> Any:
        """``Aᵀ y`` for ``y`` of shape ``(m,)``."""
        self._check(y, self.shape[0], 1, "rmatvec")
        return self._result(self._rmatvec(y), (self.shape[1],), "rmatvec")

    def matmat(self, X: Any) -> Any:
        """``A X`` for ``X`` of shape ``(n, k)``."""
        self._check(X, self.shape[1], 2, "matmat")
        return self._result(self._matmat(X), (self.shape[0], X.shape[1]), "matmat")

    def rmatmat(self, Y: Any) -> Any:
        """``Aᵀ Y`` for ``Y`` of shape ``(m, k)``."""
        self._check(Y, self.shape[0], 2, "rmatmat")
        return self._result(self._rmatmat(Y), (self.shape[1], Y.shape[1]), "rmatmat")

    def to_dense(self, chunk_size: int | None = None) -> Any:
        """The ``(m, n)`` matrix from ``matmat`` on identity columns, ``chunk_size`` at a time."""
        xp = self.xp
        n = self.shape[1]
        k = n if chunk_size is None else max(1, int(chunk_size))
        blocks = []
        for start in range(0, n, k):
            stop = min(n, start + k)
            E = xp.eye(n, stop - start, k=-start, dtype=self.dtype, device=self.device)
            blocks.append(self._result(self._matmat(E), (self.shape[0], stop - start),
                                       "to_dense (matmat on identity columns)"))
        return blocks[0] if len(blocks) == 1 else xp.concat(blocks, axis=1)

    # -- algebra -----------------------------------------------------------------------------
    @property
    def T(self) -> LinearOperator:
        """The adjoint (transpose) operator."""
        return AdjointOperator(self)

    H = T

    def __matmul__(self, other: Any) -> Any:
        if isinstance(other, LinearOperator):
            return ProductOperator(self, other)
        ndim = getattr(other, "ndim", None)
        if ndim == 1:
            return self.matvec(other)
        if ndim == 2:
            return self.matmat(other)
        return NotImplemented

    def __add__(self, other: Any) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return SumOperator(self, other)

    def __mul__(self, c: Any) -> LinearOperator:
        if not isinstance(c, (int, float)):
            return NotImplemented
        if not math.isfinite(c):
            raise ValueError(f"an operator's scale must be finite, got {c!r}")
        return ScaledOperator(self, float(c))

    __rmul__ = __mul__

    def __neg__(self) -> LinearOperator:
        return self * -1.0

    def __sub__(self, other: Any) -> LinearOperator:
        if not isinstance(other, LinearOperator):
            return NotImplemented
        return self + (-other)

    def to_scipy(self) -> Any:
        """This operator as a ``scipy.sparse.linalg.LinearOperator`` (NumPy backend only)."""
        if B.backend_name(self.xp) != "numpy":
            raise TypeError(
                f"scipy operators act on NumPy arrays; this operator is on "
                f"{B.backend_name(self.xp)!r} (no silent host copies)"
            )
        import scipy.sparse.linalg as spla

        return spla.LinearOperator(self.shape, matvec=self._matvec, rmatvec=self._rmatvec,
                                   matmat=self._matmat, rmatmat=self._rmatmat, dtype=self.dtype)

    def __repr__(self) -> str:
        tag = f", tags={sorted(self.tags)}" if self.tags else ""
        return (f"<{self.shape[0]}x{self.shape[1]} {type(self).__name__} "
                f"{B.backend_name(self.xp)}:{self.dtype}{tag}>")


# -- the algebra: kinds the operator's own methods (T, @, +, *) build ------------------------


def _joint(a: LinearOperator, b: LinearOperator, what: str) -> tuple[Any, Any]:
    if B.backend_name(a.xp) != B.backend_name(b.xp):
        raise TypeError(f"cannot {what} operators on backends {B.backend_name(a.xp)!r} and "
                        f"{B.backend_name(b.xp)!r}")
    return a.xp, a.xp.result_type(a.dtype, b.dtype)


def _as(op: LinearOperator, v: Any) -> Any:
    """``v`` in ``op``'s dtype: each child of a mixed-precision sum or product computes in its
    own (torch does not promote a float32 matrix times a float64 vector)."""
    return v if v.dtype == op.dtype else op.xp.astype(v, op.dtype)


class SumOperator(LinearOperator):
    """``A + B`` (children of two dtypes: each in its own, the sum in the wider)."""

    def __init__(self, A: LinearOperator, B_: LinearOperator) -> None:
        if A.shape != B_.shape:
            raise ValueError(f"cannot add operators of shapes {A.shape} and {B_.shape}")
        xp, dtype = _joint(A, B_, "add")
        super().__init__(A.shape, dtype, xp, A.device, tags_.of_sum(A.tags, B_.tags))
        self.ops = (A, B_)

    def _each(self, name: str, v: Any) -> Any:
        a, b = (getattr(op, name)(_as(op, v)) for op in self.ops)
        return _as(self, a) + _as(self, b)

    def _matvec(self, x):
        return self._each("_matvec", x)

    def _rmatvec(self, y):
        return self._each("_rmatvec", y)

    def _matmat(self, X):
        return self._each("_matmat", X)

    def _rmatmat(self, Y):
        return self._each("_rmatmat", Y)


class ProductOperator(LinearOperator):
    """``A B`` (apply ``B`` first; children of two dtypes: each in its own, the result in the
    wider)."""

    def __init__(self, A: LinearOperator, B_: LinearOperator) -> None:
        if A.shape[1] != B_.shape[0]:
            raise ValueError(f"cannot compose operators of shapes {A.shape} and {B_.shape}: "
                             f"inner dimensions {A.shape[1]} and {B_.shape[0]} differ")
        xp, dtype = _joint(A, B_, "compose")
        super().__init__((A.shape[0], B_.shape[1]), dtype, xp, A.device)
        self.ops = (A, B_)

    def _chain(self, name: str, v: Any, order: tuple) -> Any:
        for op in order:
            v = getattr(op, name)(_as(op, v))
        return _as(self, v)

    def _matvec(self, x):
        return self._chain("_matvec", x, self.ops[::-1])

    def _rmatvec(self, y):
        return self._chain("_rmatvec", y, self.ops)

    def _matmat(self, X):
        return self._chain("_matmat", X, self.ops[::-1])

    def _rmatmat(self, Y):
        return self._chain("_rmatmat", Y, self.ops)


class ScaledOperator(LinearOperator):
    """``c A`` for a real scalar ``c``."""

    def __init__(self, A: LinearOperator, c: float) -> None:
        super().__init__(A.shape, A.dtype, A.xp, A.device, tags_.of_scaled(A.tags, c))
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
