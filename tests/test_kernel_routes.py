"""The kernel (Woodbury), normal and matrix-free routes of the GN step and the HIG direction.

Every route is compared with the float64 SVD of the (rounded) input, the exact answer for it.
Errors are relative to ``‖M‖·‖r‖`` for the linear map ``M: r ↦ d`` (as in
``strategies.hig_rtol``); bounds are ``DIM_C·(m+n)·model``:

- SVD-based routes: ``ε·κ``; through a Gram (``JJᵀ`` or ``JᵀJ``): ``ε·κ²`` (eigenvalues carry
  an absolute error ``ε·σ₁²``), where for the damped step ``κ² = (σ₁²+μ)/(λ_min+μ)`` is the
  condition number of the kernel system on the kept subspace;
- matrix-free CG, stopped at ``‖res‖ ≤ rtol‖r‖``: ``‖Δd‖ ≤ σ₁·rtol‖r‖/(λ_min+μ)``, so
  ``rtol·κ²`` relative, plus the rounding of the dense model.
"""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest
import strategies as S
from hypothesis import assume, event, example, given, note
from hypothesis import strategies as st

from newtonkit.linalg import gauss_newton_step, half_inverse
from newtonkit.linalg.half_inverse import choose_route as choose_hig_route
from newtonkit.linalg.kernel import choose_route, kernel_cg
from newtonkit.operators import MatrixOperator

COND = {"float32": 30.0, "float64": 1e3}  # kept-part condition numbers generated
MUS = (0.0, 1e-2, 1.0)  # damping relative to σ₁²


def _gn_reference(case: S.SVDCase, r: np.ndarray, mu: float) -> tuple[np.ndarray, float, float]:
    """``(d_ref, scale, κ²)``: the exact step for the rounded J, ‖M‖·‖r‖, and the condition
    number of the kernel system on the kept subspace."""
    m, n = case.shape
    p = min(m, n)
    s = case.s[:p]
    if mu == 0.0:
        k = case.k
        f = 1.0 / s[:k]
        d = -(case.Vt[:k].T @ (f * (case.U[:, :k].T @ r)))
        return d, float(np.max(f)) * np.linalg.norm(r), (s[0] / s[k - 1]) ** 2
    f = s / (s * s + mu)
    d = -(case.Vt[:p].T @ (f * (case.U[:, :p].T @ r)))
    lam_min = 0.0 if (m > n or case.r < p) else s[p - 1] ** 2
    return d, float(np.max(f)) * np.linalg.norm(r), (s[0] ** 2 + mu) / (lam_min + mu)


@st.composite
def gn_cases(draw, kinds=("tall", "wide", "square")):
    case = draw(S.svd_cases(discarded=False, kinds=kinds, max_cond=COND, max_truncation=1e-2,
                            min_truncation={"float32": 1e-3, "float64": 1e-5}))
    mu = draw(st.sampled_from(MUS), label="μ/σ₁²") * float(case.s[0]) ** 2
    return case, mu


def _tol(case: S.SVDCase, model: float) -> float:
    return S.DIM_C * sum(case.shape) * model


