"""Robust losses with gross outliers: newtonkit ``least_squares`` against SciPy's ``trf``.

Problems: those of ``nls_problems.all_problems()`` with ``m ≥ 2n`` and a unique minimiser (the
rank-deficient ``linear_rank1*`` are left out: their parameter error is undefined).  For each,
with ``x*`` SciPy lm's outlier-free solution (tolerances 1e-12):

- *scale* ``s = max(rms r(x*), 1e-3 · rms r(x0))`` (the inlier residual scale; the floor only
  acts on the three zero-residual problems gulf, box3d, biggs_exp6);
- *outliers*: ``k = max(1, round(0.1 m))`` residuals, drawn without replacement by
  ``numpy.random.default_rng([SEED, i])`` (``i`` the problem's index in the list), get
  ``± 10 s`` added (random signs): ``r̃(x) = r(x) + o``, i.e. data points moved by ``10 s``;
- every loss (``soft_l1``, ``huber``, ``cauchy``, ``arctan``) with ``f_scale = s`` (one rule
  for all problems, nothing tuned per problem), analytic Jacobians, ``ftol = xtol = gtol =
  1e-10``, ``max_nfev = 100 (n + 1)``, from the standard ``x0``.

Measured: the parameter error ``‖x̂ − x*‖₂`` of SciPy ``trf``, newtonkit ``lm`` (its default
method) and newtonkit ``trf``.  Verdict per loss and newtonkit method: the error within
``1.1×`` SciPy trf's on every problem (the count is reported either way).
"""

from __future__ import annotations

import math
import sys
import time
import warnings

import nls_problems
import numpy as np
from scipy.optimize import least_squares

LOSSES = ("soft_l1", "huber", "cauchy", "arctan")
SEED = 15
FACTOR = 1.1  # the verdict's allowance on SciPy trf's parameter error
SOLVERS = ("scipy_trf", "newtonkit_lm", "newtonkit_trf")
COST_RTOL = 1e-8


def problems() -> list:
    return [p for p in nls_problems.all_problems()
            if p.m >= 2 * p.n and not p.name.startswith("linear_rank1")]


def outlier_free_solution(p) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return least_squares(p.residual, p.x0.copy(), jac=p.jacobian, method="lm", xtol=1e-12,
                             ftol=1e-12, gtol=1e-12).x


def outliers(p, xs: np.ndarray, i: int) -> tuple[np.ndarray, float]:
    """The offsets ``o`` (``k`` entries ``±10 s``, the rest 0) and the scale ``s``."""
    r, r0 = p.residual(xs), p.residual(p.x0)
    s = max(float(np.sqrt(np.mean(r * r))), 1e-3 * float(np.sqrt(np.mean(r0 * r0))))
    rng = np.random.default_rng([SEED, i])
    k = max(1, round(0.1 * p.m))
    o = np.zeros(p.m)
    o[rng.choice(p.m, size=k, replace=False)] = 10.0 * s * rng.choice([-1.0, 1.0], size=k)
    return o, s


def solve(solver: str, p, o: np.ndarray, loss: str, f_scale: float, tol: float) -> dict:
    kw = dict(jac=p.jacobian, loss=loss, f_scale=f_scale, ftol=tol, xtol=tol, gtol=tol,
              max_nfev=100 * (p.n + 1))

    def fun(x):
        return p.residual(np.asarray(x)) + o

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if solver == "scipy_trf":
                res = least_squares(fun, p.x0.copy(), method="trf", **kw)
            else:
                import newtonkit

                res = newtonkit.least_squares(fun, p.x0.copy(), method=solver.split("_")[1],
                                              **kw)
        except Exception as exc:  # a crash is a result to report
            return dict(x=None, cost=math.nan, nfev=0, status="error",
                        message=f"{type(exc).__name__}: {exc}", seconds=math.nan)
    return dict(x=np.asarray(res.x), cost=float(res.cost), nfev=int(res.nfev),
                status=int(res.status), message=str(res.message),
                seconds=time.perf_counter() - t0)


