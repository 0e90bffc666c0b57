"""HIG and Gauss-Newton optimizers: frozen parameters, norm layers, bounded damping, state_dict
checks and detached results (issue 13, points 2b, 2g, 2j)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from newtonkit.linalg import gauss_newton_step, half_inverse
from newtonkit_torch.jacobians import flat_parameters, per_sample_jacobian
from newtonkit_torch.optim import HIG, GaussNewton

EPS = torch.finfo(torch.float64).eps
GEN = torch.Generator().manual_seed(0)
X = torch.rand(16, 2, dtype=torch.float64, generator=GEN) * 2 - 1


def make_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(2, 6), nn.Tanh(), nn.Linear(6, 2)).double()


def physics(out, x):
    return torch.stack([out[0], 0.1 * out[1] + out[0] * x[0]])


def loss_fn(y, x):
    target = torch.stack([torch.sin(3 * x[..., 0]), torch.cos(2 * x[..., 1])], dim=-1)
    return 0.5 * ((y - target) ** 2).sum(-1).mean()


def generic_closure(net, x=X, phys=physics, lf=loss_fn):
    def closure():
        out = net(x)
        y = out if phys is None else torch.func.vmap(phys)(out, x)
        return y, lf(y, x)
    return closure


def make_closure(kind, opt, net):
    return opt.physics_closure(net, X, physics, loss_fn) if kind == "physics" \
        else generic_closure(net)


def snapshot(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


# -- 2b: frozen parameters ---------------------------------------------------------------------

OPTIMIZERS = [
    (lambda p: HIG(p), dict(exponent=-0.5)),
    (lambda p: GaussNewton(p), dict(exponent=-1.0)),
    (lambda p: GaussNewton(p, damping=1e-2), dict(damping=1e-2)),
]


def core_direction(net, exponent=None, damping=None):
    """The direction on the Jacobian of the trainable parameters only, and J's condition."""
    J, Y = per_sample_jacobian(net, X, physics, return_outputs=True)  # default: trainable
    y = Y.requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(y, X), y)
    if damping is None:
        d, _ = half_inverse(J, g.reshape(-1), exponent, 1e-6)
    else:
        step, _ = gauss_newton_step(J, g.reshape(-1), damping=damping)
        d = -step
    return d, J.shape, torch.linalg.svdvals(J)


@pytest.mark.parametrize("kind", ["physics", "generic"])
@pytest.mark.parametrize("make_opt, core", OPTIMIZERS)
def test_frozen_parameters_stay_untouched_and_get_no_column(kind, make_opt, core):
    net = make_net()
    net[0].weight.requires_grad_(False)
    net[2].bias.requires_grad_(False)
    before = snapshot(net)
    trainable = [net[0].bias, net[2].weight]
    d, (m, n), s = core_direction(net, **core)
    assert n == 6 + 12
    opt = make_opt(net.parameters())
    opt.step(make_closure(kind, opt, net))
    assert torch.equal(net[0].weight, before["0.weight"])
    assert torch.equal(net[2].bias, before["2.bias"])
    assert "step" not in opt.state[net[0].weight] and opt.state[net[0].bias]["step"] == 1
    # J of the two closures differs by rounding (‖δJ‖ ≤ m·ε·‖J‖), which cannot move a σ across
    # the cutoff 1e-6·σ_max (all kept); the (pseudo-)inverse step then moves by at most
    # ~κ²·‖δJ‖/‖J‖ relatively (Wedin), far below the O(1) change a frozen column would make.
    assert float(s[-1] - 1e-6 * s[0]) > m * EPS * float(s[0])
    cond = float(s[0] / s[-1])
    assert m * EPS * cond ** 2 < 1e-3
    moved = flat_parameters([before["0.bias"], before["2.weight"]]) - flat_parameters(trainable)
    torch.testing.assert_close(moved, d, rtol=0, atol=m * EPS * cond ** 2 * float(d.norm()))


