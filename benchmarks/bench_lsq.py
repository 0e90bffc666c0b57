"""Bounded nonlinear least squares: newtonkit ``least_squares(method="trf")`` against SciPy's
``trf`` and ``dogbox`` on the 38 problems of ``nls_problems.all_problems()``.

Bounds (:func:`cut_bounds`, :func:`loose_bounds`), from SciPy lm's unconstrained solution
``x*`` (tolerances 1e-12):

- *cut*: in the coordinate ``j`` where ``x*`` is farthest from ``x0`` (relative to
  ``1 + |x0_j|``) a bound halfway between ``x0_j`` and ``x*_j`` on ``x*``'s side: ``x*`` is
  outside the box, the start inside;
- *inactive*: the box spanned by ``x0`` and ``x*``, widened on each side by ``1 + |span|``:
  the unconstrained path and solution lie well inside.

Every solver: analytic Jacobian, ``ftol = xtol = gtol = 1e-10`` (``--tol``), ``max_nfev =
100 (n + 1)``, SciPy's default ``x_scale`` (1 for trf/dogbox; newtonkit's trf the same).
Counted evaluations as in ``bench_nls.py`` (wrappers around the problem's callables).

Verdicts (issue 15 part 2):

1. *cost*: newtonkit reaches ``cost <= trf_cost (1 + 1e-8)`` on at least as many problems as
   SciPy trf reaches ``cost <= nk_cost (1 + 1e-8)`` (both sets together);
2. *Jacobians*: median ``njev`` of newtonkit ≤ SciPy trf's (over all runs);
3. *time*: per problem the median over ``--repeats`` rounds of newtonkit's sample over SciPy
   trf's sample of the same round (paired as in ``bench_nls.py``); the median of those ratios
   ≤ 1 over the problems with n ≥ 200 and ≤ 2 over those with n ≤ 10.

A second section, robust losses with 10 % gross outliers against SciPy trf (parameter error
to the outlier-free solution), is ``bench_lsq_robust.py`` (see its docstring); ``--no-robust``
skips it.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_lsq.py`` (writes ``benchmarks/output/lsq.md``
and ``lsq.json``).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy.optimize import least_squares  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_lsq_robust  # noqa: E402
import nls_problems  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "output"
COST_RTOL = 1e-8


class Counted:
    def __init__(self, p):
        self.p, self.nfev, self.njev = p, 0, 0

    def fun(self, x):
        self.nfev += 1
        return self.p.residual(np.asarray(x))

    def jac(self, x):
        self.njev += 1
        return self.p.jacobian(np.asarray(x))


def unconstrained_solution(p) -> np.ndarray:
    """SciPy lm's solution, reproducible (:func:`bench_lsq_robust.reference_solution`)."""
    return bench_lsq_robust.reference_solution(p)


