"""benchmarks/gpu_check.py: its dry run (CI keeps the GPU check from rotting), its host-read
detector and its runner (caps, failure isolation).

The dry run is the script's whole code path on the CPU with small sizes, as one subprocess
(about a minute on 2 loaded cores).  Its verdicts are not checked (a CPU is no GPU), but every
section must have run to its end, every benchmark must have produced a finite number, and every
residency case must have run (host reads that break the rule are findings, reported in the
JSON, not errors of the script).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

if importlib.util.find_spec("torch") is None or importlib.util.find_spec("deepwave") is None:
    pytest.skip("the GPU check needs torch and deepwave", allow_module_level=True)

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import gpu_check as G  # noqa: E402


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = dict(os.environ, GPU_CHECK_OUT=str(out), PYTHONPATH=str(HERE.parent),
               OMP_NUM_THREADS="1")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, str(HERE / "gpu_check.py"), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=600)
    return proc, out, time.monotonic() - t0


def test_dry_run_runs_every_section_and_writes_json_log_and_tables(dry_run):
    proc, out, _ = dry_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    doc = json.loads((out / "gpu_check_dry.json").read_text())
    assert doc["dry_run"] is True and list(doc["sections"]) == list(G.ORDER)
    for name, rec in doc["sections"].items():
        # "fail" is a finding (a failed test, a host copy); "error", "timeout" and "skipped"
        # mean the script did not run the section to its end
        assert rec["status"] in ("ok", "fail"), (name, rec.get("error"), rec.get("traceback"))
    for name in ("env", "cuda_tests", "property_suite"):
        assert doc["sections"][name]["status"] == "ok", doc["sections"][name]
    assert doc["sections"]["cuda_tests"]["counts"].get("skipped", 0) >= 1  # no GPU here
    assert doc["sections"]["property_suite"]["counts"].get("passed", 0) >= 1
    log = (out / "gpu_check_dry.log").read_text()
    assert "== residency" in log and "passed" in log  # section lines and pytest's output
    tail = proc.stdout[proc.stdout.rindex("| section |"):]
    assert "| benchmark |" in tail  # the summary tables come last


def test_dry_run_benchmarks_give_numbers(dry_run):
    doc = json.loads((dry_run[1] / "gpu_check_dry.json").read_text())
    for name in ("hig_gemm", "fits", "deepwave", "pinn"):
        rows = doc["sections"][name]["rows"]
        assert rows, name
        for r in rows:
            assert isinstance(r["value"], float) and math.isfinite(r["value"]), r
            assert r["verdict"] in ("report", "n/a (dry run)"), r  # no verdicts off a GPU


def test_dry_run_residency_runs_every_case(dry_run):
    rec = json.loads((dry_run[1] / "gpu_check_dry.json").read_text())["sections"]["residency"]
    cases = rec["cases"]
    assert {c["backend"] for c in cases} == {"torch"} and "cupy" in rec  # cupy: said why not
    names = {c["case"] for c in cases}
    for want in ("minimize newton", "minimize gn", "minimize lm", "minimize hig",
                 "least_squares", "curve_fit", "optim.HIG, 3 steps",
                 "optim.GaussNewton adaptive, 3 steps"):
        assert want in names
    assert any(n.startswith("batched") for n in names)
    for c in cases:
        assert "error" not in c, c
        assert c["success"] and c["x_on_device"], c
        assert c["reads"] >= c["scalar_syncs"] >= 1, c  # convergence decisions read scalars
    assert (rec["status"] == "fail") == any(c["violations"] for c in cases)


def test_dry_run_is_short(dry_run):
    # CI budget for this file: about a minute on 2 loaded cores (issue 19)
    assert dry_run[2] < 150, dry_run[2]


# -- the host-read detector ----------------------------------------------------------------------

PLANTED = '''
def library_step(x):
    """Stands for newtonkit code: a convergence test and a host copy of a vector."""
    done = float(x.sum()) < 0  # a scalar sync
    copy = x.cpu()  # a host copy of the whole vector
    return done, copy
'''


def _planted():
    """``library_step`` compiled under a file name inside ``newtonkit/``, so that the detector
    attributes its reads to the library (the file itself is never written)."""
    ns: dict = {}
    exec(compile(PLANTED, str(G.ROOT / "newtonkit" / "_planted_for_test.py"), "exec"), ns)
    return ns["library_step"]


def test_host_reads_flag_a_vector_copy_in_library_code():
    import torch

    step = _planted()
    x = torch.arange(5.0)
    with G.HostReads(allowance=1, count_syncs=False) as reads:
        step(x)
        x.tolist()  # the caller's own read: listed, never a violation
    s = reads.summary()
    assert s["reads"] == 2 and s["scalar_syncs"] == 1 and s["largest_read"] == 5
    assert len(s["violations"]) == 1 and "_planted_for_test.py:5 .cpu() of 5" in \
        s["violations"][0]
    assert len(s["user_reads"]) == 1 and "test_gpu_check.py" in s["user_reads"][0]
    # per problem in a batch of 5: the same read is allowed
    with G.HostReads(allowance=5, count_syncs=False) as reads:
        step(x)
    assert reads.summary()["violations"] == []
    # the patches are gone afterwards
    assert "cpu" not in torch.Tensor.__dict__ and "tolist" not in torch.Tensor.__dict__


def test_host_reads_see_conversions_and_to_cpu():
    import numpy as np
    import torch

    src = '''
def convert(x, np):
    return np.asarray(x), x.to("cpu"), x.to(x.dtype), bool(x[0] > 0), x[1].item()
'''
    ns: dict = {}
    exec(compile(src, str(G.ROOT / "newtonkit" / "_planted_for_test.py"), "exec"), ns)
    with G.HostReads(allowance=1, count_syncs=False) as reads:
        ns["convert"](torch.ones(4), np)
    s = reads.summary()
    # __array__ (4), .to("cpu") (4), bool (1), item (1); .to(dtype) is no read
    assert s["reads"] == 4 and s["scalar_syncs"] == 2 and len(s["violations"]) == 2, s


# -- the runner ---------------------------------------------------------------------------------


def test_a_failing_or_slow_section_is_recorded_and_the_rest_run(tmp_path, monkeypatch):
    def boom(ctx, rec):
        rec["rows"] = []
        raise RuntimeError("planted")

    def slow(ctx, rec):
        rec["partial"] = 1
        time.sleep(30)

    monkeypatch.setitem(G.SECTIONS, "boom", (boom, 5, 5))
    monkeypatch.setitem(G.SECTIONS, "slow", (slow, 5, 5))
    ctx = G.Context(True, tmp_path, tmp_path / "log")
    t0 = time.monotonic()
    a = G.run_in_process("boom", ctx, 5)
    b = G.run_in_process("slow", ctx, 1.0)
    assert time.monotonic() - t0 < 10
    assert a["status"] == "error" and "planted" in a["error"]
    assert b["status"] == "timeout" and b["partial"] == 1  # what it had is kept


def test_pytest_summary():
    text = ("....F.s\nFAILED tests/test_a.py::test_x[cupy] - AssertionError: no\n"
            "ERROR tests/test_b.py::test_y\n"
            "1 failed, 5 passed, 1 skipped, 2 warnings, 1 error in 3.21s\n")
    s = G.pytest_summary(text)
    assert s["counts"] == {"failed": 1, "passed": 5, "skipped": 1, "warnings": 2, "error": 1}
    assert s["failed"] == ["FAILED tests/test_a.py::test_x[cupy]", "ERROR tests/test_b.py::test_y"]


def test_the_wheel_list_is_the_one_the_script_names():
    text = (HERE / "gpu_wheels.sh").read_text()
    listed = re.search(r"^PACKAGES=\((.*)\)$", text, re.M).group(1).split()
    assert {p.split("==")[0].replace("-", "_"): p.split("==")[1] for p in listed} == G.WHEELS
    for name, version in G.WHEELS.items():
        assert f"{name.replace('_', '-')} {version}" in G.__doc__


def test_a_crashing_child_is_recorded(tmp_path):
    # the isolated runner's failure path (a child that dies before it writes its record)
    ctx = G.Context(True, tmp_path, tmp_path / "log")
    rec = G.run_isolated("no_such_section", ctx, 20)
    assert rec["status"] == "error" and "exited with 1" in rec["error"]
    assert "KeyError" in (tmp_path / "log").read_text()
