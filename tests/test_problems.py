"""Problems: losses, Composite, finite differences, the autodiff registry."""

import sys

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import newtonkit as nk
from newtonkit.problems import OutputProblem, ScalarProblem, _registry
from newtonkit.problems._fd import fd_jacobian

floats = st.floats(-10, 10, allow_nan=False, allow_infinity=False)


@given(arrays(np.float64, 5, elements=floats), arrays(np.float64, 5, elements=floats),
       arrays(np.float64, 5, elements=st.floats(0, 5)))
@example(np.zeros(5), np.full(5, 1.75), np.full(5, 2.22507386e-313))  # subnormal (soak)
def test_l2_loss_value_grad_hessian(y, t, w):
    loss = nk.L2Loss(t, weights=w)
    # the same 5-term sum in another order: ≤ γ_7·½Σ w(y − t)² apart (terms ≥ 0), plus, where
    # results are subnormal, an absolute error of at most half the smallest subnormal for each
    # of the 24 operations (5 terms of 4, 4 additions) of either computation
    ref = 0.5 * np.sum(w * (y - t) ** 2)
    underflow = 24 * np.finfo(np.float64).smallest_subnormal  # 2 sides × 24 × ½ unit
    assert abs(float(loss.value(y)) - ref) <= 2 * 7 * np.finfo(np.float64).eps * ref + underflow
    np.testing.assert_allclose(loss.grad(y), w * (y - t))
    np.testing.assert_allclose(loss.hessian_diag(y), w)
    np.testing.assert_allclose(loss.hvp(y, y), w * y)
    plain = nk.L2Loss()
    assert float(plain.value(y)) == pytest.approx(0.5 * np.sum(y ** 2))
    np.testing.assert_array_equal(plain.grad(y), y)


def test_l2_loss_rejects_negative_weights():
    with pytest.raises(ValueError, match=">= 0"):
        nk.L2Loss(weights=-1.0)
    with pytest.raises(ValueError, match=">= 0"):
        nk.L2Loss(weights=np.array([1.0, -1.0]))


def test_composite_protocols_and_errors():
    comp = nk.Composite(lambda x: 2 * x, nk.L2Loss(np.ones(3)))
    assert float(comp(np.ones(3))) == pytest.approx(1.5)
    assert isinstance(nk.L2Loss(), nk.Loss)
    assert isinstance(lambda x: x, nk.ForwardModel)
    with pytest.raises(TypeError, match="value, grad"):
        nk.Composite(lambda x: x, object())
    with pytest.raises(TypeError, match="callable"):
        nk.Composite(3, nk.L2Loss())
    assert "Composite" in repr(comp)


@given(st.integers(1, 5), st.integers(1, 5), st.integers(0, 2 ** 31 - 1))
def test_fd_jacobian_matches_analytic(m, n, seed):
    rng = np.random.default_rng(seed)
    A = rng.standard_normal((m, n))
    x = rng.standard_normal(n)
    fun = lambda z: np.sin(A @ z)  # noqa: E731
    exact = np.cos(A @ x)[:, None] * A
    # Column j with step h_j = ε^p·max(1, |x_j|): the truncation error of F_i = sin(a_i·x) is
    # ≤ ½h_j·a_ij² (forward) or ≤ h_j²·|a_ij|³/6 (central), and rounding adds ≤ 2·u_F/h_j
    # (forward) or ≤ u_F/h_j (central), u_F ≤ (n + 2)·ε bounding the error of one evaluation
    # of sin(a_i·x) (|sin| ≤ 1; the inner product's error ≤ γ_n·Σ|a_ij x_j| ≤ n·ε·‖A‖·‖x‖,
    # counted below in u_F as well).
    eps = np.finfo(np.float64).eps
    u_f = (n + 2) * eps * (1 + np.abs(A) @ np.abs(x))[:, None]
    h2 = np.sqrt(eps) * np.maximum(1.0, np.abs(x))
    h3 = eps ** (1 / 3) * np.maximum(1.0, np.abs(x))
    bound2 = 0.5 * h2 * A ** 2 + 2 * u_f / h2 + eps * np.abs(exact)
    bound3 = h3 ** 2 * np.abs(A) ** 3 / 6 + u_f / h3 + eps * np.abs(exact)
    assert np.all(np.abs(fd_jacobian(fun, x) - exact) <= bound2)
    assert np.all(np.abs(fd_jacobian(fun, x, scheme="3-point") - exact) <= bound3)


def test_scalar_problem_counts_and_caches():
    p = ScalarProblem(lambda x: float(x @ x), np.ones(3), (3,), jac=lambda x: 2 * x,
                      hess=lambda x: 2 * np.eye(3))
    x = np.arange(3.0)
    f, g = p.value_and_grad(x)
    assert f == 5.0 and np.allclose(g, 2 * x) and (p.nfev, p.njev) == (1, 1)
    assert p.value(x) == 5.0 and p.nfev == 1  # cached at the same point
    H = p.hessian(x)
    assert H.shape == (3, 3) and p.nhev == 1 and not p.hessian_is_operator


