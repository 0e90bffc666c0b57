"""Deepwave's Hessian example (seed 000) by regularised Newton, then Gauss-Newton and HIG.

The problem is deepwave's ``docs/example_hessian.py``: a 20 × 30 two-layer velocity model
(1500 m/s over 1700 m/s from row 10), dx = 4 m, dt = 4 ms, 80 samples, a 25 Hz Ricker source at
[1, 15], 10 receivers on row 1 (columns 10-19), a free surface on top (``pml_width=[0, 20, 20,
20]``), ``max_vel=2000``, ``torch.nn.MSELoss`` against the true model's data, float32.  The start
model is the true one blurred by a 31 × 31 Gaussian (sigma 5, reflect padding, as torchvision's
``gaussian_blur``).

1. Newton as the seed does it, through ``newtonkit.minimize(method="newton")``: the exact
   Hessian, τ = max(−1.5·λ_min, 0), Cholesky of H + τI, unit steps, three iterations, with the
   seed's bug (a stale ``v.grad`` doubling the first gradient) absent.
2. The same problem by matrix-free Gauss-Newton (CGLS on Born products, 20 inner iterations) and
   by HIG (dense Jacobian from batched Born products, η = 1e4 with Armijo backtracking).

deepwave 0.1.0 propagates this setup at an internal step of dt/5 and refuses the Hessian on its
compiled backend; ``newtonkit_torch.deepwave.ScalarWave`` resamples the wavelet itself, so the
data are bit-identical to the plain call and the Hessian works (checked below).

Figures in ``examples/output/``: ``deepwave_hessian.png`` (the Hessian and its row for cell
(10, 10)), ``deepwave_gradient_vs_newton.png``, ``deepwave_result.png`` (colour range
1400-1800); the table in ``deepwave_methods.md``.

Run: ``python examples/deepwave_hessian.py [--threads 1]`` (about three dense Hessians, a few
minutes on a 2-core CPU).
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import newtonkit as nk  # noqa: E402
from newtonkit_torch.deepwave import MSEMisfit, ScalarWave  # noqa: E402

try:
    import deepwave  # noqa: E402
except ImportError as exc:  # pragma: no cover
    raise SystemExit("this example needs deepwave: pip install newtonkit[deepwave]") from exc

OUT = Path(__file__).resolve().parent / "output"
NEWTON_OPTIONS = {"shift": "eigen", "factor": 1.5, "line_search": False, "maxiter": 3,
                  "gtol": 0.0, "ftol": 0.0, "xtol": 0.0}
GN_OPTIONS = {"linear_solver": "cgls", "cg_maxiter": 20, "maxiter": 3, "gtol": 0.0, "ftol": 0.0,
              "xtol": 0.0}
HIG_OPTIONS = {"step": 1e4, "truncation": 1e-6, "line_search": True, "maxiter": 5,
               "gtol": 0.0, "ftol": 0.0, "xtol": 0.0}


def gaussian_blur(img: torch.Tensor, size: int = 31, sigma: float = 5.0) -> torch.Tensor:
    """torchvision's ``gaussian_blur(img[None], [size, size])`` (separable, reflect padding)."""
    half = size // 2
    x = torch.linspace(-half, half, size, dtype=img.dtype, device=img.device)
    w = torch.exp(-0.5 * (x / sigma) ** 2)
    w = w / w.sum()
    out = torch.nn.functional.pad(img[None, None], (half, half, half, half), mode="reflect")
    out = torch.nn.functional.conv2d(out, w.reshape(1, 1, 1, -1))
    out = torch.nn.functional.conv2d(out, w.reshape(1, 1, -1, 1))
    return out[0, 0]


