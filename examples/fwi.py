"""Many-shot full-waveform inversion with deepwave, sharded over processes.

A 2-D velocity model built in code: layers dipping gently to the right, cut by a dipping normal
fault (the hanging wall dropped by ``throw``), and a high-velocity body; the start model is the
true one smoothed heavily (in slowness, as deepwave's examples do).  Shots and receivers along
the surface, a Ricker source, deepwave's compiled propagator (``deepwave.scalar``), PML on all
sides.  Frequency continuation: the inversion runs on the data and source low-passed at rising
cut-offs (a zero-phase Butterworth response applied in the frequency domain), the last band
unfiltered.

The velocity is kept physical by the parameterisation of deepwave's FWI examples,
``v = v_min + (v_max − v_min)·sigmoid(u)`` (1400–4800 m/s), shared by every method, below a
known water layer that is not inverted (newtonkit's box-constrained route, ``bounds=`` with
``"trf"``, works on dense Jacobians; here ``J`` is matrix-free).  The misfit is
``½‖s (F(v(u)) − d)‖²`` with ``s = 1/‖d‖`` per band (× 10⁶ for L-BFGS and Adam, as deepwave's
recipe scales its loss: L-BFGS's first step is then ``−g/‖g‖₁``).

Methods, each with the same wall-clock budget per band, on the same misfit:

- ``gn``: :func:`newtonkit.minimize` Gauss-Newton, matrix-free: CGLS inner solves on
  ``JᵀJ p = −Jᵀ r`` with Born products ``J p`` (``deepwave.scalar_born``) and reverse-mode
  ``Jᵀ w`` (one backward pass each through the stored forward graph), Armijo line search;
- ``lm``: Levenberg-Marquardt (Nielsen's damping update, CGLS on the damped system);
- ``lbfgs``: deepwave's documented recipe, ``torch.optim.LBFGS`` (defaults: no line search,
  history 100) on the same misfit, a new optimizer per band;
- ``adam``: ``torch.optim.Adam`` (``lr = 0.1`` in ``u``).

Shots are split over the processes (``--procs``, gloo on 127.0.0.1, or launched by
``torchrun``): each rank models its own shots; :class:`newtonkit_torch.distributed.ShardedModel`
gathers ``F`` and ``J p`` and sums ``Jᵀ w``, :class:`~newtonkit_torch.distributed.ShardedObjective`
sums the misfit and gradient for L-BFGS and Adam, so every rank holds the same iterates.  A
second part runs Gauss-Newton for a fixed number of iterations with 1 and with ``--procs``
processes and compares time and iterates.

Outputs in ``examples/output/``: ``fwi_models.png`` (true, start, and each method's model),
``fwi_error.png`` (relative model error ‖v − v_true‖/‖v₀ − v_true‖ against time),
``fwi.md`` (table) and ``fwi.json``.

Run: ``python examples/fwi.py`` (100 × 250 cells, 16 shots, 3 bands, 240 s per band and
method: about 1.5 hours on 2 CPU cores, where one Gauss-Newton iteration takes 2–4 minutes),
``--quick`` (20 × 48 cells, 8 shots, 2 bands, 2 s per band: about 35 s of work plus starting the
processes), ``--size bench`` (32 × 80, 16 shots, the benchmark's size), ``--procs 1``,
``--budget SECONDS``; or ``torchrun --standalone --nproc_per_node=N examples/fwi.py`` (every
process one rank; rank 0 writes the outputs, the 1-vs-N comparison is skipped).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import socket
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread per rank unless told otherwise

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

import newtonkit as nk  # noqa: E402
from newtonkit_torch.deepwave import ScalarWave  # noqa: E402
from newtonkit_torch.distributed import ShardedModel, ShardedObjective  # noqa: E402

try:
    import deepwave  # noqa: E402
except ImportError as exc:  # pragma: no cover
    raise SystemExit("this example needs deepwave: pip install newtonkit[deepwave]") from exc

OUT = Path(__file__).resolve().parent / "output"
METHODS = ("gn", "lm", "lbfgs", "adam")
V_MIN, V_MAX = 1400.0, 4800.0
WATER, WATER_FRACTION = 1500.0, 0.08
LOSS_SCALE = 1e6  # L-BFGS, Adam: the misfit × 1e6, as in deepwave's recipe


@dataclass(frozen=True)
class Size:
    """Grid, survey and frequencies of one problem size."""

    nz: int = 100
    nx: int = 250
    dx: float = 10.0
    shots: int = 16
    receiver_step: int = 2
    nt: int = 600
    dt: float = 0.002
    peak: float = 10.0  # Ricker peak frequency (Hz)
    bands: tuple = (5.0, 8.0, None)  # low-pass cut-offs (Hz); None: the full band
    smooth: float = 8.0  # start model: Gaussian smoothing of the slowness (cells)
    cg_maxiter: int = 10
    pml: int = 20


SIZES = {
    "full": Size(),
    "bench": Size(nz=32, nx=80, nt=300, bands=(5.0, None), smooth=4.0, pml=10),
    "quick": Size(nz=20, nx=48, shots=8, nt=200, peak=12.0, bands=(6.0, None), smooth=3.0,
                  cg_maxiter=5, pml=10),
}


# -- the model and the survey -------------------------------------------------------------------
def true_model(s: Size) -> torch.Tensor:
    """Layers dipping to the right, a dipping fault, a high-velocity body; ``(nz, nx)`` m/s."""
    z = torch.arange(s.nz, dtype=torch.float64)[:, None] * s.dx
    x = torch.arange(s.nx, dtype=torch.float64)[None, :] * s.dx
    depth, width = s.nz * s.dx, s.nx * s.dx
    fault = x - (0.35 * width + 0.6 * z)  # > 0: the hanging wall, right of a 59° fault
    throw = 0.08 * depth
    zz = z - 0.1 * x - torch.where(fault > 0, throw, 0.0)  # layer coordinate (dip 6°)
    tops = torch.tensor([0.12, 0.30, 0.50, 0.70]) * depth
    speeds = torch.tensor([1500.0, 1900.0, 2300.0, 2800.0, 3300.0])
    v = speeds[torch.bucketize(zz, tops.to(torch.float64))]
    body = ((x - 0.7 * width) / (0.12 * width)) ** 2 + ((z - 0.55 * depth) / (0.12 * depth)) ** 2
    v = torch.where(body < 1.0, 4200.0, v)
    v[: water_rows(s)] = WATER
    return v


def smoothed(v: torch.Tensor, sigma: float) -> torch.Tensor:
    """``1 / G_σ(1/v)``: a separable Gaussian of the slowness, edges replicated."""
    half = max(1, int(3 * sigma))
    t = torch.arange(-half, half + 1, dtype=v.dtype)
    w = torch.exp(-0.5 * (t / sigma) ** 2)
    w = (w / w.sum()).reshape(1, 1, -1)
    out = 1.0 / v[None, None]
    out = torch.nn.functional.conv2d(
        torch.nn.functional.pad(out, (half, half, 0, 0), mode="replicate"), w[..., None, :])
    out = torch.nn.functional.conv2d(
        torch.nn.functional.pad(out, (0, 0, half, half), mode="replicate"), w[..., :, None])
    return 1.0 / out[0, 0]


def survey(s: Size, shots: range) -> dict:
    """Sources and receivers of the shots ``shots`` (all receivers live for every shot)."""
    src_x = torch.linspace(2, s.nx - 3, s.shots).round().long()[list(shots)]
    n = len(shots)
    rec_x = torch.arange(1, s.nx - 1, s.receiver_step)
    src = torch.zeros(n, 1, 2, dtype=torch.long)
    src[..., 0], src[:, 0, 1] = 2, src_x
    rec = torch.zeros(n, rec_x.numel(), 2, dtype=torch.long)
    rec[..., 0], rec[..., 1] = 2, rec_x
    return {"source_locations": src, "receiver_locations": rec}


def lowpass(a: torch.Tensor, cutoff: float | None, dt: float) -> torch.Tensor:
    """Zero-phase low-pass along the last axis: the response ``1/(1 + (f/f_c)^12)`` of a
    6th-order Butterworth filter run forward and backward (``None``: unchanged)."""
    if cutoff is None:
        return a
    nt = a.shape[-1]
    spec = torch.fft.rfft(a, n=2 * nt)  # zero padding: no wrap-around
    f = torch.fft.rfftfreq(2 * nt, dt).to(a.dtype)
    return torch.fft.irfft(spec / (1.0 + (f / cutoff) ** 12), n=2 * nt)[..., :nt]


def water_rows(s: Size) -> int:
    """Rows of the known water layer at the top (not inverted)."""
    return max(2, round(WATER_FRACTION * s.nz))


def velocity(u: torch.Tensor, water: int) -> torch.Tensor:
    """The model: ``water`` rows of water (``WATER`` m/s, known) on top of
    ``v = v_min + (v_max − v_min) sigmoid(u)`` (``u``: the rows below)."""
    top = u.new_full((*u.shape[:-2], water, u.shape[-1]), WATER)
    return torch.cat([top, V_MIN + (V_MAX - V_MIN) * torch.sigmoid(u)], dim=-2)


def parameter(v: torch.Tensor, water: int) -> torch.Tensor:
    """The ``u`` of ``v`` below the water (inverse of :func:`velocity`)."""
    return torch.logit((v[..., water:, :] - V_MIN) / (V_MAX - V_MIN))


class ShotResidual:
    r"""This rank's residual rows :math:`r_k(u) = s\,(F_k(v(u)) - d_k)` with Born ``jvp`` and
    reverse-mode ``vjp`` (chain rule through ``v(u)``: :math:`J_u = s J_v\,\mathrm{diag}(v'(u))`).

    The velocity of the last ``u`` is kept (same tensor, same version), so the wave model's
    stored forward graph is reused by every ``vjp`` at one iterate.
    """

    def __init__(self, wave: ScalarWave, observed: torch.Tensor, scale: float,
                 water: int) -> None:
        self.wave, self.observed, self.scale, self.water = wave, observed, scale, water
        self._key: tuple | None = None

    def _v(self, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (u.data_ptr(), u._version, tuple(u.shape))
        if self._key is None or self._key[0] is not u or self._key[1] != key:
            sig = torch.sigmoid(u.detach())
            self._v_dv = (velocity(u.detach(), self.water), (V_MAX - V_MIN) * sig * (1 - sig))
            self._key = (u, key)  # holding u: its memory is not reused while cached
        return self._v_dv

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        v, _ = self._v(u)
        with torch.no_grad():
            return self.scale * (self.wave(v) - self.observed)

    def jvp(self, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        v, dv = self._v(u)
        dv = torch.nn.functional.pad(dv * p.reshape(dv.shape), (0, 0, self.water, 0))
        return self.scale * self.wave.jvp(v, dv)

    def vjp(self, u: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        v, dv = self._v(u)
        g = self.wave.vjp(v, self.scale * w)[self.water:]
        return (dv * g).reshape(u.shape)

    def misfit(self, u: torch.Tensor) -> torch.Tensor:
        """:math:`\tfrac12\\|r_k(u)\\|^2`, differentiable in ``u`` (L-BFGS, Adam)."""
        r = self.wave(velocity(u, self.water)) - self.observed
        return 0.5 * torch.sum((self.scale * r) ** 2)


@dataclass
class Problem:
    """What one rank holds: its shots, the models, and per band its residual rows."""

    size: Size
    rank: int
    world: int
    v_true: torch.Tensor
    v_init: torch.Tensor
    water: int
    residuals: list = field(default_factory=list)  # one ShotResidual per band

    def error(self, u: torch.Tensor) -> float:
        """Relative model error ‖v(u) − v_true‖ / ‖v₀ − v_true‖."""
        d0 = (self.v_init - self.v_true).norm()
        return float((velocity(u.detach(), self.water) - self.v_true).norm() / d0)


def build(s: Size, rank: int, world: int, dtype: torch.dtype = torch.float32) -> Problem:
    """This rank's share of the shots (contiguous, sizes differ by at most one) and its data."""
    edges = [round(k * s.shots / world) for k in range(world + 1)]
    mine = range(edges[rank], edges[rank + 1])
    v_true = true_model(s).to(dtype)
    water = water_rows(s)
    v_init = smoothed(v_true.double(), s.smooth).to(dtype)
    v_init[:water] = WATER
    geo = survey(s, mine)
    wavelet = deepwave.wavelets.ricker(s.peak, s.nt, s.dt, 1.5 / s.peak, dtype=dtype)
    src = wavelet.repeat(len(mine), 1, 1)
    full = ScalarWave(s.dx, s.dt, source_amplitudes=src, max_vel=V_MAX, pml_freq=s.peak,
                      pml_width=s.pml, **geo)
    with torch.no_grad():
        observed = full(v_true)  # this rank's recorded shots
    p = Problem(s, rank, world, v_true, v_init, water)
    for cutoff in s.bands:
        wave = ScalarWave(s.dx, s.dt, source_amplitudes=lowpass(src, cutoff, s.dt),
                          max_vel=V_MAX, pml_freq=s.peak, pml_width=s.pml, **geo)
        d = lowpass(observed, cutoff, s.dt)
        norm2 = torch.sum(d.double() ** 2)
        dist.all_reduce(norm2)  # ‖d‖² over all shots
        p.residuals.append(ShotResidual(wave, d, float(norm2.rsqrt()), water))
    return p


