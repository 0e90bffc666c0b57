"""Checks for users' own operators and derivatives (``import newtonkit.testing``).

- :func:`check_operator`: the dot-product (adjoint) test over several random pairs,
  ``to_dense`` and ``matmat``/``rmatmat`` against the products, the adjoint operators.
- :func:`check_derivatives`: Jacobian, jvp, vjp, gradient, Hessian and Hessian-vector products
  against Taylor remainders of the function and against each other.
- :mod:`newtonkit.testing.strategies`: hypothesis strategies (matrices of given shape, rank and
  condition number, symmetric indefinite matrices, operators, points) for property tests; it
  needs ``hypothesis``, which nothing else here imports.

Each checker raises ``AssertionError`` with its report's text when a check fails, or with
``raise_error=False`` returns the :class:`Report` (``report.ok``, ``bool(report)``,
``str(report)``, ``report.failures``).
"""

from ._derivatives import check_derivatives
from ._operators import check_operator
from ._report import Check, Report

__all__ = ["check_operator", "check_derivatives", "Check", "Report"]
