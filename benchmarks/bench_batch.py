"""Batched solves (issue 14): ``newtonkit.minimize(..., batch=True)`` against loops of SciPy.

Three problems, every ratio measured in one run:

1. **Gpufit's standard benchmark** (Przybylski et al., Sci. Rep. 7, 15722 (2017), Fig. 6): a
   symmetric 2-D Gaussian ``a·exp(-((x-x0)² + (y-y0)²) / (2 w²)) + b`` on 5 × 5 pixels
   (``x, y = 0..4``), 5 parameters.  Truth as in the paper's speed test: ``a = 500``, ``w = 1``,
   ``b = 10``, centre ``(2, 2) ± 0.5`` px (uniform, per fit); Poisson noise (Gpufit's examples;
   the paper's Fig. 6 used Gaussian noise at SNR 10).  Starts as Gpufit's test-data generator
   with ``initial_guess_offset_frac = 0.1``: ``a, w, b`` ± 10 % of the mean, centres ± 0.1 · w =
   ± 0.1 px from the true centre (uniform).  Unweighted least squares, each solver's default
   tolerances (1e-8; newtonkit scales them by √(ε32/ε64) in float32).
   Solvers: ``minimize(method="lm", batch=True)`` with a vectorised analytic Jacobian on NumPy
   float64 and float32 and on torch float64 tensors (torch fun/jac, ``torch.set_num_threads``
   as BLAS, one thread); a loop of ``scipy.optimize.least_squares(method="lm")`` (analytic
   Jacobian) and of ``scipy.optimize.curve_fit`` (analytic Jacobian, lm) over the first 1,000
   fits.  Gpufit's published figures are reference lines only (not run
   here): CPU (Cpufit) ≈ 61,000 fits/s, GPU ≈ 3.04 M fits/s at 1e7 fits.
   B = 1e3, 1e4, 1e5 (all three backends, ``--repeats`` rounds, the solvers shuffled in each
   round) and 1e6 (NumPy float64, one run, last).  fits/s = B / median wall time.  Time inside
   the user's fun and jac is measured by timers wrapped around them; newtonkit's own time is the
   rest.  Peak memory: ``tracemalloc`` in an untimed run (B <= 1e5); at 1e6 the ``ru_maxrss``
   growth of the process (the largest run is last, so the growth is its peak above all before).
2. **Multi-start**: ``y(t) = a1 exp(-b1 t) + a2 exp(-b2 t)`` + Gaussian noise (σ = 0.01) on 60
   points of ``t ∈ [0, 6]``, truth (a1, b1, a2, b2) = (1.0, 2.5, 0.6, 0.3); 1,000 starts
   ``a ~ U(-2, 2)``, ``b ~ logU(0.01, 10)``.  ``newtonkit.multistart(method="lm")`` against a
   loop of ``least_squares(method="lm")`` from the same starts; both find the lowest cost.
3. **Batched Newton**: 10,000 shifted, scaled extended Rosenbrock functions in n = 10:
   ``f(x) = Σ_k s_k [100 (y_2k − y_2k−1²)² + (1 − y_2k−1)²]``, ``y = x − c`` with ``c ~ U(-1,
   1)^10`` and ``s_k ~ U(0.5, 2)`` per problem; the only minimiser is ``x* = c + 1`` (f* = 0).
   Starts ``c + (−1.2, 1, …) + U(−0.5, 0.5)``.  Converged = ``‖x − x*‖∞ <= 1e-5``.  Analytic
   gradient and Hessian (vectorised; per problem for SciPy).  ``minimize(method="newton",
   batch=True)`` against a loop of ``scipy.optimize.minimize(method="trust-exact")`` over the
   first 300 problems (the per-problem rate is extrapolated from that subset); both stop at
   ``gtol = 1e-8`` (newtonkit's default; SciPy's 1e-5 stops short of 1e-5 in x).

Targets (verdicts here, never in tests):
- NumPy float64 fits/s >= 30× the SciPy lm loop's at B = 1e5 (same-round ratios, median);
- newtonkit's own time <= the time in fun + jac (NumPy float64, B = 1e5);
- torch float64 time <= 1.5× NumPy float64 time (B = 1e5, same rounds);
- float32 fits/s reported beside Gpufit's CPU figure (no verdict);
- converged fraction >= SciPy lm's, and where both converge the parameters agree with SciPy's
  per-fit solutions to 1e-6 relative (the fraction that agree and the largest difference);
- multi-start >= 20× the SciPy loop, and the same best minimum (costs within 1e-8 relative);
- batched Newton >= 30× trust-exact's per-problem rate, and a converged fraction >= its.

Run: ``nice -n 10 .venv/bin/python benchmarks/bench_batch.py`` (about 3 minutes on 2 cores,
1.5 of them the B = 1e6 run, which ``--no-big`` skips; writes ``benchmarks/output/batch.{md,json}``
and ``batch_fits_per_s.png``);
``--quick`` runs tiny sizes in seconds (no verdicts worth reading).
"""

from __future__ import annotations

import os

for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import pathlib  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
import warnings  # noqa: E402

