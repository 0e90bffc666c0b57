"""Properties of the Gauss-Newton / Levenberg–Marquardt step ``(JᵀJ + μD) d = −Jᵀr``.

Tolerances follow least-squares perturbation theory (Golub & Van Loan §5.3) for the problem
``min ‖A d + b‖`` with ``A = [J; sqrt(μD)]``, ``b = [r; 0]``, cond = cond(A):
- backward-stable methods (QR, SVD): ``‖Δd‖/‖d‖ ≲ ε·(cond + cond²·‖res‖/(‖A‖‖d‖))``;
- the Gram–Cholesky method squares the condition number: ``ε·cond²``;
- CGLS stops when the normal-equation residual is ``rtol·‖Jᵀb‖``, so ``rtol·cond²`` more;
each times ``C = 30·sqrt(max(m, n))`` (rounding in m·n products; observed ratios stay below 3).
Generated Jacobians have condition numbers up to 1e8 in float64 and 1e3 in float32 (beyond which
float32 least squares has no correct digits), or exact rank deficiency.
"""

from __future__ import annotations

import numpy as np
import pytest
import strategies as S
from hypothesis import assume, given, note
from hypothesis import strategies as st

from newtonkit.linalg import LinAlgError, cgls, gauss_newton_step
from newtonkit.operators import FunctionOperator, MatrixOperator

# smallest relative singular value of generated full-rank J: the kept part spans
# [GAP·t, 1], so cond ≤ 1/(GAP·t): 1e8 in float64, 1e3 in float32
GN_TRUNC = {"float64": 1e-9, "float32": 1e-4}
C_MAX = 30 * np.sqrt(40)  # _ls_tol's constant at the largest generated size
RHOS = (0.0, 1e-3, 1.0)  # size of the residual's part orthogonal to range(J), relative to ‖Jx‖


def cond_limit(model) -> dict[str, float]:
    """Largest cond, by dtype (at most S.MAX_COND_K), with C_MAX·model(ε, cond) ≤ S.MEANINGFUL:
    the cases on which a least-squares bound with that model can tell a wrong step from a
    right one (model increasing in cond)."""
    out = {}
    for dtype in S.DTYPES:
        e, lo, hi = S.eps(dtype), 0.0, np.log10(S.MAX_COND_K[dtype])
        if C_MAX * model(e, 10.0**hi) <= S.MEANINGFUL:
            out[dtype] = 10.0**hi
            continue
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if C_MAX * model(e, 10.0**mid) <= S.MEANINGFUL else (lo, mid)
        out[dtype] = 10.0**lo
    return out


def ls_model(method: str, rho: float, rtol_cg: float = 0.0):
    """_ls_tol's model for ``min ‖J d + r‖`` with ‖res‖/(‖J‖‖d‖) ≤ ρ (residuals(): the residual
    is ρ‖Jx‖ ≤ ρσ₁‖d‖): ε·cond² for the Gram–Cholesky method, ε·(cond + ρ·cond²) for the
    backward-stable ones, plus rtol·cond² for CGLS."""
    if method in ("cholesky", "kernel", "auto"):  # "auto" takes the kernel route for wide J
        return lambda e, c: e * c * c
    return lambda e, c: e * (c + rho * c * c) + rtol_cg * c * c


def meaningful(tol: float) -> None:
    """Keep the case only when the bound can fail a wrong answer: tol ≤ S.MEANINGFUL.  The
    generators are restricted so that this filters rarely (the damped problems' bound depends
    on μ and the residual in ways the a-priori restriction does not capture exactly)."""
    note(f"tol = {tol:.3g}")
    assume(tol <= S.MEANINGFUL)


@st.composite
def full_rank(draw, backend=None, dtype=None, kinds=("tall", "wide", "square"),
              methods=("auto", "qr", "lstsq", "cholesky"), rtol_cg=None):
    """``(method, ρ, case)``: full-rank J whose condition number keeps the method's bound
    meaningful for the drawn residual size ρ."""
    method = draw(st.sampled_from(methods), label="method")
    rho = draw(st.sampled_from(RHOS), label="ρ")
    limit = {dt: cond_limit(ls_model(method, rho, 0.0 if rtol_cg is None else rtol_cg[dt]))[dt]
             for dt in S.DTYPES}
    case = draw(S.svd_cases(backend=backend, dtype=dtype, deficient=False, discarded=False,
                            min_truncation=GN_TRUNC, kinds=kinds, max_cond=limit))
    return method, rho, case