@pytest.mark.parametrize("kind", ["physics", "generic"])
def test_frozen_parameters_stay_untouched_with_adaptive_damping(kind):
    net = make_net()
    net[0].weight.requires_grad_(False)
    before = snapshot(net)
    opt = GaussNewton(net.parameters(), adaptive=True)
    for _ in range(3):
        opt.step(make_closure(kind, opt, net))
    assert opt.last_info["solves"][0]["accepted"]
    assert torch.equal(net[0].weight, before["0.weight"])
    assert not torch.equal(net[2].weight, before["2.weight"])
    # unfreezing it (it has no τ in its state) keeps the current τ of the others
    tau = opt.state[net[0].bias]["damping"]
    net[0].weight.requires_grad_(True)
    opt.step(make_closure(kind, opt, net))
    info = opt.last_info["solves"][0]
    assert info["damping"] == tau * 3 ** (info["trials"] - 1)  # the τ of the kept step


@pytest.mark.parametrize("rule", [{}, dict(adaptive=True), dict(line_search="grid")])
def test_a_nan_loss_with_a_finite_gradient_is_a_divergence(rule):
    """A Poisson-like loss y − t·log y at y < 0 is NaN while ∂L/∂y = 1 − t/y is finite: the
    step used to be taken without a word (adaptive: every trial rejected, τ growing)."""
    theta = torch.tensor([-0.5, 1.0], dtype=torch.float64, requires_grad=True)
    t = torch.tensor([1.0, 2.0], dtype=torch.float64)
    opt = GaussNewton([theta], **rule)
    before = theta.detach().clone()

    def closure():
        y = theta * 1.0
        return y, (y - t * torch.log(y)).sum()
    with pytest.raises(FloatingPointError, match="not finite"):
        opt.step(closure)
    assert torch.equal(theta, before)


def test_adaptive_reports_the_last_damping_tried_when_none_is_kept():
    """At the exact minimum no trial lowers the loss: ``damping`` is the last τ tried
    (τ₀·3^(trials−1)); the state holds the next one (τ₀·3^trials)."""
    theta = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    A = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]], dtype=torch.float64)
    target = (A @ theta).detach()
    opt = GaussNewton([theta], damping=1e-3, adaptive=True, max_trials=2)

    def closure():
        y = A @ theta - target
        return y, 0.5 * (y * y).sum()
    opt.step(closure)
    info = opt.last_info["solves"][0]
    assert not info["accepted"] and info["trials"] == 2
    assert info["damping"] == 1e-3 * 3 and opt.state[theta]["damping"] == 1e-3 * 9


