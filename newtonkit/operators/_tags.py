"""Structure tags and how they propagate.

``symmetric``: ``A = Aᵀ`` (square).  ``positive_semidefinite``: symmetric with ``xᵀAx >= 0``.
``positive_definite``: symmetric with ``xᵀAx > 0`` for ``x != 0``.  A stronger tag implies the
weaker ones, so ``normalize`` adds them.  Solvers trust tags without checking.
"""

from __future__ import annotations

import math
from typing import Any

from .. import _backend as B

SYMMETRIC = "symmetric"
PSD = "positive_semidefinite"
PD = "positive_definite"
KNOWN = frozenset({SYMMETRIC, PSD, PD})


def normalize(tags: Any, shape: tuple[int, int]) -> frozenset[str]:
    """Validated tags closed under implication (PD ⇒ PSD ⇒ symmetric)."""
    if isinstance(tags, str):
        tags = (tags,)
    out = set(tags)
    unknown = out - KNOWN
    if unknown:
        raise ValueError(f"unknown operator tags {sorted(unknown)}; known: {sorted(KNOWN)}")
    if PD in out:
        out.add(PSD)
    if PSD in out:
        out.add(SYMMETRIC)
    if out and shape[0] != shape[1]:
        raise ValueError(f"tags {sorted(out)} need a square operator, got shape {shape}")
    return frozenset(out)


def of_sum(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    out = set()
    if SYMMETRIC in a and SYMMETRIC in b:
        out.add(SYMMETRIC)
    if PSD in a and PSD in b:
        out.add(PSD)
        if PD in a or PD in b:
            out.add(PD)
    return frozenset(out)


def of_scaled(a: frozenset[str], c: float) -> frozenset[str]:
    if c > 0:
        return a
    if c == 0:
        return frozenset({SYMMETRIC, PSD}) & a
    return frozenset({SYMMETRIC}) & a


# c in the symmetry test ‖H − Hᵀ‖_F ≤ c·√n·ε·‖H‖_F (check_symmetric).  Model: an exactly
# symmetric S = AᵀA (A: k × n; a Gauss–Newton term, the chain rule through a layer) formed in
# floating point.  Each entry is a k-term inner product with |fl(a_iᵀa_j) − a_iᵀa_j| ≤
# γ_k·‖a_i‖‖a_j‖ (Higham, Accuracy and Stability, (3.5)), so ‖H − S‖_F ≤ γ_k·‖A‖_F² =
# γ_k·tr(S) ≤ γ_k·√n·‖S‖_F and ‖H − Hᵀ‖_F ≤ 2γ_k·√n·‖H‖_F.  Rounding errors that behave like
# independent random variables give γ_k ≈ √k·ε (Higham & Mary, SIAM J. Sci. Comput. 41, 2019);
# sums of up to k = 10⁶ terms (a million data points) give γ_k = 10³·ε, so c = 2·10³.
SYMMETRY_C = 2.0e3


def check_symmetric(xp: Any, H: Any, name: str) -> None:
    r"""Raise ``ValueError`` unless the dense square ``H`` is symmetric up to rounding.

    Symmetric up to rounding means :math:`\|H - H^T\|_F \le c\,\sqrt{n}\,\varepsilon\,\|H\|_F`
    with ``ε`` the dtype's machine epsilon and ``c = 2000`` (:data:`SYMMETRY_C`: the rounding of
    a symmetric ``AᵀA`` from sums of up to 10⁶ terms).  Two Frobenius norms, no
    factorisation; a matrix with nan or inf entries is left to the finiteness checks.
    """
    n = H.shape[0]
    asym = B.norm(xp, xp.reshape(H - xp.matrix_transpose(H), (-1,)))
    size = B.norm(xp, xp.reshape(H, (-1,)))
    bound = SYMMETRY_C * math.sqrt(n) * float(xp.finfo(H.dtype).eps) * size
    if asym > bound:  # False for nan
        raise ValueError(
            f"{name} is not symmetric: ‖H − Hᵀ‖_F = {asym:.3g} exceeds {bound:.3g} = "
            f"{SYMMETRY_C:g}·√n·ε·‖H‖_F (n = {n}, ε = {float(xp.finfo(H.dtype).eps):.3g}, "
            f"‖H‖_F = {size:.3g}), more than the rounding of a symmetric computation; pass a "
            f"symmetric matrix, for example (H + Hᵀ)/2"
        )