def residuals(case: S.SVDCase, rho: float) -> np.ndarray:
    """r = −J x + ρ·‖Jx‖·r̂_⊥ with r̂_⊥ ⊥ range(J) (where range(J) ≠ ℝᵐ), ρ ∈ RHOS."""
    rng = np.random.default_rng(case.seed + 10)
    m, n = case.shape
    x = rng.standard_normal(n)
    Jx = case.J64 @ x
    k = int(np.count_nonzero(case.s > 0))
    perp = case.U[:, k:] @ rng.standard_normal(m - k) if m > k else np.zeros(m)
    nrm = np.linalg.norm(perp)
    r = -Jx + (rho * np.linalg.norm(Jx) / nrm * perp if nrm > 0 else 0.0)
    return S.rounded(r, case.dtype)


def _ls_tol(case: S.SVDCase, method: str, A: np.ndarray, b: np.ndarray, d_ref: np.ndarray,
            rtol_cg: float = 0.0) -> float:
    """Relative error bound for ``d`` in ``min ‖A d + b‖`` (see the module docstring); ``d_ref``
    is that problem's minimiser (its residual ‖A d_ref + b‖ enters the cond² term).  (Until
    2026-12 the callers passed −d_ref, which made ‖res‖ ≈ 2‖b‖ and the bound ≥ 1 in about a
    sixth of the generated cases.)"""
    e = S.eps(case.dtype)
    s = np.linalg.svd(A, compute_uv=False)
    s = s[s > 1e-13 * s[0]]
    cond = s[0] / s[-1]
    res = np.linalg.norm(A @ d_ref + b)
    nd = max(np.linalg.norm(d_ref), 1e-300)
    C = 30 * np.sqrt(max(case.shape))
    if method in ("cholesky", "kernel"):  # both go through a Gram: JᵀJ or JJᵀ
        model = e * cond**2
    else:
        model = e * (cond + cond**2 * res / (s[0] * nd))
    if method == "cgls":
        model += rtol_cg * cond**2
    return C * model


def _step(case: S.SVDCase, r: np.ndarray, damping: float = 0.0, A: np.ndarray | None = None,
          **kw):
    """``gauss_newton_step``, or ``None`` where the Gram–Cholesky method legitimately reports
    a normal matrix singular to working precision: cond(AᵀA) ≥ 1e-3/ε (A = [J; sqrt(μD)])."""
    try:
        return gauss_newton_step(case.J, case.vec(r), damping, **kw)
    except LinAlgError:
        if kw.get("method") != "cholesky":
            raise
        A = case.J64 if A is None else A
        s = np.linalg.svd(A, compute_uv=False)
        assert s[-1] == 0 or (s[0] / s[-1]) ** 2 * S.eps(case.dtype) >= 1e-3, s
        return None


@given(full_rank())
def test_full_rank_equals_least_squares(mrc):
    method, rho, case = mrc
    # μ = 0 and full-rank J: the least-squares solution of J d ≈ −r (unique for tall/square,
    # minimum-norm for wide J of full row rank, where the residual is zero).  full_rank() keeps
    # the method's LS bound ≤ S.MEANINGFUL; the Gram–Cholesky method needs JᵀJ nonsingular.
    assume(method != "cholesky" or case.shape[0] >= case.shape[1])
    r = residuals(case, rho)
    want = -np.linalg.lstsq(case.J64, r, rcond=None)[0]
    d, info = gauss_newton_step(case.J, case.vec(r), method=method)
    note(f"{method} -> {info}")
    assert S.backend_of(d) == case.backend and S.dtype_name(d) == case.dtype
    tol = _ls_tol(case, info.method, case.J64, r, want)
    assume(tol <= S.MEANINGFUL)  # the property is testable only where its bound is small
    assert S.rel_err(d, want) <= tol, (method, info.method, S.rel_err(d, want), tol)


ALPHAS = {"float64": (1e-2, 1e-4, 1e-6), "float32": (1e-1, 1e-2)}


