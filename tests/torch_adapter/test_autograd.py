"""The torch derivative provider against float64 dense autograd references."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import newtonkit as nk
from newtonkit_torch.autograd import TorchAutodiff, torch_autodiff


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

A = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1], [2.0, 0.1, 0.4], [-0.6, 1.5, 0.9]],
                 dtype=torch.float64)


def scalar_fun(x, a=1.0):
    return a * (torch.sin(x @ A.T.to(x.dtype)) ** 2).sum() + (x ** 4).sum() + x[0] * x[1] ** 3


def matrix_scalar_fun(X):  # x of shape (2, 3)
    return (torch.tanh(X) @ X.T).trace() + (X ** 3).sum()


def residual(x):
    return torch.cat([torch.sin(x @ A.T.to(x.dtype)), x[:2] * x[2]])  # m = 6


class Cube(torch.autograd.Function):
    """x³ with a backward only: no forward-mode rule, no torch.func support."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 3 * x ** 2 * g


def custom_fun(x):
    return Cube.apply(x).sum() + (torch.sin(x) * x[0]).sum()


def custom_residual(x):
    return Cube.apply(x) + x.flip(0)


def ref_hessian(f, x):
    return torch.autograd.functional.hessian(f, x.double())


def ref_jacobian(f, x):
    return torch.autograd.functional.jacobian(f, x.double())


X0 = torch.tensor([0.3, -0.8, 1.2], dtype=torch.float64)
OPTIONS = [dict(), dict(chunk_size=1), dict(chunk_size=2), dict(max_memory=1),
           dict(vectorize=False)]


@pytest.mark.parametrize("opts", OPTIONS)
def test_scalar_derivatives_match_float64_reference(opts):
    p = TorchAutodiff(scalar_fun, (3,), (2.0,), **opts)
    f = lambda z: scalar_fun(z, 2.0)  # noqa: E731
    H = ref_hessian(f, X0)
    g = torch.autograd.functional.jacobian(f, X0)
    v = torch.tensor([1.0, -0.5, 0.25], dtype=torch.float64)
    val, grad = p.value_and_grad(X0)
    close(val, f(X0))
    close(grad, g)
    torch.testing.assert_close(p.value(X0), f(X0))
    close(p.hvp(X0, v), H @ v)
    close(p.hessian(X0), H)


@pytest.mark.parametrize("opts", OPTIONS)
def test_residual_derivatives_match_float64_reference(opts):
    p = torch_autodiff(residual, (3,), **opts)
    J = ref_jacobian(residual, X0)
    v = torch.tensor([0.2, 1.0, -1.0], dtype=torch.float64)
    w = torch.arange(6, dtype=torch.float64) - 2.5
    assert p.value(X0).shape == (6,)
    close(p.jacobian(X0), J)
    close(p.jvp(X0, v), J @ v)
    close(p.vjp(X0, w), J.T @ w)


