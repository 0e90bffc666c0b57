"""Shared helpers of the problem wrappers: flattening, dtype casts, evaluation counters."""

from __future__ import annotations

from typing import Any

import numpy as np

from .. import _backend as B

FD_SCHEMES = ("2-point", "3-point")


def is_array(obj: Any) -> bool:
    """Whether ``obj`` is an array of a supported backend (not an operator)."""
    if type(obj) is np.ndarray:
        return True  # the usual case, without array-api-compat's checks
    import array_api_compat

    return bool(array_api_compat.is_array_api_obj(obj))


class FiniteDifferenceWarning(UserWarning):
    """Derivatives are approximated by finite differences (none given, no autodiff provider)."""


def flat(xp: Any, a: Any, dtype: Any, what: str, size: int | None = None,
         device: Any = None) -> Any:
    """``a`` as a 1-D array of ``dtype`` on the backend ``xp`` (checked length ``size``); a
    sequence (not an array) is made on ``device``, that of x (a GPU's list of floats must not
    land on the host)."""
    if getattr(a, "ndim", None) == 1 and a.dtype == dtype and (size is None or a.shape[0] == size):
        return a  # the usual case: already flat, of the dtype (so of the backend) and length
    if not hasattr(a, "shape"):
        a = xp.asarray(a, dtype=dtype, device=device)
    elif a.dtype != dtype:  # another dtype, or another backend (whose dtypes never compare equal)
        same_backend(xp, a, what)
        B.check_not_complex(xp, a, what)
        a = xp.astype(a, dtype)
    a = xp.reshape(a, (-1,))
    if size is not None and a.shape[0] != size:
        raise ValueError(f"{what} has {a.shape[0]} entries, expected {size}")
    return a


def same_backend(xp: Any, a: Any, what: str) -> None:
    """Raise ``TypeError`` when the array ``a`` is not on the backend ``xp`` of ``x0``."""
    name, other = B.backend_name(xp), B.backend_name(B.array_namespace(a))
    if other != name:
        raise TypeError(f"{what} is a {other} array, but x0 is a {name} array; return arrays "
                        f"of x0's backend (convert inside your function)")


def matrix(xp: Any, a: Any, dtype: Any, what: str, rows: int, cols: int,
           shapes: tuple[tuple[int, ...], ...]) -> Any:
    """A user's dense derivative ``a`` as a ``(rows, cols)`` array of ``dtype``.

    ``a`` must be on ``xp``'s backend and have the shape ``(rows, cols)`` or one of ``shapes``
    (the same entries in the user's own output and input shapes, such as ``y.shape +
    x.shape``); anything else is an error that names ``what``, never a silent reshape.
    """
    want = (rows, cols)
    if a.dtype == dtype and tuple(a.shape) == want:
        return a  # the usual case: nothing to check (the dtype fixes the backend) or convert
    same_backend(xp, a, what)
    B.check_not_complex(xp, a, what)
    shape = tuple(a.shape)
    if shape != want:
        if shape not in shapes:
            options = " or ".join(str(t) for t in dict.fromkeys((want, *shapes)))
            raise ValueError(f"{what} has shape {shape}, expected {options}")
        a = xp.reshape(a, want)
    return a if a.dtype == dtype else xp.astype(a, dtype)


def scalar(value: Any, what: str) -> float:
    """A 0-d (or size-1) result as a Python float."""
    size = getattr(value, "size", None)
    if callable(size):  # torch's .size() is a method
        size = value.numel()
    if size is not None and size != 1:
        raise ValueError(f"{what} must return a scalar, got an array of shape "
                         f"{tuple(value.shape)} (for a residual vector use method='gn', 'lm' "
                         f"or 'hig')")
    if hasattr(value, "shape") and len(value.shape) > 0:
        xp = B.array_namespace(value)
        value = xp.reshape(value, ())
    try:
        return float(value)
    except TypeError:  # None, a tuple (jac=True forgotten?), a string ...
        kind = "None" if value is None else f"a {type(value).__name__}"
        raise TypeError(f"{what} returned {kind}; it must return a real scalar (a float or "
                        f"a 0-d array)") from None


class BudgetExhausted(Exception):
    """Raised by :meth:`Counters.count_fev` instead of a call of ``fun`` beyond ``maxfev``.

    Private: the driver catches it and ends the run with status MAXFEV at the last accepted
    iterate; it never reaches the user.
    """


class Counters:
    """Evaluation counts reported in the result: ``nfev``, ``njev``, ``nhev``.

    ``nfev`` counts every call of the user's ``fun`` (finite-difference, line-search and
    autodiff-tracing calls included): each goes through :meth:`count_fev`, which also keeps
    the budget ``maxfev`` (set by the driver; ``None``: none).  ``bounds`` (``(lb, ub)`` on
    x's backend, set by the driver for a bounded run; ``None``: none) keeps difference
    steps in the box.  ``accuracy``: the relative accuracy η of ``fun``'s output, the larger
    of the working dtype's ε and the output's own (:func:`._fd.output_accuracy`, set at the
    first call; ``None`` before), for difference steps.
    """

    def __init__(self) -> None:
        self.nfev = 0
        self.njev = 0
        self.nhev = 0
        self.maxfev: int | None = None
        self.bounds: tuple[Any, Any] | None = None
        self.accuracy: float | None = None
        self.grad_accuracy: float | None = None  # a gradient callable's output's, likewise

    def count_fev(self) -> None:
        """Count one call of ``fun`` about to be made; :class:`BudgetExhausted` instead when
        it would exceed ``maxfev``."""
        if self.maxfev is not None and self.nfev >= self.maxfev:
            raise BudgetExhausted
        self.nfev += 1
