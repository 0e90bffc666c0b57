"""Properties of the regularised Cholesky solve ``(H + τI) h = −g``, Lanczos and truncated CG.

Generated symmetric matrices ``H = Q diag(λ) Qᵀ`` (strategies.symmetric_cases) have a controlled
``λ_min``: definite, indefinite, semidefinite (exact zero eigenvalues) or negative definite, with
``|λ_min| ≥ 1e-3·‖H‖`` in float32 and ``≥ 1e-8·‖H‖`` in float64 where it is nonzero, so that the
shifted matrices are far from singular in the working precision.

Tolerances (ε of the working dtype, n the size, ‖·‖ the 2-norm):
- Cholesky is backward stable: ``(A + ΔA) h = −g`` with ``‖ΔA‖ ≤ c·n·ε·‖A‖``; the residual test
  uses ``50·n·ε·(‖A‖‖h‖ + ‖g‖)`` (the extra ‖g‖ term covers the rounding of ``g`` and of ``τI``).
- A forward comparison with ``−(H+τI)⁻¹g`` multiplies that by ``cond(H + τI)``.
- Dense symmetric eigenvalues have an absolute error ``~ n·ε·‖H‖`` (Weyl).
"""

from __future__ import annotations

import numpy as np
import pytest
import strategies as S
from hypothesis import given, note

from newtonkit.linalg import lanczos, lanczos_ritz, regularized_cholesky_solve, truncated_cg
from newtonkit.operators import DiagonalOperator, HessianOperator


def _norm2(A: np.ndarray) -> float:
    return float(np.linalg.norm(A, 2)) if A.size else 0.0


def _residual_ok(case: S.SymCase, h, tau: float) -> None:
    A = case.H64 + tau * np.eye(case.n)
    h64 = S.to_np(h)
    res = np.linalg.norm(A @ h64 + case.g64)
    bound = 50 * case.n * S.eps(case.dtype) * (_norm2(A) * np.linalg.norm(h64) +
                                              np.linalg.norm(case.g64))
    assert res <= bound, (res, bound)


def _eig_tol(case: S.SymCase) -> float:
    return 20 * case.n * S.eps(case.dtype) * _norm2(case.H64)


@given(S.symmetric_cases())
def test_residual_small_and_shifted_matrix_positive_definite(case):
    shift = S.pick(case.seed, ("eigen", "retry"))
    h, info = regularized_cholesky_solve(case.H, case.g, shift=shift)
    note(f"{case.kind} n={case.n} {case.backend} {case.dtype} λ={case.lam[[0, -1]]} {info}")
    assert S.backend_of(h) == case.backend and S.dtype_name(h) == case.dtype
    assert info.tau >= 0.0
    _residual_ok(case, h, info.tau)
    # H + τI positive definite to working precision (a semidefinite H may end on a τ of the
    # order of its rounding noise, hence the −tol), and strictly for separated λ_min < 0.
    lam_shift = case.lam[0] + info.tau
    assert lam_shift > -_eig_tol(case)
    if case.kind in ("indefinite", "negative") and shift == "eigen":
        # τ = −1.5·λ̂ leaves λ_min(H + τI) = −0.5·λ_min up to the eigensolver's error
        assert lam_shift >= 0.5 * abs(case.lam[0]) - 2 * _eig_tol(case)
    # descent direction: gᵀh = −gᵀ(H + τI)⁻¹g < 0
    if np.linalg.norm(case.g64) > 0:
        assert float(case.g64 @ S.to_np(h)) < 0


@given(S.symmetric_cases(kinds=("definite",)))
def test_tau_zero_for_positive_definite(case):
    shift = S.pick(case.seed, ("eigen", "retry"))
    # λ_min ≥ MIN_REL_EIG·‖H‖ ≫ n·ε·‖H‖: the first factorisation (τ = 0) succeeds and the step
    # is the Newton step −H⁻¹g, to ε·cond(H) times the residual constant.
    h, info = regularized_cholesky_solve(case.H, case.g, shift=shift)
    assert info.tau == 0.0
    assert info.n_factorizations == 1
    # a given first retry shift τ0 is used as is when it already works
    tau0 = float(case.lam[0])
    _, info0 = regularized_cholesky_solve(case.H, case.g, shift="retry", tau0=tau0)
    assert info0.tau == tau0 and info0.n_factorizations == 1
    want = -np.linalg.solve(case.H64, case.g64)
    cond = case.lam[-1] / case.lam[0]
    assert S.rel_err(h, want) <= 50 * case.n * S.eps(case.dtype) * cond


