r"""The Levenberg-Marquardt trust-region subproblem (MINPACK's ``lmpar``).

For the scaled Jacobian :math:`A = \tilde J D^{-1}` (``m × n``) and residual :math:`\tilde r`,
find the scaled step :math:`\hat p = D p` and :math:`\lambda \ge 0` with

.. math:: (A^TA + \lambda I)\,\hat p = -A^T\tilde r, \qquad
          \lambda = 0 \text{ if } \|\hat p(0)\| \le 1.1\Delta, \text{ else }
          \bigl|\|\hat p(\lambda)\| - \Delta\bigr| \le 0.1\Delta .

λ follows the Moré-Hebden iteration :math:`\lambda \leftarrow \lambda - \frac{\|\hat p\|}{\Delta}
\frac{\phi}{\phi'}` on :math:`\phi(\lambda) = \|\hat p(\lambda)\| - \Delta`, with
:math:`\phi'(\lambda) = -\hat p^T (A^TA + \lambda I)^{-1} \hat p / \|\hat p\|`, safeguarded by the
bounds of Moré (1978).

The Gauss-Newton step comes from a QR factorisation with column pivoting, as in MINPACK:
:math:`A P = QR` gives :math:`\hat p(0) = -P R^{-1}Q^T\tilde r` (``Q`` is never formed); ``R``
is used unless a diagonal entry is exactly zero.  When it does not fit (λ > 0), two ways to
evaluate :math:`\hat p(\lambda)` and :math:`\phi'(\lambda)`:

SVD of ``R`` (``n <= SVD_MAX_N``, or when the Cholesky route gives up)
    With :math:`R = U\,\mathrm{diag}(s)\,W^T` and :math:`q = U^T Q^T\tilde r`,
    :math:`\hat p(\lambda) = -P W c`, :math:`c = s q / (s^2+\lambda)`, and
    :math:`\phi'(\lambda) = -\sum c^2/(s^2+\lambda) / \|c\|`: one factorisation, then O(n) per λ.
    Singular values below ``rcond·s_max`` are dropped, which gives the minimum-norm step (also
    for a wide ``A``, ``m < n``, whose SVD is taken directly, and for an ``R`` with a zero on its
    diagonal).  LAPACK's QR-iteration driver (``gesvd``, MATLAB's) is used: with it the λ
    iteration's path follows MINPACK's evaluation counts on more problems (brown_dennis: 307,
    as SciPy, against 304 with ``gesdd``; NIST MGH09: 491 against 503, SciPy 486, with
    OpenBLAS's Haswell kernels).

Cholesky per λ (``n > SVD_MAX_N``)
    Every trial λ factors :math:`R^TR + \lambda I = LL^T` (O(n³/3) instead of an SVD's O(n³)
    with a much larger constant), :math:`\hat p = -P L^{-T}L^{-1} R^TQ^T\tilde r` and
    :math:`\phi' = -\|L^{-1}P^T\hat p\|^2/\|\hat p\|`.  Forming :math:`R^TR` squares the
    condition number, so this route takes only λ with :math:`\kappa(R^TR + \lambda I) \le
    (\|R\|_F^2 + \lambda)/\lambda \le` ``CHOL_MAX_COND`` (relative error of :math:`\hat p` below
    ~n·ε·``CHOL_MAX_COND``); a smaller λ or a failed factorisation switches this Jacobian to the
    SVD of ``R``.

Namespaces without a pivoted QR use ``P = I``.  Built once per Jacobian, then solved for any
(Δ, λ₀).
"""

from __future__ import annotations

import functools
import math
from typing import Any

from .. import _backend as B
from . import _trust

__all__ = ["TrustRegionSubproblem", "SVD_MAX_N", "CHOL_MAX_COND"]

#: Up to this many unknowns a λ > 0 is solved with the SVD of ``R`` (module docstring).
SVD_MAX_N = 16
#: Bound on the condition number of ``RᵀR + λI`` for the Cholesky route (module docstring).
CHOL_MAX_COND = 1e8


class _UseSVD(Exception):
    """The Cholesky route cannot evaluate this λ accurately: switch to the SVD."""


