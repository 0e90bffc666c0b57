"""Shared pieces of the least-squares methods: linearisation and the scaled gradient test."""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .. import _backend as B
from .. import linalg
from .._bounds import projected_gradient
from .._status import Status
from ..operators import LinearOperator
from ..problems._robust import RobustLoss
from ._base import Method, Option, State, positive_float, small_change

_MIN_NORMAL = sys.float_info.min


def _diff_step(name: str, v: Any) -> float | None:
    return None if v is None else positive_float(name, v)


#: The option of every least-squares method for a difference Jacobian's steps: SciPy's
#: ``diff_step`` (:func:`newtonkit.problems._fd.difference_steps`).
DIFF_STEP = Option(None, _diff_step, "relative difference step: h = diff_step·|x| "
                                     "(SciPy's diff_step; None: √ε·max(1, |x|))")


def gauss_newton_terms(xp: Any, J: Any, r: Any, above: Any = None) -> tuple[Any, Any]:
    """``(½‖Jd‖², ‖d‖)`` of the minimum-norm Gauss-Newton step d = −J⁺r of each problem of a
    stack, ``J`` (b, m, n) and ``r`` (b, m): from the SVD, over the singular values above
    NumPy's rank cut ε·max(m, n)·σ_max and, where ``above`` (b,) is given, at most it."""
    U, s, _ = xp.linalg.svd(J, full_matrices=False)
    keep = s > max(J.shape[1], J.shape[2]) * float(xp.finfo(J.dtype).eps) * s[:, :1]
    if above is not None:
        keep = keep & (s <= above[:, None])
    q = xp.where(keep, (r[:, None, :] @ U)[:, 0, :], xp.zeros_like(s))
    d = q / xp.where(keep, s, xp.ones_like(s))
    return 0.5 * xp.sum(q * q, axis=1), xp.sqrt(xp.sum(d * d, axis=1))


@dataclass(frozen=True, slots=True)
class Linearization:
    """``r`` the Gauss-Newton residual r̃, ``J`` its Jacobian J̃ (dense or operator),
    ``g = J̃ᵀ r̃`` the gradient, ``colnorms`` the column norms of a dense J̃ (else ``None``),
    ``rnorm = ‖r̃‖``, ``ev`` the evaluation at the point ``x``; ``plain_norms``: every column
    norm is positive and finite (the usual case, which needs no masking)."""

    r: Any
    J: Any
    g: Any
    colnorms: Any
    rnorm: float
    ev: Any
    plain_norms: bool = False

    @property
    def x(self) -> Any:
        return self.ev.x

    @property
    def dense(self) -> bool:
        return not isinstance(self.J, LinearOperator)


