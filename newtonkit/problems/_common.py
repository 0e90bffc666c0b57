"""Shared helpers of the problem wrappers: flattening, dtype casts, evaluation counters."""

from __future__ import annotations

from typing import Any

from .. import _backend as B

FD_SCHEMES = ("2-point", "3-point")


def is_array(obj: Any) -> bool:
    """Whether ``obj`` is an array of a supported backend (not an operator)."""
    import array_api_compat

    return bool(array_api_compat.is_array_api_obj(obj))


class FiniteDifferenceWarning(UserWarning):
    """Derivatives are approximated by finite differences (none given, no autodiff provider)."""


def flat(xp: Any, a: Any, dtype: Any, what: str, size: int | None = None) -> Any:
    """``a`` as a 1-D array of ``dtype`` on the backend ``xp`` (checked length ``size``)."""
    if not hasattr(a, "shape"):
        a = xp.asarray(a, dtype=dtype)
    a = xp.reshape(a, (-1,))
    if a.dtype != dtype:
        a = xp.astype(a, dtype)
    if size is not None and a.shape[0] != size:
        raise ValueError(f"{what} has {a.shape[0]} entries, expected {size}")
    return a


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
    return float(value)


class Counters:
    """Evaluation counts reported in the result: ``nfev``, ``njev``, ``nhev``."""

    def __init__(self) -> None:
        self.nfev = 0
        self.njev = 0
        self.nhev = 0