@given(gn_cases(), st.sampled_from(("kernel", "normal", "auto")))
def test_gn_dense_routes_match_svd_reference(cm, route):
    case, mu = cm
    rng = np.random.default_rng(case.seed + 1)
    r = S.rounded(rng.standard_normal(case.shape[0]), case.dtype)
    want, scale, kappa2 = _gn_reference(case, r, mu)
    kw = {"method": "lstsq"} if route == "normal" else {"route": route}  # normal: the SVD
    d, info = gauss_newton_step(case.J, case.vec(r), mu, **kw)
    note(f"{info} κ²={kappa2:.3g}")
    assert S.backend_of(d) == case.backend and S.dtype_name(d) == case.dtype
    e = S.eps(case.dtype)
    if info.method in ("kernel", "cholesky"):
        tol = _tol(case, e * kappa2)  # through a Gram (JJᵀ, or JᵀJ when μ bounds it): ε·κ²
    else:
        tol = _tol(case, e * kappa2 ** 0.5)  # SVD / QR (backward stable): ε·κ
    assume(tol <= S.MEANINGFUL)
    assert S.rel_err(d, want, scale) <= tol
    if route == "auto":  # chosen from the shapes: the kernel route exactly when m < n, but
        # at μ = 0 the SVD where the Gram's λ_min < √ε·λ_max (it cannot resolve the
        # minimum-norm step; the check is on the computed eigenvalues: a margin of 10 each way)
        wide = case.shape[0] < case.shape[1]
        assert info.route == ("kernel" if wide and info.method == "kernel" else "normal")
        if wide and info.method != "kernel":
            sv = np.zeros(case.shape[0])
            sv[:len(case.s)] = case.s
            assert mu == 0 and (sv.min() / sv.max()) ** 2 < 10 * np.sqrt(e)
        elif wide and mu == 0:
            assert (case.s.min() / case.s.max()) ** 2 > np.sqrt(e) / 10


# A soak failure (2026-12-06): 3 × 8 float64 J of rank 2 (σ = 2⁻⁸, 1.2e-3, 5e-20), μ = 0, r in
# its range.  The rank-3 Nyström sketch's last eigenvalue was rounding (above 0, below the
# sketch's shift ν), so the preconditioner shrank J's range by ν/λ_i against its null space:
# CG "converged" after 138 iterations with an error of 1.9 relative.  Such a sketch is now
# degenerate (no preconditioner).
_J_CG_SOAK = np.array([
    [-4.1433955129650167e-04, -4.6025165863496591e-04, 1.3369950633301832e-03,
     6.8962651335236023e-04, 5.9534639407585589e-04, -9.7643021210225891e-05,
     -5.4489509388058808e-04, 1.4488123496327775e-04],
    [5.3282546977170184e-05, 7.0046255780924381e-05, -1.9564731820941787e-04,
     -9.0483127067366998e-05, -6.5269662506320990e-05, 3.4424470644649949e-05,
     7.3553457272351080e-05, -1.1509006591769336e-05],
    [-2.2534752763509917e-04, -1.1517485096935731e-03, 2.6956568936276457e-03,
     5.2445642716684397e-04, -6.1334207051186329e-04, -1.8683162156185238e-03,
     -5.8538194789365793e-04, -5.1240098939538982e-04]])
_CG_SOAK_CASE = S.case_from_matrix(_J_CG_SOAK, 0.01, [0.528, -1.218, 2.088], seed=1726859)


@given(gn_cases(), st.booleans())
@example(cm=(_CG_SOAK_CASE, 0.0), nystrom=True)
def test_gn_matrix_free_cg_matches_within_its_tolerance(cm, nystrom):
    case, mu = cm
    rng = np.random.default_rng(case.seed + 2)
    # a residual in range(J): for μ = 0 the kernel system is then consistent
    r = S.rounded(case.J64 @ rng.standard_normal(case.shape[1]), case.dtype)
    want, scale, kappa2 = _gn_reference(case, r, mu)
    if mu == 0.0:  # consistent r: the kept subspace's condition number governs CG
        kappa2 = (case.s[0] / case.s[case.k - 1]) ** 2
    e = S.eps(case.dtype)
    # CG's attainable relative residual in precision ε is about ε·κ of the system it solves (the
    # gap between the recursive and the true residual): a smaller rtol can never be met
    rtol = max({"float32": 1e-5, "float64": 1e-10}[case.dtype], 10 * e * kappa2)
    d, info = gauss_newton_step(MatrixOperator(case.J), case.vec(r), mu, route="matrix-free",
                                rtol=rtol, maxiter=2000,
                                preconditioner="nystrom" if nystrom else None, nystrom_rank=8)
    assert info.route == "matrix-free"
    event(f"converged {info.converged}")
    if not info.converged:  # CG may stall or break down (float32 with μ = 0, where the kernel
        return  # system is singular): it says so, and only a converged step promises the bound
    tol = (rtol + _tol(case, e)) * kappa2  # stopping tolerance·κ² + the dense model's ε·κ²
    assume(tol <= S.MEANINGFUL)
    assert S.rel_err(d, want, scale) <= tol, (info, kappa2)


