"""Core solver benchmark (issue 2): the HIG direction and the regularised Cholesky step.

1. HIG direction ``d = V Σ^(-1/2) Uᵀ g`` (relative truncation 1e-6, float32 as in the authors'
   code) by ``newtonkit.linalg.half_inverse`` against the authors' approach: thin SVD, form the
   ``n × m`` half-inverse matrix explicitly, multiply.  Agreement is measured against a float64
   SVD reference where that is affordable, else between the two.
2. Newton step on a 600 × 600 symmetric indefinite matrix with the deepwave seed's spectrum
   (274 negative eigenvalues in [-3.2e-9, 8e-8]): ``regularized_cholesky_solve`` against the
   seed's path (``eigsh(k=1, which="SA")`` on a host copy, τ = max(-1.5 λ_min, 0), Cholesky,
   ``cholesky_solve``), in float32 torch (the seed) and float64 NumPy.

Timings are medians of repeats in one run (the Newton steps timed alternately with the peer),
reported as ratios (peer / newtonkit).

    python benchmarks/bench_core.py            # all sizes (the 4096 × 24896 case takes minutes)
    python benchmarks/bench_core.py --quick    # skip the 4096 × 24896 case
"""

from __future__ import annotations

import argparse
import os
import sys

# BLAS threads are fixed before NumPy loads (default 1, ``--threads N``): on a 2-core machine
# shared with other jobs, threaded LAPACK kernels with many synchronisation points (the
# tridiagonalisation behind eigh) swing by 100× from run to run; one thread gives stable ratios.
_THREADS = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), "1")
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _THREADS)

import statistics  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402
import torch  # noqa: E402

from newtonkit.linalg import half_inverse, regularized_cholesky_solve  # noqa: E402

OUT = Path(__file__).parent / "output"


def timeit(fn, repeats, *args, **kwargs):
    """Median wall time of ``fn(*args, **kwargs)`` over ``repeats`` calls, and its last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def timeit_pair(fa, fb, repeats, *args):
    """Median wall times of ``fa(*args)`` and ``fb(*args)`` timed alternately, so that load from
    other jobs on the machine falls on both alike; and their last results."""
    ta, tb, out_a, out_b = [], [], None, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out_a = fa(*args)
        t1 = time.perf_counter()
        out_b = fb(*args)
        ta.append(t1 - t0)
        tb.append(time.perf_counter() - t1)
    return statistics.median(ta), statistics.median(tb), out_a, out_b


def jacobian_like(m, n, rng, dtype=np.float32):
    """A Gaussian matrix with log-spaced column scales (1 … 1e-4): condition number ~1e4-1e5,
    so the spectrum decays as in real Jacobians and the truncation is exercised."""
    scales = np.logspace(0, -4, n)
    return (rng.standard_normal((m, n)) * scales).astype(dtype)


def _svd_numpy(J):
    return np.linalg.svd(J, full_matrices=False)


def _svd_numpy_transposed(J):
    V, s, Ut = np.linalg.svd(J.T, full_matrices=False)
    return Ut.T, s, V.T


def _svd_torch(J):
    U, s, Vt = torch.linalg.svd(torch.from_numpy(J), full_matrices=False)
    return U.numpy(), s.numpy(), Vt.numpy()


SVDS = {"numpy": _svd_numpy, "numpy on Jᵀ": _svd_numpy_transposed, "torch": _svd_torch}


def authors_direction(J, g, exponent=-0.5, rcond=1e-6, svd=_svd_numpy):
    """Schnell et al.'s TensorFlow code, in NumPy: SVD, explicit pseudo-power matrix, product."""
    U, s, Vt = svd(J)
    s_pow = np.where(s > rcond * s.max(), s ** exponent, 0).astype(J.dtype)
    J_pow = (Vt.T * s_pow) @ U.T  # n × m, formed explicitly
    return J_pow @ g


def reference_direction(J, g, exponent=-0.5, rcond=1e-6):
    U, s, Vt = np.linalg.svd(J.astype(np.float64), full_matrices=False)
    keep = s > rcond * s[0]
    return Vt[keep].T @ (s[keep] ** exponent * (U[:, keep].T @ g.astype(np.float64)))


