r"""Finite-difference derivatives, the fallback when no derivative is given or registered.

A function computed to a relative accuracy :math:`\eta` (:math:`\eta = \epsilon`, the dtype's
machine epsilon, for ``fun`` itself) is differenced with the steps

.. math:: h_j = \eta^{1/2}\max(1, |x_j|) \;\text{(forward, "2-point")}, \qquad
          h_j = \eta^{1/3}\max(1, |x_j|) \;\text{(central, "3-point")},

which balance the truncation and the rounding errors (SciPy's rule for :math:`\eta =
\epsilon`).  A relative step ``rel_step`` (SciPy's ``diff_step``) gives :math:`h_j =
\mathtt{rel\_step}\cdot|x_j|` instead, the rule above where that step vanishes (:math:`x_j
= 0`): for parameters whose scale is far below 1 (a time constant of 1e-9 s gets a forward step
of 1.5e-8 by the rule above, fifteen times itself).  Column ``j`` of the Jacobian is
:math:`(F(x + h_j e_j) - F(x)) / h_j` or :math:`(F(x + h_j e_j) - F(x - h_j e_j)) / (2 h_j)`,
with :math:`h_j` the step actually representable in floating point.

A gradient that is itself a difference is only accurate to
:math:`\eta_g = \epsilon^{1/2}` (forward) or :math:`\epsilon^{2/3}` (central)
(:func:`gradient_accuracy`); a Hessian differenced from it takes its steps with
:math:`\eta = \eta_g`.  With :math:`\eta = \epsilon` those steps would be far below the
gradient's noise: on :math:`\sum (x_i - 2)^2` the forward-over-forward Hessian came out exactly
zero.  Everything stays on the backend of ``x``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import _backend as B

__all__ = ["fd_jacobian", "fd_hessian_from_grad", "fd_hvp", "gradient_accuracy",
           "gradient_error_bound", "difference_steps", "steps_in_box", "output_accuracy",
           "forward_difference_bias", "richardson", "unseen_gradient"]


def _power(scheme: str) -> float:
    return 0.5 if scheme == "2-point" else 1.0 / 3.0


def difference_steps(xp: Any, x: Any, scheme: str, accuracy: float | None = None,
                     rel_step: float | None = None) -> Any:
    """SciPy's difference steps (``approx_derivative``), elementwise for ``x`` of any shape:
    η^(1/2)·max(1, |x|) (2-point) or η^(1/3)·max(1, |x|) (3-point), η the relative accuracy
    of ``fun`` (default: the dtype's ε); with ``rel_step``, ``rel_step·|x|``, and the former
    where ``x + rel_step·|x|`` rounds to ``x``."""
    eta = float(xp.finfo(x.dtype).eps) if accuracy is None else accuracy
    h = (eta ** _power(scheme)) * xp.maximum(xp.abs(x), xp.ones_like(x))
    if rel_step is None:
        return h
    h_rel = rel_step * xp.abs(x)
    return xp.where((x + h_rel) - x == 0, h, h_rel)


def output_accuracy(eps: float, out: Any) -> float:
    """The relative accuracy η of a function whose output ``out`` may be less precise than the
    working dtype (accuracy ``eps``): the larger of ``eps`` and ``out``'s own dtype's ε (SciPy's
    ``approx_derivative`` rule; float32 outputs at float64 x need float32 steps)."""
    if not hasattr(out, "dtype") or isinstance(out, (int, float)):  # Python's: float64
        return eps
    xp = B.array_namespace(out)
    if not xp.isdtype(out.dtype, "real floating"):  # (integers: no ε of their own)
        return eps
    return max(eps, float(xp.finfo(out.dtype).eps))


def gradient_accuracy(eps: float, scheme: str | None) -> float:
    r"""Relative accuracy :math:`\eta_g` of a gradient: ``eps`` when exact (``scheme=None``),
    :math:`\epsilon^{1/2}` for forward, :math:`\epsilon^{2/3}` for central differences (the
    error of :func:`gradient_error_bound` at the balancing step, relative to the scales
    of ``f`` and ``x``)."""
    if scheme is None:
        return eps
    return math.sqrt(eps) if scheme == "2-point" else eps ** (2.0 / 3.0)


def steps_in_box(xp: Any, x: Any, h: Any, scheme: str, bounds: tuple[Any, Any]) -> tuple:
    """SciPy's ``_adjust_scheme_to_bounds`` (``approx_derivative``): the signed steps ``h``
    and which coordinates take a one-sided 3-point difference, so that every point of the
    difference lies in the box.  2-point: a step past a bound goes the other way where that
    fits, else towards the farther bound by the room there.  3-point: central where ±h fit,
    else one-sided (x + h, x + 2h) towards the farther bound, h at most half the room there
    (central again where that is no larger than the room on the nearer side)."""
    lb, ub = bounds
    down, up = x - lb, ub - x
    if scheme == "2-point":
        fits = h <= xp.maximum(down, up)
        h = xp.where(h <= up, h, xp.where(fits, -h, xp.where(up >= down, up, -down)))
        return h, xp.zeros(x.shape, dtype=xp.bool, device=B.device(x))
    central = (down >= h) & (up >= h)
    forward = (up >= down) & ~central
    h_side = xp.where(forward, xp.minimum(h, 0.5 * up), -xp.minimum(h, 0.5 * down))
    near = xp.minimum(up, down)
    back_to_central = ~central & (xp.abs(h_side) <= near)
    h = xp.where(central, h, xp.where(back_to_central, near, h_side))
    return h, ~central & ~back_to_central


def fd_jacobian(fun: Callable, x: Any, f0: Any = None, *, scheme: str = "2-point",
                accuracy: float | None = None, bounds: tuple[Any, Any] | None = None,
                rel_step: float | None = None) -> Any:
    """Finite-difference Jacobian ``(m, n)`` of ``fun: (n,) -> (m,)`` (``(n,)`` if ``fun`` is
    scalar-valued, the gradient).  ``f0 = fun(x)`` saves one evaluation of the 2-point scheme;
    ``accuracy`` is the relative accuracy η of ``fun`` (default: the dtype's ε), ``rel_step``
    a relative step (:func:`difference_steps`).  With
    ``bounds = (lb, ub)`` every point evaluated is in the box (:func:`steps_in_box`; a
    one-sided 3-point difference is (−3f(x) + 4f(x + h) − f(x + 2h))/(2h))."""
    xp = B.array_namespace(x)
    n = x.shape[0]
    h = difference_steps(xp, x, scheme, accuracy, rel_step)
    one_sided = None
    if bounds is not None:
        h, one_sided = steps_in_box(xp, x, h, scheme, bounds)
        one_sided = B.to_numpy(one_sided).tolist()  # (per-column branches: one host copy)
    E = xp.eye(n, dtype=x.dtype, device=B.device(x))
    if f0 is None and (scheme == "2-point" or (one_sided is not None and any(one_sided))):
        f0 = fun(x)
    cols = []
    for j in range(n):
        step = h[j] * E[j, :]
        xj = x + step
        if scheme == "2-point":
            cols.append((fun(xj) - f0) / (xj - x)[j])  # the step representable in floating point
        elif one_sided is not None and one_sided[j]:
            x2 = x + 2.0 * step
            cols.append((-3.0 * f0 + 4.0 * fun(xj) - fun(x2)) / (x2 - x)[j])
        else:
            xm = x - step
            cols.append((fun(xj) - fun(xm)) / (xj - xm)[j])
    return xp.stack(cols, axis=-1)


def unseen_gradient(xp: Any, J: Any, y: Any, gy: Any, x: Any, scheme: str,
                    accuracy: float | None = None, rel_step: float | None = None,
                    bounds: tuple[Any, Any] | None = None) -> tuple[Any, Any]:
    r"""Bounds on the parts of the gradient :math:`g = J^T g_y` that a difference Jacobian
    ``J`` of outputs ``y`` (``g_y`` the loss's gradient in them, ``y`` itself for ½‖y‖²) at
    ``x`` cannot show, ``(unseen, seen)``:

    .. math:: u_j = \sum_{i:\,J_{ij} = 0} |g_{y,i}|\,\frac{c\,\eta\,|y_i|}{|h_j|},\qquad
              s_j = \sum_{i:\,J_{ij} \ne 0} |g_{y,i}|\,\frac{c\,\eta\,|y_i|}{|h_j|},

    ``c = 2`` forward, 1 central, 4 one-sided (3-point in a box), η the outputs' relative
    accuracy (default: the dtype's ε), :math:`h_j` the step (:func:`difference_steps`,
    :func:`steps_in_box`).  Each difference entry is off by up to :math:`c\eta|y_i|/|h_j|`,
    the rounding of output i: ``s`` bounds what that shifts of g, which every difference
    gradient carries; an entry exactly 0 means output i did not change by more than its
    rounding, which hides a derivative up to that much, and ``u`` bounds what those entries
    hide.  (:math:`y_1 = x_1 - 10^6` in float32 at :math:`x_1 = 1`: a step of 3.5e-4 is below
    the rounding of 1e6, 0.06, so :math:`\partial y_1/\partial x_1 = 1` differences to 0 and
    :math:`g_1` loses the term −1e6.)  Rows of a batch: leading axes on every argument."""
    eta = float(xp.finfo(x.dtype).eps) if accuracy is None else accuracy
    h = difference_steps(xp, x, scheme, eta, rel_step)
    one_sided = None
    if bounds is not None:
        h, one_sided = steps_in_box(xp, x, h, scheme, bounds)
    if scheme == "2-point":
        c = 2.0
    elif one_sided is None:
        c = 1.0
    else:
        c = xp.where(one_sided, xp.full_like(h, 4.0), xp.ones_like(h))
    w = xp.abs(gy) * xp.abs(y)
    zero = J == 0
    unseen = xp.sum(xp.where(zero, w[..., :, None], xp.zeros_like(J)), axis=-2)
    seen = xp.sum(xp.where(zero, xp.zeros_like(J), w[..., :, None]), axis=-2)
    scale = c * eta / xp.abs(h)
    return scale * unseen, scale * seen


def fd_hessian_from_grad(grad: Callable, x: Any, g0: Any, *, scheme: str = "2-point",
                         accuracy: float | None = None,
                         bounds: tuple[Any, Any] | None = None) -> Any:
    """Symmetrised difference Hessian ``(n, n)`` of a gradient ``grad: (n,) -> (n,)``
    (``g0 = grad(x)``; forward or central by ``scheme``; ``accuracy`` η of ``grad``; steps
    in the box ``bounds``, as :func:`fd_jacobian`)."""
    xp = B.array_namespace(x)
    H = fd_jacobian(grad, x, g0, scheme=scheme, accuracy=accuracy, bounds=bounds)
    return 0.5 * (H + xp.matrix_transpose(H))


def fd_hvp(grad: Callable, x: Any, g0: Any, v: Any, *, scheme: str = "2-point",
           accuracy: float | None = None) -> Any:
    r"""Hessian-vector product by a difference of gradients along ``v``:
    :math:`(\nabla f(x + t v) - \nabla f(x))/t` or :math:`(\nabla f(x + t v) - \nabla f(x - t
    v))/(2t)`, with :math:`t\|v\| = \eta^{1/2}` (or :math:`\eta^{1/3}`)
    :math:`\cdot\max(1, \|x\|)`, the step rule of the module along the direction ``v``."""
    xp = B.array_namespace(x)
    vnorm = B.norm(xp, v)
    if vnorm == 0.0:
        return xp.zeros_like(v)
    eta = float(xp.finfo(x.dtype).eps) if accuracy is None else accuracy
    t = eta ** _power(scheme) * max(1.0, B.norm(xp, x)) / vnorm
    if scheme == "2-point":
        return (grad(x + t * v) - g0) / t
    return (grad(x + t * v) - grad(x - t * v)) / (2.0 * t)


def forward_difference_bias(xp: Any, x: Any, diagonal: Any, accuracy: float,
                            bounds: tuple[Any, Any] | None = None) -> Any:
    """The leading error of a forward-difference gradient at ``x`` (one row or rows of a
    batch), ``h_j·H_jj/2``: ``h_j`` the signed step taken (in the box ``bounds``),
    ``diagonal`` the Hessian's, signed.  Subtracted, what remains is the rounding 2ε|f|/h and
    O(h²)."""
    h = difference_steps(xp, x, "2-point", accuracy)
    if bounds is not None:
        h, _ = steps_in_box(xp, x, h, "2-point", bounds)
    return 0.5 * h * diagonal


#: A central difference at h/2 takes the steps of ``accuracy / RICHARDSON_SHRINK`` (η^(1/3)).
RICHARDSON_SHRINK = 8.0


def richardson(g_half: Any, g: Any) -> Any:
    """Richardson's ``(4·G(h/2) − G(h))/3`` from central differences at h/2 and h: their h²
    terms cancel, leaving O(h⁴) and the rounding, at most 3ε|f|/h ((4·2 + 1)/3 times
    :func:`gradient_error_bound`'s central term)."""
    return (4.0 * g_half - g) / 3.0


def gradient_error_bound(x: Any, f: Any, curvature: Any, scheme: str,
                         accuracy: float | None = None) -> Any:
    r"""Bound on the error of each entry of a difference gradient of ``f`` at ``x``.

    Taylor's theorem with ``f`` computed to within one rounding (:math:`\epsilon |f|`):

    .. math:: |g^{fd}_j - \partial_j f| \le \tfrac{h_j}{2} M_j + \frac{2\epsilon|f|}{h_j}
              \;\text{(forward)}, \qquad \le \tfrac{h_j^2}{6} T_j + \frac{\epsilon|f|}{h_j}
              \;\text{(central)},

    :math:`M_j, T_j` the second and third derivatives along :math:`e_j` near ``x``.
    ``curvature`` estimates :math:`M_j` (the Hessian's diagonal, or a bound on
    :math:`\|H\|_2` as a scalar; ``None``: unknown, taken as 0).  The central third-derivative
    term, :math:`O(\epsilon^{2/3})`, is not estimated.  Rows of a batch: ``x`` of shape
    ``(b, n)`` with ``f`` of shape ``(b, 1)``.  ``accuracy``: f's relative accuracy
    (:func:`output_accuracy`; default the dtype's ε).
    """
    xp = B.array_namespace(x)
    eps = float(xp.finfo(x.dtype).eps) if accuracy is None else accuracy
    h = difference_steps(xp, x, scheme, eps)
    if scheme == "2-point":
        err = (2.0 * eps * abs(f)) / h
        if curvature is not None:
            err = err + 0.5 * h * curvature
        return err
    return (eps * abs(f)) / h
