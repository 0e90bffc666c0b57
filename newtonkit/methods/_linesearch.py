r"""Backtracking line search with the Armijo condition.

Accept the first :math:`t \in \{1, t_1, t_2, \dots\}` with

.. math:: f(x + t d) \le f(x) + c_1 t\, \nabla f(x)^T d

and a finite gradient there.  The next trial is the minimiser of the quadratic through
:math:`f(x)`, the slope and :math:`f(x + t d)`, safeguarded to :math:`[0.1 t, 0.5 t]`
(Nocedal & Wright, §3.5); a non-finite trial value halves ``t``.  With ``armijo=False`` the unit
step is taken whenever it is finite (the seed's plain Newton), shortening only non-finite trials.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["backtrack", "SearchResult"]


@dataclass(frozen=True)
class SearchResult:
    """``t`` the step length (``None``: failed), ``point`` what ``value`` returned there,
    ``trials`` how many points were evaluated, ``nonfinite`` whether a trial met a non-finite
    value or gradient."""

    t: float | None
    point: Any
    trials: int
    nonfinite: bool


def backtrack(value: Callable[[float], tuple[float, Any]], f0: float, slope: float, *,
              finish: Callable[[Any], bool] | None = None, c1: float = 1e-4,
              max_steps: int = 30, armijo: bool = True) -> SearchResult:
    """Backtracking from ``t = 1``.

    ``value(t)`` evaluates ``f`` at ``x + t d`` and returns ``(f, point)``; ``finish(point)``
    is called once the step is acceptable (it evaluates the gradient there) and returns whether
    it is finite; a non-finite gradient is treated like a non-finite value.
    """
    t = 1.0
    any_nonfinite = False
    for k in range(1, max_steps + 1):
        f, point = value(t)
        ok = math.isfinite(f)
        if ok and (not armijo or f <= f0 + c1 * t * slope):
            if finish is None or finish(point):
                return SearchResult(t, point, k, any_nonfinite)
            ok = False
        if ok:
            denom = 2.0 * (f - f0 - slope * t)
            t_new = -slope * t * t / denom if denom > 0 else 0.5 * t
            t = min(max(t_new, 0.1 * t), 0.5 * t)
        else:
            any_nonfinite = True
            t *= 0.5
    return SearchResult(None, None, max_steps, any_nonfinite)