def test_nystrom_preconditioner_cuts_cg_iterations():
    rng = np.random.default_rng(0)
    m, n = 200, 2000
    U, _ = np.linalg.qr(rng.standard_normal((m, m)))
    s = 10.0 ** np.linspace(0, -6, m)  # cond(JJᵀ + μI) = 1e4; with a rank-50 Nyström ≈ 60
    J = (U * s) @ rng.standard_normal((m, n)) / n ** 0.5
    r = rng.standard_normal(m)
    A = MatrixOperator(J)
    mu = 1e-4
    want, _ = gauss_newton_step(J, r, mu, route="kernel")
    (d0, i0), (d1, i1) = (gauss_newton_step(A, r, mu, route="matrix-free", rtol=1e-10,
                                            maxiter=1000, preconditioner=p)
                          for p in (None, "nystrom"))
    assert i0.converged and i1.converged and i1.iterations < i0.iterations / 3, (i0, i1)
    # ‖Δd‖ ≤ σ₁·rtol‖r‖/μ for both
    bound = 1.1 * np.linalg.norm(J, 2) * 1e-10 * np.linalg.norm(r) / mu
    assert np.linalg.norm(d0 - want) <= bound and np.linalg.norm(d1 - want) <= bound


@given(S.svd_cases(kinds=("wide", "tall"), max_cond=S.cond_limit("gram")),
       st.sampled_from(("kernel", "normal")), st.sampled_from((-1.0, -0.5)))
def test_hig_gram_routes_match_svd(case, route, kappa):
    d, info = half_inverse(case.J, case.g, kappa, case.truncation, route=route)
    want = case.power(kappa) @ case.g64
    scale = float(np.max(case.s[:case.k] ** kappa)) * np.linalg.norm(case.g64)
    # ε·cond_k² through the Gram (ε·cond_k when the threshold forces the SVD)
    assert S.rel_err(d, want, scale) <= S.hig_rtol(case, info.route), info.route
    assert info.route.split("-")[0] in (route, "svd") and info.rank == case.k


@given(S.svd_cases(max_cond=S.cond_limit("svd", 3.0), max_small=16, max_large=30),
       st.sampled_from((-1.0, -0.5)))
def test_hig_matrix_free_finds_rank_from_threshold(case, kappa):
    d, info = half_inverse(MatrixOperator(case.J), case.g, kappa, case.truncation,
                           route="matrix-free")
    assert info.route == "matrix-free" and info.rank == case.k  # no rank= given
    want = case.power(kappa) @ case.g64
    scale = float(np.max(case.s[:case.k] ** kappa)) * np.linalg.norm(case.g64)
    # the SVD's ε·cond_k, times 3 for the power iterations' re-orthogonalisation
    assert S.rel_err(d, want, scale) <= S.hig_rtol(case, "svd", 3.0)


def test_matrix_free_hig_grows_the_sketch_beyond_the_start():
    rng = np.random.default_rng(1)
    m, n, k = 120, 300, 70  # rank 70 > the first sketch (16 + 10)
    U, _ = np.linalg.qr(rng.standard_normal((m, k)))
    V, _ = np.linalg.qr(rng.standard_normal((n, k)))
    J = (U * np.linspace(1.0, 0.1, k)) @ V.T
    g = rng.standard_normal(m)
    d, info = half_inverse(MatrixOperator(J), g, -0.5, 1e-3, route="matrix-free")
    ref, rinfo = half_inverse(J, g, -0.5, 1e-3, route="svd")
    assert info.rank == rinfo.rank == k
    assert np.linalg.norm(d - ref) <= 1e-10 * np.linalg.norm(ref)


