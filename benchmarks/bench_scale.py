"""Time and peak memory of one GN step and one HIG direction per route, by shape (issue 16).

Grid N ∈ {256, 1024, 4096} rows × P ∈ {1e3, 1e4, 1e5} parameters, float64, for the routes
``normal`` (the P × P Gram: Cholesky of JᵀJ + μI for GN, eigh of JᵀJ for HIG), ``kernel`` (the
N × N Gram JJᵀ) and ``matrix-free`` (CG on the kernel system for GN; the randomized SVD whose
rank follows the threshold for HIG), and ``auto`` (what ``gauss_newton_step`` /
``half_inverse`` choose with the default 2 GiB budget).

J = (L·diag(s)) R with L (N × r), R (r × P) Gaussian, r = min(N, P, 256), s log-spaced from 1 to
1e-3.  Where J is held (≤ 2 GiB) every route gets it (the matrix-free one as a MatrixOperator:
products cost N·P, about what a forward/reverse-mode pass through a network of P parameters on
N outputs would); where it is not, only the matrix-free route runs, on the factored operator
(J·v = L(s·(Rv)), products of cost (N + P)·r: marked † in the table, not comparable).
GN damping μ = 1e-4·σ₁²; HIG truncation 1e-6 (relative).  ``svd`` is the thin SVD of J (GN:
``method="lstsq"``; HIG: ``route="svd"``), the accurate reference route.

Skips: J is formed only up to HOLD_J = 2 GiB (else the dense routes are skipped and auto gets
the operator); a dense route whose J plus workspace exceeds CAP = 3 GiB, or whose flop count
predicts more than MAX_SECONDS (3 s; 20 s with ``--full``) at the machine's measured one-thread
matmul rate, is not run (reason in the table).  Times are medians of 3 interleaved runs for a run
predicted under 1 s, else the one traced run.  Peak memory is tracemalloc's
peak of NumPy allocations during a first call, J excluded.  Auto's column checks the
automatic choice against the fastest route that ran.  Output: benchmarks/output/scale.md/.json.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

# One BLAS thread: on the shared 2-core machine two threads contend with the other jobs and a
# 2 ms product can take 300 ms (measured); one thread gives repeatable medians.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

from newtonkit.linalg import gauss_newton_step, half_inverse  # noqa: E402
from newtonkit.linalg.kernel import DEFAULT_MEMORY_BUDGET  # noqa: E402
from newtonkit.operators import FunctionOperator, MatrixOperator  # noqa: E402

OUT = Path(__file__).parent / "output"
CAP = 3 * 1024 ** 3  # bytes this benchmark lets a dense route use (J + workspace)
HOLD_J = 2 * 1024 ** 3  # J is materialised for the dense routes only up to this size
MAX_SECONDS = {"default": 3.0, "full": 20.0}  # skip a run predicted to take longer
REPEAT_BELOW = 1.0  # runs predicted under 1 s are timed 3× (median), others once
RANK = 256
ROUTES = ("svd", "normal", "kernel", "matrix-free")


MATMUL_RATE = [1e10]  # set by flop_rate()


def flop_rate() -> float:
    a = np.random.default_rng(0).standard_normal((1500, 1500))
    a @ a
    t = time.perf_counter()
    a @ a
    MATMUL_RATE[0] = 2 * 1500 ** 3 / (time.perf_counter() - t)
    return MATMUL_RATE[0]


def problem(N: int, P: int):
    rng = np.random.default_rng(N + P)
    r = min(N, P, RANK)
    L = rng.standard_normal((N, r)) / N ** 0.5 * np.logspace(0, -3, r)
    R = rng.standard_normal((r, P)) / P ** 0.5
    op = FunctionOperator((N, P), lambda x: L @ (R @ x), lambda y: R.T @ (L.T @ y), like=L,
                          matmat=lambda X: L @ (R @ X), rmatmat=lambda Y: R.T @ (L.T @ Y))
    return L, R, op, rng.standard_normal(N)


def predicted(task: str, route: str, N: int, P: int, dense: bool) -> tuple[float, int]:
    """(flops, bytes beyond nothing: J + workspace) of a dense route."""
    J = 8 * N * P
    fact = 1 / 3 if task == "gn" else 9.0  # Cholesky vs symmetric eigensolver (with vectors)
    if route == "kernel":
        return 2.0 * N * N * P + fact * N ** 3, J + 8 * 3 * N * N
    if route == "normal":
        return 2.0 * N * P * P + fact * P ** 3, J + 8 * 3 * P * P
    if route == "svd":
        k = min(N, P)
        return 40.0 * N * P * k, J + 8 * (2 * N * P + k * k)  # gesdd: ~1/3 of matmul speed
    if route == "matrix-free" and task == "hig":
        # the sketch doubles from 26 columns past the rank; 5 QRs (q = 2) and one SVD of a
        # max(N, P) × ℓ block per size, about twice the last size's; LAPACK's QR of tall blocks
        # runs at about 1/7 of the matmul rate here (measured), hence the factor
        r, ell = min(N, P, RANK), 26
        while ell <= r and ell < min(N, P):
            ell *= 2
        ell = min(ell, N, P)
        products = 2 * 6 * 2.0 * N * P * ell if dense else 0.0  # 6 block products per size
        return 7 * 2 * 7 * 4.0 * max(N, P) * ell ** 2 + products, 0
    if route == "matrix-free" and task == "gn":
        # CG on the kernel: up to min(N, 300) iterations (κ ≤ 1e4 here), each reading J (or
        # its factors L, R) twice; memory-bound, predicted at 10 GB/s, as flops at the rate
        held = J if dense else 8 * (N + P) * min(N, P, RANK)
        seconds = min(N, 300) * 2 * held / 10e9
        return seconds * MATMUL_RATE[0], 0
    return 0.0, 0


def run(task: str, route: str, J, op, g, mu: float):
    if route == "svd":
        if task == "gn":
            return gauss_newton_step(J, g, mu, method="lstsq")[1].route + " (svd)"
        return half_inverse(J, g, route="svd")[1].route
    if task == "gn":
        if route == "normal":
            return gauss_newton_step(J, g, mu, method="cholesky")[1].route + " (cholesky)"
        if route == "kernel":
            return gauss_newton_step(J, g, mu, route="kernel")[1].route
        if route == "matrix-free":
            return gauss_newton_step(op, g, mu, route="matrix-free", rtol=1e-8)[1].route
        info = gauss_newton_step(J if J is not None else op, g, mu)[1]
        return info.route if info.method == "kernel-cg" else f"{info.route} ({info.method})"
    if route in ("normal", "kernel"):
        return half_inverse(J, g, route=route)[1].route
    if route == "matrix-free":
        return half_inverse(op, g, route="matrix-free")[1].route
    return half_inverse(J if J is not None else op, g)[1].route


def peak_of(fn) -> tuple[float, str, float]:
    """(tracemalloc peak of one call, its route, its time)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    t = time.perf_counter()
    used = fn()
    dt = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak, used, dt


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(full: bool = False) -> None:
    rate = flop_rate()
    limit = MAX_SECONDS["full" if full else "default"]
    Ns = (256, 1024, 4096)
    Ps = (1_000, 10_000, 100_000)
    rows = []
    t0 = time.perf_counter()
    for N in Ns:
        for P in Ps:
            L, R, op, g = problem(N, P)
            holdJ = 8 * N * P <= HOLD_J
            J = (L @ R) if holdJ else None
            if holdJ:  # the matrix-free route on the same J: products cost N·P, as J·v would
                op = MatrixOperator(J)
            mu = 1e-4 * float(np.linalg.norm(L, 2) * np.linalg.norm(R, 2)) ** 2
            for task in ("gn", "hig"):
                row = {"task": task, "N": N, "P": P}
                fns, preds, fitting = {}, {}, []
                for route in ROUTES:
                    flops, mem = predicted(task, route, N, P, holdJ)
                    if route != "matrix-free" and (mem > CAP or not holdJ):
                        row[route] = {"skip": f"needs {mem / 2**30:.1f} GiB"}
                        continue
                    fitting.append(flops / rate)
                    if flops / rate > limit:
                        row[route] = {"skip": f"~{flops / rate:.0f} s predicted"}
                    else:
                        preds[route] = flops / rate
                preds_auto = min(fitting, default=0.0)  # auto: about the cheapest route
                if not holdJ and task == "hig" and "matrix-free" not in preds:
                    row["auto"] = {"skip": row["matrix-free"]["skip"] + " (--full runs it)"}
                else:
                    preds["auto"] = preds_auto
                for route in preds:
                    fns[route] = (lambda task=task, route=route, J=J, op=op, g=g, mu=mu:
                                  run(task, route, J, op, g, mu))
                times = {route: [] for route in fns}
                for route, fn in fns.items():  # first pass: peak memory (untimed)
                    row[route] = dict(zip(("peak_bytes", "route", "traced_seconds"), peak_of(fn),
                                          strict=True))
                for rep in range(3):  # then interleaved timed passes: medians
                    for route, fn in fns.items():
                        if preds[route] < REPEAT_BELOW:
                            times[route].append(timed(fn))
                        elif rep == 0:  # one slow run: the traced pass's time (tracemalloc
                            times[route].append(row[route].pop("traced_seconds"))  # ~free)
                for route in fns:
                    row[route].pop("traced_seconds", None)
                    row[route].update(seconds=statistics.median(times[route]),
                                      times=times[route], factored=not holdJ)
                rows.append(row)
                print(_line(row), flush=True)
            del J
    doc = {"flop_rate": rate, "cap_bytes": CAP, "budget_bytes": DEFAULT_MEMORY_BUDGET,
           "max_seconds": limit, "full": full, "blas_threads": os.environ["OMP_NUM_THREADS"],
           "total_seconds": time.perf_counter() - t0, "rows": rows,
           "largest_P_in_16GiB": largest_p_table()}
    OUT.mkdir(exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps(doc, indent=1))
    (OUT / "scale.md").write_text(_markdown(doc))
    print(_markdown(doc))