@given(S.symmetric_cases(kinds=("definite", "indefinite", "negative")))
def test_eigen_rule_gives_exact_shift(case):
    factor = S.pick(case.seed, (1.5, 1.5, 2.0, 3.0))  # the default twice as often
    # The eigen rule is τ = max(−c·λ_min, 0) exactly (c = 1.5 by default) with λ_min from a
    # dense symmetric eigensolver, accurate to n·ε·‖H‖; one factorisation suffices because
    # λ_min(H + τI) = (1 − c)·λ_min ≥ 0.5·|λ_min| ≫ n·ε·‖H‖.
    kw = {} if factor == 1.5 else {"factor": factor}
    h, info = regularized_cholesky_solve(case.H, case.g, **kw)
    assert info.shift == "eigen"
    assert info.lambda_min is not None
    assert abs(info.lambda_min - case.lam[0]) <= _eig_tol(case)
    assert info.tau == max(-factor * info.lambda_min, 0.0)
    assert info.n_factorizations == 1
    _residual_ok(case, h, info.tau)


@given(S.symmetric_cases())
def test_fixed_shift(case):
    extra = 10.0 ** np.random.default_rng(case.seed + 5).uniform(-1, 1)
    # shift="fixed": τ as given (chosen here so that H + τI has λ_min ≥ 0.1·max(|λ_min|, ‖H‖·
    # MIN_REL_EIG)), no eigenvalue computed, h = −(H + τI)⁻¹ g to ε·cond(H + τI).
    lo = max(abs(case.lam[0]), S.MIN_REL_EIG[case.dtype] * _norm2(case.H64))
    tau = float(max(-case.lam[0], 0.0) + extra * lo)
    h, info = regularized_cholesky_solve(case.H, case.g, shift="fixed", tau=tau)
    assert info.tau == tau and info.lambda_min is None and info.n_factorizations == 1
    A = case.H64 + tau * np.eye(case.n)
    w = np.linalg.eigvalsh(A)
    want = -np.linalg.solve(A, case.g64)
    assert S.rel_err(h, want) <= 50 * case.n * S.eps(case.dtype) * w[-1] / w[0]


@given(S.symmetric_cases(kinds=("indefinite", "negative")))
def test_retry_rule(case):
    growth = S.pick(case.seed, (2.0, 10.0))
    # shift="retry": τ = 0 fails for λ_min < 0, then τ_min = max(1e-3·mean|diag H|, ε‖H‖) and
    # τ_min·γ^j until Cholesky succeeds.  The accepted τ is therefore at most
    # max(τ_min, γ·(−λ_min + δ)) where δ = 20·n·ε·‖H‖ covers a factorisation that fails within
    # rounding of singularity; and H + τI is positive definite to working precision.
    h, info = regularized_cholesky_solve(case.H, case.g, shift="retry", growth=growth)
    assert info.shift == "retry" and info.n_factorizations >= 2
    scale = float(np.mean(np.abs(np.diag(case.H64))))
    t_min = max(1e-3 * scale, S.eps(case.dtype) * max(scale, np.max(np.abs(case.H64))))
    delta = _eig_tol(case)
    assert info.tau <= max(t_min, growth * (-case.lam[0] + delta)) * (1 + 1e-6)
    assert case.lam[0] + info.tau > -delta
    _residual_ok(case, h, info.tau)


@given(S.symmetric_cases(backend="numpy", max_n=20))
def test_operator_input_matches_dense(case):
    shift = S.pick(case.seed, ("eigen", "retry"))
    chunk = S.pick(case.seed, (None, 1, 7), 1)
    # A matrix-free Hessian (hvp callable, optionally batched) is materialised in column chunks;
    # the product with identity columns reproduces H exactly, so τ agrees exactly and h to
    # rounding (the ε·cond forward bound).
    H = case.H
    h0, info0 = regularized_cholesky_solve(H, case.g, shift=shift)
    for op in (HessianOperator(lambda v: H @ v, case.n, like=H),
               HessianOperator(lambda v: H @ v, case.n, like=H, hvp_batch=lambda V: H @ V),
               HessianOperator(H)):
        h, info = regularized_cholesky_solve(op, case.g, shift=shift, chunk_size=chunk)
        assert info.tau == info0.tau
        A = case.H64 + info.tau * np.eye(case.n)
        w = np.abs(np.linalg.eigvalsh(A))
        assert S.rel_err(h, S.to_np(h0)) <= 50 * case.n * S.eps(case.dtype) * w.max() / w.min()


