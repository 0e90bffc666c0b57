"""Many-shot FWI (``examples/fwi.py``): Gauss-Newton against L-BFGS, and 1 against 2 processes.

Targets (issue 17), both measured in this one run:

1. Time to quality: matrix-free Gauss-Newton (newtonkit, CGLS on Born/reverse-mode products)
   reaches L-BFGS's model error (deepwave's recipe, ``torch.optim.LBFGS``, same misfit,
   same frequency continuation, same wall-clock budget per band) in at most half of L-BFGS's
   wall time.  Both run sharded on 2 processes × 1 thread.  The bar is L-BFGS's *best* error
   over its run, which is its final one when its error falls monotonically; the model error
   of L-BFGS can rise while its misfit falls (in the low band: a model that fits the
   low-passed data better and the true model worse), and its final error may then lie above
   the starting model's, which any method "reaches" at time 0.
2. Scaling: 2 processes × 1 thread give at least 1.6× the throughput of 1 process × 1 thread
   (Gauss-Newton iterations per second on the first band, ``--gn-iters`` iterations, the
   repeats interleaved 1, 2, 2, 1, ...), with the same iterates (float32: equal to the
   rounding of the shot sums, amplified by the CG iterations; the largest difference is
   reported).

Run: ``python benchmarks/bench_fwi.py`` (the 32 × 80 ``bench`` size, 16 shots: about 8 minutes on
2 cores), ``--size full`` (100 × 250, 16 shots), ``--budget``, ``--repeats``.  Writes
``benchmarks/output/fwi.md`` and ``fwi.json``.  The machine load (``os.getloadavg``) is recorded
next to every timing: the scaling target assumes two free cores.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = Path(__file__).resolve().parent / "output"


def load_example():
    """``examples/fwi.py`` as the module ``fwi`` (the problem, the methods and the launcher;
    importable by name, so that the spawned ranks find its functions)."""
    sys.path.insert(0, str(ROOT / "examples"))
    return importlib.import_module("fwi")


def first_time_at(trace: list, target: float) -> float | None:
    """The first time after the start in ``trace`` [(seconds, error)] with error ≤ ``target``
    (None: never)."""
    return next((t for t, e in trace[1:] if e <= target), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", choices=("quick", "bench", "full"), default="bench")
    ap.add_argument("--budget", type=float, default=None, help="seconds per band per method")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gn-iters", type=int, default=1)
    ap.add_argument("--procs", type=int, default=2)
    args = ap.parse_args()
    fwi = load_example()
    s = fwi.SIZES[args.size]
    budget = args.budget or {"quick": 3.0, "bench": 30.0, "full": 240.0}[args.size]
    OUT.mkdir(exist_ok=True)
    load: list[float] = []

    def note_load() -> None:
        load.append(os.getloadavg()[0])

    # 1. time to quality ----------------------------------------------------------------------
    note_load()
    job = {"kind": "compare", "size": args.size, "methods": ["lbfgs", "gn"], "budget": budget,
           "threads": 1}
    t0 = time.perf_counter()
    res = fwi.launch(job, args.procs)
    wall_compare = time.perf_counter() - t0
    note_load()
    lb, gn = res["lbfgs"]["trace"], res["gn"]["trace"]
    t_lbfgs, e_lbfgs = lb[-1]
    t_best, e_best = min(lb, key=lambda te: te[1])  # the bar: L-BFGS's best error
    t_gn = first_time_at(gn, e_best)
    ratio = None if t_gn is None else t_gn / t_lbfgs
    print(f"L-BFGS: error {e_lbfgs:.4f} after {t_lbfgs:.1f} s ({len(lb) - 1} iterations; best "
          f"{e_best:.4f} at {t_best:.1f} s); "
          f"Gauss-Newton: error {gn[-1][1]:.4f} after {gn[-1][0]:.1f} s ({len(gn) - 1} "
          f"iterations), reaches L-BFGS's best error "
          + ("never" if t_gn is None else f"after {t_gn:.1f} s (ratio {ratio:.2f})"), flush=True)

    # 2. scaling, interleaved -----------------------------------------------------------------
    gn_job = {"kind": "gn", "size": args.size, "iters": args.gn_iters, "threads": 1}
    seconds: dict[int, list[float]] = {1: [], args.procs: []}
    iterates: dict[int, list] = {1: [], args.procs: []}
    runs = []
    for r in range(args.repeats):
        order = (1, args.procs) if r % 2 == 0 else (args.procs, 1)
        for world in order:
            before = os.getloadavg()[0]
            out = fwi.launch(gn_job, world)
            seconds[world].append(out["seconds"])
            iterates[world].append(out["iterates"])
            runs.append({"processes": world, "seconds": out["seconds"], "load_before": before,
                         "load_after": os.getloadavg()[0]})
            load.append(before)
            print(f"  {world} process(es): {out['seconds']:.1f} s for {args.gn_iters} "
                  f"Gauss-Newton iteration(s) (load {before:.1f})", flush=True)
    t1, tp = statistics.median(seconds[1]), statistics.median(seconds[args.procs])
    speedup = t1 / tp
    same_p = all(bool((x == iterates[w][0]).all()) for w in iterates for x in iterates[w])
    diff = float((iterates[1][0] - iterates[args.procs][0]).abs().max())
    vmax = float(iterates[1][0].abs().max())
    print(f"throughput ratio {args.procs} vs 1 process: {speedup:.2f} (medians {t1:.1f} s, "
          f"{tp:.1f} s); largest iterate difference {diff:.3g} m/s ({diff / vmax:.2g} "
          f"relative); repeats bitwise identical: {same_p}", flush=True)

    # report ------------------------------------------------------------------------------------
    met_time = ratio is not None and ratio <= 0.5
    met_scale = speedup >= 1.6
    data = {"size": args.size, "grid": [s.nz, s.nx], "shots": s.shots, "bands": s.bands,
            "budget_per_band": budget, "procs": args.procs,
            "lbfgs": {"final_error": e_lbfgs, "best_error": e_best, "seconds_to_best": t_best,
                      "seconds": t_lbfgs, "iterations": len(lb) - 1, "trace": lb},
            "gn": {"final_error": gn[-1][1], "seconds": gn[-1][0], "iterations": len(gn) - 1,
                   "seconds_to_lbfgs_best_error": t_gn, "trace": gn},
            "time_ratio": ratio, "time_target_met": met_time,
            "scaling": {"runs": runs, "median_seconds_1": t1, f"median_seconds_{args.procs}": tp,
                        "throughput_ratio": speedup, "target_met": met_scale,
                        "max_iterate_diff": diff, "relative_diff": diff / vmax,
                        "repeats_bitwise_identical": same_p},
            "load_average": load, "wall_seconds_compare": wall_compare}
    (OUT / "fwi.json").write_text(json.dumps(data, indent=1))
    reach = "never" if t_gn is None else f"{t_gn:.1f} s"
    lines = [
        f"# bench_fwi: {s.nz} × {s.nx} cells, {s.shots} shots, bands {s.bands} Hz",
        "",
        f"Both methods sharded over {args.procs} processes × 1 thread, {budget:g} s per band "
        f"each; load average during the run {min(load):.1f}–{max(load):.1f} on 2 cores"
        + (" (other jobs were running: timings are contaminated)." if max(load) > 2.5 else
           "."),
        "",
        "| | L-BFGS (deepwave's recipe) | Gauss-Newton (newtonkit, CGLS) |",
        "|---|---|---|",
        f"| final model error | {e_lbfgs:.4f} | {gn[-1][1]:.4f} |",
        f"| best model error (at) | {e_best:.4f} ({t_best:.1f} s) | "
        f"{min(e for _, e in gn):.4f} ({min(gn, key=lambda te: te[1])[0]:.1f} s) |",
        f"| wall time (s) | {t_lbfgs:.1f} | {gn[-1][0]:.1f} |",
        f"| iterations | {len(lb) - 1} | {len(gn) - 1} |",
        f"| time to L-BFGS's best error | {t_best:.1f} s | {reach} |",
        "",
        f"Target GN time ≤ 0.5 × L-BFGS time: ratio "
        f"{'not reached' if ratio is None else f'{ratio:.2f}'} — "
        f"{'met' if met_time else 'missed'}.",
        "",
        f"## Scaling: {args.gn_iters} Gauss-Newton iteration(s), 1 vs {args.procs} processes "
        f"× 1 thread ({args.repeats} repeats, interleaved)",
        "",
        "| processes | seconds (each repeat) | median | load before |",
        "|---|---|---|---|",
    ]
    for w in (1, args.procs):
        ts = ", ".join(f"{r['seconds']:.1f}" for r in runs if r["processes"] == w)
        ls = ", ".join(f"{r['load_before']:.1f}" for r in runs if r["processes"] == w)
        lines.append(f"| {w} | {ts} | {statistics.median(seconds[w]):.1f} | {ls} |")
    lines += [
        "",
        f"Throughput ratio {speedup:.2f} (target ≥ 1.6: {'met' if met_scale else 'missed'}). "
        f"Iterates of the 1- and {args.procs}-process runs differ by at most {diff:.3g} m/s "
        f"({diff / vmax:.2g} relative, float32); repeats with the same number of processes "
        f"are {'bitwise identical' if same_p else 'not bitwise identical'}.",
    ]
    (OUT / "fwi.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {OUT / 'fwi.md'}", flush=True)


if __name__ == "__main__":
    main()
