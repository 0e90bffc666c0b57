r"""Moré's trust-region rules for Levenberg-Marquardt, written once for one problem or many.

Every function here takes ``ops``: an array namespace (arrays of shape ``(B,)``, one entry per
problem: the batched driver, :mod:`newtonkit._batch`) or :data:`SCALAR` (Python floats: the
single-problem :class:`~newtonkit.methods.levenberg_marquardt.LevenbergMarquardt`).  Only
elementwise arithmetic, comparisons combined with ``&`` and ``|``, and ``ops.where``,
``ops.minimum``, ``ops.maximum``, ``ops.isfinite``, ``ops.logical_not``, ``ops.any`` are used, so
both run the same lines.

With ``f = ½‖r‖²`` at ``x``, the trial ``f1`` at ``x + p``, the scaled step norm
``pnorm = ‖Dp‖``, ``jp2 = ‖J̃p‖²`` and λ (``par``):

* ``actred = 1 − f1/f`` (−1 when ``f1`` is not finite or ≥ 100 f), ``prered = (jp2 +
  2λ‖Dp‖²)/(2f)``, ``ratio = actred/prered``;
* ratio ≤ ¼: Δ ← temp·min(Δ, ‖Dp‖/0.1), λ ← λ/temp with temp = ½, or MINPACK's
  interpolation when ``actred < 0``, at least 0.1; ratio ≥ ¾ or λ = 0: Δ ← 2‖Dp‖, λ ← λ/2;
* accepted when ratio ≥ 10⁻⁴;
* ``ftol``: |actred| ≤ ftol, prered ≤ ftol and ratio ≤ 2; ``xtol``: Δ ≤ xtol·‖Dx‖; no progress
  when those hold with ε, or the scaled gradient ≤ ε.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import array_api_compat
import numpy as np

from .. import _backend as B
from .._status import Status

__all__ = ["SCALAR", "more_update", "more_termination", "lambda_iteration", "lm_subproblem",
           "CODES", "GRAM_MAX_ERR", "MAX_NONFINITE_TRIALS", "RECENT_NONFINITE",
           "radius_unproven"]

#: Bound on ε·κ(AᵀA) where the batched LM forms ``AᵀA`` (:func:`lm_terms`,
#: :mod:`newtonkit._batch`): in float64 κ(AᵀA) < 1e8, κ(A) < 1e4, a relative error of the step
#: below about 1e-6; float32 never qualifies (its normal equations are formed in float64).
GRAM_MAX_ERR = 1e8 * 2.0 ** -52
#: Consecutive non-finite trial points after which LM gives up.
MAX_NONFINITE_TRIALS = 20
#: A stop on the ftol/xtol test this few trials after a non-finite one is not convergence.
RECENT_NONFINITE = 10
#: The statuses :func:`more_termination` returns, by code (0: go on).
CODES = (None, Status.FTOL, Status.XTOL, Status.FTOL_XTOL, Status.NO_PROGRESS, Status.NONFINITE)


class _Scalar:
    """The three functions the rules need, for Python floats."""

    @staticmethod
    def where(c: bool, a: Any, b: Any) -> Any:
        return a if c else b

    minimum = staticmethod(min)
    maximum = staticmethod(max)

    @staticmethod
    def isfinite(a: float) -> bool:
        return math.isfinite(a)

    @staticmethod
    def logical_not(a: bool) -> bool:
        return not a

    @staticmethod
    def any(a: bool) -> bool:
        return bool(a)


SCALAR = _Scalar()


@dataclass(frozen=True)
class Update:
    """The result of one trial: the new radius and λ, and what the termination tests read."""

    delta: Any
    par: Any
    ratio: Any
    actred: Any
    prered: Any
    accepted: Any
    finite: Any


def more_update(ops: Any, f: Any, f1: Any, delta: Any, par: Any, pnorm: Any,
                jp2: Any) -> Update:
    """Moré's update of Δ and λ after a trial (module docstring)."""
    finite = ops.isfinite(f1)
    not_ = ops.logical_not
    big = not_(finite) | not_(f1 < 100.0 * f)  # not finite, or grew a hundredfold
    actred = ops.where(big, -1.0, 1.0 - ops.where(big, 0.0, f1) / f)
    prered = (jp2 + 2.0 * par * pnorm * pnorm) / (2.0 * f)
    ratio = ops.where(prered != 0, actred / ops.where(prered != 0, prered, 1.0), 0.0)
    dirder = -(jp2 + par * pnorm * pnorm) / (2.0 * f)
    denom = dirder + 0.5 * actred
    interp = 0.5 * dirder / ops.where(denom != 0, denom, 1.0)
    temp = ops.where(actred >= 0, 0.5, interp)
    temp = ops.where(big | not_(temp >= 0.1), 0.1, temp)
    shrink = ratio <= 0.25
    grow = not_(shrink) & ((par == 0.0) | (ratio >= 0.75))
    new_delta = ops.where(shrink, temp * ops.minimum(delta, pnorm / 0.1),
                          ops.where(grow, pnorm / 0.5, delta))
    new_par = ops.where(shrink, par / temp, ops.where(grow, 0.5 * par, par))
    return Update(new_delta, new_par, ratio, actred, prered, ratio >= 1e-4, finite)


