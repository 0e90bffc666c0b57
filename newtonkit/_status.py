"""Why a run stopped: an enum whose values carry SciPy's ``status``, ``success`` and message.

The driver and the methods speak in :class:`Status` members; :func:`newtonkit.minimize` maps them
to the ``status``/``success``/``message`` fields of the result at the edge.  Codes follow
``scipy.optimize.minimize``: 0 converged, 1 iteration or evaluation budget exhausted, 2 no
further progress possible (precision loss), 3 non-finite values, 4 converged to a point whose
Hessian is indefinite, 98 interrupted by the user, 99 the callback raised ``StopIteration``.
"""

from __future__ import annotations

import enum

__all__ = ["Status"]


class Status(enum.Enum):
    """A termination reason: ``(scipy status code, success, message)``."""

    GTOL = (0, True, "Optimization terminated successfully: the gradient test (gtol) is met.")
    FTOL = (0, True, "Optimization terminated successfully: the relative reduction of the "
                     "objective is below ftol.")
    XTOL = (0, True, "Optimization terminated successfully: the relative step size is below "
                     "xtol.")
    FTOL_XTOL = (0, True, "Optimization terminated successfully: both the ftol and the xtol "
                          "tests are met.")
    ZERO = (0, True, "Optimization terminated successfully: the objective is exactly zero.")
    MAXITER = (1, False, "Maximum number of iterations has been exceeded.")
    MAXFEV = (1, False, "Maximum number of function evaluations has been exceeded.")
    NO_PROGRESS = (2, False, "Desired error not necessarily achieved due to precision loss: no "
                             "step reduces the objective further.")
    LINE_SEARCH = (2, False, "Desired error not necessarily achieved: the line search found no "
                             "point with sufficient decrease.")
    FD_ZERO_COLUMN = (2, False, "The gradient test is met only through finite-difference "
                                "Jacobian column(s) {columns} that are exactly zero: fun did not "
                                "change when those parameters moved by the difference step (a "
                                "change below the rounding of fun, or parameters fun ignores), "
                                "so x may not be stationary; pass jac= or rescale the problem.")
    NONFINITE = (3, False, "Non-finite value (NaN or inf) encountered and shortening the step "
                           "did not avoid it; x is the last iterate with finite values.")
    INDEFINITE = (4, False, "The gradient test is met but the Hessian is indefinite beyond "
                            "tolerance (smallest eigenvalue {lambda_min:.3g}): x is a saddle "
                            "point or a maximum, not a minimum.")
    INTERRUPTED = (98, False, "Interrupted by KeyboardInterrupt; x is the last accepted iterate.")
    CALLBACK = (99, False, "`callback` raised `StopIteration`.")

    @property
    def code(self) -> int:
        """SciPy's integer ``status``."""
        return self.value[0]

    @property
    def success(self) -> bool:
        """SciPy's ``success``."""
        return self.value[1]

    def message(self, **details: object) -> str:
        """The message, with ``details`` (for example ``lambda_min``) filled in."""
        text = self.value[2]
        return text.format(**details) if details else text
