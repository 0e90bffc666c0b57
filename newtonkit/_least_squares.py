r"""``newtonkit.least_squares``: SciPy's ``least_squares`` interface on :func:`newtonkit.minimize`.

The solver is :func:`newtonkit.minimize` (``"lm"``, ``"gn"``, ``"hig"``); this module maps
SciPy's arguments onto it and its result back onto SciPy's fields.  Robust losses are a
:class:`~newtonkit.Composite` of the residual and a :class:`~newtonkit.problems._robust.RobustLoss`
(SciPy's Triggs scaling through the generalised Gauss-Newton form).  See
``docs/least_squares.md``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from . import _backend as B
from ._bounds import cl_scaling, parse_bounds
from ._minimize import OptimizeResult, minimize
from ._status import Status
from .operators import DiagonalOperator, LinearOperator
from .problems import Composite, FiniteDifferenceWarning
from .problems._common import FD_SCHEMES
from .problems._outputs import OutputProblem
from .problems._registry import get_autodiff
from .problems._robust import LOSSES, RobustLoss, check_f_scale

__all__ = ["least_squares", "STATUS_CODES", "OTHER_FAILURE"]

_METHODS = {"lm": "lm", "levenberg-marquardt": "lm", "gn": "gauss-newton",
            "gauss-newton": "gauss-newton", "hig": "hig", "trf": "trf", "dogbox": "trf"}
_EPS = float(np.finfo(np.float64).eps)


class _DefaultTol(float):
    """The default tolerance, 1e-8: the only value scaled for float32 (× √(ε₃₂/ε₆₄), as
    ``minimize``'s defaults); a tolerance the user passes, 1e-8 included, is used as given."""


DEFAULT_TOL = _DefaultTol(1e-8)

#: newtonkit's terminations that have a SciPy ``least_squares`` status code.
STATUS_CODES = {Status.MAXFEV: 0, Status.MAXITER: 0, Status.GTOL: 1, Status.ZERO: 1,
                Status.FTOL: 2, Status.XTOL: 3, Status.FTOL_XTOL: 4}
#: The status of every other termination (no progress, non-finite values, divergence, a zero
#: finite-difference column, an interrupt): a failure SciPy has no code for; ``termination``
#: names it and ``nk_status`` holds newtonkit's code.
OTHER_FAILURE = -3
_MESSAGES = {0: "The maximum number of function evaluations is exceeded.",
             1: "`gtol` termination condition is satisfied.",
             2: "`ftol` termination condition is satisfied.",
             3: "`xtol` termination condition is satisfied.",
             4: "Both `ftol` and `xtol` termination conditions are satisfied."}


class _Residual:
    """``fun(x, *args, **kwargs)`` as a flat residual of ``u`` with ``x = scale·u``."""

    def __init__(self, fun: Callable, jac: Any, args: tuple, kwargs: dict, scale: Any,
                 xp: Any) -> None:
        self.fun, self.jac, self.args, self.kwargs = fun, jac, args, kwargs
        self.scale, self.xp = scale, xp

    def _x(self, u: Any) -> Any:
        return u if self.scale is None else u * self.scale

    def __call__(self, u: Any) -> Any:
        y = self.fun(self._x(u), *self.args, **self.kwargs)
        if not hasattr(y, "shape"):
            y = self.xp.asarray(y, dtype=u.dtype, device=B.device(u))
        if len(y.shape) > 1:
            raise ValueError(f"fun must return a 1-D array of residuals (or a scalar), got shape "
                             f"{tuple(y.shape)}")
        return self.xp.reshape(y, (-1,))

    def dense_jacobian(self, u: Any) -> Any:
        """``jac`` (a callable) at ``x``, times ``diag(scale)``."""
        J = self.jac(self._x(u), *self.args, **self.kwargs)
        if not isinstance(J, LinearOperator) and not hasattr(J, "shape"):
            J = self.xp.asarray(J, dtype=u.dtype, device=B.device(u))
        if self.scale is None:
            return J
        if isinstance(J, LinearOperator):
            return J @ DiagonalOperator(self.scale)
        return J * self.scale[None, :]


class _ResidualWithJacobian(_Residual):
    """A forward model with ``jacobian(u)`` (the user's ``jac``) for a :class:`Composite`
    (robust losses)."""

    def jacobian(self, u: Any) -> Any:
        return self.dense_jacobian(u)


def least_squares(fun: Callable, x0: Any, jac: Any = "2-point",
                  bounds: Any = (-np.inf, np.inf), method: str = "lm",
                  ftol: float | None = DEFAULT_TOL, xtol: float | None = DEFAULT_TOL,
                  gtol: float | None = DEFAULT_TOL, x_scale: Any = None,
                  loss: str | Callable = "linear", f_scale: float = 1.0,
                  diff_step: float | None = None, max_nfev: int | None = None,
                  verbose: int = 0, args: tuple = (), kwargs: dict | None = None) -> OptimizeResult:
    r"""Solve a nonlinear least-squares problem (SciPy's ``least_squares`` interface).

    Minimises the cost

    .. math::  F(x) = \tfrac12\, C^2 \sum_{i=1}^m \rho\big((f_i(x)/C)^2\big),\qquad C =
               \mathtt{f\_scale},

    which is :math:`\tfrac12\|f(x)\|^2` for ``loss="linear"`` (:math:`\rho(z) = z`), with
    :func:`newtonkit.minimize` (Levenberg-Marquardt, Gauss-Newton or HIG).

    Parameters
    ----------
    fun : callable
        Residuals ``fun(x, *args, **kwargs) -> (m,)`` (a scalar counts as ``m = 1``).
    x0 : array_like or float
        Start, shape ``(n,)``; NumPy, PyTorch or array-API arrays (computations stay on its
        backend, dtype and device); never modified.
    jac : {'2-point', '3-point'}, callable or None
        Jacobian: finite differences, ``jac(x, *args, **kwargs) -> (m, n)`` (an array or a
        :class:`~newtonkit.LinearOperator`), or ``None``: the backend's autodiff (PyTorch),
        else ``'2-point'`` (newtonkit's extension).
    bounds : 2-tuple or scipy.optimize.Bounds
        ``(lb, ub)``: scalars or arrays of size n, ``±inf`` a free side.  Checked as SciPy
        does (shapes, no NaN, ``lb < ub`` strictly, ``x0`` inside: else ``ValueError``).
        Finite bounds: ``'trf'``, ``'dogbox'``, ``'lm'`` and ``'gn'`` run the trust-region
        reflective method (:mod:`newtonkit.methods.trf`; SciPy's ``'lm'`` refuses bounds),
        ``'hig'`` projects its steps; every evaluated point is in the box.
    method : {'lm', 'trf', 'dogbox', 'gn', 'gauss-newton', 'hig'}
        ``'lm'`` is MINPACK's trust-region Levenberg-Marquardt (SciPy's ``'lm'``); ``'trf'``
        SciPy's trust-region reflective method (``tr_solver='exact'``), and ``'dogbox'`` the
        same (newtonkit has no dogleg-box method).  The default stays ``'lm'``.
    ftol, xtol, gtol : float or None
        Termination tolerances (``None``: 0, the test disabled); for ``'lm'`` MINPACK's tests
        as in SciPy, and every one must be at least machine ε.  In float32 the defaults
        (1e-8) are multiplied by :math:`\sqrt{\varepsilon_{32}/\varepsilon_{64}}` (2.3e-4, as
        :func:`newtonkit.minimize` scales its defaults); a value you pass is used as given.
    x_scale : None, 'jac' or array_like
        ``None``/``'jac'``: Moré's scaling by the Jacobian's column norms (LM option
        ``scaling=True``; for ``'trf'`` only ``'jac'``, ``None`` is 1 as in SciPy).  An array
        ``s > 0``: for ``'trf'`` SciPy's fixed scaling (method option ``scaling=s``), else the
        problem is solved in ``u = x/s`` (for LM MINPACK's fixed ``diag = 1/s``, exactly).
    loss : str or callable
        ``'linear'``, ``'soft_l1'``, ``'huber'``, ``'cauchy'``, ``'arctan'`` or ``rho(z) ->
        (ρ, ρ′, ρ″)`` (see :class:`~newtonkit.problems._robust.RobustLoss`).  Unlike SciPy,
        ``'lm'`` accepts robust losses (SciPy's Triggs model with a curvature floor, see
        :class:`~newtonkit.problems._robust.RobustLoss`; the cost and its minimisers are
        SciPy's).
    f_scale : float
        :math:`C > 0`, the soft margin between inlier and outlier residuals.
    diff_step : float, optional
        Relative step of a difference Jacobian: :math:`h_j = \mathtt{diff\_step}\cdot|x_j|`
        (SciPy's ``diff_step``).  Default ``None``: SciPy's :math:`\sqrt\epsilon\max(1,
        |x_j|)`, which is far larger than parameters of scale ≪ 1 (a time constant of 1e-9 s
        gets a step fifteen times itself, and a column that is no derivative; a
        ``FiniteDifferenceWarning`` names such parameters of ``x0``): give such fits
        ``diff_step=1.5e-8`` (√ε), or a Jacobian, or ``x0`` of order 1.
    max_nfev : int, optional
        Budget of calls of ``fun`` (difference calls included).  Default: ``100·n`` with a
        callable or autodiff Jacobian, ``100·n·(n+1)`` with differences (MINPACK's ``lmdif``).
    verbose : {0, 1, 2}
        ``disp`` of :func:`newtonkit.minimize` (1: final report, 2: one line per iteration).
    args, kwargs :
        Extra arguments of ``fun`` and ``jac``.

    Returns
    -------
    OptimizeResult
        SciPy's fields: ``x``; ``cost`` (:math:`F(x)`); ``fun`` (the residuals :math:`f(x)`);
        ``jac`` (:math:`J` at ``x``, for a robust loss SciPy's modified
        :math:`\mathrm{diag}(\sqrt{w})J`, :math:`w = \max(\rho' + 2\rho''z, \varepsilon)`, so
        :math:`J^TJ` is the Gauss-Newton Hessian of the cost); ``grad`` (:math:`J^T \rho' f`,
        the gradient of the cost); ``optimality`` (:math:`\|g\|_\infty`, under bounds
        SciPy trf's :math:`\|v \odot g\|_\infty`, Coleman-Li :math:`v`); ``active_mask``
        (−1 lower bound active, +1 upper, 0 free; within ``xtol·max(1, |bound|)``; integers
        on ``x0``'s backend and device);
        ``nfev``; ``njev`` (``None`` with difference Jacobians, as SciPy's ``'lm'``);
        ``status`` (:data:`STATUS_CODES`: 0 budget, 1 gtol (or a zero residual), 2 ftol, 3
        xtol, 4 both; :data:`OTHER_FAILURE` = −3 for failures SciPy has no code for);
        ``message``; ``success`` (``status > 0``).  Extras: ``nit``, ``termination`` (the
        :class:`~newtonkit.Status` name), ``nk_status`` (newtonkit's code), ``method``.
    """
    nk_method = _METHODS.get(method.lower() if isinstance(method, str) else method)
    if nk_method is None:
        raise ValueError(f"method must be 'trf', 'dogbox', 'lm', 'gn' ('gauss-newton') or "
                         f"'hig', got {method!r}")
    if not callable(fun):
        raise TypeError(f"fun must be callable, got {type(fun).__name__}")
    if not (jac is None or callable(jac) or (isinstance(jac, str) and jac in FD_SCHEMES)):
        raise ValueError(f"jac must be '2-point', '3-point', a callable or None, got {jac!r}")
    if not (isinstance(loss, str) or callable(loss)):
        raise TypeError(f"loss must be a string or a callable, got {type(loss).__name__}")
    if isinstance(loss, str) and loss not in LOSSES:
        raise ValueError(f"loss must be one of {sorted(LOSSES)} or a callable, got {loss!r}")
    f_scale = check_f_scale(f_scale)
    if verbose not in (0, 1, 2):
        raise ValueError(f"verbose must be 0, 1 or 2, got {verbose!r}")
    if max_nfev is not None and not (isinstance(max_nfev, (int, np.integer)) and max_nfev > 0):
        raise ValueError(f"max_nfev must be None or a positive integer, got {max_nfev!r}")
    args = tuple(args) if isinstance(args, (tuple, list)) else (args,)  # SciPy unpacks lists
    kwargs = dict(kwargs or {})

    x = _start(x0)
    xp = B.array_namespace(x)
    n = x.shape[0]
    box = parse_bounds(bounds, x)
    s = _x_scale(x_scale, n)
    s = None if s is None else xp.asarray(s, dtype=xp.float64, device=B.device(x))
    scale = None if s is None else xp.astype(s, x.dtype)
    tols = _tolerances(ftol, xtol, gtol, nk_method, float(xp.finfo(x.dtype).eps))
    if jac is None and get_autodiff(xp) is None:
        jac = "2-point"
    fd = isinstance(jac, str)
    if max_nfev is None:
        max_nfev = 100 * n * (n + 1) if fd else 100 * n
    options: dict = {**tols, "maxfev": int(max_nfev), "disp": verbose, "diff_step": diff_step}
    if nk_method == "lm":
        options["scaling"] = scale is None
    elif nk_method == "trf":  # SciPy's trf: x_scale=None is 1, 'jac' the column norms, an
        # array s the fixed D = 1/s inside the method (SciPy's tests on x, not on x/s)
        options["scaling"] = (isinstance(x_scale, str) and x_scale == "jac") if scale is None \
            else scale
        scale = None
    elif nk_method == "gauss-newton":
        options["maxiter"] = 100 * n
    u0 = x if scale is None else x / scale
    ubox = None  # the bounds of u = x/scale
    if box is not None:
        ubox = box if scale is None else tuple(b / s for b in box)
    robust = not (isinstance(loss, str) and loss == "linear")

    if robust:
        # trf (bounded lm/gn run it too) takes SciPy's Triggs model (curvature floor δ = 0):
        # its trust region and its test on ‖v ⊙ J̃ᵀr̃‖ = ‖v ⊙ ∇F‖ need no floor; lm and gn take
        # newtonkit's δ = 0.1 (MINPACK's gtol test and Gauss-Newton steps do; _robust.py)
        runs_trf = nk_method == "trf" or (box is not None and nk_method != "hig")
        rloss = RobustLoss(loss, f_scale, floor=0.0 if runs_trf else 0.1)
        # the model's Jacobian: the user's jac, differences (within the budget and the box,
        # as without a loss) or autodiff
        model = (_ResidualWithJacobian if callable(jac) else _Residual)(
            fun, jac, args, kwargs, scale, xp)
        res = minimize(Composite(model, rloss), u0, method=nk_method, jac=jac if fd else None,
                       options=options, bounds=ubox)
        r = res["outputs"]
    else:
        model = _Residual(fun, jac, args, kwargs, scale, xp)
        mjac = model.dense_jacobian if callable(jac) else jac
        res = minimize(model, u0, method=nk_method, jac=mjac, options=options, bounds=ubox)
        r = res["residual"]
    xs = res.x if scale is None else res.x * scale
    J = res.pop("jacobian", None)  # the method's J̃ at x, in u = x/scale
    J = None if robust else J
    if J is not None and scale is not None:
        J = J / scale[None, :]
    if J is None:
        J = _final_jacobian(fun, jac, args, kwargs, xs, box, xp, diff_step)
    if robust:
        scipy_loss = RobustLoss(loss, f_scale, floor=0.0)  # SciPy's J and grad at x
        _, (_, p1, _) = scipy_loss.rho(r)
        sw = xp.sqrt(scipy_loss.hessian_diag(r))
        J = DiagonalOperator(sw) @ J if isinstance(J, LinearOperator) else sw[:, None] * J
        gy = p1 * r
        g = J.rmatvec(gy / sw) if isinstance(J, LinearOperator) else (gy / sw) @ J
    else:
        g = J.rmatvec(r) if isinstance(J, LinearOperator) else r @ J
    status = Status[res.termination]
    code = STATUS_CODES.get(status, OTHER_FAILURE)
    message = _MESSAGES[code] if code in _MESSAGES and status.success else res.message
    if status is Status.MAXITER:
        message = res.message
    vg = g
    if box is not None:  # SciPy trf's optimality ‖v ⊙ g‖∞ (Coleman-Li v)
        lb, ub = (xp.asarray(b, dtype=xs.dtype, device=B.device(xs)) for b in box)
        vg = cl_scaling(xp, xs, g, lb, ub)[0] * g
    out = OptimizeResult(
        x=xs, cost=float(res.fun), fun=r, jac=J, grad=g,
        optimality=float(xp.max(xp.abs(vg))) if g.shape[0] else 0.0,
        active_mask=res.get("active_mask", xp.zeros(n, dtype=xp.int64, device=B.device(x))),
        nfev=res.nfev, njev=None if fd else res.njev, status=code,
        message=message, success=code > 0, nit=res.nit, termination=res.termination,
        nk_status=res.status, method=res.method)
    return out


def _start(x0: Any) -> Any:
    """``x0`` as a 1-D real floating array (SciPy's checks; lists become float64 NumPy)."""
    if not hasattr(x0, "shape") or isinstance(x0, np.generic):
        if np.iscomplexobj(x0):
            raise ValueError("x0 must be real")
        x0 = np.asarray(x0, dtype=np.float64)
    xp = B.array_namespace(x0)
    if xp.isdtype(x0.dtype, "complex floating"):
        raise ValueError("x0 must be real")
    if not xp.isdtype(x0.dtype, "real floating"):
        x0 = xp.astype(x0, xp.float64)
    if len(x0.shape) > 1:
        raise ValueError(f"x0 must have at most 1 dimension, got shape {tuple(x0.shape)}")
    x = xp.reshape(x0, (-1,))
    if hasattr(x, "detach"):
        x = x.detach()
    return xp.asarray(x, copy=True)


def _x_scale(x_scale: Any, n: int) -> np.ndarray | None:
    """``None`` for Jacobian scaling, else the positive scale array (float64 NumPy, the
    user's values)."""
    if x_scale is None or (isinstance(x_scale, str) and x_scale == "jac"):
        return None
    try:
        s = np.asarray(B.to_numpy(x_scale) if hasattr(x_scale, "shape") else x_scale,
                       dtype=float)
        valid = bool(np.all(np.isfinite(s)) and np.all(s > 0))
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ValueError(f"x_scale must be 'jac' or array_like with positive numbers, got "
                         f"{x_scale!r}")
    s = np.resize(s, n) if s.ndim == 0 else s
    if s.shape != (n,):
        raise ValueError(f"inconsistent shapes between x_scale {s.shape} and x0 ({n},)")
    return s


def _tolerances(ftol: Any, xtol: Any, gtol: Any, method: str, eps: float = _EPS) -> dict:
    """SciPy's ``check_tolerance``: ``None`` is 0; below ε warns, and ``'lm'`` needs each ≥ ε.
    For a working precision ``eps`` above float64's the defaults (:data:`DEFAULT_TOL`) are
    × √(eps/ε₆₄), as ``minimize``'s (1e-8 → 2.3e-4 in float32); given values stay."""
    out = {}
    for name, tol in (("ftol", ftol), ("xtol", xtol), ("gtol", gtol)):
        if tol is DEFAULT_TOL:
            tol = float(tol) * math.sqrt(max(eps, _EPS) / _EPS)
        if isinstance(tol, (str, bytes, bool)):
            raise ValueError(f"{name} must be a non-negative finite number or None, got {tol!r}")
        tol = 0.0 if tol is None else float(tol)
        if not tol >= 0 or math.isinf(tol):
            raise ValueError(f"{name} must be a non-negative finite number or None, got {tol}")
        if tol < _EPS and method != "lm":
            warnings.warn(f"setting {name} below the machine epsilon ({_EPS:.2e}) effectively "
                          f"disables the corresponding termination condition", stacklevel=3)
        out[name] = tol
    if method == "lm" and min(out.values()) < _EPS:
        raise ValueError(f"all tolerances must be at least the machine epsilon ({_EPS:.2e}) for "
                         f"method 'lm', got {out}")
    if max(out.values()) < _EPS:
        raise ValueError(f"at least one of the tolerances must be at least the machine epsilon "
                         f"({_EPS:.2e})")
    return out


def _final_jacobian(fun: Callable, jac: Any, args: tuple, kwargs: dict, x: Any, box: Any,
                    xp: Any, diff_step: float | None) -> Any:
    """:math:`J` at the solution ``x``, dense ``(m, n)`` or an operator, differences within
    the box ``box`` with the relative steps ``diff_step``; not counted in ``nfev``/``njev``
    (SciPy's ``'lm'`` does not count it either)."""
    model = _Residual(fun, jac, args, kwargs, None, xp)
    pjac = model.dense_jacobian if callable(jac) else jac
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FiniteDifferenceWarning)
        problem = OutputProblem(model, x, (x.shape[0],), (), pjac, xp=xp)
    if box is not None:
        problem.bounds = tuple(xp.asarray(b, dtype=x.dtype, device=B.device(x)) for b in box)
    problem.diff_step = diff_step
    problem.outputs(x)  # sets m; 2-point differences reuse it
    return problem.jacobian(x)
