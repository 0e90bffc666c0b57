r"""``check_operator``: the adjoint, dense form, block products and structure of an operator.

Rounding model
--------------
A product ``A x`` computed in floating point with unit roundoff :math:`\epsilon` (the dtype's
machine epsilon) through a few dense products has an error of about
:math:`\epsilon\,k\,\|A\|\,\|x\|` where :math:`k \le m + n` counts the terms summed; so does an
inner product of such results.  Every comparison below is therefore allowed

.. math:: \text{rtol}\cdot\|A\|\cdot(\text{norms of the vectors}), \qquad
          \text{rtol} = 10\,\epsilon\,(m + n)

by default, with :math:`\|A\|` estimated from the computed products,
:math:`\|A\| \approx \max_i \max(\|A x_i\|/\|x_i\|, \|A^T y_i\|/\|y_i\|)` (a lower bound on the
2-norm that random vectors get within a small factor of).  The factor 10 allows for operators
built from a few products; pass ``rtol`` for long chains (a time-stepping PDE solver and its
adjoint round more).
"""

from __future__ import annotations

import math
from typing import Any

from .. import _backend as B
from ..operators import aslinearoperator
from ._report import Check, Report

__all__ = ["check_operator", "default_rtol", "dot_product_check"]


def default_rtol(dtype_eps: float, m: int, n: int) -> float:
    """The default relative tolerance ``10·ε·(m + n)`` of the rounding model above."""
    return 10.0 * dtype_eps * (m + n)


def _finite(*values: float) -> bool:
    return all(math.isfinite(v) for v in values)


def dot_product_check(xp: Any, X: Any, AX: Any, Y: Any, AtY: Any, bound: float,
                      name: str = "dot-product") -> Check:
    r"""The dot-product test on the columns of ``X`` (``n × k``) and ``Y`` (``m × k``) given
    their products ``AX = A X`` and ``AtY = Aᵀ Y``:
    :math:`\max_i |\langle A x_i, y_i\rangle - \langle x_i, A^T y_i\rangle| / (\|x_i\|
    \|y_i\|) \le` ``bound`` (:math:`\text{rtol}\,\|A\|`)."""
    gaps, sides = [], []
    for i in range(X.shape[1]):
        lhs, rhs = B.vdot(xp, AX[:, i], Y[:, i]), B.vdot(xp, X[:, i], AtY[:, i])
        scale = B.norm(xp, X[:, i]) * B.norm(xp, Y[:, i])
        gap = abs(lhs - rhs) / scale
        gaps.append(gap if math.isfinite(gap) else math.inf)
        sides.append((lhs, rhs))
    worst = max(range(len(gaps)), key=gaps.__getitem__)
    return Check(name, gaps[worst], bound,
                 detail=f"|<Ax,y> - <x,A^T y>| / (‖x‖‖y‖) over {len(gaps)} random pairs; worst "
                        f"pair: <Ax,y> = {sides[worst][0]:.10g}, <x,A^T y> = "
                        f"{sides[worst][1]:.10g}",
                 passed=None if math.isfinite(bound) else False)


