"""The line search of the torch optimizers (``line_search="grid"`` / ``"backtracking"``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from newtonkit_torch.jacobians import flat_parameters
from newtonkit_torch.optim import HIG, STEP_SIZES, GaussNewton

DTYPES = [torch.float32, torch.float64]


def make_problem(dtype, seed=0, hidden=True):
    """A small network on 12 inputs (2 outputs each) and a least-squares loss."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.rand(12, 2, generator=gen, dtype=dtype) * 2 - 1
    T = torch.stack([torch.sin(3 * X[:, 0]), X[:, 0] * X[:, 1]], dim=1)
    torch.manual_seed(seed)
    net = (nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 2)) if hidden
           else nn.Linear(2, 2)).to(dtype)

    def loss_fn(y, x):
        return 0.5 * ((y - T) ** 2).sum()

    def loss_at():
        return loss_fn(net(X), X)

    return net, X, loss_fn, loss_at


MAKERS = {
    "gn": lambda p, **kw: GaussNewton(p, **kw),
    "gn-damped": lambda p, **kw: GaussNewton(p, damping=1e-3, **kw),
    "hig": lambda p, **kw: HIG(p, **kw),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", sorted(MAKERS))
@pytest.mark.parametrize("search", ["grid", "backtracking"])
def test_line_search_never_increases_the_loss(dtype, kind, search):
    # lr = 8 makes the full step overshoot; the search must still only go down (or stay).
    net, X, loss_fn, loss_at = make_problem(dtype)
    opt = MAKERS[kind](net.parameters(), lr=8.0, line_search=search)
    closure = opt.physics_closure(net, X, None, loss_fn)
    with torch.no_grad():
        previous = float(loss_at())
    moved = 0
    for _ in range(15):
        before = flat_parameters(net.parameters()).clone()
        opt.step(closure)
        info = opt.last_info["line_search"]
        with torch.no_grad():
            now = float(loss_at())
        # the loss evaluation is deterministic, so "not higher" is exact: no tolerance
        assert now <= previous
        assert info["loss"] == now and info["initial_loss"] == previous
        if info["step_size"] == 0.0:
            assert torch.equal(flat_parameters(net.parameters()), before)
        else:
            assert now < previous and info["step_size"] in STEP_SIZES
            moved += 1
        previous = now
    assert moved > 0


@pytest.mark.parametrize("dtype", DTYPES)
def test_grid_picks_the_best_step_size_of_the_grid(dtype):
    net, X, loss_fn, loss_at = make_problem(dtype)
    sizes = (2.0, 1.0, 0.5, 0.25, 0.125)
    # truncation 1e-3: the pseudo-inverse step of this under-determined J (24 × 37) stays
    # moderate, so some of the factors lower the loss
    opt = GaussNewton(net.parameters(), truncation=1e-3, line_search="grid", step_sizes=sizes)
    closure = opt.physics_closure(net, X, None, loss_fn)
    start = [p.detach().clone() for p in net.parameters()]
    with torch.no_grad():
        loss0 = float(loss_at())
    # the loss at each factor, from the plain steps θ − η·d of a line-search-free optimizer
    losses = []
    for eta in sizes:
        with torch.no_grad():
            for p, p0 in zip(net.parameters(), start, strict=True):
                p.copy_(p0)
        plain = GaussNewton(net.parameters(), lr=eta, truncation=1e-3)
        plain.step(plain.physics_closure(net, X, None, loss_fn))
        with torch.no_grad():
            losses.append(float(loss_at()))
    with torch.no_grad():
        for p, p0 in zip(net.parameters(), start, strict=True):
            p.copy_(p0)
    opt.step(closure)
    info = opt.last_info["line_search"]
    assert info["evaluations"] == len(sizes) + 1
    best = min(range(len(sizes)), key=losses.__getitem__)
    # θ − (η·lr)·d with lr = 1 is the plain step with lr = η: the same rounding, bit for bit
    if losses[best] < loss0:
        assert info["step_size"] == sizes[best] and info["loss"] == losses[best]
    else:
        assert info["step_size"] == 0.0 and info["loss"] == loss0
    if dtype == torch.float64:  # this case does move (so the first branch is exercised)
        assert info["step_size"] > 0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["gn", "hig"])
@pytest.mark.parametrize("search", ["grid", "backtracking"])
def test_full_step_best_gives_the_plain_step_bit_for_bit(dtype, kind, search):
    # y linear in θ: the Gauss-Newton step with η = 1 solves the least-squares problem, so
    # η = 1 is the best factor; HIG (κ = −1/2) is not exact, but here too η = 1 is compared
    # against the plain step only when the search chose it.
    net, X, loss_fn, _ = make_problem(dtype, hidden=False)
    net2, _, _, _ = make_problem(dtype, hidden=False)
    kw = dict(exponent=-1.0) if kind == "hig" else {}
    cls = HIG if kind == "hig" else GaussNewton
    opt = cls(net.parameters(), line_search=search, **kw)
    plain = cls(net2.parameters(), **kw)
    opt.step(opt.physics_closure(net, X, None, loss_fn))
    plain.step(plain.physics_closure(net2, X, None, loss_fn))
    assert opt.last_info["line_search"]["step_size"] == 1.0
    assert torch.equal(flat_parameters(net.parameters()), flat_parameters(net2.parameters()))
    if search == "backtracking":  # η = 1 comes first and lowers the loss: one trial
        assert opt.last_info["line_search"]["evaluations"] == 2


