"""One rank of the sharded-optimizer tests (run as a script by ``test_distributed_optim.py``).

``python _dist_optim_worker.py SCENARIO RANK WORLD PORT OUTDIR``: joins a gloo group on
127.0.0.1, trains the small network of :func:`problem` on this rank's shard of the batch with a
:class:`~newtonkit_torch.distributed.ShardedClosure` and saves what it saw to
``OUTDIR/rank{RANK}.pt``.
"""

from __future__ import annotations

import datetime
import sys
import time

import torch
import torch.distributed as dist
from _dist_worker import exit_without_teardown  # (this script's folder)
from torch import nn

from newtonkit_torch.optim import HIG, GaussNewton

B, STEPS = 12, 5
SHOTS, NY, NX, NT = 4, 8, 16, 60
OPTIMIZERS = ("gn-damped", "gn-adaptive", "hig", "gn-rows")


def problem() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A 2-8-1 tanh network (seeded) and a batch of B inputs and targets (float64)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.linspace(-1.0, 1.0, 2 * B, dtype=torch.float64).reshape(B, 2)
    t = torch.sin(3.0 * x[:, :1]) * x[:, 1:]
    return net, x, t


def make_optimizer(name: str, net: nn.Module):
    if name == "gn-damped":
        return GaussNewton(net.parameters(), damping=1e-3)
    if name == "gn-adaptive":
        return GaussNewton(net.parameters(), adaptive=True)
    if name == "hig":
        # the SVD route: its error is ε·κ with κ ≤ 1/truncation; the automatic route here
        # (12 rows, 33 parameters) is the Gram JJᵀ, whose small singular vectors carry
        # ε·κ² ≈ 2e-4 (σ₁₀/σ₁ is 1.0e-6 at the fourth step), too coarse for the comparison
        return HIG(net.parameters(), lr=0.5, route="svd")
    return GaussNewton(net.parameters(), damping=1e-2)  # "gn-rows": a (y, loss) closure


def local_closure(name: str, opt, net: nn.Module, x: torch.Tensor, t: torch.Tensor):
    """The closure on the samples ``x``, ``t``; the loss is a share of the whole batch's mean
    ``(1/2B) Σ (y - t)²`` (divided by the global ``B``)."""
    def loss_fn(y, inputs):
        return 0.5 * torch.sum((y - t) ** 2) / B

    if name == "gn-rows":
        def closure():
            y = net(x)
            return y, loss_fn(y, x)
        return closure
    return opt.physics_closure(net, x, None, loss_fn)


def train(name: str, closure_of, steps: int = STEPS) -> dict:
    """``steps`` optimizer steps; the flat parameters after each and the losses."""
    net, x, t = problem()
    opt = make_optimizer(name, net)
    closure = closure_of(name, opt, net, x, t)
    thetas, losses = [], []
    for _ in range(steps):
        losses.append(opt.step(closure))
        thetas.append(torch.cat([p.detach().reshape(-1) for p in net.parameters()]))
    return {"thetas": torch.stack(thetas), "losses": torch.stack(losses)}


def wave_problem(shots: slice = slice(0, SHOTS)) -> tuple:
    """A float64 deepwave survey (``SHOTS`` shots on an ``NY × NX`` model, two layers): the
    model of the shots ``shots``, their observed data, the start model."""
    import deepwave

    from newtonkit_torch.deepwave import ScalarWave

    v_true = torch.full((NY, NX), 1500.0, dtype=torch.float64)
    v_true[4:] = 1800.0
    v0 = torch.full((NY, NX), 1600.0, dtype=torch.float64)
    n = len(range(SHOTS)[shots])
    src = deepwave.wavelets.ricker(25, NT, 0.002, 0.05, dtype=torch.float64)
    src_loc = torch.zeros(SHOTS, 1, 2, dtype=torch.long)
    src_loc[:, 0, 0], src_loc[:, 0, 1] = 1, torch.arange(2, 2 + 3 * SHOTS, 3)
    rec_loc = torch.zeros(SHOTS, NX - 2, 2, dtype=torch.long)
    rec_loc[..., 0], rec_loc[..., 1] = 1, torch.arange(1, NX - 1)
    wave = ScalarWave(4.0, 0.002, source_amplitudes=src.repeat(n, 1, 1),
                      source_locations=src_loc[shots], receiver_locations=rec_loc[shots],
                      pml_width=[0, 6, 6, 6], max_vel=2000.0)
    with torch.no_grad():
        observed = wave(v_true)
    return wave, observed, v0


