r"""Truncated matrix powers of a Jacobian: the Half-Inverse Gradient direction.

For :math:`J = U \Sigma V^T` (``m × n``) and an exponent :math:`\kappa`,

.. math:: J^{\kappa} g = V_k \Sigma_k^{\kappa} U_k^T g,

where only the ``k`` singular values strictly above the threshold are kept; the others are
**discarded** (set to zero), never clamped (Schnell, Holl & Thuerey, ICLR 2022).  :math:`\kappa
= -1/2` is HIG, :math:`\kappa = -1` the Moore–Penrose pseudo-inverse, :math:`\kappa = +1` gives
:math:`J^T` on the kept subspace.  The ``n × m`` matrix :math:`J^\kappa` is never formed.

Routes
------
``"svd"``
    Thin SVD of ``J``: accurate to :math:`\epsilon\,\sigma_{\max}`.
``"gram"``
    Eigendecomposition of the smaller Gram matrix.  For ``m ≤ n``,
    :math:`JJ^T = U \Sigma^2 U^T` and :math:`J^\kappa g = J^T U_k \Sigma_k^{\kappa-1} U_k^T g`;
    for ``m > n``, :math:`J^TJ = V\Sigma^2V^T` and :math:`J^\kappa g = V_k\Sigma_k^{\kappa-1}
    V_k^T J^T g`.  Forming the Gram squares the condition number: its eigenvalues carry an
    absolute error of about :math:`\epsilon\,\sigma_{\max}^2`, so singular values below
    :math:`\sim\sqrt{\epsilon}\,\sigma_{\max}` are noise.  The Gram is therefore formed in
    float64 whenever the relative threshold is below ``GRAM_SAFETY·sqrt(eps)`` of the input
    dtype (float32: 3.5e-3), and the SVD route is taken when it is below that of float64
    (1.5e-7).  The ``min(m,n)³`` eigensolve plus one ``m·n·min(m,n)`` product is cheaper than
    the SVD at every shape (3.4× at 1,024 × 1,000, more for rectangular ``J``).
``"kernel"`` / ``"normal"``
    The Gram route with the Gram named: ``"kernel"`` always uses the ``m × m``
    :math:`JJ^T` (nothing ``n × n``: the route for ``m < n``), ``"normal"`` the ``n × n``
    :math:`J^TJ`.  ``"gram"`` picks the smaller one; ``info.route`` reports which was used
    (``"kernel"``, ``"normal"``, with ``"-float64"`` when the Gram was formed in float64).
``"randomized"``
    Randomized range finder (Halko, Martinsson & Tropp 2011, Alg. 4.4 with ``q`` power
    iterations) for a matrix-free operator and a target ``rank``: ``rank + oversampling``
    products with ``J`` and ``Jᵀ`` per pass.
``"matrix-free"``
    The randomized route with the rank found from the threshold: the sketch (``ℓ`` columns,
    first ``RANK_START + oversampling``) doubles until the smallest singular value it
    computes is at or below the threshold (or ``ℓ = min(m, n)``); no ``rank`` needed.

Peak memory (``b`` bytes per entry, beyond ``J``): ``"svd"`` about :math:`(m+n)\min(m,n)\,b`
(the thin factors); ``"kernel"`` :math:`2m^2 b` (plus an ``m × n`` float64 copy for the float64
Gram of a float32 ``J``); ``"normal"`` :math:`2n^2 b`; ``"matrix-free"`` :math:`(m+n)\,\ell\,b`
for the final sketch size ``ℓ``.  ``"auto"`` takes ``"matrix-free"`` for an operator whose
materialisation plus the dense route would exceed ``memory_budget`` (and for a dense ``J``
whose dense route would), else as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import _backend as B
from ..operators import LinearOperator
from . import _checks as C
from .kernel import DEFAULT_MEMORY_BUDGET, check_budget, check_fits

ROUTES = ("auto", "svd", "gram", "kernel", "normal", "randomized", "matrix-free")
RANK_START = 16  # first sketch of the matrix-free route: RANK_START + oversampling columns
GRAM_SAFETY = 10.0  # keep the threshold 10× above the Gram's noise floor sqrt(eps)·σ_max


@dataclass(frozen=True)
class HalfInverseInfo:
    """What a truncated half-inverse did.

    Attributes
    ----------
    rank : int
        Number ``k`` of singular values kept (strictly above ``threshold``).
    singular_values : array (k,)
        The kept singular values, descending, on the input's backend and device.
    threshold : float
        The absolute cutoff used.
    sigma_max : float
        Largest singular value (estimate for the randomized route).
    route : str
        The route taken (``"svd"``, ``"kernel"``, ``"normal"``, ``"kernel-float64"``,
        ``"normal-float64"``, ``"randomized"`` or ``"matrix-free"``).
    """

    rank: int
    singular_values: Any
    threshold: float
    sigma_max: float
    route: str


def half_inverse(
    J: Any,
    g: Any,
    exponent: float = -0.5,
    truncation: float = 1e-6,
    *,
    relative: bool = True,
    route: str = "auto",
    rank: int | None = None,
    oversampling: int = 10,
    power_iterations: int = 2,
    seed: int | None = 0,
    chunk_size: int | None = None,
    memory_budget: float | None = None,
) -> tuple[Any, HalfInverseInfo]:
    r"""Apply the truncated power :math:`J^\kappa = V_k \Sigma_k^\kappa U_k^T` to ``g``.

    Parameters
    ----------
    J : array (m, n) or LinearOperator
        The Jacobian (for HIG: of the physics outputs, stacked over the batch).
    g : array (m,)
        Output-space vector, for HIG :math:`(\partial L/\partial y)^T`.
    exponent : float
        :math:`\kappa`; -1/2 for HIG, -1 for the pseudo-inverse, +1 for :math:`J^T`.
    truncation : float
        Singular values :math:`\sigma \le` threshold are discarded.  With ``relative`` (the
        default) the threshold is ``truncation · σ_max`` and ``truncation`` must lie in
        ``[0, 1)``; otherwise it is absolute and ``truncation >= 0``.
    route : {"auto", "svd", "gram", "kernel", "normal", "randomized", "matrix-free"}
        See the module docstring.  ``"auto"``: ``"randomized"`` for an operator with a
        ``rank``; ``"matrix-free"`` when the dense route does not fit ``memory_budget``;
        otherwise (dense, or an operator materialised with ``to_dense``) the Gram route of the
        smaller side (``"kernel"`` for ``m ≤ n``, ``"normal"`` for ``m > n``; cheaper than the
        SVD at every shape) when the threshold allows it, else ``"svd"`` (:func:`choose_route`).
    rank : int, optional
        Target rank for the randomized route (at most ``min(m, n)``).
    oversampling, power_iterations : int
        Randomized route: extra sample columns and power (subspace) iterations (``>= 0``).
    seed : int, optional
        Seed of the randomized route's test matrix.
    chunk_size : int, optional
        Column chunk (``>= 1``) for materialising an operator.
    memory_budget : float, optional
        Bytes for the automatic route choice (default 2 GiB).

    Returns
    -------
    d : array (n,)
        :math:`J^\kappa g` on the backend, dtype and device of ``J``.
    info : HalfInverseInfo
    """
    J, xp, is_dense = C.matrix_or_operator(J, "J")
    m, n = J.shape
    exponent = C.real(exponent, "exponent", low=-4.0, high=4.0)
    relative = bool(relative)
    truncation = C.real(truncation, "truncation", low=0.0, high=None)
    if relative and truncation >= 1.0:
        raise ValueError(f"a relative truncation must lie in [0, 1) (it is a fraction of "
                         f"σ_max), got {truncation:g}; pass relative=False for an absolute one")
    route = C.choice(route, "route", ROUTES)
    if rank is not None:
        if isinstance(rank, bool) or int(rank) != rank or not 1 <= rank <= min(m, n):
            raise ValueError(f"rank must be an integer in [1, {min(m, n)}], got {rank!r}")
        rank = int(rank)
    if route == "randomized" and rank is None:
        raise ValueError("route='randomized' needs a target rank=")
    oversampling = C.integer(oversampling, "oversampling", low=0)
    power_iterations = C.integer(power_iterations, "power_iterations", low=0)
    chunk_size = C.integer(chunk_size, "chunk_size", low=1, optional=True)
    g = C.vector(xp, g, m, "g", J.dtype)

    budget = check_budget(memory_budget)
    if route == "auto":
        route = "randomized" if (not is_dense and rank is not None) else "dense-auto"
    if route == "dense-auto":
        route = choose_route(m, n, J.dtype, is_dense, truncation, relative, budget)
    if route in ("randomized", "matrix-free"):
        return _randomized(J, xp, g, exponent, truncation, relative,
                           rank if route == "randomized" else None,
                           oversampling, power_iterations, seed)
    A = C.dense(J, chunk_size, "J")
    if route in ("gram", "kernel", "normal"):
        outer = m <= n if route == "gram" else route == "kernel"
        return _gram(A, xp, g, exponent, truncation, relative, outer)
    return _svd(A, xp, g, exponent, truncation, relative)


def choose_route(m: int, n: int, dtype: Any, is_dense: bool, truncation: float,
                 relative: bool, memory_budget: float | None) -> str:
    r"""The automatic dense route: the cheaper of ``"gram"`` (the Gram of the smaller side,
    :math:`2mnk + 9k^3` flops, ``k = min(m, n)``) and ``"svd"`` (a thin SVD, several times the
    Gram's cost at every shape: bidiagonalisation alone is :math:`4mnk - 4k^3/3` at a
    fraction of the matmul rate) that resolves the threshold and fits ``memory_budget``
    (:func:`_dense_memory`); ``"matrix-free"`` when neither fits.  The Gram is taken when the
    threshold is resolvable (:func:`_gram_resolves`), the SVD otherwise."""
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    order = ("gram", "svd") if _gram_resolves(truncation, relative) else ("svd",)
    for route in order:
        if _dense_memory(route, m, n, dtype, is_dense) <= budget:
            return route
    # the first sketch holds (m + n)·RANK_START entries at least
    check_fits((m + n) * RANK_START * B.itemsize(dtype), memory_budget)
    return "matrix-free"


def _dense_memory(route: str, m: int, n: int, dtype: Any, is_dense: bool) -> int:
    b = B.itemsize(dtype)
    k = min(m, n)
    extra = 0 if is_dense else m * n * b
    if route == "gram":
        return extra + 2 * k * k * 8 + (m * n * 8 if b == 4 else 0)
    return extra + (m + n) * k * b


def _gram_resolves(truncation: float, relative: bool) -> bool:
    # An absolute threshold is checked against σ_max after the eigensolve.
    return not relative or truncation >= GRAM_SAFETY * 2.220446049250313e-16 ** 0.5


def _cutoff(s_max: float, truncation: float, relative: bool) -> float:
    return truncation * s_max if relative else truncation


def _powers(s: Any, exponent: float) -> Any:
    return s ** exponent


def truncated_svd(A: Any, truncation: float = 1e-6, *,
                  relative: bool = True) -> tuple[Any, Any, Any, float, float]:
    r"""Thin SVD :math:`A = U\Sigma V^T` with the singular values at or below the cutoff dropped.

    Parameters
    ----------
    A : array (m, n)
        Dense matrix on any array-API backend.
    truncation : float
        The cutoff: :math:`\sigma \le` ``truncation`` :math:`\cdot\,\sigma_{\max}`
        (``relative=True``) or :math:`\sigma \le` ``truncation`` is dropped.

    Returns
    -------
    U_k : array (m, k)
    s_k : array (k,)
        The kept singular values (strictly above the cutoff), descending.
    Vt_k : array (k, n)
    threshold : float
        The absolute cutoff.
    sigma_max : float
        :math:`\sigma_{\max}` (0 for an empty ``A``).
    """
    xp = B.array_namespace(A)
    truncation = C.real(truncation, "truncation", low=0.0)
    U, s, Vt = xp.linalg.svd(A, full_matrices=False)
    s_max = float(s[0]) if s.shape[0] else 0.0
    thr = _cutoff(s_max, truncation, relative)
    k = int(xp.count_nonzero(s > thr))
    return U[:, :k], s[:k], Vt[:k, :], thr, s_max


def _svd(A, xp, g, exponent, truncation, relative):
    U, s, Vt, thr, s_max = truncated_svd(A, truncation, relative=relative)
    k = s.shape[0]
    if k == 0:
        return xp.zeros((A.shape[1],), dtype=A.dtype, device=B.device(A)), \
            HalfInverseInfo(0, s, thr, s_max, "svd")
    c = _powers(s, exponent) * (xp.matrix_transpose(U) @ g)
    d = xp.matrix_transpose(Vt) @ c
    return d, HalfInverseInfo(k, s, thr, s_max, "svd")


def _gram(A, xp, g, exponent, truncation, relative, outer):
    m, n = A.shape
    dtype = A.dtype
    eps = float(xp.finfo(dtype).eps)
    upcast = dtype != xp.float64 and (not relative or truncation < GRAM_SAFETY * eps ** 0.5)
    W = xp.astype(A, xp.float64) if upcast else A
    gw = xp.astype(g, xp.float64) if upcast else g
    # J = c·Ĵ (c a power of two): the Gram of Ĵ, whose singular values are σ/c, and
    # J^κ g = c^κ Ĵ^κ g (the Gram of a J of 1e±155 would over- or underflow)
    c = C.gram_scale(xp, W)
    W = W / c if c != 1.0 else W
    Wt = xp.matrix_transpose(W)
    G = W @ Wt if outer else Wt @ W
    lam, Q = xp.linalg.eigh(G)  # ascending
    lam = xp.flip(lam)
    Q = xp.flip(Q, axis=1)
    s = xp.sqrt(xp.clip(lam, 0.0, None))  # Ĵ's
    s_max = c * float(s[0])
    thr = _cutoff(s_max, truncation, relative)
    if thr < GRAM_SAFETY * float(xp.finfo(W.dtype).eps) ** 0.5 * s_max:
        # The threshold lies in the Gram's noise floor: only the SVD resolves it.
        return _svd(A, xp, g, exponent, truncation, relative)
    k = int(xp.count_nonzero(s > thr / c))
    name = ("kernel" if outer else "normal") + ("-float64" if upcast else "")
    if k == 0:
        return xp.zeros((n,), dtype=dtype, device=B.device(A)), \
            HalfInverseInfo(0, xp.astype(s[:0], dtype), thr, s_max, name)
    sk, Qk = s[:k], Q[:, :k]
    scale = _powers(sk, exponent - 1.0)
    if outer:  # Q = U:  Ĵ^κ g = Ĵᵀ U_k Σ̂_k^(κ-1) U_kᵀ g
        d = Wt @ (Qk @ (scale * (xp.matrix_transpose(Qk) @ gw)))
    else:  # Q = V:  Ĵ^κ g = V_k Σ̂_k^(κ-1) V_kᵀ Ĵᵀ g
        d = Qk @ (scale * (xp.matrix_transpose(Qk) @ (Wt @ gw)))
    return xp.astype(c ** exponent * d, dtype), \
        HalfInverseInfo(k, xp.astype(c * sk, dtype), thr, s_max, name)


def _randomized(J, xp, g, exponent, truncation, relative, rank, oversampling, q, seed):
    """Fixed ``rank`` (route "randomized"), or ``rank=None``: grow the sketch until its smallest
    singular value is at or below the threshold (route "matrix-free")."""
    m, n = J.shape
    name = "randomized" if rank is not None else "matrix-free"
    ell = min(m, n, (rank if rank is not None else RANK_START) + oversampling)
    while True:
        like, Y, Vb, s, Ubt = _sketch(J, xp, ell, q, seed)
        s_max = float(s[0])
        thr = _cutoff(s_max, truncation, relative)
        if rank is not None or float(s[-1]) <= thr or ell == min(m, n):
            break
        ell = min(m, n, 2 * ell)
    k = int(xp.count_nonzero(s > thr))
    k = k if rank is None else min(rank, k)
    if k == 0:
        return xp.zeros((n,), dtype=J.dtype, device=B.device(like)), \
            HalfInverseInfo(0, s[:0], thr, s_max, name)
    U = Y @ xp.matrix_transpose(Ubt[:k, :])  # (m, k)
    c = _powers(s[:k], exponent) * (xp.matrix_transpose(U) @ g)
    d = Vb[:, :k] @ c
    return d, HalfInverseInfo(k, s[:k], thr, s_max, name)


def _sketch(J, xp, ell, q, seed):
    """Range finder with ``ell`` columns and ``q`` power iterations; ``(like, Y, Vb, s, Ubt)``
    with ``Yᵀ J = Ub diag(s) Vbᵀ``."""
    op = J if isinstance(J, LinearOperator) else None
    mm = (lambda X: op.matmat(X)) if op is not None else (lambda X: J @ X)
    rmm = (lambda Y: op.rmatmat(Y)) if op is not None else \
        (lambda Y: xp.matrix_transpose(J) @ Y)
    n = J.shape[1]
    like = xp.zeros((1,), dtype=J.dtype, device=op.device if op is not None else B.device(J))
    Omega = B.standard_normal(xp, (n, ell), J.dtype, like, seed)
    Y = mm(Omega)
    if not B.all_finite(xp, Y):
        raise ValueError("J has non-finite entries: its products gave nan or inf")
    Y, _ = xp.linalg.qr(Y)
    for _ in range(q):
        Z, _ = xp.linalg.qr(rmm(Y))
        Y, _ = xp.linalg.qr(mm(Z))
    Bt = rmm(Y)  # (n, ell) = (Yᵀ J)ᵀ
    # SVD of the small factor Yᵀ J = Ub S Vbᵀ via Bt = Vb S Ubᵀ.
    Vb, s, Ubt = xp.linalg.svd(Bt, full_matrices=False)
    return like, Y, Vb, s, Ubt