import array_api_compat  # noqa: E402
import numpy as np  # noqa: E402
import scipy  # noqa: E402
from scipy.optimize import curve_fit, least_squares, minimize  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parent / "output"
GPUFIT_CPU = 61_000.0  # fits/s, Cpufit, Przybylski et al. 2017
GPUFIT_GPU = 3.04e6  # fits/s at 1e7 fits, Gpufit, ibid.
TARGETS = {"numpy_vs_scipy": 30.0, "own_vs_user": 1.0, "torch_vs_numpy": 1.5, "agree_rtol": 1e-6,
           "multistart": 20.0, "same_min_rtol": 1e-8, "newton": 30.0, "newton_xtol": 1e-5,
           "newton_gtol": 1e-8}

# == problem 1: Gpufit's 2-D Gaussian ==========================================================
SIZE = 5
_G = np.arange(SIZE, dtype=np.float64)
PX = np.tile(_G, SIZE)  # pixel x coordinates, (25,)
PY = np.repeat(_G, SIZE)  # pixel y coordinates


def gauss2d_problems(B, seed=0, dtype=np.float64):
    """``(truth, data, starts)``, each with B rows (module docstring, problem 1)."""
    rng = np.random.default_rng(seed)
    truth = np.tile([500.0, 2.0, 2.0, 1.0, 10.0], (B, 1))
    truth[:, 1:3] += rng.uniform(-0.5, 0.5, (B, 2))
    data = rng.poisson(gauss2d_model(truth)).astype(np.float64)
    starts = truth.copy()
    starts[:, [0, 3, 4]] *= 1.0 + rng.uniform(-0.1, 0.1, (B, 3))
    starts[:, 1:3] += 0.1 * 1.0 * rng.uniform(-1.0, 1.0, (B, 2))
    return truth.astype(dtype), data.astype(dtype), starts.astype(dtype)


def gauss2d_model(P):
    """The model on the 25 pixels for each row of P (B, 5): (B, 25)."""
    a, x0, y0, w, b = (P[:, k:k + 1] for k in range(5))
    px, py = _pixels(P)
    return a * np.exp(-((px - x0) ** 2 + (py - y0) ** 2) / (2 * w * w)) + b


def _pixels(P):
    return PX.astype(P.dtype), PY.astype(P.dtype)


def gauss2d_fun(P, data):
    """Residuals (B, 25)."""
    return gauss2d_model(P) - data


def gauss2d_jac(P, data):
    """Jacobian (B, 25, 5)."""
    a, x0, y0, w, _ = (P[:, k:k + 1] for k in range(5))
    px, py = _pixels(P)
    dx, dy, w2 = px - x0, py - y0, w * w
    r2 = dx * dx + dy * dy
    e = np.exp(-r2 / (2 * w2))
    ae = a * e / w2
    J = np.empty((P.shape[0], SIZE * SIZE, 5), dtype=P.dtype)
    J[:, :, 0] = e
    J[:, :, 1] = ae * dx
    J[:, :, 2] = ae * dy
    J[:, :, 3] = ae * r2 / w
    J[:, :, 4] = 1.0
    return J


def gauss2d_xp(xp, device=None, dtype=None):
    """fun and jac of problem 1 in array-API operations of ``xp`` (torch, CuPy, ... through
    ``array_api_compat``), the pixel grid on ``device`` in ``dtype`` (default float64)."""
    dtype = xp.float64 if dtype is None else dtype
    px = xp.asarray(PX, dtype=dtype, device=device)
    py = xp.asarray(PY, dtype=dtype, device=device)

    def fun(P, data):
        a, x0, y0, w, b = (P[:, k:k + 1] for k in range(5))
        return a * xp.exp(-((px - x0) ** 2 + (py - y0) ** 2) / (2 * w * w)) + b - data

    def jac(P, data):
        a, x0, y0, w, _ = (P[:, k:k + 1] for k in range(5))
        dx, dy, w2 = px - x0, py - y0, w * w
        r2 = dx * dx + dy * dy
        e = xp.exp(-r2 / (2 * w2))
        ae = a * e / w2
        J = xp.empty((P.shape[0], SIZE * SIZE, 5), dtype=P.dtype, device=device)
        J[:, :, 0] = e  # column by column, as gauss2d_jac (a stack on the last axis is a
        J[:, :, 1] = ae * dx  # strided copy of all five, 2-3x slower in torch)
        J[:, :, 2] = ae * dy
        J[:, :, 3] = ae * r2 / w
        J[:, :, 4] = 1.0
        return J

    return fun, jac


def _one_fun(p, d):
    e = np.exp(-((PX - p[1]) ** 2 + (PY - p[2]) ** 2) / (2 * p[3] * p[3]))
    return p[0] * e + p[4] - d


def _one_jac(p, d):
    dx, dy, w2 = PX - p[1], PY - p[2], p[3] * p[3]
    r2 = dx * dx + dy * dy
    e = np.exp(-r2 / (2 * w2))
    ae = p[0] * e / w2
    return np.column_stack([e, ae * dx, ae * dy, ae * r2 / p[3], np.ones_like(e)])


