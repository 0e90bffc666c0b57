r"""Newton's method with a regularised Cholesky step or truncated CG, and a line search.

At :math:`x_k` with gradient :math:`g_k` and Hessian :math:`H_k` the direction is

* ``linear_solver="cholesky"``: :math:`d_k = -(H_k + \tau_k I)^{-1} g_k` with the shift
  :math:`\tau_k` from :func:`newtonkit.linalg.regularized_cholesky_solve` (``"eigen"``:
  :math:`\tau = \max(-c\,\lambda_{\min}, 0)`, ``c = factor = 1.5``; ``"retry"``; ``"fixed"``),
  so :math:`d_k` is a descent direction even where :math:`H_k` is indefinite;
* ``linear_solver="cg"`` (matrix-free; the default for ``hessp``): truncated CG on
  :math:`H_k d = -g_k`, stopped at negative curvature (:func:`newtonkit.linalg.truncated_cg`).

Then :math:`x_{k+1} = x_k + t_k d_k` with :math:`t_k` from Armijo backtracking
(``line_search=True``) or :math:`t_k = 1` (``line_search=False``, the seed's plain Newton; only
non-finite trial points are shortened).

Success is reported only where the Hessian is positive semi-definite to tolerance:
:math:`\lambda_{\min}(H) \ge -\mathrm{indefinite\_tol}\cdot|\lambda_{\max}(H)|` at the final
point; otherwise the run ends with status 4 (a saddle point or maximum).  On the CG route that
check is by Lanczos on Hessian-vector products (no dense Hessian is formed); its smallest Ritz
value θ is only an upper bound on λ_min, so where it has not converged and θ − ρ (ρ its
residual) is below the tolerance, the run ends ``CURVATURE_UNVERIFIED`` (not a success).

The gradient test is :math:`|g_j| \le \mathrm{gtol}`; when :math:`g` is a finite difference,
:math:`|g_j - b_j| \le \mathrm{gtol} + e_j` with :math:`e_j` the bound on the difference's
rounding (:func:`newtonkit.problems._fd.gradient_error_bound`) and :math:`b_j = h_j H_{jj}/2`
the leading error of a forward difference, from the signed diagonal of the last dense Hessian
(a forward difference is off by that even at the minimiser, so a plain ``gtol = 1e-8`` could
never be met; subtracted rather than allowed for, it cannot let a gradient of twice its size
pass, as it did for a float32 ``f``, whose steps are 3.5e-4).  On the CG route, once the line
search fails, only Lanczos' bound :math:`\|H\|_2 \ge |H_{jj}|` is known: :math:`h_j\|H\|_2/2`
is then added to :math:`e_j`.  A central difference's own error :math:`h_j^2 f^{(3)}_j/6` is
not known: a stop on one is checked on Richardson's :math:`(4G(h/2) - G(h))/3` (2n
evaluations; error :math:`O(h^4)` and the rounding :math:`3e_j`), and where that gradient
neither meets gtol nor agrees with G to gtol, the run goes on with it
(``ScalarProblem.use_richardson``; after a failed line search, the failure stands): with a
float32 f, G's error had steered runs to GTOL or XTOL stops with |∇f| = 40·gtol.

The Cholesky route needs the dense ``n × n`` Hessian: one larger than
:data:`DENSE_HESSIAN_BUDGET` bytes is refused up front (``ValueError``); use
``linear_solver="cg"`` (Hessian-vector products from ``hessp``, autodiff or differences of
gradients) or ``hessp=``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from .. import _backend as B
from .. import linalg
from .._bounds import project, projected_gradient
from .._status import Status
from ..operators import LinearOperator
from ..problems._common import BudgetExhausted
from ..problems._fd import gradient_error_bound
from ._base import (
    Method,
    Option,
    State,
    appended,
    boolean,
    choice,
    entries,
    last,
    optional_nonneg_float,
    optional_positive_int,
    positive_float,
    positive_int,
    register,
    small_change,
    stop,
    unit_interval,
)
from ._linesearch import backtrack

__all__ = ["Newton", "ProjectedNewton", "DENSE_HESSIAN_BUDGET", "ACTIVE_EPS"]

#: ε̄ of the ε-active set of :class:`ProjectedNewton` (Bertsekas' ε_k = min(ε̄, ‖x − P(x − g)‖)).
ACTIVE_EPS = 1e-3

#: Bytes a dense Hessian may take on the Cholesky route (1 GiB: n = 11585 in float64).
DENSE_HESSIAN_BUDGET = 2**30


#: The relative residual of the Newton step that checks an xtol stop of the CG route
#: (:meth:`Newton._newton_step_is_short`; the CGLS default of the Gauss-Newton steps).
CHECK_RTOL = 1e-10


@register
class Newton(Method):
    """Regularised Newton (``method="newton"``)."""

    name = "newton"
    aliases = ("newton-cholesky",)
    problem_kind = "objective"
    default_tol = {"gtol": 1e-8, "ftol": 1e-14, "xtol": 1e-10}
    options = {
        "shift": Option("eigen", choice("eigen", "retry", "fixed"), "shift rule for τ"),
        "factor": Option(1.5, positive_float, "c in τ = max(-c·λ_min, 0)"),
        "tau": Option(None, optional_nonneg_float, "τ for shift='fixed'"),
        "tau0": Option(None, optional_nonneg_float, "first retry shift"),
        "growth": Option(10.0, positive_float, "retry growth factor (> 1)"),
        "eigensolver": Option("dense", choice("dense", "lanczos"), "λ_min for the eigen rule"),
        "linear_solver": Option("auto", choice("auto", "cholesky", "cg"), "step solver"),
        "line_search": Option(True, boolean, "Armijo backtracking (False: unit steps)"),
        "c1": Option(1e-4, unit_interval, "Armijo constant"),
        "max_backtracks": Option(30, positive_int, "trial points per line search"),
        "cg_rtol": Option(None, optional_nonneg_float, "truncated-CG forcing term"),
        "cg_maxiter": Option(None, optional_positive_int, "truncated-CG iterations"),
        "indefinite_tol": Option(None, optional_nonneg_float, "relative λ_min tolerance"),
    }

    @classmethod
    def bounded(cls, opts: dict) -> type:
        """Under bounds: :class:`ProjectedNewton`."""
        return ProjectedNewton

    def __init__(self, problem: Any, opts: dict, tol: dict) -> None:
        super().__init__(problem, opts, tol)
        if opts["growth"] <= 1:
            raise ValueError(f"option 'growth' must be > 1, got {opts['growth']!r}")
        if opts["shift"] == "fixed" and opts["tau"] is None:
            raise ValueError("shift='fixed' needs the option tau=")
        if opts["shift"] != "fixed" and opts["tau"] is not None:
            raise ValueError(f"option tau is only used with shift='fixed' (shift is "
                             f"{opts['shift']!r})")
        solver = opts["linear_solver"]
        if solver == "auto":
            solver = "cg" if problem.hessian_is_operator else "cholesky"
        self.solver = solver
        n = problem.n
        size = n * n * self.xp.finfo(problem.dtype).bits // 8
        if solver == "cholesky" and size > DENSE_HESSIAN_BUDGET:
            raise ValueError(
                f"the Cholesky route needs the dense {n}x{n} Hessian ({size / 2**30:.3g} GiB), "
                f"more than newtonkit.methods.newton.DENSE_HESSIAN_BUDGET "
                f"({DENSE_HESSIAN_BUDGET / 2**30:.3g} GiB); use the matrix-free "
                f"options={{'linear_solver': 'cg'}} (Hessian-vector products from autodiff or "
                f"differences of gradients) or pass hessp=")
        eps = float(self.xp.finfo(problem.dtype).eps)
        self.indefinite_tol = (math.sqrt(eps) if opts["indefinite_tol"] is None
                               else opts["indefinite_tol"])

    def init(self, x0: Any) -> State:
        f, g = self.problem.value_and_grad(x0)
        data = {"taus": (), "lambda_min": (), "step_lengths": (), "cg_iterations": (),
                "negative_curvature": ()}  # histories (:func:`appended`)
        if self.solver == "cholesky" and math.isfinite(f) and self.finite(g):
            # The first step needs the Hessian at x0 anyway: a dense one is checked here, so
            # that a non-finite one is a clear error like a non-finite f or g (the driver
            # reports those).  A Hessian operator is only probed by the steps.
            H = self.problem.hessian(x0, matrix_free=False)
            if not isinstance(H, LinearOperator) and not self.finite(self.xp.reshape(H, (-1,))):
                raise ValueError("the Hessian is not finite at x0; start from a point where "
                                 "fun and its derivatives are finite")
            data["H0"] = H
            if not isinstance(H, LinearOperator):
                data["curvature"] = self.xp.linalg.diagonal(H)  # (signed: _gradient_test)
        return State(x0, f, g, data=data)

    def step(self, state: State) -> State:
        xp, p, o = self.xp, self.problem, self.opts
        state = self._richardson_state(state)
        x, g = state.x, state.g
        data = dict(state.data)  # the next state's, without the Hessian at x0 from init
        H = data.pop("H0", None)
        if H is None:
            H = p.hessian(x, matrix_free=self.solver == "cg")
        use_cg = self.solver == "cg" or (self.opts["linear_solver"] == "auto"
                                         and isinstance(H, LinearOperator))
        try:
            if use_cg:
                d, kinfo = linalg.truncated_cg(H, g, rtol=o["cg_rtol"], maxiter=o["cg_maxiter"])
                data["cg_iterations"] = appended(data["cg_iterations"], kinfo.iterations)
                data["negative_curvature"] = appended(data["negative_curvature"],
                                                      kinfo.negative_curvature)
            else:
                if isinstance(H, LinearOperator):
                    H = H.to_dense()
                if not self.finite(xp.reshape(H, (-1,))):
                    return stop(state, Status.NONFINITE)
                # a forward-difference gradient less its bias h_j·H_jj/2 (_gradient_test):
                # with the bias the iteration would settle where G = g + b vanishes, a point
                # H⁻¹b away from the minimiser (0.09 on Rosenbrock with a float32 f)
                bias = p.gradient_bias(x, xp.linalg.diagonal(H))
                g = g if bias is None else g - bias
                if bool(xp.any(H != 0)):
                    d, cinfo = linalg.regularized_cholesky_solve(
                        H, g, shift=o["shift"], factor=o["factor"], tau=o["tau"],
                        tau0=o["tau0"], growth=o["growth"], eigensolver=o["eigensolver"])
                    tau, lam_min = cinfo.tau, cinfo.lambda_min
                else:  # no curvature at all (a difference Hessian below f's rounding): the
                    # steepest-descent step of length max(1, ‖x‖), for the line search
                    tau, lam_min = self.norm(g) / max(1.0, self.norm(x)), 0.0
                    d = -g / tau if tau > 0 else xp.zeros_like(g)
                data["taus"] = appended(data["taus"], tau)
                data["lambda_min"] = appended(data["lambda_min"], lam_min)
                data["curvature"] = xp.linalg.diagonal(H)  # for the gradient test (signed)
        except linalg.LinAlgError:
            return stop(state, Status.NONFINITE)
        if not self.finite(d):
            return stop(state, Status.NONFINITE)
        # the full Newton step predicts convergence within xtol; a shifted one (τ > 0: fixed,
        # or making an indefinite H definite) is short because of τ, which proves nothing
        # (a truncated-CG step is short where CG stopped early: its xtol stops are checked
        # on the Newton step solved tightly, _newton_step_is_short)
        newton = not use_cg and last(data["taus"]) == 0.0
        if newton and self.norm(d) <= self.xtol_bound(x):
            return stop(state, Status.XTOL)
        slope = float(xp.vecdot(g, d))
        if not slope < 0:  # cannot happen for a positive definite shift; guard against rounding
            d, slope = -g, -float(xp.vecdot(g, g))
        grads: dict = {}

        def value(t: float) -> tuple[float, Any]:
            xt = x + t * d
            return p.value(xt), xt

        def finish(xt: Any) -> bool:
            grads["fg"] = p.value_and_grad(xt)
            return self.finite(grads["fg"][1])

        res = backtrack(value, state.f, slope, finish=finish, c1=o["c1"],
                        max_steps=o["max_backtracks"], armijo=o["line_search"])
        if res.t is None:
            return stop(state, Status.NONFINITE if res.nonfinite else Status.LINE_SEARCH)
        f_new, g_new = grads["fg"]
        data["step_lengths"] = appended(data["step_lengths"], res.t)
        info = {"step_length": res.t, "step_norm": res.t * self.norm(d), "f_prev": state.f,
                "tau": None if use_cg else last(data["taus"]), "cg": use_cg}
        return State(res.point, f_new, g_new, accepted=True, info=info, data=data)

    def terminate(self, state: State) -> Status | None:
        """The gradient test (also after a failed line search along a difference gradient:
        stationary within its error?), then the ftol/xtol tests after a full step; the
        curvature at a successful stop is :meth:`verify`'s."""
        status = state.stop
        curvature = state.data.get("curvature")
        if status is Status.LINE_SEARCH and self.problem.grad_scheme is not None:
            if curvature is None:
                r = self._extreme_eigenvalues(state.x)
                curvature = max(abs(r.lambda_min), abs(r.lambda_max))
            if self._gradient_test(state, curvature):
                if self._blind(state):
                    return Status.FD_ZERO_COLUMN
                # (a difference's own error may have steered it here as well: then the failed
                # search stands, or the forward difference's check says so)
                checked = self._unless_steered(state, Status.GTOL)
                return status if checked is None else checked
        if status is not None:
            return status
        if self._gradient_test(state, curvature):
            if not self._blind(state):
                return self._unless_steered(state, Status.GTOL)
            # met only through entries that say nothing: the change tests may still hold
            return self._small_change(state) or Status.FD_ZERO_COLUMN
        return self._unless_steered(state, self._small_change(state))

    def _unless_steered(self, state: State, status: Status | None) -> Status | None:
        """``status``, unless it is a success on a difference gradient that
        :meth:`_steering_check` finds steered by its own error: then a central-difference run
        goes on with Richardson's gradient (``None``; once: after the switch the gradient is
        it, from this point on, :meth:`_richardson_state`), and a forward-difference GTOL stop
        ends ``GRADIENT_UNVERIFIED`` (the scheme is the user's choice); ``MAXFEV`` where the
        check is past the budget."""
        p = self.problem
        if status is None or not status.success or p.grad_scheme is None or p.richardson:
            return status
        if p.grad_scheme == "2-point" and status is not Status.GTOL:
            return status  # (ftol/xtol make no claim on the gradient that its check could test)
        try:
            rich = self._steering_check(state)
        except BudgetExhausted:  # (no evaluations left to check it)
            return Status.MAXFEV
        if rich is None:
            return status
        if p.grad_scheme == "2-point":
            return Status.GRADIENT_UNVERIFIED
        p.use_richardson(state.x, state.f, rich)
        return None

    def _richardson_state(self, state: State) -> State:
        """``state`` with Richardson's gradient at its point once the run has switched to it
        (:meth:`_unless_steered`; the problem's cache holds it, so no evaluation): the step
        must not rest on the central difference whose error steered the stop (its Newton step
        would read as converged, ``XTOL``, where ∇f is not small)."""
        if not self.problem.richardson:
            return state
        return dataclasses.replace(state, g=self.problem.grad(state.x))

    def _blind(self, state: State) -> bool:
        """Whether a difference gradient has an entry exactly 0 where f's rounding (2ε|f|/h
        forward, ε|f|/h central) exceeds gtol: f did not change along that coordinate by
        more than its rounding, which hides any gradient below that (f = 1e10 + ‖x − 1‖²
        differences to exactly 0 at x = 0, where ∇f = −2).  The indices go in the details,
        for the FD_ZERO_COLUMN message.  (At a minimiser where f is small enough to show
        the gradient, an exact 0 is no sign of blindness: the rounding is below gtol.)"""
        rounding = self.problem.gradient_error(state.x, state.f, None)
        if rounding is None:
            return False
        xp = self.xp
        blind = (state.g == 0) & (rounding > self.tol["gtol"])
        if not bool(xp.any(blind)):
            return False
        state.details["columns"] = [int(j) for j in xp.nonzero(blind)[0]]
        return True

    def verify(self, state: State, status: Status) -> tuple[Status, State]:
        """``status`` where the Hessian at ``state.x`` is positive semi-definite to tolerance,
        ``INDEFINITE`` (a saddle point or maximum) or ``NONFINITE`` otherwise; the state
        returned carries the extreme eigenvalues (for :meth:`finish`) and ``λ_min`` for the
        message."""
        r = self._extreme_eigenvalues(state.x)
        data = dict(state.data, final_eigenvalues=(state.x, r.lambda_min, r.lambda_max))
        status, new = self._curvature_status(status, state, data, r.lambda_min, r.lambda_max)
        if status.success and not (r.converged or r.lambda_min - r.residual_min
                                   >= -self.indefinite_tol * abs(r.lambda_max)):
            # the Ritz value is only an upper bound on λ_min: where its interval [θ − ρ,
            # θ + ρ] reaches below the tolerance and it has not converged (a dense spectrum),
            # positive curvature is not shown
            details = dict(new.details, steps=r.steps, lambda_min=r.lambda_min,
                           residual=r.residual_min)
            return Status.CURVATURE_UNVERIFIED, dataclasses.replace(new, details=details)
        return status, new

    def _curvature_status(self, status: Status, state: State, data: dict, lam_min: float,
                          lam_max: float) -> tuple[Status, State]:
        details = state.details
        if not (math.isfinite(lam_min) and math.isfinite(lam_max)):
            status = Status.NONFINITE
        elif lam_min < -self.indefinite_tol * abs(lam_max) or lam_max < 0:
            status, details = Status.INDEFINITE, dict(details, lambda_min=lam_min)
        return status, State(state.x, state.f, state.g, accepted=state.accepted,
                             stop=state.stop, info=state.info, data=data, details=details,
                             x_finite=state.x_finite)

    def _small_change(self, state: State) -> Status | None:
        """After an accepted full step (step length 1): ``|f_k − f_{k+1}| ≤ ftol·max(|f_k|,
        |f_{k+1}|, 1)`` and/or ``‖Δx‖ ≤ xtol·(xtol·‖x₀‖ + ‖x‖)`` (:func:`small_change`; xtol only
        after an unshifted step, and after a truncated-CG step checked by
        :meth:`_newton_step_is_short`)."""
        i, tol = state.info, self.tol
        if not (state.accepted and i["step_length"] == 1.0):
            return None
        # (a step shortened by a shift τ > 0 is small because of τ: no xtol stop on it; ftol
        # reads f's change, which a singular H, shifted at every step, needs to end on)
        small_x = not i.get("tau") and i["step_norm"] <= self.xtol_bound(state.x)
        small_f = self._resolved() and abs(i["f_prev"] - state.f) <= tol["ftol"] * max(
            abs(i["f_prev"]), abs(state.f), 1.0)
        if small_x and i.get("cg"):
            small_x = self._newton_step_is_short(state)
        return small_change(small_f, small_x)

    def _resolved(self) -> bool:
        """Whether f resolves a change of ftol: f less precise than x (a float32 f at float64
        x) shows no change below its own rounding, unless ftol is at least that rounding."""
        eps = float(self.xp.finfo(self.problem.dtype).eps)
        eta = self.problem.accuracy or eps
        return eta <= eps or self.tol["ftol"] >= eta

    def _newton_step_is_short(self, state: State) -> bool:
        """The xtol test after a truncated-CG step, which is short where CG stopped early (on
        Brown's badly scaled function, κ(H) ≈ 1e12, one or two CG iterations made a step of
        1e-8 and the run ended XTOL at |∇f| = 2e6): made again on the Newton step solved to
        ‖Hd + g‖ ≤ :data:`CHECK_RTOL`·‖g‖; false where that solve meets negative curvature
        or does not converge (the run goes on; ftol, on f's change, stands as it is)."""
        p, x = self.problem, state.x
        d, info = linalg.truncated_cg(p.hessian(x, matrix_free=True), state.g, rtol=CHECK_RTOL,
                                      maxiter=self.opts["cg_maxiter"])
        return (info.converged and not info.negative_curvature
                and self.norm(d) <= self.xtol_bound(x))

    def _gradient_test(self, state: State, curvature: Any) -> bool:
        """``|g_j| <= gtol``; for a difference gradient ``|g_j − b_j| <= gtol + e_j`` (module
        docstring): ``curvature`` is the Hessian's signed diagonal (the bias ``b_j`` of a
        forward difference is subtracted, ``e_j`` its rounding), a float bounding ``‖H‖₂`` (only
        the size of ``b_j`` is known: added to ``e_j``), or ``None``."""
        gtol = self.tol["gtol"]
        p, xp, g = self.problem, self.xp, state.g
        if p.grad_scheme is None:
            return self.inf_norm(g) <= gtol
        # (a forward difference's own |G| ≤ gtol proves nothing: its bias may cancel g, as at
        # Rosenbrock's x = 1 − 4.5e-6, where G = 6e-10 and ∇f = 6e-6)
        if curvature is None or isinstance(curvature, float):
            err = p.gradient_error(state.x, state.f, curvature)
        else:
            bias = p.gradient_bias(state.x, curvature)
            g = g if bias is None else g - bias
            err = p.gradient_error(state.x, state.f, None)
        return bool(xp.all(xp.abs(g) <= gtol + err))

    def _steering_check(self, state: State) -> Any:
        """A difference gradient G at a stop is checked on Richardson's (4·G(h/2) − G(h))/3 of
        central differences, whose h² terms cancel (rounding ≤ 3ε|f|/h).  Central G: its own
        error h²·f‴/6 is not known; ``None`` where that gradient meets gtol, or agrees with G
        to gtol (G steered the run faithfully: the stop's own test stands).  Forward G (4n
        evaluations): its bias h·H_jj/2 was subtracted with a difference Hessian's diagonal,
        whose error is not known either (float32 Jennrich–Sampson ended GTOL at |∇f| = 6.9,
        the diagonal 30 % high); ``None`` where Richardson's gradient meets gtol or agrees
        with G less its bias, each within G's rounding 2ε|f|/h more.  Else that gradient.  (A
        float32 f ended GTOL or XTOL on Rosenbrock with |∇f| = 40·gtol.)"""
        p, xp, tol, g = self.problem, self.xp, self.tol["gtol"], state.g
        forward = p.grad_scheme == "2-point"
        rich = p.richardson_gradient(state.x, state.f, None if forward else g)
        allowed = tol + 3.0 * gradient_error_bound(state.x, state.f, None, "3-point",
                                                   p.accuracy)
        if forward:  # (G less its bias, with the forward difference's rounding allowed)
            allowed = allowed + p.gradient_error(state.x, state.f, None)
            curvature = state.data.get("curvature")
            bias = None if curvature is None else p.gradient_bias(state.x, curvature)
            g = g if bias is None else g - bias
        if bool(xp.all(xp.abs(rich) <= allowed)) or bool(xp.all(xp.abs(rich - g) <= allowed)):
            return None
        return rich

    def _extreme_eigenvalues(self, x: Any) -> linalg.Ritz:
        """λ_min and λ_max of the Hessian at ``x``: exact for a dense one (``converged``), else
        Lanczos' Ritz values with their residuals."""
        H = self.problem.hessian(x, matrix_free=self.solver == "cg")
        if isinstance(H, LinearOperator):
            return linalg.lanczos_ritz(H)
        w = self.xp.linalg.eigvalsh(H)
        return linalg.Ritz(float(w[0]), float(w[-1]), 0.0, 0.0, 0, True)

    def finish(self, state: State) -> dict:
        d = state.data
        out = {"jac": state.g, "step_lengths": entries(d["step_lengths"])}
        if d["cg_iterations"]:
            out["cg_iterations"] = entries(d["cg_iterations"])
            out["negative_curvature"] = entries(d["negative_curvature"])
        if d["taus"] or not d["cg_iterations"]:
            out["taus"] = entries(d["taus"])
            out["lambda_min"] = entries(d["lambda_min"])
        x_eig, *extremes = d.get("final_eigenvalues", (None,))
        if x_eig is state.x:  # computed at the point of the result (not an earlier stop test)
            out["hess_eigenvalue_range"] = tuple(extremes)
        return out


