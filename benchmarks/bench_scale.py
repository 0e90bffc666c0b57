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
predicts more than MAX_SECONDS at the machine's measured matmul rate, is not run (reason in the
table).  Times are the best of up to 3 runs (2 when the first takes over 2 s, 1 over 8 s).
Peak memory is tracemalloc's peak of NumPy allocations during the call, J excluded.
``--quick`` runs N ≤ 1024, P ≤ 1e4.  Output: benchmarks/output/scale.md and scale.json.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

from newtonkit.linalg import gauss_newton_step, half_inverse
from newtonkit.linalg.kernel import DEFAULT_MEMORY_BUDGET
from newtonkit.operators import FunctionOperator, MatrixOperator

OUT = Path(__file__).parent / "output"
CAP = 3 * 1024 ** 3  # bytes this benchmark lets a dense route use (J + workspace)
HOLD_J = 2 * 1024 ** 3  # J is materialised for the dense routes only up to this size
MAX_SECONDS = 20.0
RANK = 256
ROUTES = ("svd", "normal", "kernel", "matrix-free")


def flop_rate() -> float:
    a = np.random.default_rng(0).standard_normal((1500, 1500))
    a @ a
    t = time.perf_counter()
    a @ a
    return 2 * 1500 ** 3 / (time.perf_counter() - t)


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
    return 0.0, 0


def run(task: str, route: str, J, op, g, mu: float):
    if route == "svd":
        if task == "gn":
            return gauss_newton_step(J, g, mu, method="lstsq")[1].route + " (svd)"
        return half_inverse(J, g, route="svd")[1].route
    if task == "gn":
        if route == "normal":
            return gauss_newton_step(J, g, mu, method="cholesky")[1].route
        if route == "kernel":
            return gauss_newton_step(J, g, mu, route="kernel")[1].route
        if route == "matrix-free":
            return gauss_newton_step(op, g, mu, route="matrix-free", rtol=1e-8)[1].route
        return gauss_newton_step(J if J is not None else op, g, mu)[1].route
    if route in ("normal", "kernel"):
        return half_inverse(J, g, route=route)[1].route
    if route == "matrix-free":
        return half_inverse(op, g, route="matrix-free")[1].route
    return half_inverse(J if J is not None else op, g)[1].route


def measure(fn) -> tuple[float, float, str]:
    """(best time of up to 3 runs (1 if the first takes > 2 s), tracemalloc peak, route)."""
    tracemalloc.start()
    tracemalloc.reset_peak()
    t = time.perf_counter()
    used = fn()
    best = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    for _ in range(2 if best < 2.0 else 1 if best < 8.0 else 0):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best, peak, used


def main(quick: bool = False) -> None:
    rate = flop_rate()
    Ns = (256, 1024) if quick else (256, 1024, 4096)
    Ps = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
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
                for route in (*ROUTES, "auto"):
                    flops, mem = predicted(task, route, N, P, holdJ)
                    if route == "auto" and J is None:
                        pass
                    elif route not in ("matrix-free", "auto") and (mem > CAP or not holdJ):
                        row[route] = {"skip": f"needs {mem / 2**30:.1f} GiB"}
                        continue
                    elif flops / rate > MAX_SECONDS:
                        row[route] = {"skip": f"~{flops / rate:.0f} s predicted"}
                        continue
                    dt, peak, used = measure(lambda task=task, route=route, J=J, op=op, g=g,
                                             mu=mu: run(task, route, J, op, g, mu))
                    row[route] = {"seconds": dt, "peak_bytes": peak, "route": used,
                                  "factored": not holdJ}
                rows.append(row)
                print(_line(row), flush=True)
            del J
    doc = {"flop_rate": rate, "cap_bytes": CAP, "budget_bytes": DEFAULT_MEMORY_BUDGET,
           "total_seconds": time.perf_counter() - t0, "rows": rows}
    OUT.mkdir(exist_ok=True)
    (OUT / "scale.json").write_text(json.dumps(doc, indent=1))
    (OUT / "scale.md").write_text(_markdown(doc))
    print(_markdown(doc))


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
        return "only route"
    best = min(ran, key=lambda r: ran[r]["seconds"])
    ratio = auto["seconds"] / ran[best]["seconds"]
    return "yes" if ratio <= 1.2 else f"no: {best} {ratio:.2g}× faster"


def _line(row: dict) -> str:
    return (f"{row['task']} N={row['N']} P={row['P']}: "
            + "; ".join(f"{r} {_cell(row[r])}" for r in (*ROUTES, "auto")))


def _markdown(doc: dict) -> str:
    out = ["# Per-step time and peak memory by route (bench_scale)", "",
           f"float64, 2-core machine, matmul rate {doc['flop_rate'] / 1e9:.0f} GFLOP/s; "
           f"dense routes capped at {doc['cap_bytes'] / 2**30:.0f} GiB (J + workspace) and "
           f"{MAX_SECONDS:.0f} s predicted; auto uses the default {doc['budget_bytes'] / 2**30:.0f}"
           f" GiB budget; total {doc['total_seconds']:.0f} s.  Cells: time / tracemalloc peak "
           f"(J excluded).  J = L·diag(s)·R of rank ≤ {RANK}, held when ≤ 2 GiB; † = J not "
           f"held, the matrix-free route on the factored operator (cheaper products, not "
           f"comparable).", ""]
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
    return "\n".join(out)


if __name__ == "__main__":
    main(quick="--quick" in sys.argv)
