r"""The Levenberg-Marquardt trust-region subproblem (MINPACK's ``lmpar``).

For the scaled Jacobian :math:`A = \tilde J D^{-1}` (``m × n``) and residual :math:`\tilde r`,
find the scaled step :math:`\hat p = D p` and :math:`\lambda \ge 0` with

.. math:: (A^TA + \lambda I)\,\hat p = -A^T\tilde r, \qquad
          \lambda = 0 \text{ if } \|\hat p(0)\| \le 1.1\Delta, \text{ else }
          \bigl|\|\hat p(\lambda)\| - \Delta\bigr| \le 0.1\Delta .

With :math:`A = U\,\mathrm{diag}(s)\,V^T` and :math:`q = U^T\tilde r`,
:math:`\hat p(\lambda) = -V\,\mathrm{diag}(s/(s^2+\lambda))\,q`, and λ follows the Moré-Hebden
iteration :math:`\lambda \leftarrow \lambda - \frac{\|\hat p\|}{\Delta}\frac{\phi}{\phi'}` on
:math:`\phi(\lambda) = \|\hat p(\lambda)\| - \Delta`, safeguarded by the bounds of Moré (1978).
QR of ``A`` gives the Gauss-Newton step (λ = 0) cheaply; the SVD (of ``R``, or of ``A`` when it is
wide or ``R`` is numerically singular, which gives the minimum-norm step) is computed only when
the trust region is active.  Built once per Jacobian, then solved for any (Δ, λ₀).
"""

from __future__ import annotations

import math
from typing import Any

from .. import _backend as B
from ._base import _norm

__all__ = ["TrustRegionSubproblem"]


class TrustRegionSubproblem:
    """Factorisations of one scaled Jacobian ``A`` and residual ``r``; :meth:`solve` per Δ.

    ``eps`` and ``tiny`` are the dtype's machine epsilon and smallest normal number.
    """

    def __init__(self, xp: Any, A: Any, r: Any, eps: float, tiny: float) -> None:
        self.xp, self.A, self.r, self.tiny = xp, A, r, tiny
        m, n = A.shape
        self.rcond = eps * max(m, n)  # singular values below rcond·s_max count as zero
        self.R = self.qtr = self.gn = None
        self._svd_done = False
        if m >= n:
            Q, R = B.qr(xp, A)
            self.R, self.qtr = R, Q.T @ r
            dR = xp.abs(B.diagonal(xp, R))
            big = B.float_max(xp, dR)
            if big > 0 and B.float_min(xp, dR) > self.rcond * big:
                ph0 = -B.solve_upper(xp, R, self.qtr)
                n0 = _norm(xp, ph0)
                if math.isfinite(n0):  # non-finite exactly when ph0 is (or ‖ph0‖ overflows)
                    self.gn = (ph0, n0)

    def _svd_terms(self) -> None:
        """What :meth:`solve` needs from ``A = U diag(s) Vᵀ`` (computed once, on first use)."""
        xp = self.xp
        n = self.A.shape[1]
        if self.R is not None:
            U, s, Vt = B.svd(xp, self.R)
            q = U.T @ self.qtr
        else:
            U, s, Vt = B.svd(xp, self.A)
            q = U.T @ self.r
        # s is sorted in decreasing order: s[-1] decides whether every s is kept
        smin, smax = (float(s[-1]), float(s[0])) if s.shape[0] else (0.0, 0.0)
        # full column rank: λ has a lower bound
        self.full = full = s.shape[0] == n and smin > self.rcond * smax
        if full:
            c0 = q / s
        else:
            keep = s > self.rcond * smax
            s_safe = xp.where(keep, s, 1.0)
            c0 = xp.where(keep, q / s_safe, 0.0)
        self.Vt, self.s2, self.sq, self.c0 = Vt, s * s, s * q, c0
        self.n0 = _norm(xp, c0)
        self.gnorm = _norm(xp, self.sq)  # ‖Aᵀ r‖
        self.sum0: float | None = None  # Σ c0² / s², on first use
        self._svd_done = True

    def solve(self, delta: float, par0: float) -> tuple[Any, float, float]:
        """``(p̂, λ, ‖p̂‖)`` for the radius ``delta``, starting the λ iteration from ``par0``."""
        if self.gn is not None:
            ph0, n0 = self.gn
            if n0 - delta <= 0.1 * delta:
                return ph0, 0.0, n0
        if not self._svd_done:
            self._svd_terms()
        xp, Vt, s2, sq, n0, gnorm = self.xp, self.Vt, self.s2, self.sq, self.n0, self.gnorm
        if n0 - delta <= 0.1 * delta:
            return -(self.c0 @ Vt), 0.0, n0
        tiny = self.tiny
        upper = gnorm / delta if gnorm > 0 else tiny / min(delta, 0.1)
        if self.full:
            if self.sum0 is None:
                self.sum0 = B.float_sum(xp, self.c0 * self.c0 / s2)
            dphi0 = -self.sum0 / n0
            lower = -(n0 / delta) * (n0 - delta) / dphi0  # Moré-Hebden step from λ = 0
        else:
            lower = 0.0
        alpha = min(max(par0, lower), upper)
        if alpha == 0.0:
            alpha = gnorm / n0
        fp = n0 - delta
        for it in range(1, 11):
            if alpha == 0.0:
                alpha = max(tiny, 0.001 * upper)
            den = s2 + alpha
            c = sq / den
            nrm = _norm(xp, c)
            prev, fp = fp, nrm - delta
            if abs(fp) <= 0.1 * delta or (lower == 0.0 and fp <= prev < 0) or it == 10:
                break
            dphi = -B.float_sum(xp, c * c / den) / nrm
            correction = -(nrm / delta) * fp / dphi
            if fp > 0:
                lower = max(lower, alpha)
            elif fp < 0:
                upper = min(upper, alpha)
            alpha = max(lower, alpha + correction)
        return -(c @ Vt), alpha, nrm
