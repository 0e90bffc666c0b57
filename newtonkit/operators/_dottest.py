"""The dot-product (adjoint) test, shipped for users' own operators."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _backend as B
from ._base import LinearOperator
from ._kinds import aslinearoperator


def dottest(A: Any, *, rtol: float | None = None, seed: int = 0,
            raise_error: bool = True) -> tuple[float, float]:
    """Check ``⟨A x, y⟩ = ⟨x, Aᵀ y⟩`` for random ``x``, ``y``.

    Parameters
    ----------
    A : LinearOperator or array
    rtol : float, optional
        Allowed ``|⟨Ax,y⟩ − ⟨x,Aᵀy⟩| / max(‖Ax‖‖y‖, ‖x‖‖Aᵀy‖)`` (the scale of the rounding
        in either inner product); default ``1e-4`` for float32, ``1e-10`` for float64.
    seed : int
        Seed of the random vectors.
    raise_error : bool
        Raise ``AssertionError`` when the test fails (else only return the two values).

    Returns
    -------
    (yᵀAx, xᵀAᵀy) : tuple of float

    Notes
    -----
    One random pair sees an error ``E`` in the adjoint only through ``xᵀEy``, which may happen
    to be tiny: in float32 (rtol 1e-4) about a quarter of the pairs miss a rank-one error of
    relative size 1e-2 in a 24 × 24 operator, and 0.5 % one of size 1 (in float64, rtol 1e-10,
    none of 3,000 missed either).  Repeat with a few seeds for confidence.
    """
    A = aslinearoperator(A)
    xp = A.xp
    if rtol is None:
        rtol = 1e-4 if A.dtype == xp.float32 else 1e-10
    elif not rtol >= 0:
        raise ValueError(f"rtol must be a non-negative number, got {rtol!r}")
    m, n = A.shape
    x = B.standard_normal(xp, (n,), A.dtype, _like(A), seed)
    y = B.standard_normal(xp, (m,), A.dtype, _like(A), seed + 1)
    Ax, Aty = A.matvec(x), A.rmatvec(y)
    finite = B.all_finite(xp, Ax) and B.all_finite(xp, Aty)
    if raise_error and not finite:
        raise AssertionError(f"dot-product test failed for {A!r}: A x or A^T y has non-finite "
                             f"entries (nan or inf)")
    with np.errstate(invalid="ignore", over="ignore"):  # (non-finite products: nan sides)
        lhs = float(xp.vecdot(Ax, y))
        rhs = float(xp.vecdot(x, Aty))
    # Rounding in <Ax, y> is relative to ‖Ax‖‖y‖, not to |<Ax, y>| (which may be ~0).
    norm = lambda v: float(xp.linalg.vector_norm(v))  # noqa: E731
    scale = max(abs(lhs), abs(rhs), norm(Ax) * norm(y), norm(x) * norm(Aty), 1e-300)
    if raise_error and not abs(lhs - rhs) <= rtol * scale:
        raise AssertionError(f"dot-product test failed for {A!r}: <Ax,y> = {lhs:.10g}, "
                             f"<x,A^T y> = {rhs:.10g}, relative difference "
                             f"{abs(lhs - rhs) / scale:.3g} > rtol {rtol:g}")
    return lhs, rhs


def _like(A: LinearOperator) -> Any:
    return A.xp.zeros((1,), dtype=A.dtype, device=A.device)
