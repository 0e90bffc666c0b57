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
from hypothesis import given, note
from hypothesis import strategies as st

from newtonkit.linalg import LinAlgError, cgls, gauss_newton_step
from newtonkit.operators import FunctionOperator, MatrixOperator

# smallest relative singular value of generated full-rank J: the kept part spans
# [GAP·t, 1], so cond ≤ 1/(GAP·t): 1e8 in float64, 1e3 in float32
GN_TRUNC = {"float64": 1e-9, "float32": 1e-4}


@st.composite
def full_rank(draw, backend=None, dtype=None, kinds=("tall", "wide", "square")):
    return draw(S.svd_cases(backend=backend, dtype=dtype, deficient=False, discarded=False,
                            min_truncation=GN_TRUNC, kinds=kinds))


def residuals(case: S.SVDCase) -> np.ndarray:
    """r = −J x + ρ·r_⊥ with r_⊥ ⊥ range(J) (tall J only) and ρ ∈ {0, 1e-3, 1}·‖Jx‖."""
    rng = np.random.default_rng(case.seed + 10)
    m, n = case.shape
    x = rng.standard_normal(n)
    Jx = case.J64 @ x
    rho = S.pick(case.seed, (0.0, 1e-3, 1.0), 10)
    k = int(np.count_nonzero(case.s > 0))
    perp = case.U[:, k:] @ rng.standard_normal(m - k) if m > k else np.zeros(m)
    nrm = np.linalg.norm(perp)
    r = -Jx + (rho * np.linalg.norm(Jx) / nrm * perp if nrm > 0 else 0.0)
    return S.rounded(r, case.dtype)


def _ls_tol(case: S.SVDCase, method: str, A: np.ndarray, b: np.ndarray, d_ref: np.ndarray,
            rtol_cg: float = 0.0) -> float:
    """Relative error bound for ``d`` in ``min ‖A d + b‖`` (see the module docstring)."""
    e = S.eps(case.dtype)
    s = np.linalg.svd(A, compute_uv=False)
    s = s[s > 1e-13 * s[0]]
    cond = s[0] / s[-1]
    res = np.linalg.norm(A @ d_ref + b)
    nd = max(np.linalg.norm(d_ref), 1e-300)
    C = 30 * np.sqrt(max(case.shape))
    if method == "cholesky":
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


def _methods(case: S.SVDCase, damping: float) -> list[str]:
    m, n = case.shape
    out = ["auto", "qr", "lstsq"]
    if m >= n or damping > 0:  # JᵀJ is singular for wide J without damping
        out.append("cholesky")
    return out


@given(full_rank())
def test_full_rank_equals_least_squares(case):
    # μ = 0 and full-rank J: the least-squares solution of J d ≈ −r (unique for tall/square,
    # minimum-norm for wide J of full row rank, where the residual is zero).
    r = residuals(case)
    want = -np.linalg.lstsq(case.J64, r, rcond=None)[0]
    for method in _methods(case, 0.0):
        out = _step(case, r, method=method)
        if out is None:
            continue
        d, info = out
        note(f"{method} -> {info}")
        assert S.backend_of(d) == case.backend and S.dtype_name(d) == case.dtype
        tol = _ls_tol(case, info.method, case.J64, r, -want)
        assert S.rel_err(d, want) <= tol, (method, info.method, S.rel_err(d, want), tol)


