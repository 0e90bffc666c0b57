"""``newtonkit.minimize``: dispatch, the one iteration loop, and the result.

The loop owns every concern that is not a method's own: the iteration and evaluation budgets
(``maxiter``, ``maxfev``), the non-finite check on accepted iterates, the divergence rules of
:mod:`newtonkit._status` (no success above ``f(x0)``, no ftol/xtol stop right after a step that
raised the objective, the best accepted iterate returned on a fault), callbacks (SciPy ≥ 1.11
``callback(intermediate_result)`` and old-style ``callback(x)``; ``StopIteration`` ends the run
with status 99), ``disp`` and the progress bar, ``KeyboardInterrupt`` (status 98), an exception
(re-raised with the run so far attached), and building the :class:`OptimizeResult`.
"""

from __future__ import annotations

import inspect
import math
import time
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import array_api_compat
import numpy as np
import scipy.optimize

from . import _backend as B
from ._bounds import active_mask, parse_bounds
from ._status import Status, attach_result
from .methods import lookup
from .methods._base import State, boolean, optional_nonneg_float, optional_positive_int
from .problems import Composite, FiniteDifferenceWarning, OutputProblem, ScalarProblem
from .problems._common import BudgetExhausted

__all__ = ["minimize", "OptimizeResult"]

#: Options every method understands (the driver's).
COMMON_OPTIONS = ("maxiter", "maxfev", "gtol", "ftol", "xtol", "disp", "progress")
_EPS64 = float(np.finfo(np.float64).eps)
#: The least relative distance to a bound at which ``active_mask`` marks it active (SciPy reads
#: ``xtol``; trf's iterates stay a few ulps inside the box, so ``xtol = 0`` needs a floor).
_ACTIVE_RTOL = 1e-12
#: A run shows a progress bar (with ``disp >= 1`` and ``progress=None``) once it has taken
#: this many seconds.
PROGRESS_AFTER_S = 2.0


class OptimizeResult(scipy.optimize.OptimizeResult):
    """The result of :func:`newtonkit.minimize` (a ``scipy.optimize.OptimizeResult``).

    Attributes
    ----------
    x : array
        The solution: the last accepted iterate, or on a fault (status 3, 5, 97, 98) the best
        accepted one (lowest objective); shape, backend, dtype and device of ``x0``, never
        attached to an autograd graph (every array of the result is detached).
    fun : float
        Objective value at ``x`` (``½‖r‖²`` for a residual, ``L(F(x))`` for a Composite).
    jac : array or None
        Gradient of the objective at ``x``, shaped like ``x0``.
    nit, nfev, njev, nhev : int
        Accepted iterations; calls of ``fun`` (every one: finite-difference, line-search and
        autodiff calls included; never more than ``maxfev``); Jacobian
        or gradient evaluations; Hessian evaluations (Hessian-vector products for ``hessp``).
    status, success, message :
        SciPy's codes (see :class:`newtonkit._status.Status`): 0 converged, 1 budget
        exhausted, 2 no progress, 3 non-finite values, 4 saddle point (Newton), 5 diverged
        (the objective ended above its value at ``x0``), 98 interrupted, 99
        ``StopIteration`` from the callback; 97 (an exception ended the run) only in the
        result attached to that exception.
    termination : str
        The :class:`~newtonkit._status.Status` name (``"GTOL"``, ``"MAXITER"``, ...).
    method : str
        The method that ran.

    Method extras: ``taus``, ``lambda_min``, ``step_lengths`` (Newton); ``damping``,
    ``gain_ratios``, ``trust_radius`` (LM); ``ranks``, ``singular_values``, ``thresholds``
    (HIG); ``residual`` (a residual problem) or ``outputs`` (a Composite); ``jacobian``, the
    Jacobian at ``x`` (GN, LM, HIG, trf: of the Gauss-Newton residual, or of the model's outputs
    for HIG; dense or an operator; ``None`` where not evaluated there).
    """


