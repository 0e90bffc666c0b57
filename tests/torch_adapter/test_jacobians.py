"""Per-sample Jacobians of a network composed with physics, against a Python loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from newtonkit.operators import MatrixOperator, dottest
from newtonkit_torch.jacobians import (
    batched_outputs,
    flat_parameters,
    per_sample_jacobian,
    per_sample_jacobian_operator,
    select_parameters,
)


# The provider and the reference evaluate the same derivative expressions, in another order
# (vmap batches, forward instead of reverse mode, chunks, a float64 reference): each entry is a
# sum of at most K = 32 terms, each a product of at most P = 32 rounded factors, with Σ|terms| ≤
# 64·max|entry| on these small test functions (|A|, |x|, |tanh|, |sin| ≤ 2), so two evaluations
# at the same point differ by ≤ 2γ_{K+P}·64·max|entry| < 2·64·64·ε·max|entry| (ε of the
# lower precision of the two).
def close(got, want):
    """``got`` equals ``want`` within the rounding bound above (``want``'s scale, ``got``'s ε;
    ``want`` is computed at the point ``got`` was, rounded to ``got``'s dtype)."""
    eps = torch.finfo(got.dtype).eps
    torch.testing.assert_close(got.double(), want.double(), rtol=0,
                               atol=2 * 64 * 64 * eps * float(want.abs().max()))


def make_net(dtype=torch.float64):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)).to(dtype)
    net.register_buffer("offset", torch.tensor(0.25, dtype=dtype))  # a buffer must be honoured
    return net


class WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = make_net()
        self.register_buffer("shift", torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64))

    def forward(self, x):
        return self.body(x) + self.shift


def physics(out, x):
    """A nonlinear map of one sample's output and input to 3 values."""
    return torch.stack([out[0] * x[0], torch.sin(out[1]) + out[2] ** 2, out[3] * out[0] - x[2]])


def reference(model, X, names, phys=physics):
    """Loop over samples with torch.autograd.functional.jacobian on the flat parameters."""
    named = dict(model.named_parameters())
    shapes = [named[k].shape for k in names]
    sizes = [named[k].numel() for k in names]
    theta = flat_parameters(named[k] for k in names)
    rows = []
    for i in range(X.shape[0]):
        def f(t, i=i):
            parts = [p.reshape(s) for p, s in zip(torch.split(t, sizes), shapes, strict=True)]
            ps = dict(zip(names, parts, strict=True))
            out = torch.func.functional_call(model, ps, (X[i:i + 1],))[0]
            return (out if phys is None else phys(out, X[i])).reshape(-1)
        rows.append(torch.autograd.functional.jacobian(f, theta))
    return torch.cat(rows)


X = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("method", ["vmap", "loop"])
@pytest.mark.parametrize("phys", [physics, None])
def test_matches_reference_loop(method, phys):
    net = WithBuffer()
    names = select_parameters(net)
    J, Y = per_sample_jacobian(net, X, phys, method=method, return_outputs=True)
    m = 3 if phys is not None else 4
    assert J.shape == (6 * m, sum(p.numel() for p in net.parameters()))
    close(J, reference(net, X, names, phys))
    torch.testing.assert_close(Y, batched_outputs(net, X, phys).detach())


def test_selected_parameters_and_chunks():
    net = WithBuffer()
    sel = ["body.2.weight", "body.0.bias"]
    J = per_sample_jacobian(net, X, physics, params=sel, chunk_size=4)
    close(J, reference(net, X, sel))
    by_obj = per_sample_jacobian(net, X, physics, params=[net.body[2].weight, net.body[0].bias])
    torch.testing.assert_close(by_obj, J)
    assert J.shape[1] == 20 + 5


def test_frozen_parameters_are_excluded_by_default():
    net = make_net()
    net[0].weight.requires_grad_(False)
    J = per_sample_jacobian(net, X, physics)
    names = select_parameters(net)
    assert "0.weight" not in names
    torch.testing.assert_close(J, reference(net, X, names))


def test_float32_and_loop_agree():
    net = make_net(torch.float32)
    Xf = X.float()
    J1 = per_sample_jacobian(net, Xf, physics)
    J2 = per_sample_jacobian(net, Xf, physics, method="loop")
    assert J1.dtype == torch.float32
    close(J1, J2)


def test_operator_forms():
    net = WithBuffer()
    J = per_sample_jacobian(net, X, physics)
    op = per_sample_jacobian(net, X, physics, as_operator=True)
    assert isinstance(op, MatrixOperator) and op.shape == J.shape
    mf = per_sample_jacobian_operator(net, X, physics)
    assert mf.shape == J.shape
    gen = torch.Generator().manual_seed(3)
    v = torch.randn(J.shape[1], dtype=torch.float64, generator=gen)
    w = torch.randn(J.shape[0], dtype=torch.float64, generator=gen)
    torch.testing.assert_close(mf.matvec(v), J @ v)
    torch.testing.assert_close(mf.rmatvec(w), J.T @ w)
    V = torch.randn(J.shape[1], 3, dtype=torch.float64, generator=gen)
    W = torch.randn(J.shape[0], 2, dtype=torch.float64, generator=gen)
    torch.testing.assert_close(mf.matmat(V), J @ V)
    torch.testing.assert_close(mf.rmatmat(W), J.T @ W)
    torch.testing.assert_close(mf.to_dense(chunk_size=7), J)
    dottest(mf)  # raises when ⟨Jv, w⟩ ≠ ⟨v, Jᵀw⟩


def test_bad_selection():
    net = make_net()
    with pytest.raises(ValueError, match="no parameter 'nope'"):
        per_sample_jacobian(net, X, physics, params=["nope"])
    with pytest.raises(ValueError, match="twice"):
        select_parameters(net, ["0.bias", "0.bias"])
    with pytest.raises(ValueError, match="nn.Parameter"):
        select_parameters(net, [torch.zeros(3)])
    with pytest.raises(ValueError, match="'vmap' or 'loop'"):
        per_sample_jacobian(net, X, physics, method="pfor")
    for p in net.parameters():
        p.requires_grad_(False)
    for build in (per_sample_jacobian, per_sample_jacobian_operator):
        with pytest.raises(ValueError, match="no parameters selected"):
            build(net, X, physics)


@pytest.mark.parametrize("method", ["vmap", "loop"])
def test_an_empty_batch_has_no_rows(method):
    """No samples (a rank without data): a (0, n) Jacobian (vmap failed on reshape(-1) of
    an empty batch, the loop on stacking nothing)."""
    net = make_net()
    n = sum(p.numel() for p in net.parameters())
    J, Y = per_sample_jacobian(net, X[:0], physics, method=method, return_outputs=True)
    assert J.shape == (0, n) and Y.shape == (0, 3)
    with pytest.raises(ValueError, match="at least one sample"):
        per_sample_jacobian_operator(net, X[:0], physics)