def run(tol: float = 1e-10) -> list[dict]:
    rows = []
    for i, p in enumerate(problems()):
        xs = outlier_free_solution(p)
        o, s = outliers(p, xs, i)
        for loss in LOSSES:
            row = {"problem": p.name, "n": p.n, "m": p.m, "k": int(np.count_nonzero(o)),
                   "scale": s, "loss": loss}
            for solver in SOLVERS:
                r = solve(solver, p, o, loss, s, tol)
                x = r.pop("x")
                r["error"] = math.nan if x is None else float(np.linalg.norm(x - xs))
                row[solver] = r
            rows.append(row)
    return rows


def meets(row: dict, solver: str) -> bool:
    e, ref = row[solver]["error"], row["scipy_trf"]["error"]
    return math.isfinite(e) and (not math.isfinite(ref) or e <= FACTOR * ref)


def cost_mark(row: dict, solver: str) -> str:
    """``=`` when the robust cost is SciPy trf's to ``COST_RTOL`` (then a different x is a flat
    or non-unique minimum), ``<`` lower, ``>`` higher (another local minimum or a stop short)."""
    c, ref = row[solver]["cost"], row["scipy_trf"]["cost"]
    if not math.isfinite(c):
        return ">"
    if abs(c - ref) <= COST_RTOL * abs(ref):
        return "="
    return "<" if c < ref else ">"


def verdicts(rows: list[dict]) -> list[tuple[str, str, bool]]:
    out = []
    for loss in LOSSES:
        sub = [r for r in rows if r["loss"] == loss]
        for solver in SOLVERS[1:]:
            ok = sum(meets(r, solver) for r in sub)
            back = sum(r["scipy_trf"]["error"] <= FACTOR * r[solver]["error"] for r in sub)
            miss = [cost_mark(r, solver) for r in sub if not meets(r, solver)]
            why = (f"; the misses' cost vs SciPy's: {miss.count('=')} equal, "
                   f"{miss.count('<')} lower, {miss.count('>')} higher" if miss else "")
            out.append((f"{loss}: newtonkit {solver.split('_')[1]} ‖x̂−x*‖ ≤ 1.1× SciPy trf's",
                        f"{ok}/{len(sub)} problems (SciPy trf ≤ 1.1× newtonkit's: {back}){why}",
                        ok == len(sub)))
    return out


def markdown(rows: list[dict], verdict_rows: list, seconds: float) -> list[str]:
    lines = ["## Robust losses with 10 % gross outliers (`bench_lsq_robust.py`)", "",
             f"{len(problems())} problems (m ≥ 2n, full rank); k = max(1, round(0.1 m)) "
             f"residuals + ±10 s, s = max(rms r(x*), 1e-3·rms r(x0)), seed {SEED}; f_scale = s; "
             f"tol 1e-10; error = ‖x̂ − x*‖₂ to the outlier-free solution; {seconds:.0f} s.", "",
             "| verdict | measured | |", "|---|---|---|"]
    lines += [f"| {v} | {m} | {'MET' if ok else 'MISSED'} |" for v, m, ok in verdict_rows]
    lines += ["", "✓ within 1.1× SciPy trf's error; ✗ not, with the robust cost against SciPy "
              "trf's: = within 1e-8 relative (a flat or non-unique minimum: same cost, other x), "
              "< lower, > higher (another local minimum, or a stop short of one).", "",
              "| problem | n | m | k | loss | SciPy trf error | nfev | nk lm error | nfev | "
              "nk trf error | nfev |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        a, b, c = r["scipy_trf"], r["newtonkit_lm"], r["newtonkit_trf"]

        def e(s, d, r=r):
            if s == "scipy_trf" or meets(r, s):
                return f"{d['error']:.3e} ✓"
            return f"{d['error']:.3e} ✗ {cost_mark(r, s)}"
        lines.append(f"| {r['problem']} | {r['n']} | {r['m']} | {r['k']} | {r['loss']} | "
                     f"{e('scipy_trf', a)} | {a['nfev']} | {e('newtonkit_lm', b)} | {b['nfev']} "
                     f"| {e('newtonkit_trf', c)} | {c['nfev']} |")
    return lines


def main() -> int:
    t0 = time.perf_counter()
    rows = run()
    v = verdicts(rows)
    print("\n".join(markdown(rows, v, time.perf_counter() - t0)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
