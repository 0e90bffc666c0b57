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


def test_reference_solution_is_reproducible_on_the_symmetric_start():
    """biggs_exp6 from x0 (x1 = x5, x3 = x6): SciPy lm alone alternates between the global
    minimum (F* = 0) and a saddle with the memory alignment of its arrays; the reference takes
    the lower of two starts, the global minimum (1, 10, 1, 5, 4, 3) every time (lm's
    tolerances 1e-12: within 1e-6 of it, cost near the rounding floor)."""
    import bench_lsq_robust

    p = nls_problems.get("biggs_exp6")
    junk = []
    for k in range(4):
        junk.append(np.empty(3 * k + 1))  # shifts the alignment of later allocations
        xs = bench_lsq_robust.reference_solution(p)
        np.testing.assert_allclose(xs, [1.0, 10.0, 1.0, 5.0, 4.0, 3.0], atol=1e-6)
        assert p.cost(xs) < 1e-20


def test_symmetries_are_exact_and_the_symmetric_error_uses_them():
    import bench_lsq_robust

    rng = np.random.default_rng(0)
    for name, perms in bench_lsq_robust.SYMMETRIES.items():
        p = nls_problems.get(name)
        x = p.x0 + rng.uniform(0.1, 1.0, p.n)
        for q in perms:
            r0, r1 = p.residual(x), p.residual(x[list(q)])
            # the same terms summed in another order: a few ulps of the largest term
            np.testing.assert_allclose(r1, r0, rtol=0, atol=8 * np.finfo(float).eps
                                       * (1 + np.abs(r0).max() + np.abs(p.residual(0 * x)).max()))
            xs = x[list(q)]  # x* a relabelling of x: zero error modulo the symmetries only
            assert bench_lsq_robust.parameter_error(p, x, xs, symmetric=True) == 0.0
            assert bench_lsq_robust.parameter_error(p, x, xs) > 0.0
