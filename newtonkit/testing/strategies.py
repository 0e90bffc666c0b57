"""Hypothesis strategies for property tests of users' models and operators.

Needs the optional dependency ``hypothesis`` (``pip install hypothesis``); nothing else in
newtonkit imports it.

Each strategy draws a seed and builds its example from a NumPy generator seeded with it, so
hypothesis shrinks the structural parameters (shape, rank) rather than thousands of floats and
the examples stay well spread (hypothesis' own float draws crowd the boundaries).  Matrices are
``U diag(s) Vᵀ`` with random orthonormal ``U``, ``V`` (QR of a Gaussian) and singular values
log-uniform between ``σ_max / κ`` and ``σ_max``, the two ends always present, so the condition
number of the nonzero part is exactly ``κ`` (drawn log-uniform up to ``max_cond``) before
rounding to the working dtype.

``backend`` is ``"numpy"`` or ``"torch"`` (CPU), ``dtype`` ``"float32"`` or ``"float64"``.

Example
-------
>>> from hypothesis import given
>>> from newtonkit.testing import check_operator
>>> from newtonkit.testing.strategies import operators
>>> @given(operators(max_cond=1e6))
... def test_adjoint(op):
...     check_operator(op)
"""

from __future__ import annotations

from typing import Any

try:
    from hypothesis import strategies as st
except ImportError as _exc:  # pragma: no cover - exercised only without hypothesis
    raise ImportError("newtonkit.testing.strategies needs the optional dependency hypothesis: "
                      "pip install hypothesis") from _exc

import numpy as np

from ..operators import FunctionOperator, LinearOperator, MatrixOperator

__all__ = ["matrices", "symmetric_matrices", "operators", "points", "to_backend"]


def to_backend(a: np.ndarray, backend: str = "numpy", dtype: str = "float64") -> Any:
    """A copy of the NumPy array ``a`` as a ``backend`` array of ``dtype``."""
    a = np.array(a, dtype=dtype)
    if backend == "numpy":
        return a
    if backend == "torch":
        import torch

        return torch.from_numpy(a)
    raise ValueError(f"backend must be 'numpy' or 'torch', got {backend!r}")


def _orthonormal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.where(np.diag(r) < 0, -1.0, 1.0)[None, :]


def _spectrum(rng: np.random.Generator, k: int, max_cond: float) -> np.ndarray:
    """``k`` values in ``[1/κ, 1]``, both ends present, κ log-uniform in ``[1, max_cond]``."""
    cond = 10.0 ** rng.uniform(0.0, np.log10(max_cond))
    inner = 10.0 ** rng.uniform(-np.log10(cond), 0.0, max(k - 2, 0))
    return np.sort(np.concatenate([[1.0], [1.0 / cond] if k > 1 else [], inner]))[::-1][:k]


@st.composite
def matrices(draw: Any, shape: tuple[int, int] | None = None, *, rank: int | None = None,
             max_cond: float = 1e6, scale: float = 1.0, max_size: int = 12,
             dtype: str = "float64", backend: str = "numpy") -> Any:
    """An ``(m, n)`` matrix of rank ``rank`` (default ``min(m, n)``) whose nonzero singular
    values span a condition number ``κ ≤ max_cond``, largest singular value ``scale``.

    ``shape`` defaults to a drawn shape with sides in ``[1, max_size]``; ``rank`` larger than
    ``min(m, n)`` raises ``ValueError``.
    """
    if shape is None:
        shape = (draw(st.integers(1, max_size)), draw(st.integers(1, max_size)))
    m, n = (int(s) for s in shape)
    r = min(m, n) if rank is None else int(rank)
    if not 0 <= r <= min(m, n):
        raise ValueError(f"rank {rank} impossible for shape {(m, n)}")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    s = scale * _spectrum(rng, r, max_cond) if r else np.zeros(0)
    A = (_orthonormal(rng, m, r) * s[None, :]) @ _orthonormal(rng, n, r).T if r else \
        np.zeros((m, n))
    return to_backend(A, backend, dtype)


@st.composite
def symmetric_matrices(draw: Any, n: int | None = None, *, max_cond: float = 1e6,
                       definite: bool = False, scale: float = 1.0, max_size: int = 12,
                       dtype: str = "float64", backend: str = "numpy") -> Any:
    """A symmetric ``n × n`` matrix ``Q diag(λ) Qᵀ`` with ``|λ|`` spanning ``κ ≤ max_cond``
    (largest ``scale``), exactly symmetric after rounding.  Indefinite (at least one eigenvalue
    of each sign when ``n ≥ 2``) unless ``definite``, then positive definite."""
    n = draw(st.integers(1, max_size)) if n is None else int(n)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    lam = scale * _spectrum(rng, n, max_cond)
    if not definite:
        signs = rng.choice([-1.0, 1.0], size=n)
        if n >= 2:
            signs[:2] = rng.permutation([-1.0, 1.0])
        lam = lam * signs
    Q = _orthonormal(rng, n, n)
    H = np.array((Q * lam[None, :]) @ Q.T, dtype=dtype).astype(np.float64)
    H = np.tril(H) + np.tril(H, -1).T
    return to_backend(H, backend, dtype)


@st.composite
def operators(draw: Any, shape: tuple[int, int] | None = None, *, max_cond: float = 1e6,
              matrix_free: bool | None = None, **kwargs: Any) -> LinearOperator:
    """A :class:`~newtonkit.operators.MatrixOperator` or a
    :class:`~newtonkit.operators.FunctionOperator` (matvec/rmatvec closures over the matrix)
    around :func:`matrices` (``kwargs`` go there); ``matrix_free`` picks the kind (drawn by
    default).  The dense matrix is ``op.to_dense()``."""
    A = draw(matrices(shape, max_cond=max_cond, **kwargs))
    if not (draw(st.booleans()) if matrix_free is None else matrix_free):
        return MatrixOperator(A)
    At = A.T
    return FunctionOperator(tuple(A.shape), lambda x: A @ x, lambda y: At @ y, like=A)


@st.composite
def points(draw: Any, n: int, *, scale: float = 1.0, dtype: str = "float64",
           backend: str = "numpy") -> Any:
    """A point of ``R^n``: standard normal entries times ``scale``."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return to_backend(scale * rng.standard_normal(int(n)), backend, dtype)