def test_wide_jacobian_uses_forward_mode_and_matches():
    B = torch.randn(2, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    f = lambda x: torch.tanh(B @ x) * x[:2]  # noqa: E731 (m = 2 < n = 7: reverse rows)
    g = lambda x: torch.tanh(B.T @ x[:2]) * x  # noqa: E731 (m = 7 > n... shapes below)
    x = torch.linspace(-1, 1, 7, dtype=torch.float64)
    torch.testing.assert_close(TorchAutodiff(f, (7,), chunk_size=1).jacobian(x),
                               ref_jacobian(f, x))
    x2 = torch.linspace(-1, 1, 7, dtype=torch.float64)
    tall = lambda z: torch.cat([g(z), z[:3] ** 2])  # noqa: E731 (m = 10 > n = 7: forward)
    torch.testing.assert_close(TorchAutodiff(tall, (7,), chunk_size=3).jacobian(x2),
                               ref_jacobian(tall, x2))


def test_shaped_input_and_flat_results():
    X = torch.tensor([[0.1, -0.4, 0.9], [1.1, 0.2, -0.3]], dtype=torch.float64)
    p = TorchAutodiff(matrix_scalar_fun, (2, 3))
    flat = X.reshape(-1)
    H = ref_hessian(lambda z: matrix_scalar_fun(z.reshape(2, 3)), flat)
    f, g = p.value_and_grad(flat)
    assert g.shape == (6,)
    torch.testing.assert_close(p.hessian(flat), H)
    with pytest.raises(ValueError, match="6 elements"):
        p.grad(torch.zeros(5, dtype=torch.float64))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_custom_function_falls_back_to_double_backward(dtype):
    x = X0.to(dtype)
    p = TorchAutodiff(custom_fun, (3,))
    H = ref_hessian(custom_fun, x)  # at x (rounded to dtype), in float64
    v = torch.tensor([1.0, 2.0, -1.0], dtype=dtype)
    hv = p.hvp(x, v)
    assert not p.forward_mode_ok  # the forward-mode attempt failed and was remembered
    assert hv.dtype == dtype
    close(hv, H @ v.double())
    close(p.hessian(x), H)
    r = TorchAutodiff(custom_residual, (3,))
    J = ref_jacobian(custom_residual, x)
    close(r.jvp(x, v), J @ v.double())
    close(r.jacobian(x), J)


def test_float32_results_stay_float32():
    p = TorchAutodiff(scalar_fun, (3,))
    x = X0.float()
    f, g = p.value_and_grad(x)
    assert f.dtype == g.dtype == p.hessian(x).dtype == torch.float32
    close(p.hessian(x), ref_hessian(scalar_fun, x))


def test_chunks_bound_the_batch():
    n = 50
    p = TorchAutodiff(lambda x: (x ** 3).sum(), (n,), max_memory=8 * 8 * 2 * n)
    assert p._chunk(n, 0, 8) == 2
    x = torch.linspace(-1, 1, n, dtype=torch.float64)
    torch.testing.assert_close(p.hessian(x), torch.diag(6 * x))
    assert TorchAutodiff(lambda x: x, (n,), chunk_size=7)._chunk(n, n, 8) == 7
    # A 10k-parameter float64 Hessian is built in slices that each stay within max_memory.
    big = TorchAutodiff(lambda x: (x ** 3).sum(), (10_000,))
    k = big._chunk(10_000, 0, 8)
    assert 1 <= k < 10_000 and k * 8 * 8 * 10_000 <= big.max_memory


def test_bad_options_and_non_scalar_gradient():
    with pytest.raises(ValueError, match="chunk_size"):
        TorchAutodiff(scalar_fun, (3,), chunk_size=0)
    with pytest.raises(ValueError, match="max_memory"):
        TorchAutodiff(scalar_fun, (3,), max_memory=0)
    with pytest.raises(ValueError, match="scalar objective"):
        TorchAutodiff(residual, (3,)).grad(X0)
    with pytest.raises(TypeError, match="torch.Tensor"):
        TorchAutodiff(residual, (3,)).jacobian([0.0, 1.0, 2.0])


@given(n=st.integers(1, 6), m=st.integers(1, 6), seed=st.integers(0, 2**16),
       chunk=st.integers(1, 4))
def test_jacobian_property(n, m, seed, chunk):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(m, n, dtype=torch.float64, generator=gen)
    x = torch.randn(n, dtype=torch.float64, generator=gen)
    f = lambda z: torch.tanh(W @ z) + (W @ z) ** 2  # noqa: E731
    p = TorchAutodiff(f, (n,), chunk_size=chunk)
    torch.testing.assert_close(p.jacobian(x), ref_jacobian(f, x))
    s = lambda z: (f(z) ** 2).sum()  # noqa: E731
    torch.testing.assert_close(TorchAutodiff(s, (n,), chunk_size=chunk).hessian(x),
                               ref_hessian(s, x))


def test_registered_with_the_core():
    import array_api_compat

    import newtonkit_torch  # noqa: F401  (registers on import)
    from newtonkit import problems

    factory = problems.get_autodiff(array_api_compat.array_namespace(X0))
    assert factory is torch_autodiff
    p = factory(scalar_fun, (3,), args=(2.0,))
    torch.testing.assert_close(p.grad(X0), TorchAutodiff(scalar_fun, (3,), (2.0,)).grad(X0))


@pytest.mark.parametrize("method, fun", [
    ("newton", lambda x: (100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2).sum()),
    ("gauss-newton", lambda x: torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])),
    ("lm", lambda x: torch.stack([10 * (x[1] - x[0] ** 2), 1 - x[0]])),
])
def test_minimize_needs_no_derivatives_for_torch(method, fun):
    import warnings

    import newtonkit as nk

    x0 = torch.tensor([-1.2, 1.0], dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no finite-difference fallback warning
        res = nk.minimize(fun, x0, method=method, options={"maxiter": 200})
    assert res.success, res.message
    assert isinstance(res.x, torch.Tensor) and res.x.dtype == torch.float64
    torch.testing.assert_close(res.x, torch.ones(2, dtype=torch.float64), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(x0, torch.tensor([-1.2, 1.0], dtype=torch.float64))


def test_a_function_outside_the_graph_is_an_error():
    """A function autograd cannot see into (computed under no_grad or detached) has zero
    autodiff derivatives. With the gradient given and the Hessian from autodiff, Newton
    reported success at the saddle of ½x₀² − ½x₁² + ¼x₁⁴ with a zero Hessian; now every
    derivative says why it cannot be taken."""
    def saddle(x):
        return 0.5 * x[0] ** 2 - 0.5 * x[1] ** 2 + 0.25 * x[1] ** 4

    def hidden(x):  # the same values, outside autograd's graph
        with torch.no_grad():
            return saddle(x)

    def grad(x):
        return torch.stack([x[0], -x[1] + x[1] ** 3])

    x0 = torch.tensor([1.0, 0.0], dtype=torch.float64)
    ok = nk.minimize(saddle, x0, method="newton", jac=grad)
    assert not ok.success and ok.termination == "INDEFINITE"
    with pytest.raises(ValueError, match="autograd graph"):
        nk.minimize(hidden, x0, method="newton", jac=grad)
    p = TorchAutodiff(lambda x: hidden(x).reshape(1).expand(3), (2,))
    w = torch.ones(3, dtype=torch.float64)
    for call in (lambda: p.jacobian(x0), lambda: p.jvp(x0, x0), lambda: p.vjp(x0, w)):
        with pytest.raises(ValueError, match="autograd graph"):
            call()
    with torch.inference_mode(), pytest.raises(RuntimeError, match="inference_mode"):
        nk.minimize(saddle, x0, method="newton")
    # batched (vmap of torch.func transforms) likewise, with a one-problem or batched fun
    with pytest.raises(ValueError, match="autograd graph"):
        nk.minimize(hidden, x0[None], method="newton", jac=grad, batch=True, vectorize=True)


def test_an_all_zero_constant_residual_is_a_solution_not_an_error():
    """A residual that returns torch.zeros(m) on a branch (no graph) at an exact solution: the
    run ends there (ZERO), as before the graph check; a nonzero constant is an error."""
    def res(x):
        if bool((x >= 1).all()):
            return torch.zeros(2, dtype=x.dtype)
        return torch.clamp(1 - x, min=0)

    x0 = torch.tensor([2.0, 3.0], dtype=torch.float64)
    out = nk.least_squares(res, x0, jac=None)  # (jac=None: autodiff)
    assert out.success and out.termination == "ZERO"
    with pytest.raises(ValueError, match="autograd graph"):
        nk.least_squares(lambda x: torch.ones(2, dtype=x.dtype), x0, jac=None)
