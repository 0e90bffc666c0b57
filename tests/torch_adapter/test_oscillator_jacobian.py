"""The chain-rule Jacobian of the oscillator benchmark against the vmap(jacrev) reference.

``chained_jacobian`` with ``rollout_jacobian`` (``examples/oscillators.py``: ``J_i =
∂x(T)/∂u · ∂f_θ(x_i)/∂θ``, the rollout Jacobian as a product of RK4 step Jacobians) must equal
``per_sample_jacobian`` (reverse mode through network and rollout together) to rounding, with
the bound derived below; a perturbation of one step Jacobian by 1e-9 must break it.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from newtonkit_torch.jacobians import chained_jacobian, per_sample_jacobian, rollout_jacobian

_spec = importlib.util.spec_from_file_location(
    "oscillators", Path(__file__).resolve().parents[2] / "examples" / "oscillators.py")
osc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(osc)

B = 6  # samples: the network Jacobian N (B × 96 × 2956) is formed for the bound


def setup(dtype):
    x = osc.make_data(22, n=B).to(dtype)
    net = osc.make_net(22).to(dtype)
    with torch.no_grad():  # a few HIG-sized updates away from the zero-bias start
        for p in net.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1),
                                      dtype=dtype))
    return x, net


def rollout_steps(x0, u):
    """The states ``s_0 … s_T`` of one sample's rollout (float64) and the RK4 step Jacobians
    ``(A_t, b_t) = ∂s_(t+1)/∂(s_t, u_t)``, taken by ``jacrev`` at the visited states,
    independently of ``rollout_jacobian``."""
    xs = [x0]
    for t in range(osc.NT):
        xs.append(osc.rk4_step(xs[t], u[t]))
    steps = [torch.func.jacrev(osc.rk4_step, argnums=(0, 1))(xs[t], u[t])
             for t in range(osc.NT)]
    return xs, steps


def magnitude(net, x):
    """``M = P_abs · |N|`` per sample (``(B·4, n)``, float64), the scale of the rounding bound.

    ``P_abs[:, t] = |A_95| ⋯ |A_(t+1)| |b_t|`` from the RK4 step Jacobians
    (:func:`rollout_steps`), ``N`` the network Jacobian ``∂f_θ(x_i)/∂θ``.
    """
    x, net = x.double(), net.double()
    with torch.no_grad():
        u = net(x)
    P = torch.zeros(B, 4, osc.NT, dtype=torch.float64)
    for i in range(B):
        _, steps = rollout_steps(x[i], u[i])
        L = torch.eye(4, dtype=torch.float64)
        for t in range(osc.NT - 1, -1, -1):
            A, b = steps[t]
            P[i, :, t] = L @ b.abs()
            L = L @ A.abs()
    params = {k: v.detach() for k, v in net.named_parameters()}
    N = torch.func.vmap(torch.func.jacrev(
        lambda p, xi: torch.func.functional_call(net, p, (xi.unsqueeze(0),))[0]),
        in_dims=(None, 0))(params, x)
    N = torch.cat([N[k].reshape(B, osc.NT, -1) for k in params], dim=2).abs()
    return (P @ N).reshape(B * 4, -1)


def output_bound(net, x, eps):
    """A first-order bound ``(B, 4)`` on the difference of the outputs x(T) of two
    evaluations that round differently (batched against vmapped matrix products).

    The controls u = f_θ(x) of each route are within ``K_NET·ε·u_abs`` of the exact ones
    (Higham, Thm 3.5 for the four layers' products, ≤ 21 terms each; ``u_abs`` is the network
    with |W|, |b| and |x|, ReLU being the identity there), and each RK4 step adds at most 64
    roundings of its state s_(t+1); both propagate to x(T) through the signed step Jacobians
    ``L_t = A_95 ⋯ A_(t+1)``:  Σ_t |L_t b_t|·2·K_NET·ε·u_abs,t + |L_t|·2·64·ε·|s_(t+1)|."""
    x, net = x.double(), net.double()
    with torch.no_grad():
        u = net(x)
        h = x.abs()
        for m in net:
            if isinstance(m, nn.Linear):
                h = h @ m.weight.abs().T + m.bias.abs()
    bound = torch.zeros(B, 4, dtype=torch.float64)
    for i in range(B):
        xs, steps = rollout_steps(x[i], u[i])
        L = torch.eye(4, dtype=torch.float64)
        for t in range(osc.NT - 1, -1, -1):
            A, b = steps[t]
            bound[i] += ((L @ b).abs() * 2 * K_NET * eps * h[i, t]
                         + L.abs() @ xs[t + 1].abs() * 2 * 64 * eps)
            L = L @ A
    return bound


K_NET = 4 * 21


# Rounding bound.  Both routes compute every entry of J_i = P_i N_i from the same elementary
# derivatives in another order (reverse mode through 96 RK4 steps and the network, against
# step Jacobians A_t, b_t multiplied out and pulled back through the network).  One RK4 step
# is ≤ 64 rounded operations per entry (4 stages of the ODE plus the combination), a product
# of 4 × 4 matrices adds ≤ 4 per step, the network's reverse products ≤ 4 layers × 96 terms:
# with K = T·(64 + 4) + 4·96 rounded operations along any path, each route's error is
# ≤ γ_K·M ≈ K·ε·M (Higham, Thm 3.5: products of matrices, bounded by the products of the
# absolute values), and the difference of two ≤ 2·K·ε·M.
K = osc.NT * (64 + 4) + 4 * 96


def assert_rounding_close(got, want, M, eps):
    err = (got.double() - want.double()).abs()
    bound = 2 * K * eps * M
    worst = float((err / bound.clamp_min(1e-300)).max())
    assert bool((err <= bound).all()), f"max |ΔJ| / (2Kε·M) = {worst:.3g} > 1"


def chain(net, x):
    return chained_jacobian(net, x, osc.physics_jacobian, return_outputs=True)


def test_float64_equals_reverse_mode_reference():
    x, net = setup(torch.float64)
    J, Y = chain(net, x)
    J_ref, Y_ref = per_sample_jacobian(net, x, osc.physics, return_outputs=True)
    assert J.shape == J_ref.shape == (B * 4, 2956)
    # the same rollout; its matrix products may round differently batched and vmapped
    bound = output_bound(net, x, torch.finfo(torch.float64).eps)
    assert bool(((Y - Y_ref.reshape(B, 4)).abs() <= bound).all())
    assert_rounding_close(J, J_ref, magnitude(net, x), torch.finfo(torch.float64).eps)


def test_float32_within_float32_rounding_of_float64():
    x, net = setup(torch.float32)
    J, _ = chain(net, x)
    J_ref64 = per_sample_jacobian(net.double(), x.double(), osc.physics)
    assert J.dtype == torch.float32
    assert_rounding_close(J, J_ref64, magnitude(net, x), torch.finfo(torch.float32).eps)


def test_bound_bites_on_a_perturbed_step_jacobian():
    """A step whose value is unchanged but whose Jacobian is A_t + 1e-9·I must fail."""
    x, net = setup(torch.float64)
    J_ref = per_sample_jacobian(net, x, osc.physics)

    def step(s, u):  # same value, Jacobian off by 1e-9·I in every step
        return osc.rk4_step(s, u) + 1e-9 * (s - s.detach())

    J_bad = chained_jacobian(net, x, lambda out, x0: rollout_jacobian(step, x0, out))
    with pytest.raises(AssertionError, match="max"):
        assert_rounding_close(J_bad, J_ref, magnitude(net, x), torch.finfo(torch.float64).eps)


def test_rollout_jacobian_linear_system_is_matrix_powers():
    """x_{t+1} = A x_t + Bu u_t: ∂x_T/∂u_t = A^(T-1-t) Bu exactly (up to rounding)."""
    g = torch.Generator().manual_seed(0)
    A = 0.3 * torch.randn(3, 3, generator=g, dtype=torch.float64)
    Bu = torch.randn(3, 2, generator=g, dtype=torch.float64)
    T = 7
    x0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    u = torch.randn(5, T, 2, generator=g, dtype=torch.float64)
    xT, jac = rollout_jacobian(lambda s, v: s @ A.T + v @ Bu.T, x0, u)
    want = torch.stack([torch.linalg.matrix_power(A, T - 1 - t) @ Bu for t in range(T)], 1)
    assert jac.shape == (5, 3, T * 2)
    # controls flattened row-major: column t·2 + j is u[:, t, j]
    torch.testing.assert_close(jac, want.reshape(3, T * 2).expand(5, 3, T * 2),
                               rtol=0, atol=64 * T * 2.2e-16)
    x = x0
    for t in range(T):
        x = x @ A.T + u[:, t] @ Bu.T
    assert torch.equal(xT, x)


def test_chained_jacobian_generic_physics_and_parameter_subset():
    """Any batched physics Jacobian: y = sin(W o) per sample, columns of two parameters."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)).double()
    W = torch.randn(2, 4, dtype=torch.float64)
    x = torch.randn(7, 3, dtype=torch.float64)

    def physics(o, xi):
        return torch.sin(W @ o) * xi[0]

    def physics_jacobian(out, inputs):
        return (torch.func.vmap(physics)(out, inputs),
                torch.func.vmap(torch.func.jacrev(physics))(out, inputs))

    params = ["2.weight", "0.bias"]
    J, Y = chained_jacobian(net, x, physics_jacobian, params=params, return_outputs=True)
    J_ref, Y_ref = per_sample_jacobian(net, x, physics, params=params, return_outputs=True)
    assert J.shape == (14, 20 + 5)
    # entries are sums of ≤ 20 products of ≤ 10 factors bounded by 4: ≤ 2·30·ε·4³·max
    torch.testing.assert_close(J, J_ref, rtol=0, atol=2 * 30 * 64 * 2.2e-16 * float(
        J_ref.abs().max()))
    torch.testing.assert_close(Y, Y_ref, rtol=0, atol=0)


