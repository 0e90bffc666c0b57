"""Structure tags and how they propagate.

``symmetric``: ``A = Aᵀ`` (square).  ``positive_semidefinite``: symmetric with ``xᵀAx >= 0``.
``positive_definite``: symmetric with ``xᵀAx > 0`` for ``x != 0``.  A stronger tag implies the
weaker ones, so ``normalize`` adds them.  Solvers trust tags without checking.
"""

from __future__ import annotations

from typing import Any

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