def minimize(fun: Callable, x0: Any, method: str | None = None, jac: Any = None,
             hess: Any = None, hessp: Callable | None = None, args: tuple = (),
             tol: float | None = None, callback: Callable | None = None,
             options: Mapping | None = None, *, bounds: Any = None, batch: bool = False,
             vectorize: bool = False) -> OptimizeResult:
    r"""Minimise a scalar objective or a sum of squares with a second-order method.

    Parameters
    ----------
    fun : callable or Composite
        ``"newton"``: scalar objective ``fun(x, *args)``.  ``"gauss-newton"``/``"gn"``,
        ``"lm"``, ``"hig"``: residual ``fun(x, *args) -> r`` (objective :math:`\tfrac12\|r\|^2`)
        or a :class:`~newtonkit.Composite` ``(model, loss)`` (objective :math:`L(F(x))`).
    x0 : array
        Start point, any shape, NumPy / PyTorch / CuPy / array-API array (lists become
        float64 NumPy arrays; integer and boolean arrays become float64, as in SciPy).  Never
        modified, never differentiated through; ``fun`` sees ``x`` of this shape.
    method : str, optional
        ``"newton"``, ``"gauss-newton"`` (``"gn"``), ``"lm"``, ``"hig"`` (case-insensitive).
        Default: ``"lm"`` for a Composite, else ``"newton"``.
    jac : callable, bool, str, array or LinearOperator, optional
        Newton: gradient ``jac(x, *args)``, or ``True`` when ``fun`` returns ``(f, g)``, or
        ``"2-point"``/``"3-point"``.  Least squares: Jacobian of the residual ``jac(x, *args)``
        (an array ``(m, n)`` or a LinearOperator), ``True`` when ``fun`` returns ``(r, J)``
        (one call gives both: ``nfev`` counts the calls, ``njev`` the Jacobians used), a
        constant matrix (taken as dense, as a returned array is) or operator (matrix-free
        routes), or ``"2-point"``/``"3-point"``.  Omitted: the backend's
        autodiff provider, else finite differences with a
        :class:`~newtonkit.problems.FiniteDifferenceWarning`.
    hess, hessp : callable, optional
        Newton only: Hessian ``hess(x, *args)`` (array or LinearOperator) or ``"2-point"``,
        or Hessian-vector product ``hessp(x, p, *args)`` (matrix-free, truncated CG).
    args : tuple
        Extra arguments of ``fun``, ``jac``, ``hess``, ``hessp``.
    tol : float, optional
        Sets ``gtol``, ``ftol`` and ``xtol`` (options given explicitly win).
    callback : callable, optional
        ``callback(intermediate_result)`` (an :class:`OptimizeResult` with ``x``, ``fun``,
        ``jac``, ``nit``, ...) or ``callback(x)``; called after every accepted iteration.
        Raising ``StopIteration`` ends the run (status 99).
    options : dict, optional
        ``maxiter``, ``maxfev``, ``gtol``, ``ftol``, ``xtol``, ``disp`` (0, 1: final
        message, 2: a row per iteration), ``progress`` (``None``: a tqdm bar once a run with
        ``disp >= 1`` takes over 2 s; ``True``/``False``), and the method's own options (see
        the method modules and docs/guide.md).  Copied, never modified.
    bounds : scipy.optimize.Bounds or (lb, ub), optional
        Box constraints :math:`l \le x \le u` (scalars broadcast, ``±inf`` a free side, shape
        of ``x0`` or its size; SciPy's checks: ``lb < ub`` strictly, no NaN, ``x0`` inside,
        else ``ValueError``).  Every evaluated point lies in the box.  ``"lm"``, ``"gn"``
        and ``"trf"`` run the trust-region reflective method (:mod:`newtonkit.methods.trf`,
        Coleman-Li scaling as SciPy's ``least_squares(method="trf")``; ``"lm"`` keeps its
        ``scaling=True``); ``"newton"`` a projected Newton method with an ε-active set
        (Bertsekas 1982; dense Hessians); ``"hig"`` projects each step onto the box.  The
        result gets ``active_mask`` (−1 at a lower bound, +1 at an upper one, 0 free, within
        ``xtol·max(1, |bound|)`` as SciPy; integers on ``x0``'s backend and device).  All
        bounds infinite: the unbounded method, its results unchanged.  With ``batch=True``:
        ``(lb, ub)`` shared ``(n,)`` (or scalars) or per problem ``(B, n)``, methods ``"lm"``
        and ``"gn"`` only, both run a projected Gauss-Newton method (see
        :mod:`newtonkit._batch`).
    batch : bool
        ``x0`` of shape ``(B, n)`` holds B independent problems of one form, solved at once
        (:mod:`newtonkit._batch`): ``fun(X, *args)`` returns ``(B, m)`` residuals or ``(B,)``
        values for any subset of rows, arrays in ``args`` are per-problem (leading dimension
        B).  Returns a :class:`~newtonkit._batch.BatchResult` (fields as arrays over the
        problems).  Methods ``"lm"``, ``"gn"``, ``"hig"``, ``"newton"``, dense derivatives.
    vectorize : bool
        With ``batch=True`` on torch: ``fun`` is written for one problem (``x`` of shape
        ``(n,)``) and is lifted with ``torch.func.vmap``, as are a callable ``jac`` and
        ``hess`` (written for one problem too).

    Returns
    -------
    OptimizeResult
        ``success=True`` only at a point whose objective is at most its value at ``x0``, and
        never from an ftol/xtol test right after an accepted step that raised the objective
        (that test does not count; the run goes on).  A run that ends above ``f(x0)`` has
        status 5 (``DIVERGED``).  On a fault (status 3 non-finite values, 5 divergence, 98
        ``KeyboardInterrupt``) ``x`` is the best accepted iterate (lowest objective, ``x0``
        included) and ``fun``, ``jac`` and the residual are those at ``x``; otherwise ``x`` is
        the last accepted iterate.

    Raises
    ------
    Exception
        An exception raised by ``fun``, a derivative or the callback during the run
        propagates unchanged (as in SciPy), with the run so far attached: ``exc.result`` is
        an :class:`OptimizeResult` at the best accepted iterate with status 97
        (``EXCEPTION``) and a message naming the exception, and a note (Python ≥ 3.11) says
        so.  An exception that already has a ``result`` attribute keeps it.  Exceptions while
        evaluating ``x0`` propagate without a result.
    """
    opts = _copy_options(options)
    if not isinstance(batch, bool) or not isinstance(vectorize, bool):
        raise TypeError(f"batch and vectorize must be True or False, got {batch!r}, "
                        f"{vectorize!r}")
    if batch:
        from ._batch import minimize_batch

        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        if hessp is not None:
            raise ValueError("hessp is not supported with batch=True; pass hess (B, n, n), "
                             "'2-point' or nothing")
        return minimize_batch(fun, x0, method, jac, hess,
                              args if isinstance(args, tuple) else (args,), tol, callback,
                              opts, vectorize, bounds)
    if vectorize:
        raise ValueError("vectorize=True lifts a one-problem fun over a batch; it needs "
                         "batch=True")
    if method is None:
        method = "lm" if isinstance(fun, Composite) else "newton"
    cls = lookup(method)
    cls = cls.select(opts)
    box = start = None
    if bounds is not None:
        start = _start_point(x0)
        box = parse_bounds(bounds, start[1])
        if box is not None:
            cls = cls.bounded(opts)
    known = set(COMMON_OPTIONS) | set(cls.options)
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for method {cls.name!r}; known options: "
                         f"{sorted(known)}")
    if not callable(fun):
        raise TypeError(f"fun must be callable (or a newtonkit.Composite), got "
                        f"{type(fun).__name__}")
    if not isinstance(args, tuple):
        args = (args,)

    if args and isinstance(fun, Composite):
        warnings.warn("args are ignored with a Composite: the model is called as model(x); "
                      "bind extra data into the model object", RuntimeWarning, stacklevel=2)
    xp, x, shape = start if start is not None else _start_point(x0)
    n = x.shape[0]
    common = _common_options(opts, cls, x.dtype, xp, n, tol)
    if box is not None:
        common["bounds"] = _box_on(xp, x, box)
    x0_norm = B.norm(xp, x)  # the xtol tests' floor scales with x (Method.xtol_bound)
    common["x_scale"] = x0_norm if 0.0 < x0_norm < math.inf else 1.0
    method_opts = {k: opt.check(k, opts.get(k, opt.default)) if k in opts else opt.default
                   for k, opt in cls.options.items()}

    if cls.problem_kind == "objective":
        problem = ScalarProblem(fun, x, shape, args, jac, hess, hessp)
    else:
        for name, value in (("hess", hess), ("hessp", hessp)):
            if value is not None:
                warnings.warn(f"{name} is ignored by method {cls.name!r} (it uses the Jacobian "
                              f"of the residual, not the Hessian)", RuntimeWarning, stacklevel=2)
        problem = OutputProblem(fun, x, shape, args, jac, xp=xp)
    for note in problem.notes:
        warnings.warn(note, FiniteDifferenceWarning, stacklevel=2)
    solver = cls(problem, method_opts, common)

    problem.maxfev = common["maxfev"]  # the problem refuses calls of fun beyond it
    problem.bounds = common.get("bounds")  # its difference steps stay in the box
    if "diff_step" in method_opts:  # (the least-squares methods' relative steps)
        problem.diff_step = method_opts["diff_step"]
    try:
        state = solver.init(x)
    except BudgetExhausted:
        raise ValueError(f"maxfev={common['maxfev']} is too small to evaluate fun and its "
                         f"derivatives at x0") from None
    if not math.isfinite(state.f) or (state.g is not None and not solver.finite(state.g)):
        what = "gradient" if math.isfinite(state.f) else f"objective ({state.f})"
        hint = ""
        last = getattr(problem, "_last", None)  # (a residual problem's last (x, r))
        if not math.isfinite(state.f) and last is not None and B.all_finite(xp, last[1]):
            hint = (f" (every residual is finite: ½‖r‖² overflowed {x.dtype}; rescale fun, or "
                    f"work in float64)")
        raise ValueError(f"the {what} is not finite at x0{hint}; start from a point where fun "
                         f"and its derivatives are finite")
    beyond = problem.steps_beyond_x(x)
    if beyond:
        listed = ", ".join(str(j) for j in beyond[:5]) + (", ..." if len(beyond) > 5 else "")
        remedy = ("options['diff_step'] (least_squares' diff_step: steps relative to |x|, e.g. "
                  "1.5e-8), a Jacobian" if isinstance(problem, OutputProblem) else
                  "the derivatives (jac=, hess= or hessp=)")
        warnings.warn(f"the difference steps exceed |x0[j]| for j = {listed} (SciPy's default "
                      f"step η^p·max(1, |x|) at parameters below η^p): those differences are "
                      f"secants over more than the parameters themselves, and the run may stop "
                      f"far from a minimum; pass {remedy}, or rescale x to order 1",
                      FiniteDifferenceWarning, stacklevel=2)
    res = _run(solver, problem, state, shape, common, callback)
    if bounds is not None:
        res["active_mask"] = xp.reshape(_active_mask(xp, res.x, box, common["xtol"]), shape)
    return res