def check_operator(A: Any, *, pairs: int = 5, rtol: float | None = None, dense: bool | None = None,
                   seed: int = 0, raise_error: bool = True) -> Report:
    r"""Check a linear operator's adjoint, dense form, block products and structure.

    Parameters
    ----------
    A : LinearOperator, array or scipy operator
        Anything :func:`newtonkit.operators.aslinearoperator` accepts.
    pairs : int
        Number of random pairs ``(x_i, y_i)`` (standard normal) for the dot-product test; one
        pair may miss an error ``E`` when :math:`y^T E x` happens to be small, several rarely do.
    rtol : float, optional
        Relative tolerance of every comparison (module docstring); default
        :math:`10\,\epsilon\,(m+n)`.
    dense : bool, optional
        Compare ``to_dense()`` with the products (default: when ``m·n <= 10⁶``).
    seed : int
        Seed of the random vectors.
    raise_error : bool
        Raise ``AssertionError`` with the report's text when a check fails (default); else
        return the report.

    Returns
    -------
    Report
        Checks, each with the measured error, its bound and their ratio:

        - ``dot-product``: :math:`\max_i |\langle A x_i, y_i\rangle - \langle x_i, A^T
          y_i\rangle| / (\|x_i\|\|y_i\|)` against :math:`\text{rtol}\,\|A\|`;
        - ``matmat`` / ``rmatmat``: :math:`\|A X - [A x_1, \dots]\|_F \le
          \text{rtol}\,\|A\|\,\|X\|_F`, and the same for :math:`A^T Y`;
        - ``to_dense``: :math:`\|D X - A X\|_F \le \text{rtol}\,\|A\|\,\|X\|_F` and
          :math:`\|D^T Y - A^T Y\|_F \le \text{rtol}\,\|A\|\,\|Y\|_F` for ``D = A.to_dense()``;
        - ``adjoint operator``: ``A.T`` and ``A.H`` apply :math:`A^T`, ``A.T.T`` applies
          :math:`A` (same bound);
        - ``symmetric`` (only for an operator tagged symmetric): :math:`\|A x - A^T x\| \le
          \text{rtol}\,\|A\|\,\|x\|`.

    Examples
    --------
    >>> import numpy as np
    >>> from newtonkit.operators import FunctionOperator
    >>> from newtonkit.testing import check_operator
    >>> M = np.arange(6.0).reshape(3, 2)
    >>> op = FunctionOperator((3, 2), lambda x: M @ x, lambda y: M.T @ y, like=M)
    >>> check_operator(op).ok
    True
    """
    A = aslinearoperator(A)
    if int(pairs) < 1:
        raise ValueError(f"pairs must be a positive integer, got {pairs!r}")
    xp = A.xp
    m, n = A.shape
    eps = float(xp.finfo(A.dtype).eps)
    rtol = default_rtol(eps, m, n) if rtol is None else float(rtol)
    like = xp.zeros((1,), dtype=A.dtype, device=A.device)
    X = B.standard_normal(xp, (n, int(pairs)), A.dtype, like, seed)
    Y = B.standard_normal(xp, (m, int(pairs)), A.dtype, like, seed + 1)
    AX = xp.stack([A.matvec(X[:, i]) for i in range(pairs)], axis=1)
    AtY = xp.stack([A.rmatvec(Y[:, i]) for i in range(pairs)], axis=1)

    def nrm(v: Any) -> float:
        return B.norm(xp, xp.reshape(v, (-1,)))

    # ‖A‖ from the products (a lower bound on the 2-norm, within a small factor of it)
    norm_A = max(max(nrm(AX[:, i]) / nrm(X[:, i]), nrm(AtY[:, i]) / nrm(Y[:, i]))
                 for i in range(pairs))
    report = Report(f"check_operator({A!r}), rtol = {rtol:.3g}, ‖A‖ ≈ {norm_A:.3g}")

    report.checks.append(dot_product_check(xp, X, AX, Y, AtY, rtol * norm_A))

    def compare(name: str, got: Any, want: Any, vecs: Any, what: str) -> None:
        err = nrm(got - want) / nrm(vecs)
        report.checks.append(Check(name, err, rtol * norm_A, detail=what,
                                   passed=None if _finite(err, norm_A) else False))

    compare("matmat", A.matmat(X), AX, X, "‖A.matmat(X) − [A.matvec(x_i)]‖_F / ‖X‖_F")
    compare("rmatmat", A.rmatmat(Y), AtY, Y, "‖A.rmatmat(Y) − [A.rmatvec(y_i)]‖_F / ‖Y‖_F")
    if dense if dense is not None else m * n <= 10**6:
        D = A.to_dense()
        compare("to_dense", D @ X, AX, X, "‖D X − A X‖_F / ‖X‖_F for D = A.to_dense()")
        compare("to_dense adjoint", xp.matrix_transpose(D) @ Y, AtY, Y,
                "‖Dᵀ Y − Aᵀ Y‖_F / ‖Y‖_F for D = A.to_dense()")
    x, y = X[:, 0], Y[:, 0]
    err = max(nrm(A.T.matvec(y) - AtY[:, 0]) / nrm(y), nrm(A.H.matvec(y) - AtY[:, 0]) / nrm(y),
              nrm(A.T.T.matvec(x) - AX[:, 0]) / nrm(x))
    report.checks.append(Check("adjoint operator", err, rtol * norm_A,
                               detail="A.T and A.H apply Aᵀ, A.T.T applies A",
                               passed=None if _finite(err) else False))
    if "symmetric" in A.tags:
        compare("symmetric", AX, A.rmatmat(X), X, "tagged symmetric: ‖A X − Aᵀ X‖_F / ‖X‖_F")
    return report.finish(raise_error)


