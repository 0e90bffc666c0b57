"""A physics-informed network for the Poisson equation: Gauss-Newton vs Adam vs L-BFGS.

The problem of Dangel, Müller & Zeinhofer, "Kronecker-Factored Approximate Curvature for
Physics-Informed Neural Networks" (NeurIPS 2024; code f-dangel/kfac-pinns-experiments):

    −Δu = f  on Ω = (0, 1)ᵈ,   u = g  on ∂Ω,

- ``--dim 2`` (default): u*(x) = sin(πx₁) sin(πx₂), f = 2π² u*, g = 0; 900 interior and 120
  boundary points drawn once;
- ``--dim 5``: u*(x) = Σᵢ cos(πxᵢ), f = π² u*, g = u* on ∂Ω; 3,000 interior and 500 boundary
  points drawn anew before every step.

Interior points are uniform in Ω; a boundary point is uniform in Ω with one coordinate (chosen
uniformly) set to 0 or 1 (as ``square_boundary`` in the authors' code).  The network is
d → 64 → 1 with tanh (257 parameters for d = 2, 449 for d = 5), PyTorch's default
initialisation under seed 1, float64; the points come from seed 0 (``--seed k``: k + 1 and k).

The forward model is the vector of scaled residuals

    y = [ (−Δu_θ(xᵢ) − f(xᵢ)) / √N_Ω ,  (u_θ(x_b) − g(x_b)) / √N_∂Ω ],   L = ½‖y‖²,

the authors' loss (½ mean of the squared interior residuals plus ½ mean of the squared
boundary residuals).  Δu_θ is propagated forward through the layers together with u_θ and
∇ₓu_θ (the "forward Laplacian"); the Jacobian ∂y/∂θ (1,020 × 257 for d = 2) comes from
``vmap(jacrev(·))`` over the points.

Methods, each with the same wall-clock budget of training steps (the error evaluations in
between are not timed):

- ``GaussNewton`` from ``newtonkit_torch.optim``: the truncated pseudo-inverse step
  ``J⁺ y`` (singular values below 1e-10·σ_max discarded; at that threshold ``route="auto"``
  takes the thin SVD of J, since the Gram ``JᵀJ`` cannot resolve σ below √ε·σ_max) with
  ``line_search="grid"``: ENGD's grid of step sizes η = 2⁻ᵏ, k = 0 … 30.  This is ENGD with
  the exact Gramian's pseudo-inverse in place of its damped least-squares solve (damping 1e-10
  and a moving average of the Gramian in the authors' best run); and the same with
  ``line_search="backtracking"`` (the first of the same factors that lowers the loss);
- ``gn-spring``: the same with SPRING's momentum (Goldshlager, Abrahamsen & Lin 2024;
  ``GaussNewton(momentum=0.9)``): the direction minimises ``‖J d − y‖² + λ‖d − μ d₋‖²`` for
  the previous direction ``d₋``, with the damping λ = 1e-10 (``--damping``, ``--momentum``) in
  place of the truncation, and backtracking; ``--lr-decay K`` scales the step by
  1/(1 + k/K) after k steps (``torch.optim.lr_scheduler.LambdaLR``; default 0, constant);
- ``gn-ema``: ENGD as in the authors' best 5-D run: the Gramian averaged over steps
  (``GaussNewton(gram_ema=0.6)``, ``--gram-ema``; bias-corrected, ``docs/torch.md``) with the
  damping 1e-11, and backtracking;
- Adam, learning rate tuned over {5e-4, 1.7e-3, 5e-3};
- ``torch.optim.LBFGS`` (history 150, 20 iterations per step, tolerances 0 so that it never
  stops early), tuned over lr ∈ {0.1, 0.5} without line search and lr = 1 with the strong-Wolfe
  line search.

Tuning: every setting of a grid runs for ``--tune-fraction`` of the budget (default 0.1); the
one with the lowest final error then runs for the whole budget.  The relative L2 error
``‖u_θ − u*‖ / ‖u*‖`` is measured on 10·N_Ω fixed uniform interior points; the authors' code
reports ``√mean (u_θ − u*)²`` (the table's "abs. L2"; ‖u*‖_{L²(Ω)} = 1/2 for d = 2).

Writes ``examples/output/poisson_pinn.png`` (relative L2 error against time) and
``examples/output/poisson_pinn.md`` (``poisson_pinn_5d.*`` for ``--dim 5``, ``*_quick.*`` with
``--quick``, ``*_seedK.*`` with ``--seed K``, ``*_Nthreads.*`` with ``--threads N``).

Run: ``python examples/poisson_pinn.py --quick`` (10 s per method, without the grid line
search, SPRING and gn-ema; under a minute) or ``--budget 1000``; ``--dim 5 --methods gn-ema
--budget 1000`` for the 5-D problem; ``--dim 5 --truncation 1e-6`` for the truncated steps
there (with the default truncation 1e-10 Gauss-Newton does not leave its first phase there
within 120 s: the pseudo-inverse step on each new sample of points is too long).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from newtonkit_torch.optim import GaussNewton

OUT = Path(__file__).resolve().parent / "output"
PROBLEMS = {2: dict(n_interior=900, n_boundary=120, resample=False),
            5: dict(n_interior=3000, n_boundary=500, resample=True)}
ADAM_GRID = [dict(lr=5e-4), dict(lr=1.7e-3), dict(lr=5e-3)]
LBFGS_GRID = [dict(lr=0.1, line_search_fn=None), dict(lr=0.5, line_search_fn=None),
              dict(lr=1.0, line_search_fn="strong_wolfe")]
GN_SETTINGS = {"gn": dict(lr=1.0, truncation=1e-10, line_search="grid"),
               "gn-bt": dict(lr=1.0, truncation=1e-10, line_search="backtracking"),
               "gn-spring": dict(lr=1.0, damping=1e-10, momentum=0.9,
                                 line_search="backtracking"),
               "gn-ema": dict(lr=1.0, damping=1e-11, gram_ema=0.6, line_search="backtracking")}


# -- the problem ------------------------------------------------------------------------------
def exact(X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u*(X), f(X))`` for points ``X`` (N, d): the sine product (d = 2), cosine sum (else)."""
    d = X.shape[1]
    if d == 2:
        u = torch.sin(math.pi * X).prod(dim=1)
        return u, d * math.pi ** 2 * u
    u = torch.cos(math.pi * X).sum(dim=1)
    return u, math.pi ** 2 * u


