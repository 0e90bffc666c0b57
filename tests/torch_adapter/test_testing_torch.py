"""Dogfooding ``newtonkit.testing`` on newtonkit's own derivatives: the torch autograd provider
(Jacobian, jvp, vjp, gradient, Hessian, Hessian-vector products) and the deepwave adapter's
Born Jacobian, its adjoint, the misfit's gradient and Hessian products, on a small grid.

The checkers' own bounds decide (10·ε·(m+n)·‖J‖ for the cross-checks, Taylor slope ≥ 2): a
failure here is a bug in newtonkit's derivatives or in the checkers.
"""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")

from newtonkit.testing import check_derivatives, check_operator  # noqa: E402
from newtonkit_torch.autograd import TorchAutodiff  # noqa: E402

DTYPES = (torch.float64, torch.float32)


def _tanh(dtype, m=6, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, n, generator=g, dtype=dtype)
    b = torch.randn(m, generator=g, dtype=dtype)
    x = torch.randn(n, generator=g, dtype=dtype)
    return A, b, x


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_provider_residual(dtype):
    A, b, x = _tanh(dtype)
    provider = TorchAutodiff(lambda z: torch.tanh(A @ z + b), (4,))
    report = check_derivatives(provider, x)  # jacobian, jvp, vjp: Taylor and cross-checks
    assert {c.name for c in report.checks} >= {"jac: Taylor", "jvp: Taylor", "vjp: Taylor",
                                                "jvp vs jac", "vjp vs jac"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_provider_objective(dtype):
    A, b, x = _tanh(dtype)
    provider = TorchAutodiff(lambda z: torch.sum(torch.log(torch.cosh(A @ z + b))), (4,))
    report = check_derivatives(provider, x)  # gradient, Hessian and hvp
    assert {c.name for c in report.checks} >= {"hess: Taylor", "hessp: Taylor",
                                                "hessp vs hess", "hessp: Hessian symmetry"}


@pytest.mark.parametrize("dtype", DTYPES)
def test_torch_planted_vjp_sign_error_is_caught(dtype):
    A, b, x = _tanh(dtype)
    provider = TorchAutodiff(lambda z: torch.tanh(A @ z + b), (4,))
    report = check_derivatives(lambda z: torch.tanh(A @ z + b), x, jvp=provider.jvp,
                               vjp=lambda z, w: -provider.vjp(z, w), raise_error=False)
    assert {c.name for c in report.failures} == {"vjp: Taylor", "jvp/vjp dot-product"}


# -- deepwave ---------------------------------------------------------------------------------

NY, NX, DX, DT, NT = 6, 7, 4.0, 0.004, 30


@pytest.fixture(scope="module")
def wave():
    deepwave = pytest.importorskip("deepwave")
    from newtonkit_torch.deepwave import MSEMisfit, ScalarWave

    def survey(dtype):
        src = deepwave.wavelets.ricker(25, NT, DT, 1.3 / 25, dtype=dtype).reshape(1, 1, -1)
        rec = torch.zeros(1, 4, 2, dtype=torch.long)
        rec[0, :, 0] = 1
        rec[0, :, 1] = torch.arange(1, 5)
        return dict(source_amplitudes=src, source_locations=torch.tensor([[[1, 3]]]),
                    receiver_locations=rec, pml_width=[0, 4, 4, 4], max_vel=2000.0)

    out = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for dtype in DTYPES:
            v_true = torch.full((NY, NX), 1500.0, dtype=dtype)
            v_true[3:] = 1700.0
            model = ScalarWave(DX, DT, **survey(dtype))
            observed = model(v_true)
            v0 = 0.98 * v_true
            out[dtype] = (model, MSEMisfit(model, observed), v0)
    yield out
    torch.set_num_threads(threads)


@pytest.mark.parametrize("dtype", DTYPES)
def test_deepwave_forward_model(wave, dtype):
    model, _, v0 = wave[dtype]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # Born J p, reverse-mode Jᵀ w and the dense Jacobian; steps of at most 2⁻⁴ of ‖v‖
        # keep the perturbed velocities inside the pinned max_vel (2⁻² is refused by deepwave)
        report = check_derivatives(model, v0, h_max=2.0**-4)
        check_operator(model.jacobian_operator(v0))
    # the Taylor tests of J p were resolved (a slope, not just rounding) in both dtypes
    assert report["jvp: Taylor"].measured > 2.5 and report["jac: Taylor"].measured > 2.5


@pytest.mark.parametrize("dtype", DTYPES)
def test_deepwave_misfit_gradient_and_hessian(wave, dtype):
    _, misfit, v0 = wave[dtype]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = check_derivatives(misfit, v0, h_max=2.0**-4)
        check_operator(misfit.hessian_operator(v0))
        check_operator(misfit.gauss_newton_operator(v0))
    assert report["hessp: Taylor"].measured > 2.5 and report["jac: Taylor"].measured > 2.5