@given(S.svd_cases(deficient=True, discarded=False))
def test_rank_deficient_tends_to_minimum_norm(case):
    # Rank-deficient J (exact zeros, all nonzero σ ≥ GAP·t·σ_max): at μ = 0 the step is the
    # minimum-norm least-squares solution −J⁺r, and d(μ) → −J⁺r as μ → 0 with
    # ‖d(μ) − d(0)‖ ≤ (μ/σ_k²)·‖d(0)‖ (each component shrinks by σ²/(σ² + μ)).
    r = residuals(case)
    k = case.k
    d0 = -case.power(-1.0) @ r
    A = case.U[:, :k] * case.s[:k] @ case.Vt[:k]  # the exact-rank part (cond = cond_k)
    for method in ("auto", "qr", "lstsq"):
        d, info = gauss_newton_step(case.J, case.vec(r), method=method)
        tol = _ls_tol(case, info.method, A, r, -d0)
        assert S.rel_err(d, d0) <= tol, (method, info.method, S.rel_err(d, d0), tol)
    for alpha in (1e-2, 1e-4, 1e-6):
        mu = alpha * case.s[k - 1] ** 2
        for method in ("qr", "lstsq"):
            d, info = gauss_newton_step(case.J, case.vec(r), mu, method=method)
            Aa = np.vstack([case.J64, np.sqrt(mu) * np.eye(case.shape[1])])
            tol = _ls_tol(case, method, Aa, np.concatenate([r, np.zeros(case.shape[1])]), -d0)
            assert S.rel_err(d, d0) <= alpha * 1.01 + tol, (method, alpha, S.rel_err(d, d0))


@given(S.svd_cases())
def test_large_damping_tends_to_scaled_gradient(case):
    method = S.pick(case.seed, ("auto", "qr", "lstsq", "cholesky", "cgls"))
    # μ → ∞: μ·d → −Jᵀr, with relative error σ_max²/μ (each component is scaled by
    # μ/(σ² + μ)); μ = 1e6·σ_max².  Rounding: the LS bound for A = [J; sqrt(μ)I]; note its
    # cond²·‖res‖/(‖A‖‖d‖) term: the augmented QR loses about ε·sqrt(μ)/σ_max·‖r‖/‖Jᵀr‖/σ_max
    # of relative accuracy in this regime (up to ~1e-4 in float32), the SVD and Gram paths do not.
    r = residuals(case)
    n = case.shape[1]
    mu = 1e6 * case.s[0] ** 2
    with np.errstate(over="ignore", invalid="ignore"):  # report a NaN result, not the warning
        d, info = gauss_newton_step(case.J, case.vec(r), mu, method=method)
    want = -case.J64.T @ r
    err = S.rel_err(mu * S.to_np(d), want)
    A = np.vstack([case.J64, np.sqrt(mu) * np.eye(n)])
    b = np.concatenate([r, np.zeros(n)])
    tol = _ls_tol(case, info.method, A, b, np.linalg.lstsq(A, b, rcond=None)[0])
    assert err <= 1e-6 * 1.01 + tol, (err, tol)


@given(S.svd_cases(min_truncation=1e-6))
def test_damped_step_solves_normal_equations(case):
    method = S.pick(case.seed, ("auto", "qr", "lstsq", "cholesky", "cgls"))
    scaled = S.pick(case.seed, (False, True), 1)
    log_alpha = np.random.default_rng(case.seed + 6).uniform(-8, 2)
    # μ = α·σ_max² > 0 with D = I or a random positive diagonal in [0.1, 10]: d matches the
    # float64 solution of (JᵀJ + μD) d = −Jᵀr to the LS bound for A = [J; sqrt(μD)].  CGLS
    # (on J D^{-1/2}) is checked when it reports convergence, with its rtol·cond² term.
    r = residuals(case)
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
    out = _step(case, r, mu, A, method=method, **kw)
    if out is None:
        return
    d, info = out
    assert info.damping == mu
    if not info.converged:
        return
    want = np.linalg.lstsq(A, -b, rcond=None)[0]
    # μ is rounded to the working dtype inside the solvers: a relative input change of ε
    tol = _ls_tol(case, info.method, A, b, -want, rtol_cg if method == "cgls" else 0.0)
    assert S.rel_err(d, want) <= tol, info