def _active_mask(xp: Any, x: Any, box: tuple[Any, Any] | None,
                 xtol: float) -> Any:
    """:func:`~newtonkit._bounds.active_mask` of ``x`` (compared in float64 on its device)."""
    x = xp.astype(xp.reshape(x, (-1,)), xp.float64)
    if box is None:
        return xp.zeros(x.shape, dtype=xp.int64, device=B.device(x))
    return active_mask(xp, x, *box, rtol=max(xtol, _ACTIVE_RTOL))


def _box_on(xp: Any, x: Any, box: tuple[Any, Any]) -> tuple[Any, Any]:
    """The bounds on ``x``'s backend, dtype and device (``lb < ub`` must survive rounding)."""
    lb, ub = (xp.astype(b, x.dtype) for b in box)
    if not bool(xp.all(lb < ub)):
        raise ValueError(f"bounds: lb < ub does not hold after rounding to {x.dtype}")
    return lb, ub


def _copy_options(options: Mapping | None) -> dict:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise TypeError(f"options must be a dict, got {type(options).__name__}")
    bad = [k for k in options if not isinstance(k, str)]
    if bad:
        raise TypeError(f"option names must be strings, got {bad}")
    return dict(options)


def _start_point(x0: Any) -> tuple[Any, Any, tuple[int, ...]]:
    if not hasattr(x0, "shape") or not hasattr(x0, "dtype") or isinstance(x0, np.generic):
        x0 = np.asarray(x0, dtype=np.float64)
    xp = B.array_namespace(x0)
    x0 = _detached(x0)  # the run never differentiates through x0 (nor does res.x)
    if x0.dtype != xp.float64 and not xp.isdtype(x0.dtype, ("real floating",
                                                             "complex floating")):
        x0 = xp.astype(x0, xp.float64)  # integers and booleans, as scipy.optimize does
    B.check_real_float(xp, x0, "x0")
    shape = tuple(x0.shape)
    x = xp.reshape(xp.asarray(x0, copy=True), (-1,))
    if x.shape[0] == 0:
        raise ValueError("x0 is empty; there is nothing to optimise")
    if not B.all_finite(xp, x):
        raise ValueError("x0 has non-finite entries (nan or inf)")
    return xp, x, shape