def radius_unproven(no_gn_step: Any, par: Any, ratio: Any) -> Any:
    """Where MINPACK's xtol test Δ ≤ xtol·‖Dx‖ proves nothing by itself, so that it also
    needs the Gauss-Newton step's scaled length ‖D p̂(0)‖ ≤ xtol·‖Dx‖.  Until a Gauss-Newton
    step (λ = 0) has been accepted (``no_gn_step``), the radius is the initial one,
    factor·‖Dx₀‖, cut by rejections and grown back at most 2× a trial, and knows nothing of
    the problem's scale (MINPACK ended Chebyquad from 10·x0, f = 1e22, XTOL at x0; with that
    asked only before the first accepted step, two accepted steps later, and with 3-point
    differences after a later cut, still at f = 1e22).  Later, after a trial cut by the
    radius (λ > 0) that did not shrink it (ρ > ¼): a radius growing back from a cut, not the
    model's verdict.  Otherwise (a radius the model shrank, or a Gauss-Newton step's) MINPACK's
    test as it is: asking the Gauss-Newton step at every trial would refuse singular
    minimisers, where that step is ½‖Dx‖ (ext_powell_singular).  Elementwise on arrays (the
    batched LM) as on scalars."""
    return no_gn_step | ((par > 0) & (ratio > 0.25))