def _cf_model(idx, a, x0, y0, w, b):
    return a * np.exp(-((PX - x0) ** 2 + (PY - y0) ** 2) / (2 * w * w)) + b


def _cf_jac(idx, a, x0, y0, w, b):
    return _one_jac(np.array([a, x0, y0, w, b]), 0.0)


def scipy_lm_loop(starts, data):
    """``least_squares(method="lm")`` per fit: (X, success, seconds)."""
    X, ok = np.empty_like(starts), np.zeros(len(starts), bool)
    t0 = time.perf_counter()
    for i in range(len(starts)):
        r = least_squares(_one_fun, starts[i], jac=_one_jac, args=(data[i],), method="lm")
        X[i], ok[i] = r.x, r.success
    return X, ok, time.perf_counter() - t0


def curve_fit_loop(starts, data):
    """``curve_fit`` (lm, analytic Jacobian) per fit: (X, success, seconds)."""
    X, ok = np.full_like(starts, np.nan), np.zeros(len(starts), bool)
    idx = np.arange(SIZE * SIZE)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(starts)):
            try:
                X[i] = curve_fit(_cf_model, idx, data[i], p0=starts[i], jac=_cf_jac,
                                 method="lm")[0]
                ok[i] = True
            except RuntimeError:
                pass
    return X, ok, time.perf_counter() - t0


class Timed:
    """A callable with the time spent inside it (the user's share of a run)."""

    def __init__(self, f):
        self.f, self.seconds, self.calls = f, 0.0, 0

    def __call__(self, *args):
        t0 = time.perf_counter()
        out = self.f(*args)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out


def nk_batch(starts, data, fun, jac, method="lm", hess=None, memory=False):
    """One batched run with timed callables: (result, wall s, user s, peak bytes or None)."""
    import newtonkit as nk

    f, j = Timed(fun), Timed(jac)
    h = Timed(hess) if hess is not None else None
    args = (data,) if data is not None else ()
    if memory:
        tracemalloc.start()
    t0 = time.perf_counter()
    res = nk.minimize(f, starts, method=method, jac=j, hess=h, args=args, batch=True)
    wall = time.perf_counter() - t0
    peak = None
    if memory:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    user = f.seconds + j.seconds + (h.seconds if h is not None else 0.0)
    return res, wall, user, peak


def agreement(X, X_ref, ok, ok_ref, rtol):
    """Where both converged: (count, fraction within ``rtol`` per parameter, max rel. diff)."""
    both = ok & ok_ref
    if not both.any():
        return 0, float("nan"), float("nan")
    rel = np.max(np.abs(X[both] - X_ref[both]) / np.abs(X_ref[both]), axis=1)
    return int(both.sum()), float(np.mean(rel <= rtol)), float(rel.max())


def paired_ratio(a, b):
    """Median over rounds of a[k] / b[k] (samples of the same round)."""
    return statistics.median(x / y for x, y in zip(a, b, strict=True))


def _mb(x):
    return "—" if x is None else f"{x:.0f}"


def verdict(ok):
    return "MET" if ok else "MISSED"