def test_scalar_problem_argument_errors():
    x = np.ones(2)
    with pytest.raises(ValueError, match="jac must be"):
        ScalarProblem(lambda z: 0.0, x, (2,), jac="5-point")
    with pytest.raises(ValueError, match="hess must be"):
        ScalarProblem(lambda z: 0.0, x, (2,), jac=True, hess="bfgs")
    with pytest.raises(ValueError, match="either hess or hessp"):
        ScalarProblem(lambda z: 0.0, x, (2,), jac=True, hess=lambda z: z, hessp=lambda z, p: p)
    with pytest.raises(ValueError, match="hessp must be"):
        ScalarProblem(lambda z: 0.0, x, (2,), jac=True, hessp=3)
    p = ScalarProblem(lambda z: (0.0, z, 1), x, (2,), jac=True, hess="2-point")
    with pytest.raises(ValueError, match=r"\(f, grad\)"):
        p.value_and_grad(x)


def test_output_problem_gauss_newton_form_with_weights():
    w = np.array([1.0, 4.0, 0.0])
    t = np.array([1.0, 2.0, 3.0])

    class Model:
        def __call__(self, x):
            return np.array([x[0], x[1], x[0] + x[1]])

        def jacobian(self, x):
            return np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])

    p = OutputProblem(nk.Composite(Model(), nk.L2Loss(t, w)), np.zeros(2), (2,))
    ev = p.evaluate(np.array([2.0, 1.0]))
    J = p.jacobian(ev.x)
    r, Jt = p.gauss_newton_form(ev, J)
    np.testing.assert_allclose(Jt.T @ r, J.T @ ev.gy)
    np.testing.assert_allclose(Jt.T @ Jt, J.T @ np.diag(w) @ J)
    assert 0.5 * r @ r == pytest.approx(ev.f)
    assert (p.nfev, p.njev) == (1, 1) and p.m == 3


def test_output_problem_jacobian_kinds():
    x = np.array([1.0, 2.0])

    class JvpModel:
        def __call__(self, x):
            return x ** 2

        def jvp(self, x, v):
            return 2 * x * v

        def vjp(self, x, w):
            return 2 * x * w

    p = OutputProblem(nk.Composite(JvpModel(), nk.L2Loss()), x, (2,))
    p.evaluate(x)
    J = p.jacobian(x)
    assert isinstance(J, nk.LinearOperator)
    np.testing.assert_allclose(J.to_dense(), np.diag(2 * x))
    nk.dottest(J)  # raises AssertionError unless ⟨Jv, w⟩ = ⟨v, Jᵀw⟩ to its rtol
    with pytest.raises(ValueError, match="jac must be"):
        OutputProblem(lambda z: z, x, (2,), jac="cs")


class _FakeProvider:
    """A NumPy 'autodiff' provider for a known function (tests the registry contract)."""

    calls: list = []

    def __init__(self, fun, x_shape, args=()):
        self.fun, self.x_shape = fun, x_shape
        _FakeProvider.calls.append(x_shape)

    def value(self, x):
        return self.fun(x.reshape(self.x_shape))

    def value_and_grad(self, x):
        return self.value(x), 2 * x

    def hessian(self, x):
        return 2 * np.eye(x.size)

    def hvp(self, x, v):
        return 2 * v

    def jacobian(self, x):
        return np.eye(x.size)

    def jvp(self, x, v):
        return v

    def vjp(self, x, w):
        return w


@pytest.fixture
def numpy_provider():
    saved = dict(_registry._PROVIDERS)
    _FakeProvider.calls = []
    nk.register_autodiff("numpy", _FakeProvider)
    yield
    _registry._PROVIDERS.clear()
    _registry._PROVIDERS.update(saved)


def test_registered_provider_replaces_finite_differences(numpy_provider, recwarn):
    res = nk.minimize(lambda x: float(np.sum(x ** 2)), np.ones((2, 2)), method="newton")
    assert res.success and np.allclose(res.x, 0) and res.nit == 1
    assert _FakeProvider.calls == [(2, 2)]
    res = nk.minimize(lambda x: x - 0.0, np.ones(3), method="lm")
    assert res.success and np.allclose(res.x, 0)
    assert not [w for w in recwarn if issubclass(w.category, nk.FiniteDifferenceWarning)]


def test_register_autodiff_validates():
    with pytest.raises(TypeError, match="non-empty string"):
        nk.register_autodiff("", _FakeProvider)
    with pytest.raises(TypeError, match="callable"):
        nk.register_autodiff("numpy", 3)
    assert nk.get_autodiff(np) is _registry._PROVIDERS.get("numpy")


def test_lazy_import_registers_provider(monkeypatch, tmp_path):
    """With nothing registered, get_autodiff imports the backend's adapter package first."""
    torch = pytest.importorskip("torch")
    import array_api_compat

    xp = array_api_compat.array_namespace(torch.zeros(1))
    (tmp_path / "fake_nk_adapter.py").write_text(
        "import newtonkit\nnewtonkit.register_autodiff('torch', lambda *a, **k: 'provider')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fake_nk_adapter", raising=False)
    monkeypatch.setattr(_registry, "_PROVIDERS", {})
    monkeypatch.setitem(_registry._LAZY, "torch", "fake_nk_adapter")
    factory = nk.get_autodiff(xp)
    assert "fake_nk_adapter" in sys.modules and factory() == "provider"
    monkeypatch.setattr(_registry, "_PROVIDERS", {})
    monkeypatch.setitem(_registry._LAZY, "torch", "no_such_newtonkit_adapter")
    assert nk.get_autodiff(xp) is None