def test_backtracking_takes_the_first_decrease_grid_the_best():
    # y linear in θ: loss(η) = (1 − η)²·L₀ + const along the Gauss-Newton step, so with the
    # factors (0.5, 1.0) backtracking stops at 0.5 (lower than η = 0) and grid takes 1.0.
    chosen = {}
    for search in ("backtracking", "grid"):
        net, X, loss_fn, _ = make_problem(torch.float64, hidden=False)
        opt = GaussNewton(net.parameters(), line_search=search, step_sizes=[0.5, 1.0])
        opt.step(opt.physics_closure(net, X, None, loss_fn))
        chosen[search] = opt.last_info["line_search"]
    assert chosen["backtracking"]["step_size"] == 0.5
    assert chosen["backtracking"]["evaluations"] == 2
    assert chosen["grid"]["step_size"] == 1.0 and chosen["grid"]["evaluations"] == 3


@pytest.mark.parametrize("search", ["grid", "backtracking"])
def test_no_decrease_leaves_the_parameters_and_the_step_count(search):
    net, X, loss_fn, loss_at = make_problem(torch.float64)
    opt = GaussNewton(net.parameters(), line_search=search, step_sizes=[1.0, 0.5])
    start = [p.detach().clone() for p in net.parameters()]

    def penalised():  # any move from the start costs more than it gains
        dist = sum(((p - p0) ** 2).sum() for p, p0 in zip(net.parameters(), start, strict=True))
        return loss_at() + 1e6 * dist

    opt.step(opt.physics_closure(net, X, None, loss_fn), penalised)
    assert opt.last_info["line_search"]["step_size"] == 0.0
    assert all(torch.equal(p, p0) for p, p0 in zip(net.parameters(), start, strict=True))
    assert all("step" not in opt.state[p] for p in net.parameters())


def test_generic_closure_is_the_default_loss_and_the_grid_is_engds():
    net, X, loss_fn, _ = make_problem(torch.float64)
    opt = HIG(net.parameters(), line_search="grid")
    assert opt.step_sizes == tuple(2.0 ** -k for k in range(31))
    calls = []

    def closure():  # a (y, loss) closure: the line search evaluates it for the loss
        calls.append(1)
        y = net(X)
        return y, loss_fn(y, X)

    opt.step(closure)
    assert len(calls) == 1 + 32  # the linearization, the start and 31 trial points


def test_physics_closure_loss_matches_the_closure():
    net, X, loss_fn, _ = make_problem(torch.float64)
    opt = GaussNewton(net.parameters(), line_search="grid")
    closure = opt.physics_closure(net, X, None, loss_fn)
    a, b = float(closure.loss()), float(closure()[1].detach())
    # the same 24 squared residuals, summed by a batched forward or a per-sample vmap: the two
    # sums differ by rounding, at most about 24 ε (the number of terms) relative to the loss
    assert abs(a - b) <= 24 * torch.finfo(torch.float64).eps * abs(b)


def test_bounds_apply_to_every_trial_point():
    net, X, loss_fn, _ = make_problem(torch.float64)
    trial_max = []

    def watched():
        trial_max.append(max(float(p.abs().max()) for p in net.parameters()))
        return loss_fn(net(X), X)

    opt = GaussNewton([{"params": net.parameters(), "bounds": (-0.3, 0.3)}], lr=5.0,
                      line_search="grid", step_sizes=[1.0, 0.5, 0.25])
    opt.step(opt.physics_closure(net, X, None, loss_fn), watched)
    assert max(trial_max[1:]) <= 0.3
    assert max(float(p.abs().max()) for p in net.parameters()) <= 0.3


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(line_search="armijo"), ValueError, "line_search"),
    (dict(line_search=3), ValueError, "line_search"),
    (dict(step_sizes=[1.0, 0.5]), ValueError, "line_search"),
    (dict(line_search="grid", step_sizes=[]), ValueError, "step_sizes"),
    (dict(line_search="grid", step_sizes=[1.0, -0.5]), ValueError, "step_sizes"),
    (dict(line_search="grid", step_sizes=[1.0, float("nan")]), ValueError, "step_sizes"),
    (dict(line_search="grid", step_sizes=[0.0]), ValueError, "step_sizes"),
    (dict(line_search="grid", step_sizes="1.0"), TypeError, "step_sizes"),
    (dict(line_search="grid", step_sizes=0.5), TypeError, "step_sizes"),
])
@pytest.mark.parametrize("cls", [GaussNewton, HIG])
def test_bad_options_are_refused_naming_the_argument(cls, kwargs, error, words):
    net, _, _, _ = make_problem(torch.float64)
    with pytest.raises(error, match=words):
        cls(net.parameters(), **kwargs)


