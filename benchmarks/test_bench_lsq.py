"""The bound construction of bench_lsq.py: the cut box excludes x*, holds x0; the loose one both."""

import bench_lsq
import nls_problems
import numpy as np


def test_bounds_cut_off_the_minimum_and_hold_the_start():
    for p in nls_problems.all_problems()[:6]:
        xs = bench_lsq.unconstrained_solution(p)
        lb, ub = bench_lsq.cut_bounds(p, xs)
        assert np.all(p.x0 >= lb) and np.all(p.x0 <= ub) and np.all(lb < ub)
        assert np.any(xs < lb) or np.any(xs > ub)
        assert np.count_nonzero(np.isfinite(lb) | np.isfinite(ub)) == 1
        lo, hi = bench_lsq.loose_bounds(p, xs)
        for x in (p.x0, xs):
            assert np.all(x > lo) and np.all(x < hi)


def test_robust_outliers_are_ten_percent_of_size_ten_s():
    import bench_lsq_robust

    probs = bench_lsq_robust.problems()
    assert all(p.m >= 2 * p.n and not p.name.startswith("linear_rank1") for p in probs)
    for i, p in enumerate(probs[:4]):
        xs = bench_lsq_robust.outlier_free_solution(p)
        o, s = bench_lsq_robust.outliers(p, xs, i)
        assert s > 0 and np.count_nonzero(o) == max(1, round(0.1 * p.m))
        np.testing.assert_allclose(np.abs(o[o != 0]), 10 * s, rtol=1e-15)
        o2, _ = bench_lsq_robust.outliers(p, xs, i)  # seeded: the same draw
        np.testing.assert_array_equal(o, o2)
