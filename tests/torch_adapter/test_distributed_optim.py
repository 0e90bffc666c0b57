"""Sharded torch optimizers (``ShardedClosure``) over 2 gloo ranks on 127.0.0.1: identical
parameters on every rank after every step, equal to the one-process run on the whole batch;
faults and a model that differs between ranks end every rank with the same error."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

if not (dist.is_available() and dist.is_gloo_available()):
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

sys.path.insert(0, str(Path(__file__).parent))
import _dist_optim_worker as W  # noqa: E402
from test_distributed import launch  # noqa: E402

WORKER = Path(__file__).parent / "_dist_optim_worker.py"


def test_sharded_optimizers_match_single_process(tmp_path):
    r0, r1 = launch("optim", 2, tmp_path, worker=WORKER)
    for name in W.OPTIMIZERS:
        # every rank solved on the same gathered bits: bitwise identical parameters
        assert torch.equal(r0[name]["thetas"], r1[name]["thetas"]), name
        assert torch.equal(r0[name]["losses"], r1[name]["losses"]), name
        ref = W.train(name, W.local_closure)  # one process, the whole batch
        # J and g are the same rows (per-sample Jacobians do not depend on the shard); only
        # Σ_k L_k is summed in another order (≈ ε·|L| per step), and GN's step does not
        # depend on L.  Each step's solve amplifies a rounding difference by at most the
        # conditioning it keeps (truncation 1e-6 ⇒ κ ≤ 1e6 for J⁺, HIG on its SVD route):
        # ε·1e6 ≈ 2e-10 per step.
        torch.testing.assert_close(r0[name]["thetas"], ref["thetas"], rtol=1e-8, atol=1e-8)
        torch.testing.assert_close(r0[name]["losses"], ref["losses"], rtol=1e-8, atol=1e-12)
        # the run moved: the comparison is not between two untouched starts
        assert float(ref["losses"][-1]) < 0.9 * float(ref["losses"][0]), name


@pytest.mark.parametrize("kind", ["raise", "nan", "params"])
def test_optimizer_faults_end_every_rank_alike(kind, tmp_path):
    r0, r1 = launch(kind, 2, tmp_path, timeout=30.0, worker=WORKER)
    assert r0["error"] == r1["error"] and r0.get("message") == r1.get("message")
    assert max(r0["seconds"], r1["seconds"]) < 10.0
    if kind == "raise":
        assert r0["error"] == "ShardError"
        assert "rank(s) [1]" in r0["message"] and "simulated failure" in r0["message"]
    elif kind == "nan":  # the gathered J holds rank 1's NaNs: every optimizer refuses alike
        assert r0["error"] == "FloatingPointError"
    else:
        assert r0["error"] == "ShardError" and "differs between ranks" in r0["message"]


def test_sharded_deepwave_gauss_newton_matches_single_process(tmp_path):
    pytest.importorskip("deepwave")
    r0, r1 = launch("deepwave", 2, tmp_path, worker=WORKER)
    assert torch.equal(r0["iterates"], r1["iterates"])  # the same bits on both ranks
    wave, observed, v0 = W.wave_problem()
    ref = W.gauss_newton(W.WaveResidual(wave, observed), v0)  # one process, all shots
    # Shots are propagated independently; only Jᵀw = Σ_k J_kᵀ w_k is summed in another order
    # (≈ ε·(number of shots)·|J_kᵀ w_k| per entry).  Eight CG iterations and two outer steps
    # amplify that by at most the condition number CG resolves (here < 1e4): relative ≤ 1e-9.
    torch.testing.assert_close(r0["iterates"], ref["iterates"], rtol=1e-9, atol=1e-6)
    assert abs(r0["fun"] - ref["fun"]) <= 1e-9 * abs(ref["fun"])
    # ShardedObjective.value_and_grad: Σ_k (f_k, ∇f_k) in one all_reduce, as one process
    f, g = r0["value_and_grad"]
    assert torch.equal(f, r1["value_and_grad"][0]) and torch.equal(g, r1["value_and_grad"][1])
    v = v0.clone().requires_grad_(True)
    f_ref = W.misfit(W.WaveResidual(wave, observed), v)
    (g_ref,) = torch.autograd.grad(f_ref, v)
    # two partial sums instead of one: ε·|f| and ε·Σ_k|∇f_k| ≤ ε·(shots)·max|∇f|, float64
    torch.testing.assert_close(f, f_ref.detach(), rtol=1e-12, atol=0.0)
    torch.testing.assert_close(g, g_ref, rtol=1e-10, atol=1e-12 * float(g_ref.abs().max()))
    moved = float((ref["iterates"][-1] - v0).abs().max())
    assert moved > 10.0  # m/s: the run moved, so the agreement is not that of two starts