# -- the methods --------------------------------------------------------------------------------
class Clock:
    """Wall time since the start, agreed by every rank (the maximum), so that every rank
    stops a method at the same iteration."""

    def __init__(self, budget: float) -> None:
        self.budget, self.t0 = budget, time.perf_counter()

    def elapsed(self) -> float:
        t = torch.tensor([time.perf_counter() - self.t0], dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t)

    def over(self) -> bool:
        return self.elapsed() >= self.budget


def run_newtonkit(method: str, res: ShotResidual, u0: torch.Tensor, clock: Clock,
                  trace: list, offset: float, p: Problem, maxiter: int = 10_000) -> torch.Tensor:
    """Gauss-Newton or LM (matrix-free, CGLS) until the budget is spent or ``maxiter``."""
    F = ShardedModel(res)
    opts = {"linear_solver": "cgls", "cg_maxiter": p.size.cg_maxiter, "maxiter": maxiter,
            "gtol": 0.0, "ftol": 0.0, "xtol": 0.0}
    if method == "lm":
        opts["damping"] = 1e-3
    last = [u0]

    def record(x: torch.Tensor) -> None:
        last[0] = x
        trace.append((offset + clock.elapsed(), p.error(x)))
        if clock.elapsed() >= clock.budget:
            raise StopIteration

    out = nk.minimize(F, u0, method=method, callback=record, options=opts)
    return out.x