def _peak_bytes(fn) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_kernel_route_never_forms_p_by_p():
    # P = 20,000: a P × P float64 array would be 3.2 GB; J itself is 10 MB and not counted
    rng = np.random.default_rng(0)
    m, n = 64, 20_000
    J = rng.standard_normal((m, n))
    r = rng.standard_normal(m)
    out = {}
    for name, fn in {
        "gn-auto": lambda: out.setdefault("gn", gauss_newton_step(J, r, 1e-3)),
        "gn-mu0": lambda: gauss_newton_step(J, r, 0.0, route="kernel"),
        "hig-auto": lambda: out.setdefault("hig", half_inverse(J, r)),
        "gn-cg": lambda: gauss_newton_step(MatrixOperator(J), r, 1e-3, route="matrix-free"),
    }.items():
        peak = _peak_bytes(fn)
        # kernel: the 64 × 64 Gram and factors plus a few length-P vectors (< 2 MB)
        assert peak < 2e6, (name, peak)
    assert out["gn"][1].route == "kernel" and out["hig"][1].route == "kernel"


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_auto_route_follows_shape_and_budget(backend):
    S.require(backend)
    rng = np.random.default_rng(3)
    Jw = S.to_backend(rng.standard_normal((20, 60)), backend, "float64")
    Jt = S.to_backend(rng.standard_normal((60, 20)), backend, "float64")
    rw, rt = (S.to_backend(rng.standard_normal(k), backend, "float64") for k in (20, 60))
    assert gauss_newton_step(Jw, rw, 0.1)[1].route == "kernel"
    assert gauss_newton_step(Jt, rt, 0.1)[1].route == "normal"
    # kernel: 2·20²·8 = 6,400 bytes; matrix-free: 4·(20 + 60)·8 = 2,560
    assert gauss_newton_step(Jw, rw, 0.1, memory_budget=3000)[1].route == "matrix-free"
    assert gauss_newton_step(Jw, rw, 0.1, route="normal")[1].method == "qr"
    assert half_inverse(Jw, rw)[1].route == "kernel"
    assert half_inverse(Jt, rt)[1].route == "normal"
    # HIG's matrix-free sketch holds (N + P)·16 entries: at 4,096 × 1e5 13 MB, against the
    # Gram's 2·4096²·8 = 268 MB and the SVD's 3.4 GB
    assert choose_hig_route(4096, 100_000, "float64", True, 1e-6, True, 2**27) == "matrix-free"
    # the paper's example: P = 1e5, N = 4096 never takes the P × P route
    assert choose_route(4096, 100_000, 8, dense=True, memory_budget=2**31) == "kernel"
    assert choose_route(4096, 100_000, 8, dense=False, memory_budget=2**31) == "matrix-free"
    assert choose_route(100_000, 1000, 8, dense=True, memory_budget=2**31) == "normal"


def test_a_budget_too_small_for_any_route_is_an_error():
    torch = pytest.importorskip("torch")
    from newtonkit_torch.optim import HIG, GaussNewton

    J, r = np.ones((20, 60)), np.ones(20)
    # matrix-free needs 2,560 bytes (GN) and 10,240 (HIG's first sketch); 1,000 holds neither
    with pytest.raises(ValueError, match="memory_budget=1000 bytes is too small for any route"):
        gauss_newton_step(J, r, 0.1, memory_budget=1000)
    with pytest.raises(ValueError, match="memory_budget=1000 bytes is too small for any route"):
        half_inverse(J, r, memory_budget=1000)
    net = torch.nn.Linear(3, 2).double()
    x = torch.randn(4, 3, dtype=torch.float64)
    before = [p.detach().clone() for p in net.parameters()]

    def closure():
        y = net(x)
        return y, 0.5 * (y ** 2).sum()

    for opt in (GaussNewton(net.parameters(), memory_budget=8),
                HIG(net.parameters(), memory_budget=8)):
        with pytest.raises(ValueError, match="too small for any route"):
            opt.step(closure)
        assert all(torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))


