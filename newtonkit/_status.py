"""Why a run stopped: an enum whose values carry SciPy's ``status``, ``success`` and message.

The driver and the methods speak in :class:`Status` members; :func:`newtonkit.minimize` maps them
to the ``status``/``success``/``message`` fields of the result at the edge.  Codes follow
``scipy.optimize.minimize``: 0 converged, 1 iteration or evaluation budget exhausted, 2 no
further progress possible (precision loss), 3 non-finite values, 4 converged to a point whose
Hessian is indefinite, 98 interrupted by the user, 99 the callback raised ``StopIteration``.
Codes 4, 5 and 97 are newtonkit's own: 5 the run diverged, 97 an exception ended it (the status
of the result attached to that exception, never of a returned one).

Two rules hold for every method (the driver applies them, :func:`newtonkit.minimize`):

* Success is never reported at a point whose objective is above its value at ``x0``: a run
  that would end there with a success or a budget status (0, 1, 2) ends with ``DIVERGED``.  An
  ftol/xtol test met right after an accepted step that raised the objective does not count
  (the run goes on): a small change there is not convergence.
* On a fault (:data:`FAULTS`: non-finite values, divergence, an interrupt, an exception) the
  result is the best accepted iterate, the one with the lowest objective (``x0`` included),
  with ``fun``, ``jac`` and the residual evaluated there; the counts (``nit``, ``nfev``, ...)
  are those of the whole run.  Other statuses return the last accepted iterate.
"""

from __future__ import annotations

import enum

__all__ = ["Status", "FAULTS", "attach_result"]


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
    FD_ZERO_COLUMN = (2, False, "A convergence test (gtol, ftol or xtol) is met only through "
                                "finite-difference Jacobian column(s) {columns} with entries "
                                "exactly zero: fun did not change when those parameters moved by "
                                "the difference step (a change below the rounding of fun, or "
                                "parameters fun ignores), which can hide a gradient above gtol "
                                "and steps the run never took, so x may not be stationary; pass "
                                "jac= or rescale the problem.")
    UNDERFLOW = (2, False, "The objective ½‖r‖² is below the normal floating-point range (or "
                           "rounds to zero), but the residuals are not zero (largest |r_i| = "
                           "{rmax:.3g}): there f has lost its significant bits, no test on f is "
                           "meaningful, and x is not verified. Rescale fun (residuals of order 1 "
                           "at x0).")
    FLAT_LOSS = (2, False, "The gradient is zero only because the robust loss is flat at every "
                           "nonzero residual (its slope rho' is 0 there in floating point; "
                           "largest |r_i| = {rmax:.3g}, f_scale = {f_scale:.3g}): no residual "
                           "carries weight, so x is not a fit to the data. Start closer, or "
                           "raise f_scale.")
    NONFINITE = (3, False, "Non-finite value (NaN or inf) encountered and shortening the step "
                           "did not avoid it; x is the best accepted iterate (lowest objective).")
    INDEFINITE = (4, False, "A convergence test is met but the Hessian is indefinite beyond "
                            "tolerance (smallest eigenvalue {lambda_min:.3g}): x is a saddle "
                            "point or a maximum, not a minimum.")
    CURVATURE_UNVERIFIED = (2, False, "A convergence test is met, but Lanczos on Hessian-vector "
                                      "products did not resolve the smallest eigenvalue in "
                                      "{steps} steps (estimate {lambda_min:.3g}, residual "
                                      "{residual:.3g}): x may be a saddle point. Pass hess= "
                                      "for a dense check, or check the curvature yourself.")
    GRADIENT_UNVERIFIED = (2, False, "The gradient test is met on a forward-difference "
                                     "gradient, but Richardson's extrapolation of central "
                                     "differences at x neither meets gtol nor agrees with it: "
                                     "the difference's error steered the run (a float32 fun, or "
                                     "large derivatives), and x is not verified. Pass jac= or "
                                     "jac='3-point'.")
    TRUNCATED = (2, False, "A change test (ftol/xtol) holds on the singular directions HIG "
                           "keeps, but not on the Gauss-Newton step over all of J's directions: "
                           "the directions below the truncation threshold are not converged, "
                           "and x is not verified. Lower options['truncation'], or finish with "
                           "method='lm'.")
    DIVERGED = (5, False, "The run diverged: the objective ended above its value at x0; x is "
                          "the best accepted iterate (lowest objective).")
    EXCEPTION = (97, False, "Ended by an exception raised during the run ({error}); x is the "
                            "best accepted iterate (lowest objective).")
    INTERRUPTED = (98, False, "Interrupted by KeyboardInterrupt; x is the best accepted iterate "
                              "(lowest objective).")
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

    @property
    def fault(self) -> bool:
        """Whether the run ended on a fault (the result is then the best accepted iterate)."""
        return self in FAULTS


#: The statuses after which the result is the best accepted iterate, not the last one.
FAULTS = frozenset({Status.NONFINITE, Status.DIVERGED, Status.EXCEPTION, Status.INTERRUPTED})


def attach_result(exc: Exception, result: object, note: str) -> None:
    """Give ``exc`` the run so far: ``exc.result = result`` and ``note`` added to its message
    (Python ≥ 3.11).  An exception type that takes no attributes is left as it is."""
    try:
        exc.result = result  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        return
    if hasattr(exc, "add_note"):
        exc.add_note(note)