class ProjectedNewton(Newton):
    r"""Newton under bounds :math:`l \le x \le u`: Bertsekas' projected Newton method
    (D. P. Bertsekas, "Projected Newton methods for optimization problems with simple
    constraints", SIAM J. Control Optim. 20(2):221-246, 1982).

    With :math:`w = \|x - P(x - g)\|_\infty` (:math:`P` the projection onto the box) and
    :math:`\varepsilon = \min(\bar\varepsilon, w)` (:data:`ACTIVE_EPS`), the ε-active set
    :math:`A = \{i : x_i - l_i \le \varepsilon, g_i > 0\} \cup \{i : u_i - x_i \le
    \varepsilon, g_i < 0\}` and the free set :math:`F`: :math:`d_F = -(H_{FF} + \tau
    I)^{-1} g_F` (the regularised Cholesky step of :class:`Newton` on the reduced Hessian),
    :math:`d_A = -g_A`.  Backtracking (halving) along the projection arc :math:`x(t) = P(x +
    td)` until :math:`f(x(t)) \le f(x) + c_1\,[t\,g_F^Td_F + g_A^T(x(t) - x)_A] +
    4\epsilon|f(x)|` (the last term is f's rounding: near the solution a full step whose change
    is below it is taken, and the ftol test ends the run).  Every point evaluated is in the
    box.  Termination: ``gtol`` on the projected gradient
    :math:`\|x - P(x - g)\|_\infty`; after a full step (t = 1) ``ftol``/``xtol`` as
    :class:`Newton`; success only where the Hessian on the variables not held by a bound is
    positive semi-definite to tolerance.  Dense Hessians only (the Cholesky route).
    """

    def __init__(self, problem: Any, opts: dict, tol: dict) -> None:
        super().__init__(problem, opts, tol)
        if self.solver != "cholesky":
            raise ValueError("bounds with method 'newton' need a dense Hessian "
                             "(linear_solver='cholesky'; not hessp or the CG route)")

    def step(self, state: State) -> State:
        xp, p, o = self.xp, self.problem, self.opts
        lb, ub = self.bounds
        state = self._richardson_state(state)
        x, g, f = state.x, state.g, state.f
        data = dict(state.data)  # the next state's, without the Hessian at x0 from init
        H = data.pop("H0", None)
        if H is None:
            H = p.hessian(x, matrix_free=False)
        if isinstance(H, LinearOperator):
            H = H.to_dense()
        if not self.finite(xp.reshape(H, (-1,))):
            return stop(state, Status.NONFINITE)
        data["curvature"] = xp.linalg.diagonal(H)
        eps = min(ACTIVE_EPS, self.inf_norm(projected_gradient(xp, x, g, lb, ub)))
        act = ((x - lb <= eps) & (g > 0)) | ((ub - x <= eps) & (g < 0))
        fm = xp.where(act, xp.zeros_like(x), xp.ones_like(x))  # 1 on the free set
        Hr = H * fm[:, None] * fm[None, :] + xp.eye(x.shape[0], dtype=H.dtype,
                                                     device=B.device(H)) * (1 - fm)[None, :]
        try:
            d, cinfo = linalg.regularized_cholesky_solve(
                Hr, g * fm, shift=o["shift"], factor=o["factor"], tau=o["tau"],
                tau0=o["tau0"], growth=o["growth"], eigensolver=o["eigensolver"])
        except linalg.LinAlgError:
            return stop(state, Status.NONFINITE)
        data["taus"] = appended(data["taus"], cinfo.tau)
        data["lambda_min"] = appended(data["lambda_min"], cinfo.lambda_min)
        d = xp.where(act, -g, d)
        if not self.finite(d):
            return stop(state, Status.NONFINITE)
        slope_free = B.vdot(xp, g * fm, d)
        slack = 4.0 * float(xp.finfo(x.dtype).eps) * abs(f)  # f is known to its rounding
        t = 1.0
        for _ in range(o["max_backtracks"]):
            xt = project(xp, x + t * d, lb, ub)
            ft = p.value(xt)
            decrease = t * slope_free + B.vdot(xp, g * (1 - fm), xt - x)
            if math.isfinite(ft) and (not o["line_search"] or ft <= f + o["c1"] * decrease + slack):
                break
            t *= 0.5
        else:
            return stop(state, Status.LINE_SEARCH)
        f_new, g_new = p.value_and_grad(xt)
        if not self.finite(g_new):
            return stop(state, Status.NONFINITE)
        data["step_lengths"] = appended(data["step_lengths"], t)
        info = {"step_length": t, "step_norm": self.norm(xt - x), "f_prev": f,
                "tau": cinfo.tau}
        return State(xt, f_new, g_new, accepted=True, info=info, data=data)

    def terminate(self, state: State) -> Status | None:
        """The projected-gradient test, then the ftol/xtol tests after a full step."""
        status, xp = state.stop, self.xp
        if status is not None:
            return status
        pg = projected_gradient(xp, state.x, state.g, *self.bounds)
        if self.inf_norm(pg) <= self.tol["gtol"]:
            if not self._blind(state):
                return Status.GTOL
            # met only through difference entries that say nothing (as without bounds)
            return self._small_change(state) or Status.FD_ZERO_COLUMN
        return self._small_change(state)

    def verify(self, state: State, status: Status) -> tuple[Status, State]:
        """As :meth:`Newton.verify`, on the Hessian of the variables not held by a bound
        (``status`` as it is when every variable is held)."""
        xp, (lb, ub) = self.xp, self.bounds
        x, g = state.x, state.g
        held = ((x <= lb) & (g > 0)) | ((x >= ub) & (g < 0))
        idx = xp.nonzero(xp.logical_not(held))[0]
        if idx.shape[0] == 0:
            return status, state
        H = self.problem.hessian(x, matrix_free=False)
        if isinstance(H, LinearOperator):
            H = H.to_dense()
        w = xp.linalg.eigvalsh(xp.take(xp.take(H, idx, axis=0), idx, axis=1))
        return self._curvature_status(status, state, state.data, float(w[0]), float(w[-1]))