def seed_problem(dtype: torch.dtype = torch.float32, device: str = "cpu", ny: int = 20,
                 nx: int = 30, nt: int = 80) -> dict:
    """The seed's survey, models, forward model and misfit.

    ``ny, nx, nt`` (default the seed's 20, 30, 80) shrink it for smoke runs: the layer starts at
    row ``ny // 2``, the source sits at column ``nx // 2``, the receivers on columns ``nx // 3``
    to ``nx - nx // 3 - 1`` (the seed's 10-19), the blur is at most ``2·min(ny, nx) − 1`` wide.
    """
    freq, dt, dx = 25, 0.004, 4.0
    v_true = torch.full((ny, nx), 1500.0, dtype=dtype, device=device)
    v_true[ny // 2:] += 200
    v_init = gaussian_blur(v_true, size=min(31, 2 * min(ny, nx) - 1))
    survey = dict(
        source_amplitudes=deepwave.wavelets.ricker(freq, nt, dt, 1.3 / freq, dtype=dtype)
        .reshape(1, 1, -1).to(device),
        source_locations=torch.tensor([[[1, nx // 2]]], dtype=torch.long, device=device),
        receiver_locations=torch.stack(
            [torch.ones(nx - 2 * (nx // 3), dtype=torch.long),
             torch.arange(nx // 3, nx - nx // 3)], dim=-1
        )[None].to(device),
        pml_width=[0, 20, 20, 20],
        max_vel=2000,
    )
    model = ScalarWave(dx, dt, **survey)
    d_true = model(v_true)
    return dict(v_true=v_true, v_init=v_init, model=model, misfit=MSEMisfit(model, d_true),
                d_true=d_true, survey=survey, dx=dx, dt=dt)


def model_error(v: torch.Tensor, p: dict) -> float:
    """‖v − v_true‖ / ‖v₀ − v_true‖."""
    return float((v - p["v_true"]).norm() / (p["v_init"] - p["v_true"]).norm())


def run_newton(p: dict) -> tuple:
    """The seed's three Newton iterations through ``newtonkit.minimize``."""
    misfit, losses, first = p["misfit"], [float(p["misfit"].value(p["v_init"]))], {}

    def hess(v: torch.Tensor) -> torch.Tensor:
        H = misfit.hessian(v)
        first.setdefault("H", H)
        return H

    def record(intermediate_result):
        losses.append(float(intermediate_result.fun))

    t0 = time.perf_counter()
    res = nk.minimize(misfit, p["v_init"], method="newton", jac=misfit.grad, hess=hess,
                      callback=record, options=NEWTON_OPTIONS)
    return res, losses, time.perf_counter() - t0, first["H"]


def run_gauss_newton(p: dict) -> tuple:
    """Matrix-free Gauss-Newton: CGLS with Born ``J p`` and reverse-mode ``Jᵀ w``."""
    loss = nk.L2Loss(p["d_true"], weights=2.0 / p["d_true"].numel())  # = MSELoss
    losses = [float(p["misfit"].value(p["v_init"]))]

    def record(intermediate_result):
        losses.append(float(intermediate_result.fun))

    t0 = time.perf_counter()
    res = nk.minimize(nk.Composite(p["model"].matrix_free(), loss), p["v_init"], method="gn",
                      callback=record, options=GN_OPTIONS)
    return res, losses, time.perf_counter() - t0


def run_hig(p: dict) -> tuple:
    """HIG (κ = −1/2) on the dense Jacobian (batched Born products)."""
    loss = nk.L2Loss(p["d_true"], weights=2.0 / p["d_true"].numel())
    losses = [float(p["misfit"].value(p["v_init"]))]

    def record(intermediate_result):
        losses.append(float(intermediate_result.fun))

    t0 = time.perf_counter()
    res = nk.minimize(nk.Composite(p["model"], loss), p["v_init"], method="hig",
                      callback=record, options=HIG_OPTIONS)
    return res, losses, time.perf_counter() - t0


def figures(p: dict, H: torch.Tensor, results: dict) -> None:
    """The seed's three figures, as PNG."""
    OUT.mkdir(parents=True, exist_ok=True)
    ny, nx = p["v_true"].shape
    vmax = float(torch.quantile(H.reshape(-1).double(), 0.95))
    _, ax = plt.subplots(1, 2, figsize=(10.5, 7))
    ax[0].imshow(H.cpu(), aspect="auto", cmap="gray", vmin=-vmax, vmax=vmax)
    ax[0].set_title("Hessian")
    ax[1].imshow(H[10 * nx + 10].reshape(ny, nx).cpu(), aspect="auto", cmap="gray",
                 vmin=-vmax, vmax=vmax)
    ax[1].set_title("Hessian at (10, 10)")
    ax[1].set_xlabel("X")
    ax[1].set_ylabel("Y")
    plt.tight_layout()
    plt.savefig(OUT / "deepwave_hessian.png")
    plt.close()

    g = p["misfit"].grad(p["v_init"]).reshape(-1)
    h, _ = nk.regularized_cholesky_solve(H, g, shift="eigen", factor=1.5)
    _, ax = plt.subplots(1, 2, figsize=(10.5, 7), sharex=True, sharey=True)
    ax[0].imshow(g.reshape(ny, nx).cpu(), aspect="auto", cmap="gray")
    ax[0].set_title("Gradient")
    ax[1].imshow(h.reshape(ny, nx).cpu(), aspect="auto", cmap="gray")
    ax[1].set_title("Inverse Hessian times gradient")
    ax[0].set_xlabel("X")
    ax[0].set_ylabel("Y")
    plt.tight_layout()
    plt.savefig(OUT / "deepwave_gradient_vs_newton.png")
    plt.close()

    panels = [("Initial", p["v_init"])] + [(k, r.x) for k, r in results.items()]
    panels.append(("True", p["v_true"]))
    _, ax = plt.subplots(1, len(panels), figsize=(3.5 * len(panels), 3.5), sharex=True,
                         sharey=True)
    for a, (title, v) in zip(ax, panels, strict=True):
        a.imshow(v.detach().cpu(), vmin=1400, vmax=1800)
        a.set_title(title)
    plt.tight_layout()
    plt.savefig(OUT / "deepwave_result.png")
    plt.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch/OpenMP threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=deepwave.ZeroWidthFaceWarning)
    p = seed_problem()
    plain = deepwave.scalar(p["v_true"], p["dx"], p["dt"], **p["survey"])
    setup = p["model"].setup(p["v_true"])
    identical = torch.equal(plain.receiver_amplitudes, p["d_true"])
    print(f"deepwave {deepwave.__version__}: internal time-step ratio {plain.info.step_ratio}; "
          f"the adapter propagates at dt = {setup['dt']:g} s with the wavelet upsampled "
          f"x{setup['step_ratio']}; forward data bit-identical to the plain call: {identical}")
    assert identical

    newton, newton_losses, t_newton, H0 = run_newton(p)
    print("\nNewton (seed's shift rule, unit steps):")
    for k, f in enumerate(newton_losses):
        print(f"  iteration {k}: loss {f:.3e}")
    print(f"  shifts τ = {', '.join(f'{t:.2e}' for t in newton.taus)}; "
          f"λ_min = {', '.join(f'{x:.2e}' for x in newton.lambda_min)}")
    lam = torch.linalg.eigvalsh(H0.double())
    print(f"  Hessian at v0: {int((lam < 0).sum())} of {lam.numel()} eigenvalues negative, "
          f"range {float(lam[0]):.2e} to {float(lam[-1]):.2e}")

    gn, gn_losses, t_gn = run_gauss_newton(p)
    hig, hig_losses, t_hig = run_hig(p)
    results = {"Newton": newton, "Gauss-Newton": gn, "HIG": hig}
    figures(p, H0, results)

    rows = [("Newton (dense H, eigen shift, unit steps)", newton, newton_losses, t_newton),
            ("Gauss-Newton (matrix-free, CGLS 20)", gn, gn_losses, t_gn),
            (f"HIG (η = {HIG_OPTIONS['step']:g}, Armijo)", hig, hig_losses, t_hig)]
    lines = ["| method | iterations | loss per iteration | final loss | model error | time (s) |",
             "|---|---|---|---|---|---|"]
    for name, res, losses, t in rows:
        traj = " → ".join(f"{f:.2e}" for f in losses)
        lines.append(f"| {name} | {res.nit} | {traj} | {res.fun:.3e} | "
                     f"{model_error(res.x, p):.3f} | {t:.1f} |")
    table = "\n".join(lines)
    threads = torch.get_num_threads()
    note = (f"\nfloat32, CPU, {threads} thread(s); model error = ‖v − v_true‖ / ‖v₀ − v_true‖ "
            f"(1 at v₀).\n")
    print("\n" + table + note)
    (OUT / "deepwave_methods.md").write_text(table + "\n" + note)
    for r in results.values():
        assert math.isfinite(r.fun)
    print(f"figures and table in {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
