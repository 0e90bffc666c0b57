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
