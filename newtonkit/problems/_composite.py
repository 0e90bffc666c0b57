r"""Forward models, losses and their composite :math:`f(x) = L(F(x))`.

A *forward model* ``F`` maps parameters ``x`` to outputs ``y`` (any shapes; for a batch, the
stacked per-sample outputs).  A *loss* ``L`` maps ``y`` to a scalar and gives
:math:`\partial L/\partial y`.  Gauss-Newton and Levenberg-Marquardt use the generalised
Gauss-Newton model :math:`\nabla^2 f \approx J^T \nabla^2_y L\, J` with :math:`J = \partial F /
\partial x`; HIG uses :math:`J` and :math:`\partial L/\partial y` directly.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .. import _backend as B

__all__ = ["ForwardModel", "Loss", "L2Loss", "Composite"]


@runtime_checkable
class ForwardModel(Protocol):
    """``F(x) -> y``; where it can, also ``jvp(x, v) = J v``, ``vjp(x, w) = Jᵀ w`` and
    ``jacobian(x)`` (the ``(y.size, x.size)`` matrix).  ``x``, ``v`` have the parameters' shape,
    ``y``, ``w`` the outputs' shape."""

    def __call__(self, x: Any) -> Any: ...


@runtime_checkable
class Loss(Protocol):
    """A loss on model outputs: ``value(y)`` (a scalar), ``grad(y)`` (:math:`\\partial L/\\partial
    y`, shape of ``y``) and, for (generalised) Gauss-Newton, ``hvp(y, v)`` or ``hessian(y)``
    (or ``hessian_diag(y)`` when the Hessian in ``y`` is diagonal)."""

    def value(self, y: Any) -> Any: ...

    def grad(self, y: Any) -> Any: ...


class L2Loss:
    r"""Weighted squared error :math:`L(y) = \tfrac12 \sum_i w_i (y_i - t_i)^2`.

    Parameters
    ----------
    target : array, optional
        :math:`t` (broadcastable to ``y``); zero when omitted.
    weights : array or float, optional
        :math:`w \ge 0` (broadcastable to ``y``); one when omitted.  A zero weight ignores
        that output.

    Notes
    -----
    :math:`\partial L/\partial y = w (y - t)` and :math:`\nabla^2_y L = \mathrm{diag}(w)`, so the
    Gauss-Newton model is exact in ``y`` and ``Composite(model, L2Loss(t, w))`` solved with
    ``"lm"`` is weighted nonlinear least squares.
    """

    def __init__(self, target: Any = None, weights: Any = None) -> None:
        if weights is not None and not hasattr(weights, "shape"):
            weights = float(weights)
            if not weights >= 0:
                raise ValueError(f"weights must be >= 0, got {weights}")
        elif weights is not None:
            xp = B.array_namespace(weights)
            if not bool(xp.all(weights >= 0)):
                raise ValueError("weights must all be >= 0")
        self.target, self.weights = target, weights

    def _diff(self, y: Any) -> Any:
        return y if self.target is None else y - self.target

    def value(self, y: Any) -> Any:
        """:math:`\\tfrac12 \\sum w (y - t)^2` as a 0-d array."""
        xp = B.array_namespace(y)
        d = self._diff(y)
        wd = d if self.weights is None else self.weights * d
        return 0.5 * xp.sum(wd * d)

    def grad(self, y: Any) -> Any:
        """:math:`w (y - t)`."""
        d = self._diff(y)
        return d if self.weights is None else self.weights * d

    def hessian_diag(self, y: Any) -> Any:
        """The diagonal :math:`w` of :math:`\\nabla^2_y L`, shaped like ``y``."""
        xp = B.array_namespace(y)
        ones = xp.ones_like(y)
        return ones if self.weights is None else self.weights * ones

    def hvp(self, y: Any, v: Any) -> Any:
        """:math:`\\mathrm{diag}(w)\\, v`."""
        return v if self.weights is None else self.weights * v


class Composite:
    r"""The objective :math:`f(x) = L(F(x))` of a forward model ``F`` and a loss ``L``.

    Pass it as ``fun`` to :func:`newtonkit.minimize`.  ``"gauss-newton"``, ``"lm"`` and
    ``"hig"`` use the model's Jacobian (``jacobian``, or ``jvp``/``vjp``, or the backend's
    autodiff provider, or finite differences with a warning) and the loss's derivatives in
    ``y``; ``"newton"`` treats it as a scalar objective (``f(x)`` and
    :math:`\nabla f = J^T \partial L/\partial y`).

    Parameters
    ----------
    model : ForwardModel
        Callable ``model(x) -> y``; optional ``jvp``, ``vjp``, ``jacobian``.
    loss : Loss
        Object with ``value(y)`` and ``grad(y)``; optional ``hessian_diag``, ``hessian`` or
        ``hvp`` for Gauss-Newton with a non-quadratic loss.
    """

    def __init__(self, model: Any, loss: Any) -> None:
        if not callable(model):
            raise TypeError(f"the forward model must be callable (model(x) -> y), got "
                            f"{type(model).__name__}")
        missing = [m for m in ("value", "grad") if not callable(getattr(loss, m, None))]
        if missing:
            raise TypeError(f"the loss {type(loss).__name__} lacks {', '.join(missing)}; a loss "
                            f"needs value(y) and grad(y) (see newtonkit.L2Loss)")
        self.model, self.loss = model, loss

    def __call__(self, x: Any) -> Any:
        """:math:`L(F(x))`."""
        return self.loss.value(self.model(x))

    def __repr__(self) -> str:
        return f"Composite({type(self.model).__name__}, {type(self.loss).__name__})"
