r"""Extreme eigenvalues of a symmetric operator by Lanczos.

``m`` steps of the Lanczos recurrence :math:`\beta_{j+1} q_{j+1} = H q_j - \alpha_j q_j -
\beta_j q_{j-1}`, with full re-orthogonalisation against the stored basis (numerically
robust at ``m ≲ 100``), give the tridiagonal :math:`T_m = Q_m^T H Q_m`; its extreme eigenvalues
(Ritz values) approximate those of ``H`` from the inside: :math:`\theta_{\min} \ge
\lambda_{\min}`.  Only the ``m × m`` tridiagonal (scalars) goes to the host.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np
import scipy.linalg

from .. import _backend as B
from ..operators import aslinearoperator
from . import _checks as C

MIN_STEPS = 30


class Ritz(NamedTuple):
    """The extreme Ritz values of a Lanczos run, their residuals :math:`|\beta_m s_{m,i}|`
    (each bounds the distance to an eigenvalue of ``H``) and the steps taken; ``converged``:
    both residuals are within ``tol·‖T_m‖`` (or the Krylov space was invariant)."""

    lambda_min: float
    lambda_max: float
    residual_min: float
    residual_max: float
    steps: int
    converged: bool


def lanczos(H: Any, maxiter: int | None = None, *, tol: float | None = None,
            seed: int = 0) -> tuple[float, float]:
    """``(lambda_min, lambda_max)`` of :func:`lanczos_ritz` (see there)."""
    r = lanczos_ritz(H, maxiter, tol=tol, seed=seed)
    return r.lambda_min, r.lambda_max


def lanczos_ritz(H: Any, maxiter: int | None = None, *, tol: float | None = None,
                 seed: int = 0) -> Ritz:
    r"""Estimate :math:`(\lambda_{\min}, \lambda_{\max})` of a symmetric ``H``.

    Parameters
    ----------
    H : array (n, n) or LinearOperator
        Symmetric; only its action is used.
    maxiter : int, optional
        Lanczos steps ``m >= 1`` (default ``min(n, 80)``; at most ``n``, which gives the exact
        eigenvalues).
    tol : float, optional
        Stop early (after at least ``min(n, 30)`` steps) once both extreme Ritz pairs have
        residual :math:`|\beta_{m} s_{m}| \le \mathrm{tol} \cdot \|T_m\|` (default
        ``eps**0.5`` of the dtype; ``tol >= 0``, 0 turns the early stop off).
    seed : int
        Seed of the random start vector.

    Returns
    -------
    Ritz
        The Ritz estimates (``lambda_min`` is an upper bound on the true smallest eigenvalue,
        tight when the extreme eigenvalue is separated from the rest), their residuals and
        whether they converged: after ``maxiter`` steps without convergence (a dense spectrum)
        ``lambda_min`` may lie far above the smallest eigenvalue.  A non-finite product
        gives NaN estimates and residuals (not converged).
    """
    op = aslinearoperator(H)
    n = op.shape[0]
    if op.shape[1] != n:
        raise ValueError(f"Lanczos needs a square operator, got shape {op.shape}")
    xp = op.xp
    maxiter = C.integer(maxiter, "maxiter", low=1, optional=True)
    tol = None if tol is None else C.real(tol, "tol", low=0.0)
    m = min(n, 80 if maxiter is None else maxiter)
    eps = float(xp.finfo(op.dtype).eps)
    tol = eps ** 0.5 if tol is None else tol

    q = B.standard_normal(xp, (n,), op.dtype, xp.zeros((1,), dtype=op.dtype,
                                                       device=op.device), seed)
    q = q / xp.linalg.vector_norm(q)
    Q = [q]
    alphas, betas = [], []
    for j in range(m):
        w = op.matvec(Q[j])
        a = float(xp.vecdot(w, Q[j]))
        alphas.append(a)
        # Full re-orthogonalisation (twice is enough: Kahan's "twice is enough").
        for _ in range(2):
            Qm = xp.stack(Q, axis=1)
            w = w - Qm @ (xp.matrix_transpose(Qm) @ w)
        b = float(xp.linalg.vector_norm(w))
        if not (math.isfinite(a) and math.isfinite(b)):  # a non-finite product: no estimate
            return Ritz(math.nan, math.nan, math.nan, math.nan, len(alphas), False)
        theta, s = _ritz(alphas, betas)
        anorm = max(abs(theta[0]), abs(theta[-1]), 1e-300)
        res = (abs(b * s[-1, 0]), abs(b * s[-1, -1]))
        # a breakdown: b at the rounding of H q (typically ε‖H‖√n; the worst case ε‖H‖n
        # would call a true b of 3e-4 rounding in float32 at n = 4000, and stop the space
        # short of an eigenvalue; a b of rounding taken for a direction only adds noise that
        # the re-orthogonalisation keeps orthogonal, like the random restart below)
        invariant = b <= eps * anorm * math.sqrt(n)
        small = res[0] <= tol * anorm and res[1] <= tol * anorm
        # Neither small Ritz residuals nor a breakdown show an eigenvalue the Krylov space has
        # not reached (a start vector in, or near, an invariant subspace), so never stop on
        # them before MIN_STEPS; after a breakdown the space goes on from a random vector
        # orthogonal to it (β = 0).
        early = j + 1 < min(n, MIN_STEPS)
        if j == m - 1 or (not early and (invariant or small)):
            break
        if invariant:
            w = B.standard_normal(xp, (n,), op.dtype, Q[0], seed + j + 1)
            for _ in range(2):
                Qm = xp.stack(Q, axis=1)
                w = w - Qm @ (xp.matrix_transpose(Qm) @ w)
            b, w = 0.0, w / xp.linalg.vector_norm(w)
            Q.append(w)
        else:
            Q.append(w / b)
        betas.append(b)
    if invariant:
        res = (0.0, 0.0)
    return Ritz(float(theta[0]), float(theta[-1]), float(res[0]), float(res[1]), len(alphas),
                bool(invariant or small))


def _ritz(alphas: list[float], betas: list[float]) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(alphas)
    if len(a) == 1:
        return a, np.ones((1, 1))
    return scipy.linalg.eigh_tridiagonal(a, np.asarray(betas[: len(a) - 1]))
