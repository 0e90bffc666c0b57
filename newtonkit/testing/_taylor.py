r"""The Taylor-remainder test of a directional derivative.

For a smooth :math:`F` and a direction :math:`v`, the one-sided remainder
:math:`\|F(x+hv) - F(x) - h\,Jv\|` falls as :math:`h^2`; the symmetric remainder

.. math:: R(h) = \tfrac12 \|F(x+hv) - F(x-hv) - 2h\,Jv\| = \tfrac{h^3}{6}\|F'''[v,v,v]\| + O(h^5)

(the odd part of the one-sided one) falls as :math:`h^3`.  A wrong derivative
:math:`Jv + e` adds :math:`h\|e\|` to both, so at small enough :math:`h` they fall only as
:math:`h` (slope 1 on a log-log plot).  The symmetric form is the one decided on: it separates
a right derivative (slope 3) from a wrong one (slope 1) by two orders instead of one, and it
resolves an error :math:`\|e\|` down to about :math:`\eta^{2/3}` (relative; :math:`\eta` the
accuracy of :math:`F`) instead of :math:`\eta^{1/2}` — in float32 the difference between seeing
a 1e-3 error in one entry of a Jacobian and missing it.  The one-sided slope is reported
alongside.

Steps and rounding floor
------------------------
The steps are :math:`h_k = h_{max} 2^{-k}` down to :math:`h_{min}` (defaults :math:`2^{-4}` and
:math:`\epsilon^{1/3}/4`, relative to a direction of norm :math:`\max(\|x\|, \sqrt n)`): below
:math:`\epsilon^{1/3}` no error that the floor lets through is visible.  A remainder counts
only above the floor

.. math:: \varphi(h) = \eta\,\big(\max(\|F(x+hv)\|, \|F(x-hv)\|) + \|J\|\,\|x\|\big),

plus :math:`10\,\sigma\,` (:math:`\|w\|\cdot` for a projected remainder), where :math:`\sigma`
is the noise of :math:`F` measured along :math:`v` from the fourth difference
the largest of three fourth differences :math:`\|\Delta^4 F\|/\sqrt{70}` at steps
:math:`h_{min}/8` (Moré and Wild's estimate of
computational noise, in its simplest form): it catches rounding that is large relative to the
values, from cancellation inside ``fun`` (:math:`\log\cosh u` near 0 computed as
:math:`\log(e^u + e^{-u}) - \log 2`).  The first term is
the rounding of the two values (:math:`\eta = 10\,\epsilon` by default: the values of a
function with a few dozen operations carry a few ε each; tanh(Ax + b) in float32 measured at
most 2.6 ε) and of the points :math:`x \pm hv` themselves (:math:`\|J\|` estimated from the
products), plus :math:`h\,\text{rtol}\,\|J\|\|v\|`, the rounding allowed in the computed
:math:`Jv` itself (the bound of the cross-checks; computed with cancellation, :math:`Jv` carries
an error of that size, which the remainder shows as a slope-1 term).  The slope is the
least-squares slope of
:math:`\log R` on :math:`\log h` over the three smallest steps of the last run of at least three
consecutive steps above the floor and inside the Taylor regime, :math:`R(h) \le 0.1\,h\,\|J\|
\|v\|` (beyond it ``F`` may saturate, and :math:`R(h) \approx h\|Jv\|` falls with slope 1 for
a right derivative; a remainder above that line at every step is a derivative wrong by more than
10 %, which fails): the asymptotic end, where the :math:`h\|e\|` term of a wrong
derivative dominates longest.  Slope below 2 fails.  With fewer than three steps above the floor
the remainder is rounding at every step: the derivative agrees to within the floor and the
check passes (the report says so and gives the bound on :math:`\|e\|` this implies).

Asymptotic regime
-----------------
The slope reads 3 only where the :math:`h^3` term dominates the remainder of a right
derivative.  Instrumented float32 false alarms (hypothesis soak; ``A`` of norm 5–10, ``v`` of
norm 2–3) were all of one kind, and not rounding: the same remainders recomputed in float64
agree to 3 digits, and below the floor they keep falling as :math:`h^3`.  The cubic coefficient
:math:`c_3` of the signed remainder :math:`\rho(h) = c_3 h^3 + c_5 h^5 + \dots` happened to be
small (the projection :math:`\langle w, F^{(3)}[v,v,v]\rangle` cancels, or :math:`c_5` is
anti-aligned with :math:`c_3`), so at the top steps (:math:`h\|Av\| \approx 1`) the
:math:`c_5 h^5` term is as large as :math:`c_3 h^3`, :math:`\|\rho\|` dips, and with the
smaller steps under the floor the window's slope came out 0.8–1.9.  The
:math:`h\|J\|\|v\|` criterion cannot see this (:math:`R/(h\|J\|\|v\|)` was about 1e-3 there).
The :math:`h^5` term can be measured without the derivative: for
:math:`\rho(h) = -e h + c_3 h^3 + c_5 h^5`,

.. math:: \rho(h) - 10\,\rho(h/2) + 16\,\rho(h/4) = \tfrac{45}{64}\, c_5 h^5

exactly (the linear term, any derivative error :math:`e`, and the cubic term cancel), with
rounding at most :math:`\varphi(h) + 10\varphi(h/2) + 16\varphi(h/4)`.  A step whose
:math:`h^5` term so measured, less that rounding, exceeds ``QUINTIC`` = 1/4 of :math:`R(h)` is
left out of the window (the two smallest steps have no such estimate and stay in).  Being
independent of the claimed derivative, the criterion treats a right and a wrong derivative
alike: it costs a bug only where the bug's window lies where :math:`F` is not yet cubic along
:math:`v`, where the slope could not be trusted anyway.  Measured: 0 false alarms in 20,000
seeded float32 residual and objective cases each (25 and 12 before), float32 detection of
one-entry 1e-3 Jacobian errors unchanged (docs/testing.md).  Rejected alternatives: raising the
floor (``CLEAR`` > 1) drops the same windows only by dropping the planted float32 bug's too;
lowering it to measured noise (``noise`` = ε) lets rounding into the window of scalar
objectives (36 of 20,000 log-cosh cases failed, slopes near 0); a fit
:math:`R = a h + c h^3` over the window or a test that the remainder keeps falling linearly
below it removed none or a third of the false alarms (the data are not of that form).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import _backend as B

__all__ = ["Remainders", "steps", "remainders", "THRESHOLD"]

#: A symmetric remainder whose slope is below this fails (right: 3, wrong: 1).
THRESHOLD = 2.0
_WINDOW = 3
#: Multiple of the measured noise σ below which a remainder counts as rounding.
SIGMAS = 10.0
#: The window's remainders exceed the floor this many times.
CLEAR = 1.0
#: Steps whose remainder exceeds this fraction of ``h·‖J‖‖v‖`` are outside the Taylor regime
#: (``Remainders.window``).
TAYLOR = 0.1
#: Steps where the resolved h⁵ term of ``F`` along ``v`` exceeds this fraction of the remainder
#: are not yet in the asymptotic regime of the symmetric remainder (``Remainders.window``).
QUINTIC = 0.25


def steps(eps: float, h_max: float | None = None, h_min: float | None = None) -> list[float]:
    """``h_max·2^-k`` down to ``h_min`` (defaults ``2^-4`` and ``ε^{1/3}/4``)."""
    h_max = 2.0**-4 if h_max is None else float(h_max)
    h_min = eps ** (1.0 / 3.0) / 4.0 if h_min is None else float(h_min)
    if not 0.0 < h_min <= h_max:
        raise ValueError(f"steps need 0 < h_min <= h_max, got h_min = {h_min}, h_max = {h_max}")
    out = [h_max]
    while out[-1] / 2.0 >= h_min:
        out.append(out[-1] / 2.0)
    return out


@dataclass
class Remainders:
    """Remainders ``R`` (symmetric), ``R1`` (one-sided) and floors ``phi`` at steps ``h`` for
    one direction, with ``|Jv|``; ``verdict()`` reads the slope off them."""

    h: list[float]
    R: list[float]
    R1: list[float]
    phi: list[float]
    jv_norm: float
    scale: float = math.inf  # ‖J‖·‖v‖ (·‖w‖): the size of the linear term per unit h
    #: the h⁵ term of the remainder at each step net of its rounding (``inf`` where unknown:
    #: none at the two smallest steps; see ``remainders``)
    Q5: list[float] | None = None

    def above(self, k: int) -> bool:
        return math.isfinite(self.R[k]) and self.R[k] > self.phi[k]

    def window(self) -> list[int]:
        """Indices of the three smallest steps in the last run of >= 3 steps above the floor
        (``CLEAR`` times) and inside the Taylor regime, ``R(h) <= TAYLOR·h·‖J‖‖v‖`` (empty
        when there is none).  Beyond it the step is too large for a local test: where ``F``
        saturates (tanh at a large argument), ``F(x ± hv)`` flattens and ``R(h) ≈ h‖Jv‖``
        falls with slope 1 although the derivative is right.  Steps whose measured h⁵ term
        (``Q5``, net of rounding) exceeds ``QUINTIC·R`` are left out too: not yet asymptotic."""
        above = [k for k in range(len(self.h))
                 if math.isfinite(self.R[k]) and self.R[k] > CLEAR * self.phi[k]
                 and self.R[k] <= TAYLOR * self.h[k] * self.scale
                 and (self.Q5 is None or not self.Q5[k] > QUINTIC * self.R[k])]
        run: list[int] = []
        best: list[int] = []
        for k in above:
            run = run + [k] if run and k == run[-1] + 1 else [k]
            if len(run) >= _WINDOW:
                best = run[-_WINDOW:]
        return best

    def slope(self, idx: list[int], one_sided: bool = False) -> float:
        vals = self.R1 if one_sided else self.R
        pts = [(math.log(self.h[k]), math.log(vals[k])) for k in idx if vals[k] > 0]
        if len(pts) < 2:  # pragma: no cover - the window has three points
            return math.nan
        mx = sum(p[0] for p in pts) / len(pts)
        my = sum(p[1] for p in pts) / len(pts)
        sxx = sum((p[0] - mx) ** 2 for p in pts)
        return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx

    def describe(self) -> tuple[float, str]:
        """``(slope, text)``: the slope over the window (``nan`` if unresolved) and what it
        means, with the size of the derivative error it implies."""
        idx = self.window()
        if not idx:
            finite = [k for k in range(len(self.h)) if math.isfinite(self.R[k])]
            if not finite:
                return math.nan, ("the remainder was not finite at any step x ± h v (fun "
                                  "there, or the derivative)")
            if all(self.above(k) for k in finite):
                # above the floor at every step and no window: a derivative error when the
                # remainder is large against the linear term (gross) or falls as h (slope
                # ≥ 0.5) clearly above the floor; a flat remainder just above the floor is
                # rounding the floor did not cover
                idx = finite[-_WINDOW:]
                s = self.slope(idx) if len(idx) >= 2 else 0.0
                k = idx[-1]
                err = self.R[k] / self.h[k]
                if s >= THRESHOLD:  # falling as h³: the cubic term, h too large for F's
                    # curvature even at h_min (‖A‖‖v‖h ≳ 1), not a linear error term
                    return s, (f"slope {s:.2f} over the smallest steps, remainder above "
                               f"{TAYLOR:g}·h·‖J‖‖v‖ at every step: steps too large for the "
                               f"curvature of fun (pass a smaller h_min to resolve)")
                gross = all(self.R[j] > TAYLOR * self.h[j] * self.scale for j in idx)
                linear = s >= 0.5 and all(self.R[j] > 2.0 * self.phi[j] for j in idx)
                if gross or linear:
                    return min(s, 1.0), (f"remainder above the floor at every step, falling "
                                         f"as h^{s:.2f}: R(h)/h = {err:.3g} "
                                         f"({err / max(self.jv_norm, 1e-300):.3g} of ‖Jv‖) at "
                                         f"h = {self.h[k]:.3g}")
                # flat and within twice the floor: rounding the floor underestimated, not a
                # derivative error (that would fall as h)
                bound = min((self.R[j] + self.phi[j]) / self.h[j] for j in finite)
                return math.nan, (f"remainder flat (slope {s:.2f}) just above the rounding "
                                  f"floor: ‖error of Jv‖ <= {bound:.2g} "
                                  f"({bound / max(self.jv_norm, 1e-300):.2g} relative)")
            bound = min((self.R[k] + self.phi[k]) / self.h[k] for k in finite)
            return math.nan, (f"remainder at rounding level at every step: ‖error of Jv‖ <= "
                              f"{bound:.2g} ({bound / max(self.jv_norm, 1e-300):.2g} relative)")
        s = self.slope(idx)
        k = idx[-1]
        err = self.R[k] / self.h[k]  # ≈ ‖e‖ when the linear term dominates, an upper bound else
        text = (f"slope {s:.2f} over h = {self.h[idx[0]]:.3g} … {self.h[k]:.3g} (one-sided "
                f"{self.slope(idx, one_sided=True):.2f}); R(h)/h = {err:.3g} "
                f"({err / max(self.jv_norm, 1e-300):.3g} of ‖Jv‖) at the smallest")
        if s < 0.5:
            text += ("; the remainder stops falling: fun may be noisier than the floor assumes "
                     "(pass noise=) or not smooth here")
        return s, text


def remainders(F: Callable[[Any], Any], xp: Any, x: Any, v: Any, jv: Any, hs: list[float],
               noise: float, norm_J: float, values: dict, w: Any = None,
               rtol: float = 0.0) -> Remainders:
    r"""Symmetric and one-sided remainders of ``F`` (flat → flat) at ``x`` along ``v`` for the
    claimed derivative ``jv = J v``, or with ``w`` of :math:`\langle w, F\rangle` for the
    claimed ``jv = ⟨Jᵀw, v⟩`` (a float); the floor of a projected remainder is ``‖w‖`` times
    that of ``F``.  ``values`` caches ``F(x + s v)`` by ``s``, shared between the derivatives
    checked on the same function and direction.  ``rtol·‖J‖·‖v‖`` (times ``‖w‖``) is the
    rounding allowed in the computed ``jv`` itself: it enters the remainder as ``h`` times it."""

    def at(s: float) -> Any:
        if s not in values:
            values[s] = F(x + s * v) if s != 0.0 else F(x)
        return values[s]

    def proj(a: Any) -> Any:
        return a if w is None else B.vdot(xp, w, a)

    def size(a: Any) -> float:
        return B.norm(xp, a) if w is None else abs(a)

    f0 = proj(at(0.0))
    xnorm, vnorm = B.norm(xp, x), B.norm(xp, v)
    wnorm = 1.0 if w is None else B.norm(xp, w)
    # measured noise: a 4th difference at tiny steps is noise only (std √70·σ for iid noise);
    # the largest of three (offsets −3…1, −2…2, −1…3) so that one small by chance does not
    # hide it.  Two spacings, h_min/8 and h_min: rounding of nearby arguments can be
    # correlated (exp and log1p return the same or adjacent values when the argument moves
    # by less than its ulp), so noise that is invisible at the tiny spacing shows at h_min,
    # where the smooth part of a 4th difference, h_min⁴·F ≈ ε^{4/3}·F, is still far
    # below the rounding.
    sigma = 0.0
    for d in (hs[-1] / 8.0, hs[-1]):
        g = [at(j * d) if j else at(0.0) for j in range(-3, 4)]
        sigma = max([sigma] + [B.norm(xp, g[i] - 4.0 * g[i + 1] + 6.0 * g[i + 2]
                                      - 4.0 * g[i + 3] + g[i + 4]) for i in range(3)])
    sigma /= math.sqrt(70.0)
    out = Remainders(hs, [], [], [], size(jv), wnorm * norm_J * vnorm, [])
    rho = []
    for h in hs:
        fp, fm = at(h), at(-h)
        rho.append((proj(fp) - proj(fm) - (2.0 * h) * jv) / 2.0)
        r = size(rho[-1])
        r1 = size(proj(fp) - f0 - h * jv)
        phi = wnorm * (noise * (max(B.norm(xp, fp), B.norm(xp, fm)) + norm_J * xnorm)
                       + SIGMAS * sigma + h * rtol * norm_J * vnorm)
        out.R.append(r if math.isfinite(r) else math.nan)
        out.R1.append(r1 if math.isfinite(r1) else math.nan)
        out.phi.append(phi if math.isfinite(phi) else math.inf)
    # ρ_k − 10ρ_{k+1} + 16ρ_{k+2} = (45/64)·c₅h_k⁵ exactly for ρ(h) = −e·h + c₃h³ + c₅h⁵:
    # the linear (derivative error) and cubic terms cancel, so it does not depend on jv
    for k in range(len(hs)):
        if k + 2 < len(hs):
            q = size(rho[k] - 10.0 * rho[k + 1] + 16.0 * rho[k + 2])
            noise_q = out.phi[k] + 10.0 * out.phi[k + 1] + 16.0 * out.phi[k + 2]
            out.Q5.append(64.0 / 45.0 * (q - noise_q) if math.isfinite(q) else math.inf)
        else:
            out.Q5.append(-math.inf)
    return out
