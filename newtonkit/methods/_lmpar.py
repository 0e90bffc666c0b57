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

from functools import partial
from typing import Any

from .. import _backend as B
from ._base import _norm

__all__ = ["TrustRegionSubproblem"]


class TrustRegionSubproblem:
    """Factorisations of one scaled Jacobian ``A`` and residual ``r``; :meth:`solve` per Δ."""

    def __init__(self, A: Any, r: Any) -> None:
        xp = B.array_namespace(A)
        self.xp, self.A, self.r = xp, A, r
        self.eps = float(xp.finfo(A.dtype).eps)
        m, n = A.shape
        self.R = self.qtr = self.gn = self._svd = None
        if m >= n:
            Q, R = xp.linalg.qr(A)
            self.R, self.qtr = R, xp.matrix_transpose(Q) @ r
            dR = xp.abs(xp.linalg.diagonal(R))
            big = float(xp.max(dR))
            if big > 0 and float(xp.min(dR)) > self.eps * max(m, n) * big:
                ph0 = -B.solve_triangular(xp, R, self.qtr, lower=False)
                if bool(xp.all(xp.isfinite(ph0))):
                    self.gn = (ph0, _norm(xp, ph0))

    def svd(self) -> tuple[Any, Any, Any]:
        """``(s, Vᵀ, q = Uᵀr)`` of ``A`` (computed once, on first use)."""
        xp = self.xp
        if self._svd is None:
            if self.R is not None:
                U, s, Vt = xp.linalg.svd(self.R)
                q = xp.matrix_transpose(U) @ self.qtr
            else:
                U, s, Vt = xp.linalg.svd(self.A, full_matrices=False)
                q = xp.matrix_transpose(U) @ self.r
            self._svd = (s, Vt, q)
        return self._svd

    def solve(self, delta: float, par0: float) -> tuple[Any, float, float]:
        """``(p̂, λ, ‖p̂‖)`` for the radius ``delta``, starting the λ iteration from ``par0``."""
        xp = self.xp
        norm = partial(_norm, xp)
        m, n = self.A.shape
        if self.gn is not None:
            ph0, n0 = self.gn
            if n0 - delta <= 0.1 * delta:
                return ph0, 0.0, n0
        s, Vt, q = self.svd()
        smax = float(s[0]) if s.shape[0] else 0.0
        keep = s > self.eps * max(m, n) * smax
        s_safe = xp.where(keep, s, xp.ones_like(s))
        c0 = xp.where(keep, q / s_safe, xp.zeros_like(s))
        n0 = norm(c0)
        if n0 - delta <= 0.1 * delta:
            return -(c0 @ Vt), 0.0, n0
        sq = s * q
        gnorm = norm(sq)  # ‖Aᵀ r‖
        tiny = float(xp.finfo(s.dtype).tiny)
        upper = gnorm / delta if gnorm > 0 else tiny / min(delta, 0.1)
        if s.shape[0] == n and bool(xp.all(keep)):
            dphi0 = -float(xp.sum(c0 ** 2 / s_safe ** 2)) / n0
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
            den = s * s + alpha
            c = sq / den
            nrm = norm(c)
            prev, fp = fp, nrm - delta
            if abs(fp) <= 0.1 * delta or (lower == 0.0 and fp <= prev < 0) or it == 10:
                break
            dphi = -float(xp.sum(c * c / den)) / nrm
            correction = -(nrm / delta) * fp / dphi
            if fp > 0:
                lower = max(lower, alpha)
            elif fp < 0:
                upper = min(upper, alpha)
            alpha = max(lower, alpha + correction)
        return -(c @ Vt), alpha, nrm
