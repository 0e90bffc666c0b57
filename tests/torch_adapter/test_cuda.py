"""CUDA: results stay on the device and match the CPU (skipped cleanly without a GPU)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from newtonkit.linalg import half_inverse
from newtonkit_torch.autograd import TorchAutodiff
from newtonkit_torch.jacobians import flat_parameters, per_sample_jacobian
from newtonkit_torch.optim import HIG, GaussNewton

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def fun(x):
    return (torch.sin(x) ** 2).sum() + (x[:-1] * x[1:] ** 3).sum()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_provider_on_cuda(dtype):
    x_cpu = torch.linspace(-1, 1, 9, dtype=torch.float64)
    x = x_cpu.to("cuda", dtype)
    p = TorchAutodiff(fun, (9,), chunk_size=4)
    H_ref = torch.autograd.functional.hessian(fun, x_cpu)
    f, g = p.value_and_grad(x)
    H = p.hessian(x)
    hv = p.hvp(x, x)
    for t in (f, g, H, hv):
        assert t.device == x.device and t.dtype == dtype
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(H.cpu().double(), H_ref, **tol)
    torch.testing.assert_close(hv.cpu().double(), H_ref @ x_cpu, **tol)


def test_per_sample_jacobian_and_hig_step_on_cuda():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 2)).double().cuda()
    X = torch.rand(8, 2, dtype=torch.float64, device="cuda")

    def physics(out, x):
        return out * torch.stack([torch.ones_like(x[0]), x[0]])

    def loss_fn(y, x):
        return 0.5 * ((y - x) ** 2).sum(-1).mean()

    J, Y = per_sample_jacobian(net, X, physics, return_outputs=True)
    J_cpu = per_sample_jacobian(net.cpu(), X.cpu(), physics)
    net.cuda()
    assert J.device.type == "cuda"
    torch.testing.assert_close(J.cpu(), J_cpu)
    y = Y.requires_grad_(True)
    (g,) = torch.autograd.grad(loss_fn(y, X), y)
    d, _ = half_inverse(J, g.reshape(-1))
    expected = flat_parameters(net.parameters()) - d
    opt = HIG(net.parameters())
    opt.step(opt.physics_closure(net, X, physics, loss_fn))
    theta = flat_parameters(net.parameters())
    assert theta.device.type == "cuda"
    torch.testing.assert_close(theta, expected)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_adaptive_gauss_newton_on_cuda_matches_cpu(dtype):
    def physics(out, x):
        return out * torch.stack([torch.ones_like(x[0]), 0.1 * x[0]])

    def loss_fn(y, x):
        return 0.5 * ((y - torch.sin(3 * x)) ** 2).sum(-1).mean()

    thetas = []
    for device in ("cuda", "cpu"):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(2, 5), nn.Tanh(), nn.Linear(5, 2)).to(device, dtype)
        X = (torch.rand(8, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1).to(device,
                                                                                      dtype)
        opt = GaussNewton(net.parameters(), adaptive=True)
        for _ in range(3):
            opt.step(opt.physics_closure(net, X, physics, loss_fn))
        theta = flat_parameters(net.parameters())
        assert theta.device.type == device and theta.dtype == dtype
        thetas.append(theta)
    tol = dict(rtol=1e-3, atol=1e-4) if dtype == torch.float32 else {}
    torch.testing.assert_close(thetas[0].cpu(), thetas[1], **tol)