def run_torch(method: str, res: ShotResidual, u0: torch.Tensor, clock: Clock, trace: list,
              offset: float, p: Problem, lr: float, loss_scale: float) -> torch.Tensor:
    """L-BFGS (deepwave's recipe) or Adam on the sharded misfit until the budget is spent."""
    obj = ShardedObjective(lambda x: loss_scale * res.misfit(x))
    u = u0.clone().requires_grad_(True)
    opt = (torch.optim.LBFGS([u], max_iter=1) if method == "lbfgs"
           else torch.optim.Adam([u], lr=lr))

    def closure() -> torch.Tensor:
        f, g = obj.value_and_grad(u.detach())
        u.grad = g
        return f

    while not clock.over():
        opt.step(closure)  # L-BFGS: one iteration per call, its history kept between calls
        trace.append((offset + clock.elapsed(), p.error(u)))
    return u.detach()


def invert(method: str, p: Problem, budget: float, adam_lr: float = 0.1,
           loss_scale: float = LOSS_SCALE) -> tuple:
    """The frequency continuation with ``budget`` seconds per band; the final ``u`` and the
    trace of (seconds, model error)."""
    u = parameter(p.v_init, p.water)
    trace = [(0.0, p.error(u))]
    offset = 0.0
    for res in p.residuals:
        clock = Clock(budget)
        if method in ("gn", "lm"):
            u = run_newtonkit(method, res, u, clock, trace, offset, p)
        else:
            u = run_torch(method, res, u, clock, trace, offset, p, adam_lr, loss_scale)
        offset = trace[-1][0]
    return u, trace