def test_kernel_cg_zero_residual():
    A = MatrixOperator(np.ones((3, 5)))
    y, info = kernel_cg(A, np.zeros(3), 0.0)
    assert info.iterations == 0 and info.converged and not np.any(y)


def test_torch_optimizers_record_the_route():
    torch = pytest.importorskip("torch")
    from newtonkit_torch.optim import HIG, GaussNewton

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 16), torch.nn.Tanh(),
                              torch.nn.Linear(16, 1)).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    t = torch.sin(x[:, :1])

    def closure():
        y = net(x)
        return y, 0.5 * ((y - t) ** 2).sum()

    for opt, want in ((GaussNewton(net.parameters(), damping=1e-3), "kernel"),
                      (GaussNewton(net.parameters(), damping=1e-3, route="matrix-free"),
                       "matrix-free"),
                      (HIG(net.parameters()), "kernel"),
                      (GaussNewton(net.parameters()), "kernel")):
        opt.step(closure)
        assert opt.last_info["solves"][0].route == want  # 8 rows < 65 parameters
        assert all(opt.state[p]["route"] == want for p in net.parameters())


def test_bad_route_options_are_refused():
    J, r = np.ones((2, 4)), np.ones(2)
    with pytest.raises(ValueError, match="memory_budget"):
        gauss_newton_step(J, r, memory_budget=0)
    with pytest.raises(ValueError, match="memory_budget"):
        half_inverse(J, r, memory_budget=-1.0)
    with pytest.raises(ValueError, match="preconditioner"):
        gauss_newton_step(J, r, preconditioner="jacobi")
    with pytest.raises(ValueError, match="route"):
        gauss_newton_step(J, r, route="woodbury")
    with pytest.raises(ValueError, match="route"):
        half_inverse(J, r, route="woodbury")


def test_auto_rule_picks_the_smaller_gram_near_square():
    # Cost model: a Gram of side k costs 2·N·P·k + O(k³), QR of [J; √μD] ≈ 4(N+P)P²;
    # near-square shapes take the Gram of the smaller side (GN when μ bounds it; HIG always
    # when the threshold is resolvable), never the SVD or QR.
    from newtonkit.linalg.half_inverse import choose_route as hig_route
    from newtonkit.linalg.kernel import choose_method, route_flops

    assert choose_method(1024, 1000, 8, dense=True, memory_budget=None, gram_ok=True) \
        == "cholesky"
    assert choose_method(1000, 1024, 8, dense=True, memory_budget=None) == "kernel"
    assert choose_method(1024, 1000, 8, dense=True, memory_budget=None) == "qr"  # μ too small
    assert route_flops("cholesky", 1024, 1000) < route_flops("kernel", 1024, 1000) \
        < route_flops("qr", 1024, 1000)
    assert hig_route(1024, 1000, np.float64, True, 1e-6, True, None) == "gram"
    assert hig_route(1024, 1000, np.float64, True, 1e-9, True, None) == "svd"  # unresolvable
    rng = np.random.default_rng(5)
    J, g = rng.standard_normal((48, 40)), rng.standard_normal(48)
    assert half_inverse(J, g)[1].route == "normal"  # aspect 1.2: the 40 × 40 Gram
    assert half_inverse(J.T, g[:40])[1].route == "kernel"
    mu = 1e-4 * np.linalg.norm(J, 2) ** 2  # ≥ sqrt(ε)·‖J‖_F² = 1.5e-8·‖J‖_F²
    d, info = gauss_newton_step(J, g, mu)
    assert info.method == "cholesky" and info.route == "normal"
    d_chol, _ = gauss_newton_step(J, g, mu, method="cholesky")
    assert np.array_equal(d, d_chol)  # auto computes exactly what the chosen method does
    assert gauss_newton_step(J, g, 0.0)[1].method == "qr"  # μ = 0: QR keeps ε·κ
    assert gauss_newton_step(J, g, 1e-12)[1].method == "qr"  # μ below the Gram's floor


