"""The verdict logic of benchmarks/bench_nls.py: a problem where SciPy lm's identical calls take
different paths is marked and left out of the time and Jacobian-count verdicts."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_nls.py"
_spec = importlib.util.spec_from_file_location("bench_nls", _PATH)
bench = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("bench_nls", bench)
_spec.loader.exec_module(bench)


def _result(nfev, njev, time, timed_nfev=None, status="global", time_min=None):
    return dict(status=status, f=0.0, nfev=nfev, njev=njev, nhev=0, time=time,
                time_min=time if time_min is None else time_min, message="",
                reported={"njev": njev}, timed_nfev=timed_nfev or [nfev])


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
    lines, verdicts = bench.summary(rows)
    text = "\n".join(lines)
    assert verdicts["n <= 10"] and verdicts["njev"], text  # would read 5x and 12.5 > 10 with it
    assert "1/1 problems within" in text and "not timed against SciPy: flaky" in text
    assert "left out, SciPy not reproducible: flaky" in text
    assert "‡" in bench._cell(rows[1]["scipy_lm"]) and "‡" not in bench._cell(rows[0]["scipy_lm"])


def test_a_reproducible_slow_run_still_misses():
    rows = [_row("slow", 4, _result(20, 10, 1.0), _result(20, 10, 2.5, time_min=1.5)),
            _row("big", 200, _result(20, 15, 1.0), _result(20, 15, 0.5))]
    lines, verdicts = bench.summary(rows)
    text = "\n".join(lines)
    # the verdict is by medians; the fastest samples' ratio (1.5) is only reported
    assert not verdicts["n <= 10"] and "over: slow (2.50)" in text
    assert "fastest sample" in text and "max 1.50" in text


def test_samples_are_interleaved_in_shuffled_rounds(monkeypatch):
    """Every round times each solver once, in an order that changes from round to round; the
    result is each solver's median and fastest sample."""
    calls = []
    fake = {"a": [5.0, 1.0, 3.0, 4.0, 2.0], "b": [10.0, 30.0, 20.0, 40.0, 50.0]}

    def sample(solver, p, tol, number, nfevs):
        calls.append(solver)
        nfevs.add(7)
        k = sum(c == solver for c in calls) - 2  # the first call calibrates the batch size
        return fake[solver][k] if k >= 0 else 1e-3

    monkeypatch.setattr(bench, "_sample", sample)
    out = bench.time_runs(["a", "b"], None, 1e-10, 5)
    rounds = [tuple(calls[2 + 2 * i: 4 + 2 * i]) for i in range(5)]
    assert all(sorted(r) == ["a", "b"] for r in rounds) and len(set(rounds)) == 2
    assert out["a"] == (3.0, 1.0, {7}) and out["b"] == (30.0, 10.0, {7})