def more_termination(ops: Any, u: Update, par: Any, delta: Any, xnorm: Any, gnorm: Any,
                     eps: float, ftol: float, xtol: float, nonfinite_run: Any, since: Any,
                     offer: Any = None, gn_length: Any = None) -> Any:
    """The code (index into :data:`CODES`, a float) after a trial of damping ``par`` (λ):
    0 go on, else FTOL, XTOL, both,
    NO_PROGRESS, or NONFINITE — a stop reached by shrinking away from non-finite values (the
    trial itself non-finite, ``MAX_NONFINITE_TRIALS`` in a row, or a small-step stop on a
    trial cut by the radius, λ > 0, within ``RECENT_NONFINITE`` trials of one: ``since``
    counts trials since the last, −1 for none).  A Gauss-Newton trial (λ = 0) fits in the
    radius, so its tests measure the problem, not the cut (in the multistart benchmark's
    two-exponential fit an early trial overflowed, Gauss-Newton steps with ρ ≈ 1 reached the
    minimum, and the ftol stop there, 8 or 9 trials later, was ``NONFINITE``).
    ``offer``: the Gauss-Newton step's predicted relative reduction at the trial's point, which
    the ftol test also needs at most ftol (a step cut short by the trust region predicts little
    only because it is short: MINPACK's test ended FTOL after a first step of 1e-4 on a
    residual of scale 1e6 at float32's ftol); ``None``: the trial's own (a λ = 0 step).
    ``gn_length``: likewise the Gauss-Newton step's scaled length ‖D p̂(0)‖, which the xtol
    test then also needs at most xtol·‖Dx‖ (a radius shrunk by rejected first trials says
    nothing of x: on Chebyquad from 10·x0, f = 1e22, MINPACK ends XTOL at x0)."""
    calm = 0.5 * u.ratio <= 1
    small_f = (abs(u.actred) <= ftol) & (u.prered <= ftol) & calm
    if offer is not None:
        small_f = small_f & (offer <= ftol)
    small_x = delta <= xtol * xnorm
    if gn_length is not None:
        small_x = small_x & (gn_length <= xtol * xnorm)
    stuck = ((abs(u.actred) <= eps) & (u.prered <= eps) & calm) | (delta <= eps * xnorm) | (
        gnorm <= eps)
    zero = 0.0 * delta  # codes as floats of delta's kind (a where needs one array operand)
    code = ops.where(small_f, 1.0, zero) + ops.where(small_x, 2.0, zero)
    code = ops.where((code == 0) & stuck, 4.0, code)
    run = nonfinite_run > 0
    recent = (since >= 0) & (since < RECENT_NONFINITE) & (code >= 1) & (code <= 3) & (
        par > 0)
    nonfinite = (run & ((code != 0) | (nonfinite_run >= MAX_NONFINITE_TRIALS))) | recent
    return ops.where(nonfinite, 5.0, code)


def lambda_iteration(ops: Any, phi: Callable[[Any], tuple[Any, Callable[[], Any]]],
                     delta: Any, par0: Any, n0: Any, psi0: Any, full: Any, gnorm: Any,
                     tiny: float) -> tuple[Any, Any]:
    r"""MINPACK's λ iteration (``lmpar``; Moré 1978) for one problem or many: ``(λ, ‖p̂(λ)‖)``.

    Safeguarded Newton steps :math:`\lambda \leftarrow \lambda - \frac{\|\hat p\|}{\Delta}
    \frac{\phi}{\phi'}` on :math:`\phi(\lambda) = \|\hat p(\lambda)\| - \Delta` inside the
    bracket [lower, upper] (upper = ‖Aᵀr‖/Δ; lower = −φ(0)/φ'(0)·‖p̂(0)‖/Δ = −(φ(0)/Δ)/ψ(0)
    when A has full column rank (``full``), else 0), started at ``par0``; a problem stops when
    :math:`|\phi| \le 0.1\Delta`, when φ < 0 stops falling with lower = 0, or after 10
    steps.  Problems whose Gauss-Newton step fits, ``‖p̂(0)‖ = n0 ≤ 1.1Δ``, keep λ = 0.

    ``phi(λ)`` returns ``‖p̂(λ)‖`` and a function that gives :math:`\psi(\lambda) =
    \phi'(\lambda)/\|\hat p(\lambda)\| = -\hat u^T(A^TA + \lambda I)^{-1}\hat u`,
    :math:`\hat u = \hat p/\|\hat p\|` (called only while a problem is still iterating): how
    p̂(λ) is evaluated (an SVD, a Cholesky factor per λ) is the caller's.  ``psi0`` is ψ(0)
    where ``full``.  As MINPACK's normalised ``wa1``, ψ is free of the scale of r, where φ'
    (of order ‖p̂‖) underflows to 0 with residuals near 1e-160; a ψ(0) that is still 0 gives
    no lower bound.  With ``ops`` = :data:`SCALAR` every argument is a float; with an array
    namespace each is (B,).
    """
    zero = 0.0 * delta
    upper = ops.where(gnorm > 0, gnorm / delta, tiny / ops.minimum(delta, 0.1 + zero))
    bound = full & (psi0 != 0)
    lower = ops.where(bound, -((n0 - delta) / delta) / ops.where(bound, psi0, -1.0), zero)
    alpha = ops.minimum(ops.maximum(par0, lower), upper)
    alpha = ops.where(alpha == 0.0, gnorm / ops.where(n0 > 0, n0, 1.0 + zero), alpha)
    active = ops.logical_not(n0 - delta <= 0.1 * delta)
    fp = n0 - delta
    nrm_out, alpha_out = n0, zero
    for it in range(1, 11):
        alpha = ops.where(alpha == 0.0, ops.maximum(tiny + zero, 0.001 * upper), alpha)
        nrm, psi = phi(alpha)
        prev, fp = fp, nrm - delta
        stop = (abs(fp) <= 0.1 * delta) | ((lower == 0.0) & (fp <= prev) & (prev < 0)) | (
            it == 10)
        take = active & stop
        nrm_out = ops.where(take, nrm, nrm_out)
        alpha_out = ops.where(take, alpha, alpha_out)
        active = active & ops.logical_not(stop)
        if not ops.any(active):
            break
        d = psi()
        correction = -(fp / delta) / ops.where(d != 0, d, -1.0)
        lower = ops.where(active & (fp > 0), ops.maximum(lower, alpha), lower)
        upper = ops.where(active & (fp < 0), ops.minimum(upper, alpha), upper)
        alpha = ops.where(active, ops.maximum(lower, alpha + correction), alpha)
    return alpha_out, nrm_out


