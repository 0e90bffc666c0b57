"""What a method is: a registry entry with declared needs, options, and init/step/terminate.

A method never loops over iterations itself: :func:`newtonkit.minimize` owns the loop, the
budgets, non-finite checks, callbacks and progress.  ``init`` evaluates the start point and
returns a state; ``step`` returns the next state (``accepted`` says whether ``x`` moved; a
rejected trial, as in Levenberg-Marquardt, keeps ``x``); ``terminate`` reads the state and
returns a :class:`~newtonkit._status.Status` or ``None``; ``verify`` checks a point where the
run would end successfully (Newton: the curvature there) and returns the final status and state.
States are explicit objects passed in and out and never changed once made (``step`` builds a
new one; histories are :func:`appended` to, which leaves the old state's history as it was); a
method instance keeps only settings.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .. import _backend as B
from .._status import Status

__all__ = ["Method", "State", "Option", "METHODS", "register", "lookup", "stop", "small_change",
           "appended", "entries", "last"]


@dataclass(slots=True)
class State:
    """The iterate and what the driver reads from it.

    ``x`` flat iterate; ``f`` objective value (float); ``g`` gradient at ``x`` (flat, or
    ``None`` when not yet computed there); ``accepted`` whether the last step moved ``x``;
    ``stop`` a status set by the method (read by ``terminate``); ``info`` method extras for
    the iteration table and callbacks; ``data`` method-private working data; ``x_finite``
    ``True`` when the method has already established that every entry of ``x`` is finite
    (the driver then skips its own check of an accepted iterate).
    """

    x: Any
    f: float
    g: Any = None
    accepted: bool = False
    stop: Status | None = None
    details: dict = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    data: dict = field(default_factory=dict)
    x_finite: bool = False


@dataclass(frozen=True)
class Option:
    """A method option: default and a validator that returns the clean value or raises."""

    default: Any
    check: Callable[[str, Any], Any]
    doc: str = ""


def positive_int(name: str, v: Any) -> int:
    """``v`` as an ``int`` ≥ 1: a Python or NumPy integer, a 0-d integer array or tensor
    (``operator.index``), or an integral float; never a bool."""
    if isinstance(v, float) and v.is_integer():
        i = int(v)
    elif isinstance(v, bool) or "bool" in str(getattr(v, "dtype", "")):
        i = 0  # NumPy and torch booleans too (operator.index takes torch.tensor(True) as 1)
    else:
        try:
            i = operator.index(v)
        except TypeError:
            i = 0
    if i < 1:
        raise ValueError(f"option {name!r} must be a positive integer, got {v!r}")
    return i


def optional_positive_int(name: str, v: Any) -> int | None:
    return None if v is None else positive_int(name, v)


def nonneg_float(name: str, v: Any) -> float:
    try:  # (a number, not a string that float() would parse: '1e-3' is a mistake)
        x = math.nan if isinstance(v, (str, bytes)) else float(v)
    except (TypeError, ValueError):
        x = math.nan
    if isinstance(v, bool) or not (x >= 0 and math.isfinite(x)):
        raise ValueError(f"option {name!r} must be a finite number >= 0, got {v!r}")
    return x


def positive_float(name: str, v: Any) -> float:
    x = nonneg_float(name, v)
    if x == 0:
        raise ValueError(f"option {name!r} must be > 0, got {v!r}")
    return x


def optional_nonneg_float(name: str, v: Any) -> float | None:
    return None if v is None else nonneg_float(name, v)


def unit_interval(name: str, v: Any) -> float:
    x = nonneg_float(name, v)
    if not 0 < x < 1:
        raise ValueError(f"option {name!r} must lie strictly between 0 and 1, got {v!r}")
    return x


def boolean(name: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError(f"option {name!r} must be True or False, got {v!r}")
    return v


def choice(*allowed: Any) -> Callable[[str, Any], Any]:
    def check(name: str, v: Any) -> Any:
        key = v.lower() if isinstance(v, str) else v
        if key not in allowed:
            raise ValueError(f"option {name!r} must be one of {list(allowed)}, got {v!r}")
        return key
    return check


class Method:
    """Base class of the methods.

    Class attributes declare what the method needs: ``problem_kind`` (``"objective"`` for a
    scalar ``fun`` and its gradient and Hessian, ``"outputs"`` for a residual or a Composite and
    its Jacobian; :func:`newtonkit.minimize` builds the problem from it) and ``options`` (its
    own knobs with defaults and validators).
    """

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    problem_kind: ClassVar[str] = "objective"
    options: ClassVar[dict[str, Option]] = {}
    #: Defaults of the common options that differ by method (``maxiter``, ``maxfev``) as
    #: functions of the dimension ``n``.
    default_maxiter: ClassVar[Callable[[int], int | None]] = staticmethod(lambda n: 200 * n)
    default_maxfev: ClassVar[Callable[[int], int | None]] = staticmethod(lambda n: None)
    #: Default tolerances in float64; other dtypes scale them by sqrt(eps / eps_float64).
    default_tol: ClassVar[dict[str, float]] = {"gtol": 1e-8, "ftol": 1e-8, "xtol": 1e-8}

    @classmethod
    def select(cls, opts: dict) -> type:
        """The class that handles ``opts`` (Gauss-Newton with ``damping`` is LM)."""
        return cls

    @classmethod
    def bounded(cls, opts: dict) -> type:
        """The class that solves the problem under finite bounds (``opts`` may get the
        defaults that class needs); the base raises: the method has no bounded form."""
        raise ValueError(f"method {cls.name!r} does not support bounds")

    def __init__(self, problem: Any, opts: dict, tol: dict) -> None:
        self.problem, self.opts, self.tol = problem, opts, tol
        self.xp = problem.xp
        #: ``(lb, ub)`` on x's backend (flat), or ``None`` without finite bounds
        self.bounds = tol.get("bounds")
        #: ‖x₀‖ (1 where x₀ = 0): the scale of the xtol tests' floor (:meth:`xtol_bound`)
        self.x_scale = tol.get("x_scale", 1.0)

    def init(self, x0: Any) -> State:
        raise NotImplementedError

    def step(self, state: State) -> State:
        raise NotImplementedError

    def terminate(self, state: State) -> Status | None:
        return state.stop

    def verify(self, state: State, status: Status) -> tuple[Status, State]:
        """The status and state to end with, where the run would end with the successful
        ``status`` at ``state`` (the base accepts both as they are)."""
        return status, state

    def finish(self, state: State) -> dict:
        """Result fields beyond the common ones (``jac`` and method extras)."""
        return {}

    # -- helpers shared by the methods ---------------------------------------------------------
    def norm(self, v: Any) -> float:
        return B.norm(self.xp, v)

    def inf_norm(self, v: Any) -> float:
        return float(self.xp.max(self.xp.abs(v))) if v.shape[0] else 0.0

    def finite(self, v: Any) -> bool:
        return B.all_finite(self.xp, v)

    def xtol_bound(self, x: Any, seen: Any = None) -> float:
        r"""The xtol test's bound on a step from ``x``: :math:`\mathrm{xtol}\,(\mathrm{xtol}\,s
        + \|x\|)` with ``s = ‖x₀‖`` (1 where x₀ = 0).  SciPy's ``xtol·(xtol + ‖x‖)`` with its
        floor xtol² scaled by x's size at the start, so that the test is the same in any units
        of x: with the absolute floor every step of an x of scale 1e-100 passed, and GN ended
        XTOL at x0 (its steps halve x on singular problems, x* = 0, where the floor is what
        ends the run).  trf keeps SciPy's test (its parity).

        ``seen``: where given, the entries of x whose Jacobian column is nonzero; only those
        count in ‖x‖.  A step of Gauss-Newton, HIG or Nielsen's LM leaves the others where
        they are (their rows of J⁺, V Σ^κ Uᵀ and (JᵀJ + μD²)⁻¹Jᵀ are 0), so their size says
        nothing of the others' convergence: in a two-exponential fit a decay rate whose
        column had underflowed ran to 9.5e8, and GN ended XTOL, success, at f = 1.09 with a
        gradient of 11 (the minimum there is 0.175)."""
        xtol = self.tol["xtol"]
        size = self.norm(x if seen is None else self.xp.where(seen, x, self.xp.zeros_like(x)))
        return xtol * (xtol * self.x_scale + size)


def stop(state: State, status: Status, details: dict | None = None) -> State:
    """A copy of ``state`` that ends the run with ``status`` (``details`` fill its message)."""
    return State(state.x, state.f, state.g, accepted=False, stop=status, info=state.info,
                 data=state.data, details=state.details if details is None else details)


def small_change(small_f: bool, small_x: bool) -> Status | None:
    """The status of the ftol and xtol tests: ``FTOL``, ``XTOL``, ``FTOL_XTOL`` or ``None``."""
    if small_f and small_x:
        return Status.FTOL_XTOL
    return Status.FTOL if small_f else Status.XTOL if small_x else None


def appended(history: tuple, entry: Any) -> tuple:
    """``history`` with ``entry`` added at its end; ``history`` itself is unchanged.

    A history is ``()`` or the pair ``(earlier history, last entry)``: adding costs O(1) and
    every state keeps the history of its own past (:func:`entries` lists it).
    """
    return (history, entry)


def entries(history: tuple) -> list:
    """The entries of a history (:func:`appended`), oldest first."""
    out = []
    while history:
        history, entry = history
        out.append(entry)
    return out[::-1]


def last(history: tuple) -> Any:
    """The last entry of a history, ``None`` when it is empty."""
    return history[1] if history else None


METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: add ``cls`` to the name → method registry (name and aliases)."""
    for key in (cls.name, *cls.aliases):
        METHODS[key.lower()] = cls
    return cls


def lookup(name: Any) -> type[Method]:
    """The method class registered under ``name`` (case-insensitive)."""
    if not isinstance(name, str) or name.lower() not in METHODS:
        known = ", ".join(repr(k) for k in sorted(METHODS))
        raise ValueError(f"unknown method {name!r}; known methods: {known}")
    return METHODS[name.lower()]