def _common_options(opts: dict, cls: type, dtype: Any, xp: Any, n: int,
                    tol: float | None) -> dict:
    scale = math.sqrt(float(xp.finfo(dtype).eps) / _EPS64)
    out: dict = {}
    if tol is not None:
        tol = optional_nonneg_float("tol", tol)
    for key in ("gtol", "ftol", "xtol"):
        if key in opts:
            out[key] = optional_nonneg_float(key, opts[key])
        if out.get(key) is None:
            out[key] = tol if tol is not None else cls.default_tol[key] * scale
    out["maxiter"] = (optional_positive_int("maxiter", opts["maxiter"]) if "maxiter" in opts
                      else cls.default_maxiter(n))
    out["maxfev"] = (optional_positive_int("maxfev", opts["maxfev"]) if "maxfev" in opts
                     else cls.default_maxfev(n))
    disp = opts.get("disp", 0)
    if isinstance(disp, bool):
        disp = int(disp)
    if disp not in (0, 1, 2):
        raise ValueError(f"option 'disp' must be 0, 1 or 2 (or a bool), got {disp!r}")
    out["disp"] = int(disp)
    progress = opts.get("progress")
    out["progress"] = None if progress is None else boolean("progress", progress)
    return out


def _wrap_callback(callback: Callable | None, xp: Any, shape: tuple) -> Callable | None:
    if callback is None:
        return None
    if not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    try:
        params = set(inspect.signature(callback).parameters)
    except (TypeError, ValueError):
        params = set()
    if params == {"intermediate_result"}:
        return lambda res: callback(intermediate_result=res)
    return lambda res: callback(xp.asarray(res.x, copy=True))