def test_bad_input_named():
    x, net = setup(torch.float64)
    with pytest.raises(ValueError, match="expected .B, m, k."):
        chained_jacobian(net, x, lambda out, x0: (out[:, :4], torch.zeros(B, 4, 95)))
    with pytest.raises(ValueError, match="x0 must have shape"):
        rollout_jacobian(osc.rk4_step, x[0], torch.zeros(B, 3))
    with pytest.raises(ValueError, match="controls must have shape"):
        rollout_jacobian(osc.rk4_step, x, torch.zeros(B + 1, 3))
    with pytest.raises(ValueError, match="T >= 1"):
        rollout_jacobian(osc.rk4_step, x, torch.zeros(B, 0))


def test_hig_step_with_chain_closure_matches_vmap_closure():
    """One HIG step from either closure: the same y, loss, and J to the bound above."""
    x, net = setup(torch.float64)
    opt = osc.HIG(net.parameters(), lr=1.0, truncation=1e-6)
    y1, l1, J1 = osc.closure_for(opt, net, x, "chain")()
    y2, l2, J2 = osc.closure_for(opt, net, x, "vmap")()
    eps = torch.finfo(torch.float64).eps
    dY = output_bound(net, x, eps)
    assert bool(((y1 - y2).reshape(B, 4).abs() <= dY).all())
    # loss = mean ‖y − x0‖²: ΔL ≤ (2/B) Σ |y − x0|·ΔY, plus the rounding of the sum itself
    dl = float((2 * (y1.reshape(B, 4) - x.double()).abs() * dY).sum() / B)
    assert abs(float(l1) - float(l2)) <= dl + 2 * (4 * B + 2) * eps * float(l1)
    assert_rounding_close(J1, J2, magnitude(net, x), torch.finfo(torch.float64).eps)
    with pytest.raises(ValueError, match="jacobian must be"):
        osc.closure_for(opt, net, x, "loop")
