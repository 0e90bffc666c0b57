"""HIG and Gauss-Newton torch.optim optimizers: steps equal the core directions."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from newtonkit.linalg import gauss_newton_step, half_inverse
from newtonkit_torch.jacobians import flat_parameters, per_sample_jacobian
from newtonkit_torch.optim import HIG, GaussNewton

GEN = torch.Generator().manual_seed(0)
X = torch.rand(16, 2, dtype=torch.float64, generator=GEN) * 2 - 1
J_SHAPE = (32, 32)  # 16 samples × 2 outputs, 6·2 + 6 + 2·6 + 2 parameters


def make_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 2)).double()


def physics(out, x):
    return torch.stack([out[0], 0.1 * out[1] + out[0] * x[0]])


def target(x):
    return torch.stack([torch.sin(3 * x[..., 0]), torch.cos(2 * x[..., 1])], dim=-1)


def loss_fn(y, x):
    return 0.5 * ((y - target(x)) ** 2).sum(-1).mean()


def core_step(net, exponent=-0.5, truncation=1e-6, lr=1.0, damping=None):
    """θ − lr·J^κ g computed directly from the core on the per-sample Jacobian."""
    J, Y = per_sample_jacobian(net, X, physics, return_outputs=True)
    y = Y.requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(y, X), y)
    g = g.reshape(-1)
    if damping is None:
        d, _ = half_inverse(J, g, exponent, truncation)
    else:
        step, _ = gauss_newton_step(J, g, damping=damping)
        d = -step
    return flat_parameters(net.parameters()) - lr * d


def generic_closure(net):
    def closure():
        y = torch.func.vmap(physics)(net(X), X)
        return y, loss_fn(y, X)
    return closure


@pytest.mark.parametrize("kind", ["physics", "generic"])
@pytest.mark.parametrize("make_opt, core", [
    (lambda p: HIG(p, lr=0.7), dict(lr=0.7)),
    (lambda p: HIG(p, exponent=-1.0, truncation=1e-3), dict(exponent=-1.0, truncation=1e-3)),
    (lambda p: GaussNewton(p, lr=0.5), dict(exponent=-1.0, lr=0.5)),
    (lambda p: GaussNewton(p, damping=1e-2), dict(damping=1e-2)),
])
def test_step_equals_core_direction(kind, make_opt, core):
    net = make_net()
    expected = core_step(net, **core)
    opt = make_opt(net.parameters())
    closure = opt.physics_closure(net, X, physics, loss_fn) if kind == "physics" \
        else generic_closure(net)
    loss = opt.step(closure)
    torch.testing.assert_close(loss, loss_fn(torch.func.vmap(physics)(make_net()(X), X), X))
    torch.testing.assert_close(flat_parameters(net.parameters()), expected, rtol=1e-9,
                               atol=1e-10)
    info = opt.last_info["solves"][0]
    if "damping" not in core:  # a half-inverse solve reports the kept rank
        assert 0 < info.rank <= min(J_SHAPE)


def test_param_groups_share_one_solve_and_scale_their_part():
    net = make_net()
    expected_full = core_step(net, lr=1.0)
    theta0 = flat_parameters(net.parameters())
    opt = HIG([{"params": net[0].parameters(), "lr": 0.5}, {"params": net[2].parameters()}])
    opt.step(opt.physics_closure(net, X, physics, loss_fn))
    n0 = sum(p.numel() for p in net[0].parameters())
    d = theta0 - expected_full  # lr 1 step
    expected = torch.cat([theta0[:n0] - 0.5 * d[:n0], theta0[n0:] - d[n0:]])
    torch.testing.assert_close(flat_parameters(net.parameters()), expected, rtol=1e-9,
                               atol=1e-10)
    assert len(opt.last_info["solves"]) == 1


def test_groups_with_different_settings_are_solved_separately():
    net = make_net()
    opt = HIG([{"params": net[0].parameters()},
               {"params": net[2].parameters(), "exponent": -1.0}])
    J, Y = per_sample_jacobian(net, X, physics, return_outputs=True)
    y = Y.requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(y, X), y)
    n0 = sum(p.numel() for p in net[0].parameters())
    d0, _ = half_inverse(J[:, :n0], g.reshape(-1), -0.5, 1e-6)
    d1, _ = half_inverse(J[:, n0:], g.reshape(-1), -1.0, 1e-6)
    expected = flat_parameters(net.parameters()) - torch.cat([d0, d1])
    opt.step(opt.physics_closure(net, X, physics, loss_fn))
    assert len(opt.last_info["solves"]) == 2
    torch.testing.assert_close(flat_parameters(net.parameters()), expected, rtol=1e-9,
                               atol=1e-10)


def test_closure_with_jacobian_in_optimizer_order():
    net = make_net()
    expected = core_step(net)
    opt = HIG(net.parameters())

    def closure():
        J, Y = per_sample_jacobian(net, X, physics, return_outputs=True)
        y = Y.requires_grad_(True)
        return y, loss_fn(y, X), J

    opt.step(closure)
    torch.testing.assert_close(flat_parameters(net.parameters()), expected, rtol=1e-9,
                               atol=1e-10)


def test_state_dict_round_trip():
    net = make_net()
    opt = HIG([{"params": net[0].parameters(), "lr": 0.3},
               {"params": net[2].parameters(), "truncation": 1e-4}], exponent=-0.4)
    for _ in range(2):
        opt.step(opt.physics_closure(net, X, physics, loss_fn))
    sd = copy.deepcopy(opt.state_dict())
    net2 = copy.deepcopy(net)
    opt2 = HIG([{"params": net2[0].parameters()}, {"params": net2[2].parameters()}], lr=9.0)
    opt2.load_state_dict(sd)
    for key in ("lr", "exponent", "truncation"):
        assert [g[key] for g in opt2.param_groups] == [g[key] for g in opt.param_groups]
    assert [opt2.state[p]["step"] for p in net2.parameters()] == [2] * 4
    opt.step(opt.physics_closure(net, X, physics, loss_fn))
    opt2.step(opt2.physics_closure(net2, X, physics, loss_fn))
    torch.testing.assert_close(flat_parameters(net2.parameters()),
                               flat_parameters(net.parameters()), rtol=0, atol=0)
    gn = GaussNewton(net.parameters(), damping=0.1)
    gn2 = GaussNewton(net2.parameters())
    gn2.load_state_dict(gn.state_dict())
    assert gn2.param_groups[0]["damping"] == 0.1


@pytest.mark.parametrize("make_opt, steps, tol", [
    (lambda p: HIG(p), 100, 3e-4),
    (lambda p: GaussNewton(p, truncation=1e-4), 100, 3e-4),
    (lambda p: GaussNewton(p, damping=1e-3), 100, 3e-4),
    (lambda p: GaussNewton(p, adaptive=True), 100, 3e-4),
])
def test_small_regression_is_trained(make_opt, steps, tol):
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)).double()
    x = torch.linspace(-1, 1, 40, dtype=torch.float64)[:, None]

    def lf(y, x):
        return 0.5 * ((y - torch.sin(2 * x)) ** 2).sum(-1).mean()

    opt = make_opt(net.parameters())
    first = None
    for k in range(steps):
        batch = x[k % 2::2]  # two alternating mini-batches
        loss = opt.step(opt.physics_closure(net, batch, None, lf))
        first = loss if first is None else first
    with torch.no_grad():
        final = float(lf(net(x), x))
    assert final < tol < float(first)


def test_errors():
    net = make_net()
    opt = HIG(net.parameters())
    with pytest.raises(ValueError, match="needs a closure"):
        opt.step()
    with pytest.raises(TypeError, match=r"\(y, loss\)"):
        opt.step(lambda: torch.tensor(1.0))
    with pytest.raises(ValueError, match="expected"):
        opt.step(lambda: (lambda y: (y, y.sum(), torch.zeros(3, 3)))(
            net(X)))
    with pytest.raises(ValueError, match="lr"):
        HIG(net.parameters(), lr=0.0)
    with pytest.raises(ValueError, match="damping"):
        GaussNewton(net.parameters(), damping=-1.0)
    theta = flat_parameters(net.parameters())

    def bad():
        y = net(X) * float("nan")
        return y, y.sum()

    with pytest.raises(FloatingPointError, match="not finite"):
        opt.step(bad)
    torch.testing.assert_close(flat_parameters(net.parameters()), theta)


def _jacobian_and_gradient(net):
    J, Y = per_sample_jacobian(net, X, physics, return_outputs=True)
    y = Y.requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(y, X), y)
    return J, g.reshape(-1)


def test_adaptive_damping_step_is_lm_with_relative_mu_and_lowers_tau():
    """A kept adaptive step is θ − lr (JᵀJ + τσ²_max I)⁻¹ Jᵀg (truncation 0: nothing dropped)."""
    net = make_net()
    J, g = _jacobian_and_gradient(net)
    s_max = torch.linalg.svdvals(J)[0]
    step, _ = gauss_newton_step(J, g, damping=float(1e-2 * s_max ** 2))
    expected = flat_parameters(net.parameters()) + 0.5 * step
    opt = GaussNewton(net.parameters(), lr=0.5, truncation=0.0, damping=1e-2, adaptive=True)
    loss0 = opt.step(opt.physics_closure(net, X, physics, loss_fn))
    info = opt.last_info["solves"][0]
    assert info["accepted"] and info["trials"] == 1 and info["damping"] == 1e-2
    torch.testing.assert_close(flat_parameters(net.parameters()), expected, rtol=1e-9,
                               atol=1e-11)
    with torch.no_grad():
        assert float(loss_fn(torch.func.vmap(physics)(net(X), X), X)) < float(loss0)
    assert all(opt.state[p]["damping"] == pytest.approx(1e-2 / 3) for p in net.parameters())
    assert all(opt.state[p]["step"] == 1 for p in net.parameters())


def test_adaptive_damping_rejects_steps_that_raise_the_loss():
    """Every trial raises the loss: parameters restored bit for bit, τ raised per trial."""
    net = make_net()
    theta = flat_parameters(net.parameters()).clone()
    opt = GaussNewton(net.parameters(), damping=1e-3, adaptive=True, damping_factor=2.0,
                      max_trials=4)
    inner = opt.physics_closure(net, X, physics, loss_fn)
    calls = []

    def closure():  # the trial points (every call after the first) look worse
        y, loss, J = inner()
        calls.append(1)
        return y, loss + (1e6 if len(calls) > 1 else 0.0), J

    opt.step(closure)
    info = opt.last_info["solves"][0]
    # the last τ tried (1e-3·2³); the state holds the next one (1e-3·2⁴)
    assert len(calls) == 5 and info == {"damping": 1e-3 * 2 ** 3, "trials": 4,
                                        "accepted": False, "rank": info["rank"]}
    assert torch.equal(flat_parameters(net.parameters()), theta)
    assert all(opt.state[p]["damping"] == 1e-3 * 2 ** 4 for p in net.parameters())
    assert all("step" not in opt.state[p] for p in net.parameters())


def test_adaptive_damping_survives_state_dict():
    net = make_net()
    opt = GaussNewton(net.parameters(), adaptive=True)
    for _ in range(3):
        opt.step(opt.physics_closure(net, X, physics, loss_fn))
    net2 = copy.deepcopy(net)
    opt2 = GaussNewton(net2.parameters(), adaptive=True, damping=0.5)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))
    assert [opt2.state[p]["damping"] for p in net2.parameters()] == \
        [opt.state[p]["damping"] for p in net.parameters()]
    opt.step(opt.physics_closure(net, X, physics, loss_fn))
    opt2.step(opt2.physics_closure(net2, X, physics, loss_fn))
    assert torch.equal(flat_parameters(net2.parameters()), flat_parameters(net.parameters()))


@pytest.mark.parametrize("kwargs, match", [
    (dict(adaptive=True, damping=0.0), "damping must be > 0"),
    (dict(adaptive=True, damping_factor=1.0), "damping_factor"),
    (dict(adaptive=True, max_trials=0), "max_trials"),
    (dict(adaptive=True, max_trials=2.5), "max_trials"),
])
def test_adaptive_damping_options_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        GaussNewton(make_net().parameters(), **kwargs)


def test_adaptive_damping_needs_one_joint_solve():
    net = make_net()
    opt = GaussNewton([{"params": net[0].parameters()},
                       {"params": net[2].parameters(), "truncation": 1e-3}], adaptive=True)
    with pytest.raises(ValueError, match="one joint solve"):
        opt.step(opt.physics_closure(net, X, physics, loss_fn))


def test_adaptive_damping_restores_parameters_when_the_trial_closure_raises():
    net = make_net()
    theta = flat_parameters(net.parameters()).clone()
    opt = GaussNewton(net.parameters(), adaptive=True)
    inner = opt.physics_closure(net, X, physics, loss_fn)
    calls = []

    def closure():
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt
        return inner()

    with pytest.raises(KeyboardInterrupt):
        opt.step(closure)
    assert torch.equal(flat_parameters(net.parameters()), theta)
