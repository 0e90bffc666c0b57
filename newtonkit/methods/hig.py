r"""Half-Inverse Gradients (Schnell, Holl & Thuerey, ICLR 2022), full batch.

With the Jacobian :math:`J = \partial y/\partial x = U\Sigma V^T` of the model outputs and
:math:`g_y = \partial L/\partial y` the update is

.. math:: x_{k+1} = x_k - \eta\, t_k\, V \Sigma^{\kappa} U^T g_y ,

``exponent`` κ = −1/2 (HIG; −1 is the Gauss-Newton pseudo-inverse step, +1 plain gradient
descent), singular values at or below the truncation threshold (``truncation``·σ_max, or
absolute with ``relative=False``) discarded, step η (``step``, default 1).  ``t_k = 1`` unless
``line_search=True`` (Armijo backtracking on ``L``); a non-finite trial point is always halved.

Bounds :math:`l \le x \le u`: the step is projected onto the box, :math:`d \leftarrow
P(x_k + d) - x_k` (:math:`P` the projection, so every :math:`x_k + t d`, :math:`t \le 1`, is
inside), and the gradient test reads the projected gradient :math:`x - P(x - J^Tg_y)` instead
of :math:`J^Tg_y`.

Termination: ``gtol`` on :math:`\max_j |(J^Tg_y)_j|/(\|J_j\|\,\|g_y\|)`; after an
accepted full step, ``ftol`` on :math:`|f_k - f_{k+1}| \le \mathrm{ftol}\cdot f_k` and
``xtol`` on :math:`\|x_{k+1}-x_k\| \le \mathrm{xtol}(\mathrm{xtol}\|x_0\| + \|x_{k+1}\|)`
(entrywise too where the model offers more: :meth:`~._lsq.LeastSquaresMethod.small_step`), each
together with the same test on the Gauss-Newton step at :math:`x_k` (its model reduction
for ftol, its length for xtol), bounded from the HIG direction by
:func:`gauss_newton_bounds`: the HIG step scales with the residuals where a Gauss-Newton step
does not, so a short HIG step alone (residuals of 1e-50, or a small η) says nothing about
convergence.  Those bounds cover the kept directions only; a stop on them is checked on all
of J's directions by :meth:`HIG.verify` (else ``TRUNCATED``).
"""

from __future__ import annotations

import dataclasses
import numbers
from typing import Any

import numpy as np

from .. import linalg
from .._bounds import project
from .._status import Status
from ..operators import DiagonalOperator
from ._base import (
    Option,
    State,
    appended,
    boolean,
    choice,
    entries,
    nonneg_float,
    optional_positive_int,
    positive_float,
    positive_int,
    register,
    stop,
    unit_interval,
)
from ._linesearch import backtrack
from ._lsq import DIFF_STEP, LeastSquaresMethod

__all__ = ["HIG"]


def _exponent(name: str, v: Any) -> float:
    real = isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))
    x = nonneg_float(name, abs(v)) if real else None
    if x is None or x > 4:
        raise ValueError(f"option {name!r} must be a number in [-4, 4] (-0.5 for HIG), got {v!r}")
    return float(v)


def gauss_newton_bounds(xp: Any, s_min: Any, s_max: Any, exponent: float,
                        hnorm: Any) -> tuple[Any, Any]:
    r"""Bounds, from the direction :math:`h = V_k\Sigma_k^{\kappa}c` (:math:`c = U_k^Tr`), on
    the Gauss-Newton step :math:`d = V_k\Sigma_k^{-1}c` on the same kept subspace and on its
    model reduction :math:`\tfrac12\|c\|^2`:

    .. math:: \|d\| = \|\Sigma_k^{-1-\kappa}\,\Sigma_k^{\kappa}c\|
              \le \max_i \sigma_i^{-1-\kappa}\,\|h\|, \qquad
              \tfrac12\|c\|^2 \le \tfrac12\big(\max_i \sigma_i^{-\kappa}\,\|h\|\big)^2

    (:math:`\sigma^p` is monotone, so each maximum is at the smallest or the largest kept
    :math:`\sigma`).  Scaling the residuals by :math:`a` scales both as it scales a Gauss-Newton
    step (:math:`a^0`) and f (:math:`a^2`), where :math:`\|h\| \propto a^{1+\kappa}`: a short
    HIG step alone does not show that x has converged.  Arrays in, arrays out.
    """
    px, pf = -1.0 - exponent, -exponent
    step = xp.maximum(s_min ** px, s_max ** px) * hnorm
    predicted = 0.5 * (xp.maximum(s_min ** pf, s_max ** pf) * hnorm) ** 2
    return step, predicted


