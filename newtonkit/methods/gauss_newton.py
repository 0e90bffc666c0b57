r"""Gauss-Newton and Levenberg-Marquardt for :math:`\min_x \tfrac12\|r(x)\|^2` and
:math:`\min_x L(F(x))` (generalised Gauss-Newton).

With the Gauss-Newton residual :math:`\tilde r` and Jacobian :math:`\tilde J` at :math:`x_k`
(:math:`\tilde r = r, \tilde J = J` for plain least squares; see
:mod:`newtonkit.problems._outputs` for losses) the quadratic model is
:math:`m(p) = f + \tilde r^T \tilde J p + \tfrac12 \|\tilde J p\|^2`.

``"gauss-newton"`` (``"gn"``)
    :math:`p = \arg\min \|\tilde J p + \tilde r\|` (:func:`newtonkit.linalg.gauss_newton_step`,
    the minimum-norm solution when rank deficient), then Armijo backtracking on ``f``
    (``line_search=False``: unit steps).  A linear least-squares problem is solved in one step.

``"lm"``, ``update="trust-region"`` (the default for a dense Jacobian)
    Moré's (1978) trust-region Levenberg-Marquardt, as MINPACK's ``lmder``: the step solves
    :math:`(\tilde J^T\tilde J + \lambda D^2) p = -\tilde J^T \tilde r` with λ chosen so that
    :math:`\|Dp\| \approx \Delta` (within 10 %; λ = 0 when the Gauss-Newton step fits), found
    by the Moré-Hebden iteration from one SVD of :math:`\tilde J D^{-1}` per Jacobian (small
    n) or from its pivoted QR and a Cholesky factor per trial λ (:mod:`._lmpar`).  The
    gain ratio :math:`\rho = \mathrm{ared}/\mathrm{pred}` updates Δ; a step is accepted when
    :math:`\rho \ge 10^{-4}` and the Jacobian is re-evaluated only after an accepted step.
    ``scaling=True`` takes :math:`D = \mathrm{diag}(\max_{i\le k} \|\tilde J_j^{(i)}\|)`
    (Marquardt/Moré; SciPy's ``x_scale='jac'``), else :math:`D = I`.

``"lm"``, ``update="nielsen"`` (the default for operator Jacobians, or when ``damping`` is given)
    :math:`(\tilde J^T\tilde J + \mu D^2) p = -\tilde J^T\tilde r` (CGLS when matrix-free),
    :math:`\rho = (f - f(x+p)) / (m(0) - m(p))`; accepted (ρ > 10⁻⁴):
    :math:`\mu \leftarrow \mu\max(1/3, 1 - (2\rho-1)^3)`, ν = 2; rejected:
    :math:`\mu \leftarrow \nu\mu`, :math:`\nu \leftarrow 2\nu` (Nielsen 1999).  The initial
    μ is ``damping`` times :math:`\max_j (D^{-2}\tilde J^T \tilde J)_{jj}` (its Lanczos bound
    for an operator).

Termination (MINPACK's tests; ``ftol``, ``xtol``, ``gtol`` from the driver):
``gtol``: the scaled gradient (:meth:`LeastSquaresMethod.gradient_measure`) ≤ gtol;
``ftol``: :math:`|\mathrm{ared}| \le \mathrm{ftol}` and :math:`\mathrm{pred} \le
\mathrm{ftol}` (both relative to ``f``) and :math:`\rho \le 2`; ``xtol``:
:math:`\Delta \le \mathrm{xtol}\,\|Dx\|` (trust region) or :math:`\|p\| \le
\mathrm{xtol}(\mathrm{xtol} + \|x\|)`.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _backend as B
from .. import linalg
from .._status import Status
from ..operators import GramOperator, LinearOperator
from ..problems._common import BudgetExhausted
from . import _trust
from ._base import (
    Option,
    State,
    boolean,
    choice,
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
from ._lmpar import TrustRegionSubproblem
from ._lsq import LeastSquaresMethod

__all__ = ["GaussNewton", "LevenbergMarquardt"]

_SOLVERS = ("auto", "qr", "lstsq", "cholesky", "cgls", "kernel", "kernel-cg")


@register
class GaussNewton(LeastSquaresMethod):
    """Gauss-Newton with a line search (``method="gauss-newton"`` or ``"gn"``)."""

    name = "gauss-newton"
    aliases = ("gn",)
    options = {
        "linear_solver": Option("auto", choice(*_SOLVERS), "step solver"),
        "line_search": Option(True, boolean, "Armijo backtracking (False: unit steps)"),
        "c1": Option(1e-4, unit_interval, "Armijo constant"),
        "max_backtracks": Option(30, positive_int, "trial points per line search"),
        "cg_rtol": Option(1e-10, positive_float, "CGLS tolerance"),
        "cg_maxiter": Option(None, optional_positive_int, "CGLS iterations"),
        "damping": Option(None, optional_nonneg_float, "given: Levenberg-Marquardt"),
    }
    default_maxiter = staticmethod(lambda n: 100 * n)

    @classmethod
    def select(cls, opts: dict) -> type:
        """``damping`` turns Gauss-Newton into Levenberg-Marquardt (DESIGN §2)."""
        return LevenbergMarquardt if opts.get("damping") is not None else cls

    @classmethod
    def bounded(cls, opts: dict) -> type:
        """Under bounds: the trust-region reflective method (:mod:`.trf`)."""
        from .trf import TrustRegionReflective

        return TrustRegionReflective

    def init(self, x0: Any) -> State:
        ev = self.problem.evaluate(x0)
        state = State(x0, ev.f, data={"ev": ev})
        if math.isfinite(ev.f):
            lin = self.linearize(ev)
            state.g, state.data["lin"] = lin.g, lin
        return state

    def step(self, state: State) -> State:
        xp, o, p = self.xp, self.opts, self.problem
        lin = state.data["lin"]
        try:
            d, _ = linalg.gauss_newton_step(lin.J, lin.r, 0.0, method=o["linear_solver"],
                                               rtol=o["cg_rtol"], maxiter=o["cg_maxiter"])
        except linalg.LinAlgError:
            return stop(state, Status.NONFINITE)
        if not self.finite(d):
            return stop(state, Status.NONFINITE)
        if self.norm(d) <= self.tol["xtol"] * (self.tol["xtol"] + self.norm(state.x)):
            return stop(state, Status.XTOL)  # the full step predicts convergence within xtol
        slope = float(xp.vecdot(state.g, d))
        if not slope < 0:
            return stop(state, Status.NO_PROGRESS)
        keep: dict = {}

        def value(t: float) -> tuple[float, Any]:
            ev = p.evaluate(state.x + t * d)
            keep["ev"] = ev
            return ev.f, ev

        def finish(ev: Any) -> bool:
            keep["lin"] = self.linearize(ev)
            return self.finite(keep["lin"].g)

        res = backtrack(value, state.f, slope, finish=finish, c1=o["c1"],
                        max_steps=o["max_backtracks"], armijo=o["line_search"])
        if res.t is None:
            return stop(state, Status.NONFINITE if res.nonfinite else Status.LINE_SEARCH)
        ev, lin = res.point, keep["lin"]
        info = {"step_length": res.t, "step_norm": res.t * self.norm(d), "f_prev": state.f,
                "nonfinite": res.nonfinite}
        data = dict(state.data, ev=ev, lin=lin)
        return State(ev.x, ev.f, lin.g, accepted=True, info=info, data=data)

    def finish(self, state: State) -> dict:
        lin = state.data.get("lin")
        return {"jac": None if lin is None else lin.g,
                "y": state.data["ev"].y}


@register
class LevenbergMarquardt(LeastSquaresMethod):
    """Levenberg-Marquardt (``method="lm"``; module docstring)."""

    name = "lm"
    aliases = ("levenberg-marquardt",)
    options = {
        "update": Option("auto", choice("auto", "trust-region", "nielsen"), "damping rule"),
        "damping": Option(None, optional_nonneg_float, "initial relative damping (Nielsen)"),
        "scaling": Option(True, boolean, "Marquardt/Moré diagonal scaling D"),
        "factor": Option(100.0, positive_float, "initial trust radius factor"),
        "linear_solver": Option("auto", choice("auto", "svd", *_SOLVERS[1:]), "step solver"),
        "cg_rtol": Option(1e-10, positive_float, "CGLS tolerance"),
        "cg_maxiter": Option(None, optional_positive_int, "CGLS iterations"),
    }
    default_maxiter = staticmethod(lambda n: None)
    default_maxfev = staticmethod(lambda n: 100 * n)

    @classmethod
    def bounded(cls, opts: dict) -> type:
        """Under bounds: the trust-region reflective method (:mod:`.trf`), with LM's default
        ``scaling=True``."""
        from .trf import TrustRegionReflective

        opts.setdefault("scaling", True)
        return TrustRegionReflective

    def __init__(self, problem: Any, opts: dict, tol: dict) -> None:
        super().__init__(problem, opts, tol)
        upd, solver = opts["update"], opts["linear_solver"]
        if upd == "trust-region" and opts["damping"] is not None:
            raise ValueError("option 'damping' (initial μ) belongs to update='nielsen'; the "
                             "trust-region update starts from the radius factor·‖D x0‖ (option "
                             "'factor')")
        if upd == "trust-region" and solver not in ("auto", "svd"):
            raise ValueError(f"update='trust-region' solves its steps by SVD; linear_solver="
                             f"{solver!r} needs update='nielsen'")
        if upd == "nielsen" and solver == "svd":
            raise ValueError("linear_solver='svd' belongs to update='trust-region'; use 'qr', "
                             "'lstsq', 'cholesky' or 'cgls'")
        fi = self.xp.finfo(problem.dtype)
        self.eps, self.tiny = float(fi.eps), float(fi.smallest_normal)

    def init(self, x0: Any) -> State:
        ev = self.problem.evaluate(x0)
        o = self.opts
        upd = o["update"]
        if upd == "auto":
            upd = "nielsen" if o["damping"] is not None or o["linear_solver"] not in (
                "auto", "svd") else None
        ones = B.ones_like(self.xp, x0)  # x0 is flat, of the problem's dtype and device
        data = {"ev": ev, "lin": None, "first": True, "update": upd, "D": None, "ones": ones,
                "damping": [], "radius": [], "ratio": [], "par": 0.0, "mu": None, "nu": 2.0,
                "gram": True, "svd": None}
        state = State(x0, ev.f, data=data)
        if math.isfinite(ev.f):  # the driver checks the gradient at x0 before the first step
            data["lin_x0"] = lin = self.linearize(ev, densify=upd == "trust-region")
            state.g = lin.g
        return state

    # -- one trial ---------------------------------------------------------------------------
    def step(self, state: State) -> State:
        d = state.data
        if d["lin"] is None:
            lin = d.pop("lin_x0", None)  # computed by init at x0
            if lin is None:
                lin = self.linearize(d["ev"], densify=d["update"] == "trust-region")
            if d["update"] is None:
                d["update"] = "trust-region" if lin.dense else "nielsen"
            gnorm = self.scaled_gradient(lin)
            if not math.isfinite(gnorm):  # exactly when the gradient is not finite
                return stop(state, Status.NONFINITE)
            self._set_scaling(d, lin)
            d["lin"], d["gnorm"] = lin, gnorm  # d is this trial's (a fresh dict)
            details: dict = {}
            status = (Status.ZERO if state.f == 0.0 else
                      self.gradient_status(lin, gnorm, details))
            if status is not None:
                state = State(state.x, state.f, lin.g, accepted=False, data=d, info=state.info)
                return stop(state, status, details)
            g = lin.g
        else:
            g = state.g
        if d["update"] == "trust-region":
            return self._trust_region_trial(state, d, g)
        if d is not state.data:
            state = State(state.x, state.f, g, accepted=False, data=d, info=state.info)
        return self._nielsen_trial(state)

    def _set_scaling(self, d: dict, lin: Any) -> None:
        cn = lin.colnorms
        if not self.opts["scaling"] or cn is None:
            d["D"] = d["ones"]
        elif d["D"] is None:
            d["D"] = self.xp.where(cn > 0, cn, d["ones"])
        else:
            d["D"] = self.xp.maximum(d["D"], cn)

    def _trust_region_trial(self, state: State, d: dict, g: Any) -> State:
        """One trial from ``state.x``; ``d`` and ``g`` are the data and gradient there (those
        of ``state`` unless the Jacobian was just evaluated)."""
        tol = self.tol
        D, fact = d["D"], d["svd"]
        x, f = state.x, state.f
        if fact is None:
            lin = d["lin"]
            # the last step a Gauss-Newton step (λ = 0): this one probably is too
            d["svd"] = fact = TrustRegionSubproblem(self.xp, lin.J / D, lin.r, self.eps,
                                                    self.tiny, gn_first=d["par"] == 0.0,
                                                    gram=d["gram"])
            if d["first"]:
                d["xnorm"] = self.norm(D * x)
                d["delta"] = self.opts["factor"] * (d["xnorm"] or 1.0)
        delta, first = d["delta"], d["first"]
        v, par, pnorm, jp2 = fact.solve(delta, d["par"])  # scaled step -v, jp2 = ‖J̃ p‖²
        if first:
            delta = min(delta, pnorm)
        ev = self.problem.evaluate(x - v / D)
        f1 = ev.f
        u = _trust.more_update(_trust.SCALAR, f, f1, delta, par, pnorm, jp2)
        delta, par, ratio = u.delta, u.par, u.ratio
        d["damping"].append(par)
        d["radius"].append(delta)
        d["ratio"].append(ratio)
        if u.accepted:
            xnorm = B.norm(self.xp, D * ev.x)
            new = dict(d, delta=delta, par=par, ev=ev, lin=None, svd=None, first=False,
                       xnorm=xnorm, gram=d["gram"] if fact.gram_ok is None else fact.gram_ok)
            # ‖D x‖ finite with D > 0 finite: every entry of x is finite
            out = State(ev.x, f1, None, accepted=True,
                        info={"damping": par, "radius": delta, "ratio": ratio}, data=new,
                        x_finite=math.isfinite(xnorm))
        else:
            xnorm = d["xnorm"]
            new = dict(d, delta=delta, par=par)
            out = State(x, f, g, accepted=False, info=state.info, data=new)
        _track_nonfinite(d, new, u.finite)
        since = new["since_nonfinite"]
        code = _trust.more_termination(_trust.SCALAR, u, delta, xnorm, d["gnorm"], self.eps,
                                       tol["ftol"], tol["xtol"], new["nonfinite_run"],
                                       -1 if since is None else since)
        out.stop = _trust.CODES[int(code)]
        return out

    def _nielsen_trial(self, state: State) -> State:
        xp, p, d, o, tol = self.xp, self.problem, state.data, self.opts, self.tol
        lin, D = d["lin"], d["D"]
        D2 = D * D
        if d["mu"] is None:
            tau = 1e-3 if o["damping"] is None else o["damping"]
            if lin.dense:
                diag = lin.colnorms ** 2 / D2
                d["mu"] = tau * max(float(xp.max(diag)), self.eps)
            else:
                d["mu"] = tau * max(linalg.lanczos(GramOperator(lin.J), 20)[1], self.eps)
        mu = d["mu"]
        solver = o["linear_solver"]
        try:
            step, _ = linalg.gauss_newton_step(lin.J, lin.r, mu, diag=D2,
                                               method="auto" if solver == "auto" else solver,
                                               rtol=o["cg_rtol"], maxiter=o["cg_maxiter"])
        except linalg.LinAlgError:
            return stop(state, Status.NONFINITE)
        if not self.finite(step):
            return stop(state, Status.NONFINITE)
        ev = p.evaluate(state.x + step)
        Jp = lin.J @ step if not isinstance(lin.J, LinearOperator) else lin.J.matvec(step)
        f, f1 = state.f, ev.f
        pred = -(float(xp.vecdot(lin.g, step)) + 0.5 * float(xp.vecdot(Jp, Jp)))
        ared = f - f1 if math.isfinite(f1) else -math.inf
        ratio = ared / pred if pred > 0 else -1.0
        accepted = ratio > 1e-4
        nu = d["nu"]
        if accepted:
            mu, nu = mu * max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3), 2.0
        else:
            mu, nu = mu * nu, 2.0 * nu
        d["damping"].append(mu)
        d["ratio"].append(ratio)
        new = dict(d, mu=mu, nu=nu)
        step_norm = self.norm(step)
        if accepted:
            new.update(ev=ev, lin=None, first=False)
            out = State(ev.x, f1, None, accepted=True, info={"damping": mu, "ratio": ratio},
                        data=new)
        else:
            out = State(state.x, f, state.g, accepted=False, info=state.info, data=new)
        small_f = abs(ared) <= tol["ftol"] * f and pred <= tol["ftol"] * f
        small_x = step_norm <= tol["xtol"] * (tol["xtol"] + self.norm(state.x))
        out.stop = small_change(small_f, small_x)
        if out.stop is None and not (math.isfinite(mu) and mu <= 1e300):
            out.stop = Status.NO_PROGRESS
        _track_nonfinite(d, new, math.isfinite(f1))
        return _nonfinite_guard(out, new)

    def terminate(self, state: State) -> Status | None:
        return state.stop

    def finish(self, state: State) -> dict:
        d = state.data
        out = {"y": d["ev"].y, "damping": list(d["damping"]),
               "gain_ratios": list(d["ratio"]), "damping_update": d["update"]}
        if d["update"] == "trust-region":
            out["trust_radius"] = list(d["radius"])
        lin = d["lin"]
        if lin is None and math.isfinite(state.f):
            # The gradient at a point accepted by the ftol/xtol test: like SciPy's
            # least_squares, this Jacobian is not counted in njev (the iteration did not use it).
            njev = self.problem.njev
            try:
                lin = self.linearize(d["ev"])
            except BudgetExhausted:  # a difference Jacobian would exceed maxfev: no jac
                lin = None
            self.problem.njev = njev
        out["jac"] = None if lin is None else lin.g
        return out


MAX_NONFINITE_TRIALS = _trust.MAX_NONFINITE_TRIALS
RECENT_NONFINITE = _trust.RECENT_NONFINITE


def _track_nonfinite(d: dict, new: dict, finite: bool) -> None:
    """Count consecutive non-finite trials (``nonfinite_run``) and trials since the last one
    (``since_nonfinite``, ``None`` while there has been none)."""
    since = d.get("since_nonfinite")
    new["nonfinite_run"] = 0 if finite else d.get("nonfinite_run", 0) + 1
    new["since_nonfinite"] = 0 if not finite else (None if since is None else since + 1)


def _nonfinite_guard(out: State, data: dict) -> State:
    """A stop reached by shrinking the step away from non-finite values is not convergence.

    That is: a stop right after a non-finite trial, ``MAX_NONFINITE_TRIALS`` of them in a row,
    or a small-step / small-reduction stop within ``RECENT_NONFINITE`` trials of one (the steps
    were held small by the edge of a region where the residual is not finite).
    """
    run, since = data["nonfinite_run"], data["since_nonfinite"]
    if run and (out.stop is not None or run >= MAX_NONFINITE_TRIALS):
        out.stop = Status.NONFINITE
    elif (out.stop in (Status.FTOL, Status.XTOL, Status.FTOL_XTOL) and since is not None
          and since < RECENT_NONFINITE):
        out.stop = Status.NONFINITE
    return out