def _host(x):
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def run_gauss2d(sizes, big, repeats, scipy_fits, log):
    """Problem 1: the sweep over B, the SciPy loops, accuracy; a dict of results."""
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    tfun, tjac = gauss2d_xp(array_api_compat.array_namespace(torch.zeros(0)))
    bmax = max(sizes + ([big] if big else []))
    truth, data, starts = gauss2d_problems(bmax)
    cfg = {"numpy_f64": np.float64, "numpy_f32": np.float32, "torch_f64": "torch"}

    def job(name, B):
        X0, D = starts[:B], data[:B]
        if cfg[name] == "torch":
            return lambda mem=False: nk_batch(torch.from_numpy(X0), torch.from_numpy(D), tfun,
                                              tjac, memory=mem)
        dt = cfg[name]
        X0, D = X0.astype(dt), D.astype(dt)
        return lambda mem=False: nk_batch(X0, D, gauss2d_fun, gauss2d_jac, memory=mem)

    rows, acc = [], {}
    ref_b = max(sizes)
    rng = random.Random(0)
    sp = {"scipy_lm": [], "curve_fit": []}
    sp_X = {}
    for B in sizes:
        names = list(cfg)
        samples = {n: [] for n in names}
        counted = {}
        for n in names:  # the untimed counted run: statuses, accuracy, peak memory
            res, wall, user, peak = job(n, B)(mem=True)
            counted[n] = (res, peak)
        for _ in range(repeats):
            order = names + (["scipy_lm", "curve_fit"] if B == ref_b else [])
            rng.shuffle(order)
            for n in order:
                if n == "scipy_lm":
                    Xs, oks, t = scipy_lm_loop(starts[:scipy_fits], data[:scipy_fits])
                    sp_X["scipy_lm"] = (Xs, oks)
                    samples[n] = samples.get(n, []) + [t / scipy_fits]
                elif n == "curve_fit":
                    Xc, okc, t = curve_fit_loop(starts[:scipy_fits], data[:scipy_fits])
                    sp_X["curve_fit"] = (Xc, okc)
                    samples[n] = samples.get(n, []) + [t / scipy_fits]
                else:
                    _, wall, user, _ = job(n, B)()
                    samples[n].append((wall, user))
        for n in names:
            res, peak = counted[n]
            walls = [w for w, _ in samples[n]]
            k = walls.index(statistics.median(walls)) if len(walls) % 2 else int(np.argmin(walls))
            wall, user = samples[n][k]
            row = dict(backend=n, B=B, seconds=wall, fits_per_s=B / wall, user_s=user,
                       own_s=wall - user, converged=float(
                           np.mean(res.success)), nit=float(np.mean(res.nit)),
                       nfev=float(np.mean(res.nfev)), njev=float(np.mean(res.njev)),
                       walls=walls, message=res.message,
                       # torch's allocator is invisible to tracemalloc
                       peak_mb=None if cfg[n] == "torch" else peak / 2**20)
            rows.append(row)
            log(f"B={B:>8d} {n:10s} {row['fits_per_s']:10.0f} fits/s  own {row['own_s']:.3f} s"
                f"  fun+jac {user:.3f} s  peak {_mb(row['peak_mb'])} MB  {res.message}")
            if B == ref_b:
                acc[n] = (np.asarray(_host(res.x), dtype=np.float64)[:scipy_fits],
                          np.asarray(res.success)[:scipy_fits])
        if B == ref_b:
            same = single_path_agreement(starts[:SINGLE_FITS], data[:SINGLE_FITS],
                                         counted["numpy_f64"][0])
            log(f"batched = single path on the first {SINGLE_FITS} fits: {same}")
            for n in ("scipy_lm", "curve_fit"):
                rate = [1.0 / t for t in samples[n]]
                X, ok = sp_X[n]
                sp[n] = dict(fits_per_s=statistics.median(rate), samples_s=samples[n],
                             converged=float(np.mean(ok)), fits=scipy_fits)
                log(f"{n:12s} {sp[n]['fits_per_s']:10.0f} fits/s over {scipy_fits} fits, "
                    f"converged {sp[n]['converged']:.4f}")
            pair_np = [w for w, _ in samples["numpy_f64"]]
            pair_t = [w for w, _ in samples["torch_f64"]]
            sp["ratio_numpy_vs_scipy"] = paired_ratio(
                [B / w for w in pair_np], [1.0 / t for t in samples["scipy_lm"]])
            sp["ratio_torch_vs_numpy"] = paired_ratio(pair_t, pair_np)
    if big:
        X0, D = starts[:big], data[:big]
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        res, wall, user, _ = nk_batch(X0, D, gauss2d_fun, gauss2d_jac)
        grow = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        rows.append(dict(backend="numpy_f64", B=big, seconds=wall, fits_per_s=big / wall,
                         user_s=user, own_s=wall - user, peak_mb=grow, converged=float(
                             np.mean(res.success)), nit=float(np.mean(res.nit)),
                         nfev=float(np.mean(res.nfev)), njev=float(np.mean(res.njev)),
                         walls=[wall], message=res.message, memory="ru_maxrss growth"))
        log(f"B={big:>8d} numpy_f64  {big / wall:10.0f} fits/s  own {wall - user:.3f} s  "
            f"fun+jac {user:.3f} s  maxrss growth {grow:.0f} MB  {res.message}")
    Xs, oks = sp_X["scipy_lm"]
    Xc, okc = sp_X["curve_fit"]
    agree = {n: agreement(acc[n][0], Xs, acc[n][1], oks, TARGETS["agree_rtol"])
             for n in acc}
    agree["curve_fit"] = agreement(Xc, Xs, okc, oks, TARGETS["agree_rtol"])
    conv = {n: float(np.mean(acc[n][1])) for n in acc}
    return dict(rows=rows, scipy=sp, agree=agree, converged_first=conv, ref_B=ref_b,
                scipy_fits=scipy_fits, single=same)


SINGLE_FITS = 300  # fits run one by one through newtonkit's single-problem LM


def single_path_agreement(starts, data, res):
    """The batched rows against newtonkit's single-problem LM (issue 14: the same iterates):
    the fraction of fits with the same status and evaluation counts, and the largest relative
    difference of x."""
    import newtonkit as nk

    same, worst = 0, 0.0
    for i in range(len(starts)):
        s = nk.minimize(_one_fun, starts[i], jac=_one_jac, args=(data[i],), method="lm")
        same += (int(res.nfev[i]), int(res.njev[i]), res.termination_of(i)) == (
            s.nfev, s.njev, s.termination)
        x = np.asarray(s.x)
        worst = max(worst, float(np.linalg.norm(_host(res.x[i]) - x) / np.linalg.norm(x)))
    return dict(fits=len(starts), same_counts=same / len(starts), max_rel_x=worst)


