"""The deepwave adapter: exact Born J·p, adjoint, HVPs, batching and the time-step ratio.

A small float64 survey (two shots, an 8×10 model, 40 samples) whose ``dt`` breaks the CFL
condition, so deepwave would propagate 5 internal steps per sample and its compiled backend
would refuse double backward; the adapter resamples.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import pytest

torch = pytest.importorskip("torch")
deepwave = pytest.importorskip("deepwave")

from newtonkit.operators import dottest  # noqa: E402
from newtonkit_torch.deepwave import MSEMisfit, ScalarWave  # noqa: E402

NY, NX, DX, DT, NT = 8, 10, 4.0, 0.004, 40


def _survey(dtype=torch.float64, max_vel=2000.0):
    src = deepwave.wavelets.ricker(25, NT, DT, 1.3 / 25, dtype=dtype).reshape(1, 1, -1)
    src_loc = torch.tensor([[[1, 3]], [[1, 6]]])
    rec_loc = torch.zeros(2, 5, 2, dtype=torch.long)
    rec_loc[:, :, 0] = 1
    rec_loc[:, :, 1] = torch.arange(2, 7)
    return dict(source_amplitudes=src.repeat(2, 1, 1), source_locations=src_loc,
                receiver_locations=rec_loc, pml_width=[0, 6, 6, 6], max_vel=max_vel)


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    # A tiny grid gains nothing from threads and loses a lot when the CPU is shared.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deepwave.ZeroWidthFaceWarning)
        yield


@pytest.fixture(scope="module")
def problem():
    gen = torch.Generator().manual_seed(0)
    v_true = torch.full((NY, NX), 1500.0, dtype=torch.float64)
    v_true[4:] = 1700.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", deepwave.ZeroWidthFaceWarning)
        model = ScalarWave(DX, DT, **_survey())
        observed = model(v_true)
    v0 = 0.97 * v_true + 5.0 * torch.randn(NY, NX, generator=gen, dtype=torch.float64)
    p = torch.randn(NY, NX, generator=gen, dtype=torch.float64)
    return model, MSEMisfit(model, observed), v_true, v0, p


def _rel(a, b):
    return float((a - b).norm() / b.norm())


def test_time_step_ratio_is_resampled_and_forward_is_bit_identical(problem):
    model, _, v_true, v0, _ = problem
    plain = deepwave.scalar(v0, DX, DT, **_survey())
    setup = model.setup(v0)
    assert plain.info.step_ratio == setup["step_ratio"] == 5
    assert setup["resampled"] and setup["dt"] == pytest.approx(DT / 5)
    assert torch.equal(model(v0), plain.receiver_amplitudes)


def test_max_vel_read_from_the_model_matches_the_plain_call(problem):
    _, _, _, v0, _ = problem
    kw = _survey(max_vel=None)
    model = ScalarWave(DX, DT, **kw)
    assert torch.equal(model(v0), deepwave.scalar(v0, DX, DT, **kw)[-1])
    assert model.setup(v0)["max_vel"] == pytest.approx(float(v0.max()))


def test_nt_pads_the_wavelet_as_deepwave_does(problem):
    _, _, _, v0, _ = problem
    kw = dict(_survey(), nt=NT + 10)
    out = ScalarWave(DX, DT, **kw)(v0)
    assert out.shape[-1] == NT + 10
    assert torch.equal(out, deepwave.scalar(v0, DX, DT, **kw)[-1])


def test_compiled_double_backward_needs_the_resampling(problem):
    model, misfit, _, v0, p = problem
    raw = MSEMisfit(ScalarWave(DX, DT, resample=False, **_survey()), misfit.observed)
    with pytest.raises(deepwave.DeepwaveRuntimeError, match="double backward"):
        raw.hvp(v0, p)
    assert torch.isfinite(misfit.hvp(v0, p)).all()


def test_born_jvp_matches_central_differences(problem):
    model, _, _, v0, p = problem
    eps = 1e-2
    fd = (model(v0 + eps * p) - model(v0 - eps * p)) / (2 * eps)
    assert _rel(model.jvp(v0, p), fd) < 1e-6


def test_jacobian_passes_the_dot_product_test(problem):
    model, _, _, v0, _ = problem
    dottest(model.jacobian_operator(v0), rtol=1e-10)
    v32 = v0.float()
    model32 = ScalarWave(DX, DT, **_survey(torch.float32))
    dottest(model32.jacobian_operator(v32), rtol=1e-4)


def test_hvp_matches_central_differences_of_gradients(problem):
    _, misfit, _, v0, p = problem
    eps = 1e-2
    fd = (misfit.grad(v0 + eps * p) - misfit.grad(v0 - eps * p)) / (2 * eps)
    assert _rel(misfit.hvp(v0, p), fd) < 1e-6


def test_gradient_is_two_over_m_jt_r(problem):
    model, misfit, _, v0, _ = problem
    r = misfit.residual(v0)
    f, g = misfit.value_and_grad(v0)
    assert float(f) == pytest.approx(float((r**2).mean()), rel=1e-12)
    assert _rel(g, 2.0 / misfit.m * model.vjp(v0, r)) < 1e-12


def test_batched_products_match_single_products(problem):
    model, misfit, _, v0, _ = problem
    gen = torch.Generator().manual_seed(1)
    P = torch.randn(3, NY, NX, generator=gen, dtype=torch.float64)
    W = torch.randn(3, *model.data_shape(), generator=gen, dtype=torch.float64)
    small = ScalarWave(DX, DT, batch_size=2, **_survey())  # 3 products: one padded batch
    small_misfit = MSEMisfit(small, misfit.observed)
    JP, JtW, HP = small.jvp_batch(v0, P), small.vjp_batch(v0, W), small_misfit.hvp_batch(v0, P)
    for j in range(3):
        assert _rel(JP[j], model.jvp(v0, P[j])) < 1e-12
        assert _rel(JtW[j], model.vjp(v0, W[j])) < 1e-12
        assert _rel(HP[j], misfit.hvp(v0, P[j])) < 1e-10


def test_dense_hessian_matches_autograd_hessian(problem):
    model, misfit, _, v0, _ = problem
    H = misfit.hessian(v0)
    n = v0.numel()
    assert H.shape == (n, n) and torch.equal(H, H.T)
    reference = torch.autograd.functional.hessian(misfit, v0).reshape(n, n)
    assert _rel(H, reference) < 1e-10
    assert float(torch.linalg.eigvalsh(H)[0]) < 0  # indefinite away from the minimum
    op = misfit.hessian_operator(v0)
    e = torch.zeros(n, dtype=torch.float64)
    e[7] = 1.0
    assert _rel(op.matvec(e), H[:, 7]) < 1e-10
    # Under a memory bound too small for the dense J: every column a full HVP, one per call.
    tight = ScalarWave(DX, DT, max_memory=10_000, **_survey())
    tight(v0)
    assert tight.batch("hvp", n) == 1 and model.batch("hvp", n) > 1
    assert _rel(MSEMisfit(tight, misfit.observed).hessian(v0), reference) < 1e-10


def test_gauss_newton_operator_and_matrix(problem):
    model, misfit, _, v0, p = problem
    G = misfit.gauss_newton_operator(v0)
    assert "positive_semidefinite" in G.tags
    expected = 2.0 / misfit.m * model.vjp(v0, model.jvp(v0, p))
    assert _rel(G.matvec(p.reshape(-1)), expected.reshape(-1)) < 1e-12
    dense = misfit.gauss_newton_matrix(v0)
    J = model.jacobian(v0)
    assert J.shape == (misfit.m, v0.numel())
    assert _rel(J @ p.reshape(-1), model.jvp(v0, p).reshape(-1)) < 1e-12
    assert _rel(G.to_dense(), dense) < 1e-10
    assert float(torch.linalg.eigvalsh(dense)[0]) > -1e-12 * float(dense.diagonal().max())


def test_flat_vectors_keep_their_shape(problem):
    model, misfit, _, v0, p = problem
    flat, pf = v0.reshape(-1), p.reshape(-1)
    assert misfit.grad(flat).shape == flat.shape
    assert misfit.hvp(flat, pf).shape == flat.shape
    assert model.vjp(flat, model.jvp(flat, pf)).shape == flat.shape
    fresh = ScalarWave(DX, DT, **_survey())
    with pytest.raises(ValueError, match="model_shape"):
        fresh(flat)
    assert ScalarWave(DX, DT, model_shape=(NY, NX), **_survey())(flat).shape == \
        model.data_shape()


def test_vjp_reuses_its_graph_only_at_the_same_values(problem):
    """The kept forward graph serves a product only at the values it was built at: a change
    of ``v`` through ``v.data`` (no version bump) once returned the old point's product."""
    model, _, _, v0, p = problem
    w = model.jvp(v0, p)
    v = v0.clone()
    before = model.vjp(v, w)
    assert torch.equal(model.vjp(v, w), before)  # (the same point: the kept graph)
    v.data.mul_(1.01)
    assert torch.equal(model.vjp(v, w), model.vjp(v.clone(), w))
    assert not torch.equal(model.vjp(v, w), before)


def test_bad_arguments_are_reported():
    kw = _survey()
    with pytest.raises(TypeError, match="unknown deepwave.scalar keyword"):
        ScalarWave(DX, DT, not_an_option=1, **kw)
    kw.pop("receiver_locations")
    with pytest.raises(ValueError, match="receiver_locations"):
        ScalarWave(DX, DT, **kw)


def test_missing_deepwave_names_the_extra(monkeypatch):
    saved = sys.modules.pop("newtonkit_torch.deepwave")
    monkeypatch.setitem(sys.modules, "deepwave", None)
    try:
        with pytest.raises(ImportError, match=r"pip install newtonkit\[deepwave\]"):
            importlib.import_module("newtonkit_torch.deepwave")
    finally:
        sys.modules["newtonkit_torch.deepwave"] = saved
