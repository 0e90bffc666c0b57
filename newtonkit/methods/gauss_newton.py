r"""Gauss-Newton for :math:`\min_x \tfrac12\|r(x)\|^2` and
:math:`\min_x L(F(x))` (generalised Gauss-Newton).

With the Gauss-Newton residual :math:`\tilde r` and Jacobian :math:`\tilde J` at :math:`x_k`
(:math:`\tilde r = r, \tilde J = J` for plain least squares; see
:mod:`newtonkit.problems._outputs` for losses) the quadratic model is
:math:`m(p) = f + \tilde r^T \tilde J p + \tfrac12 \|\tilde J p\|^2`.

``"gauss-newton"`` (``"gn"``)
    :math:`p = \arg\min \|\tilde J p + \tilde r\|` (:func:`newtonkit.linalg.gauss_newton_step`,
    the minimum-norm solution when rank deficient), then Armijo backtracking on ``f``
    (``line_search=False``: unit steps).  A linear least-squares problem is solved in one step.

With ``damping`` given, ``"gauss-newton"`` is Levenberg-Marquardt
(:mod:`newtonkit.methods.levenberg_marquardt`).

Termination: ``gtol``, the scaled gradient (:meth:`LeastSquaresMethod.gradient_measure`) ≤
gtol; after a full step, :math:`|f_k - f_{k+1}| \le \mathrm{ftol}\,|f_k|` and/or
:math:`\|p\| \le \mathrm{xtol}(\mathrm{xtol}\,\|x_0\| + \|x\|)`, ‖x‖ over the entries
whose column of J̃ is nonzero (:meth:`~newtonkit.methods._base.Method.xtol_bound`), and
in every entry beside its own size where the model values the step above ftol·f and ε·f₀
(:meth:`LeastSquaresMethod.small_step`); after a shortened step, ftol as
MINPACK's test, the actual and the predicted reduction :math:`m(0) - m(p) = -\tfrac12 g^Tp`
both at most :math:`\mathrm{ftol}\,|f_k|` (:meth:`LeastSquaresMethod.terminate`).
"""

from __future__ import annotations

import math
from typing import Any

from .. import linalg
from .._status import Status
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
    stop,
    unit_interval,
)
from ._linesearch import backtrack
from ._lsq import DIFF_STEP, LeastSquaresMethod
from .levenberg_marquardt import SOLVERS, LevenbergMarquardt

__all__ = ["GaussNewton"]


@register
class GaussNewton(LeastSquaresMethod):
    """Gauss-Newton with a line search (``method="gauss-newton"`` or ``"gn"``)."""

    name = "gauss-newton"
    aliases = ("gn",)
    options = {
        "linear_solver": Option("auto", choice(*SOLVERS), "step solver"),
        "line_search": Option(True, boolean, "Armijo backtracking (False: unit steps)"),
        "c1": Option(1e-4, unit_interval, "Armijo constant"),
        "max_backtracks": Option(30, positive_int, "trial points per line search"),
        "cg_rtol": Option(1e-10, positive_float, "CGLS tolerance"),
        "cg_maxiter": Option(None, optional_positive_int, "CGLS iterations"),
        "damping": Option(None, optional_nonneg_float, "given: Levenberg-Marquardt"),
        "diff_step": DIFF_STEP,
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
        state = State(x0, ev.f, data={"ev": ev, "f0": ev.f})
        if math.isfinite(ev.f):
            lin = self.linearize(ev)
            state.g, state.data["lin"] = lin.g, lin
        return state

    def step(self, state: State) -> State:
        xp, o, p = self.xp, self.opts, self.problem
        lin = state.data["lin"]
        try:
            d, info = linalg.gauss_newton_step(lin.J, lin.r, 0.0, method=o["linear_solver"],
                                               rtol=o["cg_rtol"], maxiter=o["cg_maxiter"])
        except linalg.LinAlgError:
            return stop(state, Status.NONFINITE)
        if not self.finite(d):
            return stop(state, Status.NONFINITE)
        # the full step predicts convergence within xtol (only a converged solve's: an
        # iterative solve that stalled may return a short step, even 0, far from a minimum)
        slope = float(xp.vecdot(state.g, d))
        bound = self.xtol_bound(state.x, self.seen(lin))
        if info.converged and self.small_step(d, state.x, bound, -0.5 * slope, state.f,
                                              state.data["f0"]):
            return stop(state, Status.XTOL)
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
        # the model's reduction for the full step, m(0) − m(d) = −gᵀd − ½‖J̃d‖² = −½gᵀd: d
        # minimises m on a subspace that holds it (J̃ᵀJ̃d + g ⊥ d), so ‖J̃d‖² = −gᵀd
        info = {"step_length": res.t, "step_norm": res.t * self.norm(d), "f_prev": state.f,
                "predicted": -0.5 * slope, "nonfinite": res.nonfinite}
        data = dict(state.data, ev=ev, lin=lin, x_prev=state.x)
        return State(ev.x, ev.f, lin.g, accepted=True, info=info, data=data)

    def finish(self, state: State) -> dict:
        lin = state.data.get("lin")
        return {"jac": None if lin is None else lin.g, "y": state.data["ev"].y,
                "jacobian": None if lin is None else lin.J}  # (least_squares reuses J̃ at x)