@given(full_rank(kinds=("tall", "square")))
def test_cgls_converges_to_least_squares(case):
    # CGLS (matrix-free, on a FunctionOperator) reaches the normal-equation tolerance
    # rtol = 1e-10 (float64) / 1e-5 (float32, whose residual floor is ~ε·cond) on well-
    # conditioned J (cond ≤ 1e4 / 1e2) and then matches least squares to rtol·cond² + ε-model.
    r = residuals(case)
    xp = S.namespace(case.backend)
    J = case.J
    op = FunctionOperator(case.shape, lambda x: J @ x, lambda y: xp.matrix_transpose(J) @ y,
                          like=J)
    rtol = 1e-10 if case.dtype == "float64" else 1e-5
    d, info = gauss_newton_step(op, case.vec(r), rtol=rtol, maxiter=10 * case.shape[1] + 50)
    assert info.method == "cgls"
    assert S.dtype_name(d) == case.dtype
    want = -np.linalg.lstsq(case.J64, r, rcond=None)[0]
    cond = case.s[0] / case.s[min(case.shape) - 1]
    if cond <= (1e4 if case.dtype == "float64" else 1e2):
        assert info.converged, info
    if info.converged:
        tol = _ls_tol(case, "cgls", case.J64, r, -want, rtol)
        assert S.rel_err(d, want) <= tol, (S.rel_err(d, want), tol)


@given(S.svd_cases(deficient=True, discarded=False, dtype="float64"))
def test_cgls_rank_deficient_gives_minimum_norm(case):
    # Started at 0, CGLS stays in range(Jᵀ), so on rank-deficient J it converges to −J⁺r.
    r = residuals(case)
    x, info = cgls(case.J, case.vec(-r), rtol=1e-12, maxiter=20 * case.shape[1] + 100)
    want = -case.power(-1.0) @ r
    if info.converged:
        A = case.U[:, :case.k] * case.s[:case.k] @ case.Vt[:case.k]
        assert S.rel_err(x, want) <= _ls_tol(case, "cgls", A, r, -want, 1e-12)
    if case.cond_k <= 1e3:
        assert info.converged


@given(S.svd_cases(backend="numpy", min_truncation=1e-6))
def test_numpy_and_torch_agree(case):
    method = S.pick(case.seed, ("qr", "lstsq", "cholesky", "cgls"))
    alpha = S.pick(case.seed, (0.0, 1e-3, 1.0), 1)
    # Same inputs on both backends: each within its LS bound of the float64 solution.
    r = residuals(case)
    mu = alpha * case.s[0] ** 2
    m, n = case.shape
    A = np.vstack([case.J64, np.sqrt(mu) * np.eye(n)])
    b = np.concatenate([r, np.zeros(n)])
    sA = np.linalg.svd(A, compute_uv=False)
    if method == "cholesky" and (sA[-1] == 0 or (sA[0] / sA[-1]) ** 2 * S.eps(case.dtype) >= 1e-3):
        # the Gram–Cholesky path has no correct digits here (error ε·cond², documented): it
        # may raise LinAlgError on one backend and not on the other; tested in _step users
        return
    kw = {"rtol": 1e-5 if case.dtype == "float32" else 1e-10} if method == "cgls" else {}
    with np.errstate(over="ignore", invalid="ignore"):
        d_np, i_np = gauss_newton_step(case.J, case.vec(r), mu, method=method, **kw)
        d_t, i_t = gauss_newton_step(S.to_backend(case.J64, "torch", case.dtype),
                                     S.to_backend(r, "torch", case.dtype), mu, method=method,
                                     **kw)
    assert S.backend_of(d_t) == "torch" and S.dtype_name(d_t) == case.dtype
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    keep = s > max(A.shape) * S.eps(case.dtype) * s[0]
    want = -(Vt[keep].T @ ((U[:, keep].T @ b) / s[keep]))
    if method == "cgls" and not (i_np.converged and i_t.converged):
        return
    tol = _ls_tol(case, i_np.method, A, b, -want, kw.get("rtol", 0.0))
    if i_np.method == i_t.method:
        assert S.rel_err(d_t, S.to_np(d_np), np.linalg.norm(want)) <= 2 * tol


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
