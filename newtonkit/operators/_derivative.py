"""Operators built from derivatives: Gram, Jacobian and Hessian."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _backend as B
from . import _tags as T
from ._base import LinearOperator
from ._kinds import MatrixOperator, aslinearoperator


class GramOperator(LinearOperator):
    """``JᵀJ + μI`` (``side="normal"``, ``n × n``) or ``JJᵀ + μI`` (``side="outer"``, ``m × m``).

    Applied as ``Jᵀ(Jx) + μx`` without forming ``J``; ``to_dense`` forms the product directly
    when ``J`` is dense.  Tagged symmetric positive semi-definite (definite when ``μ > 0``).
    """

    def __init__(self, J: Any, damping: float = 0.0, side: str = "normal") -> None:
        J = aslinearoperator(J)
        if side not in ("normal", "outer"):
            raise ValueError(f"side must be 'normal' (JᵀJ) or 'outer' (JJᵀ), got {side!r}")
        mu = float(damping)
        if not mu >= 0:
            raise ValueError(f"damping μ must be a finite number >= 0, got {damping!r}")
        n = J.shape[1] if side == "normal" else J.shape[0]
        super().__init__((n, n), J.dtype, J.xp, J.device, (T.PD,) if mu > 0 else (T.PSD,))
        self.J, self.damping, self.side = J, mu, side

    def _matvec(self, x):
        J = self.J
        y = J._rmatvec(J._matvec(x)) if self.side == "normal" else J._matvec(J._rmatvec(x))
        return y + self.damping * x if self.damping else y

    _rmatvec = _matvec

    def _matmat(self, X):
        J = self.J
        Y = J._rmatmat(J._matmat(X)) if self.side == "normal" else J._matmat(J._rmatmat(X))
        return Y + self.damping * X if self.damping else Y

    _rmatmat = _matmat

    def to_dense(self, chunk_size=None):
        if not isinstance(self.J, MatrixOperator):
            return super().to_dense(chunk_size)
        xp, A = self.xp, self.J.A
        At = xp.matrix_transpose(A)
        G = At @ A if self.side == "normal" else A @ At
        if self.damping:
            G = G + self.damping * xp.eye(self.shape[0], dtype=self.dtype, device=self.device)
        return G


class JacobianOperator(LinearOperator):
    """The Jacobian ``J = ∂F/∂x`` of a forward model ``F`` at a point ``x``.

    ``model`` is any object with ``__call__(x) -> y`` and ``jvp(x, v) -> J v``,
    ``vjp(x, w) -> Jᵀ w`` and optionally ``jacobian(x) -> J`` (2-D, ``y.size × x.size``).
    ``x`` and ``y`` may have any shape; the operator acts on flattened vectors.
    """

    def __init__(self, model: Any, x: Any, y: Any = None) -> None:
        xp = B.array_namespace(x)
        B.check_real_float(xp, x, "x")
        if y is None:
            y = model(x)
        for name in ("jvp", "vjp"):
            if not callable(getattr(model, name, None)):
                raise TypeError(f"the forward model {type(model).__name__} has no {name}(x, v); "
                                f"a Jacobian operator needs jvp and vjp")
        self.model, self.x, self.x_shape, self.y_shape = model, x, tuple(x.shape), tuple(y.shape)
        m = 1
        for s in self.y_shape:
            m *= s
        n = 1
        for s in self.x_shape:
            n *= s
        super().__init__((m, n), x.dtype, xp, B.device(x))

    def _matvec(self, v):
        out = self.model.jvp(self.x, self.xp.reshape(v, self.x_shape))
        return self.xp.reshape(out, (-1,))

    def _rmatvec(self, w):
        out = self.model.vjp(self.x, self.xp.reshape(w, self.y_shape))
        return self.xp.reshape(out, (-1,))

    def to_dense(self, chunk_size=None):
        jac = getattr(self.model, "jacobian", None)
        if callable(jac):
            return self.xp.reshape(jac(self.x), self.shape)
        return super().to_dense(chunk_size)


class HessianOperator(LinearOperator):
    """A symmetric Hessian ``H`` from a Hessian-vector product ``hvp(v) -> H v`` or a matrix.

    Parameters
    ----------
    hvp : callable or array
        ``hvp(v)`` for ``v`` of shape ``(n,)``, or the dense symmetric ``(n, n)`` matrix; one
        that is not symmetric up to rounding (``‖H − Hᵀ‖_F > 2000·√n·ε·‖H‖_F``) raises
        ``ValueError``.
    n : int, optional
        Dimension (needed with a callable).
    like : array, optional
        An array of the backend, dtype and device of ``v`` (needed with a callable).
    hvp_batch : callable, optional
        ``hvp_batch(V) -> H V`` for ``V`` of shape ``(n, k)``; used by ``matmat`` and
        ``to_dense`` when given (for example a vmapped or batched-propagator product).
    """

    def __init__(self, hvp: Any, n: int | None = None, *, like: Any = None,
                 hvp_batch: Callable | None = None, tags: Any = ()) -> None:
        tags = set(T.normalize(tags, (1, 1))) | {T.SYMMETRIC}
        if callable(hvp):
            if n is None or like is None:
                raise ValueError("a Hessian from an hvp callable needs its dimension n and like=")
            xp = B.array_namespace(like)
            super().__init__((n, n), like.dtype, xp, B.device(like), tags)
            self._hvp, self._dense = hvp, None
        else:
            xp = B.array_namespace(hvp)
            if hvp.ndim != 2 or hvp.shape[0] != hvp.shape[1]:
                raise ValueError(f"a dense Hessian must be square, got shape {tuple(hvp.shape)}")
            B.check_real_float(xp, hvp, "the Hessian")
            T.check_symmetric(xp, hvp, "the dense Hessian")
            super().__init__(tuple(hvp.shape), hvp.dtype, xp, B.device(hvp), tags)
            self._hvp, self._dense = None, hvp
        self._hvp_batch = hvp_batch

    def _matvec(self, v):
        return self._dense @ v if self._dense is not None else self._hvp(v)

    _rmatvec = _matvec

    def _matmat(self, V):
        if self._dense is not None:
            return self._dense @ V
        if self._hvp_batch is not None:
            return self._hvp_batch(V)
        return super()._matmat(V)

    _rmatmat = _matmat

    def to_dense(self, chunk_size=None):
        if self._dense is not None:
            return self._dense
        H = super().to_dense(chunk_size)
        # Symmetrise: products from autodiff are symmetric only to rounding.
        return 0.5 * (H + self.xp.matrix_transpose(H))