def route_bytes(route: str, N: int, P: int) -> int:
    """Peak bytes of a GN route on a held float64 J (J included; docs/routes.md formulas);
    matrix-free: J not held, CG vectors plus the rank-50 Nyström blocks."""
    b, J = 8, 8 * N * P
    if route == "svd":
        k = min(N, P)
        return J + b * ((N + P) * k + k * k)
    if route == "normal":
        return J + b * 2 * P * P
    if route == "kernel":
        return J + b * 2 * N * N
    return b * (6 * (N + P) + 50 * (N + P))


def largest_p_table(memory: int = 16 * 2**30) -> dict:
    """Largest P per route and N whose peak (route_bytes) fits ``memory``, by bisection."""
    out = {}
    for N in (256, 1024, 4096):
        for route in ROUTES:
            lo, hi = 0, 10 ** 12
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if route_bytes(route, N, mid) <= memory else (lo, mid)
            out[f"{route} N={N}"] = lo
    return out


def _cell(c: dict) -> str:
    if "skip" in c:
        return f"skip ({c['skip']})"
    mark = "†" if c.get("factored") else ""
    return f"{c['seconds']:.3g} s / {c['peak_bytes'] / 2**20:.3g} MiB{mark}"


def _fastest(row: dict) -> str:
    """Whether auto is within 20 % of the fastest route that ran and fit the budget."""
    auto = row["auto"]
    if "skip" in auto:
        return "n/a"
    ran = {r: row[r] for r in ROUTES if "seconds" in row[r]
           and row[r]["peak_bytes"] <= DEFAULT_MEMORY_BUDGET}
    if not ran:
        return "no other route ran (predicted slower; --full)" if any(
            "predicted" in row[r].get("skip", "") for r in ROUTES) else "only route"
    best = min(ran, key=lambda r: ran[r]["seconds"])
    ratio = auto["seconds"] / ran[best]["seconds"]
    return "yes" if ratio <= 1.2 else f"no: {best} {ratio:.2g}× faster"