@st.composite
def deficient_cases(draw):
    """``(ρ, case)``: exactly rank-deficient J whose kept part keeps the LS bounds of the
    undamped problem and of the damped ones (μ = α·σ_k², α ∈ ALPHAS: cond ≤ cond_k/sqrt(α),
    ‖res‖/(‖A‖‖d‖) ≤ ρ + sqrt(α)/cond_k) meaningful."""
    rho = draw(st.sampled_from(RHOS), label="ρ")
    limit = {}
    for dt in S.DTYPES:
        a = min(ALPHAS[dt])
        limit[dt] = cond_limit(lambda e, c, a=a: e * (2 * c / a**0.5 + rho * c * c / a))[dt]
    return rho, draw(S.svd_cases(deficient=True, discarded=False, max_cond=limit))


@given(deficient_cases())
def test_rank_deficient_tends_to_minimum_norm(rc):
    rho, case = rc
    # Rank-deficient J (exact zeros, all nonzero σ ≥ GAP·t·σ_max): at μ = 0 the step is the
    # minimum-norm least-squares solution −J⁺r, and d(μ) → −J⁺r as μ → 0 with
    # ‖d(μ) − d(0)‖ ≤ (μ/σ_k²)·‖d(0)‖ (each component shrinks by σ²/(σ² + μ)).
    r = residuals(case, rho)
    k = case.k
    d0 = -case.power(-1.0) @ r
    A = case.U[:, :k] * case.s[:k] @ case.Vt[:k]  # the exact-rank part (cond = cond_k)
    for method in ("auto", "qr", "lstsq"):
        d, info = gauss_newton_step(case.J, case.vec(r), method=method)
        tol = _ls_tol(case, info.method, A, r, d0)
        assume(tol <= S.MEANINGFUL)  # the property is testable only where its bound is small
        assert S.rel_err(d, d0) <= tol, (method, info.method, S.rel_err(d, d0), tol)
    for alpha in ALPHAS[case.dtype]:
        mu = alpha * case.s[k - 1] ** 2
        for method in ("qr", "lstsq"):
            d, info = gauss_newton_step(case.J, case.vec(r), mu, method=method)
            Aa = np.vstack([case.J64, np.sqrt(mu) * np.eye(case.shape[1])])
            bb = np.concatenate([r, np.zeros(case.shape[1])])
            da = np.linalg.lstsq(Aa, -bb, rcond=None)[0]  # the damped problem's minimiser
            tol = _ls_tol(case, method, Aa, bb, da)
            assume(tol <= S.MEANINGFUL)  # the property is testable only where its bound is small
            assert S.rel_err(d, d0) <= alpha * 1.01 + tol, (method, alpha, S.rel_err(d, d0))


@given(S.svd_cases(), st.sampled_from(("auto", "qr", "lstsq", "cholesky", "cgls")),
       st.sampled_from(RHOS))
def test_large_damping_tends_to_scaled_gradient(case, method, rho):
    # μ → ∞: μ·d → −Jᵀr, with relative error σ_max²/μ (each component is scaled by
    # μ/(σ² + μ)); μ = 1e6·σ_max².  Rounding: the LS bound for A = [J; sqrt(μ)I] (cond ≈ 1);
    # note its cond²·‖res‖/(‖A‖‖d‖) term: the augmented QR loses about
    # ε·sqrt(μ)/σ_max·‖r‖/‖Jᵀr‖/σ_max of relative accuracy in this regime.
    r = residuals(case, rho)
    n = case.shape[1]
    mu = 1e6 * case.s[0] ** 2
    with np.errstate(over="ignore", invalid="ignore"):  # report a NaN result, not the warning
        d, info = gauss_newton_step(case.J, case.vec(r), mu, method=method)
    want = -case.J64.T @ r
    err = S.rel_err(mu * S.to_np(d), want)
    A = np.vstack([case.J64, np.sqrt(mu) * np.eye(n)])
    b = np.concatenate([r, np.zeros(n)])
    tol = _ls_tol(case, info.method, A, b, np.linalg.lstsq(A, -b, rcond=None)[0])
    meaningful(tol)
    assert err <= 1e-6 * 1.01 + tol, (err, tol)


# smallest α = μ/σ_max² per dtype and method in the damped tests: cond(A)² ≤ (1 + 10α)/(0.1α)
# for A = [J; sqrt(μD)] with D ∈ [0.1, 10] whatever J, so C_MAX·ε·cond(A)² ≤ S.MEANINGFUL
# (float64: 1e-8 allows 5e9·ε·C_MAX ≈ 2e-4 ... the Gram squares it; float32: 1e-2)
LOG_ALPHA_MIN = {"float64": -8.0, "float32": -2.0}


