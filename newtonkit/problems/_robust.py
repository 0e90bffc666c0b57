r"""Robust losses on residuals, as SciPy's ``least_squares(loss=..., f_scale=...)``.

A robust loss replaces :math:`\tfrac12\sum_i r_i^2` by

.. math::  L(r) = \tfrac12\, C^2 \sum_i \rho\!\left(z_i\right),\qquad z_i = (r_i / C)^2,

with the scale ``C = f_scale`` and :math:`\rho(z) \approx z` near 0 (so small residuals count
as in least squares and large ones less).  The built-in :math:`\rho` (SciPy's):

==============  ==========================================  =======================================
``"linear"``    :math:`z`                                    ordinary least squares
``"soft_l1"``   :math:`2(\sqrt{1+z} - 1)`                    smooth approximation of l1
``"huber"``     :math:`z` for :math:`z \le 1`, else          l1 beyond :math:`|r| = C`
                :math:`2\sqrt z - 1`
``"cauchy"``    :math:`\log(1+z)`                            strongly down-weights outliers
``"arctan"``    :math:`\arctan z`                            caps a single residual's cost
==============  ==========================================  =======================================

Derivatives in :math:`r` (:math:`\rho' = d\rho/dz`, :math:`\rho'' = d^2\rho/dz^2` at
:math:`z_i`):

.. math::  \partial L/\partial r_i = \rho'\, r_i,\qquad
           \partial^2 L/\partial r_i^2 = \rho' + 2\rho'' z_i .

:class:`RobustLoss` is a newtonkit loss (``value``, ``grad``, ``hessian_diag``) for
:class:`~newtonkit.Composite`: Gauss-Newton and Levenberg-Marquardt then take
:math:`\tilde J = \mathrm{diag}(\sqrt{w})J`, :math:`\tilde r = \rho' r/\sqrt{w}`, so
:math:`\tilde J^T\tilde r = J^T \rho' r` is the exact gradient and :math:`\tilde J^T\tilde J`
the Gauss-Newton Hessian with curvature weights

.. math::  w_i = \max(\rho' + 2\rho'' z_i,\ \delta\rho') \quad (\delta > 0),\qquad
           w_i = \max(\rho' + 2\rho'' z_i,\ \varepsilon) \quad (\delta = 0).

``δ = 0`` is SciPy's model (Triggs et al. 2000, as ``trf``/``dogbox``: clamp at ε only).
newtonkit's default ``δ = 0.1`` keeps at least a tenth of the IRLS curvature :math:`\rho'` on
rows where the loss is flat or concave (outliers: :math:`w = 0` exactly for ``huber`` beyond
``C``, :math:`w < 0` for ``cauchy``, ``arctan``): with SciPy's clamp those rows get
:math:`\tilde r_i = \rho' r_i/\sqrt{\varepsilon}`, which makes MINPACK's scaled gradient test
(:math:`\|\tilde r\|` in its denominator) stop falsely and gives Gauss-Newton steps that
overshoot; with δ = 0.1 lm and gn reach SciPy's ``trf`` solution on every built-in loss
(``tests/test_least_squares.py``).  The cost and its minimisers do not depend on δ.

With δ > 0 the floor is δρ′ alone, relative to the row's own scale (ε only where a user's ρ′
is negative); a row with ρ′ = 0 (a flat part of the loss, or ρ′ underflowed far out) has
weight 0 and carries nothing.  An absolute ε beside it rules wherever ρ′ < ε/δ, on far outliers
(``soft_l1`` and ``huber`` beyond |r| ≈ 5e14·C, ``cauchy`` 2e7·C, ``arctan`` 5e3·C in
float64), and there gives those rows up to ε/ρ′ times their IRLS curvature: from a start with
residuals up to 6e60 (Osborne 1, ``soft_l1``, C = 0.1), :math:`\rho' \approx 10^{-62}`, the
Gauss-Newton step was 1e-49 of x, and LM's ftol and xtol tests both held at x0 (cost 6e59,
gradient 2e62).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from .. import _backend as B

__all__ = ["RobustLoss", "LOSSES"]


def _linear(xp: Any, z: Any) -> tuple[Any, Any, Any]:
    return z, xp.ones_like(z), xp.zeros_like(z)


def _soft_l1(xp: Any, z: Any) -> tuple[Any, Any, Any]:
    t = 1.0 + z
    s = xp.sqrt(t)
    # 2(√(1+z) − 1) as 2z/(√(1+z) + 1) for z ≤ 1: no cancellation for small z (SciPy's form
    # loses all digits below z ≈ ε, so a huge f_scale would give a zero cost there); above,
    # SciPy's form, which stays inf at z = inf (an overflowed trial point) instead of inf/inf
    small = z <= 1.0
    zs = xp.where(small, z, xp.zeros_like(z))  # (0/(s + 1) = 0 in the other lanes, inf's too)
    rho = xp.where(small, 2.0 * zs / (s + 1.0), 2.0 * (s - 1.0))
    return rho, 1.0 / s, -0.5 / (t * s)


def _huber(xp: Any, z: Any) -> tuple[Any, Any, Any]:
    inner = z <= 1.0
    zs = xp.where(inner, xp.ones_like(z), z)  # the outer branch never sees z ≤ 1 (no 1/0)
    s = xp.sqrt(zs)
    return (xp.where(inner, z, 2.0 * s - 1.0), xp.where(inner, xp.ones_like(z), 1.0 / s),
            xp.where(inner, xp.zeros_like(z), -0.5 / (zs * s)))


def _cauchy(xp: Any, z: Any) -> tuple[Any, Any, Any]:
    t = 1.0 + z
    return xp.log1p(z), 1.0 / t, -1.0 / (t * t)


def _arctan(xp: Any, z: Any) -> tuple[Any, Any, Any]:
    # beyond z = max^(1/4) the square of t = 1 + z² overflows (a far trial point): there
    # ρ′ = 1/(1+z²) and ρ″ = −2z/(1+z²)² equal 1/z² and −2/z³ to working precision
    big = z > float(xp.finfo(z.dtype).max) ** 0.25
    zs = xp.where(big, xp.ones_like(z), z)
    t = 1.0 + zs * zs
    inv = xp.where(big, 1.0 / xp.where(big, z, xp.ones_like(z)), xp.zeros_like(z))
    return (xp.atan(z), xp.where(big, inv * inv, 1.0 / t),
            xp.where(big, -2.0 * inv * inv * inv, -2.0 * zs / (t * t)))


#: The built-in ρ(z) → (ρ, ρ′, ρ″), SciPy's definitions.
LOSSES: dict[str, Callable] = {"linear": _linear, "soft_l1": _soft_l1, "huber": _huber,
                               "cauchy": _cauchy, "arctan": _arctan}


def check_f_scale(f_scale: Any) -> float:
    """``f_scale`` as a positive finite float (else ``ValueError`` naming it)."""
    try:
        c = float(f_scale)
    except (TypeError, ValueError):
        raise TypeError(f"f_scale must be a positive number, got {type(f_scale).__name__}"
                        ) from None
    if not (c > 0 and c < float("inf")):
        raise ValueError(f"f_scale must be positive and finite, got {f_scale!r}")
    return c


class RobustLoss:
    r"""The robust loss :math:`L(r) = \tfrac12 C^2 \sum_i \rho((r_i/C)^2)` (module docstring).

    Parameters
    ----------
    loss : str or callable
        ``"linear"``, ``"soft_l1"``, ``"huber"``, ``"cauchy"``, ``"arctan"``, or a callable
        ``rho(z)`` returning ``(ρ, ρ′, ρ″)`` at ``z`` (a sequence of three arrays shaped like
        ``z``, or one array of shape ``(3, m)``, as SciPy's), on ``z``'s backend.
    f_scale : float
        :math:`C > 0`, the residual size beyond which a residual counts as an outlier.
    floor : float
        δ ≥ 0 in the curvature weights ``max(ρ′ + 2ρ″z, δρ′)`` (module docstring); 0 is
        SciPy's Triggs model, ``max(ρ′ + 2ρ″z, ε)``.

    Notes
    -----
    ``value(r)`` is SciPy's ``cost``; ``grad(r) = ρ′ r``; ``hessian_diag(r) = max(ρ′ + 2ρ″z,
    δρ′)``, the diagonal Hessian in ``r`` where it is at least δρ′ (for δ = 0 SciPy's Triggs
    weights, ``max(ρ′ + 2ρ″z, ε)``).  ``rho(r)`` gives ``z`` and ``(ρ, ρ′, ρ″)``.
    """

    def __init__(self, loss: str | Callable = "soft_l1", f_scale: float = 1.0,
                 floor: float = 0.1) -> None:
        if isinstance(loss, str):
            if loss not in LOSSES:
                raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable rho(z) -> "
                                 f"(rho, rho', rho''), got {loss!r}")
            self._rho, self.name = LOSSES[loss], loss
        elif callable(loss):
            self._rho, self.name = None, getattr(loss, "__name__", "callable")
            self._user = loss
        else:
            raise TypeError(f"loss must be a string or a callable, got {type(loss).__name__}")
        self.f_scale = check_f_scale(f_scale)
        self.floor = float(floor)
        if not (self.floor >= 0 and self.floor < float("inf")):
            raise ValueError(f"floor must be a non-negative finite number, got {floor!r}")

    def rho(self, r: Any) -> tuple[Any, tuple[Any, Any, Any]]:
        """``z = (r/C)²`` and ``(ρ, ρ′, ρ″)`` at ``z`` (each shaped like ``r``)."""
        xp = B.array_namespace(r)
        # A far trial point (|r| > 1e154·C) overflows z or a product inside ρ to inf, where each
        # part takes its limit (ρ → inf, ρ′ and ρ″ → 0): NumPy's warning there is no error.
        with np.errstate(over="ignore"):
            z = (r / self.f_scale) ** 2
            if self._rho is not None:
                return z, self._rho(xp, z)
        out = self._user(z)
        try:
            parts = tuple(out[k] for k in range(3))
            ok = (len(out) == 3
                  and all(tuple(getattr(p, "shape", ())) == tuple(z.shape) for p in parts))
        except (TypeError, IndexError, KeyError):
            ok = False
        if not ok:
            shape = getattr(out, "shape", None)
            raise ValueError(f"the loss callable must return (rho, rho', rho'') at z, three "
                             f"arrays of shape {tuple(z.shape)} (or one of shape "
                             f"{(3,) + tuple(z.shape)}); got "
                             f"{type(out).__name__ if shape is None else tuple(shape)}")
        return z, tuple(xp.asarray(p, dtype=r.dtype) for p in parts)

    def value(self, r: Any, axis: int | None = None) -> Any:
        """:math:`\\tfrac12 C^2 \\sum \\rho(z)` (0-d array); with ``axis`` summed along it only
        (``axis=-1`` on ``(B, m)`` residuals: one cost per row, for ``batch=True``)."""
        xp = B.array_namespace(r)
        _, (p0, _, _) = self.rho(r)
        return (0.5 * self.f_scale ** 2) * xp.sum(p0, axis=axis)

    def grad(self, r: Any) -> Any:
        """:math:`\\rho'(z)\\, r`."""
        _, (_, p1, _) = self.rho(r)
        with np.errstate(invalid="ignore"):  # ρ′ = 0 at r = ±inf (an overflowed trial): NaN
            return p1 * r

    def hessian_diag(self, r: Any) -> Any:
        """:math:`\\max(\\rho' + 2\\rho'' z, \\delta\\rho')`; for δ = 0, or where ρ′ < 0,
        :math:`\\max(\\rho' + 2\\rho'' z, \\varepsilon)` (ε of ``r``'s dtype)."""
        z, (_, p1, p2) = self.rho(r)
        return self._weights(r, z, p1, p2)

    def _weights(self, r: Any, z: Any, p1: Any, p2: Any) -> Any:
        xp = B.array_namespace(r)
        # ρ″ = 0 adds nothing, also where z overflowed to inf (|r| > 1e154·C, where every
        # built-in ρ″z → 0): the product 0·inf would be NaN
        w = p1 + 2.0 * p2 * xp.where(p2 == 0, xp.zeros_like(z), z)
        clamp = xp.full_like(r, float(xp.finfo(r.dtype).eps))
        if self.floor > 0.0:  # δρ′ where ρ′ ≥ 0 (every built-in loss)
            clamp = xp.where(p1 >= 0, self.floor * p1, clamp)
        return xp.maximum(w, clamp)

    def gauss_newton(self, r: Any) -> tuple[Any, Any]:
        r"""``(r̃, √w)``, elementwise on residuals of any shape (one :meth:`rho` call): the
        Gauss-Newton residual :math:`\tilde r = \rho' r/\sqrt w` and the row weights
        :math:`\sqrt w` of :math:`\tilde J = \mathrm{diag}(\sqrt w) J`, with the same
        arithmetic as :meth:`newtonkit.problems.OutputProblem.gauss_newton_form` on
        :meth:`grad` and :meth:`hessian_diag` (used by ``minimize(..., batch=True)``)."""
        xp = B.array_namespace(r)
        z, (_, p1, p2) = self.rho(r)
        w = self._weights(r, z, p1, p2)
        pos = w > 0
        sw = xp.sqrt(xp.where(pos, w, xp.zeros_like(w)))
        safe = xp.where(pos, sw, xp.ones_like(sw))
        return xp.where(pos, (p1 * r) / safe, xp.zeros_like(sw)), sw

    def __repr__(self) -> str:
        return f"RobustLoss({self.name!r}, f_scale={self.f_scale})"
