r"""Matrix-free Krylov solvers: CGLS for damped least squares, truncated CG for Newton.

Both use only operator products and vector arithmetic of the array API, so they run on any
backend and device; the scalars that steer the iteration are read back as Python floats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..operators import aslinearoperator
from . import _checks as C


@dataclass(frozen=True)
class KrylovInfo:
    """Iterations run, whether the tolerance was met, and (truncated CG) negative curvature."""

    iterations: int
    converged: bool
    negative_curvature: bool = False


def cgls(J: Any, b: Any, damping: float = 0.0, *, rtol: float = 1e-10,
         maxiter: int | None = None) -> tuple[Any, KrylovInfo]:
    r"""Minimise :math:`\|J x - b\|^2 + \mu \|x\|^2` by CGLS (CG on the normal equations).

    Solves :math:`(J^TJ + \mu I) x = J^T b` using only ``J @ p`` and ``J.T @ q``; started from
    ``x = 0`` the iterates stay in :math:`\mathrm{range}(J^T)`, so for ``μ = 0`` and a
    rank-deficient ``J`` it converges to the minimum-norm least-squares solution.

    Parameters
    ----------
    J : array (m, n) or LinearOperator
    b : array (m,)
    damping : float
        :math:`\mu \ge 0`.
    rtol : float
        Stop when :math:`\|J^T(b - Jx) - \mu x\| \le \max(\mathrm{rtol}, \epsilon)\,\|J^T b\|`
        (ε of the dtype; ``rtol > 0``), for the residual recomputed from ``x``: the
        recurrence's own drifts from it by about ε·κ(J)·‖b‖.  Where they disagree the
        iteration restarts once from the recomputed residual; a second disagreement ends it
        unconverged (the tolerance is below the attainable accuracy).  Without convergence the
        iterate with the smallest residual is returned.
    maxiter : int, optional
        At least 1; default ``max(2·n, 100)``.

    Returns
    -------
    x : array (n,)
    info : KrylovInfo
    """
    A = aslinearoperator(J)
    xp = A.xp
    mu = C.real(damping, "damping", low=0.0)
    rtol = C.real(rtol, "rtol", low=0.0, low_open=True)
    maxiter = C.integer(maxiter, "maxiter", low=1, optional=True)
    b = C.vector(xp, b, A.shape[0], "b", A.dtype)
    n = A.shape[1]
    maxiter = max(2 * n, 100) if maxiter is None else maxiter
    x = xp.zeros((n,), dtype=A.dtype, device=A.device)
    r = b
    s = A.rmatvec(r)
    p = s
    gamma = float(xp.vecdot(s, s))
    if not gamma < float("inf"):
        raise ValueError("Jᵀb is not finite: J or b has nan or inf entries, or the product "
                         "overflowed (rescale J and b)")
    # Below the dtype's ε the recurrence only accumulates rounding (and can then diverge).
    stop = max(rtol, float(xp.finfo(A.dtype).eps)) ** 2 * gamma
    if gamma == 0.0:
        return x, KrylovInfo(0, True)
    best, best_gamma, restarted = x, gamma, False
    for k in range(1, maxiter + 1):
        q = A.matvec(p)
        delta = float(xp.vecdot(q, q)) + mu * float(xp.vecdot(p, p))
        if not 0.0 < delta < float("inf"):
            return best, KrylovInfo(k - 1, False)
        alpha = gamma / delta
        x = x + alpha * p
        r = r - alpha * q
        s = A.rmatvec(r) - mu * x if mu else A.rmatvec(r)
        gamma_new = float(xp.vecdot(s, s))
        if gamma_new <= stop:  # converged if the residual recomputed from x agrees
            r = b - A.matvec(x)
            s = A.rmatvec(r) - mu * x if mu else A.rmatvec(r)
            gamma_new = float(xp.vecdot(s, s))
            if gamma_new <= stop:
                return x, KrylovInfo(k, True)
            if gamma_new < best_gamma:
                best, best_gamma = x, gamma_new
            if restarted:
                return best, KrylovInfo(k, False)
            p, gamma, restarted = s, gamma_new, True  # once, from the recomputed residual
            continue
        if not gamma_new < float("inf"):
            return best, KrylovInfo(k, False)
        if gamma_new < best_gamma:
            best, best_gamma = x, gamma_new
        p = s + (gamma_new / gamma) * p
        gamma = gamma_new
    return best, KrylovInfo(maxiter, False)


def truncated_cg(H: Any, g: Any, *, rtol: float | None = None,
                 maxiter: int | None = None) -> tuple[Any, KrylovInfo]:
    r"""Approximate Newton step :math:`h \approx -H^{-1} g` by CG, stopped at negative curvature.

    Newton-CG (Nocedal & Wright, Alg. 7.1): CG on :math:`H h = -g` from ``h = 0``; when a
    direction ``p`` with :math:`p^T H p \le 0` appears, stop and return the current iterate
    (or :math:`-g` if that happens on the first iteration), so the result is always a descent
    direction.  The default forcing term is :math:`\min(0.5, \sqrt{\|g\|})`.

    Parameters
    ----------
    H : array (n, n) or LinearOperator
        Symmetric.
    g : array (n,)
    rtol : float, optional
        Stop when :math:`\|Hh + g\| \le \mathrm{rtol}\,\|g\|` (``rtol >= 0``; 0 turns this
        stop off).
    maxiter : int, optional
        At least 1; default ``n``.

    Returns
    -------
    h : array (n,)
    info : KrylovInfo
        ``negative_curvature`` tells whether CG met a direction of non-positive curvature.
    """
    A = aslinearoperator(H)
    xp = A.xp
    n = A.shape[0]
    if A.shape[1] != n:
        raise ValueError(f"H must be square, got shape {A.shape}")
    rtol = None if rtol is None else C.real(rtol, "rtol", low=0.0)
    maxiter = C.integer(maxiter, "maxiter", low=1, optional=True)
    g = C.vector(xp, g, n, "g", A.dtype)
    gnorm = float(xp.linalg.vector_norm(g))
    rtol = min(0.5, gnorm ** 0.5) if rtol is None else rtol
    maxiter = n if maxiter is None else maxiter
    h = xp.zeros((n,), dtype=A.dtype, device=A.device)
    if gnorm == 0.0:
        return h, KrylovInfo(0, True)
    r = -g  # residual of H h = -g at h = 0
    p = r
    rr = gnorm ** 2
    for k in range(1, maxiter + 1):
        Hp = A.matvec(p)
        curv = float(xp.vecdot(p, Hp))
        if curv <= 0.0:
            return (-g if k == 1 else h), KrylovInfo(k - 1, False, True)
        alpha = rr / curv
        h = h + alpha * p
        r = r - alpha * Hp
        rr_new = float(xp.vecdot(r, r))
        if rr_new ** 0.5 <= rtol * gnorm:
            return h, KrylovInfo(k, True)
        p = r + (rr_new / rr) * p
        rr = rr_new
    return h, KrylovInfo(maxiter, False)
