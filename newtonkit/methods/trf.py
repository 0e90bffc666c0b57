r"""Trust-region reflective least squares under bounds :math:`l \le x \le u` (``method="trf"``).

The algorithm of SciPy's ``least_squares(method="trf", tr_solver="exact")`` (Branch, Coleman
and Li 1999, "A subspace, interior, and conjugate gradient method for large-scale
bound-constrained minimization problems", SIAM J. Sci. Comput. 21(1):1-23; Moré 1978 for the
trust-region subproblem), written for any array namespace.

First-order optimality of :math:`\min \tfrac12\|r(x)\|^2` on the box is :math:`v \odot g = 0`
with :math:`g = J^T r` and Coleman and Li's :math:`v` (:func:`newtonkit._bounds.cl_scaling`:
the distance to the bound the antigradient points at, 1 when that bound is infinite).  With
:math:`d = \sqrt{v}\,/D` (:math:`D` the Jacobian scaling: the running maximum of the column
norms with ``scaling=True``, :math:`1/s` for ``scaling=s`` (SciPy's ``x_scale``), else 1; the
entries of :math:`v` with :math:`\partial v = 0` are not scaled), the model in the "hat"
variables :math:`p = d \odot \hat p` is

.. math::  m(\hat p) = \tfrac12 \|\hat J \hat p + r\|^2 + \tfrac12 \hat p^T C \hat p,\qquad
           \hat J = J\,\mathrm{diag}(d),\quad C = \mathrm{diag}(g \odot \partial v / D),

(:math:`C \ge 0`: the Newton step of :math:`v \odot g = 0`).  Each Jacobian gets one SVD of
:math:`[\hat J; C^{1/2}]` (just :math:`\hat J` without bounds); each trial solves :math:`\min
m(\hat p)`, :math:`\|\hat p\| \le \Delta` by Moré's iteration on the LM parameter (to 1 %), and
takes the best of three steps for the model:
the trust-region step if it stays in the box, else (a) that step cut back to
:math:`\theta` times the way to the first bound hit, (b) the reflection of the rest of it off
that bound, minimised along the reflected ray, (c) the scaled steepest descent
:math:`-d\odot\hat g` minimised within the region and :math:`\theta` times the way to the box,
:math:`\theta = \max(0.995, 1 - \|v\odot g\|_\infty)`.  Every trial point is strictly inside the
box (one ulp off a bound at least), so iterates never leave it.  ρ = ared/pred: Δ ← ¼‖p̂‖ when
ρ < ¼, Δ ← 2Δ when ρ > ¾ and the step reached the region's edge; accepted when ared > 0.

Termination (SciPy's): ``gtol``: :math:`\|v\odot g\|_\infty < \mathrm{gtol}`; ``ftol``:
ared < ftol·f and ρ > ¼; ``xtol``: :math:`\|p\| < \mathrm{xtol}(\mathrm{xtol} + \|x\|)`.  At a
``gtol`` stop every free variable has :math:`|g_i| < \mathrm{gtol}` and every variable
:math:`|(x - P(x - g))_i| = \min(\mathrm{dist}_i, |g_i|) \le \sqrt{\mathrm{dist}_i|g_i|} <
\sqrt{\mathrm{gtol}}` (the projected gradient, :math:`P` the projection on the box).

After a last accepted step (a step test met, or the evaluation budget spent) J is evaluated at
the new point and ``gtol`` tested first, as SciPy does (that J counts in ``njev``).

Without bounds (all infinite) :math:`v = 1`, :math:`C = 0`: the plain trust-region
Levenberg-Marquardt of SciPy's ``trf``.

On NumPy float64 the method does SciPy's floating-point operations: the SVD of the same
matrix (no QR first), the same sums in the same order, :math:`D^{-1}` multiplied, so every
evaluated point, the result and the counts equal SciPy trf's bit for bit
(``tests/test_bounds.py``).  That matters because rounding decides the path where the Jacobian
is rank-deficient (biggs_exp6 from its symmetric start; rank-one problems) and on long runs
(meyer), and the final cost there differs by far more than rounding.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from .. import _backend as B
from .._bounds import cl_scaling, step_to_bound, strictly_feasible
from .._status import Status
from ..problems._common import BudgetExhausted
from ._base import Option, State, register, small_change, stop
from ._lsq import DIFF_STEP, LeastSquaresMethod

__all__ = ["TrustRegionReflective", "MAX_NONFINITE_TRIALS"]

#: Consecutive non-finite trial points after which the run stops (status NONFINITE).
MAX_NONFINITE_TRIALS = 20


def _scaling(name: str, v: Any) -> Any:
    """The ``scaling`` option: a bool, or an array of scales ``s`` (checked on first use)."""
    if isinstance(v, bool) or "bool" in type(v).__name__:
        return bool(v)
    if not hasattr(v, "shape"):
        raise ValueError(f"option {name!r} must be a bool or an array of positive numbers, "
                         f"got {v!r}")
    return v


@register
class TrustRegionReflective(LeastSquaresMethod):
    """Trust-region reflective (``method="trf"``; module docstring)."""

    name = "trf"
    aliases = ("trust-region-reflective",)
    options = {"scaling": Option(False, _scaling, "True: D = running max of the Jacobian's "
                                                  "column norms (SciPy's x_scale='jac'); an "
                                                  "array s > 0: D = 1/s (x_scale=s)"),
               "diff_step": DIFF_STEP}
    default_maxiter = staticmethod(lambda n: None)
    default_maxfev = staticmethod(lambda n: 100 * n)

    @classmethod
    def bounded(cls, opts: dict) -> type:
        return cls

    def __init__(self, problem: Any, opts: dict, tol: dict) -> None:
        super().__init__(problem, opts, tol)
        xp = self.xp
        self.eps = float(xp.finfo(problem.dtype).eps)
        self.tiny = float(xp.finfo(problem.dtype).smallest_normal)

    def _box(self, x: Any) -> tuple[Any, Any]:
        if self.bounds is not None:
            return self.bounds
        inf = self.xp.full(x.shape, math.inf, dtype=x.dtype, device=B.device(x))
        return -inf, inf

    def init(self, x0: Any) -> State:
        lb, ub = self.lb, self.ub = self._box(x0)
        scaling, xp = self.opts["scaling"], self.xp
        if not isinstance(scaling, bool):  # x_scale = s: D⁻¹ = s, D = 1/s (fixed)
            s = xp.asarray(scaling, dtype=x0.dtype, device=B.device(x0))
            if s.shape != x0.shape or not bool(xp.all(s > 0) & xp.all(s < math.inf)):
                raise ValueError(f"option 'scaling' must be a bool or {x0.shape[0]} positive "
                                 f"finite numbers (x_scale), got {scaling!r}")
            self.fixed_scale = (s, 1.0 / s)
        if self.bounds is not None:  # SciPy: x0 on a bound starts 1e-10 (relative) inside
            x0 = strictly_feasible(self.xp, x0, lb, ub, rstep=1e-10)
        ev = self.problem.evaluate(x0)
        data = {"ev": ev, "lin": None, "model": None, "scale_inv": None, "delta": None,
                "alpha": 0.0, "nonfinite": 0, "radius": [], "ratio": []}
        state = State(x0, ev.f, data=data)
        if math.isfinite(ev.f):
            data["lin"] = self.linearize(ev, densify=True)
            state.g = data["lin"].g
        return state

    def terminate(self, state: State) -> Status | None:
        return state.stop

    # -- the scaled model at a new iterate ---------------------------------------------------
    def _model(self, x: Any, d: dict) -> dict | Status:
        """The scaled model at ``x``; fills the next state's data ``d`` (``lin``,
        ``scale_inv``, the first ``delta``)."""
        xp = self.xp
        lin = d["lin"]
        if lin is None:
            lin = d["lin"] = self.linearize(d["ev"], densify=True)
        g, J = lin.g, lin.J
        if not self.finite(g):
            return Status.NONFINITE
        scale, scale_inv = self._scale(lin, d["scale_inv"])  # D⁻¹ and D
        d["scale_inv"] = scale_inv
        v, dv = cl_scaling(xp, x, g, self.lb, self.ub)
        gnorm = self.inf_norm(g * v)
        if gnorm < self.tol["gtol"]:  # the run stops here: no factorisation (SciPy's order)
            return {"g": g, "gnorm": gnorm}
        v = xp.where(dv != 0, v * scale_inv, v)
        dd = xp.sqrt(v) * scale
        diag_h = g * dv * scale
        g_h = dd * g
        J_h = J * dd[None, :]
        m, n = J.shape
        # A = [Ĵ; C^½] (Ĵ without bounds) and [r; 0], the matrix SciPy factors; A is built
        # column-major (as the transpose of [Ĵᵀ, C^½]), LAPACK's layout: no copy in the SVD
        blocks, r = [J_h.T], lin.r
        if self.bounds is not None:
            blocks.append(xp.eye(n, dtype=J.dtype, device=B.device(J)) * xp.sqrt(diag_h)[:, None])
            r = xp.concat([r, xp.zeros_like(g)])
        A = xp.concat(blocks, axis=1).T
        # Its SVD in SciPy's operations (Uᵀ[r; 0] as U.T @ r, U column-major as LAPACK
        # returns it): the same rounding, so the same path wherever rounding decides it
        # (rank-deficient Ĵ, long runs; module docstring).
        U, s, Vt = B.svd(xp, A)
        uf = U.T @ r
        if d["delta"] is None:
            delta = self.norm(x * scale_inv / xp.sqrt(v))
            d["delta"] = delta if delta > 0 and math.isfinite(delta) else 1.0
        return {"g": g, "gnorm": gnorm, "d": dd, "diag_h": diag_h, "g_h": g_h, "J_h": J_h,
                "s": s, "V": Vt.T, "uf": uf, "m": m, "n": n,
                "theta": max(0.995, 1.0 - gnorm)}

    def _scale(self, lin: Any, old: Any) -> tuple[Any, Any]:
        """``(D⁻¹, D)``, each as SciPy computes it (``scale``, ``scale_inv``): 1; the running
        maximum of the column norms (``scaling=True``; a zero column counts 1 at the start);
        or ``1/s, s`` for ``scaling=s``.  The norms are the linearization's: SciPy's sums of
        squares, or where those overflow or underflow, MINPACK's scaled ones (SciPy's would be
        inf, and D⁻¹ = 0 then turned the model's SVD to NaN)."""
        xp, scaling = self.xp, self.opts["scaling"]
        J = lin.J
        if scaling is True:
            cn = lin.colnorms
            inv = xp.where(cn > 0, cn, xp.ones_like(cn)) if old is None else xp.maximum(old, cn)
            return 1.0 / inv, inv
        if scaling is False:
            one = xp.ones(J.shape[1], dtype=J.dtype, device=B.device(J))
            return one, one
        return self.fixed_scale

    # -- one trial ---------------------------------------------------------------------------
    def step(self, state: State) -> State:
        xp, tol = self.xp, self.tol
        d = dict(state.data)  # the next state's data: the input state is never changed
        M = d["model"]
        if M is None:
            M = self._model(state.x, d)
            if isinstance(M, Status):
                return stop(state, M)
            d["model"] = M
            state = State(state.x, state.f, M["g"], accepted=False, data=d, info=state.info)
            details: dict = {}
            status = self.gradient_status(d["lin"], M["gnorm"] if M["gnorm"] < tol["gtol"]
                                          else math.inf, details, state.f)
            if status is not None:
                return stop(state, status, details)
        x, f, delta = state.x, state.f, d["delta"]
        p_h, alpha = _trust_region_step(xp, M, delta, d["alpha"], self.eps)
        step, step_h, pred = self._select_step(x, M, p_h, delta)
        x_new = strictly_feasible(xp, x + step, self.lb, self.ub)
        ev = self.problem.evaluate(x_new)
        step_h_norm = self.norm(step_h)
        new = dict(d)
        if not math.isfinite(ev.f):
            new["delta"] = 0.25 * step_h_norm
            new["nonfinite"] = d["nonfinite"] + 1
            out = State(x, f, state.g, accepted=False, info=state.info, data=new)
            if new["nonfinite"] >= MAX_NONFINITE_TRIALS:
                out.stop = Status.NONFINITE
            return out
        new["nonfinite"] = 0
        ared = f - ev.f
        if pred > 0:
            ratio = ared / pred
        else:
            ratio = 1.0 if pred == ared == 0 else 0.0
        delta_new = delta
        if ratio < 0.25:
            delta_new = 0.25 * step_h_norm
        elif ratio > 0.75 and step_h_norm > 0.95 * delta:
            delta_new = 2.0 * delta
        step_norm = self.norm(step)
        small_f = ared < tol["ftol"] * f and ratio > 0.25
        small_x = step_norm < tol["xtol"] * (tol["xtol"] + self.norm(x))
        code = small_change(small_f, small_x)
        to_x = step_norm / step_h_norm if step_h_norm > 0 else 1.0  # ‖p‖/‖p̂‖
        if code is None and not delta_new * to_x > self.eps * self.norm(x):
            code = Status.NO_PROGRESS  # the region shrank below the rounding of x
        if code is None:
            new["alpha"] = alpha * (delta / delta_new) if delta_new > 0 else alpha
            new["delta"] = delta_new
        else:
            new["alpha"] = alpha
        new["radius"] = d["radius"] + [new["delta"]]
        new["ratio"] = d["ratio"] + [ratio]
        info = {"radius": new["delta"], "ratio": ratio}
        if ared > 0:
            new.update(ev=ev, lin=None, model=None)
            out = State(ev.x, ev.f, None, accepted=True, info=info, data=new)
            budget = getattr(self.problem, "maxfev", None)
            if code is not None or (budget is not None and self.problem.nfev >= budget):
                code = self._last_gradient_test(out, code)
        else:
            out = State(x, f, state.g, accepted=False, info=state.info, data=new)
        out.stop = code
        return out

    def _last_gradient_test(self, state: State, code: Status | None) -> Status | None:
        """SciPy's order at a last accepted step (a step test met, or the budget spent): J at
        the new point, then the ``gtol`` test first (``GTOL``, or ``ZERO`` at a zero residual,
        where it holds; else ``code``)."""
        d = state.data
        try:
            lin = d["lin"] = self.linearize(d["ev"], densify=True)
        except BudgetExhausted:
            return code
        state.g = lin.g
        if not self.finite(lin.g):
            return code
        v, _ = cl_scaling(self.xp, state.x, lin.g, self.lb, self.ub)
        gnorm = self.inf_norm(lin.g * v)
        status = self.gradient_status(lin, gnorm if gnorm < self.tol["gtol"] else math.inf, {},
                                      state.f)
        return status if status in (Status.GTOL, Status.ZERO) else code

    def _select_step(self, x: Any, M: dict, p_h: Any, delta: float) -> tuple[Any, Any, float]:
        """The best of the trust-region step (cut back into the box), its reflection and the
        scaled steepest descent, for the model (module docstring); ``(p, p̂, −m(p̂))``."""
        xp, lb, ub, dd, theta = self.xp, self.lb, self.ub, M["d"], M["theta"]
        p = dd * p_h
        if bool(xp.all((x + p >= lb) & (x + p <= ub))):
            return p, p_h, -self._quadratic(M, p_h)
        t_bound, hits = step_to_bound(xp, x, p, lb, ub)
        r_h = xp.where(hits != 0, -p_h, p_h)  # reflected off the bound(s) first hit
        r = dd * r_h
        p, p_h = p * t_bound, p_h * t_bound
        x_on = x + p
        to_tr = _ray_to_sphere(xp, p_h, r_h, delta)
        to_bound, _ = step_to_bound(xp, x_on, r, lb, ub)
        r_stride = min(to_bound, to_tr)
        if r_stride > 0:
            lo = (1 - theta) * t_bound / r_stride
            hi = theta * to_bound if r_stride == to_bound else to_tr
        else:
            lo, hi = 0.0, -1.0
        r_value = math.inf
        if lo <= hi:
            a, b, c = self._quadratic_1d(M, r_h, p_h)
            t, r_value = _minimize_1d(a, b, lo, hi, c)
            r_h = p_h + t * r_h
            r = dd * r_h
        p, p_h = theta * p, theta * p_h
        p_value = self._quadratic(M, p_h)
        ag_h = -M["g_h"]
        ag = dd * ag_h
        to_tr = delta / self.norm(ag_h)
        to_bound, _ = step_to_bound(xp, x, ag, lb, ub)
        a, b, _ = self._quadratic_1d(M, ag_h, None)
        t, ag_value = _minimize_1d(a, b, 0.0, theta * to_bound if to_bound < to_tr else to_tr)
        if p_value < r_value and p_value < ag_value:
            return p, p_h, -p_value
        if r_value < p_value and r_value < ag_value:
            return r, r_h, -r_value
        return t * ag, t * ag_h, -ag_value

    def _quadratic(self, M: dict, s: Any) -> float:
        """:math:`\\tfrac12(\\|\\hat J s\\|^2 + s^TCs) + \\hat g^Ts`."""
        xp = self.xp
        Js = M["J_h"] @ s
        return 0.5 * (B.vdot(xp, Js, Js) + B.vdot(xp, s * M["diag_h"], s)) + B.vdot(
            xp, M["g_h"], s)

    def _quadratic_1d(self, M: dict, s: Any, s0: Any) -> tuple[float, float, float]:
        """The model along ``s0 + t s`` as ``a t² + b t + c``."""
        xp, J, C, g = self.xp, M["J_h"], M["diag_h"], M["g_h"]
        Js = J @ s
        a = 0.5 * (B.vdot(xp, Js, Js) + B.vdot(xp, s * C, s))
        b = B.vdot(xp, g, s)
        if s0 is None:
            return a, b, 0.0
        J0 = J @ s0  # the sums in SciPy's order (build_quadratic_1d): the same rounding
        b += B.vdot(xp, J0, Js)
        b += B.vdot(xp, s0 * C, s)
        c = 0.5 * B.vdot(xp, J0, J0) + B.vdot(xp, g, s0)
        c += 0.5 * B.vdot(xp, s0 * C, s0)
        return a, b, c

    def final_linearization(self, state: State) -> tuple[Any, State]:
        """J at the last accepted point, evaluated and counted as SciPy's trf does for its
        result (``None`` where that would exceed maxfev); kept for :meth:`finish`."""
        d = state.data
        if d["lin"] is not None or not math.isfinite(state.f):
            return d["lin"], state
        try:
            lin = self.linearize(d["ev"], densify=True)
        except BudgetExhausted:
            return None, state
        return lin, dataclasses.replace(state, data=dict(d, lin=lin))

    def finish(self, state: State) -> dict:
        d = state.data
        lin, _ = self.final_linearization(state)
        # "jacobian": J̃ at x (least_squares reuses it rather than evaluating J once more)
        return {"jac": None if lin is None else lin.g, "y": d["ev"].y,
                "jacobian": None if lin is None else lin.J,
                "trust_radius": list(d["radius"]), "gain_ratios": list(d["ratio"])}


