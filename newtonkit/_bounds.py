r"""Box constraints :math:`l \le x \le u`: checking ``bounds`` and the geometry the bounded
methods share.

``bounds`` is a :class:`scipy.optimize.Bounds` or a pair ``(lb, ub)`` of scalars or arrays of
``x0``'s size (scalars broadcast, ``±inf`` leaves a side free).  SciPy's rules: ``lb < ub``
strictly, ``x0`` inside.  The helpers below work on any array namespace ``xp``:

* :func:`cl_scaling` — Coleman and Li's scaling vector :math:`v` (the distance to the bound the
  antigradient points at, 1 when that bound is infinite) and its derivative :math:`\partial
  v_i/\partial x_i \in \{-1, 0, 1\}`;  first-order optimality is :math:`v \odot g = 0`.
* :func:`step_to_bound` — the largest :math:`t \ge 0` with :math:`x + ts` in the box.
* :func:`strictly_feasible` — a point on a bound moved one ulp inside.
* :func:`projected_gradient` — :math:`x - P(x - g)`, zero exactly at a first-order point of the
  box-constrained problem (:math:`P` the projection onto the box).
* :func:`active_mask` — SciPy's ``find_active_constraints``: −1 at the lower bound, +1 at the
  upper, 0 free, within ``rtol·max(1, |bound|)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.optimize

from . import _backend as B

__all__ = ["as_arrays", "check_order", "parse_bounds", "cl_scaling", "step_to_bound",
           "strictly_feasible", "projected_gradient", "active_mask", "project"]


def as_arrays(bounds: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(lb, ub)`` of a :class:`scipy.optimize.Bounds` or a pair, as float64 NumPy arrays of
    the shapes given (a ``Bounds`` scalar, held as ``(1,)``, as a 0-d array)."""
    if isinstance(bounds, scipy.optimize.Bounds):
        lb, ub = (np.squeeze(b) if np.size(b) == 1 else b for b in (bounds.lb, bounds.ub))
    else:
        try:
            lb, ub = bounds
        except (TypeError, ValueError):
            raise ValueError("bounds must contain 2 elements (lb, ub) or be a "
                             "scipy.optimize.Bounds") from None
    try:
        return tuple(np.array(B.to_numpy(b) if hasattr(b, "shape") else b, dtype=np.float64)
                     for b in (lb, ub))
    except (TypeError, ValueError):
        raise ValueError("bounds: lb and ub must be numbers or arrays of numbers") from None


def check_order(lb: np.ndarray, ub: np.ndarray) -> None:
    """SciPy's checks of broadcast bounds: no NaN, ``lb < ub`` everywhere."""
    if np.isnan(lb).any() or np.isnan(ub).any():
        raise ValueError("bounds must not contain NaN (use ±inf for a free side)")
    if np.any(lb >= ub):
        raise ValueError("bounds: each lower bound must be strictly less than each upper bound")


