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
``1.1×`` SciPy trf's on every problem, where the error is taken up to the model's exact
symmetries (``min_π ‖x̂[π] − x*‖₂`` over :data:`SYMMETRIES`, for both solvers): osborne1,
biggs_exp6 and osborne2 are sums of terms that fit the data identically in any order, so the
fit determines their parameters only up to that order (the literal count is reported too).
"""

from __future__ import annotations

import itertools
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


def reference_solution(p) -> np.ndarray:
    """SciPy lm's solution (tolerances 1e-12), the lower-cost one of the runs from ``x0`` and
    from ``x0 + 1e-6 (1 + |x0|) cos(1..n)``.  The second start makes the reference
    reproducible: biggs_exp6's ``x0`` lies on the subspace ``x1 = x5, x3 = x6`` that Gauss-
    Newton steps keep (the Jacobian is rank-deficient there), and lm leaves it only through
    rounding, which depends on the arrays' memory alignment (NumPy's SIMD ``exp``): from ``x0``
    alone lm ended at the global minimum or at a saddle in alternate calls of one process, and
    which labelling of the minimum it reaches depends on the CPU (see the code).  On
    the other 37 problems both starts give the same minimum (a rank-deficient problem's
    minimiser is not unique: there the ``x0`` run is kept)."""
    x1 = p.x0 + 1e-6 * (1.0 + np.abs(p.x0)) * np.cos(np.arange(1.0, p.n + 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xs = [least_squares(p.residual, x.copy(), jac=p.jacobian, method="lm", xtol=1e-12,
                            ftol=1e-12, gtol=1e-12).x for x in (p.x0, x1)]
    x = min(xs, key=p.cost)
    # A symmetry that fixes x0 leaves the labelling of the minimum to rounding (biggs_exp6
    # reaches (1, 10, 1, 5, 4, 3) or (4, 10, 3, 5, 1, 1) with the CPU's vector width): there
    # the reference is the lexicographically least labelling
    fixing = [q for q in SYMMETRIES.get(p.name, []) if np.array_equal(p.x0[list(q)], p.x0)]
    return min([x] + [x[list(q)] for q in fixing], key=tuple)


def outlier_free_solution(p) -> np.ndarray:
    return reference_solution(p)


def _gaussian_permutations() -> list[tuple[int, ...]]:
    """osborne2's three Gaussian terms ``x[1+k] exp(-(t - x[8+k])² x[5+k])`` in any order."""
    out = []
    for sigma in itertools.permutations(range(3)):
        if sigma != (0, 1, 2):
            q = list(range(11))
            for k in range(3):
                q[1 + k], q[5 + k], q[8 + k] = 1 + sigma[k], 5 + sigma[k], 8 + sigma[k]
            out.append(tuple(q))
    return out


#: Exact symmetries of the residual, index permutations π with ``r(x[π]) = r(x)`` for every
#: ``x`` (checked in :func:`parameter_error`): sums of exponentials whose terms can swap.  The
#: parameters are identified only up to them, so ``x[π]`` is the same fitted model as ``x``.
SYMMETRIES = {
    "osborne1": [(0, 2, 1, 4, 3)],  # x2 e^{-t x4} + x3 e^{-t x5}
    "biggs_exp6": [(4, 1, 5, 3, 0, 2)],  # x3 e^{-t x1} + x6 e^{-t x5}
    "osborne2": _gaussian_permutations(),
}


def parameter_error(p, x: np.ndarray, xs: np.ndarray, symmetric: bool = False) -> float:
    """``‖x − x*‖₂``; with ``symmetric`` the least over the residual's exact symmetries
    (:data:`SYMMETRIES`), ``min_π ‖x[π] − x*‖₂``.

    Each symmetry is checked at a fixed probe point of order 1, where the residual's terms are
    of the size of the residual and reordering them changes it by rounding only; at the
    estimate itself a near-zero residual is a cancellation of O(1) terms (biggs_exp6: max|r| =
    3.7e-5, changed by 1.1e-16 when its two exponentials swap), which no tolerance relative to
    r would pass."""
    err = float(np.linalg.norm(x - xs))
    if symmetric:
        probe = np.random.default_rng(0).uniform(0.5, 1.5, p.n)
        for q in SYMMETRIES.get(p.name, []):
            r0, r1 = p.residual(probe), p.residual(probe[list(q)])
            assert np.allclose(r1, r0, rtol=1e-12, atol=1e-12 * np.abs(r0).max()), p.name
            err = min(err, float(np.linalg.norm(x[list(q)] - xs)))
    return err


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
                r["error"] = math.nan if x is None else parameter_error(p, x, xs)
                r["error_sym"] = math.nan if x is None else parameter_error(p, x, xs, True)
                row[solver] = r
            rows.append(row)
    return rows