def cut_bounds(p, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A bound halfway between ``x0`` and ``xs`` in the coordinate that moves most."""
    lb, ub = np.full(p.n, -np.inf), np.full(p.n, np.inf)
    j = int(np.argmax(np.abs(xs - p.x0) / (1.0 + np.abs(p.x0))))
    mid = 0.5 * (p.x0[j] + xs[j])
    if xs[j] > p.x0[j]:
        ub[j] = mid
    else:
        lb[j] = mid
    return lb, ub


def loose_bounds(p, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = np.minimum(p.x0, xs), np.maximum(p.x0, xs)
    pad = 1.0 + (hi - lo)
    return lo - pad, hi + pad


def _run(solver, c, p, bounds, tol):
    kw = dict(jac=c.jac, bounds=bounds, xtol=tol, ftol=tol, gtol=tol, max_nfev=100 * (p.n + 1))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if solver == "newtonkit_trf":
            import newtonkit

            return newtonkit.least_squares(c.fun, p.x0.copy(), method="trf", **kw)
        return least_squares(c.fun, p.x0.copy(), method=solver.split("_")[1], **kw)


SOLVERS = ("scipy_trf", "scipy_dogbox", "newtonkit_trf")


def counted_run(solver, p, bounds, tol):
    c = Counted(p)
    try:
        res = _run(solver, c, p, bounds, tol)
    except Exception as exc:  # a crash is a result to report
        return dict(cost=math.nan, nfev=c.nfev, njev=c.njev, status="error",
                    message=f"{type(exc).__name__}: {exc}", active=0)
    lb, ub = bounds
    x = np.asarray(res.x)
    assert np.all(x >= lb) and np.all(x <= ub), (solver, p.name)
    return dict(cost=p.cost(x), nfev=c.nfev, njev=c.njev, status=int(res.status),
                message=str(res.message), active=int(np.count_nonzero(res.active_mask)))


def _sample(solver, p, bounds, tol, number):
    cs = [Counted(p) for _ in range(number)]
    t0 = time.perf_counter()
    for c in cs:
        _run(solver, c, p, bounds, tol)
    return (time.perf_counter() - t0) / number


def paired_times(jobs, tol, repeats, min_sample=0.02):
    """Per job ``{solver: samples}`` for newtonkit trf and SciPy trf, rounds over all jobs,
    the two in a shuffled order each time (seeded)."""
    pair = ("scipy_trf", "newtonkit_trf")
    number = {}
    for j, (p, b) in enumerate(jobs):
        for s in pair:
            t1 = _sample(s, p, b, tol, 1)
            number[j, s] = max(1, math.ceil(min_sample / max(t1, 1e-9)))
    times = {(j, s): [] for j in range(len(jobs)) for s in pair}
    rng = random.Random(0)
    for _ in range(repeats):
        for j, (p, b) in enumerate(jobs):
            order = list(pair)
            rng.shuffle(order)
            for s in order:
                times[j, s].append(_sample(s, p, b, tol, number[j, s]))
    return [{s: times[j, s] for s in pair} for j in range(len(jobs))]


def _better_or_equal(a, b, atol=1e-300):
    return math.isfinite(a) and (not math.isfinite(b) or a <= b * (1 + COST_RTOL) + atol)


def summary(rows):
    nk_ok = sum(_better_or_equal(r["newtonkit_trf"]["cost"], r["scipy_trf"]["cost"]) for r in rows)
    trf_ok = sum(_better_or_equal(r["scipy_trf"]["cost"], r["newtonkit_trf"]["cost"]) for r in rows)
    dog_ok = sum(_better_or_equal(r["scipy_dogbox"]["cost"], r["scipy_trf"]["cost"])
                 for r in rows)
    atol = nls_problems.ATOL  # the "solved" floor of a zero residual: below it, rounding
    nk_a = sum(_better_or_equal(r["newtonkit_trf"]["cost"], r["scipy_trf"]["cost"], atol)
               for r in rows)
    trf_a = sum(_better_or_equal(r["scipy_trf"]["cost"], r["newtonkit_trf"]["cost"], atol)
                for r in rows)
    same = sum(r["newtonkit_trf"]["cost"] == r["scipy_trf"]["cost"]
               and all(r["newtonkit_trf"][k] == r["scipy_trf"][k] for k in ("nfev", "njev"))
               for r in rows)
    nj_nk = statistics.median(r["newtonkit_trf"]["njev"] for r in rows)
    nj_trf = statistics.median(r["scipy_trf"]["njev"] for r in rows)
    big = [r["ratio"] for r in rows if r["n"] >= 200]
    small = [r["ratio"] for r in rows if r["n"] <= 10]
    t_big, t_small = (statistics.median(t) if t else math.nan for t in (big, small))
    verdicts = [
        ("cost ≤ trf·(1+1e-8) on at least as many problems as trf ≤ nk·(1+1e-8)",
         f"newtonkit {nk_ok}/{len(rows)}, SciPy trf {trf_ok}/{len(rows)} (dogbox ≤ trf: "
         f"{dog_ok}); with + {atol:g} (zero residuals' rounding): newtonkit {nk_a}, trf "
         f"{trf_a}; runs identical to SciPy trf's (the same cost to the bit, nfev, njev): "
         f"{same}/{len(rows)}", nk_ok >= trf_ok),
        ("median njev ≤ SciPy trf's", f"newtonkit {nj_nk}, SciPy trf {nj_trf}", nj_nk <= nj_trf),
        ("time ≤ 1× trf for n ≥ 200 (median paired ratio)", f"{t_big:.2f} over {len(big)} runs",
         t_big <= 1.0),
        ("time ≤ 2× trf for n ≤ 10 (median paired ratio)", f"{t_small:.2f} over {len(small)} runs",
         t_small <= 2.0),
    ]
    return verdicts


def markdown(rows, verdicts, meta):
    lines = ["# Bounded least squares: newtonkit trf vs SciPy trf / dogbox", "",
             f"{meta['machine']}; SciPy {meta['scipy']}, NumPy {meta['numpy']}; tol "
             f"{meta['tol']}, {meta['repeats']} paired rounds; generated by "
             f"`benchmarks/bench_lsq.py` in {meta['seconds']:.0f} s.", "",
             "| verdict | measured | |", "|---|---|---|"]
    lines += [f"| {v} | {m} | {'MET' if ok else 'MISSED'} |" for v, m, ok in verdicts]
    lines += ["", "Reading the cost verdict. newtonkit's trf does SciPy trf's floating-point "
              "operations (the SVD of the same [Ĵ; C½], the same sums in the same order), so "
              "on NumPy float64 its runs are SciPy's, bit for bit (counted above), and the "
              "verdict is met by identity, not by a better method.  Where two paths do differ "
              "(as with newtonkit's earlier QR-then-SVD factorisation) the 1e-8 relative "
              "comparison is decided by rounding on this set: the zero-residual problems end "
              "at costs of 1e-20 to 1e-32, the rounding of r; the runs that stop at max_nfev "
              "(meyer inactive, biggs_exp6 cut) end where SciPy trf itself moves by about 1 % "
              "(meyer) and 4e-5 (biggs_exp6) under one-ulp changes of x0; and rank-deficient "
              "Jacobians (biggs_exp6 "
              "from its symmetric x0) leave their subspace only through rounding.", ""]
    lines += ["Cost: ½‖r‖² at the solution; ✓ = within (1+1e-8) of the best of the three; "
              "act = active bounds reported; time ratio = median of same-round newtonkit/trf "
              "samples.", "",
              "| problem | set | n | SciPy trf cost | nfev | njev | dogbox cost | njev | "
              "newtonkit cost | nfev | njev | act | ms nk | ms trf | nk/trf |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        best = min(r[s]["cost"] for s in SOLVERS if math.isfinite(r[s]["cost"]))

        def c(s, r=r, best=best):
            ok = "✓" if _better_or_equal(r[s]["cost"], best) else "✗"
            return f"{r[s]['cost']:.6e} {ok}"
        a, d, k = r["scipy_trf"], r["scipy_dogbox"], r["newtonkit_trf"]
        lines.append(f"| {r['problem']} | {r['set']} | {r['n']} | {c('scipy_trf')} | {a['nfev']} "
                     f"| {a['njev']} | {c('scipy_dogbox')} | {d['njev']} | {c('newtonkit_trf')} "
                     f"| {k['nfev']} | {k['njev']} | {k['active']} | {r['t_nk'] * 1e3:.2f} | "
                     f"{r['t_trf'] * 1e3:.2f} | {r['ratio']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tol", type=float, default=1e-10)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--problems", nargs="*", default=None)
    ap.add_argument("--no-robust", action="store_true", help="skip the robust-loss section")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    probs = [p for p in nls_problems.all_problems()
             if args.problems is None or p.name in args.problems]
    jobs, rows = [], []
    for p in probs:
        xs = unconstrained_solution(p)
        for name, b in (("cut", cut_bounds(p, xs)), ("inactive", loose_bounds(p, xs))):
            jobs.append((p, b))
            rows.append({"problem": p.name, "set": name, "n": p.n,
                         **{s: counted_run(s, p, b, args.tol) for s in SOLVERS}})
    times = paired_times(jobs, args.tol, args.repeats)
    for r, t in zip(rows, times, strict=True):
        r["t_nk"] = statistics.median(t["newtonkit_trf"])
        r["t_trf"] = statistics.median(t["scipy_trf"])
        r["ratio"] = statistics.median(a / b for a, b in zip(t["newtonkit_trf"], t["scipy_trf"],
                                                             strict=True))
    verdicts = summary(rows)
    meta = {"machine": f"{platform.machine()} {platform.python_version()}", "tol": args.tol,
            "scipy": scipy.__version__, "numpy": np.__version__, "repeats": args.repeats,
            "seconds": time.perf_counter() - t0}
    text = markdown(rows, verdicts, meta)
    data = {"meta": meta, "rows": rows, "verdicts": [
        {"verdict": v, "measured": m, "met": ok} for v, m, ok in verdicts]}
    printed = list(verdicts)
    if not args.no_robust:
        t1 = time.perf_counter()
        robust_rows = bench_lsq_robust.run(args.tol)
        robust_verdicts = bench_lsq_robust.verdicts(robust_rows)
        seconds = time.perf_counter() - t1
        text += "\n" + "\n".join(bench_lsq_robust.markdown(robust_rows, robust_verdicts,
                                                          seconds)) + "\n"
        data["robust"] = {"seconds": seconds, "seed": bench_lsq_robust.SEED,
                          "rows": robust_rows, "verdicts": [
                              {"verdict": v, "measured": m, "met": ok}
                              for v, m, ok in robust_verdicts]}
        printed += robust_verdicts
    OUT.mkdir(exist_ok=True)
    (OUT / "lsq.md").write_text(text)
    (OUT / "lsq.json").write_text(json.dumps(data, indent=1))
    for v, m, ok in printed:
        print(f"{'MET   ' if ok else 'MISSED'} {v}: {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
