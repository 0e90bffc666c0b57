"""Coupled nonlinear oscillators (seed 001, the HIG paper's main benchmark): HIG, Adam, GN, LM.

Two oscillators with state x = (q₁, q₂, p₁, p₂) obey

    q̇ᵢ = pᵢ,   ṗ₁ = −q₁ + (q₂ − q₁)³,   ṗ₂ = −q₂ − (q₂ − q₁)³ + 3·u(t),

(cubic coupling 1.0, control gain 3.0 on the last oscillator), integrated by 96 RK4 steps of
dt = 0.125 with the control held constant over each step.  A network 4 → 20 → 20 → 20 (ReLU) →
96 (2,956 parameters, Glorot-uniform weights, zero biases as in the authors' Keras model) maps
the start state x₀ to the 96 controls; the loss per data point is ‖x(T) − x₀‖² (bring the
system back to where it started).  4096 training states are drawn from U[0, 1)⁴.

The per-sample Jacobian J (batch 128 × 4 final states, 2,956 parameters) is formed by the
chain rule J_i = ∂x(T)/∂u · ∂f_θ(x_i)/∂θ: the rollout's Jacobian with respect to the 96
controls from the RK4 step Jacobians (``rollout_jacobian``), pulled back through the network
(``chained_jacobian``); ``--jacobian vmap`` takes ``vmap(jacrev)`` through network and rollout
together instead (the same J up to rounding, about twice the time per HIG iteration).

Methods, as in the authors' code: HIG (batch 128, η = 1, truncation 1e-6: J is 512 × 2956),
Adam (batch 512, lr 3e-4) and Gauss-Newton (truncated pseudo-inverse, batch 128, η = 1, same
truncation); and, not in the authors' code, the same Gauss-Newton with Marquardt's adaptive
damping (``GaussNewton(adaptive=True)``; its trial evaluations count as step time).  Every
method trains for the same wall-clock budget (training steps only; the
full-training-set loss evaluations in between are not counted).  Writes
``examples/output/oscillators.png`` (loss per data point vs time) and prints a table.

Run: ``python examples/oscillators.py --quick`` (15 s per method) or ``--budget 300``.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from newtonkit_torch.jacobians import rollout_jacobian
from newtonkit_torch.optim import HIG, GaussNewton

OUT = Path(__file__).resolve().parent / "output"
DT, NT, GAIN, COUPLING = 0.125, 96, 3.0, 1.0
SETTINGS = {"hig": dict(batch=128, lr=1.0), "adam": dict(batch=512, lr=3e-4),
            "gn": dict(batch=128, lr=1.0), "lm": dict(batch=128, lr=1.0)}
NAMES = {"hig": "HIG", "adam": "Adam", "gn": "Gauss-Newton", "lm": "Gauss-Newton + LM damping"}


def ode(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """ẋ for states ``x`` (..., 4) and controls ``u`` (...)."""
    q1, q2, p1, p2 = x.unbind(-1)
    c = COUPLING * (q2 - q1) ** 3
    return torch.stack([p1, p2, c - q1, GAIN * u - c - q2], dim=-1)


def rk4_step(x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """One RK4 step of ``DT`` with the control ``u`` held constant; ``x`` (..., 4), ``u`` (...)."""
    h = DT
    k1 = ode(x, u)
    k2 = ode(torch.add(x, k1, alpha=h / 2), u)
    k3 = ode(torch.add(x, k2, alpha=h / 2), u)
    k4 = ode(torch.add(x, k3, alpha=h), u)
    return torch.add(x, k1 + 2 * (k2 + k3) + k4, alpha=h / 6)


def simulate(u: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Final state after ``NT`` RK4 steps; ``u`` (..., NT), ``x0`` (..., 4) (batched or not)."""
    x = x0
    for t in range(NT):
        x = rk4_step(x, u[..., t])
    return x


