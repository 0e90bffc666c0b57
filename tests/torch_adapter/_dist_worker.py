"""One rank of the distributed tests (run as a script by ``test_distributed.py``).

``python _dist_worker.py SCENARIO RANK WORLD PORT OUTDIR``: joins a gloo group on 127.0.0.1,
runs the scenario and saves what it saw to ``OUTDIR/rank{RANK}.pt``.
"""

from __future__ import annotations

import datetime
import math
import os
import sys
import time

import torch
import torch.distributed as dist

import newtonkit as nk
from newtonkit_torch.distributed import ShardedModel, ShardedObjective

M, N = 30, 4
METHODS = ("gn", "lm", "hig", "gn-dense", "lm-dense", "newton")


def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample points, targets and the start point of a small nonlinear least-squares fit."""
    t = torch.linspace(0.0, 1.0, M, dtype=torch.float64)
    d = 2.0 * torch.exp(-1.5 * t) + 0.5 * t - 0.3 * t**2 + 0.01 * torch.sin(37.0 * t)
    x0 = torch.tensor([1.0, -0.5, 0.0, 0.0], dtype=torch.float64)
    return t, d, x0


def residual(x: torch.Tensor, t: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    r""":math:`r_i = x_0 e^{x_1 t_i} + x_2 t_i + x_3 t_i^2 - d_i`."""
    return x[0] * torch.exp(x[1] * t) + x[2] * t + x[3] * t**2 - d


def rows(rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous block of rows (sizes differ by at most one)."""
    edges = [round(k * M / world) for k in range(world + 1)]
    return slice(edges[rank], edges[rank + 1])


def solve(method: str, fun, x0: torch.Tensor) -> dict:
    """``nk.minimize`` on ``fun`` with every iterate recorded."""
    xs: list[torch.Tensor] = []

    def record(x):
        xs.append(x.clone())

    opts = {"maxiter": 50}
    if method == "newton":
        res = nk.minimize(fun, x0, method="newton", jac=fun.grad, hessp=fun.hessp,
                          callback=record, options=opts)
    else:
        res = nk.minimize(fun, x0, method=method.split("-")[0], callback=record, options=opts)
    return {"x": res.x, "fun": res.fun, "nit": res.nit, "status": res.status,
            "iterates": torch.stack(xs) if xs else x0[None]}


def sharded_fun(method: str, local, world: int):
    if method == "newton":
        return ShardedModel(local).objective()
    return ShardedModel(local, dense=method.endswith("dense"))


def run_methods(rank: int, world: int) -> dict:
    t, d, x0 = data()
    s = rows(rank, world)
    out: dict = {}
    for method in METHODS:
        out[method] = solve(method, sharded_fun(method, lambda x: residual(x, t[s], d[s]), world),
                            x0)
    # all_reduce bits: the same on every rank (saved, compared by the test)
    g = torch.Generator().manual_seed(100 + rank)
    v = torch.randn(1000, dtype=torch.float64, generator=g) * 10.0 ** (6 * rank)
    dist.all_reduce(v)
    out["allreduce"] = v
    return out


def run_fault(rank: int, world: int, kind: str) -> dict:
    t, d, x0 = data()
    s = rows(rank, world)
    calls = [0]

    def local(x):
        calls[0] += 1
        if rank == 1 and calls[0] >= 4:
            if kind == "die":  # the process ends without a word to the others
                os._exit(3)
            if kind == "raise":
                raise ValueError("simulated failure in the forward model")
            return residual(x, t[s], d[s]) * float("nan")  # differentiable, NaN values
        return residual(x, t[s], d[s])

    fun = ShardedModel(local)
    t0 = time.perf_counter()
    try:
        res = nk.minimize(fun, x0, method="lm")
        return {"status": res.status, "message": res.message, "seconds": time.perf_counter() - t0}
    except Exception as e:
        return {"error": type(e).__name__, "message": str(e).split("\n")[0],
                "seconds": time.perf_counter() - t0}


def run_empty(rank: int, world: int) -> dict:
    """Rank 1 holds no rows (3 shots on 4 ranks): it contributes nothing, and the run is the
    other ranks'."""
    t, d, x0 = data()
    s = slice(0, M) if rank == 0 else slice(0, 0)
    out: dict = {}
    for method in ("gn", "lm-dense"):
        out[method] = solve(method, sharded_fun(method, lambda x: residual(x, t[s], d[s]), world),
                            x0)
    return out


def run_bad(rank: int, world: int) -> dict:
    t, d, x0 = data()
    s = rows(rank, world)

    def local(x):
        return x[0] * torch.exp(x[1] * t[s]) - d[s]

    cases = {
        "size": lambda: ShardedModel(local)(torch.zeros(N + rank, dtype=torch.float64)),
        "x0": lambda: ShardedModel(local)(x0 + 1e-12 * rank),
        "shared": lambda: ShardedModel(local, shared=[torch.ones(3) * rank])(x0),
        "objective": lambda: ShardedObjective(lambda x: (x**2).sum())(x0 * (1 + rank)),
        # the same non-finite entries on every rank pass; different ones do not
        "same_inf": lambda: ShardedModel(local, shared=[torch.tensor(
            [-math.inf, 0.0, math.inf, math.nan])])(x0),
        "other_inf": lambda: ShardedModel(local, shared=[torch.tensor(
            [math.inf if rank == 0 else -math.inf])])(x0),
    }
    out = {}
    for name, case in cases.items():
        try:
            case()
            out[name] = "no error"
        except Exception as e:
            out[name] = f"{type(e).__name__}: {e}"
    return out


def main() -> None:
    scenario, rank, world, port, outdir = sys.argv[1:]
    rank, world = int(rank), int(world)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=20))
    try:
        if scenario == "methods":
            out = run_methods(rank, world)
        elif scenario in ("raise", "nan", "die"):
            out = run_fault(rank, world, scenario)
        elif scenario == "bad":
            out = run_bad(rank, world)
        elif scenario == "empty":
            out = run_empty(rank, world)
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        torch.save(out, f"{outdir}/rank{rank}.pt")
        if scenario == "die":  # a group that lost a member is not torn down (docs/distributed)
            print("result saved; exiting without tearing down the broken group")
            exit_without_teardown()
        dist.barrier()  # no rank tears the group down while another still uses it
    finally:
        dist.destroy_process_group()
    exit_without_teardown()


def exit_without_teardown() -> None:
    """End the process now (exit code 0), skipping the interpreter's teardown: with torch 2.13
    and gloo it ends in std::terminate ("terminate called without an active exception",
    SIGABRT) in about one run in 15 of the fault scenarios, after every line of Python has run
    (faulthandler shows no Python frame), as docs/distributed.md tells users."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