def _lanczos_tol(case: S.SymCase) -> float:
    return 3 * np.sqrt(S.eps(case.dtype)) * _norm2(case.H64) + _eig_tol(case)


def _bottom_cluster(case: S.SymCase, top: bool = False) -> float:
    """The far end of the cluster of eigenvalues within 10·sqrt(ε)·‖H‖ of λ_min (of λ_max with
    ``top``): Lanczos stopped at a sqrt(ε) residual cannot tell them apart, so its Ritz value
    may sit near any of them (a 700-example run found a definite float64 H whose Ritz value
    was 3.2·sqrt(ε)·‖H‖ above λ_min, next to the second-smallest eigenvalue)."""
    w = 10 * np.sqrt(S.eps(case.dtype)) * _norm2(case.H64)
    lam = case.lam
    return float(lam[lam >= lam[-1] - w].min()) if top else float(lam[lam <= lam[0] + w].max())


@given(S.symmetric_cases(kinds=("definite", "indefinite", "negative")))
def test_lanczos_eigensolver_for_the_eigen_rule(case):
    # eigensolver="lanczos": with n ≤ 30 ≤ 80 steps Lanczos (full re-orthogonalisation) either
    # runs to n steps (exact up to n·ε·‖H‖) or stops when both extreme Ritz residuals are below
    # sqrt(ε)·‖T‖, bounding the eigenvalue error by sqrt(ε)·‖H‖.  A Ritz value is never below
    # the true λ_min (minus rounding).
    h, info = regularized_cholesky_solve(case.H, case.g, eigensolver="lanczos")
    assert info.lambda_min >= case.lam[0] - _eig_tol(case)
    assert info.lambda_min <= _bottom_cluster(case) + _lanczos_tol(case)
    assert info.tau == max(-1.5 * info.lambda_min, 0.0)
    _residual_ok(case, h, info.tau)


@given(S.symmetric_cases(backend="numpy", kinds=("definite", "indefinite", "negative")))
def test_numpy_and_torch_agree(case):
    shift = S.pick(case.seed, ("eigen", "retry"))
    # Same values on both backends: λ_min estimates agree to the eigensolver error, τ follows,
    # and h agrees to ε·cond(H + τI) (scaled by the residual constant) plus the effect of the
    # τ difference.  Semidefinite H is left out: singular to working precision, its shift is
    # decided by rounding (either backend may need a retry), so h legitimately differs.
    h_np, i_np = regularized_cholesky_solve(case.H, case.g, shift=shift)
    Ht, gt = S.to_backend(case.H64, "torch", case.dtype), S.to_backend(case.g64, "torch",
                                                                         case.dtype)
    h_t, i_t = regularized_cholesky_solve(Ht, gt, shift=shift)
    assert S.backend_of(h_t) == "torch" and S.dtype_name(h_t) == case.dtype
    if shift == "eigen":
        assert abs(i_np.lambda_min - i_t.lambda_min) <= 2 * _eig_tol(case)
    if i_np.tau == i_t.tau or shift == "eigen":
        tau = max(i_np.tau, i_t.tau)
        A = case.H64 + tau * np.eye(case.n)
        w = np.abs(np.linalg.eigvalsh(A))
        if w.min() > _eig_tol(case):
            assert S.rel_err(h_t, S.to_np(h_np)) <= (
                100 * case.n * S.eps(case.dtype) * w.max() / w.min()
                + abs(i_np.tau - i_t.tau) / w.min())


@pytest.mark.parametrize("n", [65, 90])
def test_host_eigensolver_path_for_large_numpy_matrices(n):
    # float64 NumPy matrices above 64 use LAPACK bisection for λ_min (ARPACK above 4096, and
    # for float32), both to machine precision, so τ is the eigen rule's to rounding.
    rng = np.random.default_rng(n)
    Q = S.random_orthogonal(rng, n, n)
    lam = np.concatenate([[-0.3], rng.uniform(-0.2, 1.0, n - 1)])
    H = (Q * lam) @ Q.T
    H = 0.5 * (H + H.T)
    g = rng.standard_normal(n)
    h, info = regularized_cholesky_solve(H, g)
    true = np.linalg.eigvalsh(H)[0]
    eps, norm_h = np.finfo(np.float64).eps, np.linalg.norm(H, 2)
    # two backward-stable eigensolvers: each λ within c·n·ε·‖H‖ of the exact one (Weyl), c=10
    assert abs(info.lambda_min - true) <= 2 * 10 * n * eps * norm_h
    assert abs(info.tau + 1.5 * true) <= 1.5 * 2 * 10 * n * eps * norm_h
    # H + τI has λ_min = −0.5·λ_min(H) = 0.15: κ ≤ ‖H + τI‖/0.15, solve relative c·n·ε·κ
    kappa = (norm_h + info.tau) / (-0.5 * true)
    ref = -np.linalg.solve(H + info.tau * np.eye(n), g)
    assert np.linalg.norm(h - ref) <= 10 * n * eps * kappa * np.linalg.norm(ref)