@given(S.svd_cases(min_truncation=1e-6), st.sampled_from(("auto", "qr", "lstsq", "cholesky",
                                                           "cgls")),
       st.booleans(), st.sampled_from(RHOS), st.data())
def test_damped_step_solves_normal_equations(case, method, scaled, rho, data):
    log_alpha = data.draw(st.sampled_from(S.grid(LOG_ALPHA_MIN[case.dtype], 2.0)),
                          label="log10 α")
    # μ = α·σ_max² > 0 with D = I or a random positive diagonal in [0.1, 10]: d matches the
    # float64 solution of (JᵀJ + μD) d = −Jᵀr to the LS bound for A = [J; sqrt(μD)].  CGLS
    # (on J D^{-1/2}) with its rtol·cond² term; it must converge where rtol·cond² ≤ 1e-2 (its
    # iterations are capped at max(2n, 100), ample for cond ≤ 1e3 in these sizes).
    r = residuals(case, rho)
    m, n = case.shape
    mu = 10.0**log_alpha * case.s[0] ** 2
    rng = np.random.default_rng(case.seed + 4)
    D = S.rounded(10.0 ** rng.uniform(-1, 1, n), case.dtype) if scaled else np.ones(n)
    kw = {"diag": case.vec(D)} if scaled else {}
    rtol_cg = 1e-10 if case.dtype == "float64" else 1e-5
    if method == "cgls":
        kw["rtol"] = rtol_cg
    A = np.vstack([case.J64, np.diag(np.sqrt(mu * D))])
    b = np.concatenate([r, np.zeros(n)])
    want = np.linalg.lstsq(A, -b, rcond=None)[0]
    # μ is rounded to the working dtype inside the solvers: a relative input change of ε
    d, info = gauss_newton_step(case.J, case.vec(r), mu, method=method, **kw)
    # "auto" is judged by the method it chose (QR, or Cholesky when μ bounds the Gram)
    tol = _ls_tol(case, info.method, A, b, want, rtol_cg if method == "cgls" else 0.0)
    meaningful(tol)
    assert info.damping == mu
    assert info.converged, info
    assert S.rel_err(d, want) <= tol, info


@given(full_rank(kinds=("tall", "square"), methods=("cgls",),
                 rtol_cg={"float64": 1e-10, "float32": 1e-5}))
def test_cgls_converges_to_least_squares(mrc):
    _, rho, case = mrc
    # CGLS (matrix-free, on a FunctionOperator) reaches the normal-equation tolerance
    # rtol = 1e-10 (float64) / 1e-5 (float32, whose residual floor is ~ε·cond) and then matches
    # least squares to rtol·cond² + ε-model; full_rank() keeps that ≤ S.MEANINGFUL (cond ≲ 3e3
    # in float64, ≲ 3 in float32), where it must converge within 10n + 50 iterations.
    r = residuals(case, rho)
    xp = S.namespace(case.backend)
    J = case.J
    op = FunctionOperator(case.shape, lambda x: J @ x, lambda y: xp.matrix_transpose(J) @ y,
                          like=J)
    rtol = 1e-10 if case.dtype == "float64" else 1e-5
    d, info = gauss_newton_step(op, case.vec(r), rtol=rtol, maxiter=10 * case.shape[1] + 50)
    assert info.method == "cgls"
    assert S.dtype_name(d) == case.dtype
    assert info.converged, info
    want = -np.linalg.lstsq(case.J64, r, rcond=None)[0]
    tol = _ls_tol(case, "cgls", case.J64, r, want, rtol)
    assume(tol <= S.MEANINGFUL)  # the property is testable only where its bound is small
    assert S.rel_err(d, want) <= tol, (S.rel_err(d, want), tol)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("dtype, cond, rtol", [("float64", 1e5, 1e-13), ("float64", 1e6, 1e-12),
                                               ("float32", 1e4, 1e-4), ("float64", 1e3, 1e-10)])
