"""The Half-Inverse Gradients toy problem (seed 001): Adam vs Gauss-Newton vs HIG.

Target ŷ(x) = (sin 6x, cos 9x) on x ∈ [−1, 1]; a network 1 → 7 (tanh) → 2 gives y = f_θ(x), the
"physics" scales the second component, P(y) = (y₁, λ y₂), and the loss per sample is

    L = ½ (P₁ − ŷ₁)² + ½ (P₂ − ŷ₂)² = ½ (y₁ − ŷ₁)² + ½ (λ y₂ − ŷ₂)².

λ = 1 is well conditioned; λ = 0.01 makes the Jacobian ∂P/∂θ badly scaled.  HIG and
Gauss-Newton invert J = ∂P/∂θ stacked over the batch (HIG with exponent −1/2, GN with −1, same
step η and truncation).  Gauss-Newton runs twice: plain (the seed's truncated pseudo-inverse) and
with Levenberg-Marquardt damping by Marquardt's rule (``GaussNewton(adaptive=True)``: a step that
does not lower the batch loss is undone and retried with 3× the damping).  Adam gets the best
learning rate of the grid ``ADAM_GRID`` (1e-3 … 10 in half-decades; a warning is printed if the
best one is at an edge).  All see the same training set, the same sequence of mini-batches, the
same initial network and the same budget of closure calls (forward + Jacobian; Adam: gradient
evaluations): one per step, and the damped Gauss-Newton's trial evaluations count against it, so
it takes fewer steps.  Defaults: a budget of 4,000, batch 32, 1,024 training points, η = 1,
truncation 1e-6, and the initial network the authors' Keras/TensorFlow code would get
(Glorot-uniform weights, zero biases; ``--init torch`` for PyTorch's default).  These defaults
are discussed, with a robustness table over seeds, in docs/torch.md ("Example: the HIG toy
problem") and docs/hig_toy.md.

Writes ``examples/output/hig_toy_lambda_<λ>.png`` (loss curves; hidden-activation mean ± std
over training; the path of one sample in y-space) and prints a table of final losses.

Run: ``python examples/hig_toy.py`` (about 50 s on 2 CPU cores); ``--help`` for options.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
from torch import nn

from newtonkit_torch.optim import HIG, GaussNewton

OUT = Path(__file__).resolve().parent / "output"
ADAM_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)
NAMES = {"adam": "Adam", "gn": "Gauss-Newton", "lm": "Gauss-Newton + LM damping", "hig": "HIG"}


def make_net(seed: int, init: str = "torch") -> nn.Sequential:
    """1 → 7 (tanh) → 2.  ``init="torch"``: PyTorch's default ``nn.Linear`` initialisation
    (weights and biases U(−1/√fan_in, 1/√fan_in), i.e. U(−1, 1) in the first layer);
    ``"glorot"``: the Keras/TensorFlow default the authors' code gets (Glorot-uniform weights,
    zero biases)."""
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(1, 7), nn.Tanh(), nn.Linear(7, 2))
    if init == "glorot":
        for layer in (net[0], net[2]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.zeros_(layer.bias)
    elif init != "torch":
        raise ValueError(f"unknown init {init!r}")
    return net


def target(x: torch.Tensor) -> torch.Tensor:
    """ŷ(x) = (sin 6x, cos 9x) for x of shape (B, 1) -> (B, 2)."""
    return torch.cat([torch.sin(6 * x), torch.cos(9 * x)], dim=1)


def make_physics(lam: float):
    scale = torch.tensor([1.0, lam])

    def physics(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # one sample or a batch
        return out * scale

    return physics


def loss_fn(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Batch mean of ½‖P − ŷ‖² (y = P(f_θ(x)), shape (B, 2))."""
    return 0.5 * ((y - target(x)) ** 2).sum(dim=1).mean()