@given(S.symmetric_cases())
def test_lanczos_brackets_the_spectrum(case):
    # Ritz values lie inside [λ_min, λ_max] (to rounding) and, for n ≤ 30 with the default
    # min(n, 80) steps, within sqrt(ε)·‖H‖ of the extremes (early stop rule, see above).
    lo, hi = lanczos(case.H)
    tol = _lanczos_tol(case)
    assert case.lam[0] - _eig_tol(case) <= lo <= _bottom_cluster(case) + tol
    assert _bottom_cluster(case, top=True) - tol <= hi <= case.lam[-1] + _eig_tol(case)


@given(S.symmetric_cases())
def test_lanczos_ritz_residuals_bound_the_distance_to_an_eigenvalue(case):
    # Each extreme Ritz value θ with residual ρ = |β_m s_m| has an eigenvalue of H within ρ
    # (plus the eigenvalues' own rounding), converged or not: after 3 steps (far from
    # converged for most cases) and after the default run.  For n ≤ 30 the default run ends
    # invariant or at the sqrt(ε) stopping rule: ``converged``; 3 steps short of n without
    # that are reported as not converged.
    for maxiter in (3, None):
        r = lanczos_ritz(case.H, maxiter)
        for theta, rho in ((r.lambda_min, r.residual_min), (r.lambda_max, r.residual_max)):
            assert np.min(np.abs(case.lam - theta)) <= rho + _eig_tol(case)
        anorm = max(abs(r.lambda_min), abs(r.lambda_max))
        small = max(r.residual_min, r.residual_max) <= np.sqrt(S.eps(case.dtype)) * anorm
        assert r.converged == (small or r.steps < (maxiter or case.n))
    assert r.converged
    assert (r.lambda_min, r.lambda_max) == lanczos(case.H)


@given(S.symmetric_cases())
def test_truncated_cg_descent_and_negative_curvature(case):
    # Steihaug-style CG always returns a descent direction (gᵀh < 0 for g ≠ 0).  Negative
    # curvature can only be met when H is not positive definite (for definite H, pᵀHp ≥
    # λ_min‖p‖² with λ_min ≫ ε‖H‖); a negative definite H meets it on the first step and
    # returns −g.
    h, info = truncated_cg(case.H, case.g)
    assert S.backend_of(h) == case.backend and S.dtype_name(h) == case.dtype
    assert float(case.g64 @ S.to_np(h)) < 0
    if case.kind == "definite":
        assert not info.negative_curvature
    if case.kind == "negative":
        assert info.negative_curvature
        assert S.rel_err(h, -case.g64) == 0.0


@given(S.symmetric_cases(kinds=("definite",), dtype="float64"))
def test_truncated_cg_converges_on_definite(case):
    # For definite H and a tight rtol CG reports convergence only when the true residual is
    # small: ‖Hh + g‖ ≤ rtol·‖g‖ plus the drift of the recursive residual (ε·cond·‖g‖·n).
    rtol = 1e-6
    h, info = truncated_cg(case.H, case.g, rtol=rtol, maxiter=20 * case.n)
    cond = case.lam[-1] / case.lam[0]
    if cond <= 1e4:  # CG converges within 20n steps in float64 at this conditioning
        assert info.converged
    if info.converged:
        res = np.linalg.norm(case.H64 @ S.to_np(h) + case.g64)
        assert res <= (rtol + 100 * case.n * S.eps("float64") * cond) * np.linalg.norm(case.g64)


def test_lanczos_does_not_stop_on_an_interior_ritz_value():
    # Regression example from the property above: float32 H (29×29, ‖H‖ = 8) with λ_min = −1.32
    # separated by 0.1 (1.2 % of ‖H‖, far above sqrt(ε32)·‖H‖ = 3e-3) from λ_2 = −1.22.  The
    # default early stop (both extreme Ritz residuals ≤ sqrt(ε)·‖T‖) must not end on the Ritz
    # value next to λ_2: the eigen rule would then use τ = 1.5·1.22 instead of 1.5·1.32.
    rng = np.random.default_rng(1)
    for _ in range(167):  # the 167th matrix of this family is the failing one
        Q = np.linalg.qr(rng.standard_normal((29, 29)))[0]
        lam = np.concatenate([[8.0, -1.32, -1.22], rng.uniform(-1.1, 8.0, 26)])
    H = ((Q * lam) @ Q.T).astype(np.float32)
    H = np.tril(H) + np.tril(H, -1).T
    true = np.linalg.eigvalsh(H.astype(np.float64))[0]
    lo, _ = lanczos(H)
    assert abs(lo - true) <= 3 * np.sqrt(S.eps("float32")) * 8.0, (lo, true)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("gap", [1e-2, 2.0])