class LeastSquaresMethod(Method):
    """Base of Gauss-Newton, Levenberg-Marquardt and HIG: problems on model outputs."""

    problem_kind = "outputs"

    def linearize(self, ev: Any, *, densify: bool = False,
                  gauss_newton: bool = True) -> Linearization:
        """The residual, Jacobian and gradient at the evaluated point ``ev``: the Gauss-Newton
        form ``r̃, J̃`` (:meth:`newtonkit.problems.OutputProblem.gauss_newton_form`), or with
        ``gauss_newton=False`` the loss gradient ``g_y`` and the model Jacobian ``J`` (what
        HIG's step reads; the same for plain least squares).  ``densify`` materialises an
        operator Jacobian."""
        xp, p = self.xp, self.problem
        J = p.jacobian(ev.x)
        if p.loss is None or not gauss_newton:
            r, Jt = ev.gy, J
        else:
            r, Jt = p.gauss_newton_form(ev, J)
        if densify and isinstance(Jt, LinearOperator):
            Jt = Jt.to_dense()
        plain = False
        if isinstance(Jt, LinearOperator):
            g, cn = Jt.rmatvec(r), None
        else:
            g = r @ Jt
            with np.errstate(over="ignore"):  # (an overflow takes the safe norms below)
                cn = B.column_norms(xp, Jt)
            # ‖J̃‖_F² = cn·cn is finite exactly when every norm is (or it overflows: then the
            # safe norms below, also right)
            plain = int(xp.count_nonzero(cn)) == cn.shape[0] and B.vdot(xp, cn, cn) < math.inf
            # A zero or infinite norm of a finite J̃ may be an underflow or overflow of the
            # squares; either would read as a zero gradient (a false gtol stop) and a wrong
            # scaling D, so this rare case takes the norms scaled per column (MINPACK's enorm).
            if not plain and self.finite(g):
                cn = B.column_norms(xp, Jt, safe=True)
        if p.loss is None and ev.f >= _MIN_NORMAL:
            rnorm = math.sqrt(2.0 * ev.f)  # f = ½ r·r, and halving a normal float is exact
        else:
            rnorm = self.norm(r)
        return Linearization(r, Jt, g, cn, rnorm, ev, plain)

    def gradient_measure(self, lin: Linearization) -> float:
        r"""MINPACK's scaled gradient :math:`\max_j |(\tilde J^T\tilde r)_j| / (\|\tilde J_j\|
        \|\tilde r\|)` (the largest cosine between ``r̃`` and a column of ``J̃``); for an
        operator Jacobian :math:`\|\tilde J^T \tilde r\|_\infty / \|\tilde r\|`.  ``inf``
        when the gradient is not finite.  Under bounds the projected gradient replaces
        :math:`g`, in the variables scaled by the column norms
        (:func:`newtonkit._bounds.projected_gradient` with the column norms as scales;
        zero at a first-order point on the box)."""
        if self.bounds is not None:
            lin = replace(lin, g=projected_gradient(self.xp, lin.x, lin.g, *self.bounds,
                                                    lin.colnorms))
        val = self.scaled_gradient(lin)
        return val if math.isfinite(val) else math.inf

    def scaled_gradient(self, lin: Linearization) -> float:
        """:meth:`gradient_measure`, but not finite exactly when the gradient ``g`` is not.

        So one test replaces a separate finiteness check of ``g``: with ``r̃`` finite and no
        zero column, ``|g_j| ≤ ‖r̃‖ ‖J̃_j‖`` keeps every ratio ≤ 1 (+ rounding) when ``g`` is
        finite, and a NaN or ±inf in ``g`` makes the maximum NaN or inf.
        """
        xp = self.xp
        if lin.rnorm == 0.0:
            return 0.0 if self.finite(lin.g) else math.nan
        if lin.colnorms is None:
            return self.inf_norm(lin.g) / lin.rnorm
        cn = lin.colnorms
        if lin.plain_norms:  # no zero, NaN or infinite norm: no masking (an infinite one
            # would make inf/inf below, with NumPy's RuntimeWarning)
            return float(xp.max(xp.abs(lin.g) / cn)) / lin.rnorm
        if not self.finite(lin.g):  # masking could hide a non-finite entry
            return math.nan
        # g finite means J̃ finite, and linearize has taken the norms safely: a zero one is a
        # zero column, whose entry of g is 0
        nz = cn > 0
        ratios = xp.where(nz, xp.abs(lin.g) / xp.where(nz, cn, 1.0), 0.0)
        return float(xp.max(ratios)) / lin.rnorm

    def gradient_status(self, lin: Linearization, measure: float, details: dict,
                        f: float) -> Status | None:
        """The tests at a new linearization ``lin`` with objective ``f``.  Below the dtype's
        normal range (f = 0 included): ``ZERO`` when every residual is exactly zero, else
        ``UNDERFLOW`` (½‖r‖² subnormal or rounded to zero at nonzero residuals: it has lost
        its significant bits, and every test on f would read rounding; the residuals' largest
        magnitude goes in ``details``).  Otherwise ``GTOL``
        when ``measure`` (the scaled gradient of ``lin``) ≤ gtol, else ``None``; but
        ``FLAT_LOSS`` with a robust loss where r̃ = 0 (each ρ′r is 0 while some r is not: the
        gradient vanishes because the loss is flat there, as ``arctan``'s slope underflows far
        out, not because x fits), and
        ``FD_ZERO_COLUMN`` (column indices put in ``details``) when the Jacobian is a finite
        difference whose exactly zero entries may hide more of a gradient entry than the test
        allows plus what the rounding of its other entries may shift, u_j > gtol·‖J̃_j‖·‖r̃‖
        + s_j (:func:`newtonkit.problems._fd.unseen_gradient`): there ``fun`` did not change
        by more than its rounding (a zero column: not at all), and the test proves nothing
        (the rounding s_j every difference gradient carries; SciPy's gtol test accepts it)."""
        if f < float(self.xp.finfo(self.problem.dtype).smallest_normal):
            rmax = float(self.xp.max(self.xp.abs(lin.r)))
            if rmax == 0.0:
                return Status.ZERO
            details["rmax"] = rmax
            return Status.UNDERFLOW
        if not measure <= self.tol["gtol"]:
            return None
        loss = self.problem.loss
        if lin.rnorm == 0.0 and isinstance(loss, RobustLoss):
            # f is normal, so some r_i ≠ 0, and every ρ′_i r_i = 0: the loss is flat there
            details["rmax"] = float(self.xp.max(self.xp.abs(lin.ev.y)))
            details["f_scale"] = loss.f_scale
            return Status.FLAT_LOSS
        if self.problem.jacobian_is_fd and lin.colnorms is not None:
            unseen, seen = self.problem.unseen_gradient(lin.ev, lin.J)
            blind = unseen > self.tol["gtol"] * lin.colnorms * lin.rnorm + seen
            if bool(self.xp.any(blind)):
                # the indices, for the message (a rare path: a few scalars to the host)
                details["columns"] = [int(j) for j in self.xp.nonzero(blind)[0]]
                return Status.FD_ZERO_COLUMN
        return Status.GTOL

    def verify(self, state: State, status: Status) -> tuple[Status, State]:
        """``FD_ZERO_COLUMN`` where a change test (ftol/xtol) holds but the difference
        Jacobian at ``state.x`` has a column that is exactly zero while ``fun``'s rounding
        could hide a change along it (a zero column of :func:`newtonkit.problems._fd.\
unseen_gradient`'s test): no step moved that parameter, so the test proves nothing about it,
        as :meth:`gradient_status` holds for gtol (Jennrich–Sampson from 10·x0 ended FTOL,
        success, at f = 130 where e^(i·x₁) had underflowed: f* = 62)."""
        if (status not in (Status.FTOL, Status.XTOL, Status.FTOL_XTOL)
                or not self.problem.jacobian_is_fd):
            return status, state
        lin, state = self.final_linearization(state)
        if lin is None or lin.colnorms is None:
            return status, state
        unseen, _ = self.problem.unseen_gradient(lin.ev, lin.J)
        blind = (lin.colnorms == 0) & (unseen > 0)
        if not bool(self.xp.any(blind)):
            return status, state
        details = dict(state.details, columns=[int(j) for j in self.xp.nonzero(blind)[0]])
        return Status.FD_ZERO_COLUMN, replace(state, details=details)

    @staticmethod
    def seen(lin: Linearization | None) -> Any:
        """The entries of x whose column of J̃ is nonzero: :meth:`~._base.Method.xtol_bound`'s
        ``seen``; ``None`` where every entry counts (every column norm positive, the usual
        case, ``plain_norms``) or the norms are unknown (an operator J̃)."""
        if lin is None or lin.colnorms is None or lin.plain_norms:
            return None
        return lin.colnorms > 0

    def small_step(self, step: Any, x: Any, bound: float, predicted: float, f: float,
                   f0: float) -> bool:
        r"""The xtol test on ``step`` from ``x``: :math:`\|\mathrm{step}\| \le` ``bound``
        (:meth:`~._base.Method.xtol_bound` at x), and where the model values the step's reduction
        (``predicted``) above both ftol·|f| and ε·f₀ (the rounding of the cost at x₀), every
        entry small beside its own size too, :math:`|\mathrm{step}_i| \le
        \mathrm{xtol}\,(\mathrm{xtol}\,\|x_0\| + |x_i|)`.

        The norm alone lets large entries hide the others: in Bard's fit two parameters ran
        to ∓9.5e8 (their terms cancel) and Gauss-Newton ended XTOL, success, at a step of
        0.072 (5e-11 of ‖x‖) that would move x₁ = 0.14 by a third and lower f from 0.070 to
        0.057 (gradient 0.51).  An entry running to 0 changes by its own size at every step;
        where the step is worth no more than ftol·|f| the norm decides, and so below ε·f₀,
        for a zero-residual fit's model offers all of f at every step."""
        if not self.norm(step) <= bound:
            return False
        eps = float(self.xp.finfo(self.problem.dtype).eps)
        if predicted <= max(self.tol["ftol"] * abs(f), eps * f0):
            return True
        xp, xtol = self.xp, self.tol["xtol"]
        return bool(xp.all(xp.abs(step) <= xtol * (xtol * self.x_scale + xp.abs(x))))

    def final_linearization(self, state: State) -> tuple[Linearization | None, State]:
        """The linearization at ``state.x`` (``None`` where the method holds none) and the
        state: the methods that evaluate J at a new iterate before their next step (Gauss-
        Newton, HIG) hold it; LM and trf evaluate it here, as their result does, and keep it
        in the state they return."""
        return state.data.get("lin"), state

    def gauss_newton_check(self, J: Any, r: Any, f: float, x: Any, status: Status,
                           above: float | None = None) -> Status | None:
        """An ftol/xtol ``status`` reached on steps that are short for a reason of their own
        (HIG's truncation, LM's damping μD²: a short step there proves nothing), kept where
        the Gauss-Newton step d = −J⁺r at ``x`` passes either test: its model reduction
        ½‖Jd‖² ≤ ftol·f, or its length ‖d‖ ≤ :meth:`xtol_bound` (either: at a zero-residual
        minimiser the model offers all of f, at a rank-deficient one the step's noise
        directions are long).  Minimum norm: SVD at NumPy's rank cut ε·max(m, n)·σ_max for a
        dense J, over the singular values at most ``above`` only where it is given (the
        directions HIG dropped; its own tests cover the others), converged CGLS over all of
        an operator's.  ``None`` where neither test holds."""
        xp, tol = self.xp, self.tol
        if isinstance(J, LinearOperator):
            d, info = linalg.gauss_newton_step(J, r, method="cgls")
            if not info.converged:
                return None
            offer, length = 0.5 * self.norm(J @ d) ** 2, self.norm(d)
        else:
            cut = None if above is None else xp.asarray([above], dtype=J.dtype,
                                                         device=B.device(J))
            offer, length = (float(a[0]) for a in gauss_newton_terms(xp, J[None, ...],
                                                                     r[None, ...], cut))
        seen = None if isinstance(J, LinearOperator) else xp.any(J != 0, axis=0)
        if offer <= tol["ftol"] * abs(f) or length <= self.xtol_bound(x, seen):
            return status
        return None

    def terminate(self, state: State) -> Status | None:
        """The tests of a line-search method (Gauss-Newton, HIG): f = 0; the scaled gradient
        ≤ gtol; after an accepted full step (step length 1), |f_k − f_{k+1}| ≤ ftol·|f_k|
        and/or ‖Δx‖ ≤ xtol·(xtol·‖x₀‖ + ‖x‖) (:meth:`xtol_bound`; HIG, whose step is not a
        Gauss-Newton step: each also on the Gauss-Newton step's bounds ``info["gn_predicted"]``
        and ``info["gn_step"]``).  A step the line search shortened (for sufficient decrease,
        or away from non-finite values) is small because the search made it so, not because
        the iterates converged: after one, the change tests alone prove nothing.  The run
        ends successfully there by the gradient test, or by MINPACK's ftol test where the
        method reports the model's reduction for the full step (``info["predicted"]``, Gauss-
        Newton): actual and predicted reductions both ≤ ftol·|f_k| (a step shortened only by
        the rounding of f, at a point where the model offers no more than ftol).  Otherwise a
        change of f within its last bits (ε·|f_k|) is ``NO_PROGRESS``.
        ``state.info`` carries ``f_prev``, ``step_norm``, ``step_length`` and, optionally,
        ``predicted``, ``gn_step`` and ``gn_predicted``; ``state.data`` the iterate before
        the step, ``x_prev``, and the objective at x₀, ``f0`` (:meth:`small_step`)."""
        if state.stop is not None:
            return state.stop
        tol = self.tol
        lin = state.data["lin"]
        status = self.gradient_status(lin, self.gradient_measure(lin), state.details, state.f)
        if status is not None:
            return status
        i = state.info
        if state.accepted and i["step_length"] < 1.0:
            bound = tol["ftol"] * abs(i["f_prev"])
            if abs(i["f_prev"] - state.f) <= bound and i.get("predicted", math.inf) <= bound:
                return Status.FTOL
            # a shortened step that changed f only in its last bits: the line search is stuck
            eps = float(self.xp.finfo(self.problem.dtype).eps)
            if abs(i["f_prev"] - state.f) <= eps * abs(i["f_prev"]):
                return Status.NO_PROGRESS
        elif state.accepted:
            bound_f = tol["ftol"] * abs(i["f_prev"])
            bound_x = self.xtol_bound(state.x, self.seen(lin))
            # MINPACK's ftol test: the model's predicted reduction too (Gauss-Newton's for
            # the full step; a small actual change where the model promised much is no
            # convergence)
            small_f = (abs(i["f_prev"] - state.f) <= bound_f
                       and i.get("predicted", 0.0) <= bound_f)
            # the model's value of the step: Gauss-Newton's for its own, HIG's bound on the
            # Gauss-Newton step's
            predicted = i.get("predicted", i.get("gn_predicted", math.inf))
            small_x = self.small_step(state.x - state.data["x_prev"], state.x, bound_x,
                                      predicted, i["f_prev"], state.data["f0"])
            if "gn_step" in i:  # HIG: the Gauss-Newton step's tests too (hig.gauss_newton_bounds)
                small_f = small_f and i["gn_predicted"] <= bound_f
                small_x = small_x and i["gn_step"] <= bound_x
            return small_change(small_f, small_x)
        return None