def test_a_parameter_frozen_between_steps_is_left_alone_by_the_same_closure():
    net = make_net()
    opt = HIG([{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": 0.5}])
    closure = opt.physics_closure(net, X, physics, loss_fn)
    opt.step(closure)
    for p in net[2].parameters():  # a whole group frozen
        p.requires_grad_(False)
    before = snapshot(net)
    opt.step(closure)
    assert torch.equal(net[2].weight, before["2.weight"])
    assert torch.equal(net[2].bias, before["2.bias"])
    assert not torch.equal(net[0].weight, before["0.weight"])
    assert len(opt.last_info["solves"]) == 1


@pytest.mark.parametrize("make_opt", [HIG, GaussNewton])
def test_all_parameters_frozen_is_an_error(make_opt):
    net = make_net()
    net.requires_grad_(False)
    opt = make_opt(net.parameters())
    with pytest.raises(ValueError, match="none of its parameters requires grad"):
        opt.step(opt.physics_closure(net, X, physics, loss_fn))


# -- 2b: batch norm ----------------------------------------------------------------------------

def bn_net(**bn):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(2, 6), nn.BatchNorm1d(6, **bn), nn.Tanh(),
                         nn.Linear(6, 2)).double()


@pytest.mark.parametrize("make_opt", [HIG, GaussNewton])
def test_physics_closure_refuses_batch_norm_in_train_mode_naming_the_layer(make_opt):
    net = bn_net()
    before = snapshot(net)
    opt = make_opt(net.parameters())
    with pytest.raises(ValueError, match=r"'1' \(BatchNorm1d\) is in train mode.*model\.eval\(\)"):
        opt.step(opt.physics_closure(net, X, physics, loss_fn))
    with pytest.raises(ValueError, match=r"'1' \(BatchNorm1d\)"):
        per_sample_jacobian(net, X, physics)
    after = snapshot(net)
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_per_sample_jacobian_refuses_batch_norm_without_running_statistics():
    net = bn_net(track_running_stats=False).eval()  # still normalises with batch statistics
    with pytest.raises(ValueError, match=r"'1' \(BatchNorm1d\).*track_running_stats=False"):
        per_sample_jacobian(net, X, physics)


def test_instance_norm_without_running_statistics_is_per_sample_and_accepted():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(2, 3, 3), nn.InstanceNorm1d(3, affine=True), nn.Flatten(),
                        nn.Linear(9, 2)).double()
    x = torch.rand(4, 2, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    J = per_sample_jacobian(net, x)
    ref = torch.autograd.functional.jacobian(
        lambda *ps: torch.func.functional_call(
            net, dict(zip([k for k, _ in net.named_parameters()], ps, strict=True)), (x,)),
        tuple(p.detach() for p in net.parameters()))
    ref = torch.cat([r.reshape(8, -1) for r in ref], dim=1)
    # same derivatives by two autograd routes: entrywise rounding ~ a few ε·max|J|
    torch.testing.assert_close(J, ref, rtol=0, atol=100 * EPS * float(ref.abs().max()))


def test_batch_norm_in_eval_mode_keeps_running_statistics():
    net = bn_net()
    net(X * 3 + 1)  # non-trivial running statistics
    net.eval()
    before = snapshot(net)
    opt = HIG(net.parameters())
    opt.step(opt.physics_closure(net, X, physics, loss_fn))
    for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(net.state_dict()[k], before[k])
    assert not torch.equal(net[0].weight, before["0.weight"])


def test_batch_norm_in_train_mode_with_a_whole_batch_closure_updates_statistics_per_call():
    net = bn_net()
    ref = copy.deepcopy(net)
    with torch.no_grad():
        ref(X)  # one ordinary train-mode forward
    opt = GaussNewton(net.parameters())
    opt.step(generic_closure(net))
    for k in ("1.running_mean", "1.running_var", "1.num_batches_tracked"):
        assert torch.equal(net.state_dict()[k], ref.state_dict()[k])
    net2 = bn_net()
    opt2 = GaussNewton(net2.parameters(), adaptive=True)
    opt2.step(generic_closure(net2))
    info = opt2.last_info["solves"][0]
    assert int(net2[1].num_batches_tracked) == 1 + info["trials"]


# -- 2g: bounded adaptive damping --------------------------------------------------------------

def linear_problem(seed=1):
    """A model linear in θ and a stream of fresh noisy mini-batches (exact fit impossible)."""
    torch.manual_seed(seed)
    net = nn.Linear(3, 2).double()
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(2, 3, generator=gen, dtype=torch.float64)

    def closure(opt, c):
        x = torch.randn(8, 3, generator=gen, dtype=torch.float64)
        t = x @ W.T + 0.1 * torch.randn(8, 2, generator=gen, dtype=torch.float64)
        return opt.physics_closure(net, x, None, lambda y, x: 0.5 * c * ((y - t) ** 2).sum())

    return net, closure


def test_adaptive_damping_has_a_floor_and_recovers_in_few_rejected_trials():
    """Loss ½c‖y − t‖², y linear in θ: every kept residual component is multiplied by
    1 − cσ²/(σ² + τσ_max²), inside (−1, 1) (loss lowered) for any τ when c = 1, and for
    τ > (c − 2)/2 in general.  So with c = 1 every step is kept (τ falls to its floor ε), and
    after c jumps to 100 the rejected trials τ = τ_floor·ν^k ≤ (c − 2)/2 number at most
    ⌊log_ν((c − 2)/(2ε))⌋ + 1."""
    net, closure = linear_problem()
    opt = GaussNewton(net.parameters(), adaptive=True)  # τ₀ = 1e-3, ν = 3
    for _ in range(100):  # unbounded, τ would reach 1e-3/3^100 ≈ 2e-51
        opt.step(closure(opt, 1.0))
        info = opt.last_info["solves"][0]
        assert info["accepted"] and info["damping"] >= EPS
        assert opt.state[net.weight]["damping"] >= EPS
    assert opt.state[net.weight]["damping"] == EPS
    c, nu = 100.0, 3.0
    bound = math.floor(math.log((c - 2) / 2 / EPS, nu)) + 1  # 37
    rejected = 0
    for _ in range(bound // 10 + 2):  # max_trials = 10 per step
        opt.step(closure(opt, c))
        info = opt.last_info["solves"][0]
        rejected += info["trials"] - info["accepted"]
        if info["accepted"]:
            break
    assert info["accepted"] and rejected <= bound


def test_adaptive_damping_has_a_cap_and_recovers_from_it():
    """Trials made to look worse drive τ up by ν per trial; capped at 1/√ε it stays finite
    (unbounded it overflows to inf after 32 steps here, and a step with τ = inf is never kept),
    and at the cap the next honest step is kept (c = 1: any τ lowers the loss, see above)."""
    net, closure = linear_problem()
    opt = GaussNewton(net.parameters(), adaptive=True, damping_factor=10.0)
    for _ in range(40):
        inner, calls = closure(opt, 1.0), []

        def penalised(inner=inner, calls=calls):  # every trial (not the first call) is worse
            y, loss, J = inner()
            calls.append(1)
            return y, loss + (1e6 if len(calls) > 1 else 0.0), J

        opt.step(penalised)
        assert not opt.last_info["solves"][0]["accepted"]
        assert opt.state[net.weight]["damping"] <= EPS ** -0.5
    assert opt.state[net.weight]["damping"] == EPS ** -0.5
    opt.step(closure(opt, 1.0))
    info = opt.last_info["solves"][0]
    assert info["accepted"] and info["trials"] == 1
    assert opt.state[net.weight]["damping"] == EPS ** -0.5 / 10


# -- 2j: state_dict of another optimizer ---------------------------------------------------------

@pytest.mark.parametrize("make_src, make_dst, match", [
    (lambda p: GaussNewton(p), HIG, r"HIG\.load_state_dict: this is a GaussNewton state_dict"),
    (lambda p: GaussNewton(p, adaptive=True), HIG, r"a GaussNewton state_dict, not a HIG"),
    (lambda p: HIG(p), GaussNewton, r"GaussNewton\.load_state_dict: this is a HIG state_dict"),
    (lambda p: torch.optim.Adam(p), HIG, r"HIG\.load_state_dict: this is another optimizer's "
                                         r"state_dict.*'betas'"),
    (lambda p: torch.optim.Adam(p), GaussNewton, r"not a GaussNewton one.*'betas'"),
])
def test_load_state_dict_refuses_another_optimizers_state(make_src, make_dst, match):
    net = make_net()
    src = make_src(net.parameters())
    if isinstance(src, torch.optim.Adam):
        src.zero_grad()
        loss_fn(torch.func.vmap(physics)(net(X), X), X).backward()
        src.step()
    else:
        src.step(src.physics_closure(net, X, physics, loss_fn))
    dst = make_dst(net.parameters())
    settings = [{k: v for k, v in g.items() if k != "params"} for g in dst.param_groups]
    with pytest.raises(ValueError, match=match):
        dst.load_state_dict(copy.deepcopy(src.state_dict()))
    assert [{k: v for k, v in g.items() if k != "params"} for g in dst.param_groups] == settings
    assert not dst.state
    dst.step(dst.physics_closure(net, X, physics, loss_fn))  # still usable


def test_state_dict_without_the_class_name_of_the_same_optimizer_loads():
    net = make_net()
    opt = GaussNewton(net.parameters(), adaptive=True, damping=0.5)
    opt.step(opt.physics_closure(net, X, physics, loss_fn))
    sd = copy.deepcopy(opt.state_dict())
    assert sd.pop("optimizer") == "GaussNewton"
    opt2 = GaussNewton(net.parameters(), adaptive=True)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["damping"] == 0.5
    assert opt2.state[net[0].weight]["damping"] == opt.state[net[0].weight]["damping"]


# -- results carry no autograd history ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["physics", "generic"])
@pytest.mark.parametrize("make_opt", [
    lambda p: HIG(p), lambda p: GaussNewton(p, damping=1e-2),
    lambda p: GaussNewton(p, adaptive=True)])
def test_steps_and_results_carry_no_autograd_history(kind, make_opt):
    net = make_net()
    x = X.clone().requires_grad_(True)  # inputs with history: nothing of it may leak
    opt = make_opt(net.parameters())
    closure = opt.physics_closure(net, x, physics, loss_fn) if kind == "physics" \
        else generic_closure(net, x)
    loss = opt.step(closure)
    assert loss.grad_fn is None and not loss.requires_grad
    for p in net.parameters():
        assert p.is_leaf and p.grad_fn is None and p.requires_grad and p.grad is None
    for info in opt.last_info["solves"]:
        values = info.values() if isinstance(info, dict) else vars(info).values()
        assert not any(isinstance(v, torch.Tensor) and v.requires_grad for v in values)