def train(method: str, lam: float, data: dict, args: argparse.Namespace, lr: float) -> dict:
    """Train one network; record loss, activation statistics and the probe sample's path."""
    net = make_net(args.seed, args.init)
    physics = make_physics(lam)
    x_tr, x_val, probe, batches = data["x_train"], data["x_val"], data["probe"], data["batches"]
    if method == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=lr)
    elif method == "hig":
        opt = HIG(net.parameters(), lr=lr, truncation=args.truncation)
    else:
        # "gn": the seed's plain truncated pseudo-inverse; "lm": the same step and truncation
        # with Marquardt's adaptive damping (the trial loss is re-evaluated on the batch)
        opt = GaussNewton(net.parameters(), lr=lr, truncation=args.truncation,
                          adaptive=method == "lm")
    rec = {"it": [], "loss": [], "act_mean": [], "act_std": [], "path": []}

    def record(it: int) -> None:
        with torch.no_grad():
            rec["it"].append(it)
            rec["loss"].append(float(loss_fn(physics(net(x_val), x_val), x_val)))
            h = torch.tanh(net[0](x_val))
            rec["act_mean"].append(float(h.mean()))
            # spread over the inputs, averaged over the 7 units: 0 for saturated units
            rec["act_std"].append(float(h.std(dim=0).mean()))
            rec["path"].append(physics(net(probe), probe)[0].tolist())

    # The budget is args.iters closure calls (forward + Jacobian; Adam: gradients) for every
    # method: one per step, except that Gauss-Newton + LM damping also pays for its trial
    # evaluations, so it takes fewer steps.  "it" on the curves counts these calls.
    evals = steps = 0
    record(0)
    t0 = time.perf_counter()
    for idx in batches:
        steps += 1
        xb = x_tr[idx]
        if method == "adam":
            opt.zero_grad()
            loss_fn(physics(net(xb), xb), xb).backward()
            opt.step()
        else:
            opt.step(opt.physics_closure(net, xb, physics, loss_fn))
        before, evals = evals, evals + 1 + (opt.last_info["solves"][0]["trials"]
                                            if method == "lm" else 0)
        if evals // args.record_every > before // args.record_every or evals >= args.iters:
            record(min(evals, args.iters))
        if evals >= args.iters:
            break
    rec["steps"] = steps
    rec["time"] = time.perf_counter() - t0
    rec["final"] = rec["loss"][-1]
    rec["lr"] = lr
    return rec


def make_data(args: argparse.Namespace) -> dict:
    gen = torch.Generator().manual_seed(args.seed)
    x_train = torch.rand(args.n_train, 1, generator=gen) * 2 - 1
    steps_per_epoch = args.n_train // args.batch
    batches = []
    while len(batches) < args.iters:
        perm = torch.randperm(args.n_train, generator=gen)
        batches += [perm[k * args.batch:(k + 1) * args.batch] for k in range(steps_per_epoch)]
    return {"x_train": x_train, "x_val": torch.linspace(-1, 1, 401)[:, None],
            "probe": torch.tensor([[0.3]]), "batches": batches[:args.iters]}


