r"""Finite-difference derivatives, the fallback when no derivative is given or registered.

Forward differences use :math:`h_j = \sqrt{\epsilon}\max(1, |x_j|)`, central differences
:math:`h_j = \epsilon^{1/3}\max(1, |x_j|)` (``ε`` the dtype's machine epsilon); column ``j`` of
the Jacobian is :math:`(F(x + h_j e_j) - F(x)) / h_j` or :math:`(F(x + h_j e_j) - F(x - h_j
e_j)) / (2 h_j)`.  Everything stays on the backend of ``x``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _backend as B

__all__ = ["fd_jacobian", "fd_hessian_from_grad"]


def _steps(xp: Any, x: Any, power: float) -> Any:
    eps = xp.finfo(x.dtype).eps
    return (eps ** power) * xp.maximum(xp.abs(x), xp.ones_like(x))


def fd_jacobian(fun: Callable, x: Any, f0: Any = None, *, scheme: str = "2-point") -> Any:
    """Finite-difference Jacobian ``(m, n)`` of ``fun: (n,) -> (m,)`` (``(n,)`` if ``fun`` is
    scalar-valued, the gradient).  ``f0 = fun(x)`` saves one evaluation of the 2-point scheme."""
    xp = B.array_namespace(x)
    n = x.shape[0]
    h = _steps(xp, x, 0.5 if scheme == "2-point" else 1.0 / 3.0)
    E = xp.eye(n, dtype=x.dtype, device=B.device(x))
    if scheme == "2-point" and f0 is None:
        f0 = fun(x)
    cols = []
    for j in range(n):
        step = h[j] * E[j, :]
        xj = x + step
        hj = (xj - x)[j]  # the step actually representable in floating point
        if scheme == "2-point":
            cols.append((fun(xj) - f0) / hj)
        else:
            xm = x - step
            cols.append((fun(xj) - fun(xm)) / (xj - xm)[j])
    J = xp.stack(cols, axis=-1)
    return J


def fd_hessian_from_grad(grad: Callable, x: Any, g0: Any) -> Any:
    """Symmetrised forward-difference Hessian ``(n, n)`` from a gradient ``grad: (n,) -> (n,)``."""
    xp = B.array_namespace(x)
    H = fd_jacobian(grad, x, g0, scheme="2-point")
    return 0.5 * (H + xp.matrix_transpose(H))
