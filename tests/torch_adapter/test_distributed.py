"""Sharded problems over gloo on 127.0.0.1: identical iterates on every rank, agreement with
the single-process run, faults and bad input end every rank with the same error."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import newtonkit as nk
from newtonkit_torch.autograd import TorchAutodiff

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

from newtonkit_torch.distributed import ShardedModel, ShardedObjective  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
import _dist_worker as W  # noqa: E402

WORKER = Path(__file__).parent / "_dist_worker.py"
ROOT = Path(__file__).parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(scenario: str, world: int, tmp_path: Path, timeout: float = 60.0,
           worker: Path = WORKER, dead: int | None = None) -> list[dict]:
    """Run ``world`` ranks of ``worker``; their saved results (fails on a hang or a crash,
    except of the rank ``dead``, which must end with exit code 3 and has no results)."""
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, str(worker), scenario, str(r), str(world),
                               str(port), str(tmp_path)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT) for r in range(world)]
    try:
        outs = [p.communicate(timeout=timeout)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, out) in enumerate(zip(procs, outs, strict=True)):
        assert p.returncode == (3 if r == dead else 0), f"rank {r} failed:\n{out}"
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(world) if r != dead]


def single_process(method: str):
    t, d, x0 = W.data()
    opts = {"maxiter": 50}
    if method == "newton":
        f = lambda x: 0.5 * (W.residual(x, t, d) ** 2).sum()  # noqa: E731
        ad = TorchAutodiff(f, (W.N,))
        return nk.minimize(f, x0, method="newton", jac=ad.grad, hessp=lambda x, p: ad.hvp(x, p),
                           options=opts)
    return nk.minimize(lambda x: W.residual(x, t, d), x0, method=method.split("-")[0],
                       options=opts)


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_methods_match_single_process(world, tmp_path):
    ranks = launch("methods", world, tmp_path)
    for r in ranks[1:]:  # all_reduce gives every rank the same bits (gloo)
        assert torch.equal(r["allreduce"], ranks[0]["allreduce"])
    for method in W.METHODS:
        first = ranks[0][method]
        for r in ranks[1:]:  # every iterate bitwise identical on every rank
            assert torch.equal(r[method]["iterates"], first["iterates"]), method
            assert r[method]["status"] == first["status"]
        ref = single_process(method)
        assert first["status"] == ref.status, method
        # Only the order of the sums over ranks differs: ε·P·scale per reduced entry, a few
        # 1e-15 here, amplified by the run's conditioning.  The matrix-free "lm" takes another
        # linear-algebra route than the single process's dense Jacobian: its solution agrees to
        # the tolerance of the stopping test only.
        rtol = 1e-6 if method == "lm" else 1e-10
        torch.testing.assert_close(first["x"], ref.x, rtol=rtol, atol=rtol)
        assert abs(first["fun"] - ref.fun) <= rtol * max(1.0, abs(ref.fun))


@pytest.mark.parametrize("kind", ["raise", "nan"])
def test_fault_on_one_rank_ends_every_rank_alike(kind, tmp_path):
    r0, r1 = launch(kind, 2, tmp_path, timeout=30.0)
    assert r0.get("error") == r1.get("error") and r0.get("status") == r1.get("status")
    assert r0["message"] == r1["message"]
    assert max(r0["seconds"], r1["seconds"]) < 10.0
    if kind == "raise":
        assert r0["error"] == "ShardError"
        assert "rank(s) [1]" in r0["message"] and "simulated failure" in r0["message"]
    else:  # NaN reaches every rank through the gather: the same status everywhere
        assert "error" in r0 or r0["status"] == 3


def test_a_rank_that_dies_is_a_clear_error_on_the_others(tmp_path):
    """Rank 1 exits mid-run (os._exit in its forward model); rank 0 does not hang: its next
    collective fails at once (gloo sees the connection close) and minimize raises ShardError
    naming the failure."""
    (r0,) = launch("die", 2, tmp_path, timeout=30.0, dead=1)
    assert r0["error"] == "ShardError", r0
    assert "another rank has probably stopped" in r0["message"]
    assert r0["seconds"] < 15.0  # well inside the group's 20 s timeout


def test_bad_input_is_an_error_on_every_rank(tmp_path):
    r0, r1 = launch("bad", 2, tmp_path, timeout=30.0)
    assert r0 == r1
    assert "different parameter sizes" in r0["size"]
    assert "x0 differs between ranks" in r0["x0"]
    assert "shared model state differs" in r0["shared"]
    assert "x0 differs between ranks" in r0["objective"]
    assert r0["same_inf"] == "no error"  # (±inf summed to nan, which equals nothing)
    assert "shared model state differs" in r0["other_inf"]


def test_a_rank_without_rows_contributes_nothing(tmp_path):
    """A rank with an empty shard (more ranks than shots): the dense route (which stacked no
    Jacobian rows: torch.cat of nothing) and the matrix-free one give the single-process
    run's x on every rank."""
    r0, r1 = launch("empty", 2, tmp_path)
    for method, ref in (("gn", single_process("gn")), ("lm-dense", single_process("lm"))):
        assert torch.equal(r0[method]["x"], r1[method]["x"])
        # the same problem on one rank, other routes: agreement to the runs' xtol/ftol level
        torch.testing.assert_close(r0[method]["x"], ref.x, rtol=1e-6, atol=1e-6)


def test_without_process_group_is_a_clear_error():
    if dist.is_initialized():
        pytest.skip("a process group is initialised in this process")
    with pytest.raises(RuntimeError, match="not initialised"):
        ShardedModel(lambda x: x)
    with pytest.raises(RuntimeError, match="not initialised"):
        ShardedObjective(lambda x: x.sum())