def test_adaptive_and_line_search_are_refused_together():
    net, _, _, _ = make_problem(torch.float64)
    with pytest.raises(ValueError, match="adaptive=True .* line_search"):
        GaussNewton(net.parameters(), adaptive=True, line_search="grid")
    opt = GaussNewton(net.parameters(), line_search="grid")
    opt.add_param_group({"params": [nn.Parameter(torch.zeros(2, dtype=torch.float64))],
                         "adaptive": True, "damping": 1e-3})
    with pytest.raises(ValueError, match="adaptive=True"):
        opt.step(lambda: None)


def test_bad_loss_closure_is_refused_and_the_parameters_are_restored():
    net, X, loss_fn, _ = make_problem(torch.float64)
    opt = GaussNewton(net.parameters(), line_search="grid")
    start = flat_parameters(net.parameters()).clone()
    closure = opt.physics_closure(net, X, None, loss_fn)
    with pytest.raises(TypeError, match="loss_closure"):
        opt.step(closure, loss_closure=1.0)
    calls = []

    def vector_loss():  # fine at the start, a vector at the first trial point
        calls.append(1)
        return torch.zeros(()) if len(calls) == 1 else torch.zeros(3)

    with pytest.raises(ValueError, match="0-d tensor"):
        opt.step(closure, vector_loss)
    assert torch.equal(flat_parameters(net.parameters()), start)


@pytest.mark.parametrize("search", ["grid", "backtracking"])
def test_non_finite_trial_losses_are_never_taken(search):
    net, X, loss_fn, loss_at = make_problem(torch.float64)
    opt = GaussNewton(net.parameters(), line_search=search, step_sizes=[1.0, 0.5, 0.25])
    start = flat_parameters(net.parameters()).clone()
    calls = []

    def nan_away_from_start():  # finite at the start, NaN or inf at every trial point
        calls.append(1)
        return loss_at() if len(calls) == 1 else torch.tensor(float("nan" if len(calls) % 2
                                                                    else "inf"))

    opt.step(opt.physics_closure(net, X, None, loss_fn), nan_away_from_start)
    assert opt.last_info["line_search"]["step_size"] == 0.0
    assert opt.last_info["line_search"]["evaluations"] == 4
    assert torch.equal(flat_parameters(net.parameters()), start)


@pytest.mark.parametrize("cls, group, words", [
    (GaussNewton, {"lr": float("nan")}, "lr must be finite"),
    (GaussNewton, {"lr": -1.0}, "lr must be >"),
    (GaussNewton, {"damping": -1.0}, "damping must be >="),
    (GaussNewton, {"adaptive": True, "damping": 1e-3, "damping_factor": 0.5}, "damping_factor"),
    (GaussNewton, {"max_trials": 0}, "max_trials"),
    (GaussNewton, {"relative": "no"}, "relative must be True or False"),
    (HIG, {"lr": float("nan")}, "lr must be finite"),
    (HIG, {"truncation": -1.0}, "truncation"),
])
def test_a_parameter_groups_settings_are_checked_as_the_constructors(cls, group, words):
    """Settings given per parameter group (at construction, by add_param_group or in a loaded
    state_dict) pass the constructor's checks: a NaN lr turned the parameters to NaN without a
    warning, lr = −1 stepped uphill, a negative damping counted as 0.  The group is refused
    before it is added, and the user's dict is left as it was."""
    w = nn.Parameter(torch.ones(3, dtype=torch.float64))
    with pytest.raises((ValueError, TypeError), match=words):
        cls([{"params": [w], **group}])
    opt = cls([nn.Parameter(torch.ones(2, dtype=torch.float64))])
    given = {"params": [w], **group}
    kept = dict(given)
    with pytest.raises((ValueError, TypeError), match=words):
        opt.add_param_group(given)
    assert len(opt.param_groups) == 1 and given == kept
    state = opt.state_dict()
    before = dict(opt.param_groups[0])
    state["param_groups"][0].update({k: v for k, v in group.items()})
    with pytest.raises((ValueError, TypeError), match=words):
        opt.load_state_dict(state)
    assert opt.param_groups[0] == before  # refused before anything was loaded


def test_a_closure_whose_y_is_detached_is_refused():
    """y detached from the parameters in the closure: its Jacobian was all zeros and the step a
    silent no-op (counted, the parameters unchanged); now a ValueError that says so."""
    x = torch.randn(6, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = GaussNewton([w])

    def closure():
        y = torch.tanh(x @ w).detach().requires_grad_()
        return y, 0.5 * ((y - 0.3) ** 2).sum()

    with pytest.raises(ValueError, match="depends on none of the optimizer's parameters"):
        opt.step(closure)
    assert torch.equal(w.detach(), torch.ones(3, dtype=torch.float64))
