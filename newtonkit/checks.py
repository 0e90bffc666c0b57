"""Argument checks shared by the solvers and the adapters (:mod:`newtonkit_torch`).

Each returns the clean value or raises an error that names the argument:
:func:`real` and :func:`integer` (``TypeError`` for the wrong type, ``ValueError`` outside the
range), :func:`choice` (``ValueError`` listing the options).  :func:`all_finite` says whether
every entry of an array of any backend is finite.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ._backend import all_finite

__all__ = ["all_finite", "real", "integer", "choice"]


def real(value: Any, name: str, *, low: float | None = None, high: float | None = None,
         low_open: bool = False) -> float:
    """A finite real number within ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if low is not None and (v <= low if low_open else v < low):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low:g}, got {v:g}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high:g}, got {v:g}")
    return v


def integer(value: Any, name: str, *, low: int | None = None, optional: bool = False) -> Any:
    """An integer ``>= low`` (an integral float is accepted); ``None`` passes with ``optional``."""
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if not float(value).is_integer():
        raise ValueError(f"{name} must be an integer, got {value!r}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {v}")
    return v


def choice(value: Any, name: str, options: tuple[str, ...]) -> str:
    """``value`` lower-cased, one of ``options`` (case-insensitive)."""
    if not isinstance(value, str) or value.lower() not in options:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(options)}")
    return value.lower()