@register
class HIG(LeastSquaresMethod):
    """Half-inverse gradients (``method="hig"``)."""

    name = "hig"
    aliases = ("half-inverse",)
    options = {
        "exponent": Option(-0.5, _exponent, "κ in V Σ^κ Uᵀ"),
        "truncation": Option(1e-6, nonneg_float, "singular-value cutoff"),
        "relative": Option(True, boolean, "cutoff relative to σ_max"),
        "step": Option(1.0, positive_float, "step size η"),
        "line_search": Option(False, boolean, "Armijo backtracking on the loss"),
        "c1": Option(1e-4, unit_interval, "Armijo constant"),
        "max_backtracks": Option(30, positive_int, "trial points per line search"),
        "route": Option("auto", choice("auto", "svd", "gram", "kernel", "normal",
                                                "randomized", "matrix-free"),
                        "SVD route (linalg.half_inverse)"),
        "rank": Option(None, optional_positive_int, "target rank (randomized route)"),
        "oversampling": Option(10, positive_int, "randomized route oversampling"),
        "power_iterations": Option(2, positive_int, "randomized route power iterations"),
        "seed": Option(0, lambda n, v: v if v is None else positive_int(n, v + 1) - 1,
                       "randomized route seed"),
        "diff_step": DIFF_STEP,
    }
    default_maxiter = staticmethod(lambda n: 1000)

    @classmethod
    def bounded(cls, opts: dict) -> type:
        """Under bounds HIG projects each step onto the box (module docstring)."""
        return cls
    # HIG converges linearly: tight f and x tests (which the Gauss-Newton step must pass too).
    default_tol = {"gtol": 1e-8, "ftol": 1e-14, "xtol": 1e-10}

    def __init__(self, problem: Any, opts: dict, tol: dict) -> None:
        super().__init__(problem, opts, tol)
        if opts["relative"] and opts["truncation"] >= 1:
            raise ValueError(f"option 'truncation' is relative to σ_max and must be < 1, got "
                             f"{opts['truncation']!r} (set relative=False for an absolute one)")
        if opts["route"] == "randomized" and opts["rank"] is None:
            raise ValueError("route='randomized' needs a target rank: options={'rank': k}")

    def init(self, x0: Any) -> State:
        ev = self.problem.evaluate(x0)
        state = State(x0, ev.f, data={"ev": ev, "f0": ev.f, "ranks": (), "singular_values": (),
                                      "thresholds": (), "step_lengths": ()})  # histories
        if self.finite(ev.gy):
            lin = self.linearize(ev, gauss_newton=False)
            state.g, state.data["lin"] = lin.g, lin
        return state

    def step(self, state: State) -> State:
        o, p, lin = self.opts, self.problem, state.data["lin"]
        try:
            h, info = linalg.half_inverse(
                lin.J, lin.r, o["exponent"], o["truncation"], relative=o["relative"],
                route=o["route"], rank=o["rank"], oversampling=o["oversampling"],
                power_iterations=o["power_iterations"], seed=o["seed"])
        except linalg.LinAlgError:
            return stop(state, Status.NONFINITE)
        if not self.finite(h):
            return stop(state, Status.NONFINITE)
        if info.rank == 0:  # nothing above an absolute truncation: h = 0, x cannot move
            return stop(state, Status.NO_PROGRESS)
        xp, s = self.xp, info.singular_values
        gn_step, gn_predicted = gauss_newton_bounds(xp, xp.min(s), xp.max(s), o["exponent"],
                                                    xp.linalg.vector_norm(h))
        d = -o["step"] * h
        if self.bounds is not None:  # the step projected onto the box: x + t d inside, t ≤ 1
            d = project(self.xp, state.x + d, *self.bounds) - state.x
        slope = float(self.xp.vecdot(state.g, d))
        if o["line_search"] and not slope < 0:
            return stop(state, Status.NO_PROGRESS)
        keep: dict = {}

        def value(t: float) -> tuple[float, Any]:
            xt = state.x + t * d
            if self.bounds is not None:  # x + t d is in the box up to rounding: clip that
                xt = project(self.xp, xt, *self.bounds)
            ev = p.evaluate(xt)
            return ev.f, ev

        def finish(ev: Any) -> bool:
            if not self.finite(ev.gy):
                return False
            keep["lin"] = self.linearize(ev, gauss_newton=False)
            return self.finite(keep["lin"].g)

        res = backtrack(value, state.f, slope, finish=finish, c1=o["c1"],
                        max_steps=o["max_backtracks"], armijo=o["line_search"])
        if res.t is None:
            return stop(state, Status.NONFINITE if res.nonfinite else Status.LINE_SEARCH)
        hist, ev = state.data, res.point
        new = dict(hist, ev=ev, lin=keep["lin"], x_prev=state.x,
                   ranks=appended(hist["ranks"], info.rank),
                   singular_values=appended(hist["singular_values"], info.singular_values),
                   thresholds=appended(hist["thresholds"], info.threshold),
                   step_lengths=appended(hist["step_lengths"], res.t))
        i = {"step_length": res.t, "step_norm": res.t * self.norm(d), "f_prev": state.f,
             "rank": info.rank, "threshold": float(info.threshold),
             "nonfinite": res.nonfinite, "gn_step": float(gn_step),
             "gn_predicted": float(gn_predicted)}
        return State(ev.x, ev.f, keep["lin"].g, accepted=True, info=i, data=new)

    def verify(self, state: State, status: Status) -> tuple[Status, State]:
        """A change test (ftol/xtol) holds on the directions HIG kept (``gauss_newton_bounds``);
        the directions below the truncation are checked here, at ``state.x``, on the
        Gauss-Newton step on the directions the last step dropped
        (:meth:`gauss_newton_check`; under bounds on the free variables), else
        ``TRUNCATED``.  (On NIST's Misra1b HIG ended ``FTOL`` at 9e4 times the minimum, a
        residual–column cosine of 0.6, σ_min/σ_max = 1e-8.)"""
        status, state = super().verify(state, status)  # (FD_ZERO_COLUMN)
        if status not in (Status.FTOL, Status.XTOL, Status.FTOL_XTOL):
            return status, state
        xp, lin = self.xp, state.data["lin"]
        J = lin.J
        if self.bounds is not None:  # the variables a bound holds are not free to move
            lb, ub = self.bounds
            x, g = state.x, state.g
            held = ((x <= lb) & (g > 0)) | ((x >= ub) & (g < 0))
            free = xp.astype(xp.logical_not(held), J.dtype)
            J = J * free[None, :] if lin.dense else J @ DiagonalOperator(free)
        checked = self.gauss_newton_check(J, lin.r, state.f, state.x, status,
                                          above=state.info.get("threshold"))
        if checked is not None:
            return checked, state
        return Status.TRUNCATED, dataclasses.replace(state, details=dict(state.details))

    def finish(self, state: State) -> dict:
        d = state.data
        return {"jac": state.g, "y": d["ev"].y, "jacobian": d["lin"].J if "lin" in d else None,
                "ranks": entries(d["ranks"]),
                "singular_values": entries(d["singular_values"]),
                "thresholds": entries(d["thresholds"]), "step_lengths": entries(d["step_lengths"])}