def test_cgls_converged_means_the_recomputed_residual_meets_rtol(seed, dtype, cond, rtol):
    """``converged`` is a promise about x: ‖Jᵀ(b − Jx) − μx‖ ≤ max(rtol, ε)·‖Jᵀb‖ for the
    residual recomputed from x in the working precision (the same products as the solver's:
    the bound is exact).  The recurrence's residual drifts by about ε·κ(J)·‖b‖; it alone said
    converged while the recomputed one was up to 931× the tolerance."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((60, 40)))
    V, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    J = ((U * np.logspace(0, -np.log10(cond), 40)) @ V.T).astype(dtype)
    b = rng.standard_normal(60).astype(dtype)
    x, info = cgls(MatrixOperator(J), b, rtol=rtol, maxiter=5000)
    # (attainable there: ε·κ = 2e-13 < rtol; the first three ask for less than ε·κ allows)
    assert info.converged or cond > 1e3
    if info.converged:
        s = J.T @ (b - J @ x)
        eps = float(np.finfo(dtype).eps)
        assert np.linalg.norm(s) <= max(rtol, eps) * np.linalg.norm(J.T @ b)


@given(S.svd_cases(deficient=True, discarded=False, dtype="float64",
                   max_cond=cond_limit(ls_model("cgls", 1.0, 1e-12))), st.sampled_from(RHOS))
def test_cgls_rank_deficient_gives_minimum_norm(case, rho):
    # Started at 0, CGLS stays in range(Jᵀ), so on rank-deficient J it converges to −J⁺r
    # (cond_k restricted so that its bound, with rtol·cond_k², stays ≤ S.MEANINGFUL).
    r = residuals(case, rho)
    x, info = cgls(case.J, case.vec(-r), rtol=1e-12, maxiter=20 * case.shape[1] + 100)
    want = -case.power(-1.0) @ r
    assert info.converged, info
    A = case.U[:, :case.k] * case.s[:case.k] @ case.Vt[:case.k]
    tol = _ls_tol(case, "cgls", A, r, want, 1e-12)
    assume(tol <= S.MEANINGFUL)  # the property is testable only where its bound is small
    assert S.rel_err(x, want) <= tol


@given(S.svd_cases(backend="numpy", min_truncation=1e-6),
       st.sampled_from(("qr", "lstsq", "cholesky", "cgls")), st.sampled_from((1e-3, 1.0)),
       st.sampled_from(RHOS))
def test_numpy_and_torch_agree(case, method, alpha, rho):
    # Same inputs on both backends.  Each result is a solution of the same damped LS problem
    # min ‖A d + b‖, A = [J; sqrt(μ)I], so each is within its method's LS bound of the float64
    # solution and the two within the sum of the bounds, whichever method each backend ended
    # on (QR falls back to the SVD on a pivot test that rounding may decide differently).
    # μ = α·σ_max² with α ≥ 1e-3 keeps cond(A) ≤ sqrt(1 + 1/α) ≈ 32 whatever J.
    S.require("torch")
    r = residuals(case, rho)
    mu = alpha * case.s[0] ** 2
    m, n = case.shape
    A = np.vstack([case.J64, np.sqrt(mu) * np.eye(n)])
    b = np.concatenate([r, np.zeros(n)])
    kw = {"rtol": 1e-5 if case.dtype == "float32" else 1e-10} if method == "cgls" else {}
    want = np.linalg.lstsq(A, -b, rcond=None)[0]
    # (float32 CGLS at α = 1e-3: rtol·cond² ≈ 1e-2 is not a meaningful bound: filtered)
    meaningful(_ls_tol(case, method, A, b, want, kw.get("rtol", 0.0)))
    with np.errstate(over="ignore", invalid="ignore"):
        d_np, i_np = gauss_newton_step(case.J, case.vec(r), mu, method=method, **kw)
        d_t, i_t = gauss_newton_step(S.to_backend(case.J64, "torch", case.dtype),
                                     S.to_backend(r, "torch", case.dtype), mu, method=method,
                                     **kw)
    assert S.backend_of(d_t) == "torch" and S.dtype_name(d_t) == case.dtype
    assert i_np.converged and i_t.converged, (i_np, i_t)
    tol_np = _ls_tol(case, i_np.method, A, b, want, kw.get("rtol", 0.0))
    tol_t = _ls_tol(case, i_t.method, A, b, want, kw.get("rtol", 0.0))
    assume(max(tol_np, tol_t) <= S.MEANINGFUL)
    assert S.rel_err(d_np, want) <= tol_np
    assert S.rel_err(d_t, want) <= tol_t
    assert S.rel_err(d_t, S.to_np(d_np), np.linalg.norm(want)) <= tol_np + tol_t


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_operator_input_materialised_for_dense_methods(backend):
    # A matrix-free operator is materialised (in column chunks) for the dense methods and gives
    # the same step as the array.
    rng = np.random.default_rng(5)
    J = rng.standard_normal((12, 5))
    r = rng.standard_normal(12)
    Jb, rb = S.to_backend(J, backend, "float64"), S.to_backend(r, backend, "float64")
    want = -np.linalg.lstsq(J, r, rcond=None)[0]
    # κ(J) of a 12×5 Gaussian is below 10; the residual ‖Jw + r‖ ≤ ‖r‖.  Least-squares bound
    # C·n·ε·(κ‖w‖ + κ²‖res‖/σ₁) with C = 100, and CGLS's stopping rtol (1e-10 relative on the
    # normal equations, times κ² on the step) for cgls
    s = np.linalg.svd(J, compute_uv=False)
    kappa, eps = s[0] / s[-1], np.finfo(np.float64).eps
    res = np.linalg.norm(J @ -want - r)
    bound = 100 * 5 * eps * (kappa * np.linalg.norm(want) + kappa**2 * res / s[0])
    for method in ("qr", "lstsq", "cholesky", "cgls"):
        d, _ = gauss_newton_step(MatrixOperator(Jb), rb, method=method, chunk_size=2)
        allowed = bound * (kappa if method == "cholesky" else 1.0)  # the Gram squares κ
        if method == "cgls":
            allowed += 1e-10 * kappa**2 * np.linalg.norm(want)
        assert np.linalg.norm(S.to_np(d) - want) <= allowed, method


def test_qr_on_exactly_rank_deficient_tall_matrix_gives_minimum_norm():
    # Regression example for the property above: J = 12×6 of exact rank 5 (a product of 12×5
    # and 5×6 Gaussians).  QR without pivoting has one |R_ii| at rounding level, about
    # max(m, n)·ε·max|R_jj|; the step must be the minimum-norm one, not 1/R_ii-sized.
    rng = np.random.default_rng(0)
    J = rng.standard_normal((12, 5)) @ rng.standard_normal((5, 6))
    r = rng.standard_normal(12)
    want = -np.linalg.pinv(J) @ r
    # the rank-5 problem's least-squares bound C·n·ε·(κ₅‖w‖ + κ₅²‖res‖/σ₁), κ₅ = σ₁/σ₅, C = 100
    s = np.linalg.svd(J, compute_uv=False)
    kappa, eps = s[0] / s[4], np.finfo(np.float64).eps
    res = np.linalg.norm(J @ -want - r)
    bound = 100 * 6 * eps * (kappa * np.linalg.norm(want) + kappa**2 * res / s[0])
    for method in ("auto", "qr", "lstsq"):
        d, info = gauss_newton_step(J, r, method=method)
        assert np.linalg.norm(d - want) <= bound, f"{method} {info}"


@pytest.mark.parametrize("damping", [1e2, 1e6])
def test_cgls_float32_default_tolerance_stays_finite(damping):
    # Regression example: float32 CGLS cannot reach the default rtol = 1e-10 (its rounding floor
    # is ~ε32); it must still return a finite step close to the solution (here reached after 2
    # iterations), not keep iterating into overflow and NaN.
    rng = np.random.default_rng(0)
    J = rng.standard_normal((20, 20)).astype(np.float32)
    r = rng.standard_normal(20).astype(np.float32)
    J64 = J.astype(np.float64)
    want = -np.linalg.solve(J64.T @ J64 + damping * np.eye(20), J64.T @ r)
    with np.errstate(over="ignore", invalid="ignore"):
        d, info = gauss_newton_step(J, r, damping, method="cgls")
    assert np.all(np.isfinite(d)), info
    # float32 CGLS: the solution of the damped system (κ ≤ (‖J‖² + μ)/μ ≤ 1.8 at μ = 100)
    # to C·n·ε₃₂·κ relative with C = 100
    kappa = (np.linalg.norm(J64, 2) ** 2 + damping) / damping
    bound = 100 * 20 * np.finfo(np.float32).eps * kappa * np.linalg.norm(want)
    assert np.linalg.norm(d.astype(np.float64) - want) <= bound


_J_ARG, _R_ARG = np.arange(12.0).reshape(4, 3) % 5 + np.eye(4, 3), np.ones(4)


@pytest.mark.parametrize("call,match", [
    (lambda: gauss_newton_step(_J_ARG, _R_ARG, method="cgls", maxiter=0),
     r"maxiter must be >= 1, got 0"),
    (lambda: gauss_newton_step(MatrixOperator(_J_ARG), _R_ARG, maxiter=-3),
     r"maxiter must be >= 1, got -3"),
    (lambda: gauss_newton_step(_J_ARG, _R_ARG, method="qr", maxiter=0),
     r"maxiter must be >= 1, got 0"),
    (lambda: gauss_newton_step(_J_ARG, _R_ARG, method="cgls", rtol=0.0),
     r"rtol must be > 0, got 0"),
    (lambda: gauss_newton_step(_J_ARG, _R_ARG, method="cgls", rtol=-1e-8),
     r"rtol must be > 0, got -1e-08"),
    (lambda: gauss_newton_step(_J_ARG, _R_ARG, method="cgls", rtol=float("inf")),
     r"rtol must be finite, got inf"),
    (lambda: gauss_newton_step(MatrixOperator(_J_ARG), _R_ARG, method="qr", chunk_size=0),
     r"chunk_size must be >= 1, got 0"),
    (lambda: cgls(_J_ARG, _R_ARG, maxiter=0), r"maxiter must be >= 1, got 0"),
    (lambda: cgls(_J_ARG, _R_ARG, maxiter=2.5), r"maxiter must be an integer, got 2.5"),
    (lambda: cgls(_J_ARG, _R_ARG, rtol=0.0), r"rtol must be > 0, got 0"),
    (lambda: cgls(_J_ARG, _R_ARG, rtol=float("nan")), r"rtol must be finite, got nan"),
], ids=["gn-cgls-maxiter", "gn-operator-maxiter", "gn-qr-maxiter", "gn-rtol-zero",
        "gn-rtol-negative", "gn-rtol-inf", "gn-chunk_size", "cgls-maxiter", "cgls-maxiter-float",
        "cgls-rtol-zero", "cgls-rtol-nan"])
def test_bad_numeric_arguments_raise_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("method", ["cgls", "lstsq", "kernel"])
def test_undamped_step_ignores_diag_and_is_minimum_norm(method):
    """μ = 0 with a scaling ``diag``: every method gives the minimum-norm step −J⁺r on a
    rank-deficient J (cgls applied D^(-1/2) even at μ = 0 and gave the D-weighted one,
    0.37 away from J⁺r of norm 1.04).  Bound: CGLS at rtol 1e-12 on κ_k ≈ 10 (well below
    1e-8)."""
    rng = np.random.default_rng(0)
    J = rng.standard_normal((8, 3)) @ rng.standard_normal((3, 5))  # rank 3
    r = rng.standard_normal(8)
    D = rng.uniform(0.1, 10.0, 5)
    d, _ = gauss_newton_step(MatrixOperator(J) if method == "cgls" else J, r, diag=D,
                             damping=0.0, method=method, rtol=1e-12)
    want = -np.linalg.pinv(J) @ r
    assert np.linalg.norm(d - want) <= 1e-8 * np.linalg.norm(want)


@pytest.mark.parametrize("dtype, cond", [("float32", 1e3), ("float64", 1e7),
                                         ("float64", 1e2)])
def test_auto_on_a_wide_undamped_jacobian_is_the_minimum_norm_step(dtype, cond):
    """A dense 10 × 30 J at μ = 0: ``auto`` took the kernel route, whose Gram eigenvalue cut
    (10·max(m,n)·ε·λ_max) drops singular values below √(300ε)·σ_max: the step was 0.99 off
    the minimum-norm one on a consistent system.  Now the kernel only where its Gram resolves
    the step (λ_min ≥ √ε·λ_max: κ = 1e2 in float64), else the SVD: error ε·κ·(m + n) for the
    SVD (backward stable), ε·κ² for the Gram (100× margin)."""
    rng = np.random.default_rng(0)
    U, _ = np.linalg.qr(rng.standard_normal((10, 10)))
    V, _ = np.linalg.qr(rng.standard_normal((30, 10)))
    J = ((U * np.logspace(0, -np.log10(cond), 10)) @ V.T).astype(dtype)
    r = rng.standard_normal(10).astype(dtype)
    d, info = gauss_newton_step(J, r)
    want = -np.linalg.pinv(J.astype(np.float64)) @ r.astype(np.float64)
    eps = float(np.finfo(dtype).eps)
    # (the kernel's λ_min/λ_max = 1/κ² against √ε)
    assert info.method == ("kernel" if cond ** -2 >= np.sqrt(eps) else "lstsq")
    model = cond ** 2 if info.method == "kernel" else cond
    assert np.linalg.norm(d - want) <= 100 * eps * model * 40 * np.linalg.norm(want)