def test_auto_path_does_no_extra_decomposition(monkeypatch):
    # The auto path runs one O(N·P) pass (column norms) then exactly the chosen method: no
    # second O(N·P·min(N,P)) product or factorisation.
    import newtonkit.linalg.gauss_newton as gn

    calls = []
    rng = np.random.default_rng(6)
    for shape, mu in (((30, 80), 1e-2), ((80, 30), 1e-2), ((80, 30), 0.0)):
        J, r = rng.standard_normal(shape), rng.standard_normal(shape[0])
        real = {"kernel_solve": gn.kernel_solve, "_qr": gn._qr, "_lstsq": gn._lstsq}
        for name, fn in real.items():
            monkeypatch.setattr(gn, name, lambda *a, _n=name, _f=fn, **k:
                                calls.append(_n) or _f(*a, **k))
        calls.clear()
        d_auto, info = gauss_newton_step(J, r, mu)
        want = {"kernel": ["kernel_solve"], "qr": ["_qr"], "cholesky": []}[info.method]
        assert calls == want, (shape, mu, calls)
        for name, fn in real.items():
            monkeypatch.setattr(gn, name, fn)
        d_direct, _ = gauss_newton_step(J, r, mu, method=info.method)
        assert np.array_equal(d_auto, d_direct)


@pytest.mark.parametrize("name, options", [
    ("HIG", dict(route=r)) for r in ("svd", "gram", "matrix-free")] + [
    ("GaussNewton", dict(route=r, damping=mu))
    for r in ("svd", "normal", "kernel", "matrix-free") for mu in (0.0, 1e-3)] + [
    ("GaussNewton", dict(gram_ema=0.6, damping=mu)) for mu in (0.0, 1e-3)])
def test_a_parameter_the_outputs_ignore_stays_put(name, options):
    """A trainable parameter the model never uses is a zero column of J: its entry of the
    minimum-norm step is 0, up to the rounding a factorisation mixes into it, at most
    ε·(N + P) of the step per unit of κ, the condition number of the kept part of J (at most
    σ₁/σ for the smallest σ above the lstsq cut-off max(N, P)·ε·σ₁); per unit of κ² for the
    averaged Gramian's eigendecomposition of JᵀJ.  The step stays finite."""
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    a, b, unused = (torch.nn.Linear(2, 3).double(), torch.nn.Linear(3, 1).double(),
                    torch.nn.Linear(3, 3).double())
    params = [*a.parameters(), *unused.parameters(), *b.parameters()]
    # 64 rows, 13 used parameters: the kept part of J is well conditioned
    x = torch.rand(64, 2, dtype=torch.float64) * 2 - 1
    t = torch.sin(3 * x[:, :1]) * torch.cos(2 * x[:, 1:])

    def residuals(*ps):
        h = torch.tanh(x @ ps[0].T + ps[1])
        return (h @ ps[4].T + ps[5] - t).reshape(-1)

    def closure():
        y = residuals(*params)
        return y, 0.5 * (y ** 2).sum()

    jac = torch.autograd.functional.jacobian(residuals, tuple(p.detach() for p in params))
    J = torch.cat([j.reshape(64, -1) for j in jac], dim=1).numpy()
    n_rows, n_params = J.shape
    eps = float(np.finfo(np.float64).eps)
    s = np.linalg.svd(J, compute_uv=False)
    kappa = s[0] / s[s > max(J.shape) * eps * s[0]][-1]
    assert kappa < 1e6  # (the test needs a kept part that is well conditioned)
    before = [p.detach().clone() for p in params]
    optim = pytest.importorskip("newtonkit_torch.optim")
    getattr(optim, name)(params, **options).step(closure)
    moves = [(p.detach() - q) for p, q in zip(params, before, strict=True)]
    step = float(torch.cat([m.reshape(-1) for m in moves]).norm())
    assert math.isfinite(step) and step > 0
    bound = eps * (n_rows + n_params) * kappa ** (2 if "gram_ema" in options else 1) * step
    assert float(moves[2].abs().max()) <= bound and float(moves[3].abs().max()) <= bound