def interior_points(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(n, d, generator=gen, dtype=torch.float64)


def boundary_points(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform in Ω with one coordinate per point (drawn uniformly) set to 0 or 1."""
    X = torch.rand(n, d, generator=gen, dtype=torch.float64)
    dims = torch.randint(0, d, (n,), generator=gen)
    sides = torch.randint(0, 2, (n,), generator=gen).to(X.dtype)
    X[torch.arange(n), dims] = sides
    return X


def make_net(d: int, seed: int = 1) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d, 64), nn.Tanh(), nn.Linear(64, 1)).to(torch.float64)


def forward_laplacian(net: nn.Sequential, params: dict[str, torch.Tensor],
                      X: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(u, Δu)`` of a Linear/Tanh network at the points ``X`` (N, d), both shape (N,).

    Carries the value ``h``, its input gradient ``G = ∂h/∂x`` (N, d, width) and its Laplacian
    ``ℓ`` through the layers: a linear layer maps all three by ``Wᵀ`` (the bias enters ``h``
    alone); ``tanh`` maps ``h → t = tanh h``, ``G → t′·G`` and
    ``ℓ → t′·ℓ + t″·Σ_k G_k²`` with ``t′ = 1 − t²``, ``t″ = −2 t t′``.
    """
    n, d = X.shape
    h = X
    G = torch.eye(d, dtype=X.dtype, device=X.device).expand(n, d, d)
    lap = torch.zeros_like(X)
    for name, layer in net.named_children():
        if isinstance(layer, nn.Linear):
            W, b = params[f"{name}.weight"], params[f"{name}.bias"]
            h, G, lap = h @ W.T + b, G @ W.T, lap @ W.T
        elif isinstance(layer, nn.Tanh):
            t = torch.tanh(h)
            dt = 1 - t * t
            h, lap, G = t, dt * lap - 2 * t * dt * (G * G).sum(dim=1), dt.unsqueeze(1) * G
        else:
            raise TypeError(f"forward_laplacian handles Linear and Tanh layers, got {layer}")
    return h[:, 0], lap[:, 0]


class PoissonPINN:
    """The scaled residuals ``y(θ)`` of a network on the current points, their Jacobian, the
    loss ``½‖y‖²`` and the error against the exact solution."""

    def __init__(self, net: nn.Sequential, d: int, n_interior: int, n_boundary: int,
                 seed: int = 0) -> None:
        self.net, self.d = net, d
        self.n_interior, self.n_boundary = n_interior, n_boundary
        self.gen = torch.Generator().manual_seed(seed)
        self.resample()
        self.X_eval = interior_points(10 * n_interior, d, self.gen)
        self.u_eval = exact(self.X_eval)[0]

    def resample(self) -> None:
        """Draw new interior and boundary points (and their ``f``, ``g``)."""
        self.X_int = interior_points(self.n_interior, self.d, self.gen)
        self.X_bd = boundary_points(self.n_boundary, self.d, self.gen)
        self.f_int = exact(self.X_int)[1]
        self.g_bd = exact(self.X_bd)[0]

    def params(self) -> dict[str, torch.Tensor]:
        return dict(self.net.named_parameters())

    def residuals(self, params: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``y`` (N_Ω + N_∂Ω,), differentiable w.r.t. the parameters."""
        p = self.params() if params is None else params
        _, lap = forward_laplacian(self.net, p, self.X_int)
        u_bd, _ = forward_laplacian(self.net, p, self.X_bd)
        return torch.cat([(-lap - self.f_int) / math.sqrt(self.n_interior),
                          (u_bd - self.g_bd) / math.sqrt(self.n_boundary)])

    def loss(self) -> torch.Tensor:
        y = self.residuals()
        return 0.5 * (y * y).sum()

    def residuals_and_jacobian(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(y, J)``: the residuals (detached) and ``J = ∂y/∂θ`` (N × P, columns in the order
        of ``net.parameters()``), one ``vmap(jacrev)`` over the points of each kind."""
        p = {k: v.detach() for k, v in self.params().items()}

        def interior(q, x, f):
            return (-forward_laplacian(self.net, q, x[None])[1][0] - f) / \
                math.sqrt(self.n_interior)

        def boundary(q, x, g):
            return (forward_laplacian(self.net, q, x[None])[0][0] - g) / \
                math.sqrt(self.n_boundary)

        ys, Js = [], []
        for fn, X, c in ((interior, self.X_int, self.f_int), (boundary, self.X_bd, self.g_bd)):
            jac, y = vmap(jacrev(lambda q, x, c, fn=fn: (fn(q, x, c),) * 2, has_aux=True),
                          in_dims=(None, 0, 0))(p, X, c)
            ys.append(y)
            Js.append(torch.cat([jac[k].reshape(len(X), -1) for k in p], dim=1))
        return torch.cat(ys), torch.cat(Js)

    @torch.no_grad()
    def errors(self) -> tuple[float, float]:
        """``(relative L2, √mean(u − u*)²)`` on the evaluation points."""
        u = functional_call(self.net, self.params(), (self.X_eval,))[:, 0]
        e = u - self.u_eval
        return float(e.norm() / self.u_eval.norm()), float(e.pow(2).mean().sqrt())


# -- training ---------------------------------------------------------------------------------
def train(pinn: PoissonPINN, step: Callable[[], None], budget: float, resample: bool,
          n_logs: int = 60) -> dict:
    """Call ``step()`` until ``budget`` seconds of stepping; log the error at geometrically
    spaced times (not timed)."""
    times = [budget * 10 ** (-3 + 3 * k / (n_logs - 1)) for k in range(n_logs)]
    rel, ab = pinn.errors()
    history = [(0.0, rel, ab)]
    elapsed, steps, nxt = 0.0, 0, 0
    while elapsed < budget:
        t0 = time.perf_counter()
        if resample:
            pinn.resample()
        step()
        elapsed += time.perf_counter() - t0
        steps += 1
        if elapsed >= times[nxt] or elapsed >= budget:
            while nxt < len(times) - 1 and elapsed >= times[nxt]:
                nxt += 1
            rel, ab = pinn.errors()
            history.append((elapsed, rel, ab))
            if not math.isfinite(rel):
                break
    return dict(history=history, steps=steps, rel=history[-1][1], abs=history[-1][2],
                time=elapsed)


def run(method: str, setting: dict, d: int, budget: float, seed: int = 0) -> dict:
    """Train a fresh network with one method and setting for ``budget`` seconds (``seed``:
    the network's initialisation under ``seed + 1``, the points under ``seed``)."""
    cfg = PROBLEMS[d]
    net = make_net(d, seed=seed + 1)
    pinn = PoissonPINN(net, d, cfg["n_interior"], cfg["n_boundary"], seed=seed)
    if method.startswith("gn"):
        decay = setting.get("lr_decay", 0)
        opt = GaussNewton(net.parameters(), **{k: v for k, v in setting.items()
                                               if k != "lr_decay"})
        # lr/(1 + k/K) after k steps, by torch's own scheduler (0: a constant lr)
        schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: 1.0 / (1.0 + k / decay)) \
            if decay else None

        def closure():
            y, J = pinn.residuals_and_jacobian()
            y.requires_grad_(True)
            return y, 0.5 * (y * y).sum(), J

        def step():
            opt.step(closure, pinn.loss)
            if schedule is not None:
                schedule.step()
    elif method == "adam":
        opt = torch.optim.Adam(net.parameters(), **setting)

        def step():
            opt.zero_grad()
            pinn.loss().backward()
            opt.step()
    elif method == "lbfgs":
        # zero tolerances: torch's defaults end every step early once the loss changes by
        # less than 1e-9, which stalls L-BFGS here at a relative error of about 2e-3
        opt = torch.optim.LBFGS(net.parameters(), history_size=150, max_iter=20,
                                tolerance_grad=0.0, tolerance_change=0.0, **setting)

        def closure():
            opt.zero_grad()
            loss = pinn.loss()
            loss.backward()
            return loss

        def step():
            opt.step(closure)
    else:
        raise ValueError(f"unknown method {method!r}")
    out = train(pinn, step, budget, cfg["resample"])
    if method.startswith("gn"):
        out["route"] = opt.state[next(iter(net.parameters()))].get("route")
    if method == "lbfgs":
        out["steps"] = opt.state[next(iter(net.parameters()))].get("n_iter", out["steps"])
    return out


def tuned(method: str, grid: list[dict], d: int, budget: float, fraction: float,
          seed: int = 0) -> tuple:
    """Run every setting for ``fraction·budget``, then the best for ``budget``."""
    trials = []
    for setting in grid:
        r = run(method, setting, d, fraction * budget, seed)
        rel = r["rel"] if math.isfinite(r["rel"]) else math.inf
        print(f"  tune {method} {setting}: rel. L2 {rel:.2e} after {r['steps']} iterations",
              flush=True)
        trials.append((rel, setting))
    best = min(trials, key=lambda t: t[0])[1]
    return best, run(method, best, d, budget, seed), trials


# -- output -----------------------------------------------------------------------------------
NAMES = {"gn": "newtonkit GaussNewton, grid line search",
         "gn-bt": "newtonkit GaussNewton, backtracking",
         "gn-spring": "newtonkit GaussNewton, SPRING momentum, backtracking",
         "gn-ema": "newtonkit GaussNewton, averaged Gramian (ENGD), backtracking",
         "adam": "Adam", "lbfgs": "L-BFGS"}


def describe(setting: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in setting.items())


def write_table(path: Path, results: dict, args, tuning: dict) -> None:
    cfg = PROBLEMS[args.dim]
    n_params = sum(p.numel() for p in make_net(args.dim).parameters())
    lines = [f"# Poisson {args.dim}-D PINN ({n_params} parameters, {cfg['n_interior']} interior"
             f" + {cfg['n_boundary']} boundary points"
             f"{', resampled every step' if cfg['resample'] else ''}), float64, "
             f"{torch.get_num_threads()} thread(s), {args.budget:g} s per method"
             f"{f', seed {args.seed}' if args.seed else ''}",
             "", "| method | setting | budget (s) | iterations | rel. L2 | abs. L2 |",
             "|---|---|---:|---:|---:|---:|"]
    for m, (setting, r) in results.items():
        route = f", route taken: {r['route']}" if r.get("route") else ""
        lines.append(f"| {NAMES[m]} | {describe(setting)}{route} | {r['time']:.0f} | "
                     f"{r['steps']} | "
                     f"{r['rel']:.2e} | {r['abs']:.2e} |")
    if tuning:
        lines += ["", f"Tuning runs ({args.tune_fraction:g} of the budget each; final rel. L2):",
                  ""]
        for m, trials in tuning.items():
            lines.append(f"- {NAMES[m]}: " + "; ".join(f"{describe(s)}: {rel:.2e}"
                                                      for rel, s in trials))
    path.write_text("\n".join(lines) + "\n")


def plot(path: Path, results: dict, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for m, (_, r) in results.items():
        t, rel, _ = zip(*r["history"], strict=True)
        ax.loglog([max(x, 1e-3 * args.budget) for x in t], rel, label=f"{NAMES[m]}")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("relative L2 error")
    ax.set_title(f"Poisson {args.dim}-D PINN, {args.budget:g} s per method")
    ax.grid(True, which="both", alpha=0.3)
    # below the axes: the curves end at the bottom right, where a legend inside would sit
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize="small",
              frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dim", type=int, choices=sorted(PROBLEMS), default=2)
    ap.add_argument("--budget", type=float, default=300.0, help="seconds of training per method")
    ap.add_argument("--quick", action="store_true",
                    help="10 s per method, three methods (under a minute); writes *_quick.*")
    ap.add_argument("--tune-fraction", type=float, default=0.1,
                    help="each tuning run's share of the budget")
    ap.add_argument("--methods", nargs="+", choices=list(NAMES),
                    help="default: all; with --quick all but the grid line search")
    ap.add_argument("--truncation", type=float, default=GN_SETTINGS["gn"]["truncation"],
                    help="GaussNewton's relative singular-value cutoff (gn, gn-bt)")
    ap.add_argument("--damping", type=float, default=GN_SETTINGS["gn-spring"]["damping"],
                    help="gn-spring's damping λ")
    ap.add_argument("--momentum", type=float, default=GN_SETTINGS["gn-spring"]["momentum"],
                    help="gn-spring's momentum μ")
    ap.add_argument("--gram-ema", type=float, default=GN_SETTINGS["gn-ema"]["gram_ema"],
                    help="gn-ema's moving-average factor β of the Gramian")
    ap.add_argument("--lr-decay", type=int, default=0,
                    help="gn-spring's lr/(1 + k/K) after k steps: K (0: constant)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads; other than 1 writes *_Nthreads.*")
    ap.add_argument("--seed", type=int, default=0,
                    help="the points' seed (the network's is one more); other than 0 writes "
                         "*_seedK.*")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.budget, args.tune_fraction = 10.0, 0.15
    if args.methods is None:
        args.methods = [m for m in NAMES
                        if not (args.quick and m in ("gn", "gn-spring", "gn-ema"))]
    torch.set_num_threads(args.threads)
    results, tuning = {}, {}
    for m in args.methods:
        print(f"{NAMES[m]}:", flush=True)
        if m in GN_SETTINGS:
            if m == "gn-spring":
                setting = {**GN_SETTINGS[m], "damping": args.damping, "momentum": args.momentum,
                           **({"lr_decay": args.lr_decay} if args.lr_decay else {})}
            elif m == "gn-ema":
                setting = {**GN_SETTINGS[m], "gram_ema": args.gram_ema}
            else:
                setting = {**GN_SETTINGS[m], "truncation": args.truncation}
            r = run(m, setting, args.dim, args.budget, args.seed)
        else:
            grid = ADAM_GRID if m == "adam" else LBFGS_GRID
            setting, r, tuning[m] = tuned(m, grid, args.dim, args.budget, args.tune_fraction,
                                          args.seed)
        results[m] = (setting, r)
        print(f"  {describe(setting)}: rel. L2 {r['rel']:.2e} (abs. {r['abs']:.2e}) after "
              f"{r['steps']} iterations in {r['time']:.1f} s", flush=True)
    OUT.mkdir(exist_ok=True)
    stem = ("poisson_pinn" if args.dim == 2 else f"poisson_pinn_{args.dim}d") + \
        ("_quick" if args.quick else "") + (f"_seed{args.seed}" if args.seed else "") + \
        (f"_{args.threads}threads" if args.threads != 1 else "")
    write_table(OUT / f"{stem}.md", results, args, tuning)
    if not args.no_plot:
        plot(OUT / f"{stem}.png", results, args)
    print((OUT / f"{stem}.md").read_text())
    return results


if __name__ == "__main__":
    main()
