r"""The kernel (Woodbury) route and its matrix-free solver: work in the ``N × N`` function space.

For a Jacobian ``J`` of ``N`` rows and ``P`` parameters with ``N < P``, the damped
Gauss-Newton step has two equal forms (Woodbury / push-through identity):

.. math:: d = -(J^TJ + \mu I)^{-1} J^T r = -J^T (JJ^T + \mu I)^{-1} r .

The right-hand form needs the ``N × N`` kernel :math:`K = JJ^T` only, never a ``P × P`` matrix.
This module chooses a route from the shapes and a memory budget, and solves the kernel system
matrix-free by (optionally Nyström-preconditioned) CG.

Routes and their peak memory (``b`` bytes per entry, beyond ``J`` itself)
-----------------------------------------------------------------------
``"normal"``  (``N ≥ P``)
    The existing ``P × P`` / ``N × P`` methods (QR, SVD, Cholesky of :math:`J^TJ`):
    about :math:`(2(N+P)P)\,b`.
``"kernel"``  (``N < P``)
    Cholesky (or, for :math:`\mu = 0`, the eigendecomposition) of :math:`JJ^T + \mu I`:
    :math:`2N^2 b` (plus one ``N × P`` copy for a diagonal scaling ``D``).  For an operator,
    one ``N × P`` more to materialise ``J``.
``"matrix-free"``
    CG on :math:`(JJ^T + \mu I) w = -r` (``N < P``) or CGLS (``N ≥ P``): a few vectors of
    length ``N`` and ``P``; with the Nyström preconditioner one ``N × ℓ`` and one ``P × ℓ``
    block (``ℓ`` its rank, default 50).

Example: ``P = 10⁵``, ``N = 4096``, float64: ``normal`` needs 80 GB (never taken), ``kernel``
268 MB beyond ``J`` (3.3 GB), ``matrix-free`` a few MB (plus 41 MB with the preconditioner).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .. import _backend as B
from . import _checks as C

#: Default memory budget for the automatic route choice: 2 GiB.
DEFAULT_MEMORY_BUDGET = 2 * 1024 ** 3
GRAM_FLOOR = 10.0  # μ = 0: eigenvalues of JJᵀ below GRAM_FLOOR·max(N,P)·ε·λ_max are dropped


def route_memory(route: str, m: int, n: int, itemsize: int, *, dense: bool = True,
                 scaled: bool = False) -> int:
    """Peak bytes a route allocates beyond ``J`` (see the module docstring); ``dense=False``
    adds the ``m × n`` that materialising an operator costs on the dense routes.  ``route``:
    ``"kernel"``, ``"normal"`` (QR), ``"cholesky"`` (the ``n × n`` Gram) or ``"matrix-free"``."""
    materialise = 0 if dense else m * n
    if route == "kernel":
        return itemsize * (2 * m * m + (m * n if scaled else 0) + materialise)
    if route == "normal":
        return itemsize * (2 * (m + n) * n + materialise)
    if route == "cholesky":
        return itemsize * ((4 if scaled else 2) * n * n + materialise)
    return itemsize * 4 * (m + n)


def route_flops(method: str, m: int, n: int) -> float:
    r"""Predicted flops of a dense GN method on an ``m × n`` ``J`` (the cost model of
    :func:`choose_method`): a Gram of side ``k`` costs :math:`2mnk + k^3/3` (product and
    Cholesky), Householder QR of the stacked :math:`[J;\ \sqrt{\mu D}]` with its ``Q`` about
    :math:`4(m+n)n^2`."""
    if method == "kernel":
        return 2.0 * m * m * n + m ** 3 / 3
    if method == "cholesky":
        return 2.0 * m * n * n + n ** 3 / 3
    return 4.0 * (m + n) * n * n


def gram_resolves(mu: float, frob2: float, eps: float) -> bool:
    r"""Whether the damping bounds the Gram's conditioning: :math:`\mu \ge \sqrt{\epsilon}
    \|A\|_F^2` (``A = J D^{-1/2}``), so that :math:`\kappa(A^TA + \mu I) \le 1 + \|A\|_2^2/\mu
    \le 1 + \epsilon^{-1/2}` and the Cholesky solution's relative error
    :math:`\epsilon\,\kappa \lesssim \sqrt{\epsilon}`."""
    return mu > 0.0 and mu >= eps ** 0.5 * frob2


def choose_method(m: int, n: int, itemsize: int, *, dense: bool,
                  memory_budget: float | None, scaled: bool = False,
                  gram_ok: bool = False, damped: bool = True) -> str:
    r"""The automatic GN method: the cheapest dense one (:func:`route_flops`) that is accurate
    enough and fits ``memory_budget`` (:func:`route_memory`), else the matrix-free one.

    ``m < n``: ``"kernel"`` (the ``m × m`` Gram; no ``n × n``; undamped, the auto solve
    checks the Gram's conditioning and takes the SVD where the Gram cannot resolve the
    minimum-norm step: :func:`kernel_solve`'s ``strict``).  ``m ≥ n``: ``"cholesky"`` (the
    ``n × n`` Gram, the cheaper side) when ``gram_ok`` (:func:`gram_resolves`), else ``"qr"``.
    A Gram of the smaller side minimises :math:`2mnk + k^3/3`, and it costs less than QR or an
    SVD at every shape, so the order is fixed; accuracy alone keeps QR or the SVD.  An operator
    (``dense=False``) or a method that does not fit: ``"kernel-cg"`` for a ``damped``
    ``m < n``, ``"cgls"`` otherwise (undamped, CG on the kernel of a rank-deficient J meets an
    inconsistent system and stalls at w = 0; CGLS from 0 goes to the minimum-norm step).
    """
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    free = "kernel-cg" if m < n and damped else "cgls"
    if dense:
        method = "kernel" if m < n else ("cholesky" if gram_ok else "qr")
        route = "normal" if method == "qr" else method
        if route_memory(route, m, n, itemsize, scaled=scaled) <= budget:
            return method
    check_fits(route_memory("matrix-free", m, n, itemsize), memory_budget)
    return free


def check_fits(need: int, memory_budget: float | None) -> None:
    """``ValueError`` when an explicit ``memory_budget`` cannot hold even the matrix-free
    route's ``need`` bytes (a few vectors of length ``N + P``).  The default budget is a
    preference, not a limit: without one the matrix-free route always runs."""
    if memory_budget is not None and need > memory_budget:
        raise ValueError(f"memory_budget={memory_budget:g} bytes is too small for any route: "
                         f"the smallest, matrix-free, needs about {need:,} bytes")


def choose_route(m: int, n: int, itemsize: int, *, dense: bool, memory_budget: float | None,
                 scaled: bool = False, gram_ok: bool = False) -> str:
    """The route of :func:`choose_method`: ``"kernel"``, ``"normal"`` (QR or Cholesky of the
    ``n × n`` Gram) or ``"matrix-free"``."""
    method = choose_method(m, n, itemsize, dense=dense, memory_budget=memory_budget,
                           scaled=scaled, gram_ok=gram_ok)
    return {"kernel": "kernel", "cholesky": "normal", "qr": "normal"}.get(method, "matrix-free")


@dataclass(frozen=True)
class NystromPreconditioner:
    r"""Randomized Nyström approximation :math:`\hat K = U \hat\Lambda U^T` of a PSD ``K``
    (Frangella, Tropp & Udell 2023, Alg. 2.1) and the preconditioner of ``K + μI``

    .. math:: P^{-1} = (\hat\lambda_\ell + \mu)\, U (\hat\Lambda + \mu I)^{-1} U^T
              + (I - UU^T),

    which leaves ``K + μI`` with condition number about :math:`(\hat\lambda_\ell + \mu +
    \lambda_{\ell+1})/\mu` (their Prop. 5.3).
    """

    U: Any
    lam: Any
    mu: float

    def apply(self, xp: Any, x: Any) -> Any:
        Utx = xp.matrix_transpose(self.U) @ x
        scale = (self.lam[-1] + self.mu) / (self.lam + self.mu)
        return x + self.U @ ((scale - 1.0) * Utx)


def nystrom(xp: Any, K_matmat: Any, size: int, rank: int, dtype: Any, like: Any, mu: float,
            seed: int | None = 0) -> NystromPreconditioner | None:
    """Build :class:`NystromPreconditioner` from ``rank`` products with ``K``; ``None`` when
    the sketch is degenerate: ``λ̂_ℓ + μ`` at or below the shift ν that stabilises the sketch
    (``K`` of lower rank than the sketch and ``μ`` ≲ ν, where ``λ̂_ℓ`` is rounding and
    :math:`P^{-1}` would shrink K's range by ``ν/λ_i`` against its null space)."""
    ell = min(size, rank)
    Om = B.standard_normal(xp, (size, ell), dtype, like, seed)
    Om, _ = xp.linalg.qr(Om)
    Y = K_matmat(Om)
    nu = float(xp.finfo(dtype).eps) * float(xp.linalg.vector_norm(Y)) * size ** 0.5
    Y = Y + nu * Om
    L, ok = B.cholesky(xp, xp.matrix_transpose(Om) @ Y)
    if not ok:
        return None
    Bm = xp.matrix_transpose(B.solve_triangular(xp, L, xp.matrix_transpose(Y), lower=True))
    U, s, _ = xp.linalg.svd(Bm, full_matrices=False)
    lam = xp.clip(s * s - nu, 0.0, None)
    if not float(lam[-1]) + mu > nu:
        return None
    return NystromPreconditioner(U, lam, mu)


@dataclass(frozen=True)
class KernelCGInfo:
    """Iterations, convergence, and whether the Nyström preconditioner was used."""

    iterations: int
    converged: bool
    preconditioned: bool


def kernel_cg(A: Any, r: Any, damping: float, *, rtol: float = 1e-10, maxiter: int | None = None,
              preconditioner: str | None = None, nystrom_rank: int = 50,
              seed: int | None = 0) -> tuple[Any, KernelCGInfo]:
    r"""Matrix-free kernel route: :math:`y = -A^T w` with :math:`(AA^T + \mu I) w = r` by CG.

    Uses ``A @ v`` (forward mode) and ``Aᵀ @ w`` (reverse mode) only; nothing ``N × N`` or
    ``P × P`` is formed.  Stops when :math:`\|(AA^T+\mu I)w - r\| \le \max(\mathrm{rtol},
    \epsilon)\|r\|` for the residual recomputed from ``w`` (where the recurrence's disagrees it
    restarts once from it, as :func:`~newtonkit.linalg.cgls`), so that
    :math:`\|y - y_*\| \le \mathrm{rtol}\,\|r\|\,\sigma_{\max} /
    (\sigma_{\min}^2 + \mu)`; without convergence (for :math:`\mu = 0`: ``A`` rank deficient
    and ``r`` outside its range) the iterate with the smallest residual is returned.

    Parameters
    ----------
    A : LinearOperator (N, P)
    r : array (N,)
    damping : float
        :math:`\mu \ge 0`.
    rtol, maxiter : float, int
        Tolerance and iteration cap (default ``max(2N, 100)``).
    preconditioner : {None, "nystrom"}
        ``"nystrom"``: randomized Nyström preconditioner of rank ``nystrom_rank`` (one
        ``N × ℓ`` and one ``P × ℓ`` block, ``ℓ`` more products with ``A`` and ``Aᵀ``).
    seed : int, optional
        Seed of the Nyström sketch.

    Returns
    -------
    y : array (P,)
    info : KernelCGInfo
    """
    xp = A.xp
    m = A.shape[0]
    maxiter = max(2 * m, 100) if maxiter is None else maxiter
    mu = float(damping)

    def K(v):
        return A.matvec(A.rmatvec(v)) + mu * v if mu else A.matvec(A.rmatvec(v))

    P = None
    if preconditioner == "nystrom":
        like = xp.zeros((1,), dtype=A.dtype, device=A.device)
        P = nystrom(xp, lambda X: A.matmat(A.rmatmat(X)), m, nystrom_rank, A.dtype, like, mu,
                    seed)
    w = xp.zeros((m,), dtype=A.dtype, device=A.device)
    res = r
    rnorm = float(xp.linalg.vector_norm(r))
    if rnorm == 0.0:
        return xp.zeros((A.shape[1],), dtype=A.dtype, device=A.device), \
            KernelCGInfo(0, True, P is not None)
    stop = max(rtol, float(xp.finfo(A.dtype).eps)) * rnorm
    z = P.apply(xp, res) if P is not None else res
    p, rz = z, float(xp.vecdot(res, z))
    best, best_norm, converged, iters, restarted = w, rnorm, False, 0, False
    for _ in range(maxiter):
        iters += 1
        q = K(p)
        curv = float(xp.vecdot(p, q))
        if not 0.0 < curv < float("inf"):
            break
        alpha = rz / curv
        w = w + alpha * p
        res = res - alpha * q
        norm = float(xp.linalg.vector_norm(res))
        fresh = norm <= stop
        if fresh:  # converged if the residual recomputed from w agrees
            res = r - K(w)
            norm = float(xp.linalg.vector_norm(res))
        if norm < best_norm:
            best, best_norm = w, norm
        if fresh and (norm <= stop or restarted):
            converged = norm <= stop
            best = w if converged else best  # (the iterate whose residual was recomputed)
            break
        z = P.apply(xp, res) if P is not None else res
        rz_new = float(xp.vecdot(res, z))
        # (a restart, once, from the recomputed residual: p = z)
        p = z if fresh else z + (rz_new / rz) * p
        restarted = restarted or fresh
        rz = rz_new
    return -A.rmatvec(best), KernelCGInfo(iters, converged, P is not None)


def kernel_solve(xp: Any, A: Any, r: Any, mu: float, strict: bool = False) -> Any:
    r"""Dense kernel route: :math:`y = -A^T (AA^T + \mu I)^{-1} r` (``A`` is ``N × P``).

    :math:`\mu > 0`: Cholesky of the ``N × N`` :math:`AA^T + \mu I` (error
    :math:`\sim \epsilon\,\kappa(A)^2`).  :math:`\mu = 0` (or Cholesky failing): the
    eigendecomposition :math:`AA^T = Q\Lambda Q^T` and the minimum-norm solution
    :math:`-A^T Q_k \Lambda_k^{-1} Q_k^T r` over :math:`\lambda > 10\max(N,P)\,\epsilon\,
    \lambda_{\max}`, ten times the Gram's rounding floor (the SVD route cuts :math:`\sigma` at
    :math:`\max(N,P)\,\epsilon\,\sigma_{\max}`; through the Gram, singular values below
    :math:`\sqrt{\max(N,P)\epsilon}\,\sigma_{\max}` cannot be told from zero).  ``strict``
    (μ = 0): ``None`` instead where the Gram cannot give the minimum-norm step to about
    √ε, :math:`\lambda_{\min} < \sqrt{\epsilon}\,\lambda_{\max}` (the caller takes the SVD).
    """
    m, n = A.shape
    # A = c·Â (c a power of two): y = −(1/c)·Âᵀ(ÂÂᵀ + (μ/c²)I)⁻¹ r, whose Gram neither over-
    # nor underflows where AAᵀ would (entries of 1e±155)
    c = C.gram_scale(xp, A)
    A, mu_hat = (A / c if c != 1.0 else A), mu / c / c  # (c² itself may overflow)
    At = xp.matrix_transpose(A)
    if not math.isfinite(mu_hat):  # μ above ‖A‖² by 1e308: y = −Aᵀr/μ to within ε
        return -(At @ r) * (c / mu)
    mu = mu_hat
    K = A @ At
    if mu:
        L, ok = B.cholesky(xp, K, mu)
        if ok:
            return -(At @ B.cho_solve(xp, L, r)) / c
    lam, Q = xp.linalg.eigh(K)
    lam = lam + mu
    eps = float(xp.finfo(A.dtype).eps)
    if strict and not mu and not float(lam[0]) >= eps ** 0.5 * float(xp.max(lam)):
        return None  # (ε·κ(AAᵀ) above √ε, a rank deficiency included)
    cut = GRAM_FLOOR * max(m, n) * float(xp.finfo(A.dtype).eps) * float(xp.max(lam)) \
        if not mu else 0.0
    keep = lam > cut
    f = xp.where(keep, 1.0 / xp.where(keep, lam, xp.ones_like(lam)), xp.zeros_like(lam))
    w = Q @ (f * (xp.matrix_transpose(Q) @ r))
    return -(At @ w) / c


def check_budget(memory_budget: Any) -> float | None:
    """``None`` or a positive number of bytes."""
    if memory_budget is None:
        return None
    return C.real(memory_budget, "memory_budget", low=0.0, low_open=True)
