"""The report the checkers return: one line per check with its measured value and its bound."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["Check", "Report"]


@dataclass(frozen=True)
class Check:
    """One check: a measured value against an allowed bound.

    ``relation`` is ``"<="`` when ``measured`` must not exceed ``bound`` (an error against its
    rounding bound) and ``">="`` when it must reach it (a convergence order).  ``ratio`` is
    oriented so that a value above 1 fails in both cases; ``passed`` may also be set for a check
    decided otherwise (a non-finite value fails whatever the numbers say).
    """

    name: str
    measured: float
    bound: float
    relation: str = "<="
    detail: str = ""
    passed: bool | None = None

    @property
    def ok(self) -> bool:
        if self.passed is not None:
            return self.passed
        if not (math.isfinite(self.measured) and math.isfinite(self.bound)):
            return False
        if self.relation == "<=":
            return self.measured <= self.bound
        return self.measured >= self.bound

    @property
    def ratio(self) -> float:
        """``measured / bound`` (``bound / measured`` for ``">="``); above 1 fails."""
        num, den = ((self.measured, self.bound) if self.relation == "<="
                    else (self.bound, self.measured))
        if den == 0:
            return 0.0 if num == 0 else math.inf
        return abs(num / den) if math.isfinite(num / den) else math.inf

    def __str__(self) -> str:
        status = "ok  " if self.ok else "FAIL"
        line = (f"{status} {self.name}: {self.measured:.3g} (allowed {self.relation} "
                f"{self.bound:.3g}, ratio {self.ratio:.3g})")
        return line + (f"\n       {self.detail}" if self.detail else "")


@dataclass
class Report:
    """The checks made on one subject (an operator, a function's derivatives).

    ``bool(report)`` and ``report.ok`` are true when every check passed; ``str(report)`` lists
    each check with its measured value, its bound and their ratio; ``failures`` are the checks
    that failed.
    """

    subject: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def __getitem__(self, name: str) -> Check:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; the report has "
                       f"{[c.name for c in self.checks]}")

    def __str__(self) -> str:
        n_bad = len(self.failures)
        head = (f"{self.subject}: {len(self.checks)} checks, "
                + ("all passed" if n_bad == 0 else f"{n_bad} FAILED"))
        return "\n".join([head] + ["  " + str(c) for c in self.checks])

    def finish(self, raise_error: bool) -> Report:
        """``self``; with ``raise_error``, ``AssertionError`` carrying the text when a check
        failed."""
        if raise_error and not self.ok:
            raise AssertionError(str(self))
        return self