def gn_iterations(p: Problem, iters: int) -> tuple[torch.Tensor, float]:
    """Gauss-Newton on the first band for exactly ``iters`` iterations: iterates, seconds."""
    res = p.residuals[0]
    xs: list[torch.Tensor] = []
    opts = {"linear_solver": "cgls", "cg_maxiter": p.size.cg_maxiter, "maxiter": iters,
            "gtol": 0.0, "ftol": 0.0, "xtol": 0.0}
    dist.barrier()
    t0 = time.perf_counter()
    nk.minimize(ShardedModel(res), parameter(p.v_init, p.water), method="gn",
                callback=lambda x: xs.append(x.clone()), options=opts)
    dist.barrier()
    return torch.stack(xs), time.perf_counter() - t0


# -- processes ----------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, job: dict, outfile: str) -> None:
    torch.set_num_threads(job["threads"])
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=datetime.timedelta(seconds=300))
    try:
        out = run_job(job, rank, world)
        if rank == 0:
            torch.save(out, outfile)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    # skip the interpreter's teardown, which with torch 2.13 and gloo sometimes aborts after
    # all the work is done (docs/distributed.md, "Exit")
    sys.stdout.flush()
    os._exit(0)


def run_job(job: dict, rank: int, world: int) -> dict:
    """One job on every rank: ``"compare"`` (the methods at equal time) or ``"gn"`` (fixed
    iterations)."""
    p = build(SIZES[job["size"]], rank, world)
    if job["kind"] == "gn":
        xs, seconds = gn_iterations(p, job["iters"])
        return {"iterates": velocity(xs, p.water), "seconds": seconds}
    out = {"v_true": p.v_true, "v_init": p.v_init}
    for method in job["methods"]:
        u, trace = invert(method, p, job["budget"])
        out[method] = {"v": velocity(u, p.water), "trace": trace}
    return out