class TrustRegionSubproblem:
    """Factorisations of one scaled Jacobian ``A`` and residual ``r``; :meth:`solve` per Δ.

    ``eps`` and ``tiny`` are the dtype's machine epsilon and smallest normal number.

    State: ``R``, ``qtr`` and ``perm`` of the QR (``None`` for a wide ``A``) and ``iperm``, the
    inverse permutation (``None``: the identity); ``gn`` the Gauss-Newton step after the QR
    (``None`` when ``R`` is singular); ``use_chol`` whether the Cholesky route applies (full
    rank, ``n > SVD_MAX_N``; ``False`` after it gave up on a λ); the SVD route's terms (``s2``,
    ...) are computed on first use (``None`` until then), as are the cached ``_svd_bounds`` and
    ``_chol_bounds``.
    """

    def __init__(self, xp: Any, A: Any, r: Any, eps: float, tiny: float) -> None:
        self.xp, self.A, self.r, self.eps, self.tiny = xp, A, r, eps, tiny
        m, n = A.shape
        self.rcond = eps * max(m, n)  # singular values below rcond·s_max count as zero
        self.huge = float(xp.finfo(A.dtype).max)
        self.R = self.qtr = self.gn = self.perm = self.iperm = self.s2 = None
        self.use_chol = False
        if m < n:
            self._svd_terms()
            return
        # A[:, perm] = Q R with column pivoting where the backend has it (as MINPACK)
        self.R, self.qtr, self.perm = B.qr_r(xp, A, r, pivoting=True)
        R = self.R
        # As MINPACK's lmpar, the Gauss-Newton step solves with R unless a diagonal entry is
        # exactly zero: truncating at rcond instead stalls the end game of problems that are
        # singular at the solution (ext_powell_singular_200: 171 trials instead of 56).
        if self.perm is not None:  # pivoted: |R_jj| decreases along the diagonal
            self.iperm = xp.argsort(self.perm)
            small = abs(float(R[n - 1, n - 1]))
        else:
            small = float(xp.min(xp.abs(xp.linalg.diagonal(R))))
        if small > 0:
            y0 = B.solve_triangular(xp, R, self.qtr, lower=False)  # R y0 = Qᵀr: -p̂(0), pivoted
            n0 = B.norm(xp, y0)
            if math.isfinite(n0):  # non-finite exactly when y0 is (or ‖y0‖ overflows)
                self._y0 = y0
                # ‖A p̂(0)‖² = ‖Qᵀr‖²
                self.gn = (self._unpermute(y0), n0, B.vdot(xp, self.qtr, self.qtr))
                self.use_chol = n > SVD_MAX_N  # full rank: the Cholesky route applies

    def _unpermute(self, y: Any, axis: int = 0) -> Any:
        """``out`` with ``out[perm] = y`` along ``axis``: from the pivoted order back."""
        return y if self.iperm is None else self.xp.take(y, self.iperm, axis=axis)

    # -- SVD route -------------------------------------------------------------------------------
    def _svd_terms(self) -> None:
        """What the SVD route needs from ``A = U diag(s) Vᵀ`` (``R``'s after the QR; computed
        once): ``s²``, ``Vᵀ``, ``sq = s·Uᵀr`` and ``c0 = Uᵀr / s``, and ``‖p̂(0)‖ = ‖c0‖``."""
        xp = self.xp
        n = self.A.shape[1]
        if self.qtr is not None:  # A[:, perm] = Q R = (Q U) diag(s) Wᵀ
            U, s, Wt = B.svd(xp, self.R, driver="gesvd")
            q = self.qtr @ U
            Vt = self._unpermute(Wt, axis=1)
        else:
            U, s, Vt = B.svd(xp, self.A, driver="gesvd")
            q = self.r @ U
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
        self.n0 = B.norm(xp, self.c0)

    @functools.cached_property
    def _svd_bounds(self) -> tuple[float | None, float]:
        """ψ(0) = φ'(0)/‖p̂(0)‖ = -Σ u²/s², u = c0/‖c0‖ (``None`` when ``A`` is
        rank-deficient) and ``‖Aᵀr‖``: the λ iteration's bounds, once per factorisation."""
        xp = self.xp
        u = self.c0 / self.n0
        psi0 = -B.vdot(xp, u / self.s2, u) if self.full else None
        return psi0, B.norm(xp, self.sq)

    # -- Cholesky route --------------------------------------------------------------------------
    # In pivoted order throughout: (RᵀR + λI) is AᵀA + λI with its rows and columns permuted.
    @functools.cached_property
    def _chol_bounds(self) -> tuple[float, float]:
        """ψ(0) = φ'(0)/‖p̂(0)‖ and ``‖Aᵀr‖`` for the λ iteration; builds ``RᵀR``, ``Aᵀr`` and
        the smallest λ the route takes (once per factorisation)."""
        xp, R, n0 = self.xp, self.R, self.gn[1]
        self._M = R.T @ R  # RᵀR = AᵀA
        self._g = self.qtr @ R  # Rᵀ Qᵀ r = Aᵀ r
        self._alpha_min = B.vdot(xp, xp.reshape(R, (-1,)), xp.reshape(R, (-1,))) / (
            CHOL_MAX_COND - 1.0)  # ‖R‖_F² / (κ_max − 1)
        w = B.solve_triangular(xp, R, self._y0 / n0, lower=False, trans=True)  # R⁻ᵀ p̂(0)/n0
        return -B.vdot(xp, w, w), B.norm(xp, self._g)

    def _chol_at(self, alpha: float) -> float:
        xp = self.xp
        if not alpha >= self._alpha_min:
            raise _UseSVD
        L, ok = B.cholesky(xp, self._M, shift=alpha)
        if not ok:
            raise _UseSVD
        v = B.cho_solve(xp, L, self._g)  # (RᵀR + αI)⁻¹ Rᵀ Qᵀr = -p̂(α), pivoted
        nrm = B.norm(xp, v)
        if not 0.0 < nrm < math.inf:  # (0: Aᵀr underflowed; ψ needs p̂/‖p̂‖)
            raise _UseSVD
        self._L, self._v = L, v
        return nrm

    def _chol_psi(self, nrm: float) -> float:
        w = B.solve_triangular(self.xp, self._L, self._v / nrm, lower=True)
        return -B.vdot(self.xp, w, w)

    def _chol_step(self, nrm: float) -> tuple[Any, float]:
        Rv = self.R @ self._v
        return self._unpermute(self._v), B.vdot(self.xp, Rv, Rv)

    def gn_length(self) -> float:
        """``‖p̂(0)‖``, the length of the (scaled) Gauss-Newton step."""
        if self.gn is not None:
            return self.gn[1]
        if self.s2 is None:
            self._svd_terms()
        return self.n0

    def gn_offer(self) -> float:
        """``‖A p̂(0)‖²``, what the Gauss-Newton step (λ = 0) predicts: ``‖Qᵀr‖²`` after the
        QR, else ``Σ sq·c0`` over the kept singular values."""
        if self.gn is not None:
            return self.gn[2]
        if self.s2 is None:
            self._svd_terms()
        return B.vdot(self.xp, self.sq, self.c0)

    # -- the λ iteration -------------------------------------------------------------------------
    def solve(self, delta: float, par0: float) -> tuple[Any, float, float, float]:
        """``(v, λ, ‖p̂‖, ‖A p̂‖²)`` for the radius ``delta``, the λ iteration started at
        ``par0``; the scaled step is ``p̂ = -v``."""
        if self.gn is not None:
            v0, n0, jp2 = self.gn
            if n0 - delta <= 0.1 * delta:
                return v0, 0.0, n0, jp2
            if self.use_chol:
                try:
                    return self._iterate(delta, par0, n0, *self._chol_bounds, svd=False)
                except _UseSVD:
                    self.use_chol = False
        if self.s2 is None:
            self._svd_terms()
        xp, n0 = self.xp, self.n0
        if n0 - delta <= 0.1 * delta:
            c0 = self.c0
            return c0 @ self.Vt, 0.0, n0, B.vdot(xp, self.sq, c0)
        return self._iterate(delta, par0, n0, *self._svd_bounds, svd=True)

    def _in_range(self, alpha: float) -> float:
        """α within the SVD terms' dtype (the λ iteration's upper bound ‖Aᵀr‖/Δ can pass
        float32's 3.4e38, and the cast would overflow; c = sq/(s² + α) is 0 either way)."""
        return min(alpha, self.huge)

    def _iterate(self, delta: float, par0: float, n0: float, psi0: float | None,
                 gnorm: float, svd: bool) -> tuple:
        """MINPACK's λ iteration (:func:`newtonkit.methods._trust.lambda_iteration`, the code
        the batched LM runs) with p̂(λ) from the SVD terms (``svd``) or a Cholesky factor per
        λ (``_chol_at``, ``_chol_psi``, ``_chol_step``).  ``psi0`` is ψ(0) = φ'(0)/‖p̂(0)‖,
        ``None`` when ``A`` is rank-deficient (then λ has no positive lower bound)."""
        xp = self.xp

        def phi_svd(alpha: float) -> tuple[float, Any]:  # c = s q / (s² + α), p̂(α) = -V c
            den = self.s2 + self._in_range(alpha)
            c = self.sq / den
            nrm = B.norm(xp, c)
            u = c / nrm if nrm > 0 else c
            return nrm, lambda: -B.vdot(xp, u / den, u)  # ψ(α) = -Σ u²/(s² + α), u = c/‖c‖

        def phi_chol(alpha: float) -> tuple[float, Any]:
            nrm = self._chol_at(alpha)
            return nrm, lambda: self._chol_psi(nrm)

        alpha, nrm = _trust.lambda_iteration(
            _trust.SCALAR, phi_svd if svd else phi_chol, delta, par0, n0,
            -1.0 if psi0 is None else psi0, psi0 is not None, gnorm, self.tiny)
        if not svd:
            v, jp2 = self._chol_step(nrm)
            return v, alpha, nrm, jp2
        # ‖A p̂‖² = Σ s²c² = Σ c (sq − α c) = sq·c − α‖c‖²: each term is ≥ 0 and the rounding
        # is ε relative to ‖A p̂‖² + α‖p̂‖², the scale of the predicted reduction it enters.
        c = self.sq / (self.s2 + self._in_range(alpha))  # the last c of the iteration, alike
        jp2 = max(B.vdot(xp, self.sq, c) - alpha * nrm * nrm, 0.0)
        return c @ self.Vt, alpha, nrm, jp2
