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


def as_arrays(bounds: Any, like: Any = None) -> tuple[Any, Any]:
    """``(lb, ub)`` of a :class:`scipy.optimize.Bounds` or a pair, as float64 arrays of the
    shapes given (a ``Bounds`` scalar, held as ``(1,)``, as a 0-d array) on ``like``'s backend
    and device (NumPy when ``like`` is ``None``).  Bounds already on that backend stay on their
    device; others are converted (NumPy values are sent to the device, never read back)."""
    if isinstance(bounds, scipy.optimize.Bounds):
        lb, ub = (np.squeeze(b) if np.size(b) == 1 else b for b in (bounds.lb, bounds.ub))
    else:
        try:
            lb, ub = bounds
        except (TypeError, ValueError):
            raise ValueError("bounds must contain 2 elements (lb, ub) or be a "
                             "scipy.optimize.Bounds") from None
    xp = B.array_namespace(np.empty(0) if like is None else like)
    device = None if like is None else B.device(like)

    def convert(b: Any) -> Any:
        if hasattr(b, "shape") and B.array_namespace(b) is not xp:
            b = B.to_numpy(b)
        if not hasattr(b, "shape"):
            b = np.asarray(b, dtype=np.float64)
        return xp.asarray(b, dtype=xp.float64, device=device)

    try:
        return convert(lb), convert(ub)
    except (TypeError, ValueError):
        raise ValueError("bounds: lb and ub must be numbers or arrays of numbers") from None


def check_order(lb: Any, ub: Any) -> None:
    """SciPy's checks of broadcast bounds: no NaN, ``lb < ub`` everywhere."""
    xp = B.array_namespace(lb, ub)
    if bool(xp.any(xp.isnan(lb))) or bool(xp.any(xp.isnan(ub))):
        raise ValueError("bounds must not contain NaN (use ±inf for a free side)")
    if bool(xp.any(lb >= ub)):
        raise ValueError("bounds: each lower bound must be strictly less than each upper bound")


def parse_bounds(bounds: Any, x0: Any) -> tuple[Any, Any] | None:
    """``(lb, ub)`` as float64 arrays of ``x0``'s size, backend and device, or ``None`` when
    every bound is infinite (the unbounded problem).  Raises ``ValueError`` naming ``bounds``
    or ``x0`` for a pair that is not one, a shape that does not fit, NaN, ``lb >= ub`` or
    ``x0`` outside.  Only the checks' verdicts leave the device.  ``bounds`` is never
    modified."""
    if bounds is None:
        return None
    xp = B.array_namespace(x0)
    lb, ub = as_arrays(bounds, like=x0)
    n = x0.shape[0]

    def fit(b: Any) -> Any:
        size = math.prod(b.shape)
        return xp.broadcast_to(b, (n,)) if b.ndim == 0 else xp.reshape(b, (-1,)) \
            if size == n else b

    lb, ub = fit(lb), fit(ub)
    if tuple(lb.shape) != (n,) or tuple(ub.shape) != (n,):
        raise ValueError(f"inconsistent shapes between bounds {tuple(lb.shape)}, "
                         f"{tuple(ub.shape)} and x0 ({n},)")
    check_order(lb, ub)
    if not bool(xp.all(xp.isfinite(x0))):
        raise ValueError("x0 has non-finite entries (nan or inf)")
    if not bool(xp.all((x0 >= lb) & (x0 <= ub))):
        raise ValueError("x0 (the initial guess) is outside of provided bounds")
    if not (bool(xp.any(xp.isfinite(lb))) or bool(xp.any(xp.isfinite(ub)))):
        return None
    return lb, ub


def project(xp: Any, x: Any, lb: Any, ub: Any) -> Any:
    """:math:`P(x) = \\min(\\max(x, l), u)`."""
    return xp.minimum(xp.maximum(x, lb), ub)


def projected_gradient(xp: Any, x: Any, g: Any, lb: Any, ub: Any, scale: Any = None) -> Any:
    r""":math:`h \odot (x - P(x - g/h))`, :math:`h = d^2` for the scales ``d = scale`` (a 0
    read as 1; ``None``: all 1): :math:`g_i` where :math:`x_i - g_i/h_i` is in the box, else
    :math:`h_i` times the way to the bound it passes, :math:`h_i(x_i - l_i)` or
    :math:`h_i(x_i - u_i)`; zero at a KKT point.

    With the column norms of J as ``scale`` (h the diagonal of JᵀJ) the result divided by
    them is the projected gradient in the scaled variables :math:`z = \|J_j\| x_j`
    (MINPACK's), free of the scales of x; the plain :math:`x - P(x - g)` mixes gradient and
    distance units, and its cosine with the column norms read 1e-62 on the way to a bound 2.7
    away (Osborne 1, a false gtol stop at x0).  Not computed as ``x - P(x - g)`` either:
    where :math:`|g_i|` is below the rounding of :math:`x_i`, :math:`x_i - g_i` rounds to
    :math:`x_i` and that difference to 0, a zero gradient and a false gtol stop (Meyer's
    function at :math:`x_3 = 2\cdot 10^{18}`, where :math:`g_3 = -4\cdot 10^{-29}` and the
    scaled gradient is 0.8)."""
    h = xp.ones_like(x) if scale is None else xp.where(scale > 0, scale * scale,
                                                         xp.ones_like(scale))
    y = x - g / h
    return xp.where(y < lb, h * (x - lb), xp.where(y > ub, h * (x - ub), g))


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
    tmin = float(xp.min(t))
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


def active_mask(xp: Any, x: Any, lb: Any, ub: Any, rtol: float) -> Any:
    """−1 where ``x`` is at its lower bound, +1 at its upper bound, 0 elsewhere (integers on
    ``x``'s backend and device; SciPy's ``find_active_constraints``: within
    ``rtol·max(1, |bound|)``, the nearer bound)."""
    if rtol == 0:
        at_lower, at_upper = x <= lb, x >= ub
    else:
        lower, upper = x - lb, ub - x
        one = xp.ones_like(x)
        near_l, near_u = (rtol * xp.maximum(one, xp.abs(b)) for b in (lb, ub))
        at_lower = xp.isfinite(lb) & (lower <= xp.minimum(upper, near_l))
        at_upper = xp.isfinite(ub) & (upper <= xp.minimum(lower, near_u))
    ones = xp.ones(x.shape, dtype=xp.int64, device=B.device(x))
    return xp.where(at_upper, ones, xp.where(at_lower, -ones, 0 * ones))