def launch(job: dict, world: int) -> dict:
    """Run ``job`` on ``world`` processes (gloo, 127.0.0.1); rank 0's result.  Under torchrun
    (``RANK`` set) the current processes are the ranks."""
    outfile = str(OUT / f".fwi_{os.getpid()}_{world}.pt")
    if "RANK" in os.environ:  # torchrun: this process is one rank
        torch.set_num_threads(job["threads"])
        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return run_job(job, dist.get_rank(), dist.get_world_size())
    mp.spawn(_rank_main, args=(world, _free_port(), job, outfile), nprocs=world, join=True)
    out = torch.load(outfile)
    os.remove(outfile)
    return out


# -- figures and table --------------------------------------------------------------------------
def figures(res: dict, s: Size, suffix: str = "") -> None:
    extent = [0, s.nx * s.dx / 1000, s.nz * s.dx / 1000, 0]
    panels = [("true", res["v_true"]), ("start", res["v_init"])]
    panels += [(m, res[m]["v"]) for m in METHODS if m in res]
    fig, axes = plt.subplots(math.ceil(len(panels) / 2), 2, figsize=(11, 1.6 * len(panels)),
                             sharex=True, sharey=True)
    for ax, (name, v) in zip(axes.flat, panels, strict=False):
        im = ax.imshow(v.cpu(), extent=extent, vmin=1500, vmax=4200, cmap="viridis",
                       aspect="auto")
        err = "" if name == "true" else f"  (error {float((v - res['v_true']).norm() / (res['v_init'] - res['v_true']).norm()):.3f})"  # noqa: E501
        ax.set_title(f"{name}{err}", fontsize=9)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes, label="velocity (m/s)", shrink=0.8)
    for ax in axes[-1]:
        ax.set_xlabel("x (km)")
    fig.savefig(OUT / f"fwi_models{suffix}.png", dpi=110)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for m in METHODS:
        if m in res:
            t, e = zip(*res[m]["trace"], strict=True)
            ax.plot(t, e, ".-", label=m, ms=3)
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("‖v − v_true‖ / ‖v₀ − v_true‖")
    ax.set_title("model error, equal time per frequency band")
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / f"fwi_error{suffix}.png", dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small model (under a minute)")
    ap.add_argument("--size", choices=sorted(SIZES), default=None)
    ap.add_argument("--procs", type=int, default=2, help="processes (shots split over them)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--budget", type=float, default=None, help="seconds per band per method")
    ap.add_argument("--gn-iters", type=int, default=None, help="iterations of the 1-vs-P run")
    ap.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    args = ap.parse_args()
    size = args.size or ("quick" if args.quick else "full")
    if "WORLD_SIZE" in os.environ:  # under torchrun the processes are the ranks
        args.procs = int(os.environ["WORLD_SIZE"])
    s = SIZES[size]
    budget = args.budget or {"quick": 2.0, "bench": 30.0, "full": 240.0}[size]
    iters = args.gn_iters or (1 if size == "quick" else 2)
    OUT.mkdir(exist_ok=True)
    suffix = "_quick" if size == "quick" else ""
    job = {"kind": "compare", "size": size, "methods": args.methods, "budget": budget,
           "threads": args.threads}
    if os.environ.get("RANK", "0") == "0":
        print(f"{size}: {s.nz} x {s.nx} cells, {s.shots} shots, bands {s.bands} Hz, "
              f"{budget:g} s per band per method, {args.procs} process(es)", flush=True)
    res = launch(job, args.procs)
    if dist.is_initialized() and dist.get_rank() != 0:  # torchrun: rank 0 reports
        return
    figures(res, s, suffix)
    rows = []
    for m in args.methods:
        t, e = res[m]["trace"][-1]
        rows.append({"method": m, "seconds": t, "error": e, "iterations": len(res[m]["trace"])
                     - 1})
        print(f"  {m:6s} error {e:.4f} after {t:6.1f} s ({rows[-1]['iterations']} iterations)",
              flush=True)
    scaling = {}
    if args.procs > 1 and "RANK" not in os.environ:
        gn = {"kind": "gn", "size": size, "iters": iters, "threads": args.threads}
        one, many = launch(gn, 1), launch(gn, args.procs)
        diff = float((one["iterates"] - many["iterates"]).abs().max())
        scaling = {"iterations": iters, "seconds_1": one["seconds"],
                   f"seconds_{args.procs}": many["seconds"],
                   "speedup": one["seconds"] / many["seconds"], "max_velocity_diff": diff}
        print(f"  Gauss-Newton, {iters} iterations: {one['seconds']:.1f} s on 1 process, "
              f"{many['seconds']:.1f} s on {args.procs} (x{scaling['speedup']:.2f}); largest "
              f"velocity difference between the runs' iterates {diff:.2e} m/s", flush=True)
    (OUT / f"fwi{suffix}.json").write_text(json.dumps(
        {"size": asdict(s), "budget": budget, "procs": args.procs, "methods": rows,
         "scaling": scaling}, indent=1))
    lines = [f"# FWI: {s.nz} × {s.nx} cells, {s.shots} shots, bands {s.bands} Hz",
             "", f"{budget:g} s per band per method, {args.procs} process(es) × "
             f"{args.threads} thread(s).", "",
             "| method | model error | seconds | iterations |", "|---|---|---|---|"]
    lines += [f"| {r['method']} | {r['error']:.4f} | {r['seconds']:.1f} | {r['iterations']} |"
              for r in rows]
    if scaling:
        lines += ["", f"Gauss-Newton, {iters} iterations: {scaling['seconds_1']:.1f} s on 1 "
                  f"process, {scaling[f'seconds_{args.procs}']:.1f} s on {args.procs} "
                  f"(×{scaling['speedup']:.2f}); largest velocity difference between the "
                  f"iterates {scaling['max_velocity_diff']:.2e} m/s."]
    (OUT / f"fwi{suffix}.md").write_text("\n".join(lines) + "\n")
    print(f"figures and table in {OUT}", flush=True)


if __name__ == "__main__":
    main()