def physics(out: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """The physics P(f_θ(x₀), x₀): the final state for the network's controls."""
    return simulate(out, x0)


def physics_jacobian(out: torch.Tensor, x0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For the batch: the final states ``(B, 4)`` and ``∂x(T)/∂u`` ``(B, 4, NT)``.

    ``∂x(T)/∂u_t = A_95 ⋯ A_(t+1) b_t`` with the RK4 step's Jacobians ``A_t = ∂x_(t+1)/∂x_t``,
    ``b_t = ∂x_(t+1)/∂u_t`` (:func:`newtonkit_torch.jacobians.rollout_jacobian`).
    """
    return rollout_jacobian(rk4_step, x0, out)


def closure_for(opt: HIG | GaussNewton, net: nn.Module, xb: torch.Tensor,
                jacobian: str = "chain"):
    """The optimizer's closure ``() -> (y, loss, J)`` on the batch ``xb``.

    ``"chain"``: ``J_i = ∂x(T)/∂u · ∂f_θ(x_i)/∂θ`` (``chained_jacobian`` with
    :func:`physics_jacobian`); ``"vmap"``: ``vmap(jacrev)`` of network and rollout together.
    The two Jacobians agree to rounding.
    """
    if jacobian not in ("chain", "vmap"):
        raise ValueError(f"jacobian must be 'chain' or 'vmap', got {jacobian!r}")
    return opt.physics_closure(net, xb, physics, loss_fn, physics_jacobian=(
        physics_jacobian if jacobian == "chain" else None))


def loss_fn(y: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Loss per data point: the batch mean of ‖x(T) − x₀‖²."""
    return ((y - x0) ** 2).sum(dim=-1).mean()


def make_net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(4, 20), nn.ReLU(), nn.Linear(20, 20), nn.ReLU(),
                        nn.Linear(20, 20), nn.ReLU(), nn.Linear(20, NT))
    for m in net:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def make_data(seed: int, n: int = 4096) -> torch.Tensor:
    return torch.rand(n, 4, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def full_loss(net: nn.Module, x: torch.Tensor) -> float:
    return float(loss_fn(simulate(net(x), x), x))


def train(method: str, budget: float, x: torch.Tensor, seed: int = 0,
          n_evals: int = 30, max_iters: int | None = None, jacobian: str = "chain",
          eval_every: int | None = None, target: float | None = None,
          dtype: torch.dtype = torch.float32) -> dict:
    """Train for ``budget`` seconds of step time; return the loss-vs-time record.

    The full-set loss is evaluated ``n_evals`` times over the budget, or with ``eval_every``
    every that many iterations; with ``target`` training stops at the first evaluation at or
    below it (``rec["time_to_target"]``, ``rec["iters_to_target"]``).  ``jacobian``: see
    :func:`closure_for`.  ``dtype``: of the network and the states.
    """
    cfg = SETTINGS[method]
    net = make_net(seed).to(dtype)
    x = x.to(dtype)
    if method == "adam":
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    elif method == "hig":
        opt = HIG(net.parameters(), lr=cfg["lr"], truncation=1e-6)
    else:
        # "gn": the authors' plain pseudo-inverse; "lm": Marquardt's adaptive damping (its
        # trial evaluations are part of the step time)
        opt = GaussNewton(net.parameters(), lr=cfg["lr"], truncation=1e-6,
                          adaptive=method == "lm")
    gen = torch.Generator().manual_seed(seed + 1)
    rec = {"time": [0.0], "loss": [full_loss(net, x)], "iters": [0], "step_times": []}
    elapsed, it, next_eval = 0.0, 0, budget / n_evals
    n, bs = x.shape[0], cfg["batch"]
    stop = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        while not stop:
            perm = torch.randperm(n, generator=gen)
            for k in range(n // bs):
                xb = x[perm[k * bs:(k + 1) * bs]]
                t0 = time.perf_counter()
                try:
                    if method == "adam":
                        opt.zero_grad()
                        loss_fn(physics(net(xb), xb), xb).backward()
                        opt.step()
                    else:
                        opt.step(closure_for(opt, net, xb, jacobian))
                except FloatingPointError as exc:  # the optimizer refuses a diverged model
                    rec["diverged"] = f"iteration {it + 1}: {exc}"
                    break
                dt = time.perf_counter() - t0
                elapsed += dt
                it += 1
                rec["step_times"].append(dt)
                done = elapsed >= budget or (max_iters is not None and it >= max_iters)
                due = it % eval_every == 0 if eval_every else elapsed >= next_eval
                if due or done:
                    rec["time"].append(elapsed)
                    rec["loss"].append(full_loss(net, x))
                    rec["iters"].append(it)
                    next_eval += budget / n_evals
                    if target is not None and rec["loss"][-1] <= target:
                        rec["time_to_target"], rec["iters_to_target"] = elapsed, it
                        done = True
                if done:
                    stop = True
                    break
            if "diverged" in rec:
                rec["time"].append(elapsed)
                rec["loss"].append(full_loss(net, x))
                rec["iters"].append(it)
                break
    rec["warnings"] = sorted({str(w.message) for w in caught})
    rec["final"] = rec["loss"][-1]
    rec["n_iters"] = it
    st = sorted(rec["step_times"][1:] or rec["step_times"])
    rec["median_step"] = st[len(st) // 2]
    return rec


def plot(runs: dict, budget: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"adam": "tab:blue", "gn": "tab:red", "lm": "tab:orange", "hig": "tab:green"}
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for key, r in runs.items():
        loss = [v if math.isfinite(v) else float("nan") for v in r["loss"]]
        ax.semilogy(r["time"], loss, ".-", color=colors[key],
                    label=f"{NAMES[key]} (batch {SETTINGS[key]['batch']}, {r['n_iters']} it)")
    ax.set(xlabel="training wall-clock time [s]", ylabel="loss per data point",
           title=f"coupled oscillators, equal budget {budget:g} s")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_at(r: dict, t: float) -> float:
    """The last evaluated loss at or before training time ``t``."""
    vals = [loss for tt, loss in zip(r["time"], r["loss"], strict=True) if tt <= t + 1e-9]
    return vals[-1]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=120.0, help="seconds of training per method")
    ap.add_argument("--quick", action="store_true", help="15 s per method")
    ap.add_argument("--methods", nargs="+", default=["hig", "adam", "gn", "lm"],
                    choices=["hig", "adam", "gn", "lm"])
    ap.add_argument("--seed", type=int, default=22)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: the tensors are tiny, extra threads only add overhead)")
    ap.add_argument("--jacobian", choices=["chain", "vmap"], default="chain",
                    help="HIG/GN Jacobian: chain rule through the RK4 step Jacobians, or "
                         "vmap(jacrev) through network and rollout")
    ap.add_argument("--no-plot", action="store_true")
    args = ap.parse_args(argv)
    budget = 15.0 if args.quick else args.budget
    torch.set_num_threads(args.threads)
    x = make_data(args.seed)
    runs = {}
    for method in args.methods:
        runs[method] = r = train(method, budget, x, seed=args.seed, jacobian=args.jacobian)
        print(f"{NAMES[method]}: {r['n_iters']} iterations, median step "
              f"{1e3 * r['median_step']:.1f} ms, loss {r['loss'][0]:.4g} -> {r['final']:.4g}"
              + (f"  [warnings: {'; '.join(r['warnings'])}]" if r["warnings"] else "")
              + (f"  [stopped: {r['diverged']}]" if "diverged" in r else ""),
              flush=True)
    if not args.no_plot:
        OUT.mkdir(parents=True, exist_ok=True)
        path = OUT / "oscillators.png"
        plot(runs, budget, path)
        print(f"figure: {path}")
    marks = [budget / 4, budget / 2]
    print(f"\nLoss per data point (4096 training states) at equal training time, budget "
          f"{budget:g} s each:\n")
    print("| method | batch | iterations | median step [ms] | "
          + " | ".join(f"t = {m:g} s" for m in marks) + f" | end ({budget:g} s) |")
    print("|---|---|---|---|" + "---|" * (len(marks) + 1))
    for key, r in runs.items():
        print(f"| {NAMES[key]} | {SETTINGS[key]['batch']} | {r['n_iters']} | "
              f"{1e3 * r['median_step']:.1f} | "
              + " | ".join(f"{loss_at(r, m):.4g}" for m in marks) + f" | {r['final']:.4g} |")
    return runs


if __name__ == "__main__":
    main()
