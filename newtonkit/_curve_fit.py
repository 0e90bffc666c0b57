r"""``newtonkit.curve_fit``: SciPy's ``curve_fit`` on :func:`newtonkit.least_squares`.

The fit minimises :math:`\tfrac12\|W(f(x_{data}, p) - y)\|^2` (or a robust loss of it) with
the whitening :math:`W = \mathrm{diag}(1/\sigma)` (1-D ``sigma``) or :math:`W = L^{-1}`,
:math:`LL^T = \Sigma` (2-D ``sigma``, a covariance).  The covariance of the parameters is

.. math::  \mathrm{pcov} = s^2\,(J^TJ)^{-1} = s^2\, V \Sigma^{-2} V^T,\qquad
           s^2 = \frac{\sum_i \tilde r_i^2}{m - n}

from the SVD :math:`J = U\Sigma V^T` of the whitened Jacobian at the solution (``s² = 1`` with
``absolute_sigma=True``), as SciPy computes it.
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Callable
from typing import Any

import array_api_compat
import numpy as np
import scipy.optimize

from . import _backend as B
from ._bounds import as_arrays
from ._least_squares import least_squares
from .operators import LinearOperator
from .problems._registry import get_autodiff

__all__ = ["curve_fit"]


def _lmdif_step(xp: Any, dtype: Any) -> float:
    """``diff_step`` of ``'lm'`` without a Jacobian: √ε, MINPACK ``lmdif``'s relative steps
    √ε·|p_j| (√ε at p_j = 0), which SciPy's ``curve_fit`` takes through ``leastsq``; SciPy's
    default √ε·max(1, |p_j|) is far larger than a parameter of scale ≪ 1 (a time constant of
    1e-9 s got a step fifteen times itself, and its fit stopped short of the minimum)."""
    return math.sqrt(float(xp.finfo(dtype).eps))


def curve_fit(f: Callable, xdata: Any, ydata: Any, p0: Any = None, sigma: Any = None,
              absolute_sigma: bool = False, check_finite: bool | None = None,
              bounds: Any = (-np.inf, np.inf), method: str | None = None, jac: Any = None, *,
              full_output: bool = False, nan_policy: str | None = None, batch: bool = False,
              **kwargs: Any) -> tuple:
    r"""Fit ``f(xdata, *p) ≈ ydata`` by nonlinear least squares (SciPy's ``curve_fit``).

    Parameters
    ----------
    f : callable
        The model ``f(xdata, p_1, ..., p_n)``, returning ydata's shape (or something that
        broadcasts to it, such as a scalar).
    xdata : any
        Passed to ``f`` unchanged, except that lists, tuples and NumPy arrays become float
        arrays of ``ydata``'s backend (and are checked with ``check_finite``).
    ydata : array_like
        The data, ``m`` values (any shape; NumPy data are cast to float64, as SciPy does).
        A torch tensor keeps its dtype and device, and ``f`` is differentiated by autograd
        when ``jac`` is omitted.
    p0 : array_like, optional
        Start; default (their number read from ``f``'s signature) SciPy's: ones, the
        midpoint of a finite box, ``lb + 1`` or ``ub − 1`` with one finite side.
    sigma : array_like, optional
        1-D (or a scalar): standard deviations, residuals ``(f - y)/σ`` (``σ > 0``).  2-D
        ``(m, m)``: the covariance of ``ydata`` (symmetric positive definite), residuals
        :math:`L^{-1}(f - y)` with :math:`LL^T = \Sigma`.
    absolute_sigma : bool
        ``True``: ``sigma`` is absolute, ``pcov = (JᵀJ)⁻¹``; ``False``: only relative,
        ``pcov`` is scaled by the reduced χ², ``s² = Σ r̃²/(m − n)``.
    check_finite : bool, optional
        Raise on NaN or inf in ``ydata`` and array ``xdata``; default ``True`` unless
        ``nan_policy`` is given.
    bounds : 2-tuple or scipy.optimize.Bounds
        ``(lb, ub)``, scalars or arrays of size n, ``±inf`` a free side (see
        :func:`newtonkit.least_squares`); ``p0`` must lie inside.
    method : {None, 'lm', 'trf', 'dogbox', 'gn', 'hig'}
        Default ``'lm'``, or ``'trf'`` when a bound is finite (SciPy's rule); ``'lm'`` with
        finite bounds raises ``ValueError`` as in SciPy (``'gn'`` and ``'hig'`` take bounds:
        ``'gn'`` runs ``'trf'``, ``'hig'`` projects its steps).
    jac : callable, str or None
        ``jac(xdata, *p) -> (m, n)`` of the *unweighted* model (whitened here), ``'2-point'``
        / ``'3-point'``, or ``None``: autograd on torch, ``'2-point'`` otherwise.
    full_output : bool
        Also return ``infodict`` (``nfev``, ``fvec`` the whitened residuals, ``njev``),
        ``mesg`` and ``ier`` (the :func:`~newtonkit.least_squares` status).
    nan_policy : {None, 'raise', 'omit'}
        With ``check_finite=False``: ``'raise'`` raises on NaN in the data, ``'omit'`` drops
        the points with a NaN (in ``ydata`` or in any coordinate of ``xdata``'s last axis, and
        the matching entries of ``sigma``).  ``'propagate'`` is not supported (as in SciPy).
    batch : bool
        Fit B data sets at once (:func:`newtonkit.minimize` with ``batch=True``): ``ydata``
        ``(B, m)``, one data set a row, on the shared ``xdata``; ``f`` is called with each
        parameter as a column ``(b, 1)`` and must return ``(b, m)`` (elementwise models such as
        ``a * exp(-b * x) + c`` do so as written); ``p0`` ``(n,)`` or ``(B, n)``; ``sigma``
        a scalar, ``(m,)`` or ``(B, m)`` standard deviations (no covariance matrices);
        ``jac(xdata, *p) -> (b, m, n)``, ``'2-point'``/``'3-point'``, or ``None`` (torch:
        autograd through ``torch.func``; else ``'2-point'``).  Returns ``popt`` ``(B, n)`` and
        ``pcov`` ``(B, n, n)``; rows whose fit did not converge are NaN (one
        ``OptimizeWarning`` says how many, instead of SciPy's ``RuntimeError``), rows whose
        covariance cannot be estimated ``inf`` (one ``OptimizeWarning`` says how many).  With
        ``full_output`` ``infodict`` holds per-row arrays ``nfev``, ``njev``, ``fvec``,
        ``status``, ``success``, and ``mesg`` is the batch summary, ``ier`` the statuses.
        Bounds (shared or ``(B, n)``): a projected Gauss-Newton method (default, or
        ``method='gn'``; ``'lm'`` with bounds raises as in SciPy), see
        ``docs/least_squares.md``.  ``nan_policy='omit'`` and ``x_scale`` are not batched.
    **kwargs
        Passed to :func:`newtonkit.least_squares` (``ftol``, ``xtol``, ``gtol``, ``loss``,
        ``f_scale``, ``x_scale``, ``diff_step``, ``max_nfev``; ``maxfev`` is read as
        ``max_nfev``).  The default budget of ``'lm'`` is SciPy ``curve_fit``'s
        (``leastsq``'s): 100·(n + 1) evaluations of ``f`` with a Jacobian, 200·(n + 1) with
        differences (whose evaluations it counts), and so are its difference steps,
        ``diff_step=√ε`` (relative, as MINPACK's ``lmdif``); other methods take
        :func:`newtonkit.least_squares`' defaults.

    Returns
    -------
    popt : array (n,)
        The fitted parameters (ydata's backend).
    pcov : array (n, n)
        Their covariance; all ``inf`` with an ``OptimizeWarning`` when it cannot be estimated:
        ``m ≤ n`` (without ``absolute_sigma``), or a Jacobian of numerical rank below ``n``
        (singular values at most ``ε·max(m, n)·s_max``, SciPy's cut-off).
    infodict, mesg, ier :
        With ``full_output=True``.

    Raises
    ------
    RuntimeError
        When the fit does not converge (``least_squares`` reports no success), as SciPy.
        Unlike SciPy, also for a model that ignores a parameter when the Jacobian is a
        difference: its column reads exactly 0 and the stop proves nothing about it
        (``FD_ZERO_COLUMN``; SciPy returns an ``inf`` covariance).  Pass ``jac``, or drop
        the parameter.
    ValueError
        Bad input: the data, ``sigma``, ``nan_policy``, a model output of the wrong shape.
    """
    if batch:
        return _curve_fit_batch(f, xdata, ydata, p0, sigma, absolute_sigma, check_finite,
                                bounds, method, jac, full_output, nan_policy, kwargs)
    xp = _namespace(ydata)
    ydata = _as_array(xp, ydata, None, "ydata")
    if p0 is None:
        n = _count_parameters(f)
    else:  # (a list p0 takes ydata's dtype and device on torch, float64 on NumPy)
        p0 = xp.reshape(_as_array(xp, p0, ydata, "p0"), (-1,))
        n = p0.shape[0]
    if check_finite is None:
        check_finite = nan_policy is None
    if check_finite and not B.all_finite(xp, ydata):
        raise ValueError("ydata contains NaN or inf; remove them or pass check_finite=False "
                         "with nan_policy='omit'")
    if isinstance(xdata, (list, tuple, np.ndarray)) or _is_array_of(xp, xdata):
        xdata = _as_array(xp, xdata, ydata, "xdata")
        if check_finite and not B.all_finite(xp, xdata):
            raise ValueError("xdata contains NaN or inf; remove them or pass check_finite=False "
                             "with nan_policy='omit'")
    if _size(ydata) == 0:
        raise ValueError("ydata must not be empty")
    if not check_finite and nan_policy is not None:
        xdata, ydata, sigma = _nan_policy(xp, nan_policy, xdata, ydata, sigma)
    m = _size(ydata)
    whiten = _whitening(xp, sigma, ydata, m)
    lb, ub = _bound_arrays(bounds, n)
    bounded = bool(np.any(np.isfinite(lb) | np.isfinite(ub)))
    if p0 is None:  # SciPy's _initialize_feasible: ones, or inside the bounds
        p0 = xp.asarray(_initialize_feasible(lb, ub), dtype=ydata.dtype,
                        device=B.device(ydata))
    if method is None:
        method = "trf" if bounded else "lm"
    if bounded and isinstance(method, str) and method.lower() in ("lm", "levenberg-marquardt"):
        raise ValueError("Method 'lm' only works for unconstrained problems. Use 'trf' or "
                         "'dogbox' instead.")
    if "args" in kwargs:
        raise ValueError("'args' is not a supported keyword argument of curve_fit (bind extra "
                         "data into f)")
    if "maxfev" in kwargs:
        kwargs.setdefault("max_nfev", kwargs.pop("maxfev"))

    def residual(p: Any) -> Any:
        y = f(xdata, *[p[i] for i in range(n)])
        if not hasattr(y, "shape"):
            y = xp.asarray(y, dtype=ydata.dtype, device=B.device(ydata))
        try:
            d = y - ydata
        except (ValueError, RuntimeError):  # shapes that do not broadcast
            d = y
        if tuple(d.shape) != tuple(ydata.shape):
            raise ValueError(f"f(xdata, *p) returned shape {tuple(y.shape)}, which does not "
                             f"match ydata's shape {tuple(ydata.shape)}")
        return whiten(xp.reshape(d, (-1,)))

    if callable(jac):
        model_jac = jac

        def jac(p: Any) -> Any:  # the whitened Jacobian of the residual
            J = model_jac(xdata, *[p[i] for i in range(n)])
            J = (xp.asarray(J, dtype=ydata.dtype, device=B.device(ydata))
                 if not hasattr(J, "shape") else J)
            if tuple(J.shape) != (m, n):
                raise ValueError(f"jac(xdata, *p) returned shape {tuple(J.shape)}, expected "
                                 f"{(m, n)}")
            return whiten(J)
    elif jac is None and get_autodiff(xp) is None:
        jac = "2-point"
    if str(method).lower() in ("lm", "levenberg-marquardt"):
        kwargs.setdefault("max_nfev", _lm_budget(n, isinstance(jac, str)))
        if isinstance(jac, str):
            kwargs.setdefault("diff_step", _lmdif_step(xp, ydata.dtype))
    res = least_squares(residual, p0, jac=jac, bounds=bounds, method=method, **kwargs)
    if not res.success:
        raise RuntimeError(f"Optimal parameters not found: {res.message}")
    popt = res.x
    pcov = covariance(xp, res.jac, n)
    warn = pcov is None
    if not warn and not absolute_sigma:
        if m > n:
            pcov = pcov * (2.0 * res.cost / (m - n))
        else:
            warn = True
    if warn:
        pcov = xp.full((n, n), float("inf"), dtype=popt.dtype, device=B.device(popt))
        warnings.warn("Covariance of the parameters could not be estimated",
                      scipy.optimize.OptimizeWarning, stacklevel=2)
    if full_output:
        info = {"nfev": res.nfev, "njev": res.njev, "fvec": res.fun}
        return popt, pcov, info, res.message, res.status
    return popt, pcov


def _bound_arrays(bounds: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lb, ub)`` of ``bounds`` (a pair or ``scipy.optimize.Bounds``) as float64 arrays of
    size ``n`` (scalars broadcast), for the defaults only; ``least_squares`` checks them."""
    lb, ub = as_arrays(bounds)
    lb, ub = (np.full(n, b) if b.size == 1 else b.reshape(-1) for b in (lb, ub))
    if lb.shape != (n,) or ub.shape != (n,):
        raise ValueError(f"inconsistent shapes between bounds {lb.shape}, {ub.shape} and the "
                         f"{n} parameters")
    return lb, ub


def _initialize_feasible(lb: np.ndarray, ub: np.ndarray) -> np.ndarray:
    """SciPy's default ``p0``: the midpoint of a finite box, ``lb + 1`` / ``ub − 1`` with one
    finite side, 1 where both are infinite."""
    p0 = np.ones_like(lb)
    lf, uf = np.isfinite(lb), np.isfinite(ub)
    p0[lf & uf] = 0.5 * (lb[lf & uf] + ub[lf & uf])
    p0[lf & ~uf] = lb[lf & ~uf] + 1
    p0[~lf & uf] = ub[~lf & uf] - 1
    return p0


def covariance(xp: Any, J: Any, n: int) -> Any:
    r""":math:`(J^TJ)^{-1} = V\Sigma^{-2}V^T` from the SVD of ``J``, or ``None`` when ``J`` has
    numerical rank below ``n`` (singular values at most ``ε·max(m, n)·s_max``, SciPy's cut-off)
    or the result is not finite."""
    if isinstance(J, LinearOperator):
        J = J.to_dense()
    _, s, Vt = B.svd(xp, J)
    if s.shape[0] < n:
        return None
    eps = float(xp.finfo(J.dtype).eps)
    threshold = eps * max(J.shape) * float(s[0])
    if not float(s[n - 1]) > threshold:
        return None
    pcov = xp.matrix_transpose(Vt) / (s * s)[None, :] @ Vt
    return pcov if B.all_finite(xp, pcov) else None


_BATCH_KWARGS = {"ftol", "xtol", "gtol", "loss", "f_scale", "max_nfev", "maxfev"}


def _curve_fit_batch(f: Callable, xdata: Any, ydata: Any, p0: Any, sigma: Any,
                     absolute_sigma: bool, check_finite: bool | None, bounds: Any,
                     method: str | None, jac: Any, full_output: bool, nan_policy: str | None,
                     kwargs: dict) -> tuple:
    """``curve_fit(..., batch=True)``: B data sets, the rows of ``ydata`` (see ``batch``)."""
    from ._batch import _Evaluator
    from ._least_squares import DEFAULT_TOL, _tolerances
    from ._minimize import minimize
    from .problems import Composite, RobustLoss

    xp = _namespace(ydata)
    Y = _as_array(xp, ydata, None, "ydata")
    if len(Y.shape) != 2 or Y.shape[0] == 0 or Y.shape[1] == 0:
        raise ValueError(f"with batch=True ydata must be (B, m): one non-empty data set a row, "
                         f"got shape {tuple(Y.shape)}")
    Bn, m = Y.shape
    unknown = sorted(set(kwargs) - _BATCH_KWARGS)
    if unknown:
        raise ValueError(f"curve_fit(batch=True) does not take {unknown}; it takes "
                         f"{sorted(_BATCH_KWARGS)}")
    if nan_policy not in (None, "raise"):
        raise ValueError(f"with batch=True nan_policy must be None or 'raise' (rows of "
                         f"different lengths cannot be batched), got {nan_policy!r}")
    if check_finite is None:
        check_finite = True
    if (check_finite or nan_policy == "raise") and not B.all_finite(xp, Y):
        raise ValueError("ydata contains NaN or inf")
    if isinstance(xdata, (list, tuple, np.ndarray)) or _is_array_of(xp, xdata):
        xdata = _as_array(xp, xdata, Y, "xdata")
        if check_finite and not B.all_finite(xp, xdata):
            raise ValueError("xdata contains NaN or inf")
    dev = B.device(Y)
    if p0 is None:
        n = _count_parameters(f)
        lb, ub = _bound_arrays(bounds, n)  # SciPy's default p0 (ones without bounds)
        X0 = xp.asarray(np.tile(_initialize_feasible(lb, ub), (Bn, 1)),
                        dtype=Y.dtype, device=dev)
    else:
        X0 = _as_array(xp, p0, Y, "p0")
        if len(X0.shape) <= 1:
            X0 = xp.broadcast_to(xp.reshape(X0, (1, -1)), (Bn, _size(X0)))
        if len(X0.shape) != 2 or X0.shape[0] != Bn:
            raise ValueError(f"with batch=True p0 must be (n,) or (B, n) with B={Bn}, got "
                             f"shape {tuple(X0.shape)}")
        X0 = xp.asarray(xp.astype(X0, Y.dtype), copy=True)
        n = X0.shape[1]
    W = _batch_weights(xp, sigma, Y)
    data = (Y,) if W is None else (Y, W)

    def columns(X: Any) -> list:
        return [X[:, i:i + 1] for i in range(n)]

    def residual(X: Any, Yr: Any, *Wr: Any) -> Any:
        y = f(xdata, *columns(X))
        d = (xp.asarray(y, dtype=Yr.dtype, device=B.device(Yr)) if not hasattr(y, "shape")
             else y) - Yr
        if tuple(d.shape) != tuple(Yr.shape):
            raise ValueError(f"with batch=True f(xdata, *p) with p columns (b, 1) must return "
                             f"(b, m) = {tuple(Yr.shape)}, got {tuple(getattr(y, 'shape', ()))}")
        return d if not Wr else Wr[0] * d

    if callable(jac):
        model_jac = jac

        def jac(X: Any, Yr: Any, *Wr: Any) -> Any:
            J = model_jac(xdata, *columns(X))
            if tuple(J.shape) != (X.shape[0], m, n):
                raise ValueError(f"with batch=True jac(xdata, *p) must return (b, m, n) = "
                                 f"{(X.shape[0], m, n)}, got {tuple(J.shape)}")
            return J if not Wr else Wr[0][:, :, None] * J
    elif jac is None and not array_api_compat.is_torch_array(Y):
        jac = "2-point"
    from ._batch import _batch_bounds

    box = _batch_bounds(bounds, X0)
    name = {"lm": "lm", "gn": "gn", "gauss-newton": "gn", "hig": "hig"}.get(
        ("lm" if box is None else "gn") if method is None else str(method).lower())
    if name is None:
        raise ValueError(f"with batch=True method must be 'lm', 'gn' or 'hig', got {method!r}")
    if box is not None and name != "gn":
        raise ValueError(f"Method {method!r} only works for unconstrained problems; with bounds "
                         f"and batch=True use 'gn' (projected Gauss-Newton, the default)")
    tols = _tolerances(*(kwargs.get(k, DEFAULT_TOL) for k in ("ftol", "xtol", "gtol")),
                       "lm" if name == "lm" else "gauss-newton", float(xp.finfo(Y.dtype).eps))
    fd = isinstance(jac, str)
    maxfev = kwargs.get("max_nfev", kwargs.get("maxfev"))
    options: dict = {**tols, "maxfev": int(maxfev) if maxfev is not None else
                     _lm_budget(n, fd) if name == "lm" else
                     (100 * n * (n + 1) if fd else 100 * n)}
    if fd:
        options["diff_step"] = kwargs.get("diff_step",
                                          _lmdif_step(xp, Y.dtype) if name == "lm" else None)
    if name == "lm":
        options["scaling"] = True
    elif name == "gn":
        options["maxiter"] = 100 * n
    loss, f_scale = kwargs.get("loss", "linear"), kwargs.get("f_scale", 1.0)
    robust = not (isinstance(loss, str) and loss == "linear")
    fun = Composite(residual, RobustLoss(loss, f_scale)) if robust else residual
    res = minimize(fun, X0, method=name, jac=jac, args=data, options=options, batch=True,
                   bounds=None if box is None else box)
    # the whitened Jacobian at the solutions (not counted in nfev), for the covariance
    ev = _Evaluator(residual, data, jac, None, "outputs", xp, X0, False)
    ev.diff_step = options.get("diff_step")
    if box is not None:  # its 2-point steps turn back at an upper bound, as the fit's do
        ev.bounds = tuple(xp.asarray(b, dtype=X0.dtype, device=dev) for b in box)
    rows_np = np.arange(Bn)
    rows = xp.asarray(rows_np, device=dev)
    J = ev.first(res["x"], res["residual"], rows, rows_np)
    if robust:  # SciPy's modified Jacobian (no curvature floor), as least_squares returns
        J = xp.sqrt(RobustLoss(loss, f_scale, floor=0.0).hessian_diag(res["residual"]))[
            :, :, None] * J
    pcov, ok = batch_covariance(xp, J, n)
    if not absolute_sigma:
        if m > n:
            pcov = pcov * (2.0 * res["fun"] / (m - n))[:, None, None]
        else:
            ok = np.zeros(Bn, dtype=bool)
    failed = ~res["success"]
    popt = res["x"]
    if failed.any():
        bad = xp.asarray(failed, device=dev)
        popt = xp.where(bad[:, None], xp.full_like(popt, float("nan")), popt)
        pcov = xp.where(bad[:, None, None], xp.full_like(pcov, float("nan")), pcov)
        warnings.warn(f"Optimal parameters not found for {int(failed.sum())} of {Bn} data sets "
                      f"(rows {_rows(failed)}): their popt and pcov are NaN; {res['message']}",
                      scipy.optimize.OptimizeWarning, stacklevel=3)
    inf_rows = ~ok & ~failed
    if inf_rows.any():
        bad = xp.asarray(inf_rows, device=dev)
        pcov = xp.where(bad[:, None, None], xp.full_like(pcov, float("inf")), pcov)
        warnings.warn(f"Covariance of the parameters could not be estimated for "
                      f"{int(inf_rows.sum())} of {Bn} data sets (rows {_rows(inf_rows)}): "
                      f"their pcov is inf", scipy.optimize.OptimizeWarning, stacklevel=3)
    if full_output:
        info = {"nfev": res["nfev"], "njev": res["njev"], "fvec": res["residual"],
                "status": res["status"], "success": res["success"]}
        return popt, pcov, info, res["message"], res["status"]
    return popt, pcov


def _rows(mask: np.ndarray, k: int = 5) -> str:
    idx = np.nonzero(mask)[0]
    return ", ".join(str(int(i)) for i in idx[:k]) + (", ..." if idx.size > k else "")


def batch_covariance(xp: Any, J: Any, n: int) -> tuple[Any, np.ndarray]:
    r"""``(pcov, ok)``: :math:`(J_b^TJ_b)^{-1} = V\Sigma^{-2}V^T` for every ``J_b`` of ``J``
    ``(B, m, n)`` from one batched SVD, and ``ok`` (NumPy bool (B,)) false where :func:`covariance`
    gives ``None``: numerical rank below ``n`` (SciPy's cut-off ``ε·max(m, n)·s_max``) or a
    non-finite result (those rows of ``pcov`` are meaningless)."""
    Bn, m = J.shape[0], J.shape[1]
    finite = xp.all(xp.isfinite(xp.reshape(J, (Bn, -1))), axis=1)
    J = xp.where(finite[:, None, None], J, xp.zeros_like(J))  # keeps LAPACK calm
    _, s, Vt = xp.linalg.svd(J, full_matrices=False)
    if s.shape[1] < n:
        return (xp.full((Bn, n, n), float("inf"), dtype=J.dtype, device=B.device(J)),
                np.zeros(Bn, dtype=bool))
    eps = float(xp.finfo(J.dtype).eps)
    rank_ok = s[:, n - 1] > eps * max(m, n) * s[:, 0]
    safe = xp.where(rank_ok[:, None], s, xp.ones_like(s))
    pcov = xp.matrix_transpose(Vt) / (safe * safe)[:, None, :] @ Vt
    ok = finite & rank_ok & xp.all(xp.isfinite(xp.reshape(pcov, (Bn, -1))), axis=1)
    return pcov, np.asarray(B.to_numpy(ok), dtype=bool)


def _batch_weights(xp: Any, sigma: Any, Y: Any) -> Any:
    """``1/σ`` as ``(B, m)`` (or ``None``) for ``sigma`` a scalar, ``(m,)`` or ``(B, m)``."""
    if sigma is None:
        return None
    s = _as_array(xp, sigma, Y, "sigma")
    Bn, m = Y.shape
    if _size(s) == 1:
        s = xp.reshape(s, (1, 1))
    elif tuple(s.shape) == (m,):
        s = s[None, :]
    elif tuple(s.shape) != (Bn, m):
        raise ValueError(f"with batch=True sigma must be a scalar, ({m},) or ({Bn}, {m}) "
                         f"standard deviations (covariance matrices are not batched), got "
                         f"shape {tuple(s.shape)}")
    if not B.all_finite(xp, s):
        raise ValueError("sigma contains NaN or inf")
    if not bool(xp.all(s > 0)):
        raise ValueError("sigma (standard deviations) must be positive")
    return xp.asarray(xp.broadcast_to(1.0 / xp.astype(s, Y.dtype), (Bn, m)), copy=True)


def _namespace(ydata: Any) -> Any:
    if hasattr(ydata, "shape") and not isinstance(ydata, (np.ndarray, np.generic)):
        return B.array_namespace(ydata)
    return B.array_namespace(np.zeros(0))


def _is_array_of(xp: Any, a: Any) -> bool:
    return (hasattr(a, "shape") and not isinstance(a, np.generic)
            and B.backend_name(B.array_namespace(a)) == B.backend_name(xp))


def _as_array(xp: Any, a: Any, like: Any, name: str) -> Any:
    """``a`` as a real floating array of ``xp`` (NumPy: float64; else ``like``'s dtype or
    its own floating dtype) on ``like``'s device."""
    if isinstance(a, np.ndarray) or not hasattr(a, "shape"):
        try:
            a = np.asarray(a, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be numeric array_like") from None
        if B.backend_name(xp) == "numpy":
            return a
        dtype = like.dtype if like is not None else xp.float64
        kw = {} if like is None else {"device": B.device(like)}
        return xp.asarray(a, dtype=dtype, **kw)
    if B.backend_name(B.array_namespace(a)) != B.backend_name(xp):
        raise TypeError(f"{name} is a {B.backend_name(B.array_namespace(a))} array but ydata "
                        f"is {B.backend_name(xp)}; pass both on one backend")
    if hasattr(a, "detach"):
        a = a.detach()
    if not xp.isdtype(a.dtype, "real floating"):
        a = xp.astype(a, like.dtype if like is not None else xp.float64)
    return a


def _size(a: Any) -> int:
    return int(np.prod(tuple(a.shape), dtype=np.int64))


def _count_parameters(f: Callable) -> int:
    try:
        params = inspect.signature(f).parameters.values()
    except (TypeError, ValueError):
        raise ValueError("Unable to determine number of fit parameters; pass p0") from None
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    k = sum(1 for p in params if p.kind in kinds)
    if k < 2:
        raise ValueError("Unable to determine number of fit parameters from f's signature; "
                         "pass p0")
    return k - 1


def _nan_policy(xp: Any, policy: Any, xdata: Any, ydata: Any, sigma: Any) -> tuple:
    if policy == "propagate":
        raise ValueError("nan_policy='propagate' is not supported by curve_fit")
    if policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy must be one of None, 'raise', 'omit', got {policy!r}")
    x_arr = _is_array_of(xp, xdata)
    bad = xp.isnan(ydata)
    if x_arr:
        xb = xp.isnan(xdata)
        if len(xb.shape) > 1:
            xb = xp.any(xb, axis=tuple(range(len(xb.shape) - 1)))
        if tuple(xb.shape) != tuple(bad.shape):
            raise ValueError(f"nan_policy='omit' needs xdata's last axis {tuple(xb.shape)} to "
                             f"match ydata {tuple(bad.shape)}")
        bad = bad | xb
    if not bool(xp.any(bad)):
        return xdata, ydata, sigma
    if policy == "raise":
        raise ValueError("The input contains nan values (nan_policy='raise')")
    keep = ~bad
    if len(ydata.shape) != 1:
        raise ValueError("nan_policy='omit' needs 1-D ydata")
    if x_arr:
        xdata = xdata[..., keep]
    ydata = ydata[keep]
    if sigma is not None:
        s = _as_array(xp, sigma, ydata, "sigma")
        if len(s.shape) == 1 and s.shape[0] == keep.shape[0]:
            sigma = s[keep]
        elif len(s.shape) == 2 and s.shape[0] == keep.shape[0]:
            sigma = s[keep, :][:, keep]
    return xdata, ydata, sigma


def _whitening(xp: Any, sigma: Any, ydata: Any, m: int) -> Callable[[Any], Any]:
    """The map ``d ↦ W d`` (rows of a matrix too) of a checked ``sigma``."""
    if sigma is None:
        return lambda d: d
    s = _as_array(xp, sigma, ydata, "sigma")
    if not B.all_finite(xp, s):
        raise ValueError("sigma contains NaN or inf")
    if _size(s) == 1 or tuple(s.shape) == (m,):
        s = xp.reshape(s, (-1,))
        if not bool(xp.all(s > 0)):
            raise ValueError("sigma (standard deviations) must be positive")
        w = 1.0 / s
        return lambda d: w * d if len(d.shape) == 1 else w[:, None] * d
    if tuple(s.shape) == (m, m):
        # (the Cholesky factor reads one triangle only: an asymmetric sigma, a factor passed
        # for the covariance, would be read as another matrix; a computed covariance's own
        # rounding, about m·ε·max|σ|, is far below the √ε·max|σ| allowed)
        big = float(xp.max(xp.abs(s)))
        tol = float(xp.finfo(s.dtype).eps) ** 0.5 * big
        if float(xp.max(xp.abs(s - xp.matrix_transpose(s)))) > tol:
            raise ValueError("sigma (a covariance matrix) must be symmetric")
        L, ok = B.cholesky(xp, s)
        if not ok:
            raise ValueError("sigma (a covariance matrix) must be symmetric positive definite")
        return lambda d: B.solve_triangular(xp, L, d, lower=True)
    raise ValueError(f"sigma has shape {tuple(s.shape)}; expected ({m},) standard deviations or "
                     f"({m}, {m}) a covariance matrix, for {m} data points")


def _lm_budget(n: int, fd: bool) -> int:
    """SciPy ``curve_fit``'s default ``maxfev`` for ``'lm'`` (``leastsq``'s): 100·(n + 1) with a
    Jacobian, 200·(n + 1) with difference Jacobians."""
    return (200 if fd else 100) * (n + 1)
