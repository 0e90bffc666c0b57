"""Batched ``curve_fit`` (issue 15): ``newtonkit.curve_fit(..., batch=True)`` against a loop of
``scipy.optimize.curve_fit``.

Problem: ``y = a·exp(−b·x) + c`` on 50 points of ``x ∈ [0, 4]``, truth ``a ~ U(1, 3)``,
``b ~ U(0.5, 2)``, ``c ~ U(0, 1)`` per data set, Gaussian noise σ = 0.05 with per-point
``sigma`` given (``0.05·(1 + U(0, 1))``), ``p0 = (1, 1, 1)``; 10,000 data sets.

Solvers (each its defaults: lm, tolerances 1e-8):
- newtonkit, torch float64, ``jac=None`` (autograd Jacobians vectorised with ``torch.func``);
- newtonkit, NumPy float64, with a batched analytic ``jac`` and with ``jac=None``
  (``'2-point'`` differences);
- a loop of ``scipy.optimize.curve_fit`` over the first 1,000 data sets, without ``jac``
  (SciPy's default: MINPACK's differences) and with the analytic ``jac``.

fits/s = fits / median wall time over ``--repeats`` rounds (solvers in the same order each
round); ratio = newtonkit torch fits/s ÷ SciPy's (no ``jac``).  Agreement over the 1,000
SciPy fits: the largest difference of popt from SciPy's in units of SciPy's standard errors
√diag(pcov) (a relative difference is meaningless for c near 0), and of pcov relative to its
largest entry.  One BLAS and one torch thread.  Writes ``benchmarks/output/curve_fit.{md,json}``.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_curve_fit.py`` (about a minute on 2
cores); ``--quick`` runs 200 / 50 fits.
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.optimize as so  # noqa: E402

import newtonkit as nk  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "output"
X = np.linspace(0.0, 4.0, 50)


def model(x, a, b, c):
    return a * np.exp(-b * x) + c


def model_jac(x, a, b, c):
    e = np.exp(-b * x)
    return np.stack([e, -a * x * e, np.ones_like(x)], 1)


def model_jac_batch(x, a, b, c):
    e = np.exp(-b * x)
    return np.stack([e, -a * x * e, np.ones_like(e)], 2)


def data(B: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    P = np.stack([rng.uniform(1, 3, B), rng.uniform(0.5, 2, B), rng.uniform(0, 1, B)], 1)
    S = 0.05 * (1 + rng.random((B, X.size)))
    Y = P[:, :1] * np.exp(-P[:, 1:2] * X) + P[:, 2:] + S * rng.standard_normal((B, X.size))
    return Y, S


def timed(fn, repeats: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    B, K = (200, 50) if a.quick else (10_000, 1_000)
    Y, S = data(B)
    Yt, St, Xt = (torch.as_tensor(v) for v in (Y, S, X))

    def tmodel(x, a_, b_, c_):
        return a_ * torch.exp(-b_ * x) + c_

    p0 = [1.0, 1.0, 1.0]
    runs = {
        "newtonkit torch float64, autograd": lambda: nk.curve_fit(
            tmodel, Xt, Yt, p0=p0, sigma=St, batch=True),
        "newtonkit NumPy float64, analytic jac": lambda: nk.curve_fit(
            model, X, Y, p0=p0, sigma=S, jac=model_jac_batch, batch=True),
        "newtonkit NumPy float64, 2-point": lambda: nk.curve_fit(
            model, X, Y, p0=p0, sigma=S, batch=True),
    }
    scipy_runs = {
        "SciPy curve_fit loop, no jac": lambda: [so.curve_fit(model, X, Y[i], p0=p0,
                                                              sigma=S[i]) for i in range(K)],
        "SciPy curve_fit loop, analytic jac": lambda: [
            so.curve_fit(model, X, Y[i], p0=p0, sigma=S[i], jac=model_jac) for i in range(K)],
    }
    rows, results = [], {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, fn in {**runs, **scipy_runs}.items():
            t, out = timed(fn, a.repeats)
            fits = K if name in scipy_runs else B
            rows.append({"solver": name, "fits": fits, "seconds": t, "fits_per_s": fits / t})
            results[name] = out
            print(f"{name}: {fits} fits in {t:.3f} s, {fits / t:,.0f} fits/s", flush=True)
    ref = results["SciPy curve_fit loop, no jac"]
    ref_p = np.array([r[0] for r in ref])
    ref_c = np.array([r[1] for r in ref])
    agree = {}
    for name in runs:
        p, c = results[name]
        p, c = (np.asarray(v.numpy() if hasattr(v, "numpy") else v)[:K] for v in (p, c))
        se = np.sqrt(np.diagonal(ref_c, axis1=1, axis2=2))  # SciPy's standard errors
        agree[name] = {"popt_se": float(np.max(np.abs(p - ref_p) / se)),
                       "pcov_rel": float(np.max(np.abs(c - ref_c)
                                                / np.abs(ref_c).max(axis=(1, 2))[:, None, None])),
                       "nan_rows": int(np.isnan(p).any(axis=1).sum())}
    rate = {r["solver"]: r["fits_per_s"] for r in rows}
    ratio = rate["newtonkit torch float64, autograd"] / rate["SciPy curve_fit loop, no jac"]
    meta = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "torch": torch.__version__, "B": B, "scipy_fits": K,
            "repeats": a.repeats, "date": time.strftime("%Y-%m-%d")}
    OUT.mkdir(exist_ok=True)
    (OUT / "curve_fit.json").write_text(json.dumps(
        {"meta": meta, "rows": rows, "agreement": agree, "ratio_torch_vs_scipy": ratio},
        indent=2))
    lines = ["# Batched curve_fit against a SciPy curve_fit loop", "",
             f"{B:,} data sets of `a·exp(−b·x) + c` (50 points, per-point sigma); SciPy loop "
             f"over the first {K:,}; median of {a.repeats} rounds; one thread; "
             f"{meta['date']}, {meta['cpus']} CPUs, torch {meta['torch']}, SciPy "
             f"{meta['scipy']}.", "", "| solver | fits | s | fits/s |", "|---|---:|---:|---:|"]
    lines += [f"| {r['solver']} | {r['fits']:,} | {r['seconds']:.3f} | {r['fits_per_s']:,.0f} |"
              for r in rows]
    lines += ["", f"Ratio, newtonkit torch (autograd) ÷ SciPy loop (no jac): **{ratio:.1f}×**.",
              "", "| newtonkit run | max popt diff vs SciPy, in standard errors | "
              "max rel. pcov diff | NaN rows |", "|---|---:|---:|---:|"]
    lines += [f"| {k} | {v['popt_se']:.1e} | {v['pcov_rel']:.1e} | {v['nan_rows']} |"
              for k, v in agree.items()]
    (OUT / "curve_fit.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
