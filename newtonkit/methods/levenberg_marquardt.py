r"""Levenberg-Marquardt for :math:`\min_x \tfrac12\|r(x)\|^2` and :math:`\min_x L(F(x))`
(``method="lm"``).

With the Gauss-Newton residual :math:`\tilde r` and Jacobian :math:`\tilde J` at :math:`x`
(:mod:`newtonkit.methods.gauss_newton`) and the diagonal scaling :math:`D`
(``scaling=True``: :math:`D = \mathrm{diag}(\max_{i\le k} \|\tilde J_j^{(i)}\|)`,
Marquardt/Moré, SciPy's ``x_scale='jac'``; else :math:`D = I`), each trial solves

.. math:: (\tilde J^T\tilde J + \lambda D^2)\, p = -\tilde J^T \tilde r

and evaluates :math:`f(x + p)`.  Two rules choose λ:

``update="trust-region"`` (the default for a dense Jacobian)
    Moré's (1978) trust-region LM, as MINPACK's ``lmder``: λ such that :math:`\|Dp\| \approx
    \Delta` (within 10 %; λ = 0 when the Gauss-Newton step fits), by the Moré-Hebden iteration
    (:mod:`._lmpar`); Δ, λ and the acceptance (:math:`\rho \ge 10^{-4}`) from the gain ratio
    :math:`\rho` (:func:`._trust.more_update`), the stop tests from
    :func:`._trust.more_termination`.  The Jacobian is evaluated again only after an accepted
    step.

``update="nielsen"`` (the default for operator Jacobians, or when ``damping`` is given)
    :math:`\rho = (f - f(x+p)) / (m(0) - m(p))`; accepted (ρ > 10⁻⁴):
    :math:`\mu \leftarrow \mu\max(1/3, 1 - (2\rho-1)^3)`, ν = 2; rejected:
    :math:`\mu \leftarrow \nu\mu`, :math:`\nu \leftarrow 2\nu` (Nielsen 1999), the step by
    :func:`newtonkit.linalg.gauss_newton_step` (CGLS when matrix-free).  The initial μ is
    ``damping`` times :math:`\max_j (D^{-2}\tilde J^T \tilde J)_{jj}` (its Lanczos bound for an
    operator).

Termination (MINPACK's tests): ``gtol``, the scaled gradient
(:meth:`LeastSquaresMethod.gradient_measure`) ≤ gtol, read once per Jacobian; ``ftol``:
:math:`|\mathrm{ared}| \le \mathrm{ftol}` and :math:`\mathrm{pred} \le \mathrm{ftol}` (both
relative to ``f``) and :math:`\rho \le 2`; ``xtol``: :math:`\Delta \le \mathrm{xtol}\,\|Dx\|`
(trust region; ‖Dx‖ over the entries whose column of J̃ is nonzero,
:meth:`LevenbergMarquardt._seen_xnorm`; where the radius is not the model's verdict, until a
Gauss-Newton step (λ = 0) has been accepted and after a λ > 0 trial that did not shrink it,
the Gauss-Newton step's :math:`\|D\hat p(0)\|` too: :func:`._trust.radius_unproven`) or
:math:`\|p\| \le \mathrm{xtol}(\mathrm{xtol}\,\|x_0\| + \|x\|)` (Nielsen; entrywise too where
the model offers more: :meth:`~._lsq.LeastSquaresMethod.small_step`).  A stop reached by
shrinking the step away from non-finite values (an ftol/xtol stop on a λ > 0 trial within
``RECENT_NONFINITE`` trials of a non-finite one) is ``NONFINITE``, not convergence.

Each trial is one :meth:`LevenbergMarquardt.step`; what it carries from trial to trial is an
:class:`LMData` (``State.data``), which a trial never changes: it makes the next one.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

from .. import linalg
from .._status import Status
from ..operators import GramOperator, LinearOperator
from ..problems._common import BudgetExhausted
from . import _trust
from ._base import (
    Option,
    State,
    appended,
    boolean,
    choice,
    entries,
    optional_nonneg_float,
    optional_positive_int,
    positive_float,
    register,
    small_change,
    stop,
)
from ._lmpar import TrustRegionSubproblem
from ._lsq import DIFF_STEP, LeastSquaresMethod, Linearization

__all__ = ["LevenbergMarquardt", "LMData"]

#: The linear solvers of the Nielsen update (:func:`newtonkit.linalg.gauss_newton_step`).
SOLVERS = ("auto", "qr", "lstsq", "cholesky", "cgls", "kernel", "kernel-cg")


class LMData(NamedTuple):
    """What LM carries from one trial to the next (``State.data``); a trial makes a new one.

    At the iterate ``x``: ``ev`` its evaluation; ``lin`` its linearisation (``None`` from an
    accepted step until the next trial evaluates the Jacobian); ``gnorm`` the scaled gradient,
    ``None`` until the first trial at ``x`` has read it (and run the gradient test); ``D`` the
    scaling; ``update`` the rule (``"trust-region"`` or ``"nielsen"``); ``first``: no step
    accepted yet; ``gn_step``: a Gauss-Newton step (λ = 0) accepted (trust region).

    Trust region: ``sub`` the factorisations of ``J̃ D⁻¹`` at ``x`` (kept over rejected
    trials), ``delta`` Δ, ``par`` λ, ``xnorm`` ‖Dx‖.  Nielsen: ``mu`` μ,
    ``nu`` ν.  Non-finite trials: ``nonfinite_run`` how many in a row, ``since_nonfinite``
    trials since the last one (−1: none yet).  ``trials`` the history (:func:`appended`) of
    ``(damping, radius, ratio)`` after every trial: λ or μ, Δ (``None`` for Nielsen), ρ.
    ``f0`` the objective at x₀ (Nielsen's xtol test, ``small_step``).
    """

    ev: Any
    update: str | None
    lin: Linearization | None = None
    gnorm: float | None = None
    D: Any = None
    first: bool = True
    gn_step: bool = False
    sub: TrustRegionSubproblem | None = None
    delta: float = math.nan
    par: float = 0.0
    xnorm: float = math.nan
    mu: float | None = None
    nu: float = 2.0
    nonfinite_run: int = 0
    since_nonfinite: int = -1
    trials: tuple = ()
    f0: float = math.inf

    def but(self, **changes: Any) -> LMData:
        """A copy with ``changes``."""
        return self._replace(**changes)

    def after_trial(self, finite: bool, **changes: Any) -> LMData:
        """The next trial's data: ``changes``, and the non-finite counts after a trial whose
        value was ``finite`` or not."""
        since = self.since_nonfinite
        changes["nonfinite_run"] = 0 if finite else self.nonfinite_run + 1
        changes["since_nonfinite"] = 0 if not finite else -1 if since < 0 else since + 1
        return self._replace(**changes)


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
        "linear_solver": Option("auto", choice("auto", "svd", *SOLVERS[1:]), "step solver"),
        "cg_rtol": Option(1e-10, positive_float, "CGLS tolerance"),
        "cg_maxiter": Option(None, optional_positive_int, "CGLS iterations"),
        "diff_step": DIFF_STEP,
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
        if upd == "auto" and (o["damping"] is not None or o["linear_solver"] not in ("auto",
                                                                                    "svd")):
            upd = "nielsen"
        if not math.isfinite(ev.f):  # the driver reports it
            return State(x0, ev.f, data=LMData(ev, upd, f0=ev.f))
        # the driver checks the gradient at x0 before the first step
        lin = self.linearize(ev, densify=upd == "trust-region")
        if upd == "auto":  # trust region for a dense Jacobian
            upd = "trust-region" if lin.dense else "nielsen"
        return State(x0, ev.f, lin.g, data=LMData(ev, upd, lin, f0=ev.f))

    # -- one trial ---------------------------------------------------------------------------
    def step(self, state: State) -> State:
        """One trial from ``state.x``; at a new iterate, first the Jacobian, the scaling and
        the gradient test."""
        d = state.data
        if d.gnorm is None:
            lin = d.lin
            if lin is None:
                lin = self.linearize(d.ev, densify=d.update == "trust-region")
            gnorm = self.scaled_gradient(lin)
            if not math.isfinite(gnorm):  # exactly when the gradient is not finite
                return stop(state, Status.NONFINITE)
            d = d.but(lin=lin, gnorm=gnorm, D=self._scaling(d.D, lin, state.x))
            state = State(state.x, state.f, lin.g, data=d, info=state.info)
            details: dict = {}
            status = self.gradient_status(lin, gnorm, details, state.f)
            if status is not None:
                return stop(state, status, details)
        if d.update == "trust-region":
            return self._trust_region_trial(state)
        return self._nielsen_trial(state)

    def _scaling(self, D: Any, lin: Linearization, x: Any) -> Any:
        """``D`` at a new Jacobian: the running maximum of the column norms (a zero column
        norm, before any other, counts as 1), or ones."""
        xp, cn = self.xp, lin.colnorms
        if not self.opts["scaling"] or cn is None:
            return xp.ones_like(x)
        if D is None:
            return xp.where(cn > 0, cn, xp.ones_like(cn))
        return xp.maximum(D, cn)

    def _seen_xnorm(self, lin: Linearization, D: Any, x: Any, xnorm: float) -> float:
        """The xtol tests' ‖Dx‖: MINPACK's ``xnorm``, or where a column of J̃ is 0, ‖Dx‖
        over the entries whose column is nonzero (with the current D).  A zero column's
        entry does not move (its row of (J̃ᵀJ̃ + λD²)⁻¹J̃ᵀ is 0), and MINPACK's D of 1 (or
        the running maximum of its earlier norms) times its size can fill the norm: a decay
        rate run to 1e9 ended XTOL, success, with a gradient of 1.9 (SciPy's lm too)."""
        seen = self.seen(lin)
        if seen is None or bool(self.xp.all(seen)):
            return xnorm
        return self.norm(self.xp.where(seen, D * x, self.xp.zeros_like(x)))

    def _trust_region_trial(self, state: State) -> State:
        d, x, f = state.data, state.x, state.f
        D, sub, delta, xnorm = d.D, d.sub, d.delta, d.xnorm
        if sub is None:  # a new Jacobian (after a Gauss-Newton step, λ = 0, expect another)
            sub = TrustRegionSubproblem(self.xp, d.lin.J / D, d.lin.r, self.eps, self.tiny)
            if d.first:
                xnorm = self.norm(D * x)
                delta = self.opts["factor"] * (xnorm or 1.0)
        v, par, pnorm, jp2 = sub.solve(delta, d.par)  # scaled step -v, jp2 = ‖J̃ p‖²
        if d.first:
            delta = min(delta, pnorm)
        ev = self.problem.evaluate(x - v / D)
        u = _trust.more_update(_trust.SCALAR, f, ev.f, delta, par, pnorm, jp2)
        trials = appended(d.trials, (u.par, u.delta, u.ratio))
        if u.accepted:
            xnorm = self.norm(D * ev.x)
            new = d.after_trial(u.finite, ev=ev, lin=None, gnorm=None, sub=None, first=False,
                                gn_step=d.gn_step or par == 0,
                                delta=u.delta, par=u.par, xnorm=xnorm, trials=trials)
        else:
            new = d.after_trial(u.finite, sub=sub, delta=u.delta, par=u.par, xnorm=xnorm,
                                trials=trials)
        ftol = self.tol["ftol"]
        # The first trials (the initial radius, factor·‖Dx₀‖, knows nothing of the problem's
        # scale): the ftol test also needs the Gauss-Newton step's offer (asked only where the
        # trial's own tests hold and λ > 0); later MINPACK's test as it is: asked as long as
        # xtol's below, it changed SciPy's float64 counts, on runs that converge by λ > 0
        # steps only (Brown-Dennis, penalty 2; docs/DEVELOPING.md).  The xtol test needs the
        # Gauss-Newton step's length too wherever the radius is unproven
        # (_trust.radius_unproven).
        offer = gn_length = None
        if d.first and par > 0 and abs(u.actred) <= ftol and u.prered <= ftol:
            offer = sub.gn_offer() / (2.0 * f)
        xtol = self.tol["xtol"]
        xsize = self._seen_xnorm(d.lin, D, ev.x if u.accepted else x, xnorm)
        if _trust.radius_unproven(not d.gn_step, par, u.ratio) and u.delta <= xtol * xsize:
            gn_length = sub.gn_length()
        code = _trust.more_termination(_trust.SCALAR, u, par, u.delta, xsize, d.gnorm,
                                       self.eps, ftol, xtol, new.nonfinite_run,
                                       new.since_nonfinite, offer, gn_length)
        status = _trust.CODES[int(code)]
        if not u.accepted:
            return State(x, f, state.g, stop=status, info=state.info, data=new)
        info = {"damping": u.par, "radius": u.delta, "ratio": u.ratio}
        # ‖D x‖ finite with D > 0 finite: every entry of x is finite
        return State(ev.x, ev.f, None, accepted=True, stop=status, info=info, data=new,
                     x_finite=math.isfinite(xnorm))

    def _nielsen_trial(self, state: State) -> State:
        xp, d, o, tol = self.xp, state.data, self.opts, self.tol
        lin, D2 = d.lin, d.D * d.D
        mu = d.mu if d.mu is not None else self._initial_mu(lin, D2)
        try:
            step, solve = linalg.gauss_newton_step(lin.J, lin.r, mu, diag=D2,
                                                   method=o["linear_solver"],
                                                   rtol=o["cg_rtol"], maxiter=o["cg_maxiter"])
        except linalg.LinAlgError:
            return stop(state, Status.NONFINITE)
        if not self.finite(step):
            return stop(state, Status.NONFINITE)
        ev = self.problem.evaluate(state.x + step)
        Jp = lin.J.matvec(step) if isinstance(lin.J, LinearOperator) else lin.J @ step
        f, f1 = state.f, ev.f
        pred = -(float(xp.vecdot(lin.g, step)) + 0.5 * float(xp.vecdot(Jp, Jp)))
        ared = f - f1 if math.isfinite(f1) else -math.inf
        ratio = ared / pred if pred > 0 else -1.0
        accepted = ratio > 1e-4
        if accepted:
            mu, nu = mu * max(1.0 / 3.0, 1.0 - (2.0 * ratio - 1.0) ** 3), 2.0
        else:
            mu, nu = mu * d.nu, 2.0 * d.nu
        trials = appended(d.trials, (mu, None, ratio))
        if accepted:
            new = d.after_trial(math.isfinite(f1), ev=ev, lin=None, gnorm=None, first=False,
                                mu=mu, nu=nu, trials=trials)
        else:
            new = d.after_trial(math.isfinite(f1), mu=mu, nu=nu, trials=trials)
        small_f = abs(ared) <= tol["ftol"] * f and pred <= tol["ftol"] * f
        # (a step from an iterative solve that did not converge may be short for that alone)
        small_x = solve.converged and self.small_step(
            step, state.x, self.xtol_bound(state.x, self.seen(lin)), pred, f, d.f0)
        status = small_change(small_f, small_x)
        if status is None and not (math.isfinite(mu) and mu <= 1e300):
            status = Status.NO_PROGRESS
        status = _nonfinite_guard(status, new)
        if not accepted:
            return State(state.x, f, state.g, stop=status, info=state.info, data=new)
        return State(ev.x, f1, None, accepted=True, stop=status,
                     info={"damping": mu, "ratio": ratio}, data=new)

    def _initial_mu(self, lin: Linearization, D2: Any) -> float:
        """``damping`` (default 1e-3) times max diag(D⁻²J̃ᵀJ̃) (its Lanczos bound for an
        operator), at least ε."""
        tau = 1e-3 if self.opts["damping"] is None else self.opts["damping"]
        if lin.dense:
            return tau * max(float(self.xp.max(lin.colnorms ** 2 / D2)), self.eps)
        return tau * max(linalg.lanczos(GramOperator(lin.J), 20)[1], self.eps)

    def terminate(self, state: State) -> Status | None:
        """The status the trial's own tests set (module docstring)."""
        return state.stop

    def final_linearization(self, state: State) -> tuple[Linearization | None, State]:
        """LM's data holds no Jacobian at a point its last trial accepted (the ftol/xtol
        test's): it is evaluated here, and like SciPy's least_squares not counted in njev (the
        iteration did not use it); ``None`` where a difference Jacobian would exceed maxfev."""
        d = state.data
        if d.lin is not None or not math.isfinite(state.f):
            return d.lin, state
        njev = self.problem.njev
        try:
            lin = self.linearize(d.ev)
        except BudgetExhausted:
            return None, state
        finally:
            self.problem.njev = njev
        return lin, dataclasses.replace(state, data=d.but(lin=lin))

    def finish(self, state: State) -> dict:
        d = state.data
        damping, radius, ratio = zip(*entries(d.trials), strict=True) if d.trials else ((),) * 3
        out = {"y": d.ev.y, "damping": list(damping), "gain_ratios": list(ratio),
               "damping_update": d.update}
        if d.update == "trust-region":
            out["trust_radius"] = list(radius)
        lin, _ = self.final_linearization(state)
        out["jac"] = None if lin is None else lin.g
        out["jacobian"] = None if lin is None else lin.J  # (J̃ at x: least_squares reuses it)
        return out


def _nonfinite_guard(status: Status | None, d: LMData) -> Status | None:
    """A stop reached by shrinking the step away from non-finite values is not convergence:
    ``NONFINITE`` for a stop right after a non-finite trial, after ``MAX_NONFINITE_TRIALS``
    of them in a row, or for a small-step / small-reduction stop within ``RECENT_NONFINITE``
    trials of one (as :func:`._trust.more_termination` for the trust region)."""
    run, since = d.nonfinite_run, d.since_nonfinite
    if run and (status is not None or run >= _trust.MAX_NONFINITE_TRIALS):
        return Status.NONFINITE
    if (status in (Status.FTOL, Status.XTOL, Status.FTOL_XTOL)
            and 0 <= since < _trust.RECENT_NONFINITE):
        return Status.NONFINITE
    return status
