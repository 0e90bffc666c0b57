"""Light tests of the benchmark harness bench_nls.py (not of newtonkit): the verdicts' numbers —
a problem where SciPy lm's identical calls take different paths is left out of the time and
Jacobian-count verdicts, the time ratio pairs samples of the same round, a crash counts as over
the bound — and the order in which samples are taken.  The report's wording is not tested.

Run by ``.ci/run`` as its own step: ``python -m pytest -q benchmarks/test_bench_nls.py``.
"""

from __future__ import annotations

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import bench_nls as bench  # noqa: E402


def _result(nfev, njev, time, timed_nfev=None, status="global", time_min=None, samples=None):
    return dict(status=status, f=0.0, nfev=nfev, njev=njev, nhev=0, time=time,
                time_min=time if time_min is None else time_min, message="",
                reported={"njev": njev}, timed_nfev=timed_nfev or [nfev],
                time_samples=[time] * 3 if samples is None else samples)


def _row(name, n, lm, nk):
    return {"problem": dict(name=name, n=n, m=n, f_star=0.0, source=""),
            "scipy_lm": lm, "trust_exact": _result(50, 50, 1.0), "newtonkit_lm": nk}


def test_an_unreproducible_peer_is_left_out_of_the_verdicts():
    rows = [
        _row("steady", 4, _result(20, 10, 1.0), _result(20, 10, 1.5)),
        # SciPy's runs took 3 or 45 evaluations: its 0.1 s and its 2 Jacobians are no reference
        _row("flaky", 6, _result(3, 2, 0.1, timed_nfev=[3, 45]), _result(47, 35, 0.5)),
        _row("big", 200, _result(20, 15, 1.0), _result(20, 15, 0.5)),
    ]
    _, verdicts = bench.summary(rows)
    assert verdicts["n <= 10"] and verdicts["njev"]  # would read 5x and 12.5 > 10 with it
    assert not bench._reproducible(rows[1]["scipy_lm"])
    assert bench._reproducible(rows[0]["scipy_lm"])


def test_a_reproducible_slow_run_still_misses():
    rows = [_row("slow", 4, _result(20, 10, 1.0, samples=[1.0, 1.0, 1.0]),
                 _result(20, 10, 3.5, time_min=1.5, samples=[3.5, 1.5, 3.5])),
            _row("big", 200, _result(20, 15, 1.0), _result(20, 15, 0.5))]
    # the verdict is the median of same-round ratios (3.5 > 3), not the fastest samples' (1.5)
    assert bench.paired_ratio(rows[0]["newtonkit_lm"], rows[0]["scipy_lm"]) == 3.5
    _, verdicts = bench.summary(rows)
    assert not verdicts["n <= 10"]


def test_the_time_verdict_pairs_samples_of_the_same_round():
    """The machine in its fast state in rounds 1-3 and its slow one (2x) in rounds 4-5, except
    that newtonkit's round-3 sample fell in the slow state: each solver's own median lands in a
    different state (4.0 / 1.0), while the rounds' median reads 2.0."""
    lm = _result(20, 10, 1.0, samples=[1.0, 1.0, 1.0, 2.0, 2.0])
    nk = _result(20, 10, 4.0, samples=[1.5, 1.5, 4.0, 4.0, 4.0])
    rows = [_row("bimodal", 4, lm, nk),
            _row("big", 200, _result(20, 15, 1.0), _result(20, 15, 0.5))]
    assert bench.paired_ratio(nk, lm) == 2.0  # the ratio of the medians would be 4.0 > 3
    _, verdicts = bench.summary(rows)
    assert verdicts["n <= 10"]


def test_paired_ratio_is_nan_without_samples():
    """A solver that crashed has no samples: its ratio is NaN, which the verdict counts as over."""
    q = bench.paired_ratio(_result(1, 1, 1.0, samples=[]), _result(1, 1, 1.0))
    assert q != q


def test_samples_are_taken_in_rounds_over_all_problems(monkeypatch):
    """After one calibration sample each, every round times each (problem, solver) once, the
    problems in turn and the solvers in an order that changes; the result is each pair's
    median and fastest sample, and its samples in round order."""
    calls = []
    fake = {("p", "a"): [5.0, 1.0, 3.0, 4.0, 2.0], ("p", "b"): [10.0, 30.0, 20.0, 40.0, 50.0],
            ("q", "a"): [7.0] * 5}

    def sample(solver, p, tol, number, nfevs):
        calls.append((p, solver))
        nfevs.add(7)
        k = sum(c == (p, solver) for c in calls) - 2  # the first call calibrates the batch
        return fake[p, solver][k] if k >= 0 else 1e-3

    monkeypatch.setattr(bench, "_sample", sample)
    out = bench.time_runs([("p", ["a", "b"]), ("q", ["a"])], 1e-10, 5)
    assert calls[:3] == [("p", "a"), ("p", "b"), ("q", "a")]  # calibration
    rounds = [calls[3 + 3 * i: 6 + 3 * i] for i in range(5)]
    assert all(sorted(r) == [("p", "a"), ("p", "b"), ("q", "a")] and r[2] == ("q", "a")
               for r in rounds)
    assert len({tuple(r) for r in rounds}) == 2  # both orders of p's solvers occur
    assert out == [{"a": (3.0, 1.0, {7}, fake["p", "a"]), "b": (30.0, 10.0, {7}, fake["p", "b"])},
                   {"a": (7.0, 7.0, {7}, fake["q", "a"])}]


def test_a_solver_that_crashed_is_reported_not_fatal(monkeypatch):
    """counted_run turns an exception into status "error" with NaN times, and the summary
    counts the problem as over the bound (not as a crash of the bench)."""
    def boom(c, p, tol):
        raise RuntimeError("no")

    monkeypatch.setitem(bench.SOLVERS, "newtonkit_lm", boom)
    r = bench.counted_run("newtonkit_lm", None, 1e-10)
    assert r["status"] == "error" and "RuntimeError: no" in r["message"]
    assert r["time"] != r["time"] and r["time_min"] != r["time_min"]  # NaN
    rows = [_row("crashed", 4, _result(20, 10, 1.0), dict(r, timed_nfev=[0])),
            _row("big", 200, _result(20, 15, 1.0), _result(20, 15, 0.5))]
    _, verdicts = bench.summary(rows)
    assert not verdicts["n <= 10"]


def test_small_problems_are_judged_by_the_median_ratio():
    """n <= 10: one problem over 3x does not miss while the median of the ratios is <= 3."""
    rows = [_row("fast", 4, _result(20, 10, 1.0), _result(20, 10, 1.5)),
            _row("fast2", 5, _result(20, 10, 1.0), _result(20, 10, 2.0)),
            _row("slow", 6, _result(20, 10, 1.0), _result(20, 10, 4.5)),
            _row("big", 200, _result(20, 15, 1.0), _result(20, 15, 0.5))]
    _, verdicts = bench.summary(rows)
    assert verdicts["n <= 10"]
    rows[1] = _row("fast2", 5, _result(20, 10, 1.0), _result(20, 10, 3.5))
    _, verdicts = bench.summary(rows)
    assert not verdicts["n <= 10"]  # median 3.5