def _trust_region_step(xp: Any, M: dict, delta: float, alpha: float,
                       eps: float) -> tuple[Any, float]:
    r"""Moré's solution of :math:`\min \|[\hat J; C^{1/2}]\hat p + [r; 0]\|`, :math:`\|\hat
    p\| \le \Delta` from the SVD :math:`U \mathrm{diag}(s) V^T`, :math:`u = U^T[r; 0]`:
    :math:`\hat p(\alpha) = -V \frac{s u}{s^2 + \alpha}` with α = 0 when that fits, else α
    from Newton's iteration on :math:`\|\hat p(\alpha)\| = \Delta` (to 1 %, at most 10
    steps; Moré 1978), the step then put on the sphere.  Returns ``(p̂, α)``."""
    s, uf, V, m, n = M["s"], M["uf"], M["V"], M["m"], M["n"]
    suf = s * uf
    full_rank = m >= n and float(xp.min(s)) > eps * m * float(xp.max(s))
    if full_rank:
        p = -(V @ (uf / s))
        if B.norm(xp, p) <= delta:
            return p, 0.0

    def phi(a: float) -> tuple[float, float]:
        den = s * s + a
        q = suf / den
        pn = B.norm(xp, q)
        if not pn > 0:  # ‖p̂‖ underflowed: nothing left to iterate on (the loop stops)
            return pn - delta, 0.0
        with np.errstate(over="ignore"):  # SciPy's Σ suf²/den³ (its rounding) ...
            dphi = -float(xp.sum(suf * suf / den ** 3)) / pn
        if not dphi < 0:  # ... unless den³ overflowed (s ≳ 1e50): Σ q²/den, the same sum
            dphi = -float(xp.sum(q * q / den)) / pn
        return pn - delta, dphi

    upper = B.norm(xp, suf) / delta
    if full_rank:
        f0, df0 = phi(0.0)
        lower = -f0 / df0 if df0 < 0 else 0.0
    else:
        lower = 0.0
    if not full_rank and alpha == 0:
        alpha = max(0.001 * upper, math.sqrt(lower * upper))
    for _ in range(10):
        if alpha < lower or alpha > upper:
            alpha = max(0.001 * upper, math.sqrt(lower * upper))
        fa, dfa = phi(alpha)
        if not dfa < 0:  # a zero step (or underflow): nothing left to iterate on
            break
        if fa < 0:
            upper = alpha
        ratio = fa / dfa
        lower = max(lower, alpha - ratio)
        alpha -= (fa + delta) * ratio / delta
        if abs(fa) < 0.01 * delta:
            break
    p = -(V @ (suf / (s * s + alpha)))
    pn = B.norm(xp, p)
    return (p * (delta / pn) if pn > 0 else p), alpha


def _ray_to_sphere(xp: Any, x: Any, s: Any, delta: float) -> float:
    """The positive root ``t`` of ``‖x + t s‖ = Δ`` (``x`` inside the sphere)."""
    a = B.vdot(xp, s, s)
    b = B.vdot(xp, x, s)
    c = min(B.vdot(xp, x, x) - delta * delta, 0.0)
    if a == 0:
        return math.inf
    q = -(b + math.copysign(math.sqrt(b * b - a * c), b))
    return max(q / a, c / q) if q != 0 else math.inf


def _minimize_1d(a: float, b: float, lo: float, hi: float, c: float = 0.0) -> tuple[float, float]:
    """Minimiser and minimum of ``a t² + b t + c`` on ``[lo, hi]``."""
    ts = [lo, hi]
    if a != 0 and lo < -0.5 * b / a < hi:
        ts.append(-0.5 * b / a)
    vals = [t * (a * t + b) + c for t in ts]
    i = min(range(len(ts)), key=vals.__getitem__)
    return ts[i], vals[i]