class _Progress:
    """The iteration table (``disp=2``) and the tqdm bar."""

    def __init__(self, common: dict, name: str) -> None:
        self.disp, self.progress, self.name = common["disp"], common["progress"], name
        self.total = common["maxiter"]
        self.t0 = time.perf_counter()
        self.bar = None
        self.header = False
        # Silent (disp=0) without a forced bar, update has nothing to do: the loop skips it.
        self.active = self.disp >= 1 or self.progress is True

    def _write(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line)
        else:
            print(line)

    def update(self, nit: int, nfev: int, state: State, gnorm: float | None) -> None:
        want = self.progress if self.progress is not None else (
            self.disp >= 1 and time.perf_counter() - self.t0 > PROGRESS_AFTER_S)
        if want and self.bar is None:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=nit - 1, desc=f"newtonkit {self.name}",
                            leave=False)
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(f=f"{state.f:.3e}", refresh=False)
        if self.disp >= 2:
            if not self.header:
                self._write(f"{'iter':>6} {'nfev':>7} {'f':>14} {'|grad|inf':>11}  info")
                self.header = True
            g = "" if gnorm is None else f"{gnorm:11.3e}"
            info = " ".join(f"{k}={_fmt(v)}" for k, v in state.info.items()
                            if k not in ("f_prev",) and v is not None)
            self._write(f"{nit:6d} {nfev:7d} {state.f:14.6e} {g:>11}  {info}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _run(solver: Any, problem: Any, state: State, shape: tuple, common: dict,
         callback: Callable | None) -> OptimizeResult:
    xp = solver.xp
    cb = _wrap_callback(callback, xp, shape)
    progress = _Progress(common, solver.name)
    maxiter, maxfev = common["maxiter"], common["maxfev"]
    nit = 0
    f0 = state.f
    best = state  # the accepted iterate with the lowest objective: the result on a fault
    status: Status | None = None
    try:
        status = solver.terminate(state)
        while status is None:
            if maxiter is not None and nit >= maxiter:
                status = Status.MAXITER
                break
            if maxfev is not None and problem.nfev >= maxfev:
                status = Status.MAXFEV
                break
            f_prev = state.f
            new = solver.step(state)
            if new.accepted and not (math.isfinite(new.f)
                                     and (new.x_finite or solver.finite(new.x))):
                status = Status.NONFINITE
                break
            state = new
            if new.accepted:
                nit += 1
                if new.f < best.f:
                    best = new
                if progress.active:
                    # ‖g‖∞ is shown only in the iteration table
                    gnorm = (solver.inf_norm(new.g) if new.g is not None and common["disp"] >= 2
                             else None)
                    progress.update(nit, problem.nfev, new, gnorm)
                if cb is not None:
                    try:
                        cb(_result(solver, problem, state, shape, nit, None, extras=False))
                    except StopIteration:
                        status = Status.CALLBACK
                        break
            status = solver.terminate(state)
            if status in _SMALL_CHANGE and new.accepted and new.f > f_prev and new.stop is None:
                status = None  # a small step that raised the objective is not convergence
        if status.success:  # the method's last check of the point (Newton: its curvature)
            last = state
            status, state = solver.verify(state, status)
            best = state if best is last else best
    except KeyboardInterrupt:
        status = Status.INTERRUPTED
    except BudgetExhausted:  # a step needed more calls of fun than maxfev leaves
        status = Status.MAXFEV
    except Exception as exc:
        _attach_result(exc, solver, problem, best, shape, nit)
        raise
    finally:
        progress.close()
    if state.f > f0 and status not in _KEPT_ABOVE_F0:
        status = Status.DIVERGED
    res = _result(solver, problem, best if status.fault else state, shape, nit, status)
    if common["disp"] >= 1:
        print(f"{res.message}\n         Current function value: {res.fun:.6e}\n"
              f"         Iterations: {res.nit}\n         Function evaluations: {res.nfev}\n"
              f"         Jacobian evaluations: {res.njev}\n"
              f"         Hessian evaluations: {res.nhev}")
    return res