def meets(row: dict, solver: str, key: str = "error") -> bool:
    """``solver``'s parameter error (``key``: ``"error"``, or ``"error_sym"`` modulo the
    residual's symmetries) within ``FACTOR`` × SciPy trf's."""
    e, ref = row[solver][key], row["scipy_trf"][key]
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
            ok_sym = sum(meets(r, solver, "error_sym") for r in sub)
            back = sum(r["scipy_trf"]["error"] <= FACTOR * r[solver]["error"] for r in sub)
            miss = [cost_mark(r, solver) for r in sub if not meets(r, solver)]
            why = (f"; the misses' cost vs SciPy's: {miss.count('=')} equal, "
                   f"{miss.count('<')} lower, {miss.count('>')} higher" if miss else "")
            # The verdict reads the identifiable error: a sum of exponentials fits the data the
            # same with its terms swapped, so only x up to SYMMETRIES is determined by the fit.
            out.append((f"{loss}: newtonkit {solver.split('_')[1]} parameter error (up to the "
                        f"model's exact symmetries) ≤ 1.1× SciPy trf's",
                        f"{ok_sym}/{len(sub)} problems; literal ‖x̂−x*‖ {ok}/{len(sub)} "
                        f"(SciPy trf ≤ 1.1× newtonkit's: {back}){why}",
                        ok_sym == len(sub)))
    return out


def reading(rows: list[dict]) -> list[str]:
    """What the per-problem misses are (counted over all losses)."""
    def tally(solver):
        miss = [r for r in rows if not meets(r, solver)]
        marks = [cost_mark(r, solver) for r in miss]
        sym = sum(meets(r, solver, "error_sym") for r in miss)
        return (f"{len(miss)} of {len(rows)} runs miss: by robust cost against SciPy trf's "
                f"{marks.count('=')} equal, {marks.count('<')} lower, {marks.count('>')} higher; "
                f"within 1.1× modulo the residual's symmetries: {sym} of these")
    return [
        "Reading the misses. The target compares each run's distance to x* with SciPy trf's. "
        "On a non-convex robust cost (cauchy, arctan; huber on meyer and biggs_exp6) a method "
        "ends in the local minimum its path leads to; a distance ratio then compares paths, "
        "not accuracy, and it is met only by following SciPy trf's path.",
        "",
        f"- newtonkit **trf** takes SciPy trf's model (Triggs, no curvature floor) and follows "
        f"its path up to the rounding of the loss arithmetic: {tally('newtonkit_trf')}.",
        f"- newtonkit **lm** is a different method (MINPACK's LM with Moré's column scaling, "
        f"SciPy lm's default, and newtonkit's curvature floor δ = 0.1; SciPy has no robust lm): "
        f"{tally('newtonkit_lm')}. A lower cost is a better minimum of the objective it is "
        f"given, farther from x*; a higher one another local minimum or the evaluation budget. "
        f"For lm the target as written (every problem within 1.1×) asks a different algorithm "
        f"to land in trf's local minima: not reachable by a property of the method.",
    ]


def markdown(rows: list[dict], verdict_rows: list, seconds: float) -> list[str]:
    lines = ["## Robust losses with 10 % gross outliers (`bench_lsq_robust.py`)", "",
             f"{len(problems())} problems (m ≥ 2n, full rank); k = max(1, round(0.1 m)) "
             f"residuals + ±10 s, s = max(rms r(x*), 1e-3·rms r(x0)), seed {SEED}; f_scale = s; "
             f"tol 1e-10; error = ‖x̂ − x*‖₂ to the outlier-free solution; {seconds:.0f} s.", "",
             "| verdict | measured | |", "|---|---|---|"]
    lines += [f"| {v} | {m} | {'MET' if ok else 'MISSED'} |" for v, m, ok in verdict_rows]
    lines += ["", *reading(rows)]
    lines += ["", "✓ within 1.1× SciPy trf's error; ✗ not, with the robust cost against SciPy "
              "trf's: = within 1e-8 relative (a flat or non-unique minimum: same cost, other x), "
              "< lower, > higher (another local minimum, or a stop short of one); π✓: within "
              "1.1× modulo the residual's exact symmetries (osborne1, biggs_exp6: two "
              "exponentials swap; osborne2: its three Gaussians permute).", "",
              "| problem | n | m | k | loss | SciPy trf error | nfev | nk lm error | nfev | "
              "nk trf error | nfev |", "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        a, b, c = r["scipy_trf"], r["newtonkit_lm"], r["newtonkit_trf"]

        def e(s, d, r=r):
            if s == "scipy_trf" or meets(r, s):
                return f"{d['error']:.3e} ✓"
            sym = " π✓" if meets(r, s, "error_sym") else ""
            return f"{d['error']:.3e} ✗ {cost_mark(r, s)}{sym}"
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