def lm_terms(xp: Any, A: Any, r: Any, eps: float,
             gram_rows: np.ndarray) -> list[tuple[np.ndarray, tuple]]:
    r"""What :func:`lm_subproblem` needs from each scaled Jacobian of a stack ``A`` (B, m, n)
    with residuals ``r`` (B, m): ``s2 = s²``, ``sq = s·Uᵀr``, ``c0 = Uᵀr/s`` (0 for
    :math:`s \le \max(m, n)\,\varepsilon\,s_{\max}`), each (b, k), ``Vt`` (b, k, n) and
    ``full`` (b,): whether every s was kept.

    The terms come from the eigendecomposition :math:`A^TA = V\,\mathrm{diag}(s^2)\,V^T`,
    ``sq = Vᵀ Aᵀ r``, for the problems where that is accurate enough, ε·κ(AᵀA) <
    ``GRAM_MAX_ERR``, and from the SVD of A for the others (computed for those rows only): a
    stack of n × n eigendecompositions costs a quarter of the SVDs of 25 × 5 matrices.  Forming
    :math:`A^TA` squares the condition number: the computed :math:`\hat p(\lambda)` differs
    from the SVD's by :math:`\le c\,\varepsilon\,(\kappa(A^TA+\lambda I)\|\hat p\| +
    \|A\|\|r\|/(s_{\min}^2+\lambda))`, the second term being the rounding of
    :math:`A^Tr` that the SVD's :math:`U^Tr` shares: under ``GRAM_MAX_ERR`` a relative error
    below about 1e-6, ample for a λ iteration that stops within 10 %; float32 never
    qualifies.  The eigendecomposition is tried at the rows ``gram_rows`` (a host mask) only,
    the others being known to fail the test.

    Returns ``[(rows, terms), ...]``, the Gram rows and the SVD rows (where there are any): a
    host mask over the B problems and the five terms of those rows, in order.
    """
    b, m, n = A.shape
    k = min(m, n)
    dev = array_api_compat.device(A)
    gram = np.zeros(b, dtype=bool)
    out = []
    try_np = np.nonzero(gram_rows)[0] if m >= n else np.zeros(0, dtype=np.int64)
    if try_np.size:
        idx = xp.asarray(try_np, device=dev)
        At, rt = xp.take(A, idx, axis=0), xp.take(r, idx, axis=0)
        w, Q = xp.linalg.eigh(xp.matrix_transpose(At) @ At)  # ascending
        good = (w[:, 0] > 0) & (eps * w[:, -1] < GRAM_MAX_ERR * w[:, 0])
        aTr = (rt[:, None, :] @ At)[:, 0, :]
        sq = (aTr[:, None, :] @ Q)[:, 0, :]
        terms = (w, sq, sq / xp.where(w > 0, w, 1.0), xp.matrix_transpose(Q), good)
        good_np = np.asarray(B.to_numpy(good), dtype=bool)
        gram[try_np[good_np]] = True
        if good_np.any():
            keep = xp.asarray(np.nonzero(good_np)[0], device=dev)
            out.append((gram, tuple(t if good_np.all() else xp.take(t, keep, axis=0)
                                    for t in terms)))
    rest = np.nonzero(~gram)[0]
    if rest.size:
        idx = xp.asarray(rest, device=dev)
        U, s, Vt = xp.linalg.svd(xp.take(A, idx, axis=0), full_matrices=False)
        q = (xp.take(r, idx, axis=0)[:, None, :] @ U)[:, 0, :]
        keep = s > eps * max(m, n) * s[:, :1]
        c0 = xp.where(keep, q / xp.where(keep, s, 1.0), 0.0 * s)
        full = xp.all(keep, axis=1) & (k == n)
        out.append((~gram, (s * s, s * q, c0, Vt, full)))
    return out