class WaveResidual:
    """``r(v) = (F(v) − d)/1000`` with Born ``jvp`` and reverse-mode ``vjp``."""

    def __init__(self, wave, observed) -> None:
        self.wave, self.observed = wave, observed

    def __call__(self, v):
        with torch.no_grad():
            return (self.wave(v) - self.observed) / 1000.0

    def jvp(self, v, p):
        return self.wave.jvp(v, p) / 1000.0

    def vjp(self, v, w):
        return self.wave.vjp(v, w / 1000.0)


def misfit(res: WaveResidual, v: torch.Tensor) -> torch.Tensor:
    """``½‖r(v)‖²``, differentiable (reverse mode through deepwave)."""
    return 0.5 * torch.sum(((res.wave(v) - res.observed) / 1000.0) ** 2)


def gauss_newton(fun, v0, iters: int = 2) -> dict:
    """Matrix-free Gauss-Newton (CGLS, 8 inner iterations), every iterate recorded."""
    import newtonkit as nk

    xs = []
    res = nk.minimize(fun, v0, method="gn", callback=lambda x: xs.append(x.clone()),
                      options={"linear_solver": "cgls", "cg_maxiter": 8, "maxiter": iters,
                               "gtol": 0.0, "ftol": 0.0, "xtol": 0.0})
    return {"iterates": torch.stack(xs), "fun": res.fun}


def shard(rank: int, world: int) -> slice:
    edges = [round(k * B / world) for k in range(world + 1)]
    return slice(edges[rank], edges[rank + 1])


def main() -> None:
    scenario, rank, world, port, outdir = sys.argv[1:]
    rank, world = int(rank), int(world)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=20))
    from newtonkit_torch.distributed import ShardedClosure

    s = shard(rank, world)

    def sharded(name, opt, net, x, t):
        return ShardedClosure(opt, local_closure(name, opt, net, x[s], t[s]))

    try:
        out: dict = {}
        if scenario == "optim":
            for name in OPTIMIZERS:
                out[name] = train(name, sharded)
        elif scenario == "deepwave":
            from newtonkit_torch.distributed import ShardedModel

            edges = [round(k * SHOTS / world) for k in range(world + 1)]
            wave, observed, v0 = wave_problem(slice(edges[rank], edges[rank + 1]))
            from newtonkit_torch.distributed import ShardedObjective

            res = WaveResidual(wave, observed)
            out = gauss_newton(ShardedModel(res), v0)
            obj = ShardedObjective(lambda v: misfit(res, v))
            out["value_and_grad"] = obj.value_and_grad(v0)
        elif scenario in ("raise", "nan", "params"):
            calls = [0]

            def faulty(name, opt, net, x, t):
                inner = local_closure(name, opt, net, x[s], t[s])
                if scenario == "params":  # a model that differs between ranks
                    with torch.no_grad():
                        next(net.parameters()).add_(1e-9 * rank)

                def closure():
                    calls[0] += 1
                    y, loss, J = inner()
                    if rank == 1 and calls[0] >= 3:
                        if scenario == "raise":
                            raise ValueError("simulated failure in the closure")
                        J = J * float("nan")
                    return y, loss, J
                return ShardedClosure(opt, closure)

            t0 = time.perf_counter()
            try:
                train("gn-damped", faulty)
                out["error"] = "none"
            except Exception as e:
                out["error"] = type(e).__name__
                out["message"] = str(e).split("\n")[0]
            out["seconds"] = time.perf_counter() - t0
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
        torch.save(out, f"{outdir}/rank{rank}.pt")
        dist.barrier()
    finally:
        dist.destroy_process_group()
    exit_without_teardown()


if __name__ == "__main__":
    main()
