r"""The Gauss-Newton / Levenberg–Marquardt linear step.

.. math:: (J^TJ + \mu D)\, d = -J^T r,

the minimiser of :math:`\|J d + r\|^2 + \mu\, d^T D d` for a diagonal :math:`D > 0` (``D = I``
by default; Marquardt's scaling takes ``D = diag(JᵀJ)``).  With :math:`\mu = 0` it is the
Gauss-Newton step, the least-squares solution of :math:`J d \approx -r` (the minimum-norm one
when ``J`` is rank deficient).

Methods
-------
``"qr"``
    Householder QR of the stacked matrix :math:`[J;\ \sqrt{\mu D}]`: backward stable, error
    :math:`\sim \epsilon\,\kappa(J)`.  Falls back to ``"lstsq"`` when a pivot of the triangular
    factor is below :math:`\sqrt{\epsilon}` of the largest (rank-deficient or nearly so
    ``J`` with :math:`\mu = 0`), or when there are fewer rows than columns.
``"lstsq"``
    SVD of :math:`J D^{-1/2}`: :math:`d = -D^{-1/2} V \mathrm{diag}(\sigma/(\sigma^2+\mu))
    U^T r`, singular values below :math:`\max(m,n)\,\epsilon\,\sigma_{\max}` dropped when
    :math:`\mu = 0` (the minimum-norm solution, as ``numpy.linalg.lstsq``).
``"cholesky"``
    Cholesky of the ``n × n`` normal matrix: fastest, error :math:`\sim \epsilon\,\kappa(J)^2`.
``"cgls"``
    Matrix-free CGLS on :math:`J D^{-1/2}` (:func:`newtonkit.linalg.cgls`), for operators.
``"kernel"``
    The kernel (Woodbury) form :math:`d = -D^{-1/2}A^T(AA^T + \mu I)^{-1} r`,
    :math:`A = JD^{-1/2}`: Cholesky of the ``m × m`` :math:`AA^T + \mu I` (for :math:`\mu = 0`
    its eigendecomposition, truncated at the Gram's rounding floor; see
    :func:`newtonkit.linalg.kernel.kernel_solve`).  Nothing ``n × n`` is formed; error
    :math:`\sim \epsilon\,\kappa(J)^2`.
``"kernel-cg"``
    The kernel system by matrix-free CG, optionally Nyström-preconditioned
    (:func:`newtonkit.linalg.kernel.kernel_cg`): only ``J @ v`` and ``Jᵀ @ w``.

Routes
------
The methods group into three routes, chosen from the shapes and a memory budget (peak memory
beyond ``J``, ``b`` bytes per entry; :mod:`newtonkit.linalg.kernel`, ``docs/routes.md``):
``"normal"`` (``m ≥ n``; ``"qr"``, ``"lstsq"``, ``"cholesky"``: up to :math:`2(m+n)n\,b`),
``"kernel"`` (``m < n``; :math:`2m^2 b`, no ``n × n``) and ``"matrix-free"`` (``"kernel-cg"``
for ``m < n`` and ``μ > 0``, ``"cgls"`` otherwise; vectors only).  ``method="auto"`` with
``route="auto"`` takes the cheapest accurate dense method that fits the budget
(:func:`newtonkit.linalg.kernel.choose_method`): the Gram of the smaller side (``"kernel"``
or ``"cholesky"``) unless ``m ≥ n`` and the damping does not bound the Gram's conditioning,
then ``"qr"``, or ``m < n`` without damping and a Gram too ill-conditioned for the
minimum-norm step (:math:`\lambda_{\min} < \sqrt{\epsilon}\,\lambda_{\max}`, found by its
eigendecomposition), then ``"lstsq"`` (the SVD).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _backend as B
from ..operators import DiagonalOperator, aslinearoperator
from . import _checks as C
from .kernel import check_budget, choose_method, gram_resolves, kernel_cg, kernel_solve
from .krylov import cgls

METHODS = ("auto", "qr", "lstsq", "cholesky", "cgls", "kernel", "kernel-cg")
ROUTES = ("auto", "normal", "kernel", "matrix-free")
_ROUTE_OF = {"qr": "normal", "lstsq": "normal", "cholesky": "normal", "cgls": "matrix-free",
             "kernel": "kernel", "kernel-cg": "matrix-free"}


@dataclass(frozen=True)
class GaussNewtonInfo:
    """Which method solved the step, with what damping, and (CGLS) iterations and convergence."""

    method: str
    damping: float
    iterations: int | None = None
    converged: bool = True

    @property
    def route(self) -> str:
        """``"normal"``, ``"kernel"`` or ``"matrix-free"`` (see the module docstring)."""
        return _ROUTE_OF[self.method]


def gauss_newton_step(
    J: Any,
    r: Any,
    damping: float = 0.0,
    *,
    diag: Any = None,
    method: str = "auto",
    rtol: float = 1e-10,
    maxiter: int | None = None,
    chunk_size: int | None = None,
    route: str = "auto",
    memory_budget: float | None = None,
    preconditioner: str | None = None,
    nystrom_rank: int = 50,
) -> tuple[Any, GaussNewtonInfo]:
    r"""Solve :math:`(J^TJ + \mu D) d = -J^T r` for the Gauss-Newton / LM step ``d``.

    Parameters
    ----------
    J : array (m, n) or LinearOperator
        Jacobian of the residual.
    r : array (m,)
        Residual.
    damping : float
        :math:`\mu \ge 0`.
    diag : array (n,), optional
        The diagonal of ``D`` (positive); default ones.  It enters only with the damping: at
        ``μ = 0`` the direct methods and ``"cgls"`` give the minimum-norm step.
    method : {"auto", "qr", "lstsq", "cholesky", "cgls", "kernel", "kernel-cg"}
        See the module docstring.  ``"auto"``: from ``route``.
    rtol, maxiter : float, int
        CGLS tolerance (``> 0``) on the normal-equation residual and iteration cap (``>= 1``);
        checked whatever the method.
    chunk_size : int, optional
        Column chunk (``>= 1``) for materialising an operator for the dense methods.
    route : {"auto", "normal", "kernel", "matrix-free"}
        Used when ``method="auto"``.  ``"auto"``: an operator takes ``"matrix-free"``; a dense
        ``J`` the cheapest accurate method (:func:`newtonkit.linalg.kernel.choose_method`):
        ``"kernel"`` when ``m < n``; when ``m ≥ n`` Cholesky of the ``n × n`` Gram
        :math:`J^TJ + \mu D` if the damping bounds its conditioning (:math:`\mu \ge
        \sqrt\epsilon\,\|J\|_F^2/\min D`, one O(mn) pass), else QR; ``"matrix-free"``
        when that method's peak memory exceeds ``memory_budget``.  An explicit ``"normal"``
        is QR, ``"kernel"`` the dense kernel method, ``"matrix-free"`` ``"kernel-cg"`` for
        ``m < n`` and ``"cgls"`` otherwise.  ``info.route`` reports the route taken.
    memory_budget : float, optional
        Bytes (default 2 GiB, :data:`newtonkit.linalg.kernel.DEFAULT_MEMORY_BUDGET`).
    preconditioner : {None, "nystrom"}
        For ``"kernel-cg"``: a randomized Nyström preconditioner of rank ``nystrom_rank``.

    Returns
    -------
    d : array (n,)
    info : GaussNewtonInfo
    """
    J, xp, is_dense = C.matrix_or_operator(J, "J")
    m, n = J.shape
    mu = C.real(damping, "damping", low=0.0)
    method = C.choice(method, "method", METHODS)
    rtol = C.real(rtol, "rtol", low=0.0, low_open=True)
    maxiter = C.integer(maxiter, "maxiter", low=1, optional=True)
    chunk_size = C.integer(chunk_size, "chunk_size", low=1, optional=True)
    r = C.vector(xp, r, m, "r", J.dtype)
    if diag is not None:
        diag = C.vector(xp, diag, n, "diag", J.dtype)
        if not bool(xp.all(diag > 0)):
            raise ValueError("diag (the scaling D) must be strictly positive")
    route = C.choice(route, "route", ROUTES)
    memory_budget = check_budget(memory_budget)
    if preconditioner not in (None, "nystrom"):
        raise ValueError(f"unknown preconditioner {preconditioner!r}; choose None or 'nystrom'")
    nystrom_rank = C.integer(nystrom_rank, "nystrom_rank", low=1)
    auto = method == "auto" and route == "auto"
    if auto:
        gram_ok = is_dense and m >= n and _gram_resolves(xp, J, mu, diag)
        method = choose_method(m, n, B.itemsize(J.dtype), dense=is_dense,
                               memory_budget=memory_budget, scaled=diag is not None and mu > 0,
                               gram_ok=gram_ok, damped=mu > 0)
    elif method == "auto":
        method = {"normal": "qr", "kernel": "kernel",
                  "matrix-free": "kernel-cg" if m < n and mu > 0 else "cgls"}[route]

    if method == "kernel-cg":
        A = aslinearoperator(J)
        s = None if (diag is None or not mu) else 1.0 / xp.sqrt(diag)
        if s is not None:
            A = A @ DiagonalOperator(s)
        y, kinfo = kernel_cg(A, r, mu, rtol=rtol, maxiter=maxiter, preconditioner=preconditioner,
                             nystrom_rank=nystrom_rank)
        d = y if s is None else s * y
        return d, GaussNewtonInfo("kernel-cg", mu, kinfo.iterations, kinfo.converged)

    if method == "cgls":
        A = aslinearoperator(J)
        # (μ = 0: no scaling, so that a rank-deficient J gives the minimum-norm step)
        s = None if (diag is None or not mu) else 1.0 / xp.sqrt(diag)
        if s is not None:
            A = A @ DiagonalOperator(s)
        y, kinfo = cgls(A, -r, mu, rtol=rtol, maxiter=maxiter)
        d = y if s is None else s * y
        return d, GaussNewtonInfo("cgls", mu, kinfo.iterations, kinfo.converged)

    Jd = C.dense(J, chunk_size, "J")
    if method == "kernel":
        s = None if (diag is None or not mu) else 1.0 / xp.sqrt(diag)
        # auto, undamped: the Gram only where it resolves the minimum-norm step, else the SVD
        y = kernel_solve(xp, Jd if s is None else Jd * s[None, :], r, mu, strict=auto)
        if y is not None:
            return (y if s is None else s * y), GaussNewtonInfo("kernel", mu)
        return _lstsq(xp, Jd, r, mu, diag), GaussNewtonInfo("lstsq", mu)
    if method == "cholesky":
        Jt = xp.matrix_transpose(Jd)
        G = Jt @ Jd
        if mu:
            dvec = diag if diag is not None else xp.ones((n,), dtype=Jd.dtype,
                                                          device=B.device(Jd))
            G = G + mu * (C.eye_like(xp, n, Jd) * dvec[None, :])
        L, ok = B.cholesky(xp, G)
        if not ok and auto:  # gram_resolves bounds κ; a failure here means J is not finite
            d = _qr(xp, Jd, r, mu, diag)
            return (d, GaussNewtonInfo("qr", mu)) if d is not None else \
                (_lstsq(xp, Jd, r, mu, diag), GaussNewtonInfo("lstsq", mu))
        if not ok:
            raise C.LinAlgError("the normal matrix JᵀJ + μD is singular to working precision; "
                                "use damping > 0 or method='lstsq'/'qr'")
        return -B.cho_solve(xp, L, Jt @ r), GaussNewtonInfo("cholesky", mu)
    if method == "qr":
        d = _qr(xp, Jd, r, mu, diag)
        if d is not None:
            return d, GaussNewtonInfo("qr", mu)
    return _lstsq(xp, Jd, r, mu, diag), GaussNewtonInfo("lstsq", mu)


def _gram_resolves(xp, J, mu, diag):
    r""":func:`newtonkit.linalg.kernel.gram_resolves` for ``A = J D^{-1/2}``, with the bound
    :math:`\|A\|_F^2 \le \|J\|_F^2 / \min D`: one contiguous O(mn) pass, no temporary
    (column norms along the strided axis cost 20× more: 26 ms at 4,096 × 1,000)."""
    if not mu:
        return False
    flat = xp.reshape(J, (-1,))
    frob2 = float(xp.vecdot(flat, flat))
    if diag is not None:
        frob2 /= float(xp.min(diag))
    return gram_resolves(mu, frob2, float(xp.finfo(J.dtype).eps))


def _qr(xp, J, r, mu, diag):
    m, n = J.shape
    if mu:
        sq = xp.sqrt(mu * diag) if diag is not None else \
            mu ** 0.5 * xp.ones((n,), dtype=J.dtype, device=B.device(J))
        A = xp.concat([J, C.eye_like(xp, n, J) * sq[None, :]], axis=0)
        rhs = xp.concat([r, xp.zeros((n,), dtype=J.dtype, device=B.device(J))])
    else:
        A, rhs = J, r
    if A.shape[0] < n:
        return None
    R, qtb, _ = B.qr_r(xp, A, rhs)  # Q is not formed
    dR = xp.abs(xp.linalg.diagonal(R))
    # R's diagonal is not strictly rank revealing without pivoting: rounding leaves pivots of a
    # rank-deficient J at ~1e-15 relative, not 0.  Below sqrt(eps) the SVD decides the rank.
    if float(xp.min(dR)) <= float(xp.finfo(J.dtype).eps) ** 0.5 * float(xp.max(dR)):
        return None
    return -B.solve_triangular(xp, R, qtb, lower=False)


def _lstsq(xp, J, r, mu, diag):
    m, n = J.shape
    s = 1.0 / xp.sqrt(diag) if (diag is not None and mu) else None
    A = J * s[None, :] if s is not None else J
    U, sv, Vt = xp.linalg.svd(A, full_matrices=False)
    if mu:
        f = sv / (sv * sv + mu)
    else:
        cut = max(m, n) * float(xp.finfo(J.dtype).eps) * float(sv[0])
        keep = sv > cut
        f = xp.where(keep, 1.0 / xp.where(keep, sv, xp.ones_like(sv)), xp.zeros_like(sv))
    y = -(xp.matrix_transpose(Vt) @ (f * (xp.matrix_transpose(U) @ r)))
    return y * s if s is not None else y
