"""Box bounds per parameter group of the torch optimizers (HIG, GaussNewton)."""

from __future__ import annotations

import copy

import pytest
import torch

from newtonkit_torch.optim import HIG, GaussNewton

T = torch.linspace(0.0, 1.0, 8, dtype=torch.float64)


def _problem(v0: float = 1.0, r0: float = 0.5):
    """y = v·t + r·t², target 3t + 2t²: the unconstrained optimum is v = 3, r = 2 (one
    Gauss-Newton step, the model is linear)."""
    v = torch.tensor([v0], dtype=torch.float64, requires_grad=True)
    r = torch.tensor([r0], dtype=torch.float64, requires_grad=True)
    target = 3.0 * T + 2.0 * T ** 2

    def closure():
        y = v * T + r * T ** 2
        return y, 0.5 * ((y - target) ** 2).sum()

    return v, r, closure


@pytest.mark.parametrize("cls", [GaussNewton, HIG])
def test_a_parameter_outside_its_box_ends_on_the_bound(cls):
    """v's optimum 3 lies above its box [0, 2.5]: v ends on 2.5 exactly (a clamp); r has no
    bounds and takes its unconstrained step (for Gauss-Newton: r = 2 to rounding, 1e-12, as
    the model is linear and both are solved jointly from the unconstrained direction)."""
    v, r, closure = _problem()
    kw = {"exponent": -1.0} if cls is HIG else {}
    opt = cls([{"params": [v], "bounds": (0.0, 2.5)}, {"params": [r]}], **kw)
    free_v, free_r, free_closure = _problem()
    free = cls([{"params": [free_v]}, {"params": [free_r]}], **kw)
    opt.step(closure)
    free.step(free_closure)
    assert v.item() == 2.5
    assert torch.equal(r, free_r)  # the other group is untouched by the projection
    assert abs(free_r.item() - 2.0) <= 1e-12 and abs(free_v.item() - 3.0) <= 1e-12


@pytest.mark.parametrize("rule", [dict(line_search="grid"), dict(line_search="backtracking"),
                                  dict(adaptive=True)])
def test_a_start_outside_the_box_is_moved_in_with_a_search(rule):
    """½θ² on [1, 2] from θ = 0.5: the start is projected before the closure sees it, so the
    search compares feasible points (it compared them with the infeasible start's loss, which
    every feasible point exceeds, and θ stayed at 0.5 forever)."""
    th = torch.tensor([0.5], dtype=torch.float64, requires_grad=True)
    opt = GaussNewton([{"params": [th], "bounds": (1.0, 2.0)}], **rule)

    def closure():
        y = th * 1.0
        return y, 0.5 * (y ** 2).sum()
    opt.step(closure)
    assert th.item() == 1.0


def test_tensor_bounds_broadcast_and_a_one_sided_bound():
    """Tensor bounds broadcast to the parameter; ``None`` leaves a side open; entries inside
    the box equal the unconstrained step bit for bit."""
    w = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64, requires_grad=True)
    target = torch.tensor([-1.0, 0.5, 4.0], dtype=torch.float64)

    def closure():
        y = w * 1.0
        return y, 0.5 * ((y - target) ** 2).sum()

    opt = GaussNewton([{"params": [w], "bounds": (torch.tensor([0.0, 0.0, 0.0]), None)}])
    opt.step(closure)
    assert w.tolist() == [0.0, 0.5, 4.0]


def test_adaptive_trials_are_projected_before_the_closure_sees_them():
    v, r, closure = _problem()
    seen = []

    def spy():
        seen.append(v.item())
        return closure()

    opt = GaussNewton([{"params": [v], "bounds": (None, 2.5)}, {"params": [r]}], adaptive=True)
    opt.step(spy)
    assert max(seen) <= 2.5 and opt.last_info["solves"][0]["accepted"]


def test_frozen_parameters_are_not_clamped():
    v, r, closure = _problem(r0=5.0)
    r.requires_grad_(False)
    opt = GaussNewton([{"params": [v]}, {"params": [r], "bounds": (0.0, 1.0)}])
    opt.step(closure)
    assert r.item() == 5.0


@pytest.mark.parametrize("bounds, match", [((2.0, 1.0), "lower bound > upper bound"),
                                           ((float("nan"), 1.0), "NaN"),
                                           ((torch.tensor([0.0, 3.0]), 1.0), "lower bound >"),
                                           ((torch.zeros(3), None), "broadcast"),
                                           ((0.0,), "pair"), (("a", 1.0), "numbers")])
def test_bad_bounds_are_refused(bounds, match):
    p = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    with pytest.raises(ValueError, match=match):
        GaussNewton([{"params": [p], "bounds": bounds}])


def test_state_dict_round_trip_keeps_bounds():
    """Bounds are group settings: saved by state_dict and restored by load_state_dict; a
    state_dict without them (saved before bounds existed) loads with none."""
    v, r, closure = _problem()
    opt = GaussNewton([{"params": [v], "bounds": (0.0, 2.5)}, {"params": [r]}])
    state = copy.deepcopy(opt.state_dict())
    assert state["param_groups"][0]["bounds"] == (0.0, 2.5)
    v2, r2, closure2 = _problem()
    other = GaussNewton([{"params": [v2]}, {"params": [r2]}])
    other.load_state_dict(state)
    other.step(closure2)
    assert v2.item() == 2.5
    for g in state["param_groups"]:
        del g["bounds"]
    third = GaussNewton([{"params": [v2], "bounds": (0.0, 1.0)}, {"params": [r2]}])
    third.load_state_dict(state)
    assert third.param_groups[0]["bounds"] is None
