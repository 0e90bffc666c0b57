r"""Regularised Cholesky solve for Newton steps.

Solve :math:`(H + \tau I) h = -g` for a symmetric, possibly indefinite ``H``.  The shift
:math:`\tau \ge 0` makes :math:`H + \tau I` positive definite, so ``h`` is a descent direction:
:math:`g^T h = -g^T (H + \tau I)^{-1} g < 0`.

Shift rules
-----------
``"eigen"``
    :math:`\tau = \max(-c\,\lambda_{\min}(H), 0)` with ``c = factor`` (1.5 as in the deepwave
    Hessian example), so the smallest eigenvalue of :math:`H + \tau I` is
    :math:`(1 - c)\lambda_{\min} > 0` when :math:`\lambda_{\min} < 0`.  Should the factorisation
    still fail (a singular positive semi-definite ``H`` gives :math:`\tau = 0`), τ grows as in
    ``"retry"``.
``"retry"``
    Try :math:`\tau = 0`, then :math:`\tau_0, \tau_0 \gamma, \tau_0\gamma^2, \dots` until the
    Cholesky factorisation succeeds (Nocedal & Wright, Alg. 3.3).
``"fixed"``
    A given :math:`\tau`; a failed factorisation raises :class:`LinAlgError`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from .. import _backend as B
from . import _checks as C
from .lanczos import lanczos

SHIFTS = ("eigen", "retry", "fixed")


@dataclass(frozen=True)
class CholeskyInfo:
    """What a regularised Cholesky solve did.

    Attributes
    ----------
    tau : float
        The shift used.
    lambda_min : float or None
        The smallest-eigenvalue estimate (``None`` when the rule did not compute one).
    n_factorizations : int
        Cholesky factorisations attempted (failed ones included).
    shift : str
        The shift rule.
    """

    tau: float
    lambda_min: float | None
    n_factorizations: int
    shift: str


def regularized_cholesky_solve(
    H: Any,
    g: Any,
    *,
    shift: str = "eigen",
    factor: float = 1.5,
    tau: float | None = None,
    tau0: float | None = None,
    growth: float = 10.0,
    max_factorizations: int = 40,
    eigensolver: str = "dense",
    chunk_size: int | None = None,
) -> tuple[Any, CholeskyInfo]:
    r"""Solve :math:`(H + \tau I) h = -g` with a shift that makes the matrix positive definite.

    Parameters
    ----------
    H : array (n, n) or LinearOperator
        Symmetric matrix (only its lower triangle is read by the factorisation).  A matrix-free
        operator is materialised with ``to_dense(chunk_size)``.  A matrix that is not symmetric
        up to rounding, :math:`\|H - H^T\|_F > 2000\sqrt{n}\,\varepsilon\,\|H\|_F`, raises
        ``ValueError``.
    g : array (n,)
        Right-hand side (the gradient).
    shift : {"eigen", "retry", "fixed"}
        Shift rule (module docstring).
    factor : float
        ``c`` in the eigen rule, ``> 1`` for a positive definite result.
    tau : float
        The shift for ``shift="fixed"``.
    tau0 : float, optional
        First shift of the retry sequence (default 0).  After a failure the shift becomes
        ``max(γ·τ, 1e-3·mean|diag H|, ε·max|H|)`` (1 for ``H = 0``, which has no scale of its
        own: then ``h = −g``) and then grows by ``γ`` per retry.
    growth : float
        Factor ``γ > 1`` between retries.
    max_factorizations : int
        Give up (``LinAlgError``) after this many failed factorisations.
    eigensolver : {"dense", "lanczos"}
        How the eigen rule finds :math:`\lambda_{\min}`: a dense symmetric eigensolver
        (ARPACK ``eigsh`` on the host, LAPACK bisection for float64 up to n = 4096; the
        backend's ``eigvalsh`` on a device) or Lanczos on ``H``'s action.
    chunk_size : int, optional
        Column chunk (``>= 1``) for materialising an operator.

    Returns
    -------
    h : array (n,)
        The step :math:`-(H + \tau I)^{-1} g`, same backend, dtype and device as ``H``.
    info : CholeskyInfo
    """
    H, xp, _ = C.matrix_or_operator(H, "H", square=True)
    n = H.shape[0]
    shift = C.choice(shift, "shift rule", SHIFTS)
    eigensolver = C.choice(eigensolver, "eigensolver", ("dense", "lanczos"))
    factor = C.real(factor, "factor", low=0.0, low_open=True)
    growth = C.real(growth, "growth", low=1.0, low_open=True)
    max_factorizations = C.integer(max_factorizations, "max_factorizations", low=1)
    chunk_size = C.integer(chunk_size, "chunk_size", low=1, optional=True)
    if shift == "fixed":
        if tau is None:
            raise ValueError("shift='fixed' needs tau=")
        tau = C.real(tau, "tau", low=0.0)
    elif tau is not None:
        raise ValueError(f"tau= is only used with shift='fixed' (shift is {shift!r})")
    g = C.vector(xp, g, n, "g", H.dtype)

    Hd = C.dense(H, chunk_size, "H")
    C.check_symmetric(xp, Hd, "H")
    lam = None
    if shift == "eigen":
        lam = lanczos(H)[0] if eigensolver == "lanczos" else B.smallest_eigenvalue(xp, Hd)

    if shift == "fixed":
        taus = iter([tau])
    else:
        if shift == "eigen":
            first = max(-factor * lam, 0.0)
        else:
            first = 0.0 if tau0 is None else C.real(tau0, "tau0", low=0.0)
        taus = _shift_sequence(first, lambda: _smallest_retry_shift(xp, Hd), growth)

    tried: list[float] = []
    for t in itertools.islice(taus, max_factorizations):
        tried.append(t)
        L, ok = B.cholesky(xp, Hd, shift=t)
        if ok:
            h = -B.cho_solve(xp, L, g)
            return h, CholeskyInfo(float(t), lam, len(tried), shift)
    raise C.LinAlgError(
        f"Cholesky of H + tau*I failed {len(tried)} times (last tau={tried[-1]!r}, shift rule "
        f"{shift!r}); "
        f"H may have non-finite or huge entries, or use a larger tau/tau0"
    )


def _smallest_retry_shift(xp: Any, Hd: Any) -> float:
    """The first nonzero retry shift: 1e-3 of the mean |diagonal|, at least ε·max|H|; 1 for
    H = 0, which carries no scale (a subnormal shift made the step −g/τ overflow)."""
    scale = float(xp.mean(xp.abs(xp.linalg.diagonal(Hd))))
    biggest = float(xp.max(xp.abs(Hd)))
    if biggest == 0.0:
        return 1.0
    tiny = float(xp.finfo(Hd.dtype).eps) * max(scale, biggest)
    return max(1e-3 * scale, tiny)


def _shift_sequence(first: float, t_min, growth: float):
    # t_min is a callable: its O(n²) reductions are only paid when a factorisation fails.
    yield first
    t = max(first * growth, t_min())
    while True:
        yield t
        t *= growth
