r"""Many independent problems at once: ``newtonkit.minimize(fun, X0, batch=True)``.

``X0`` of shape ``(B, n)`` holds B problems of one form.  ``fun(X, *args)`` returns residuals
``(B, m)`` (``"lm"``, ``"gn"``, ``"hig"``) or objective values ``(B,)`` (``"newton"``) for any
subset of rows, so the functions must treat rows independently; arrays in ``args`` are
per-problem data with leading dimension B and are sliced with the rows (shared data belongs in a
closure).  Every problem has its own damping, trust radius, line search, budget and
termination; the iteration is vectorised over the problems that are still running, and the
running set is *compacted* (finished rows leave the working arrays), so a batch where most
problems converge early costs what the rest cost.  On a CPU the rows are solved in *chunks*, one
block after another, each small enough (:data:`CHUNK_BYTES` of Jacobians) for its working arrays
to stay in cache (option ``chunk_size``: rows per block); rows never interact, so the blocks
change no result.

The methods are the single-problem methods' algorithms on dense Jacobians (Hessians for
Newton), each step one batched factorisation:

``"lm"``
    Moré's trust-region Levenberg-Marquardt (MINPACK's ``lmder``, as
    :class:`newtonkit.methods.gauss_newton.LevenbergMarquardt` with ``update="trust-region"``).
    Per Jacobian, the scaled normal matrix :math:`M = A^TA`, :math:`A = \tilde J D^{-1}`, is
    factored :math:`M = LL^T` by a Cholesky loop vectorised over the problems (batch-last
    arrays: n array passes, where batched LAPACK costs a call per matrix); where
    :math:`\varepsilon\|M\|_F\|L^{-1}\|_F^2` is below the limit for forming :math:`A^TA`
    (``GRAM_MAX_ERR``), it gives the Gauss-Newton step, and the rows whose step does not fit
    the trust region take λ from the eigendecomposition of M; the other rows take the SVD of A
    (:func:`newtonkit.methods._trust.lm_terms`).
    float32 problems form M in float64.  λ by the Moré-Hebden iteration on all problems at
    once; the radius and λ updates and the termination tests are :mod:`newtonkit.methods.
    _trust` (the same code the single-problem LM runs).
``"gn"``, ``"hig"``
    The minimum-norm Gauss-Newton step :math:`-J^+ r`, or the HIG direction
    :math:`-\eta V\Sigma^\kappa U^T r` (singular values at or below ``truncation·σ_max``
    dropped), from one SVD of J; Armijo backtracking per problem (HIG: unit steps unless
    ``line_search=True``; non-finite trials are halved).
Bounds ``(lb, ub)`` (shared ``(n,)`` or per problem ``(B, n)``), ``"lm"`` and ``"gn"``
    a *projected Gauss-Newton* method (Bertsekas 1982): the ε-active set A (within
    ε = min(10⁻³, ‖X − P(X − G)‖∞) of a bound, the gradient pushing onto it), the Gauss-Newton
    step on the free columns (A's columns of J zeroed), −g_i/‖J_i‖² on A; backtracking by
    halving along the projection arc P(X + t d) to f ≤ f₀ + c₁gᵀ(P(X + t d) − X) (that term
    negative); where it fails, the same along the scaled projected gradient −g/‖J_i‖².  gtol
    tests the projected gradient p = X − P(X − G) by MINPACK's cosine max_j |p_j|/(‖J̃_j‖‖r̃‖);
    ftol and xtol after a full step (t = 1) on the step taken.  Every
    evaluated point is in the box (difference steps as in the single path).
``"newton"``
    :math:`d = -(H + \tau I)^{-1} g` from a Cholesky factor, with :math:`\tau = 0` where H
    factors, else :math:`\tau = \max(-1.5\lambda_{\min}, 0)` (the ``"eigen"`` shift of
    :func:`newtonkit.linalg.regularized_cholesky_solve`), Armijo backtracking; success only where
    :math:`\lambda_{\min}(H) \ge -10^{-8}|\lambda_{\max}|` (else status 4).

Derivatives: ``jac`` callable ``(B, m, n)`` (Newton: gradients ``(B, n)``, ``hess`` ``(B, n,
n)``), ``"2-point"``/``"3-point"`` (batched differences, SciPy's steps), or omitted: torch
autodiff (``torch.func``, vectorised with ``vmap``) on torch, else forward differences
(Newton's gradients: central, as the single path) with a
:class:`~newtonkit.FiniteDifferenceWarning`.  On torch, ``vectorize=True`` lifts a function
written for one problem, ``fun(x, *args) -> (m,)``, with ``torch.func.vmap`` (and a callable
``jac`` or ``hess`` written for one problem likewise).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from . import _backend as B
from ._bounds import as_arrays, check_order, projected_gradient
from ._status import Status, attach_result
from .methods import _trust, lookup
from .methods._lsq import DIFF_STEP, gauss_newton_terms
from .methods._trust import GRAM_MAX_ERR
from .methods.hig import gauss_newton_bounds
from .problems import Composite, FiniteDifferenceWarning, RobustLoss
from .problems._common import same_backend
from .problems._fd import (
    RICHARDSON_SHRINK,
    difference_steps,
    forward_difference_bias,
    gradient_accuracy,
    gradient_error_bound,
    output_accuracy,
    richardson,
    steps_in_box,
    unseen_gradient,
)
from .problems._registry import NOT_IN_GRAPH

__all__ = ["minimize_batch", "BatchResult", "multistart"]

_STATUSES = list(Status)
_CODES = np.array([s.code for s in _STATUSES], dtype=np.int64)  # SciPy's status, by index
_SUCCESS = np.array([s.success for s in _STATUSES], dtype=bool)
_SOFT = np.array([s.code in (0, 1, 2) for s in _STATUSES])  # converged, budget, no progress
#: The indices of the change tests' statuses (ftol/xtol), which a difference Jacobian's zero
#: column can turn into FD_ZERO_COLUMN (:meth:`_BatchRun._blind_change_stops`).
_CHANGE_CODES = [_STATUSES.index(s) for s in (Status.FTOL, Status.XTOL, Status.FTOL_XTOL)]
_FAULT = np.array([s.fault for s in _STATUSES])
_RUNNING = -1
_UNLIMITED = 2**62  # maxiter or maxfev without a limit
#: The status index of each code of :func:`newtonkit.methods._trust.more_termination`.
_TRUST_CODES = np.array([_RUNNING if s is None else _STATUSES.index(s) for s in _trust.CODES])
_METHODS = {"lm": "lm", "levenberg-marquardt": "lm", "gn": "gn", "gauss-newton": "gn",
            "hig": "hig", "half-inverse": "hig", "newton": "newton"}
#: Options each batched method understands (beyond maxiter, maxfev, gtol, ftol, xtol, disp,
#: progress).
_OPTIONS = {
    "lm": {"factor": 100.0, "scaling": True, "diff_step": None},
    "gn": {"line_search": True, "c1": 1e-4, "max_backtracks": 30, "diff_step": None},
    "hig": {"exponent": -0.5, "truncation": 1e-6, "step": 1.0, "line_search": False,
            "c1": 1e-4, "max_backtracks": 30, "diff_step": None},
    "newton": {"line_search": True, "c1": 1e-4, "max_backtracks": 30, "factor": 1.5,
               "indefinite_tol": None},  # None: √ε of the dtype, as the single path
}
#: Bytes of one chunk's Jacobians (Hessians for Newton) on a CPU (``chunk_size=None``): rows
#: beyond that are solved in later chunks.  A block this size keeps the working arrays in cache;
#: the Gaussian fits of ``bench_batch`` run fastest near it (8,192 rows of 5 × 25).
CHUNK_BYTES = 2**23
class _Subproblem(NamedTuple):
    r"""Each row's trust-region subproblem for its current scaled Jacobian
    :math:`A = \tilde J D^{-1}`, set at every new Jacobian (:meth:`_BatchRun._lm_terms`).

    The Cholesky route (rows ``chol``): ``M = AᵀA`` and ``ga = Aᵀr̃`` (float64 for float32
    problems) and the Gauss-Newton step ``v0 = M⁻¹ga`` with ``n0 = ‖v0‖`` and ``jp0 = ‖A v0‖²``.
    The spectral terms of :func:`~newtonkit.methods._trust.lm_subproblem` (rows ``spec``; the
    others' entries are stale): ``s2``, ``sq``, ``c0`` (b, k), ``Vt`` (b, k, n), ``full``.
    """

    chol: Any
    M: Any
    ga: Any
    v0: Any
    n0: Any
    jp0: Any
    spec: Any
    s2: Any
    sq: Any
    c0: Any
    Vt: Any
    full: Any


#: The spectral fields of :class:`_Subproblem`, in the order of ``_trust.lm_terms``'s result.
_SPECTRAL = _Subproblem._fields[-5:]


class BatchResult(dict):
    """The result of a batched run: SciPy's fields as arrays over the B problems.

    ``x`` (B, n), ``fun`` (B,), ``jac`` (B, n) the gradient (NaN in a row whose difference
    Jacobian at the final point would exceed its maxfev), ``residual`` (B, m) for least
    squares — on the backend and device of ``X0``; ``status``, ``success``, ``nit``, ``nfev``,
    ``njev`` (and ``nhev``) NumPy arrays (B,); ``message`` a one-line summary;
    :meth:`message_of` the message of one problem; ``method``.
    """

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:  # (AttributeError: hasattr and getattr with a default work)
            raise AttributeError(name) from None

    def message_of(self, i: int) -> str:
        """The SciPy-style message of problem ``i``."""
        st = _STATUSES[int(self["_status_index"][i])]
        details = self["_details"].get(int(i), {})
        try:
            return st.message(**details)
        except (KeyError, ValueError):
            return st.message(columns="?", lambda_min=math.nan, error="?")

    def termination_of(self, i: int) -> str:
        return _STATUSES[int(self["_status_index"][i])].name

    def __repr__(self) -> str:
        return f"BatchResult({self['method']!r}, B={len(self['status'])}: {self['message']})"


# -- evaluation --------------------------------------------------------------------------------


class _Evaluator:
    """``fun`` and its derivatives on subsets of rows, with per-problem call counts."""

    def __init__(self, fun: Callable, args: tuple, jac: Any, hess: Any, kind: str, xp: Any,
                 X0: Any, vectorize: bool, loss: RobustLoss | None = None) -> None:
        self.xp, self.kind, self.loss = xp, kind, loss
        self.Bn = X0.shape[0]
        self.dtype = X0.dtype
        self.torch = array_api_compat.is_torch_array(X0)
        if vectorize:
            if not self.torch:
                raise ValueError("vectorize=True lifts a one-problem function with torch.func."
                                 "vmap and needs torch arrays; with NumPy or CuPy pass a "
                                 "vectorised fun(X) -> (B, m)")
            import torch

            fun = torch.func.vmap(fun)  # (and derivatives written for one problem too)
            jac = torch.func.vmap(jac) if callable(jac) else jac
            hess = torch.func.vmap(hess) if callable(hess) else hess
        self.fun, self.args = fun, tuple(args)
        for k, a in enumerate(self.args):
            if not (hasattr(a, "shape") and len(a.shape) >= 1 and a.shape[0] == self.Bn):
                shape = getattr(a, "shape", type(a).__name__)
                raise ValueError(f"with batch=True every entry of args is per-problem data with "
                                 f"leading dimension B={self.Bn}; args[{k}] has shape {shape} "
                                 f"(bind shared data into fun with a closure)")
        self.nfev = np.zeros(self.Bn, dtype=np.int64)
        self.njev = np.zeros(self.Bn, dtype=np.int64)
        self.nhev = np.zeros(self.Bn, dtype=np.int64)
        self.jac, self.hess = jac, hess
        self.notes: list[str] = []
        self.jac_scheme = self._scheme(jac, "jac")
        self.hess_scheme = self._scheme(hess, "hess") if kind == "objective" else None
        self.eps = float(xp.finfo(self.dtype).eps)
        self.accuracy = self.eps  # fun's output's: output_accuracy at its first call (_check)
        self.grad_accuracy = self.eps  # a jac callable's output's (Newton), likewise
        self.forward_ad: bool | None = None  # autodiff Jacobians: decided at the first one
        self.graph_checked = False  # autodiff: fun seen in autograd's graph (_check_graph)
        self.bounds: tuple[Any, Any] | None = None  # (LB, UB) over all B rows, when bounded
        self.diff_step: float | None = None  # the relative difference steps (option diff_step)
        # Newton's rows whose central-difference gradient is Richardson's (_BatchRun._steered)
        self.richardson = np.zeros(self.Bn, dtype=bool)

    def linearization_cost(self, n: int, rows: np.ndarray | None = None) -> Any:
        """Calls of ``fun`` per row that one linearisation makes: the difference Jacobian or
        gradient (n or 2n; 4n for a row switched to Richardson's, where the global indices
        ``rows`` are given: then an array, one entry per row), and for Newton a difference
        Hessian of it (n or 2n gradients)."""
        per = {"2-point": n, "3-point": 2 * n}
        first = per.get(self.jac_scheme, 0)
        if rows is not None and self.kind == "objective" and self.jac_scheme == "3-point":
            first = np.where(self.richardson[rows], 4 * n, first)
        if self.kind != "objective" or self.hess_scheme not in per:
            return first
        # each difference of the gradient evaluates it anew (and fun there for a 2-point one)
        return first + per[self.hess_scheme] * (first + (self.jac_scheme == "2-point"))

    def steps_beyond_x(self, X: Any) -> Any:
        """Per entry of ``X`` (b, n), on its device, whether a default difference step
        exceeds a nonzero |x| (the single paths' ``steps_beyond_x``): there a difference
        Jacobian, gradient or Hessian column is a secant over more than the parameter itself.
        ``None`` without differences, or with ``diff_step`` (steps relative to |x|)."""
        xp, h = self.xp, None
        fd = self.jac_scheme if self.jac_scheme in ("2-point", "3-point") else None
        if fd is not None and self.diff_step is None:
            h = difference_steps(xp, X, fd, self.accuracy)
        if self.hess_scheme in ("2-point", "3-point"):
            hh = difference_steps(xp, X, self.hess_scheme, self._gradient_accuracy())
            h = hh if h is None else xp.maximum(h, hh)
        if h is None:
            return None
        size = xp.abs(X)
        return (size > 0) & (size < h)

    def _scheme(self, d: Any, name: str) -> str:
        if d is None:
            if self.torch:
                return "autodiff"
            if name == "hess":
                return "2-point"
            if self.kind == "objective":  # the single path's default for a gradient
                self.notes.append("no jac given: central differences (3-point) are used, which "
                                  "cost 2n evaluations of fun per gradient; pass jac= for "
                                  "speed and accuracy")
                return "3-point"
            self.notes.append(f"no {name} given: forward differences (2-point) are used, which "
                              f"costs n evaluations of fun per {name} and about half the digits")
            return "2-point"
        if isinstance(d, str):
            if d not in ("2-point", "3-point"):
                raise ValueError(f"{name} must be a callable, '2-point' or '3-point' with "
                                 f"batch=True, got {d!r}")
            return d
        if callable(d):
            return "callable"
        raise ValueError(f"{name} must be a callable, '2-point' or '3-point' with batch=True, "
                         f"got {type(d).__name__}")

    def _args(self, rows: Any, rows_np: np.ndarray) -> tuple:
        """The per-problem ``args`` of the rows ``rows`` (``rows_np`` on the host): ``args``
        themselves where those are all B rows in order (the rows of a call are distinct, but
        LM puts the rows that have just ended last)."""
        if rows_np.size == self.Bn and bool(np.all(rows_np[1:] > rows_np[:-1])):
            return self.args
        return tuple(self.xp.take(a, rows, axis=0) for a in self.args)

    def values(self, X: Any, rows: Any, rows_np: np.ndarray) -> Any:
        """``fun`` on the rows ``rows`` (global indices), checked: (b, m) or (b,)."""
        out = self.fun(X, *self._args(rows, rows_np))
        self.nfev[rows_np] += 1
        return self._check(out, X, "fun")

    def _check(self, out: Any, X: Any, what: str) -> Any:
        xp, b = self.xp, X.shape[0]
        if out is None or not hasattr(out, "shape"):
            raise TypeError(f"{what} must return an array, got {type(out).__name__}")
        if self.torch:
            out = out.detach()
        want = "(B,)" if self.kind == "objective" else "(B, m)"
        ndim = 1 if self.kind == "objective" else 2
        if len(out.shape) != ndim or out.shape[0] != b:
            raise ValueError(f"with batch=True {what} must return {want} for X of shape "
                             f"{tuple(X.shape)}; got shape {tuple(out.shape)}")
        if ndim == 2 and out.shape[1] == 0:
            raise ValueError(f"{what} returned m = 0 residuals per problem (shape "
                             f"{tuple(out.shape)}); there is nothing to fit")
        if out.dtype != X.dtype:
            same_backend(xp, out, f"the output of {what}")
            B.check_not_complex(xp, out, what)
            self.accuracy = output_accuracy(self.accuracy, out)  # (float32 out, float64 X)
            out = xp.astype(out, X.dtype)
        return out

    def objective(self, V: Any) -> Any:
        """½‖r‖² per row (least squares), ½C²Σρ(r²/C²) per row (a robust loss), or the values
        themselves."""
        if self.kind == "objective":
            return V
        if self.loss is not None:
            return self.loss.value(V, axis=1)
        with np.errstate(over="ignore"):  # (inf at a far trial point: a rejected trial)
            return 0.5 * self.xp.sum(V * V, axis=1)

    def gauss_newton(self, V: Any, J: Any) -> tuple[Any, Any]:
        """``(r̃, J̃)`` per row: ``(V, J)`` for least squares; with a robust loss
        ``r̃ = ρ′r/√w``, ``J̃ = diag(√w) J`` (:meth:`RobustLoss.gauss_newton`, the single
        problem's formulas elementwise), so ``J̃ᵀr̃ = Jᵀρ′r`` is the exact gradient."""
        if self.loss is None:
            return V, J
        R, sw = self.loss.gauss_newton(V)
        return R, sw[:, :, None] * J

    # -- first derivatives: (b, m, n) Jacobians, or (b, n) gradients for Newton
    def first(self, X: Any, V: Any, rows: Any, rows_np: np.ndarray) -> Any:
        xp, b, n = self.xp, X.shape[0], X.shape[1]
        scheme = self.jac_scheme
        if scheme == "callable":
            D = self.jac(X, *self._args(rows, rows_np))
            if self.torch:
                D = D.detach()
            want = (b, n) if self.kind == "objective" else (b, V.shape[1], n)
            if tuple(D.shape) != want:
                raise ValueError(f"with batch=True jac must return shape {want} for X of shape "
                                 f"{tuple(X.shape)}; got {tuple(D.shape)}")
            if D.dtype != X.dtype:
                B.check_not_complex(xp, D, "jac")
                if self.kind == "objective":  # (the Hessian's differences of it: its steps)
                    self.grad_accuracy = output_accuracy(self.grad_accuracy, D)
                D = xp.astype(D, X.dtype)
        elif scheme == "autodiff":
            self._check_graph(X, rows, rows_np)
            D = self._autodiff_first(X, rows, rows_np, None if V is None else V.shape[-1])
        else:
            D = self._differences(lambda Z: self.values(Z, rows, rows_np), X, V, scheme,
                                  self.accuracy, self._box(rows))
            if self.kind != "objective":
                D = xp.permute_dims(D, (0, 2, 1))  # (b, n, m) -> (b, m, n)
            elif self.richardson[rows_np].any():
                sel = self.richardson[rows_np]
                k = xp.asarray(np.nonzero(sel)[0], device=array_api_compat.device(X))
                rich = self.richardson_gradient(xp.take(X, k, axis=0), xp.take(D, k, axis=0),
                                                xp.take(rows, k, axis=0), rows_np[sel])
                D = B.scatter_rows(xp, sel, array_api_compat.device(D))(rich, D)
        self.njev[rows_np] += 1
        return D

    def _box(self, rows: Any) -> tuple[Any, Any] | None:
        return None if self.bounds is None else tuple(
            self.xp.take(b, rows, axis=0) for b in self.bounds)

    def unseen_gradient(self, X: Any, Y: Any, J: Any, rows: Any) -> Any:
        """For a difference Jacobian ``J`` (b, m, n) of the outputs ``Y`` at ``X`` (rows
        ``rows``), the bounds ``(unseen, seen)`` per row and column on the gradient that its
        exactly zero entries may hide and the rounding of the others may shift
        (:func:`~newtonkit.problems._fd.unseen_gradient`; the Gauss-Newton J̃ has the same
        zeros); else ``None``."""
        if self.jac_scheme not in ("2-point", "3-point"):
            return None
        gy = Y if self.loss is None else self.loss.grad(Y)
        return unseen_gradient(self.xp, J, Y, gy, X, self.jac_scheme, self.accuracy,
                               self.diff_step, self._box(rows))

    def richardson_gradient(self, X: Any, G: Any, rows: Any, rows_np: np.ndarray) -> Any:
        """Richardson's ``(4·G(h/2) − G(h))/3`` from the central-difference gradients ``G``
        at ``X`` (the single path's ``ScalarProblem.richardson_gradient``; 2n evaluations)."""
        half = self._differences(lambda Z: self.values(Z, rows, rows_np), X, None, "3-point",
                                 self.accuracy / RICHARDSON_SHRINK)  # (Newton: no bounds)
        return richardson(half, G)

    def hessian(self, X: Any, G: Any, rows: Any, rows_np: np.ndarray) -> Any:
        xp = self.xp
        if self.hess_scheme == "callable":
            H = self.hess(X, *self._args(rows, rows_np))
            if self.torch:
                H = H.detach()
            b, n = X.shape
            if tuple(H.shape) != (b, n, n):
                raise ValueError(f"with batch=True hess must return shape {(b, n, n)} for X of "
                                 f"shape {tuple(X.shape)}; got {tuple(H.shape)}")
            if H.dtype != X.dtype:
                B.check_not_complex(xp, H, "hess")
                H = xp.astype(H, X.dtype)
        elif self.hess_scheme == "autodiff":
            self._check_graph(X, rows, rows_np)
            H = self._autodiff_hessian(X, rows, rows_np)
        else:
            def grad(Z: Any) -> Any:
                V = self.values(Z, rows, rows_np) if self.jac_scheme == "2-point" else None
                return self.first(Z, V, rows, rows_np)

            H = self._differences(grad, X, G, self.hess_scheme, self._gradient_accuracy())
            self.njev[rows_np] -= H.shape[1] * (2 if self.hess_scheme == "3-point" else 1)
            H = 0.5 * (H + xp.permute_dims(H, (0, 2, 1)))
        self.nhev[rows_np] += 1
        return H

    def _gradient_accuracy(self) -> float:
        """The accuracy η of the gradient that a difference Hessian differences: its steps are
        for the gradient's own accuracy, as the single path's (:mod:`newtonkit.problems._fd`)."""
        fd = self.jac_scheme if self.jac_scheme in ("2-point", "3-point") else None
        return gradient_accuracy(self.accuracy if fd else self.grad_accuracy, fd)

    def _differences(self, f: Callable, X: Any, F0: Any, scheme: str, accuracy: float,
                     box: tuple[Any, Any] | None = None) -> Any:
        """``(b, n, ...)``: row j the difference quotient of ``f`` along coordinate j, with
        SciPy's steps h = ε^(1/2)·max(1, |x|) (2-point) or ε^(1/3)·max(1, |x|) (3-point), or
        ``diff_step``·|x| (:func:`~newtonkit.problems._fd.difference_steps`).  With ``box``
        every point lies in the box (the single path's rule,
        :func:`~newtonkit.problems._fd.steps_in_box`, elementwise): a 2-point step past a bound
        turns back; a 3-point difference without room for ±h is one-sided,
        (−3f(x) + 4f(x + h) − f(x + 2h))/(2h), towards the farther bound."""
        xp = self.xp
        n = X.shape[1]
        H = difference_steps(xp, X, scheme, accuracy, self.diff_step)
        one_sided = None  # (3-point: F0 enters only one-sided differences, in a box)
        if box is not None:
            H, one_sided = steps_in_box(xp, X, H, scheme, box)
        cols = []
        for j in range(n):
            e = xp.astype(xp.arange(n, device=array_api_compat.device(X)) == j, X.dtype)[None, :]
            hi = X + H * e
            if scheme == "2-point":
                hj = hi[:, j] - X[:, j]  # the step actually taken (exact in floating point)
                diff = f(hi) - F0
            elif one_sided is None:
                lo = X - H * e
                hj = hi[:, j] - lo[:, j]
                diff = f(hi) - f(lo)
            else:  # the second point: x − h, or x + 2h where one-sided
                side = one_sided[:, j]
                lo = xp.where(_expand(xp, side, X), X + 2.0 * H * e, X - H * e)
                f_hi, f_lo = f(hi), f(lo)
                hj = xp.where(side, lo[:, j] - X[:, j], hi[:, j] - lo[:, j])
                diff = xp.where(_expand(xp, side, f_hi), -3.0 * F0 + 4.0 * f_hi - f_lo,
                                f_hi - f_lo)
            cols.append(diff / _expand(xp, hj, diff))
        return xp.stack(cols, axis=1)

    def _check_graph(self, X: Any, rows: Any, rows_np: np.ndarray) -> None:
        """Once per run: ``fun`` on the first row with ``x`` requiring grad must be in
        autograd's graph (as :class:`newtonkit_torch.autograd.TorchAutodiff` checks): an output
        computed under ``no_grad``, detached or constant has zero ``torch.func`` derivatives,
        and a zero Hessian passes any curvature test (an all-zero residual is exempt: the run
        ends ``ZERO`` there whatever its Jacobian).  One evaluation, counted."""
        import torch

        if self.graph_checked or X.shape[0] == 0:
            return
        x = X[:1].detach().clone().requires_grad_(True)
        with torch.enable_grad():
            out = self.fun(x, *(a[:1] for a in self._args(rows, rows_np)))
        self.nfev[rows_np[:1]] += 1
        if not out.requires_grad and (self.kind == "objective" or bool((out != 0).any())):
            raise ValueError(NOT_IN_GRAPH)
        self.graph_checked = True

    def _autodiff_first(self, X: Any, rows: Any, rows_np: np.ndarray, m: int | None) -> Any:
        """Per-problem derivatives by ``vmap``: gradients, or Jacobians in forward mode (n
        tangents) where n < m and the model supports it, else reverse mode (m cotangents)."""
        import torch

        args = self._args(rows, rows_np)
        fun = self.fun

        def one(x, *a):  # one problem: the batched fun on a batch of one
            out = fun(x[None], *(ai[None] for ai in a))
            return out[0]

        if self.kind == "objective":
            return torch.func.vmap(torch.func.grad(one))(X, *args).detach()
        if self.forward_ad is None:
            self.forward_ad = m is not None and X.shape[1] < m
        if self.forward_ad:
            try:
                return torch.func.vmap(torch.func.jacfwd(one))(X, *args).detach()
            except (RuntimeError, NotImplementedError):  # an op without forward-mode AD
                self.forward_ad = False
        return torch.func.vmap(torch.func.jacrev(one))(X, *args).detach()

    def _autodiff_hessian(self, X: Any, rows: Any, rows_np: np.ndarray) -> Any:
        import torch

        args = self._args(rows, rows_np)
        fun = self.fun

        def one(x, *a):
            return fun(x[None], *(ai[None] for ai in a))[0]

        return torch.func.vmap(torch.func.hessian(one))(X, *args).detach()


def _expand(xp: Any, h: Any, like: Any) -> Any:
    """``h`` (b,) shaped to divide an array like ``like`` (b,) or (b, ...)."""
    return xp.reshape(h, (h.shape[0],) + (1,) * (len(like.shape) - 1))


# -- the batched subproblems ---------------------------------------------------------------------


def _svd(xp: Any, A: Any) -> tuple[Any, Any, Any]:
    return xp.linalg.svd(A, full_matrices=False)


def _row_norms(xp: Any, a: Any) -> Any:
    """Euclidean norms of the rows of ``a`` (b, k): √(Σ a²), as NumPy's ``norm``."""
    return xp.sqrt(xp.sum(a * a, axis=1))


def _safe_column_norms(xp: Any, J: Any, cn: Any) -> tuple[Any, Any]:
    """The column norms ``cn`` (b, n) of ``J`` (b, m, n), recomputed as ``s‖J_j/s‖`` (s the
    column's largest magnitude, MINPACK's ``enorm``) where the plain sum of squares overflowed
    to inf or underflowed to 0 in a finite, nonzero column: read as inf or 0, such a norm
    makes the column's scaled gradient 0 (a false gtol stop) and LM's scaling D wrong.
    Returns the norms and the rows recomputed (``None`` where none was)."""
    suspect = (cn == 0) | (cn == math.inf)
    if not bool(xp.any(suspect)):
        return cn, None  # the usual case: no extra pass over J
    safe = B.column_norms(xp, J, safe=True)  # NaN for a non-finite column, 0 for a zero one
    redo = suspect & (safe > 0) & (safe < math.inf)
    return xp.where(redo, safe, cn), xp.any(redo, axis=1)


def _rows_dot(xp: Any, a: Any, b: Any) -> Any:
    return xp.sum(a * b, axis=-1)


def _vecmat(xp: Any, v: Any, M: Any) -> Any:
    """``v @ M`` per row: (b, p) × (b, p, q) → (b, q)."""
    return (v[:, None, :] @ M)[:, 0, :]


def _merge(xp: Any, mask: Any, new: Any, old: Any) -> Any:
    """Rows of ``new`` where ``mask`` (b,), else rows of ``old``."""
    return xp.where(_expand(xp, mask, new), new, old)


# -- small factorisations, vectorised over the rows ----------------------------------------------
# A stack of b small matrices is factored column by column, each step one array operation over
# all b rows (n steps for n × n), on arrays laid out batch-last, (n, n, b), so that every
# operation runs along the b rows contiguously.  Batched LAPACK instead calls one routine per
# matrix, about a microsecond for a 5 × 5 matrix whatever it does.


def _batch_last(xp: Any, a: Any) -> Any:
    """(b, ...) → (..., b)."""
    nd = len(a.shape)
    return xp.permute_dims(a, tuple(range(1, nd)) + (0,))


def _batch_first(xp: Any, a: Any) -> Any:
    """(..., b) → (b, ...)."""
    nd = len(a.shape)
    return xp.permute_dims(a, (nd - 1,) + tuple(range(nd - 1)))


def _cholesky(xp: Any, M: Any) -> tuple[Any, Any]:
    """``(L, ok)``: ``M = L Lᵀ`` for each row of a stack of symmetric ``M`` (b, n, n); ``L``
    lower triangular, batch-last (n, n, b); ``ok`` (b,) False where a pivot is not positive
    and finite (that row of ``L`` holds the identity's column there and means nothing)."""
    b, n, _ = M.shape
    Mt = _batch_last(xp, M)
    L = xp.zeros((n, n, b), dtype=M.dtype, device=array_api_compat.device(M))
    ok = xp.ones((b,), dtype=xp.bool, device=array_api_compat.device(M))
    for j in range(n):
        row = L[j, :j, :]
        d = Mt[j, j, :] - xp.sum(row * row, axis=0)
        good = (d > 0) & xp.isfinite(d)
        ok = ok & good
        ljj = xp.sqrt(xp.where(good, d, xp.ones_like(d)))
        L[j, j, :] = ljj
        if j + 1 < n:
            col = Mt[j + 1:, j, :] - xp.sum(L[j + 1:, :j, :] * row[None, :, :], axis=1)
            L[j + 1:, j, :] = col / ljj[None, :]
    return L, ok


def _cholesky_solve(xp: Any, L: Any, rhs: Any) -> Any:
    """``x`` (b, n) with ``L Lᵀ x = rhs`` per row: ``L`` batch-last (n, n, b) from
    :func:`_cholesky`, ``rhs`` (b, n); forward then back substitution, one entry per step."""
    n = L.shape[0]
    y = xp.zeros_like(_batch_last(xp, rhs))  # (n, b)
    r = _batch_last(xp, rhs)
    for i in range(n):
        y[i, :] = (r[i, :] - xp.sum(L[i, :i, :] * y[:i, :], axis=0)) / L[i, i, :]
    x = xp.zeros_like(y)
    for i in range(n - 1, -1, -1):
        x[i, :] = (y[i, :] - xp.sum(L[i + 1:, i, :] * x[i + 1:, :], axis=0)) / L[i, i, :]
    return _batch_first(xp, x)


def _inverse_lower(xp: Any, L: Any) -> Any:
    """``L⁻¹`` (lower triangular, batch-last (n, n, b)) of a batch-last lower triangular ``L``:
    ``L X = I`` by forward substitution, one row of X per step."""
    n = L.shape[0]
    X = xp.zeros_like(L)
    for i in range(n):
        rhs = -xp.sum(L[i, :i, None, :] * X[:i, :i + 1, :], axis=0)  # (i + 1, b)
        rhs[i, :] = rhs[i, :] + 1.0
        X[i, :i + 1, :] = rhs / L[i, i, None, :]
    return X


# -- the driver ----------------------------------------------------------------------------------


def minimize_batch(fun: Callable, X0: Any, method: str | None, jac: Any, hess: Any,
                   args: tuple, tol: float | None, callback: Callable | None,
                   options: dict, vectorize: bool, bounds: Any = None) -> BatchResult:
    """See :func:`newtonkit.minimize` with ``batch=True`` and this module's docstring."""
    default = "lm" if isinstance(fun, Composite) else "newton"
    name = _METHODS.get(str(method).lower() if method is not None else default)
    if name is None:
        raise ValueError(f"method {method!r} has no batched form; batch=True supports 'lm', "
                         f"'gn', 'hig' and 'newton'")
    box = None if bounds is None else _batch_bounds(bounds, X0)
    if box is not None:
        if name not in ("lm", "gn"):
            raise ValueError(f"bounds with batch=True take methods 'lm' and 'gn' (projected "
                             f"Gauss-Newton), not {name!r}")
        name = "gn"  # 'lm' too: the projected Gauss-Newton method
    loss = None
    if isinstance(fun, Composite):
        fun, loss = _unwrap_composite(fun, name, jac)
    if not hasattr(X0, "shape") or not hasattr(X0, "dtype") or isinstance(X0, np.generic):
        X0 = np.asarray(X0, dtype=np.float64)
    xp = B.array_namespace(X0)
    if array_api_compat.is_torch_array(X0):
        X0 = X0.detach()
    if len(X0.shape) != 2:
        raise ValueError(f"with batch=True X0 must be 2-D (B problems × n unknowns), got shape "
                         f"{tuple(X0.shape)}")
    if xp.isdtype(X0.dtype, "complex floating"):
        B.check_real_float(xp, X0, "X0")  # (raises: a cast would drop the imaginary part)
    if not xp.isdtype(X0.dtype, "real floating"):
        X0 = xp.astype(X0, xp.float64)
    B.check_real_float(xp, X0, "X0")
    if X0.shape[1] == 0:
        raise ValueError("X0 has n = 0 unknowns; there is nothing to optimise")
    if not B.all_finite(xp, X0):
        raise ValueError("X0 has non-finite entries (nan or inf)")
    opts = dict(options or {})
    common = {"maxiter", "maxfev", "gtol", "ftol", "xtol", "disp", "progress", "chunk_size"}
    known = common | set(_OPTIONS[name])
    unknown = sorted(set(opts) - known)
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for batched method {name!r}; known "
                         f"options: {sorted(known)}")
    o = {**_OPTIONS[name], **{k: v for k, v in opts.items() if k in _OPTIONS[name]}}
    # the single-problem method's defaults (tolerances scaled for float32 as there)
    single = lookup(name)
    eps = float(xp.finfo(X0.dtype).eps)
    scale = math.sqrt(eps / float(np.finfo(np.float64).eps))
    n = X0.shape[1]
    defaults = {key: tol if tol is not None else single.default_tol[key] * scale
                for key in ("gtol", "ftol", "xtol")}
    for key, rule in (("maxiter", single.default_maxiter), ("maxfev", single.default_maxfev)):
        defaults[key] = rule(n) if rule(n) is not None else _UNLIMITED
    if name == "newton" and o["indefinite_tol"] is None:
        o["indefinite_tol"] = math.sqrt(eps)
    for key, default in defaults.items():
        o[key] = _per_problem(key, opts.get(key, default), X0.shape[0])
    o["progress"] = bool(opts.get("progress", False))
    o["chunk_size"] = _chunk_size(opts.get("chunk_size"))
    kind = "objective" if name == "newton" else "outputs"
    if loss is not None and jac is None and callable(getattr(fun, "jacobian", None)):
        jac = fun.jacobian
    ev = _Evaluator(fun, args, jac, hess, kind, xp, xp.asarray(X0, copy=True), vectorize, loss)
    if "diff_step" in o:
        ev.diff_step = DIFF_STEP.check("diff_step", o["diff_step"])
    for note in ev.notes:
        warnings.warn(note, FiniteDifferenceWarning, stacklevel=3)
    run = _BatchRun(name, ev, o, xp, callback)
    if box is not None:
        dev = array_api_compat.device(X0)
        ev.bounds = run.bounds = tuple(xp.asarray(b, dtype=X0.dtype, device=dev) for b in box)
    return run.solve(xp.asarray(X0, copy=True))


def _batch_bounds(bounds: Any, X0: Any) -> tuple[Any, Any] | None:
    """``(LB, UB)`` float64 ``(B, n)`` on ``X0``'s device, of shared ``(n,)``/scalar or
    per-problem ``(B, n)`` bounds, or ``None`` when every bound is infinite; SciPy's checks
    (``lb < ub``, no NaN, every row of ``X0`` inside) raise ``ValueError``."""
    X = X0 if hasattr(X0, "shape") else np.asarray(X0, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"with batch=True X0 must be 2-D (B problems × n unknowns), got shape "
                         f"{tuple(X.shape)}")
    xp = B.array_namespace(X)
    lb, ub = as_arrays(bounds, like=X)
    try:
        LB, UB = (xp.asarray(xp.broadcast_to(b, tuple(X.shape)), copy=True) for b in (lb, ub))
    except (ValueError, RuntimeError):
        raise ValueError(f"bounds {tuple(lb.shape)}, {tuple(ub.shape)} do not fit X0 "
                         f"{tuple(X.shape)}: pass scalars, (n,) or (B, n)") from None
    check_order(LB, UB)
    outside = xp.any((X < LB) | (X > UB), axis=1)
    if bool(xp.any(outside)):
        first = int(xp.argmax(xp.astype(outside, xp.int32)))
        count = int(xp.sum(xp.astype(outside, xp.int32)))
        raise ValueError(f"X0[{first}] (the initial guess) is outside of provided bounds "
                         f"({count} rows are)")
    if not (bool(xp.any(xp.isfinite(LB))) or bool(xp.any(xp.isfinite(UB)))):
        return None
    return LB, UB


def _unwrap_composite(fun: Composite, name: str, jac: Any) -> tuple[Callable, RobustLoss]:
    """The batched model and the loss of ``Composite(model, RobustLoss(...))``: the model maps
    ``(b, n)`` parameters (and the per-problem ``args``) to ``(b, m)`` residuals; its Jacobian
    is ``jac=`` or the model's ``jacobian(X, *args)`` method, ``(b, m, n)``."""
    if name not in ("lm", "gn"):
        raise ValueError(f"batch=True takes a Composite with methods 'lm' and 'gn' (robust "
                         f"least squares), not {name!r}; for 'newton' pass the cost itself")
    if not isinstance(fun.loss, RobustLoss):
        raise ValueError(f"batch=True takes a Composite whose loss is a RobustLoss (per row "
                         f"½C²Σρ(r²/C²)), got {type(fun.loss).__name__}")
    if not callable(fun.model):
        raise TypeError(f"the Composite's model must be callable, got "
                        f"{type(fun.model).__name__}")
    return fun.model, fun.loss


def _chunk_size(value: Any) -> int | None:
    """``chunk_size`` checked: ``None`` (automatic) or a positive number of rows."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"option 'chunk_size' must be a positive integer (rows per chunk) or "
                         f"None, got {value!r}")
    return int(value)


def _on_cpu(X: Any) -> bool:
    """Whether ``X`` lives in host memory (NumPy, array-api-strict, a torch CPU tensor)."""
    if array_api_compat.is_cupy_array(X):
        return False
    if array_api_compat.is_torch_array(X):
        return X.device.type == "cpu"
    return True


def _per_problem(key: str, value: Any, B_: int) -> np.ndarray:
    """A common option as a NumPy array over the B problems: a scalar for all, or an array of
    length B (one value per problem)."""
    integer = key in ("maxiter", "maxfev")
    try:
        a = np.asarray(B.to_numpy(value) if hasattr(value, "shape") else value)
        numbers = a.dtype.kind in "iuf"  # (not bools, nor strings a float cast would parse)
    except (TypeError, ValueError):  # (a ragged list)
        numbers = False
    if not numbers:
        raise ValueError(f"option {key!r} must be a number or an array of B={B_} numbers, got "
                         f"{value!r}")
    a = a.astype(np.float64)
    if a.ndim == 1 and a.shape[0] != B_:
        raise ValueError(f"option {key!r} has one value per problem: expected an array of "
                         f"length B={B_}, got shape {a.shape}")
    if a.ndim > 1:
        raise ValueError(f"option {key!r} must be a number or an array of shape ({B_},), got "
                         f"shape {a.shape}")
    if not (np.all(a >= 0) and np.all(np.isfinite(a))):
        raise ValueError(f"option {key!r} must be finite and >= 0, got {value!r}")
    if integer and not (np.all(a == np.round(a)) and np.all(a >= 1)):
        raise ValueError(f"option {key!r} must be a positive integer (or B of them), got "
                         f"{value!r}")
    a = np.broadcast_to(a, (B_,)).copy()
    return a.astype(np.int64) if integer else a


class _BatchRun:
    """One batched run: the active rows' state, the loop, and the finished rows."""

    def __init__(self, name: str, ev: _Evaluator, o: dict, xp: Any,
                 callback: Callable | None) -> None:
        self.name, self.ev, self.o, self.xp, self.callback = name, ev, o, xp, callback
        self.eps = ev.eps
        self.tiny = float(xp.finfo(ev.dtype).smallest_normal)
        Bn = ev.Bn
        self.status = np.full(Bn, _RUNNING, dtype=np.int64)
        self.nit = np.zeros(Bn, dtype=np.int64)
        self.details: dict[int, dict] = {}
        self.done: list[tuple] = []  # (rows_np, X, f, G, V) of finished rows
        self.bounds: tuple[Any, Any] | None = None  # (LB, UB) (B, n): projected Gauss-Newton

    # -- helpers
    def tol(self, key: str) -> Any:
        """The tolerance ``key`` of the active rows, on the device (B,)."""
        return self.xp.asarray(self.o[key][self.rows], dtype=self.X.dtype,
                               device=array_api_compat.device(self.X))

    def budget_left(self) -> np.ndarray:
        """Calls of ``fun`` each active row may still make (maxfev is never exceeded)."""
        return self.o["maxfev"][self.rows] - self.ev.nfev[self.rows]

    def reserve(self, sel: np.ndarray, calls: Any) -> np.ndarray:
        """``sel`` less the rows that cannot afford ``calls`` more evaluations (a number, or
        one per active row): those end with MAXFEV now, at their last accepted point."""
        short = sel & (self.budget_left() < calls)
        self.mark(short, Status.MAXFEV)
        return sel & ~short

    def _idx(self, rows_np: np.ndarray) -> Any:
        dev = array_api_compat.device(self.X)
        return self.xp.asarray(rows_np, device=dev)

    def _host(self, mask: Any) -> np.ndarray:
        return np.asarray(B.to_numpy(mask), dtype=bool)

    def solve(self, X: Any) -> BatchResult:
        """Evaluate every row at ``X``, then iterate the chunks of rows one after another."""
        xp, ev = self.xp, self.ev
        Bn = X.shape[0]
        self.rows = np.arange(Bn)
        self.X = X
        if Bn == 0:
            return self._result()
        need = 1 + (ev.linearization_cost(X.shape[1]) if self.name != "lm" else 0)
        if (self.o["maxfev"] < need).any():
            raise ValueError(f"maxfev={int(self.o['maxfev'].min())} is too small to evaluate fun "
                             f"and its derivatives at X0 ({need} calls per problem)")
        V0 = ev.values(X, self._idx(self.rows), self.rows)
        f0 = ev.objective(V0)
        if not self._host(xp.isfinite(f0)).all():
            bad = int(np.nonzero(~self._host(xp.isfinite(f0)))[0][0])
            raise ValueError(f"the objective is not finite at X0[{bad}]; start every problem "
                             f"where fun is finite")
        beyond = ev.steps_beyond_x(X)
        if beyond is not None and bool(xp.any(beyond)):  # (the mask to the host only then)
            beyond = np.asarray(B.to_numpy(beyond), dtype=bool)
            i, j = (int(k[0]) for k in np.nonzero(beyond))
            warnings.warn(f"the difference steps exceed |X0[i, j]| at {int(beyond.sum())} "
                          f"entries, the first X0[{i}, {j}] (SciPy's default step "
                          f"η^p·max(1, |x|) at parameters below η^p): those differences are "
                          f"secants over more than the parameters themselves, and those rows "
                          f"may stop far from a minimum; pass the derivatives, "
                          f"options['diff_step'] (least squares: steps relative to |x|), or "
                          f"rescale x to order 1", FiniteDifferenceWarning, stacklevel=4)
        chunks = self._chunks(X, V0)
        bar = None
        if self.o["progress"]:
            from tqdm.auto import tqdm

            bar = tqdm(total=Bn, desc=f"newtonkit {self.name} (batch)", leave=False)
        stop = None  # CALLBACK or INTERRUPTED: the chunks not started end at X0
        started = 0
        try:
            for chunk in chunks:
                started += 1
                if stop is not None:
                    self._unstarted(chunk, X, f0, V0, stop)
                    continue
                stop = self._solve_chunk(chunk, X, f0, V0, bar)
        except Exception as exc:
            self._attach_result(exc, chunks[started:], X, f0, V0)
            raise
        finally:
            if bar is not None:
                bar.close()
        return self._result()

    def _attach_result(self, exc: Exception, unstarted: list[np.ndarray], X: Any, f0: Any,
                       V0: Any) -> None:
        """Give ``exc`` (raised by ``fun``, a derivative or the callback) the batch so far, as
        the single path does: ``exc.result``, where the rows still running end ``EXCEPTION``
        at their best accepted iterate (nothing is evaluated again), the rows not started at
        X0, and the rows that had ended keep their results."""
        if hasattr(exc, "result"):
            return
        error = {"error": f"{type(exc).__name__}: {exc}"}
        xp, code = self.xp, _STATUSES.index(Status.EXCEPTION)
        if self.rows.size:
            self.status[self.rows] = code
            if self.tracks_best:
                X1, f1, V1, G1 = self.Xbest, self.fbest, self.Vbest, self.Gbest
            else:  # (LM: the last accepted iterate is the best; its gradient may be stale)
                X1, f1, V1, G1 = self.X, self.f, self.V, self.G
                if G1 is not None:
                    G1 = _merge(xp, self._dev(self._host(self.newJ)),
                                xp.full_like(G1, math.nan), G1)
            if G1 is None:  # (raised before the block's first gradient)
                G1 = xp.full_like(X1, math.nan)
            self.done.append((self.rows, X1, f1, G1, V1))
        for rows in unstarted:
            self._unstarted(rows, X, f0, V0, Status.EXCEPTION)
        for i in np.nonzero(self.status == code)[0]:
            self.details[int(i)] = error
        res = self._result()
        attach_result(exc, res, f"newtonkit.minimize (batch): the batch so far "
                                f"({res['message']}) is in this exception's .result")

    def _chunks(self, X: Any, V0: Any) -> list[np.ndarray]:
        """The row blocks solved one after another: ``chunk_size`` rows, by default (on a CPU)
        as many as keep one block's Jacobians (b, m, n) — Hessians (b, n, n) for Newton —
        within :data:`CHUNK_BYTES`, so that the working arrays stay in cache; all rows at once
        on a GPU."""
        Bn, n = X.shape
        size = self.o["chunk_size"]
        if size is None:
            width = n if self.ev.kind == "objective" else V0.shape[1]
            per_row = width * n * B.itemsize(X.dtype)
            size = max(1, CHUNK_BYTES // per_row) if _on_cpu(X) else Bn
        return [np.arange(k, min(k + size, Bn)) for k in range(0, Bn, size)]

    def _solve_chunk(self, rows: np.ndarray, X: Any, f0: Any, V0: Any,
                     bar: Any) -> Status | None:
        """Iterate the rows ``rows`` (global indices) until each has a status; returns
        ``Status.CALLBACK`` or ``Status.INTERRUPTED`` when the run was stopped."""
        idx = self._idx(rows)

        def mine(a: Any) -> Any:  # the rows of this block (all of them: ``a`` itself)
            return a if rows.size == X.shape[0] else self.xp.take(a, idx, axis=0)

        self.rows = rows
        self.X, self.V = mine(X), mine(V0)
        self.f = self.f0 = mine(f0)
        # ‖x₀‖ per row (1 where 0): the xtol tests' floor scales with x (Method.xtol_bound)
        x0_norm = self.xp.linalg.vector_norm(self.X, axis=1)
        self.xscale = self.xp.where((x0_norm > 0) & (x0_norm < math.inf), x0_norm,
                                    self.xp.ones_like(x0_norm))
        self.tracks_best = self.name != "lm"
        self.Xbest, self.fbest, self.Vbest = self.X, self.f, self.V
        self.G = self.Gbest = None  # (the method's init computes them)
        try:
            self.init_method()
        except KeyboardInterrupt:  # before a first step: the block ends at X0 as unstarted
            self._unstarted(rows, X, f0, V0, Status.INTERRUPTED)
            return Status.INTERRUPTED
        stop = None
        try:
            while self.rows.size:
                self.finish_rows()
                if not self.rows.size:
                    break
                self.step()
                if bar is not None:
                    bar.n = int((self.status != _RUNNING).sum())
                    bar.refresh()
                if self.callback is not None:
                    try:
                        self.callback(self._intermediate())
                    except StopIteration:
                        stop = Status.CALLBACK
                        self.mark(np.ones(self.rows.size, bool), stop)
                        self.finish_rows()
        except KeyboardInterrupt:
            stop = Status.INTERRUPTED
            self.mark(np.ones(self.rows.size, bool), stop)
            self.finish_rows()
        return stop

    def _unstarted(self, rows: np.ndarray, X: Any, f0: Any, V0: Any, status: Status) -> None:
        """The rows of a chunk that a stop kept from starting end at X0 with ``status`` (their
        gradient was never computed: NaN)."""
        xp, idx = self.xp, self._idx(rows)
        self.status[rows] = _STATUSES.index(status)
        X_r = xp.take(X, idx, axis=0)
        self.done.append((rows, X_r, xp.take(f0, idx, axis=0),
                          xp.full_like(X_r, math.nan), xp.take(V0, idx, axis=0)))

    def _intermediate(self) -> dict:
        """What a callback sees: copies (one that writes into ``x`` must not move the
        iterates behind the solver's back: LM then reported XTOL at a point never evaluated)."""
        xp = self.xp
        return BatchResult(x=xp.asarray(self.X, copy=True), fun=xp.asarray(self.f, copy=True),
                           rows=self.rows.copy(),
                           nit=self.nit[self.rows].copy(), method=self.name)

    def mark(self, mask_np: np.ndarray, status: Status, overwrite: bool = False) -> np.ndarray:
        """Set the status of the active rows in ``mask_np`` (those still running, unless
        ``overwrite``); returns the positions, among the active rows, of those it set."""
        i = np.nonzero(mask_np)[0]
        if not overwrite:
            i = i[self.status[self.rows[i]] == _RUNNING]
        self.status[self.rows[i]] = _STATUSES.index(status)
        return i

    def finish_rows(self) -> None:
        """Budgets, LM's new Jacobians (:meth:`_linearize_lm`), divergence and the best iterate
        on faults; then compaction: rows with a status leave the working arrays."""
        o, ev, xp = self.o, self.ev, self.xp
        running = self.status[self.rows] == _RUNNING
        self.mark(running & (self.nit[self.rows] >= o["maxiter"][self.rows]), Status.MAXITER)
        self.mark(running & (ev.nfev[self.rows] >= o["maxfev"][self.rows]), Status.MAXFEV)
        if self.name == "lm":
            self._linearize_lm()
            self.reserve(self.status[self.rows] == _RUNNING, 1)  # the next trial's evaluation
        st = self.status[self.rows]
        ended = st != _RUNNING
        if not ended.any():
            return
        # a run that ends above f(x0) with a converged/budget/no-progress status diverged
        above = self._host(self.f > self.f0)
        soft = ended & _SOFT[st]  # (at running rows, st = −1: masked by ended)
        self.mark(above & soft, Status.DIVERGED, overwrite=True)
        fault = ended & _FAULT[self.status[self.rows]]
        X, f, V, G = self.X, self.f, self.V, self.G
        if fault.any() and self.tracks_best:
            # a fault returns the best accepted iterate (LM's accepted steps always lower f,
            # so there the last one is the best)
            m = self._dev(fault)
            X, f = _merge(xp, m, self.Xbest, X), xp.where(m, self.fbest, f)
            V, G = _merge(xp, m, self.Vbest, V), _merge(xp, m, self.Gbest, G)
        e = self._idx(np.nonzero(ended)[0])
        self.done.append((self.rows[ended], xp.take(X, e, axis=0), xp.take(f, e, axis=0),
                          xp.take(G, e, axis=0), xp.take(V, e, axis=0)))
        k = self._idx(np.nonzero(~ended)[0])
        self.compact(k)
        self.rows = self.rows[~ended]

    def compact(self, k: Any) -> None:
        """Keep the rows ``k`` of every working array (of every field of LM's subproblem)."""
        xp = self.xp
        for name in self.state_names():
            a = getattr(self, name)
            setattr(self, name, type(a)(*(xp.take(f, k, axis=0) for f in a))
                    if isinstance(a, tuple) else xp.take(a, k, axis=0))

    def state_names(self) -> list[str]:
        best = ["Xbest", "fbest", "Vbest", "Gbest"] if self.tracks_best else []
        return ["X", "V", "f", "f0", "xscale", "G"] + best + self.method_state

    def _result(self) -> BatchResult:
        xp, ev, Bn = self.xp, self.ev, self.ev.Bn
        if Bn == 0:
            n = self.X.shape[1]
            empty = xp.zeros((0, n), dtype=self.X.dtype, device=array_api_compat.device(self.X))
            return BatchResult(x=empty, fun=empty[:, 0], jac=empty,
                               status=np.zeros(0, np.int64), success=np.zeros(0, bool),
                               nit=self.nit, nfev=ev.nfev, njev=ev.njev, nhev=ev.nhev,
                               message="0 problems", method=self.name,
                               _status_index=self.status, _details={})
        order_np = np.argsort(np.concatenate([d[0] for d in self.done]), kind="stable")
        order = xp.asarray(order_np, device=array_api_compat.device(self.done[0][1]))

        def cat(k: int) -> Any:
            return xp.take(xp.concat([d[k] for d in self.done], axis=0), order, axis=0)

        res = BatchResult(x=cat(1), fun=cat(2), jac=cat(3),
                          status=_CODES[self.status], success=_SUCCESS[self.status],
                          nit=self.nit, nfev=ev.nfev.copy(), njev=ev.njev.copy(),
                          method=self.name, _status_index=self.status,
                          _details=self.details)
        if ev.kind == "objective":
            res["nhev"] = ev.nhev.copy()
        else:
            res["residual"] = cat(4)
        counts = {_STATUSES[k].name: int(c)
                  for k, c in enumerate(np.bincount(self.status, minlength=len(_STATUSES)))
                  if c}
        n_ok = int(res["success"].sum())
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
        res["message"] = f"{n_ok} of {Bn} problems converged ({parts})"
        return res

    # -- method dispatch
    def init_method(self) -> None:
        getattr(self, f"_init_{self.name if self.name != 'hig' else 'gn'}")()

    def step(self) -> None:
        getattr(self, f"_step_{self.name if self.name != 'hig' else 'gn'}")()

    def track_best(self, accepted: Any) -> None:
        xp = self.xp
        better = accepted & (self.f < self.fbest)
        self.Xbest = _merge(xp, better, self.X, self.Xbest)
        self.Vbest = _merge(xp, better, self.V, self.Vbest)
        self.Gbest = _merge(xp, better, self.G, self.Gbest)
        self.fbest = xp.where(better, self.f, self.fbest)

    # == Levenberg-Marquardt ======================================================================
    def _init_lm(self) -> None:
        xp = self.xp
        b, n = self.X.shape
        dev = array_api_compat.device(self.X)
        z = xp.zeros((b,), dtype=self.X.dtype, device=dev)
        k = min(self.V.shape[1], n)
        self.method_state = ["D", "delta", "par", "first", "gn_step", "newJ", "xnorm",
                             "seen", "gscaled", "nonfinite_run", "since", "sub"]
        self.D = xp.ones_like(self.X)
        # the entries whose column of J̃ is nonzero (the xtol tests' ‖Dx‖: _step_lm)
        self.seen = xp.ones(self.X.shape, dtype=xp.bool, device=dev)
        self.delta, self.par, self.xnorm = z, z, z
        self.first = xp.ones((b,), dtype=xp.bool, device=dev)
        self.gn_step = xp.zeros((b,), dtype=xp.bool, device=dev)  # a Gauss-Newton step accepted
        self.newJ = xp.ones((b,), dtype=xp.bool, device=dev)
        # the normal equations' precision: float64 for float32 problems (_linearize_lm)
        self.wide = xp.float64 if self.X.dtype == xp.float32 else self.X.dtype
        no = xp.zeros((b,), dtype=xp.bool, device=dev)
        zk = xp.zeros((b, k), dtype=self.X.dtype, device=dev)
        self.sub = _Subproblem(
            chol=no, M=xp.zeros((b, n, n), dtype=self.wide, device=dev),
            ga=xp.zeros((b, n), dtype=self.wide, device=dev),
            v0=xp.zeros_like(self.X), n0=z, jp0=z, spec=no, s2=zk, sq=zk, c0=zk,
            Vt=xp.zeros((b, k, n), dtype=self.X.dtype, device=dev), full=no)
        self.G = xp.zeros_like(self.X)
        self.gscaled = z
        self.nonfinite_run = xp.zeros((b,), dtype=xp.int64, device=dev)
        self.since = xp.full((b,), -1, dtype=xp.int64, device=dev)

    def _linearize_lm(self) -> None:
        """A new Jacobian at every row that moved (``newJ``), in one call: at the running rows
        the gradient, the gradient test, scaling D and the subproblem's terms; at rows that
        have just ended the gradient they report (not counted in njev, as SciPy and the
        single-problem LM do).  Where a difference Jacobian would exceed maxfev a row ends
        MAXFEV with a NaN gradient."""
        xp, o, ev = self.xp, self.o, self.ev
        new = self._host(self.newJ)
        short = new & (self.budget_left() < ev.linearization_cost(self.X.shape[1]))
        self.mark(short, Status.MAXFEV)
        if short.any():
            self.G = _merge(xp, self._dev(short), xp.full_like(self.G, math.nan), self.G)
        running = self.status[self.rows] == _RUNNING
        sel, ended = new & ~short & running, new & ~short & ~running
        # the running rows first, then the ended ones: each part of J a slice of the whole
        s_np = np.nonzero(sel)[0]
        order = np.concatenate([s_np, np.nonzero(ended)[0]])
        if not order.size:
            return
        at = self._idx(order)
        X, V = (self.X, self.V) if sel.all() else (xp.take(self.X, at, axis=0),
                                                   xp.take(self.V, at, axis=0))
        J = ev.first(X, V, self._idx(self.rows[order]), self.rows[order])
        self.newJ = xp.zeros_like(self.newJ)
        Y = V  # (the outputs, for the gradient test's difference Jacobian check)
        V, J = ev.gauss_newton(V, J)  # from here on r̃ and J̃ (r and J without a loss)
        k = s_np.size
        if ended.any():
            ev.njev[self.rows[ended]] -= 1
            self.G = self._scatter(ended)(_vecmat(xp, V[k:, ...], J[k:, ...]), self.G)
            changed = np.isin(self.status[self.rows[order[k:]]], _CHANGE_CODES)
            if changed.any():  # (the Jacobian at a point an ftol/xtol stop accepted)
                c = self._idx(np.nonzero(changed)[0] + k)
                self._blind_change_stops(order[k:][changed], *(xp.take(a, c, axis=0)
                                                               for a in (X, Y, J)),
                                         overwrite=True)
            X, Y, V, J = X[:k, ...], Y[:k, ...], V[:k, ...], J[:k, ...]
        if not k:
            return
        s = self._idx(s_np)
        # the normal equations in float64 for float32 problems (where forming AᵀA in float32
        # would lose ε₃₂·κ(A)² and no Jacobian could qualify for the Cholesky route)
        Jw, Vw = (J, V) if self.wide == J.dtype else (xp.astype(J, self.wide),
                                                     xp.astype(V, self.wide))
        Gw = _vecmat(xp, Vw, Jw)
        JtJ = xp.matrix_transpose(Jw) @ Jw
        G = Gw if self.wide == J.dtype else xp.astype(Gw, J.dtype)
        cn = xp.astype(xp.sqrt(xp.linalg.diagonal(JtJ)), J.dtype)  # (b', n) column norms
        cn, rescaled = _safe_column_norms(xp, J, cn)
        rn = _row_norms(xp, V)
        safe_cn = xp.where(cn > 0, cn, xp.ones_like(cn))
        ratio = xp.where(cn > 0, xp.abs(G) / safe_cn, xp.zeros_like(G))
        gscaled = xp.where(rn > 0, xp.max(ratio, axis=1) / xp.where(rn > 0, rn, 1.0),
                           xp.zeros_like(rn))
        finite_g = xp.all(xp.isfinite(G), axis=1)
        gscaled = xp.where(finite_g, gscaled, xp.full_like(gscaled, math.inf))
        first = xp.take(self.first, s, axis=0)
        D_old = xp.take(self.D, s, axis=0)
        if o["scaling"]:
            D = xp.where(_expand(xp, first, cn), xp.where(cn > 0, cn, xp.ones_like(cn)),
                         xp.maximum(D_old, cn))
        else:
            D = D_old
        Dw = xp.astype(D, self.wide)
        if rescaled is None:
            M = JtJ / (Dw[:, :, None] * Dw[:, None, :])  # AᵀA of the scaled A = J D⁻¹
        else:  # where JᵀJ over- or underflowed (A = J D⁻¹ does not): AᵀA itself
            A = xp.astype(J, self.wide) / Dw[:, None, :]
            Dd = _merge(xp, rescaled, xp.ones_like(Dw), Dw)
            M = _merge(xp, rescaled, xp.matrix_transpose(A) @ A,
                       JtJ / (Dd[:, :, None] * Dd[:, None, :]))
        b, n = G.shape
        ok = xp.all(xp.isfinite(xp.reshape(M, (b, n * n))), axis=1)
        # rows with a non-finite Jacobian end NONFINITE below; I and 0 keep the solves calm
        if not bool(xp.all(ok)):
            eye = xp.eye(n, dtype=M.dtype, device=array_api_compat.device(M))
            M, V = _merge(xp, ok, M, eye + xp.zeros_like(M)), _merge(xp, ok, V, xp.zeros_like(V))
            J, Gw = _merge(xp, ok, J, xp.zeros_like(J)), _merge(xp, ok, Gw, xp.zeros_like(Gw))
        sub, groups = self._lm_terms(M, J, D, V, Gw / Dw)
        xn = xp.linalg.vector_norm(D * X, axis=1)
        delta0 = o["factor"] * xp.where(xn > 0, xn, xp.ones_like(xn))
        put = self._scatter(sel)
        self.G = put(G, self.G)
        self.gscaled = put(gscaled, self.gscaled)
        self.D = put(D, self.D)
        self.seen = put(cn > 0, self.seen)
        self.sub = _Subproblem(*(old if new is None else put(new, old)
                                 for new, old in zip(sub, self.sub, strict=True)))
        for rows, terms in groups:  # (the rows off the Cholesky route)
            into = np.zeros_like(sel)
            into[s_np[rows]] = True
            self.sub = self._with_terms(self.sub, into, terms)
        self.xnorm = xp.where(self._dev(sel) & self.first, put(xn, self.xnorm), self.xnorm)
        self.delta = xp.where(self._dev(sel) & self.first, put(delta0, self.delta), self.delta)
        # the tests at a new Jacobian: f = 0, non-finite gradient, the scaled gradient
        gs = np.asarray(B.to_numpy(self.gscaled), dtype=np.float64)
        self._zero_test(sel)
        self._flat_loss_test(s_np, rn)
        self.mark(sel & ~np.isfinite(gs), Status.NONFINITE)
        self._gradient_test(sel & (gs <= o["gtol"][self.rows]), s_np, cn, rn, X, Y, J)

    def _lm_terms(self, M: Any, J: Any, D: Any, r: Any,
                  g: Any) -> tuple[_Subproblem, list[tuple[np.ndarray, tuple]]]:
        """What the trust-region subproblems of the scaled Jacobians ``A = J D⁻¹`` (b, m, n)
        with residuals ``r``, ``M = AᵀA`` and ``g = Aᵀr`` need, per row, by one of two
        routes (the single path's forms of the subproblem, :mod:`newtonkit.methods._lmpar`):

        * normal equations (``chol``), where ``M = LLᵀ`` factors and ε·‖M‖_F·‖L⁻¹‖_F² <
          ``GRAM_MAX_ERR`` (an upper bound on ε·κ(M): the single path's limit for forming
          ``AᵀA``): the Gauss-Newton step ``v0 = M⁻¹g`` with ``n0 = ‖v0‖`` and ``jp0 =
          ‖A v0‖²``.  Where it does not fit in the trust region, λ comes from the
          eigendecomposition of ``M`` (:meth:`_with_spectral_terms`, taken then, once per
          Jacobian).
        * SVD (the other rows: rank-deficient, ill-conditioned or wide): the terms of
          :func:`newtonkit.methods._trust.lm_terms` (``spec``), at once.  Its Gram form is
          tried only where ``M`` factors and ε·‖M‖_F·‖L⁻¹‖_F² < 2n^{3/2}·``GRAM_MAX_ERR``:
          that bound is at most n^{3/2}·κ(M), so elsewhere the test ε·κ(AᵀA) <
          ``GRAM_MAX_ERR`` fails (by a factor 2 beyond rounding; a matrix that does not
          factor has κ ≳ 1/(nε)).

        Returns the subproblem with the spectral fields ``None``, and the groups of
        ``lm_terms`` (host masks over the rows, the terms of those rows) that
        :meth:`_with_terms` puts in.
        """
        xp = self.xp
        b, m, n = J.shape
        L, ok = _cholesky(xp, M)
        Li = _inverse_lower(xp, L)
        cond = (_row_norms(xp, xp.reshape(M, (b, n * n)))
                * xp.sum(xp.reshape(Li * Li, (n * n, b)), axis=0))
        eps = float(xp.finfo(M.dtype).eps)
        chol = ok & (eps * cond < GRAM_MAX_ERR) if m >= n else ok & ~ok
        y = xp.sum(Li * _batch_last(xp, g)[None, :, :], axis=1)  # L⁻¹g, (n, b)
        v0 = _batch_first(xp, xp.sum(Li * y[:, None, :], axis=0))  # L⁻ᵀL⁻¹g = M⁻¹g
        n0 = _row_norms(xp, v0)
        jp0 = xp.maximum(_rows_dot(xp, v0, g), xp.zeros_like(n0))  # gᵀM⁻¹g = ‖A v0‖²
        v0, n0, jp0 = (xp.astype(a, J.dtype) for a in (v0, n0, jp0))
        groups = []
        rest = ~np.asarray(B.to_numpy(chol), dtype=bool)
        if rest.any():
            rest_np = np.nonzero(rest)[0]
            idx = self._idx(rest_np)
            A = xp.take(J, idx, axis=0) / xp.take(D, idx, axis=0)[:, None, :]
            gram = self._host(ok & (self.eps * cond < 2.0 * n**1.5 * GRAM_MAX_ERR))[rest_np]
            for rows, terms in _trust.lm_terms(xp, A, xp.take(r, idx, axis=0), self.eps, gram):
                into = np.zeros_like(rest)
                into[rest_np[rows]] = True
                groups.append((into, terms))
        spectral = (None,) * len(_SPECTRAL)
        return _Subproblem(chol, M, g, v0, n0, jp0, ~chol, *spectral), groups

    def _with_spectral_terms(self, sub: _Subproblem, need: np.ndarray) -> _Subproblem:
        """``sub`` with the terms of :func:`~newtonkit.methods._trust.lm_subproblem` for the
        rows ``need`` from ``M = AᵀA = V diag(s²) Vᵀ`` (exact enough where the Cholesky route
        was taken: ``GRAM_MAX_ERR``): ``s2``, ``sq = Vᵀg``, ``c0 = sq/s²``."""
        xp = self.xp
        idx = self._idx(np.nonzero(need)[0])
        w, Q = xp.linalg.eigh(xp.take(sub.M, idx, axis=0))  # ascending
        sq = _vecmat(xp, xp.take(sub.ga, idx, axis=0), Q)
        dt = self.X.dtype  # (M is float64 for float32 problems: the terms are rounded once)
        terms = tuple(xp.astype(a, dt) for a in (w, sq, sq / w, xp.matrix_transpose(Q))) + (
            xp.ones((w.shape[0],), dtype=xp.bool, device=array_api_compat.device(w)),)
        return self._with_terms(sub, need, terms)

    def _with_terms(self, sub: _Subproblem, rows: np.ndarray, terms: tuple) -> _Subproblem:
        """``sub`` with the spectral fields of the active rows ``rows`` set to ``terms`` (one
        row each, in order) and marked fresh (``spec``)."""
        put = self._scatter(rows)
        return sub._replace(spec=sub.spec | self._dev(rows), **{
            name: put(value, getattr(sub, name))
            for name, value in zip(_SPECTRAL, terms, strict=True)})

    def _lm_step(self) -> tuple[Any, Any, Any, Any]:
        """The trial of every active row: ``(v, λ, ‖v‖, ‖A v‖²)``, the scaled step ``-v``
        (MINPACK's ``lmpar``): the Gauss-Newton step where it fits in 1.1Δ, else λ by the
        Moré-Hebden iteration (:func:`~newtonkit.methods._trust.lm_subproblem`) on the
        spectral terms of each row's Jacobian (:meth:`_lm_terms`)."""
        xp, sub = self.xp, self.sub
        chol = self._host(sub.chol)
        iterate = ~(chol & self._host(sub.n0 - self.delta <= 0.1 * self.delta))
        v, par, pnorm, jp2 = sub.v0, xp.zeros_like(self.par), sub.n0, sub.jp0
        if not iterate.any():
            return v, par, pnorm, jp2
        need = iterate & ~self._host(sub.spec)
        if need.any():  # (kept: the next trial on this Jacobian reuses them)
            sub = self.sub = self._with_spectral_terms(sub, need)
        idx = self._idx(np.nonzero(iterate)[0])

        def t(a: Any) -> Any:
            return xp.take(a, idx, axis=0)

        c, par_i, pnorm_i, jp2_i = _trust.lm_subproblem(
            xp, t(sub.s2), t(sub.sq), t(sub.c0), t(sub.full), t(self.delta), t(self.par),
            self.tiny)
        put = self._scatter(iterate)
        return (put(_vecmat(xp, c, t(sub.Vt)), v), put(par_i, par), put(pnorm_i, pnorm),
                put(jp2_i, jp2))

    def _scatter(self, sel: np.ndarray) -> Any:
        """:func:`newtonkit._backend.scatter_rows` over the active rows ``sel``."""
        return B.scatter_rows(self.xp, sel, array_api_compat.device(self.X))

    def _xtol_bound(self, X: Any, J: Any = None) -> Any:
        """The xtol test's bound on a step from each row of ``X`` (the active rows):
        ``xtol·(xtol·‖x₀‖ + ‖x‖)``, per row the single path's
        :meth:`~newtonkit.methods._base.Method.xtol_bound`; with the Jacobians ``J`` at ``X``,
        ‖x‖ over the entries whose column of J is nonzero (its ``seen``)."""
        xp, xtol = self.xp, self.tol("xtol")
        if J is not None:
            X = xp.where(xp.any(J != 0, axis=1), X, xp.zeros_like(X))
        return xtol * (xtol * self.xscale + xp.linalg.vector_norm(X, axis=1))

    def _small_step(self, S: Any, X: Any, bound: Any, predicted: Any, f: Any) -> np.ndarray:
        """The xtol test on the steps ``S`` from ``X`` at the active rows (host mask), per row
        the single path's :meth:`~newtonkit.methods._lsq.LeastSquaresMethod.small_step`:
        ‖s‖ ≤ ``bound`` (:meth:`_xtol_bound` at X) and, where the model's value of the step
        ``predicted`` exceeds ftol·|f| and ε·f₀, |sᵢ| ≤ xtol·(xtol·‖x₀‖ + |xᵢ|) at every
        entry."""
        xp, xtol = self.xp, self.tol("xtol")
        short = xp.linalg.vector_norm(S, axis=1) <= bound
        little = predicted <= xp.maximum(self.tol("ftol") * xp.abs(f), self.eps * self.f0)
        floor = xtol[:, None] * (xtol[:, None] * self.xscale[:, None] + xp.abs(X))
        return self._host(short & (little | xp.all(xp.abs(S) <= floor, axis=1)))

    def _dev(self, mask_np: np.ndarray) -> Any:
        return self.xp.asarray(mask_np, device=array_api_compat.device(self.X))

    def _gradient_test(self, met: np.ndarray, s_np: np.ndarray, cn: Any, rn: Any, X: Any,
                       Y: Any, J: Any) -> None:
        """GTOL for the rows in ``met``, FD_ZERO_COLUMN where a difference Jacobian's exactly
        zero entries may hide more of a gradient entry than the test allows plus the rounding
        of its other entries (the single path's ``gradient_status``): ``cn`` (b′, n) and
        ``rn`` (b′,) the column norms of J̃ and the norm of r̃, ``X``, ``Y`` (the outputs) and
        ``J`` (J̃) of the active rows ``s_np``."""
        rounding = self.ev.unseen_gradient(X, Y, J, self._idx(self.rows[s_np])) if met.any() \
            else None
        if rounding is not None:
            unseen, seen = rounding
            gtol = self.xp.take(self.tol("gtol"), self._idx(s_np), axis=0)
            self._fd_zero_columns(met, s_np, unseen > gtol[:, None] * cn * rn[:, None] + seen)
        self.mark(met, Status.GTOL)

    def _fd_zero_columns(self, met: np.ndarray, s_np: np.ndarray, blind: Any,
                         overwrite: bool = False) -> None:
        """FD_ZERO_COLUMN for the rows in ``met`` where ``blind`` (rows ``s_np`` of the active
        ones, one entry per parameter) marks a difference Jacobian column (or gradient entry)
        that cannot show the gradient: fun did not change along that parameter, so a test met
        there proves nothing.  ``overwrite``: rows that already hold their status."""
        if self.ev.jac_scheme in ("2-point", "3-point") and met.any():
            zero = self._host(self.xp.any(blind, axis=1))
            zmask = np.zeros_like(met)
            zmask[s_np[zero]] = True
            for i in self.mark(met & zmask, Status.FD_ZERO_COLUMN, overwrite=overwrite):
                k = int(np.nonzero(s_np == i)[0][0])
                cols = np.nonzero(B.to_numpy(blind[k, ...]))[0].tolist()
                self.details[int(self.rows[i])] = {"columns": cols}

    def _blind_change_stops(self, s_np: np.ndarray, X: Any, Y: Any, J: Any,
                            overwrite: bool = False) -> None:
        """FD_ZERO_COLUMN at the active rows ``s_np`` where a change test (ftol/xtol) holds or
        held, if ``J`` (theirs: a difference Jacobian at ``X``, outputs ``Y``) has a column that
        is exactly zero while fun's rounding could hide a change along it: no step moved that
        parameter, so the test proves nothing about it (the single path's
        ``LeastSquaresMethod.verify``).  ``overwrite``: rows that already hold their status."""
        if self.ev.jac_scheme not in ("2-point", "3-point") or not s_np.size:
            return
        unseen, _ = self.ev.unseen_gradient(X, Y, J, self._idx(self.rows[s_np]))
        met = np.zeros(self.rows.size, dtype=bool)
        met[s_np] = True
        blind = self.xp.all(J == 0, axis=1) & (unseen > 0)  # (b, n): exactly zero columns
        self._fd_zero_columns(met, s_np, blind, overwrite)

    def _blind_change_tests(self, *tests: np.ndarray) -> None:
        """:meth:`_blind_change_stops` at the running rows where any of the change ``tests``
        (host masks over the active rows) holds, on the current Jacobians."""
        cand = np.logical_or.reduce(tests) & (self.status[self.rows] == _RUNNING)
        if cand.any() and self.ev.jac_scheme in ("2-point", "3-point"):
            c_np = np.nonzero(cand)[0]
            c = self._idx(c_np)
            self._blind_change_stops(c_np, *(self.xp.take(a, c, axis=0)
                                              for a in (self.X, self.V, self.J)))

    def _step_lm(self) -> None:
        """One trial per row, on the Jacobian :meth:`finish_rows` linearised last."""
        xp, ev = self.xp, self.ev
        v, par, pnorm, jp2 = self._lm_step()
        v = v / self.D
        delta = xp.where(self.first, xp.minimum(self.delta, pnorm), self.delta)
        # the first trials' ftol test also needs the Gauss-Newton step's offer (the single
        # path's rule: the initial radius knows nothing of the problem's scale)
        sub, offer = self.sub, None  # (after every row's first accepted step: MINPACK's test)
        if self._host(self.first).any():
            jp_gn = xp.where(sub.chol, sub.jp0, xp.sum(sub.sq * sub.c0, axis=1))
            safe_f = xp.where(self.f > 0, self.f, xp.ones_like(self.f))
            offer = xp.where(self.first, jp_gn / (2.0 * safe_f), xp.zeros_like(self.f))
        X1 = self.X - v
        V1 = ev.values(X1, self._idx(self.rows), self.rows)
        f1 = ev.objective(V1)
        upd = _trust.more_update(xp, self.f, f1, delta, par, pnorm, jp2)
        # the xtol test also needs the Gauss-Newton step's length where the radius is unproven
        # (_trust.radius_unproven; 0 elsewhere: MINPACK's test as it is)
        n_gn = xp.where(sub.chol, sub.n0, _row_norms(xp, sub.c0))
        gn_length = xp.where(_trust.radius_unproven(~self.gn_step, par, upd.ratio), n_gn,
                             xp.zeros_like(n_gn))
        acc = upd.accepted
        self.X = _merge(xp, acc, X1, self.X)
        self.V = _merge(xp, acc, V1, self.V)
        self.f = xp.where(acc, f1, self.f)
        xn1 = xp.linalg.vector_norm(self.D * X1, axis=1)
        self.xnorm = xp.where(acc, xn1, self.xnorm)
        self.delta, self.par = upd.delta, upd.par
        self.first = self.first & ~acc
        self.gn_step = self.gn_step | (acc & (par == 0))
        self.newJ = acc
        acc_np = self._host(acc)
        self.nit[self.rows[acc_np]] += 1
        finite = xp.isfinite(f1)
        self.nonfinite_run = xp.where(finite, xp.zeros_like(self.nonfinite_run),
                                      self.nonfinite_run + 1)
        self.since = xp.where(~finite, xp.zeros_like(self.since),
                              xp.where(self.since < 0, self.since, self.since + 1))
        # the xtol tests' ‖Dx‖ over the entries whose column is nonzero (the single path's
        # _seen_xnorm: MINPACK's xnorm where every column is)
        masked = xp.where(self.seen, self.D * self.X, xp.zeros_like(self.X))
        xsize = xp.where(xp.all(self.seen, axis=1), self.xnorm,
                         xp.linalg.vector_norm(masked, axis=1))
        code = _trust.more_termination(xp, upd, par, self.delta, xsize, self.gscaled,
                                       self.eps, self.tol("ftol"), self.tol("xtol"),
                                       self.nonfinite_run, self.since, offer, gn_length)
        self._mark_codes(code)

    def _mark_codes(self, code: Any) -> None:
        """The statuses of :func:`~newtonkit.methods._trust.more_termination`'s codes."""
        code_np = np.asarray(B.to_numpy(code)).astype(np.int64)
        i = np.nonzero(code_np)[0]  # (0: go on)
        i = i[self.status[self.rows[i]] == _RUNNING]
        self.status[self.rows[i]] = _TRUST_CODES[code_np[i]]

    # == Gauss-Newton and HIG (line search on an SVD direction) ==================================
    def _init_gn(self) -> None:
        xp = self.xp
        # R: the Gauss-Newton residual r̃ paired with J (= V without a loss: not stored)
        self.method_state = ["J"] + (["R"] if self.ev.loss is not None else [])
        self.J = None
        rows = self.rows
        if self.bounds is not None:
            self.method_state += ["LB", "UB"]
            self.LB, self.UB = (xp.take(b, self._idx(rows), axis=0) for b in self.bounds)
        J = self.ev.first(self.X, self.V, self._idx(rows), rows)
        self.R, self.J = self.ev.gauss_newton(self.V, J)
        self.G = _vecmat(xp, self._gn_residual(), self.J)
        self.Gbest = self.G
        self._lsq_gradient_test(np.ones(rows.size, bool))

    def _gn_residual(self) -> Any:
        """r̃ at the current points: ``R`` with a robust loss, else the residuals ``V``."""
        return self.V if self.ev.loss is None else self.R

    def _zero_test(self, sel: np.ndarray) -> None:
        """Below the normal range of f (rows in ``sel``; f = 0 included): ``ZERO`` where every
        residual is exactly zero, ``UNDERFLOW`` where ½‖r‖² is subnormal or rounded to zero at
        nonzero residuals (the single path's ``gradient_status``)."""
        at_zero = sel & (B.to_numpy(self.f) < self.tiny)
        if not at_zero.any():
            return
        rmax = B.to_numpy(self.xp.max(self.xp.abs(self.V), axis=1))
        under = at_zero & (rmax > 0)
        for i in self.mark(under, Status.UNDERFLOW):
            self.details[int(self.rows[i])] = {"rmax": float(rmax[i])}
        self.mark(at_zero, Status.ZERO)

    def _flat_loss_test(self, s_np: np.ndarray, rn: Any) -> None:
        """``FLAT_LOSS`` at the active rows ``s_np`` (running ones) whose Gauss-Newton residual
        has norm ``rn`` = 0 at a normal f: with a robust loss some residual is not 0 there and
        every ρ′r is, so the gradient is 0 only because the loss is flat (the single path's
        ``gradient_status``)."""
        if self.ev.loss is None or not s_np.size:
            return
        f = self.xp.take(self.f, self._idx(s_np), axis=0)
        flat_np = s_np[self._host((rn == 0) & (f >= self.tiny))]
        if not flat_np.size:
            return
        flat = np.zeros(self.rows.size, dtype=bool)
        flat[flat_np] = True
        rmax = B.to_numpy(self.xp.max(self.xp.abs(self.V), axis=1))
        for i in self.mark(flat, Status.FLAT_LOSS):
            self.details[int(self.rows[i])] = {"rmax": float(rmax[i]),
                                               "f_scale": self.ev.loss.f_scale}

    def _lsq_gradient_test(self, sel: np.ndarray) -> None:
        xp = self.xp
        cn, _ = _safe_column_norms(xp, self.J, xp.linalg.vector_norm(self.J, axis=1))
        # MINPACK's cosine max_j |g_j|/(‖J_j‖·‖r̃‖), free of the scales of r and x; under
        # bounds on the projected gradient in the variables scaled by ‖J_j‖ (the single
        # path's, _bounds.projected_gradient with the column norms; which is G away from the bounds:
        # its plain ‖·‖∞ ≤ gtol ended GTOL at x0 with residuals of scale 1e-5)
        g = self.G
        if self.bounds is not None:
            g = projected_gradient(xp, self.X, self.G, self.LB, self.UB, cn)
        rn = xp.linalg.vector_norm(self._gn_residual(), axis=1)
        ratio = xp.where(cn > 0, xp.abs(g) / xp.where(cn > 0, cn, xp.ones_like(cn)),
                         xp.zeros_like(g))
        gs = xp.where(rn > 0, xp.max(ratio, axis=1) / xp.where(rn > 0, rn, 1.0),
                      xp.zeros_like(rn))
        gs = xp.where(xp.all(xp.isfinite(g), axis=1), gs, xp.full_like(gs, math.inf))
        gs_np = self._host(gs <= self.tol("gtol"))
        self._zero_test(sel)
        if self.ev.loss is not None:
            s_np = np.nonzero(sel)[0]
            self._flat_loss_test(s_np, xp.take(rn, self._idx(s_np), axis=0))
        self.mark(sel & ~np.isfinite(B.to_numpy(gs)), Status.NONFINITE)
        self._gradient_test(sel & gs_np, np.arange(self.rows.size), cn, rn, self.X, self.V,
                            self.J)

    def _direction_gn(self) -> tuple[Any, Any]:
        """−J⁺r (gn) or −η V Σ^κ Uᵀr (hig), dropping σ ≤ threshold; for HIG also the bounds
        on the Gauss-Newton step and its model reduction (``hig.gauss_newton_bounds``; inf
        where nothing is kept), else ``None``."""
        xp, o = self.xp, self.o
        U, s, Vt = _svd(xp, self.J)
        q = _vecmat(xp, self._gn_residual(), U)
        m, n = self.J.shape[1], self.J.shape[2]
        if self.name == "gn":
            thr = self.eps * max(m, n) * s[:, :1]
            power, eta = -1.0, 1.0
        else:
            thr = o["truncation"] * s[:, :1]
            power, eta = o["exponent"], o["step"]
            self.threshold = thr[:, 0]  # (the directions dropped: _gauss_newton_check)
        keep = s > thr
        safe = xp.where(keep, s, xp.ones_like(s))
        coef = xp.where(keep, safe ** power * q, xp.zeros_like(q))
        h = _vecmat(xp, coef, Vt)
        if self.name == "gn":
            return -h, None
        kept, one = xp.any(keep, axis=1), xp.ones_like(s[:, 0])  # (1 where nothing is kept)
        s_min = xp.where(kept, xp.min(xp.where(keep, s, xp.full_like(s, math.inf)), axis=1), one)
        s_max = xp.where(kept, s[:, 0], one)
        bounds = gauss_newton_bounds(xp, s_min, s_max, power, xp.linalg.vector_norm(h, axis=1))
        return -eta * h, tuple(xp.where(kept, b, xp.full_like(b, math.inf)) for b in bounds)

    # -- projected Gauss-Newton (bounds)
    def _project(self, X: Any) -> Any:
        return self.xp.minimum(self.xp.maximum(X, self.LB), self.UB)

    def _projected_gradient(self) -> Any:
        return projected_gradient(self.xp, self.X, self.G, self.LB, self.UB)

    def _active_set(self) -> Any:
        """Bertsekas' ε-active set (b, n): within ε = min(1e-3, ‖X − P(X − G)‖∞) of a bound,
        the gradient pushing onto it."""
        xp = self.xp
        pg = xp.max(xp.abs(self._projected_gradient()), axis=1, keepdims=True)
        eps_k = xp.where(pg > 1e-3, xp.full_like(pg, 1e-3), pg)
        return (((self.X <= self.LB + eps_k) & (self.G > 0))
                | ((self.X >= self.UB - eps_k) & (self.G < 0)))

    def _directions_projected(self) -> tuple[Any, Any]:
        """Bertsekas' ε-active set ``A`` (within ε = min(1e-3, ‖X − P(X − G)‖∞) of a bound,
        the gradient pushing onto it): the Gauss-Newton step −J_F⁺r̃ on the free columns (A's
        columns zeroed: the minimum-norm step leaves them 0), and on A the diagonally scaled
        descent −g/‖J_i‖²; second, the scaled projected-gradient direction −g/‖J_i‖², the
        fallback where the first finds no decrease."""
        xp = self.xp
        A = self._active_set()
        h = xp.sum(self.J * self.J, axis=1)
        h = xp.where(h > 0, h, xp.ones_like(h))
        scaled = -self.G / h
        J = self.J
        self.J = xp.where(A[:, None, :], xp.zeros_like(J), J)
        try:
            d, _ = self._direction_gn()
        finally:
            self.J = J
        return xp.where(A, scaled, d), scaled

    def _step_gn_projected(self) -> None:
        """One projected Gauss-Newton iteration: along ``P(X + t d)``, backtracking to
        ``f(X(t)) ≤ f + c₁ gᵀ(X(t) − X)`` with ``gᵀ(X(t) − X) < 0``; rows whose first direction
        fails retry along the scaled projected gradient (always a descent arc unless
        ``X = P(X − G)``, where the gtol test has stopped the row).

        xtol, before any trial: the full step ``s = P(X + d) − X`` (as the Gauss-Newton step
        without bounds); after a full step, the step taken.  ftol, after any step: MINPACK's
        test, the actual reduction and the most that the Gauss-Newton model at the new point
        offers with its active set held, ½‖J̃_F J̃_F⁺r̃‖² (:meth:`_gauss_newton_offer`), both at
        most ftol·f (so a step shortened by rounding in f where the model offers less than
        ftol·f has converged).  The model's value for the projected step would not do: a
        clipped step can make it negative, and the test would pass anywhere."""
        xp = self.xp
        d, pg_dir = self._directions_projected()
        s = self._project(self.X + d) - self.X
        bad = ~xp.all(xp.isfinite(d), axis=1)
        self.mark(self._host(bad), Status.NONFINITE)
        # as without bounds: a full step within xtol ends the row before any trial (at the
        # rounding level of f no trial could pass the Armijo test: the search would fail)
        # (the model's value of the projected step is at most the full step's, −½gᵀd)
        predicted = -0.5 * _rows_dot(xp, self.G, d)
        early = self._small_step(s, self.X, self._xtol_bound(self.X, self.J), predicted,
                                 self.f)
        self._blind_change_tests(early)
        self.mark(early, Status.XTOL)
        t, X1, V1, f1, nonfinite = self._backtrack_projected(
            d, self.status[self.rows] != _RUNNING)
        retry = self._host(~(t > 0)) & (self.status[self.rows] == _RUNNING)
        if retry.any():
            t2, X2, V2, f2, nf2 = self._backtrack_projected(pg_dir, ~retry)
            r = self._dev(retry)
            t = xp.where(r, t2, t)
            X1, V1 = _merge(xp, r, X2, X1), _merge(xp, r, V2, V1)
            f1, nonfinite = xp.where(r, f2, f1), xp.where(r, nf2, nonfinite)
        f_prev, X_prev = self.f, self.X
        ok, acc = self._accept(t, nonfinite, X1, V1, f1)
        self._relinearize_lsq(ok)
        self._lsq_gradient_test(ok)
        full = self._host(t == 1.0) & ok
        # ftol: MINPACK's test, the actual reduction and the model's offer at the new point
        small_f = self._host(xp.abs(f_prev - self.f) <= self.tol("ftol") * xp.abs(f_prev))
        small_f &= ok & (self.status[self.rows] == _RUNNING)
        if small_f.any():
            k = self._idx(np.nonzero(small_f)[0])
            bound = xp.take(self.tol("ftol") * xp.abs(self.f), k, axis=0)
            small_f[small_f] = self._host(self._gauss_newton_offer(small_f) <= bound)
        small_x = self._small_step(self.X - X_prev, self.X, self._xtol_bound(self.X, self.J),
                                   predicted, f_prev)
        self._blind_change_tests(full & small_x, ok & small_f)
        self.mark(full & small_f & small_x, Status.FTOL_XTOL)
        self.mark(full & small_f, Status.FTOL)
        self.mark(full & small_x, Status.XTOL)
        self.mark(ok & ~full & small_f, Status.FTOL)
        stuck = self._host(xp.abs(f_prev - self.f) <= self.eps * xp.abs(f_prev))
        self.mark(ok & ~full & stuck, Status.NO_PROGRESS)
        self.track_best(acc)

    def _gauss_newton_offer(self, sel: np.ndarray) -> Any:
        """½‖J̃_F J̃_F⁺r̃‖² at the rows ``sel``: the largest reduction of the Gauss-Newton model
        ½‖r̃ + J̃p‖² over the steps p that keep the ε-active set A on its bounds (J̃_F: A's
        columns zeroed; σ ≤ ε·max(m, n)·σ_max dropped, as the step's).  Without an active
        bound it is the offer of every step."""
        xp = self.xp
        k = self._idx(np.nonzero(sel)[0])
        A = xp.take(self._active_set(), k, axis=0)
        J = xp.take(self.J, k, axis=0)
        J = xp.where(A[:, None, :], xp.zeros_like(J), J)
        U, sv, _ = _svd(xp, J)
        q = _vecmat(xp, xp.take(self._gn_residual(), k, axis=0), U)
        keep = sv > self.eps * max(J.shape[1], J.shape[2]) * sv[:, :1]
        return 0.5 * xp.sum(xp.where(keep, q * q, xp.zeros_like(q)), axis=1)

    def _backtrack_projected(self, d: Any, skip: np.ndarray) -> tuple:
        """Per row (not in ``skip``) the first t of 1, ½, ¼, … with a finite value and
        ``f(P(X + t d)) ≤ f + c₁ gᵀ(P(X + t d) − X)``, ``gᵀ(P(X + t d) − X) < 0``; t = 0 where
        none is found in ``max_backtracks`` halvings (or the budget ends)."""
        xp, o, ev = self.xp, self.o, self.ev
        t = xp.ones_like(self.f)
        found = self._dev(skip.copy())
        t_ok = xp.zeros_like(t)
        X1, V1, f1 = self.X, self.V, self.f
        nonfinite = xp.zeros_like(found)
        cost = ev.linearization_cost(self.X.shape[1], self.rows)
        for _ in range(o["max_backtracks"]):
            searching = ~self._host(found)
            can = self.reserve(searching, 1 + cost)
            found = found | self._dev(searching & ~can)
            s_np = np.nonzero(can)[0]
            if not s_np.size:
                break
            s = self._idx(s_np)
            ts = xp.take(t, s, axis=0)
            Xs = xp.take(self.X, s, axis=0)
            Xt = xp.minimum(xp.maximum(Xs + ts[:, None] * xp.take(d, s, axis=0),
                                       xp.take(self.LB, s, axis=0)),
                            xp.take(self.UB, s, axis=0))
            lin = _rows_dot(xp, xp.take(self.G, s, axis=0), Xt - Xs)
            Vt = ev.values(Xt, self._idx(self.rows[s_np]), self.rows[s_np])
            ft = ev.objective(Vt)
            fin = xp.isfinite(ft) & xp.all(xp.isfinite(xp.reshape(Vt, (Vt.shape[0], -1))),
                                           axis=1)
            good = fin & (lin < 0) & (ft <= xp.take(self.f, s, axis=0) + o["c1"] * lin)
            sel = np.zeros(self.X.shape[0], bool)
            sel[s_np] = True
            put = self._scatter(sel)
            good_full = put(good, xp.zeros_like(found)) & self._dev(sel)
            X1 = _merge(xp, good_full, put(Xt, X1), X1)
            V1 = _merge(xp, good_full, put(Vt, V1), V1)
            f1 = xp.where(good_full, put(ft, f1), f1)
            t_ok = xp.where(good_full, t, t_ok)
            found = found | good_full
            nonfinite = nonfinite | (self._dev(sel) & ~put(fin, xp.ones_like(found)))
            t = xp.where(self._dev(sel) & ~found, 0.5 * t, t)
        return t_ok, X1, V1, f1, nonfinite

    def _step_gn(self) -> None:
        if self.bounds is not None:
            return self._step_gn_projected()
        xp, o = self.xp, self.o
        d, gn_bounds = self._direction_gn()
        slope = _rows_dot(xp, self.G, d)
        armijo = o["line_search"]
        bad = ~xp.all(xp.isfinite(d), axis=1)
        self.mark(self._host(bad), Status.NONFINITE)
        if self.name == "gn":
            early = self._small_step(d, self.X, self._xtol_bound(self.X, self.J),
                                     -0.5 * slope, self.f)
            self._blind_change_tests(early)
            self.mark(early, Status.XTOL)
        if armijo:
            self.mark(self._host(~(slope < 0)), Status.NO_PROGRESS)
        t, X1, V1, f1, nonfinite = self._backtrack(d, slope, armijo)
        f_prev, X_prev = self.f, self.X
        ok, acc = self._accept(t, nonfinite, X1, V1, f1)
        self._relinearize_lsq(ok)
        self._lsq_gradient_test(ok)
        # after a full step, the change tests; after a shortened one, MINPACK's ftol test (GN) and
        # stagnation
        full = self._host(t == 1.0) & ok
        short = ok & ~full
        bound_f = self.tol("ftol") * xp.abs(f_prev)
        bound_x = self._xtol_bound(self.X, self.J)
        # ftol is MINPACK's test, actual and predicted reductions: for GN the model's for the
        # full step, −½gᵀd (as the single path); for HIG the Gauss-Newton step's bound
        small_f = self._host(xp.abs(f_prev - self.f) <= bound_f)
        predicted = -0.5 * slope if gn_bounds is None else gn_bounds[1]
        small_x = self._small_step(self.X - X_prev, self.X, bound_x, predicted, f_prev)
        small_f &= self._host(predicted <= bound_f)
        if gn_bounds is not None:  # HIG: the Gauss-Newton step's length too, as the single path
            small_x &= self._host(gn_bounds[0] <= bound_x)
        uphill = self._host(self.f > f_prev)
        conv = full & ~uphill
        conv_f, conv_x = conv & small_f, conv & small_x
        self._blind_change_tests(conv_f, conv_x, *([short & small_f] if self.name == "gn" else []))
        if self.name == "hig":
            conv_f, conv_x = self._gauss_newton_check(conv_f, conv_x, bound_x)
        self.mark(conv_f & conv_x, Status.FTOL_XTOL)
        self.mark(conv_f, Status.FTOL)
        self.mark(conv_x, Status.XTOL)
        if self.name == "gn":
            self.mark(short & small_f, Status.FTOL)
        stuck = self._host(xp.abs(f_prev - self.f) <= self.eps * xp.abs(f_prev))
        self.mark(short & stuck, Status.NO_PROGRESS)
        self.track_best(acc)

    def _gauss_newton_check(self, small_f: np.ndarray, small_x: np.ndarray,
                            bound_x: Any) -> tuple[np.ndarray, np.ndarray]:
        """HIG's change tests ``small_f``/``small_x`` hold on the directions it kept; at the
        running rows where one holds, the single path's ``gauss_newton_check``: the
        Gauss-Newton step d = −J⁺r̃ on the directions this step dropped (singular values
        above ε·max(m, n)·σ_max and at most the step's threshold) must offer ½‖Jd‖² ≤ ftol·f
        or be at most ``bound_x`` long (:meth:`_xtol_bound` at the active rows).  Rows where
        neither holds end ``TRUNCATED``; returns the tests that stand."""
        cand = (small_f | small_x) & (self.status[self.rows] == _RUNNING)
        if not cand.any():
            return small_f, small_x
        xp = self.xp
        c_np = np.nonzero(cand)[0]
        c = self._idx(c_np)
        predicted, step = gauss_newton_terms(xp, xp.take(self.J, c, axis=0),
                                             xp.take(self._gn_residual(), c, axis=0),
                                             xp.take(self.threshold, c, axis=0))
        f = xp.take(self.f, c, axis=0)
        ok = ((predicted <= xp.take(self.tol("ftol"), c, axis=0) * xp.abs(f))
              | (step <= xp.take(bound_x, c, axis=0)))
        bad = np.zeros_like(cand)
        bad[c_np[~self._host(ok)]] = True
        self.mark(bad, Status.TRUNCATED)
        return small_f & ~bad, small_x & ~bad

    def _accept(self, t: Any, nonfinite: Any, X1: Any, V1: Any, f1: Any) -> tuple[Any, Any]:
        """After a line search (``t > 0`` where it found a point): rows without one end
        NONFINITE or LINE_SEARCH, the others move to their trial point.  Returns the accepted
        rows on the host and on the device."""
        xp = self.xp
        ok = self._host(t > 0) & (self.status[self.rows] == _RUNNING)
        self.mark(~ok & self._host(nonfinite), Status.NONFINITE)
        self.mark(~ok, Status.LINE_SEARCH)
        acc = self._dev(ok)
        self.X = _merge(xp, acc, X1, self.X)
        self.V = _merge(xp, acc, V1, self.V)
        self.f = xp.where(acc, f1, self.f)
        self.nit[self.rows[ok]] += 1
        return ok, acc

    def _relinearize_lsq(self, ok: np.ndarray) -> None:
        """The Jacobian, its Gauss-Newton form and the gradient at the rows in ``ok``."""
        xp, ev = self.xp, self.ev
        s_np = np.nonzero(ok)[0]
        if not s_np.size:
            return
        s = self._idx(s_np)
        Xs, Vs = xp.take(self.X, s, axis=0), xp.take(self.V, s, axis=0)
        Js = ev.first(Xs, Vs, self._idx(self.rows[s_np]), self.rows[s_np])
        Rs, Js = ev.gauss_newton(Vs, Js)
        put = self._scatter(ok)
        self.J = put(Js, self.J)
        if ev.loss is not None:
            self.R = put(Rs, self.R)
        self.G = put(_vecmat(xp, Rs, Js), self.G)

    def _backtrack(self, d: Any, slope: Any, armijo: bool) -> tuple:
        """Per-row backtracking from t = 1 (the rule of :func:`methods._linesearch.backtrack`):
        the first t with a finite value (and the Armijo condition when ``armijo``)."""
        xp, o, ev = self.xp, self.o, self.ev
        t = xp.ones_like(self.f)
        found = self._dev(self.status[self.rows] != _RUNNING)
        t_ok = xp.zeros_like(t)
        X1, V1, f1 = self.X, self.V, self.f
        nonfinite = xp.zeros_like(found)
        cost = ev.linearization_cost(self.X.shape[1], self.rows)
        for _ in range(o["max_backtracks"]):
            searching = ~self._host(found)
            # a trial and the linearisation at the point it may accept must fit in maxfev
            can = self.reserve(searching, 1 + cost)
            found = found | self._dev(searching & ~can)
            s_np = np.nonzero(can)[0]
            if not s_np.size:
                break
            s = self._idx(s_np)
            ts = xp.take(t, s, axis=0)
            Xt = xp.take(self.X, s, axis=0) + ts[:, None] * xp.take(d, s, axis=0)
            Vt = ev.values(Xt, self._idx(self.rows[s_np]), self.rows[s_np])
            ft = ev.objective(Vt)
            f0s, sl = xp.take(self.f, s, axis=0), xp.take(slope, s, axis=0)
            fin = xp.isfinite(ft) & xp.all(xp.isfinite(xp.reshape(Vt, (Vt.shape[0], -1))),
                                           axis=1)
            good = fin & (ft <= f0s + o["c1"] * ts * sl) if armijo else fin
            sel = np.zeros(self.X.shape[0], bool)
            sel[s_np] = True
            put = self._scatter(sel)
            good_full = put(good, xp.zeros_like(found)) & self._dev(sel)
            X1 = _merge(xp, good_full, put(Xt, X1), X1)
            V1 = _merge(xp, good_full, put(Vt, V1), V1)
            f1 = xp.where(good_full, put(ft, f1), f1)
            t_ok = xp.where(good_full, t, t_ok)
            found = found | good_full
            nonfinite = nonfinite | (self._dev(sel) & ~put(fin, xp.ones_like(found)))
            # the next trial: the safeguarded quadratic minimiser, or half on a non-finite value
            denom = 2.0 * (ft - f0s - sl * ts)
            quad = xp.where(denom > 0, -sl * ts * ts / xp.where(denom > 0, denom, 1.0),
                            0.5 * ts)
            t_new = xp.where(fin, xp.minimum(xp.maximum(quad, 0.1 * ts), 0.5 * ts), 0.5 * ts)
            t = xp.where(self._dev(sel) & ~found, put(t_new, t), t)
        return t_ok, X1, V1, f1, nonfinite

    # == Newton ===================================================================================
    def _init_newton(self) -> None:
        self.method_state = ["H"]
        rows = self.rows
        self.G = self.ev.first(self.X, self.V, self._idx(rows), rows)
        self.Gbest = self.G
        self.H = self.ev.hessian(self.X, self.G, self._idx(rows), rows)
        self.switched = np.zeros(rows.size, bool)  # (_steered; at x0 the Hessian stays, as
        self._newton_tests(np.ones(rows.size, bool))  # the single path's H0)

    def _newton_tests(self, sel: np.ndarray) -> None:
        xp = self.xp
        finite = self._host(xp.all(xp.isfinite(self.G), axis=1) &
                            xp.all(xp.isfinite(xp.reshape(self.H, (self.H.shape[0], -1))),
                                   axis=1))
        self.mark(sel & ~finite, Status.NONFINITE)
        gtol = self.tol("gtol")
        met = sel & self._gradient_met(gtol)
        if self.ev.jac_scheme in ("2-point", "3-point"):
            # a difference gradient's entry exactly 0 where f's rounding, 2ε|f|/h (forward) or
            # ε|f|/h (central), exceeds gtol: f did not change by more than its rounding, which
            # can hide a gradient above gtol (at the point where a difference gradient of a
            # smooth f vanishes, f is small enough to show it)
            rounding = gradient_error_bound(self.X, self.f[:, None], None, self.ev.jac_scheme,
                                            self.ev.accuracy)
            blind = (self.G == 0) & (rounding > gtol[:, None])
            self._fd_zero_columns(met, np.arange(self.rows.size), blind)
        self._curvature_check(met, Status.GTOL)

    def _gradient_met(self, gtol: Any) -> np.ndarray:
        """Newton's gradient test, as the single path's (:mod:`newtonkit.methods.newton`):
        ``|g_j| ≤ gtol``, and for a difference gradient ``|g_j − b_j| ≤ gtol + e_j`` with
        ``e_j`` the bound on its rounding (:func:`~newtonkit.problems._fd.gradient_error_bound`)
        and ``b_j = h_j·H_jj/2`` a forward difference's leading error (it is off by that even
        at the minimiser)."""
        xp, ev = self.xp, self.ev
        if ev.jac_scheme not in ("2-point", "3-point"):
            return self._host(xp.max(xp.abs(self.G), axis=1) <= gtol)
        # (a forward difference's own |G| ≤ gtol proves nothing: b may cancel g)
        err = gradient_error_bound(self.X, self.f[:, None], None, ev.jac_scheme, ev.accuracy)
        return self._host(xp.all(xp.abs(self._debiased_gradient()) <= gtol[:, None] + err,
                                 axis=1))

    def _debiased_gradient(self) -> Any:
        """``G`` less a forward difference's bias ``h_j·H_jj/2`` (the single path's
        ``gradient_bias``); ``G`` itself for other gradients."""
        xp, ev = self.xp, self.ev
        if ev.jac_scheme != "2-point":
            return self.G
        return self.G - forward_difference_bias(xp, self.X, xp.linalg.diagonal(self.H),
                                                ev.accuracy)

    def _steered(self, met: np.ndarray) -> np.ndarray:
        """The rows of ``met`` (stops on a difference gradient G) that Richardson's gradient
        (4·G(h/2) − G(h))/3 of central differences does not confirm, as the single path's
        ``Newton._steering_check``.  Central G: Richardson's neither meets gtol nor agrees with
        G to gtol (plus its rounding 3ε|f|/h); those rows go on with Richardson's gradient
        from now on (``_Evaluator.richardson``; rows switched already are not checked again).
        Forward G (GTOL stops only: ftol/xtol make no claim on the gradient): Richardson's
        neither meets gtol nor agrees with G less its bias (each within G's rounding 2ε|f|/h
        more); those rows end GRADIENT_UNVERIFIED.  2n
        evaluations each (4n forward), reserved (rows that cannot afford them end MAXFEV);
        rows that have ended are not checked."""
        xp, ev = self.xp, self.ev
        n = self.X.shape[1]
        forward = ev.jac_scheme == "2-point"
        met = met & ~ev.richardson[self.rows] & (self.status[self.rows] == _RUNNING)
        sel = self.reserve(met, (4 if forward else 2) * n)
        out = met & ~sel  # (ended MAXFEV)
        s_np = np.nonzero(sel)[0]
        if not s_np.size:
            return out
        s, r, r_np = self._idx(s_np), self._idx(self.rows[s_np]), self.rows[s_np]
        X, G, f = (xp.take(a, s, axis=0) for a in (self.X, self.G, self.f))
        central = G if not forward else ev._differences(
            lambda Z: ev.values(Z, r, r_np), X, None, "3-point", ev.accuracy)
        rich = ev.richardson_gradient(X, central, r, r_np)
        allowed = xp.take(self.tol("gtol"), s, axis=0)[:, None] + 3.0 * gradient_error_bound(
            X, f[:, None], None, "3-point", ev.accuracy)
        if forward:  # (G less its bias, with the forward difference's rounding allowed)
            allowed = allowed + gradient_error_bound(X, f[:, None], None, "2-point", ev.accuracy)
            G = xp.take(self._debiased_gradient(), s, axis=0)
        ok = xp.all(xp.abs(rich) <= allowed, axis=1) | xp.all(xp.abs(rich - G) <= allowed,
                                                               axis=1)
        ok_np = self._host(ok)
        bad = np.zeros_like(met)
        bad[s_np[~ok_np]] = True
        if forward:
            self.mark(bad, Status.GRADIENT_UNVERIFIED)
            return out | bad
        ev.richardson[self.rows[bad]] = True
        self.switched |= bad
        # from here on those rows' gradient is Richardson's, at this point too (a step on the
        # G that steered the stop would read as converged: XTOL where ∇f is not small)
        self.G = self._scatter(bad)(xp.take(rich, self._idx(np.nonzero(~ok_np)[0]),
                                                 axis=0), self.G)
        return out | bad

    def _curvature_check(self, met: np.ndarray, status: Status) -> None:
        """``status`` where the Hessian is positive semi-definite to tolerance, else
        INDEFINITE (a saddle point or a maximum)."""
        if not met.any():
            return
        xp = self.xp
        scheme = self.ev.jac_scheme
        if scheme == "3-point" or (scheme == "2-point" and status is Status.GTOL):
            met = met & ~self.switched  # (switched by an earlier test of this step)
            met = met & ~self._steered(met)
        w = xp.linalg.eigvalsh(self.H)
        lo, hi = w[:, 0], w[:, -1]
        indef = self._host((lo < -self.o["indefinite_tol"] * xp.abs(hi)) | (hi < 0))
        for i in self.mark(met & indef, Status.INDEFINITE):
            self.details[int(self.rows[i])] = {"lambda_min": float(lo[int(i)])}
        self.mark(met, status)

    def _newton_direction(self, G: Any) -> tuple[Any, np.ndarray]:
        """``(d, newton)``: d = −(H + τI)⁻¹G from a Cholesky factor, as the single path's
        ``regularized_cholesky_solve`` (a spectral solve is accurate to ε‖H‖/λ only: on
        H = D C D, D = diag(1e8, 1), it took 166 iterations to FTOL at 14·gtol where the
        single path took 1); τ = 0 where H itself factors, else τ = max(−factor·λ_min, 0)
        from H's eigenvalues, and where H + τI does not factor either (a singular
        semi-definite H) the spectral solve with each eigenvalue at least ε·max|λ| (the single
        path retries the factorisation with a growing shift there instead).  ``newton``
        (host): the step is unshifted (τ = 0, H factored)."""
        xp, o = self.xp, self.o
        L, newton_dev = _cholesky(xp, self.H)
        d = -_cholesky_solve(xp, L, G)
        newton = self._host(newton_dev)
        if newton.all():
            return d, newton
        rest = self._idx(np.nonzero(~newton)[0])
        H, Gr = xp.take(self.H, rest, axis=0), xp.take(G, rest, axis=0)
        lam, Q = xp.linalg.eigh(H)
        tau = xp.maximum(-o["factor"] * lam[:, :1], xp.zeros_like(lam[:, :1]))
        # a singular semi-definite H (τ = 0 and a zero eigenvalue): the smallest positive shift
        # that makes the solve well defined, ε·max|λ|
        floor = self.eps * xp.max(xp.abs(lam), axis=1, keepdims=True)
        # no curvature at all (H = 0: a difference Hessian below f's rounding): the
        # steepest-descent step of length max(1, ‖x‖), as the single path, for the search
        flat = xp.linalg.vector_norm(Gr, axis=1, keepdims=True) / xp.maximum(
            xp.linalg.vector_norm(xp.take(self.X, rest, axis=0), axis=1, keepdims=True),
            xp.ones_like(floor))
        floor = xp.where(floor > 0, floor, xp.where(flat > 0, flat, xp.ones_like(flat)))
        shifted = xp.maximum(lam + tau, floor)
        spectral = -_vecmat(xp, _vecmat(xp, Gr, Q) / shifted, xp.permute_dims(Q, (0, 2, 1)))
        eye = xp.eye(lam.shape[1], dtype=lam.dtype, device=array_api_compat.device(lam))
        Lr, chol = _cholesky(xp, H + tau[:, :, None] * eye)
        dr = xp.where(chol[:, None], -_cholesky_solve(xp, Lr, Gr), spectral)
        return self._scatter(~newton)(dr, d), newton

    def _step_newton(self) -> None:
        xp, o, ev = self.xp, self.o, self.ev
        self.switched = np.zeros(self.rows.size, bool)
        G = self._debiased_gradient()  # (the step's fixed point: ∇f = 0, not G = 0)
        d, newton = self._newton_direction(G)
        bad = ~xp.all(xp.isfinite(d), axis=1)
        self.mark(self._host(bad), Status.NONFINITE)
        dnorm = xp.linalg.vector_norm(d, axis=1)
        # the full Newton step predicts convergence within xtol; a shifted one (τ > 0, or the
        # floor) is short because of the shift, which proves nothing.  (An unshifted step has
        # a Cholesky factor of H: no curvature check is left to do.)
        self.mark(self._host(dnorm <= self._xtol_bound(self.X)) & newton, Status.XTOL)
        slope = _rows_dot(xp, G, d)
        if o["line_search"]:
            self.mark(self._host(~(slope < 0)), Status.NO_PROGRESS)
        t, X1, V1, f1, nonfinite = self._backtrack(d, slope, o["line_search"])
        if ev.jac_scheme in ("2-point", "3-point"):
            # a failed search along a difference gradient: stationary within its error? (the
            # single path's rule; the rows left end LINE_SEARCH in _accept)
            self._newton_tests(self._host(~(t > 0)) & (self.status[self.rows] == _RUNNING))
        f_prev = self.f
        ok, acc = self._accept(t, nonfinite, X1, V1, f1)
        s_np = np.nonzero(ok)[0]
        if s_np.size:
            s = self._idx(s_np)
            Xs, Vs = xp.take(self.X, s, axis=0), xp.take(self.V, s, axis=0)
            r = self._idx(self.rows[s_np])
            Gs = ev.first(Xs, Vs, r, self.rows[s_np])
            Hs = ev.hessian(Xs, Gs, r, self.rows[s_np])
            put = self._scatter(ok)
            self.G, self.H = put(Gs, self.G), put(Hs, self.H)
        self._newton_tests(ok)
        full = self._host(t == 1.0) & ok & (self.status[self.rows] == _RUNNING)
        small_x = newton & self._host(t * dnorm <= self._xtol_bound(self.X))
        scale = xp.maximum(xp.maximum(xp.abs(f_prev), xp.abs(self.f)), xp.ones_like(self.f))
        small_f = self._host(xp.abs(f_prev - self.f) <= self.tol("ftol") * scale)
        if ev.accuracy > self.eps:  # f less precise than X: as the single path (its docs)
            small_f &= self.tol("ftol") >= ev.accuracy
        uphill = self._host(self.f > f_prev)
        conv = full & ~uphill & (small_x | small_f)
        both, fx = conv & small_x & small_f, conv & small_x
        self._curvature_check(both, Status.FTOL_XTOL)
        self._curvature_check(fx, Status.XTOL)
        self._curvature_check(conv, Status.FTOL)
        self.track_best(acc)
        self._switch_hessians(self.switched & (self.status[self.rows] == _RUNNING))

    def _switch_hessians(self, sel: np.ndarray) -> None:
        """The Hessians of the rows ``sel``, just switched to Richardson's gradient
        (:meth:`_steered`), anew from differences of it, as the single path's next step takes
        them."""
        # (reserving a whole linearisation's calls, its gradient's 4n included: the Hessian
        # spends all but those)
        sel = self.reserve(sel, self.ev.linearization_cost(self.X.shape[1], self.rows))
        s_np = np.nonzero(sel)[0]
        if not s_np.size:
            return
        xp = self.xp
        s, r, r_np = self._idx(s_np), self._idx(self.rows[s_np]), self.rows[s_np]
        Xs, Gs = xp.take(self.X, s, axis=0), xp.take(self.G, s, axis=0)
        self.H = self._scatter(sel)(self.ev.hessian(Xs, Gs, r, r_np), self.H)


def multistart(fun: Callable, starts: Any, method: str = "lm", **kwargs: Any) -> Any:
    """Solve one problem from K start points as a batch; return the best result.

    Parameters
    ----------
    fun : callable
        As for ``minimize(..., batch=True)``: vectorised over the rows of its input (or, on
        torch, a one-problem function with ``vectorize=True``).
    starts : array (K, n)
        Start points.
    method, **kwargs
        Passed to :func:`newtonkit.minimize` with ``batch=True``.

    Returns
    -------
    OptimizeResult
        The successful run with the lowest objective (the lowest overall when none
        succeeded): ``x``, ``fun``, ``jac``, ``status``, ``success``, ``message``, ``nit``,
        ``nfev``, ``njev`` of that start, ``start`` its index, and ``batch`` the
        :class:`BatchResult` of all K starts (to see the distinct minima found).
    """
    from ._minimize import OptimizeResult, minimize

    res = minimize(fun, starts, method=method, batch=True, **kwargs)
    fun_np = np.asarray(B.to_numpy(res["fun"]), dtype=np.float64)
    if fun_np.size == 0:
        raise ValueError("multistart needs at least one start point")
    pool = np.where(res["success"], fun_np, np.inf)
    if not np.isfinite(pool).any():
        pool = np.where(np.isfinite(fun_np), fun_np, np.inf)
    k = int(np.argmin(pool))
    out = OptimizeResult(x=res["x"][k, ...], fun=float(fun_np[k]), jac=res["jac"][k, ...],
                         status=int(res["status"][k]), success=bool(res["success"][k]),
                         message=res.message_of(k), termination=res.termination_of(k),
                         nit=int(res["nit"][k]), nfev=int(res["nfev"][k]),
                         njev=int(res["njev"][k]), method=res["method"], start=k, batch=res)
    return out