def plot(lam: float, runs: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"adam": "tab:blue", "gn": "tab:red", "lm": "tab:orange", "hig": "tab:green"}
    fig, ax = plt.subplots(1, 3, figsize=(15, 4.2))
    for key, r in runs.items():
        lab = f"{NAMES[key]} (lr {r['lr']:g})"
        ax[0].semilogy(r["it"], r["loss"], color=colors[key], label=lab)
        m, s = torch.tensor(r["act_mean"]), torch.tensor(r["act_std"])
        ax[1].plot(r["it"], m, color=colors[key], label=NAMES[key])
        ax[1].fill_between(r["it"], m - s, m + s, color=colors[key], alpha=0.2)
        p = torch.tensor(r["path"])
        ax[2].plot(p[:, 0], p[:, 1], ".-", color=colors[key], ms=2, lw=0.8, label=NAMES[key])
    # Frame the start, the target and the Adam/HIG paths; a diverging path is clipped.
    pts = torch.cat([torch.tensor(r["path"]) for k, r in runs.items() if k not in ("gn", "lm")]
                    + [target(torch.tensor([[0.3]]))])
    lo, hi = pts.min(0).values, pts.max(0).values
    pad = 0.25 * (hi - lo) + 0.1
    ax[2].set_xlim(float(lo[0] - pad[0]), float(hi[0] + pad[0]))
    ax[2].set_ylim(float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    first = next(iter(runs.values()))["path"][0]
    ax[2].plot(*first, "o", color="lightgray", ms=10, label="start")
    t = target(torch.tensor([[0.3]]))[0]
    ax[2].plot(float(t[0]), float(t[1]), "ko", ms=8, label="target ŷ")
    ax[0].set(xlabel="closure calls (= steps; GN + LM: steps + trials)",
              ylabel="validation loss", title=f"loss, λ = {lam:g}")
    ax[1].set(xlabel="closure calls", ylabel="tanh activation",
              title="hidden activations: mean ± std over inputs")
    ax[2].set(xlabel="P₁ = y₁", ylabel="P₂ = λ·y₂", title="y-space path of x = 0.3 (GN clipped)")
    for a in ax:
        a.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lambdas", type=float, nargs="+", default=[1.0, 0.01])
    ap.add_argument("--iters", type=int, default=4000,
                    help="budget of closure calls (steps; the damped GN's trials count too)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--n-train", type=int, default=1024)
    ap.add_argument("--lr", type=float, default=1.0, help="step η of HIG and Gauss-Newton")
    ap.add_argument("--truncation", type=float, default=1e-6)
    ap.add_argument("--record-every", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", choices=("torch", "glorot"), default="glorot",
                    help="initial network: PyTorch default or Glorot-uniform with zero biases")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    OUT.mkdir(parents=True, exist_ok=True)
    data = make_data(args)
    results = {}
    t_start = time.perf_counter()
    for lam in args.lambdas:
        adam = [train("adam", lam, data, args, lr) for lr in ADAM_GRID]
        grid = ", ".join(f"{r['lr']:g}: {r['final']:.3g}" for r in adam)
        best = min(adam, key=lambda r: r["final"] if math.isfinite(r["final"]) else math.inf)
        if best["lr"] in (ADAM_GRID[0], ADAM_GRID[-1]):
            print(f"  warning: Adam's best lr {best['lr']:g} is at the edge of the grid")
        runs = {"adam": best, **{m: train(m, lam, data, args, args.lr)
                                 for m in ("gn", "lm", "hig")}}
        results[lam] = runs
        print(f"λ = {lam:g}: Adam grid (lr: final loss) {grid}")
        if not args.no_plot:
            path = OUT / f"hig_toy_lambda_{lam:g}.png"
            plot(lam, runs, path)
            print(f"  figure: {path}")
    print(f"\nFinal validation loss after {args.iters} steps (batch {args.batch}, "
          f"{args.n_train} training points, seed {args.seed}, init {args.init}); "
          f"\"act. std\": spread of the hidden units over the inputs at the end (0: saturated); "
          f"each method gets {args.iters} closure calls; \"steps\": the steps GN + LM damping "
          f"takes with them:\n")
    print("| λ | Adam (best lr) | Gauss-Newton | GN + LM damping | HIG | HIG / Adam "
          "| act. std GN / GN+LM / HIG | steps |")
    print("|---|---|---|---|---|---|---|---|")
    for lam, runs in results.items():
        a, g, lm, h = (runs[k] for k in ("adam", "gn", "lm", "hig"))
        std = " / ".join(f"{r['act_std'][-1]:.2f}" for r in (g, lm, h))
        print(f"| {lam:g} | {a['final']:.3g} (lr {a['lr']:g}) | {g['final']:.3g} | "
              f"{lm['final']:.3g} | {h['final']:.3g} | {h['final'] / a['final']:.3g} | {std} "
              f"| {lm['steps']} |")
    print(f"\ntotal time {time.perf_counter() - t_start:.1f} s")
    return results


if __name__ == "__main__":
    main()