def parse_bounds(bounds: Any, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(lb, ub)`` as float64 NumPy arrays of ``x0``'s size, or ``None`` when every bound is
    infinite (the unbounded problem).  Raises ``ValueError`` naming ``bounds`` or ``x0`` for a
    pair that is not one, a shape that does not fit, NaN, ``lb >= ub`` or ``x0`` outside.
    ``bounds`` is never modified."""
    if bounds is None:
        return None
    lb, ub = as_arrays(bounds)
    n = x0.shape[0]
    lb = np.full(n, lb) if lb.ndim == 0 else lb.reshape(-1) if lb.size == n else lb
    ub = np.full(n, ub) if ub.ndim == 0 else ub.reshape(-1) if ub.size == n else ub
    if lb.shape != (n,) or ub.shape != (n,):
        raise ValueError(f"inconsistent shapes between bounds {lb.shape}, {ub.shape} and x0 "
                         f"({n},)")
    check_order(lb, ub)
    if not np.all((x0 >= lb) & (x0 <= ub)):
        raise ValueError("x0 (the initial guess) is outside of provided bounds")
    if not (np.isfinite(lb).any() or np.isfinite(ub).any()):
        return None
    return lb, ub


def project(xp: Any, x: Any, lb: Any, ub: Any) -> Any:
    """:math:`P(x) = \\min(\\max(x, l), u)`."""
    return xp.minimum(xp.maximum(x, lb), ub)


def projected_gradient(xp: Any, x: Any, g: Any, lb: Any, ub: Any) -> Any:
    r""":math:`x - P(x - g)`: :math:`g_i` for a free variable, and on a bound the part of
    :math:`g_i` that points out of the box is dropped (zero at a KKT point)."""
    return x - project(xp, x - g, lb, ub)


def cl_scaling(xp: Any, x: Any, g: Any, lb: Any, ub: Any) -> tuple[Any, Any]:
    r"""Coleman-Li's :math:`v` and :math:`\partial v/\partial x` (diagonal):

    .. math::  v_i = \begin{cases} u_i - x_i & g_i < 0,\ u_i < \infty \\ x_i - l_i & g_i > 0,\
               l_i > -\infty \\ 1 & \text{otherwise} \end{cases}, \qquad
               \partial v_i/\partial x_i = -1,\ 1,\ 0 .
    """
    to_upper = (g < 0) & (ub < math.inf)
    to_lower = (g > 0) & (lb > -math.inf)
    one = xp.ones_like(x)
    v = xp.where(to_upper, ub - x, xp.where(to_lower, x - lb, one))
    dv = xp.where(to_upper, -one, xp.where(to_lower, one, 0 * one))
    return v, dv


def step_to_bound(xp: Any, x: Any, s: Any, lb: Any, ub: Any) -> tuple[float, Any]:
    """The smallest ``t >= 0`` with ``x + t s`` on a bound (``inf`` if none) and ``hits``: for
    each variable ``sign(s_i)`` where that bound is reached at ``t``, else 0."""
    moving = s != 0
    safe = xp.where(moving, s, xp.ones_like(s))
    t = xp.where(moving, xp.maximum((lb - x) / safe, (ub - x) / safe), math.inf)
    tmin = B.float_min(xp, t)
    hits = xp.where((t == tmin) & moving, xp.sign(s), 0 * s)
    return tmin, hits


def strictly_feasible(xp: Any, x: Any, lb: Any, ub: Any, rstep: float = 0.0) -> Any:
    """``x`` (inside the box) moved off the bounds (SciPy's ``make_strictly_feasible``):
    ``rstep = 0``: an entry on a bound moves one ulp towards the other bound; ``rstep > 0``: an
    entry within ``rstep·max(1, |bound|)`` of a bound moves to that distance (to the midpoint
    when that passes the other bound)."""
    if rstep == 0:
        x = xp.where(x <= lb, xp.nextafter(lb, ub), x)
        return xp.where(x >= ub, xp.nextafter(ub, lb), x)
    has_l, has_u = lb > -math.inf, ub < math.inf
    lbf, ubf = xp.where(has_l, lb, x), xp.where(has_u, ub, x)  # no inf − inf below
    lo, hi = x - lb, ub - x
    tl = rstep * xp.maximum(xp.abs(lbf), xp.ones_like(lb))
    tu = rstep * xp.maximum(xp.abs(ubf), xp.ones_like(ub))
    to_l = has_l & (lo <= xp.minimum(hi, tl))
    to_u = has_u & (hi <= xp.minimum(lo, tu))
    x = xp.where(to_l, lbf + tl, xp.where(to_u, ubf - tu, x))
    return xp.where((x < lb) | (x > ub), 0.5 * (lbf + ubf), x)


def active_mask(x: np.ndarray, lb: np.ndarray, ub: np.ndarray, rtol: float) -> np.ndarray:
    """−1 where ``x`` is at its lower bound, +1 at its upper bound, 0 elsewhere (NumPy ``int``;
    SciPy's ``find_active_constraints``: within ``rtol·max(1, |bound|)``, the nearer bound)."""
    lower, upper = x - lb, ub - x
    out = np.zeros(x.shape, dtype=int)
    if rtol == 0:
        out[x <= lb] = -1
        out[x >= ub] = 1
        return out
    with np.errstate(invalid="ignore"):
        out[np.isfinite(lb) & (lower <= np.minimum(upper, rtol * np.maximum(1, np.abs(lb))))] = -1
        out[np.isfinite(ub) & (upper <= np.minimum(lower, rtol * np.maximum(1, np.abs(ub))))] = 1
    return out
