"""Light tests of the benchmark harness bench_batch.py (not of newtonkit's speed): the problem
builders and their analytic derivatives, the verdict arithmetic (agreement, same-round ratios,
target thresholds), and a tiny batched run of each problem.  The report's wording is not tested.

Run: ``python -m pytest -q benchmarks/test_bench_batch.py`` (a few seconds).
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_batch as bench  # noqa: E402


def _central(f, X, h=1e-6):
    """(B, ..., n): central differences of the batched f along each coordinate of X (B, n)."""
    cols = []
    for j in range(X.shape[1]):
        e = np.zeros_like(X)
        e[:, j] = h
        cols.append((f(X + e) - f(X - e)) / (2 * h))
    return np.stack(cols, axis=-1)


def test_gauss2d_problems_follow_gpufits_generator():
    truth, data, starts = bench.gauss2d_problems(200, seed=3)
    assert truth.shape == starts.shape == (200, 5) and data.shape == (200, 25)
    assert np.all(np.abs(truth[:, 1:3] - 2.0) <= 0.5)
    rel = starts[:, [0, 3, 4]] / truth[:, [0, 3, 4]] - 1.0
    assert np.all(np.abs(rel) <= 0.1) and np.all(np.abs(starts[:, 1:3] - truth[:, 1:3]) <= 0.1)
    assert np.all(data == np.round(data)) and data.min() >= 0  # Poisson counts
    again = bench.gauss2d_problems(200, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(again, (truth, data, starts), strict=True))
    # a prefix of a larger set is the smaller set's problems? no: only the seed fixes them
    assert bench.gauss2d_problems(50, seed=3)[0].shape == (50, 5)


def test_gauss2d_derivatives_numpy_torch_and_one_fit_agree():
    _, data, starts = bench.gauss2d_problems(7, seed=1)
    J = bench.gauss2d_jac(starts, data)
    fd = _central(lambda X: bench.gauss2d_fun(X, data), starts)
    np.testing.assert_allclose(J, fd, rtol=1e-6, atol=1e-5)
    for i in range(3):
        np.testing.assert_allclose(bench._one_fun(starts[i], data[i]),
                                   bench.gauss2d_fun(starts, data)[i], rtol=1e-14)
        np.testing.assert_allclose(bench._one_jac(starts[i], data[i]), J[i], rtol=1e-14)
    torch = pytest.importorskip("torch")
    import array_api_compat

    tfun, tjac = bench.gauss2d_xp(array_api_compat.array_namespace(torch.zeros(0)))
    P, D = torch.from_numpy(starts), torch.from_numpy(data)
    np.testing.assert_allclose(tfun(P, D).numpy(), bench.gauss2d_fun(starts, data), rtol=1e-13)
    np.testing.assert_allclose(tjac(P, D).numpy(), J, rtol=1e-13, atol=1e-13)


def test_two_exponentials_and_rosenbrock_derivatives():
    t, y, starts = bench.two_exp_problem(5)
    fun, jac = bench.two_exp_fj(t, y)
    np.testing.assert_allclose(jac(starts), _central(fun, starts), rtol=1e-6, atol=1e-7)
    c, s, X = bench.rosen_problems(4)
    np.testing.assert_allclose(bench.rosen_g(X, c, s),
                               _central(lambda Z: bench.rosen_f(Z, c, s), X), rtol=1e-6)
    np.testing.assert_allclose(bench.rosen_h(X, c, s),
                               _central(lambda Z: bench.rosen_g(Z, c, s), X), rtol=1e-6,
                               atol=1e-6)
    xstar = c + 1.0  # the known minimiser: f = 0, g = 0, H positive definite
    assert np.all(bench.rosen_f(xstar, c, s) == 0) and np.all(bench.rosen_g(xstar, c, s) == 0)
    assert np.all(np.linalg.eigvalsh(bench.rosen_h(xstar, c, s)) > 0)
    assert bench.rosen_converged(xstar + 0.9e-5, c, 1e-5).all()
    assert not bench.rosen_converged(xstar + 2e-5, c, 1e-5).any()


def test_agreement_and_paired_ratio_arithmetic():
    ref = np.array([[1.0, 2.0], [10.0, 4.0], [1.0, 1.0], [5.0, 5.0]])
    X = ref * np.array([[1 + 5e-7], [1 + 2e-6], [1.0], [3.0]])
    ok = np.array([True, True, True, False])
    n, frac, mx = bench.agreement(X, ref, ok, np.array([True, True, False, True]), 1e-6)
    assert n == 2 and frac == 0.5 and mx == pytest.approx(2e-6)
    assert np.isnan(bench.agreement(X, ref, ~ok, ok, 1e-6)[1])
    # same-round pairs: the machine's slow round 3 falls on both, the ratio stays 2
    assert bench.paired_ratio([2.0, 2.0, 8.0], [1.0, 1.0, 4.0]) == 2.0


def _synthetic(np_rate, scipy_rate, own, user, torch_ratio, ms_ratio, nw_ratio, best=(1.0, 1.0),
               single=(1.0, 1e-10)):
    ref = 100_000
    rows = [dict(backend=b, B=ref, fits_per_s=np_rate, own_s=own, user_s=user, nfev=6.0,
                 njev=5.0) for b in ("numpy_f64", "numpy_f32", "torch_f64")]
    sp = dict(scipy_lm=dict(fits_per_s=scipy_rate, converged=0.99),
              curve_fit=dict(fits_per_s=scipy_rate, converged=0.99),
              ratio_numpy_vs_scipy=np_rate / scipy_rate, ratio_torch_vs_numpy=torch_ratio)
    g = dict(rows=rows, scipy=sp, ref_B=ref, scipy_fits=1000,
             agree={k: (990, 1.0, 1e-12) for k in ("numpy_f64", "torch_f64", "numpy_f32",
                                                  "curve_fit")},
             converged_first={"numpy_f64": 1.0},
             single=dict(fits=300, same_counts=single[0], max_rel_x=single[1]))
    ms = dict(ratio=ms_ratio, K=1000, nk_s=1.0, scipy_s=ms_ratio, nk_best=best[0],
              scipy_best=best[1], nk_converged=1.0, scipy_converged=1.0)
    nw = dict(ratio=nw_ratio, te_problems=300, nk_per_s=nw_ratio, te_per_s=1.0,
              nk_converged_subset=1.0, te_converged=1.0, nk_converged=1.0, B=10_000)
    return g, ms, nw


def test_verdicts_at_the_thresholds():
    _, v = bench.summary(*_synthetic(30.0, 1.0, 1.0, 1.0, 1.5, 20.0, 30.0))
    assert all(v.values()), v
    _, v = bench.summary(*_synthetic(29.9, 1.0, 1.01, 1.0, 1.51, 19.9, 29.9, best=(1.0, 1.1)))
    assert not any(v[k] for k in ("numpy_vs_scipy", "own_vs_user", "torch_vs_numpy",
                                  "multistart", "same_minimum", "newton")), v
    assert v["converged"] and v["agree"] and v["newton_converged"] and v["single_path"]
    for single in ((299 / 300, 0.0), (1.0, 1.1e-10)):  # one fit off, or x off
        _, v = bench.summary(*_synthetic(30.0, 1.0, 1.0, 1.0, 1.5, 20.0, 30.0, single=single))
        assert not v["single_path"] and v["numpy_vs_scipy"]


def test_tiny_batched_runs_match_the_scipy_loops():
    _, data, starts = bench.gauss2d_problems(20, seed=5)
    res, wall, user, peak = bench.nk_batch(starts, data, bench.gauss2d_fun, bench.gauss2d_jac,
                                           memory=True)
    assert 0 < user < wall and peak > 0
    Xs, oks, _ = bench.scipy_lm_loop(starts, data)
    n, frac, _ = bench.agreement(np.asarray(res.x), Xs, res.success, oks, 1e-6)
    assert n == 20 and frac == 1.0
    c, s, X0 = bench.rosen_problems(20)
    res, *_ = bench._nk_newton(X0, c, s)
    assert bench.rosen_converged(np.asarray(res.x), c, 1e-5).all()