#: Convergence tests on the change made by the last step (they do not count after a step
#: that raised the objective).
_SMALL_CHANGE = frozenset({Status.FTOL, Status.XTOL, Status.FTOL_XTOL})
#: Statuses that say more than "diverged" about a run ending above f(x0).
_KEPT_ABOVE_F0 = frozenset({Status.NONFINITE, Status.INDEFINITE, Status.INTERRUPTED,
                            Status.CALLBACK})


def _attach_result(exc: Exception, solver: Any, problem: Any, best: State, shape: tuple,
                   nit: int) -> None:
    """Give ``exc`` the run so far: ``exc.result`` (status ``EXCEPTION``, the best accepted
    iterate) and a note in its message.  An attribute ``result`` the exception already has is
    left alone."""
    if hasattr(exc, "result"):
        return
    details = {"error": f"{type(exc).__name__}: {exc}"}
    try:
        res = _result(solver, problem, best, shape, nit, Status.EXCEPTION, details=details)
    except Exception:  # the method's extras call the user's functions again: do without them
        res = _result(solver, problem, best, shape, nit, Status.EXCEPTION, extras=False,
                      details=details)
    attach_result(exc, res, f"newtonkit.minimize: the run so far ({nit} iterations, "
                            f"{res.nfev} evaluations of fun, best objective {res.fun:.6e}) "
                            f"is in this exception's .result")


def _detached(a: Any) -> Any:
    """``a`` without an autograd graph (torch tensors; other arrays have none)."""
    return a.detach() if array_api_compat.is_torch_array(a) else a


def _result(solver: Any, problem: Any, state: State, shape: tuple, nit: int,
            status: Status | None, extras: bool = True,
            details: dict | None = None) -> OptimizeResult:
    xp = solver.xp
    more = solver.finish(state) if extras else {"jac": state.g, **state.info}
    # the counts after finish, which may evaluate (the final gradient of LM)
    res = OptimizeResult(x=xp.reshape(xp.asarray(_detached(state.x), copy=True), shape),
                         fun=float(state.f), nit=nit, nfev=problem.nfev, njev=problem.njev,
                         nhev=problem.nhev, method=solver.name)
    jac = more.pop("jac", None)
    res["jac"] = None if jac is None else xp.reshape(_detached(jac), shape)
    y = more.pop("y", None)
    if y is not None:
        y = _detached(y)
        res["outputs" if getattr(problem, "loss", None) is not None else "residual"] = (
            xp.reshape(y, problem.y_shape) if problem.y_shape is not None else y)
    res.update(more)
    if status is not None:
        res["status"], res["success"] = status.code, status.success
        res["message"] = status.message(**(state.details if details is None else details))
        res["termination"] = status.name
    return res
