"""Input checks shared by the solvers: public functions check, private code computes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .. import _backend as B
from ..checks import choice, integer, real  # noqa: F401  (the solvers' argument checks)
from ..operators import LinearOperator, aslinearoperator
from ..operators._tags import check_symmetric  # noqa: F401  (the solvers' input check)


class LinAlgError(np.linalg.LinAlgError):
    """A factorisation failed (for example Cholesky of a matrix that is not positive definite)."""


def matrix_or_operator(A: Any, name: str, square: bool = False) -> tuple[Any, Any, bool]:
    """Return ``(A, xp, is_dense)`` after checking shape, dtype and (for arrays) finiteness.

    Dense arrays stay arrays; anything else becomes a :class:`LinearOperator`.
    """
    if isinstance(A, LinearOperator) or not hasattr(A, "ndim"):
        op = aslinearoperator(A)
        if square and op.shape[0] != op.shape[1]:
            raise ValueError(f"{name} must be square, got shape {op.shape}")
        return op, op.xp, False
    xp = B.array_namespace(A)
    if A.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(A.shape)}")
    if A.shape[0] == 0 or A.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(A.shape)})")
    if square and A.shape[0] != A.shape[1]:
        raise ValueError(f"{name} must be square, got shape {tuple(A.shape)}")
    B.check_real_float(xp, A, name)
    if not B.all_finite(xp, A):
        raise ValueError(f"{name} has non-finite entries (nan or inf)")
    return A, xp, True


def vector(xp: Any, v: Any, length: int, name: str, dtype: Any) -> Any:
    """Check that ``v`` is a finite real vector of ``length`` on the namespace ``xp``."""
    if getattr(v, "ndim", None) != 1 or v.shape[0] != length:
        raise ValueError(f"{name} must have shape ({length},), got "
                         f"{tuple(getattr(v, 'shape', ()))}")
    if B.backend_name(B.array_namespace(v)) != B.backend_name(xp):
        raise TypeError(f"{name} is a {type(v).__module__} array but the matrix is on "
                        f"{B.backend_name(xp)!r}; pass arrays of one backend")
    B.check_real_float(xp, v, name)
    if not B.all_finite(xp, v):
        raise ValueError(f"{name} has non-finite entries (nan or inf)")
    return xp.astype(v, dtype) if v.dtype != dtype else v


def dense(A: Any, chunk_size: int | None = None, name: str = "the operator") -> Any:
    """The dense matrix of an array or operator (operators materialised in column chunks).

    A materialised operator is checked for non-finite entries (arrays were checked on entry).
    """
    if not isinstance(A, LinearOperator):
        return A
    D = A.to_dense(chunk_size)
    xp = A.xp
    if not B.all_finite(xp, D):
        raise ValueError(f"{name} has non-finite entries: its products gave nan or inf")
    return D


def eye_like(xp: Any, n: int, A: Any) -> Any:
    return xp.eye(n, dtype=A.dtype, device=B.device(A))


def gram_scale(xp: Any, A: Any) -> float:
    """1 where ``A``'s Gram is safe: ``max|A|`` within LAPACK's range [√(tiny/ε), √(ε/tiny)]
    (about 1e∓146 in float64, 2e∓15 in float32; ``tiny`` the smallest normal number), else
    a power of two ``c`` near ``max|A|``, so that the Gram of ``A / c`` neither over- nor
    underflows (entries of 1e±155 square past float64's range); dividing by a power of two is
    exact.  Scaling only out of range, as LAPACK's drivers do, keeps ``A`` uncopied."""
    if not A.shape[0] * A.shape[1]:
        return 1.0
    biggest = max(float(xp.max(A)), -float(xp.min(A)))  # (no |A| temporary of A's size)
    info = xp.finfo(A.dtype)
    low = math.sqrt(float(info.smallest_normal) / float(info.eps))
    if not 0.0 < biggest < float("inf") or low <= biggest <= 1.0 / low:
        return 1.0
    return 2.0 ** round(math.log2(biggest))