def bench_hig(sizes, repeats, rows):
    rng = np.random.default_rng(0)
    for m, n in sizes:
        J = jacobian_like(m, n, rng)
        g = rng.standard_normal(m).astype(np.float32)
        big = m * n > 5e7
        reps = 1 if big else repeats
        # The peer gets its fastest SVD: each variant timed once, the winner timed again.
        trial = {name: timeit(authors_direction, 1, J, g, svd=f)[0] for name, f in SVDS.items()}
        best = min(trial, key=trial.get)
        t_auth, d_auth = timeit(authors_direction, reps, J, g, svd=SVDS[best])
        t_nk, (d_nk, info) = timeit(half_inverse, reps, J, g, -0.5, 1e-6)
        if big:
            ref, ref_name = d_auth.astype(np.float64), "authors (float32 SVD)"
        else:
            ref, ref_name = reference_direction(J, g), "float64 SVD"
        e_nk, e_auth = (float(np.linalg.norm(d - ref) / np.linalg.norm(ref))
                        for d in (d_nk, d_auth))
        tried = ", ".join(f"{k} {v:.3g} s" for k, v in trial.items())
        rows.append(dict(case=f"HIG direction {m}×{n} float32", peer=t_auth, ours=t_nk,
                         note=f"peer SVD: {best} (tried: {tried}); route {info.route}, rank "
                              f"{info.rank}; rel. error vs {ref_name}: newtonkit {e_nk:.1e}, "
                              f"authors {e_auth:.1e}"))
        print(rows[-1], flush=True)


def seed_like_hessian(n=600, n_neg=274, rng=None):
    lam = np.concatenate([-np.logspace(np.log10(3.2e-9), -12, n_neg),
                          np.logspace(-12, np.log10(8e-8), n - n_neg)])
    Q, _ = np.linalg.qr(rng.standard_normal((n, n)))
    H = (Q * lam) @ Q.T
    return 0.5 * (H + H.T), float(lam.min())


def seed_path_torch(H, g):
    eig0 = spla.eigsh(H.cpu().numpy(), k=1, which="SA")[0].item()
    tau = max(-1.5 * eig0, 0)
    L = torch.linalg.cholesky(H + tau * torch.eye(H.shape[0], dtype=H.dtype))
    return torch.cholesky_solve(g.neg().reshape(-1, 1), L).reshape(-1)


def seed_path_numpy(H, g):
    import scipy.linalg as sl

    eig0 = spla.eigsh(H, k=1, which="SA")[0].item()
    tau = max(-1.5 * eig0, 0)
    c = sl.cho_factor(H + tau * np.eye(H.shape[0]), lower=True)
    return sl.cho_solve(c, -g)


def bench_cholesky(repeats, rows):
    rng = np.random.default_rng(1)
    H64, lam_min = seed_like_hessian(rng=rng)
    g64 = rng.standard_normal(600) * 1e-6
    cases = [("torch float32 (the seed)", torch.asarray(H64, dtype=torch.float32),
              torch.asarray(g64, dtype=torch.float32), seed_path_torch),
             ("NumPy float64", H64, g64, seed_path_numpy)]
    for label, H, g, seed_fn in cases:
        seed_fn(H, g), regularized_cholesky_solve(H, g)  # warm up
        t_seed, t_nk, h_seed, (h_nk, info) = timeit_pair(seed_fn, regularized_cholesky_solve,
                                                         repeats, H, g)
        h_seed, h_nk = np.asarray(h_seed, dtype=np.float64), np.asarray(h_nk, dtype=np.float64)
        diff = np.linalg.norm(h_nk - h_seed) / np.linalg.norm(h_seed)
        rows.append(dict(case=f"Newton step 600×600 indefinite, {label}", peer=t_seed, ours=t_nk,
                         note=f"τ = {info.tau:.3g} (λ_min {info.lambda_min:.3g}, true "
                              f"{lam_min:.3g}); steps differ by {diff:.1e}"))
        print(rows[-1], flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="skip the 4096×24896 case")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", default=_THREADS,
                    help="BLAS and torch threads, as --threads=N (default 1)")
    args = ap.parse_args(argv)
    torch.set_num_threads(int(args.threads))
    sizes = [(512, 2956), (8192, 256), (256, 8192)] + ([] if args.quick else [(4096, 24896)])
    rows = []
    bench_cholesky(max(args.repeats, 20), rows)
    bench_hig(sizes, args.repeats, rows)
    lines = ["| case | peer (s) | newtonkit (s) | speed-up | notes |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['case']} | {r['peer']:.4g} | {r['ours']:.4g} | "
                     f"{r['peer'] / r['ours']:.2f}× | {r['note']} |")
    lines.append(f"\nBLAS and torch threads: {args.threads}; NumPy {np.__version__}, torch "
                 f"{torch.__version__}; medians of {args.repeats} (HIG) and "
                 f"{max(args.repeats, 20)} (Newton) repeats.")
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(exist_ok=True)
    (OUT / "core.md").write_text(table + "\n")


if __name__ == "__main__":
    main()