def _line(row: dict) -> str:
    return (f"{row['task']} N={row['N']} P={row['P']}: "
            + "; ".join(f"{r} {_cell(row[r])}" for r in (*ROUTES, "auto")))


def _markdown(doc: dict) -> str:
    out = ["# Per-step time and peak memory by route (bench_scale)", "",
           f"float64, {doc['blas_threads']} BLAS thread(s) on the shared 2-core machine (other "
           f"jobs running: timings are noisy), matmul rate {doc['flop_rate'] / 1e9:.0f} GFLOP/s; "
           f"dense routes capped at {doc['cap_bytes'] / 2**30:.0f} GiB (J + workspace); runs "
           f"predicted over {doc['max_seconds']:.0f} s skipped "
           f"({'--full' if doc['full'] else 'default; --full: 20 s'}); "
           f"auto uses the default {doc['budget_bytes'] / 2**30:.0f} GiB budget; total "
           f"{doc['total_seconds']:.0f} s.  Cells: median time (3 interleaved runs when the "
           f"run is predicted under {REPEAT_BELOW:.0f} s, else 1) / tracemalloc peak "
           f"(J excluded).  J = L·diag(s)·R of rank ≤ {RANK}, held when ≤ 2 GiB; † = J not "
           f"held, the matrix-free route on the factored operator.  GN normal = Cholesky of "
           f"JᵀJ + μI.", ""]
    for task, title in (("gn", "Gauss-Newton step (μ = 1e-4·σ₁²)"),
                        ("hig", "HIG direction (truncation 1e-6)")):
        out += [f"## {title}", "",
                "| N | P | svd (thin) | normal (P×P) | kernel (N×N) | matrix-free | "
                "auto: route, time | auto within 1.2× of fastest that fits? |",
                "|---|---|---|---|---|---|---|---|"]
        for row in doc["rows"]:
            if row["task"] != task:
                continue
            a = row["auto"]
            auto = f"{a['route']}, {a['seconds']:.3g} s" if "seconds" in a else _cell(a)
            out.append(f"| {row['N']} | {row['P']:,} | {_cell(row['svd'])} | "
                       f"{_cell(row['normal'])} | "
                       f"{_cell(row['kernel'])} | {_cell(row['matrix-free'])} | {auto} | "
                       f"{_fastest(row)} |")
        out.append("")
    out += ["## Largest P in 16 GiB (float64, from the peak-memory formulas, J included)", "",
            "| N | svd | normal (P×P) | kernel (N×N) | matrix-free (J not held) |",
            "|---|---|---|---|---|"]
    t = doc["largest_P_in_16GiB"]
    for N in (256, 1024, 4096):
        out.append(f"| {N} | " + " | ".join(f"{t[f'{r} N={N}']:,}" for r in ROUTES) + " |")
    out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    main(full="--full" in sys.argv)
