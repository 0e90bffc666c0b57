"""The driver's promises on torch (issue 13, section 2 a, e, j): the diverging HIG network of the
issue, scalar and non-tensor ``fun``, integer tensors as options, detached results."""

import numpy as np
import pytest

import newtonkit as nk

torch = pytest.importorskip("torch")

EPS = float(torch.finfo(torch.float64).eps)


def _tanh_net():
    """A 1→16→1 tanh network fitting sin on 50 points of [−3, 3]: residual and a start point
    drawn as torch.nn.Linear draws its weights (U(±1/√fan_in)), from a fixed generator."""
    t = torch.linspace(-3.0, 3.0, 50, dtype=torch.float64)[:, None]
    y = torch.sin(t)

    def resid(p):
        W1, b1, W2, b2 = p[:16].reshape(16, 1), p[16:32], p[32:48].reshape(1, 16), p[48]
        return (torch.tanh(t @ W1.T + b1) @ W2.T + b2 - y).reshape(-1)

    gen = torch.Generator().manual_seed(0)
    bounds = torch.cat([torch.ones(32), torch.full((17,), 0.25)]).to(torch.float64)
    x0 = bounds * (2 * torch.rand(49, dtype=torch.float64, generator=gen) - 1)
    return resid, x0


def test_fixed_step_hig_on_a_tanh_network_is_divergence():
    """The issue's case: fixed-step HIG's loss grows about tenfold per iteration (it went 6.4 →
    7e58 and was reported as XTOL success).  After 100 iterations it is far above f(x0): status
    5, and the result is the best accepted iterate with its own objective."""
    resid, x0 = _tanh_net()
    r0 = resid(x0)
    f0 = 0.5 * float(r0 @ r0)
    seen = []
    res = nk.minimize(resid, x0, method="hig", options={"maxiter": 100},
                      callback=lambda intermediate_result: seen.append(intermediate_result.fun))
    assert res.termination == "DIVERGED" and res.status == 5 and not res.success
    assert max(seen) > 1e10 * f0
    # f0 here and the library's f differ by the rounding of an m-term sum, m·ε relative
    m = r0.shape[0]
    assert res.fun == pytest.approx(min([f0, *seen]), rel=m * EPS)
    assert res.fun <= f0 * (1 + m * EPS)
    r = resid(res.x)
    assert res.fun == pytest.approx(0.5 * float(r @ r), rel=m * EPS)


@pytest.mark.parametrize("method", ["lm", "gn", "hig"])
def test_scalar_tensor_fun_with_a_least_squares_method_names_newton(method):
    """Before: torch minimised ½f² silently (a residual of one entry)."""
    with pytest.raises(ValueError, match=r"residual vector.*method='newton'"):
        nk.minimize(lambda x: torch.sum((x - 1) ** 2), torch.zeros(3, dtype=torch.float64),
                    method=method)


def test_fun_calling_item_says_autodiff_needs_a_tensor():
    with pytest.raises(TypeError, match=r"fun returned a Python float.*torch\.Tensor.*\.item\(\)"):
        nk.minimize(lambda x: torch.sum((x - 1) ** 2).item(),
                    torch.zeros(3, dtype=torch.float64), method="newton")


@pytest.mark.parametrize("method", ["newton", "lm"])
def test_fun_returning_none_says_so(method):
    with pytest.raises(TypeError, match="fun returned None"):
        nk.minimize(lambda x: None, torch.zeros(3, dtype=torch.float64), method=method)


def test_integer_tensors_are_integer_options_and_bool_tensors_are_not():
    fun = lambda x: torch.stack([x[0] - 1, 10 * (x[1] - x[0] ** 2)])  # noqa: E731
    res = nk.minimize(fun, torch.zeros(2, dtype=torch.float64), method="lm",
                      options={"maxfev": torch.tensor(3)})
    assert res.termination == "MAXFEV" and res.nfev == 3
    with pytest.raises(ValueError, match="'maxfev' must be a positive integer"):
        nk.minimize(fun, torch.zeros(2, dtype=torch.float64), method="lm",
                    options={"maxfev": torch.tensor(True)})


@pytest.mark.parametrize("method", ["newton", "lm", "hig"])
def test_results_are_detached_and_x0_untouched(method):
    """x0 requires grad, and fun closes over a tensor that requires grad: the result carries no
    graph (res.x, res.jac, res.residual), fun is a float, and x0 keeps its values, its
    requires_grad and its (empty) .grad."""
    w = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    x0 = torch.tensor([0.5, -0.5], dtype=torch.float64, requires_grad=True)
    before = x0.detach().clone()
    if method == "newton":
        fun = lambda x: torch.sum((x - w) ** 2) + torch.sum(x ** 4)  # noqa: E731
    else:
        fun = lambda x: torch.cat([x - w, x ** 2])  # noqa: E731
    res = nk.minimize(fun, x0, method=method)
    assert res.success
    arrays = [res.x, res.jac] + ([] if method == "newton" else [res.residual])
    for a in arrays:
        assert isinstance(a, torch.Tensor) and not a.requires_grad and a.grad_fn is None
    assert type(res.fun) is float
    assert x0.requires_grad and x0.grad is None and torch.equal(x0.detach(), before)
    np.testing.assert_array_equal(before.numpy(), [0.5, -0.5])