def lm_subproblem(xp: Any, s2: Any, sq: Any, c0: Any, full: Any, delta: Any, par0: Any,
                  tiny: float) -> tuple[Any, Any, Any, Any]:
    r"""The trust-region subproblems of B problems from the SVD terms of each scaled Jacobian
    :math:`A = \tilde J D^{-1} = U\,\mathrm{diag}(s)\,V^T` (as the SVD route of
    :class:`newtonkit.methods._lmpar.TrustRegionSubproblem`).

    ``s2 = s²``, ``sq = s·Uᵀr``, ``c0 = Uᵀr/s`` (0 where s was dropped), each ``(B, k)``;
    ``full`` (B,) whether every s was kept; ``delta``, ``par0`` (B,).  Returns ``(c, λ, ‖c‖,
    ‖A p̂‖²)`` with the scaled step ``p̂ = −Vc``, :math:`c = sq/(s^2+\lambda)`, λ from
    :func:`lambda_iteration`.
    """
    n0 = xp.linalg.vector_norm(c0, axis=1)
    gnorm = xp.linalg.vector_norm(sq, axis=1)  # ‖Aᵀr‖
    u0 = c0 / xp.where(n0 > 0, n0, 1.0)[:, None]
    psi0 = -xp.sum(u0 * u0 / xp.where(s2 > 0, s2, 1.0), axis=1)

    def quotient(alpha: Any) -> tuple[Any, Any]:  # (sq/(s² + α), s² + α); 0 where both are
        # 0 (a dropped s at α = 0: sq = s·Uᵀr = 0 there too)
        den = s2 + alpha[:, None]
        return sq / xp.where(den > 0, den, 1.0), den

    def phi(alpha: Any) -> tuple[Any, Callable[[], Any]]:
        c, den = quotient(alpha)
        nrm = xp.linalg.vector_norm(c, axis=1)
        u = c / xp.where(nrm > 0, nrm, 1.0)[:, None]
        return nrm, lambda: -xp.sum(u / xp.where(den > 0, den, 1.0) * u, axis=1)

    alpha, nrm = lambda_iteration(xp, phi, delta, par0, n0, psi0, full, gnorm, tiny)
    gn = n0 - delta <= 0.1 * delta
    c = xp.where(gn[:, None], c0, quotient(alpha)[0])
    # ‖A p̂‖² = Σ s²c² = sq·c − λ‖c‖² (each term ≥ 0; the rounding is ε relative to the
    # predicted reduction it enters)
    jp2 = xp.maximum(xp.sum(sq * c, axis=1) - alpha * nrm * nrm, 0.0 * nrm)
    return c, alpha, nrm, jp2