def test_lanczos_does_not_stop_on_a_start_near_an_invariant_subspace(dtype, gap):
    """diag(1 − gap, 1, ..., 1), n = 4000: the start's component along e₀ is about 1/√n, so
    after one step b ≈ gap/√n, below the old breakdown test ε‖H‖n in float32 (4.8e-4): the run
    stopped there, "converged" with residual 0 at λ_min ≈ 1 (missing 0.99, or −1).  A
    breakdown is now b ≤ ε‖H‖√n, and before MIN_STEPS the space goes on from a random vector.
    Over 20 seeds the estimate is within the early-stop tolerance √ε·‖T‖ of λ_min."""
    n = 4000
    d = np.ones(n, dtype=dtype)
    d[0] = 1.0 - gap
    for seed in range(20):
        r = lanczos_ritz(DiagonalOperator(d), seed=seed)
        assert abs(r.lambda_min - (1.0 - gap)) <= np.sqrt(S.eps(dtype)) * 1.0, (seed, r)  # ‖H‖ = 1


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shift", ["eigen", "retry"])
def test_a_zero_hessian_takes_a_unit_shift(dtype, shift):
    """H = 0 (a linear objective) has no scale of its own: the retry shift was ε·1e-300, a
    subnormal, and the step −g/τ was inf/nan in float64 (in float32 τ rounded to 0 and all 40
    factorisations failed).  Now τ = 1: h = −g exactly."""
    g = np.array([1.0, -2.0, 3.0], dtype=dtype)
    h, info = regularized_cholesky_solve(np.zeros((3, 3), dtype=dtype), g, shift=shift)
    assert info.tau == 1.0 and np.array_equal(h, -g)


_H_ARG = np.array([[2.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 2.0]])


@pytest.mark.parametrize("call,match", [
    (lambda: regularized_cholesky_solve(_H_ARG, np.ones(3), chunk_size=0),
     r"chunk_size must be >= 1, got 0"),
    (lambda: regularized_cholesky_solve(_H_ARG, np.ones(3), chunk_size=2.5),
     r"chunk_size must be an integer, got 2.5"),
    (lambda: regularized_cholesky_solve(_H_ARG, np.ones(3), max_factorizations=0),
     r"max_factorizations must be >= 1, got 0"),
    (lambda: truncated_cg(_H_ARG, np.ones(3), maxiter=0), r"maxiter must be >= 1, got 0"),
    (lambda: truncated_cg(_H_ARG, np.ones(3), rtol=-1e-3), r"rtol must be >= 0, got -0.001"),
    (lambda: truncated_cg(_H_ARG, np.ones(3), rtol=float("nan")), r"rtol must be finite, got nan"),
    (lambda: lanczos(_H_ARG, 0), r"maxiter must be >= 1, got 0"),
    (lambda: lanczos(_H_ARG, 2.5), r"maxiter must be an integer, got 2.5"),
    (lambda: lanczos(_H_ARG, tol=-1.0), r"tol must be >= 0, got -1"),
    (lambda: lanczos(_H_ARG, tol=float("inf")), r"tol must be finite, got inf"),
], ids=["chol-chunk_size", "chol-chunk_size-float", "chol-max_factorizations", "tcg-maxiter",
        "tcg-rtol-negative", "tcg-rtol-nan", "lanczos-maxiter", "lanczos-maxiter-float",
        "lanczos-tol-negative", "lanczos-tol-inf"])
def test_bad_numeric_arguments_raise_naming_them(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_fixed_shift_failure_names_the_shift_tried():
    """An indefinite H with a fixed shift too small: one factorization, and the error names
    the tau that was passed (it read ``tau=None`` after the shift sequence ran out)."""
    H = np.diag([1.0, -2.0])
    with pytest.raises(np.linalg.LinAlgError, match=r"failed 1 times \(last tau=0.001"):
        regularized_cholesky_solve(H, np.ones(2), shift="fixed", tau=1e-3)