# == problem 2: multi-start on a sum of two exponentials =======================================
def two_exp_problem(K, m=60, seed=1):
    """``(t, y, starts)``: data of problem 2 and K start points (a1, b1, a2, b2)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 6.0, m)
    y = 1.0 * np.exp(-2.5 * t) + 0.6 * np.exp(-0.3 * t) + 0.01 * rng.standard_normal(m)
    starts = np.empty((K, 4))
    starts[:, [0, 2]] = rng.uniform(-2.0, 2.0, (K, 2))
    starts[:, [1, 3]] = 10.0 ** rng.uniform(-2.0, 1.0, (K, 2))
    return t, y, starts


def two_exp_fj(t, y):
    """Vectorised residual (K, m) and Jacobian (K, m, 4) of problem 2 on the data (t, y)."""

    def fun(P):
        return (P[:, 0:1] * np.exp(-P[:, 1:2] * t) + P[:, 2:3] * np.exp(-P[:, 3:4] * t) - y)

    def jac(P):
        e1, e2 = np.exp(-P[:, 1:2] * t), np.exp(-P[:, 3:4] * t)
        return np.stack([e1, -P[:, 0:1] * t * e1, e2, -P[:, 2:3] * t * e2], axis=2)

    return fun, jac


def run_multistart(K, repeats, log):
    import newtonkit as nk

    t, y, starts = two_exp_problem(K)
    fun, jac = two_exp_fj(t, y)

    def nk_run():
        with np.errstate(over="ignore", invalid="ignore"):
            return nk.multistart(fun, starts, method="lm", jac=jac)

    def sp_one(p):
        return fun(p[None])[0]

    def sp_jac(p):
        return jac(p[None])[0]

    def sp_run():
        best = (np.inf, None)
        ok = 0
        with np.errstate(over="ignore", invalid="ignore"):
            for p in starts:
                try:
                    r = least_squares(sp_one, p, jac=sp_jac, method="lm")
                except ValueError:  # non-finite residuals at a trial point
                    continue
                ok += r.success
                if r.success and r.cost < best[0]:
                    best = (float(r.cost), r.x)
        return best, ok

    t_nk, t_sp = [], []
    res = sp_best = None
    for _ in range(repeats):
        for which in random.Random(len(t_nk)).sample(["nk", "sp"], 2):
            t0 = time.perf_counter()
            if which == "nk":
                res = nk_run()
                t_nk.append(time.perf_counter() - t0)
            else:
                sp_best, sp_ok = sp_run()
                t_sp.append(time.perf_counter() - t0)
    out = dict(K=K, nk_s=statistics.median(t_nk), scipy_s=statistics.median(t_sp),
               ratio=paired_ratio(t_sp, t_nk), nk_best=float(res.fun),
               scipy_best=sp_best[0], nk_x=_host(res.x).tolist(),
               scipy_x=None if sp_best[1] is None else sp_best[1].tolist(),
               nk_converged=float(np.mean(res.batch.success)), scipy_converged=sp_ok / K,
               message=res.batch.message)
    log(f"multistart K={K}: newtonkit {out['nk_s']:.3f} s, SciPy loop {out['scipy_s']:.3f} s, "
        f"ratio {out['ratio']:.1f}; best cost {out['nk_best']:.10g} vs {out['scipy_best']:.10g}")
    return out


# == problem 3: batched Newton on shifted, scaled extended Rosenbrock ============================
def rosen_problems(B, n=10, seed=2):
    """``(c, s, starts)``: shifts (B, n), pair scales (B, n/2) and starts (B, n)."""
    rng = np.random.default_rng(seed)
    c = rng.uniform(-1.0, 1.0, (B, n))
    s = rng.uniform(0.5, 2.0, (B, n // 2))
    base = np.tile([-1.2, 1.0], n // 2)
    return c, s, c + base + rng.uniform(-0.5, 0.5, (B, n))


def rosen_f(X, c, s):
    Y = X - c
    u, v = Y[:, 0::2], Y[:, 1::2]
    return np.sum(s * (100.0 * (v - u * u) ** 2 + (1.0 - u) ** 2), axis=1)


def rosen_g(X, c, s):
    Y = X - c
    u, v = Y[:, 0::2], Y[:, 1::2]
    G = np.empty_like(X)
    G[:, 0::2] = s * (-400.0 * u * (v - u * u) - 2.0 * (1.0 - u))
    G[:, 1::2] = s * 200.0 * (v - u * u)
    return G


def rosen_h(X, c, s):
    Y = X - c
    u, v = Y[:, 0::2], Y[:, 1::2]
    b, n = X.shape
    H = np.zeros((b, n, n), dtype=X.dtype)
    k = np.arange(0, n, 2)
    H[:, k, k] = s * (1200.0 * u * u - 400.0 * v + 2.0)
    H[:, k, k + 1] = H[:, k + 1, k] = s * (-400.0 * u)
    H[:, k + 1, k + 1] = s * 200.0
    return H


def rosen_converged(X, c, tol):
    return np.max(np.abs(X - (c + 1.0)), axis=1) <= tol


def run_newton(B, n_te, repeats, log):
    c, s, starts = rosen_problems(B)
    tol = TARGETS["newton_xtol"]

    def te_loop():
        X = np.empty((n_te, starts.shape[1]))
        t0 = time.perf_counter()
        for i in range(n_te):
            args = (c[i:i + 1], s[i:i + 1])
            r = minimize(_one_problem(rosen_f), starts[i], args=args, jac=_one_problem(rosen_g),
                         hess=_one_problem(rosen_h), method="trust-exact",
                         options={"gtol": TARGETS["newton_gtol"]})
            X[i] = r.x
        return X, time.perf_counter() - t0

    t_nk, t_te, users = [], [], []
    res = X_te = None
    for r in range(repeats):
        for which in random.Random(r).sample(["nk", "te"], 2):
            if which == "nk":
                res, wall, user, _ = _nk_newton(starts, c, s)
                t_nk.append(wall)
                users.append(user)
            else:
                X_te, t = te_loop()
                t_te.append(t)
    conv_nk = rosen_converged(_host(res.x), c, tol)
    conv_te = rosen_converged(X_te, c[:n_te], tol)
    rate_nk = [B / w for w in t_nk]
    rate_te = [n_te / w for w in t_te]
    out = dict(B=B, te_problems=n_te, nk_s=statistics.median(t_nk),
               nk_per_s=statistics.median(rate_nk), te_per_s=statistics.median(rate_te),
               ratio=paired_ratio(rate_nk, rate_te), nk_user_s=statistics.median(users),
               nk_converged=float(conv_nk.mean()), nk_converged_subset=float(
                   conv_nk[:n_te].mean()), te_converged=float(conv_te.mean()),
               nk_success=float(np.mean(res.success)), nit=float(np.mean(res.nit)),
               message=res.message)
    log(f"newton B={B}: {out['nk_per_s']:.0f} problems/s vs trust-exact {out['te_per_s']:.0f}/s"
        f" (over {n_te}), ratio {out['ratio']:.1f}; converged {out['nk_converged']:.4f} vs "
        f"{out['te_converged']:.4f}")
    return out


def _one_problem(f):
    """A batched function of problem 3 as a function of one x (SciPy's loop)."""
    return lambda x, c, s: f(x[None], c, s)[0]


def _nk_newton(starts, c, s):
    """The batched Newton run of problem 3: per-problem (c, s) travel as args."""
    import newtonkit as nk

    f, g, h = Timed(rosen_f), Timed(rosen_g), Timed(rosen_h)
    t0 = time.perf_counter()
    res = nk.minimize(f, starts, method="newton", jac=g, hess=h, args=(c, s), batch=True,
                      options={"gtol": TARGETS["newton_gtol"]})
    wall = time.perf_counter() - t0
    return res, wall, f.seconds + g.seconds + h.seconds, None


# == report ======================================================================================
def summary(g, ms, nw):
    """The targets with their numbers: (lines, verdicts)."""
    T, lines, v = TARGETS, [], {}
    sp, ref = g["scipy"], g["ref_B"]
    row = {(r["backend"], r["B"]): r for r in g["rows"]}
    np64, f32 = row[("numpy_f64", ref)], row[("numpy_f32", ref)]
    q = sp["ratio_numpy_vs_scipy"]
    v["numpy_vs_scipy"] = q >= T["numpy_vs_scipy"]
    lines.append(f"[{verdict(v['numpy_vs_scipy'])}] NumPy float64 >= {T['numpy_vs_scipy']:g}x "
                 f"the SciPy lm loop at B = {ref:.0e}: {q:.1f}x ({np64['fits_per_s']:.0f} vs "
                 f"{sp['scipy_lm']['fits_per_s']:.0f} fits/s; curve_fit "
                 f"{sp['curve_fit']['fits_per_s']:.0f} fits/s)")
    v["own_vs_user"] = np64["own_s"] <= T["own_vs_user"] * np64["user_s"]
    lines.append(f"[{verdict(v['own_vs_user'])}] newtonkit's own time <= time in fun + jac "
                 f"(NumPy float64, B = {ref:.0e}): own {np64['own_s']:.2f} s vs fun + jac "
                 f"{np64['user_s']:.2f} s (own/user {np64['own_s'] / np64['user_s']:.2f}; "
                 f"{np64['njev']:.2f} Jacobians and {np64['nfev']:.2f} residuals per fit)")
    q = sp["ratio_torch_vs_numpy"]
    v["torch_vs_numpy"] = q <= T["torch_vs_numpy"]
    lines.append(f"[{verdict(v['torch_vs_numpy'])}] torch float64 time <= "
                 f"{T['torch_vs_numpy']:g}x NumPy float64 at B = {ref:.0e}: {q:.2f}x")
    lines.append(f"[report] float32 (NumPy) at B = {ref:.0e}: {f32['fits_per_s']:.0f} fits/s; "
                 f"Gpufit's published CPU figure {GPUFIT_CPU:.0f} fits/s "
                 f"({f32['fits_per_s'] / GPUFIT_CPU:.2f}x), GPU {GPUFIT_GPU:.3g} fits/s")
    n, frac, mx = g["agree"]["numpy_f64"]
    c_nk, c_sp = g["converged_first"]["numpy_f64"], sp["scipy_lm"]["converged"]
    v["converged"] = c_nk >= c_sp
    v["agree"] = frac == 1.0
    lines.append(f"[{verdict(v['converged'])}] converged fraction >= SciPy lm's (first "
                 f"{g['scipy_fits']} fits): newtonkit {c_nk:.4f} vs SciPy lm {c_sp:.4f} "
                 f"(curve_fit {sp['curve_fit']['converged']:.4f})")
    lines.append(f"[{verdict(v['agree'])}] parameters agree with SciPy lm's to "
                 f"{T['agree_rtol']:g} relative where both converge: {frac:.4f} of {n} fits, "
                 f"max relative difference {mx:.2e}")
    for name in ("torch_f64", "numpy_f32", "curve_fit"):
        n2, fr2, mx2 = g["agree"][name]
        lines.append(f"    {name} vs SciPy lm: {fr2:.4f} of {n2} within {T['agree_rtol']:g}, "
                     f"max {mx2:.2e}")
    sg = g["single"]
    v["single_path"] = sg["same_counts"] == 1.0 and sg["max_rel_x"] <= 1e-10
    lines.append(f"[{verdict(v['single_path'])}] batched = newtonkit's single-problem LM (first "
                 f"{sg['fits']} fits, float64): same status and evaluation counts in "
                 f"{sg['same_counts']:.4f} of them, x within {sg['max_rel_x']:.1e} relative "
                 f"(target 1e-10)")
    v["multistart"] = ms["ratio"] >= T["multistart"]
    lines.append(f"[{verdict(v['multistart'])}] multistart >= {T['multistart']:g}x the SciPy "
                 f"lm loop ({ms['K']} starts): {ms['ratio']:.1f}x ({ms['nk_s']:.3f} s vs "
                 f"{ms['scipy_s']:.3f} s)")
    same = abs(ms["nk_best"] - ms["scipy_best"]) <= T["same_min_rtol"] * abs(ms["scipy_best"])
    v["same_minimum"] = bool(same)
    lines.append(f"[{verdict(same)}] the same best minimum: cost {ms['nk_best']:.12g} "
                 f"(newtonkit) vs {ms['scipy_best']:.12g} (SciPy lm); converged starts "
                 f"{ms['nk_converged']:.3f} vs {ms['scipy_converged']:.3f}")
    v["newton"] = nw["ratio"] >= T["newton"]
    lines.append(f"[{verdict(v['newton'])}] batched Newton >= {T['newton']:g}x trust-exact "
                 f"(per-problem rate; trust-exact over {nw['te_problems']} problems, "
                 f"extrapolated): {nw['ratio']:.1f}x ({nw['nk_per_s']:.0f} vs "
                 f"{nw['te_per_s']:.0f} problems/s)")
    v["newton_converged"] = nw["nk_converged_subset"] >= nw["te_converged"]
    lines.append(f"[{verdict(v['newton_converged'])}] Newton converged to x* (max-norm <= "
                 f"{T['newton_xtol']:g}) as often as trust-exact: {nw['nk_converged_subset']:.4f}"
                 f" vs {nw['te_converged']:.4f} on the first {nw['te_problems']}; newtonkit "
                 f"{nw['nk_converged']:.4f} of all {nw['B']}")
    return lines, v


def markdown(g, ms, nw, lines, meta):
    out = ["# Batched solves (bench_batch.py)", "",
           "## 1. Gpufit's 2-D Gaussian (5 × 5 px, 5 parameters)", "",
           "| backend | B | fits/s | wall s | own s | fun+jac s | own/user | peak MB | "
           "converged | nit | njev |", "|" + "---|" * 11]
    for r in g["rows"]:
        out.append(f"| {r['backend']} | {r['B']:.0e} | {r['fits_per_s']:.0f} | "
                   f"{r['seconds']:.3f} | {r['own_s']:.3f} | {r['user_s']:.3f} | "
                   f"{r['own_s'] / r['user_s']:.2f} | {_mb(r['peak_mb'])}"
                   f"{'†' if r.get('memory') else ''} | {r['converged']:.4f} | {r['nit']:.2f} | "
                   f"{r['njev']:.2f} |")
    sp = g["scipy"]
    for n in ("scipy_lm", "curve_fit"):
        out.append(f"| {n} (loop) | {sp[n]['fits']} fits | {sp[n]['fits_per_s']:.0f} | "
                   f"{sp[n]['fits'] / sp[n]['fits_per_s']:.3f} | | | | | "
                   f"{sp[n]['converged']:.4f} | | |")
    out.append(f"| Gpufit CPU (published) | | {GPUFIT_CPU:.0f} | | | | | | | | |")
    out.append(f"| Gpufit GPU (published, 1e7 fits) | | {GPUFIT_GPU:.0f} | | | | | | | | |")
    out += ["", "fits/s = B / median wall time of the rounds; own = wall − time inside the "
            "user's fun and jac. peak MB: tracemalloc in an untimed run (— for torch, whose "
            "allocator tracemalloc does not see); † ru_maxrss growth (the 1e6 run, one run). "
            "converged = newtonkit's success flag.", "",
            "## 2. Multi-start (two exponentials, 4 parameters)", "",
            "| starts | newtonkit s | SciPy lm loop s | ratio | best cost newtonkit | "
            "best cost SciPy |", "|---|---|---|---|---|---|",
            f"| {ms['K']} | {ms['nk_s']:.3f} | {ms['scipy_s']:.3f} | {ms['ratio']:.1f} | "
            f"{ms['nk_best']:.12g} | {ms['scipy_best']:.12g} |", "",
            "## 3. Batched Newton (extended Rosenbrock, n = 10)", "",
            "| problems | newtonkit problems/s | trust-exact problems/s | ratio | converged nk "
            "(subset / all) | converged trust-exact | mean nit |", "|---|---|---|---|---|---|---|",
            f"| {nw['B']} (trust-exact {nw['te_problems']}) | {nw['nk_per_s']:.0f} | "
            f"{nw['te_per_s']:.0f} | {nw['ratio']:.1f} | {nw['nk_converged_subset']:.4f} / "
            f"{nw['nk_converged']:.4f} | {nw['te_converged']:.4f} | {nw['nit']:.1f} |", "",
            "## Targets", ""]
    out += [f"- {s}" for s in lines]
    out += ["", f"Settings: {meta['settings']}", f"Machine: {meta['machine']}", ""]
    return "\n".join(out)


def plot(g, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    styles = {"numpy_f64": ("NumPy float64", "C0", "o-"), "numpy_f32": ("NumPy float32", "C1",
                                                                         "s-"),
              "torch_f64": ("torch float64 (CPU)", "C2", "^-")}
    Bs = sorted({r["B"] for r in g["rows"]})
    for key, (label, color, style) in styles.items():
        pts = sorted((r["B"], r["fits_per_s"]) for r in g["rows"] if r["backend"] == key)
        ax.plot(*zip(*pts, strict=True), style, color=color, label=label)
    sp = g["scipy"]
    ax.plot(Bs, [sp["scipy_lm"]["fits_per_s"]] * len(Bs), "k--", label="SciPy lm loop")
    ax.plot(Bs, [sp["curve_fit"]["fits_per_s"]] * len(Bs), "k:", label="SciPy curve_fit loop")
    ax.axhline(GPUFIT_CPU, color="C3", lw=1, ls="-.", label="Gpufit CPU (published)")
    ax.axhline(GPUFIT_GPU, color="C4", lw=1, ls="-.", label="Gpufit GPU (published, 1e7)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("B (fits per batch)")
    ax.set_ylabel("fits / s")
    ax.set_title("2-D Gaussian, 5×5 px: fits per second (2 cores, 1 thread)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes (seconds)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-big", action="store_true", help="skip the B = 1e6 run")
    ap.add_argument("--out", type=pathlib.Path, default=OUT)
    args = ap.parse_args(argv)
    if args.quick:
        sizes, big, repeats, fits, K, nB, nte = [100, 1000], None, 1, 100, 100, 500, 30
    else:
        sizes, big, repeats = [1000, 10_000, 100_000], 1_000_000, args.repeats
        fits, K, nB, nte = 1000, 1000, 10_000, 300
    if args.no_big:
        big = None

    def log(s):
        print(s, flush=True)

    t0 = time.perf_counter()
    g = run_gauss2d(sizes, big, repeats, fits, log)
    ms = run_multistart(K, repeats, log)
    nw = run_newton(nB, nte, repeats, log)
    import torch

    import newtonkit

    meta = dict(
        settings=(f"{'quick; ' if args.quick else ''}{repeats} rounds, solvers shuffled per "
                  f"round, medians and same-round ratios; default tolerances of every solver; "
                  f"BLAS/torch threads {os.environ.get('OPENBLAS_NUM_THREADS')}; total "
                  f"{time.perf_counter() - t0:.0f} s"),
        machine=(f"{platform.machine()}, {os.cpu_count()} cores, Python "
                 f"{platform.python_version()}, NumPy {np.__version__}, SciPy "
                 f"{scipy.__version__}, torch {torch.__version__}, newtonkit "
                 f"{getattr(newtonkit, '__version__', '?')}"))
    lines, verdicts = summary(g, ms, nw)
    text = markdown(g, ms, nw, lines, meta)
    print()
    print(text)
    if args.quick and args.out == OUT:  # quick runs leave the committed outputs alone
        args.out = pathlib.Path(tempfile.mkdtemp(prefix="bench_batch_"))
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "batch"
    (args.out / f"{stem}.md").write_text(text)
    print(f"written to {args.out}")
    (args.out / f"{stem}.json").write_text(json.dumps(
        dict(meta=meta, gauss2d=g, multistart=ms, newton=nw, summary=lines, verdicts=verdicts,
             targets=TARGETS), indent=1, default=float))
    plot(g, args.out / f"{stem}_fits_per_s.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
