"""The LM trust-region subproblem (newtonkit.methods._lmpar) and the backend helpers it uses.

Every route (QR + SVD of R, QR + Cholesky per λ, SVD of a wide A, with and without pivoting)
must return a step that solves ``(AᵀA + λI) p̂ = -Aᵀr`` with ``λ = 0`` when the Gauss-Newton step
fits in ``1.1Δ`` and ``|‖p̂‖ − Δ| ≤ 0.1Δ`` otherwise, and ``‖A p̂‖²`` alongside it.
"""

from __future__ import annotations

import importlib.util
import pathlib
import sys
import warnings

import numpy as np
import pytest
import scipy.optimize
import strategies as S
from hypothesis import given
from hypothesis import strategies as st

import newtonkit as nk
from newtonkit import _backend as B
from newtonkit.methods._lmpar import SVD_MAX_N, TrustRegionSubproblem
from newtonkit.methods._trust import GRAM_MAX_ERR, lm_terms

EPS, TINY = float(np.finfo(np.float64).eps), float(np.finfo(np.float64).smallest_normal)


def _case(m, n, seed, cond=1e3):
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((m, n)))[0]
    V = np.linalg.qr(rng.standard_normal((n, n)))[0]
    s = np.geomspace(1.0, 1.0 / cond, n)
    return (U * s) @ V.T, rng.standard_normal(m)


C = 100.0  # constant of the rounding bounds below (they are first-order in ε; c·n·ε each)


def _lstsq_bound(A, x, r):
    """Wedin's bound on the error of a backward-stable least-squares solution ``x`` of
    ``min ‖A x + r‖`` (rank taken as the number of singular values above n·ε·σ₁):
    ``‖δx‖ ≤ C·n·ε·(κ·‖x‖ + κ²·‖A x + r‖/σ₁)``."""
    s = np.linalg.svd(A, compute_uv=False)
    s = s[s > A.shape[1] * EPS * s[0]]
    kappa = s[0] / s[-1]
    res = np.linalg.norm(A @ x + r)
    return C * A.shape[1] * EPS * (kappa * np.linalg.norm(x) + kappa**2 * res / s[0])


def _forward_bound(A, r, lam, p, eps=EPS):
    """Forward error bound for p̂(λ) = −(AᵀA + λI)⁻¹Aᵀr from any of the routes (module
    docstring of _lmpar): the worst of them, the Gram-type ones (eigendecomposition of AᵀA,
    Cholesky of RᵀR + λI), square the condition number: C·n·ε·(κ(AᵀA + λI)‖p̂‖ +
    ‖A‖‖r‖/(s²_min + λ)), the second term being the rounding of Aᵀr."""
    s = np.linalg.svd(A, compute_uv=False)
    s2min = s[-1] ** 2 if A.shape[0] >= A.shape[1] else 0.0
    if s2min + lam == 0.0:
        return np.inf
    kappa = (s[0] ** 2 + lam) / (s2min + lam)
    return C * A.shape[1] * eps * (kappa * np.linalg.norm(p) + s[0] * np.linalg.norm(r) /
                                   (s2min + lam))


def _check(A, r, delta, out, eps=EPS):
    v, lam, pnorm, jp2 = out
    p = -np.asarray(v, dtype=np.float64)
    A, r = np.asarray(A, dtype=np.float64), np.asarray(r, dtype=np.float64)
    EPS = eps  # noqa: N806  (the working dtype's ε in every bound below)
    n, a = A.shape[1], np.linalg.norm(A, 2)
    assert lam >= 0
    # ‖p‖ recomputed: n·ε relative (a sum of n squares)
    assert abs(np.linalg.norm(p) - pnorm) <= C * n * EPS * pnorm
    # ‖A p‖² from the route's factors as Σ sᵢcᵢ − λ‖p‖² (the normal equations): cancellation
    # leaves C·(m+n)·ε·(‖A‖‖r‖‖p‖ + λ‖p‖²); and the factors are those of AᵀA + E with
    # ‖E‖ ≤ C·(m+n)·ε‖A‖² (a Gram route forms AᵀA), which moves pᵀAᵀAp by ‖E‖‖p‖²
    jp2_bound = C * sum(A.shape) * EPS * (a * np.linalg.norm(r) * pnorm + lam * pnorm**2
                                          + (a * pnorm) ** 2)
    assert abs(np.sum((A @ p) ** 2) - jp2) <= jp2_bound
    # a backward-stable solve of (AᵀA + λI)p = −Aᵀr leaves a residual of the normal equations
    # of at most C·n·ε·‖A‖·(‖A‖‖p‖ + ‖r‖) + λ-term C·n·ε·λ‖p‖
    lhs = A.T @ (A @ p) + lam * p
    bound = C * n * EPS * (a * (a * pnorm + np.linalg.norm(r)) + lam * pnorm)
    assert np.linalg.norm(lhs + A.T @ r) <= bound
    if lam == 0.0:
        assert pnorm <= 1.1 * delta
    else:
        assert abs(pnorm - delta) <= 0.1 * delta
    # forward: p̂ against the float64 solution at the λ returned, within the worst route's bound
    if lam > 0.0 or A.shape[0] >= n and np.linalg.matrix_rank(A) == n:
        U, s, Vt = np.linalg.svd(A, full_matrices=False)
        ref = -(Vt.T @ (s / (s * s + lam) * (U.T @ r)))
        assert np.linalg.norm(p - ref) <= _forward_bound(A, r, lam, ref, eps)


@pytest.mark.parametrize("m, n", [(3, 2), (12, 10), (40, 25), (25, 25)])
@pytest.mark.parametrize("shrink", [2.0, 0.5, 0.1, 1e-3])
def test_every_route_solves_the_subproblem(m, n, shrink):
    A, r = _case(m, n, seed=m * n)
    fact = TrustRegionSubproblem(np, A, r, EPS, TINY)
    n_gn = np.linalg.norm(np.linalg.lstsq(A, r, rcond=None)[0])
    delta = shrink * n_gn
    out = fact.solve(delta, 0.0)
    _check(A, r, delta, out)
    _check(A, r, delta, fact.solve(delta, out[1]))  # again from the λ found (a rejected trial)


def test_routes_agree():
    """The Cholesky route (n > SVD_MAX_N) and the SVD of R solve one subproblem alike."""
    m, n = 40, 25
    A, r = _case(m, n, seed=7)
    delta = 0.3 * np.linalg.norm(np.linalg.lstsq(A, r, rcond=None)[0])
    a = TrustRegionSubproblem(np, A, r, EPS, TINY)
    assert a.use_chol
    b = TrustRegionSubproblem(np, A, r, EPS, TINY)
    b.use_chol = False  # force the SVD route
    va, la, *_ = a.solve(delta, 0.0)
    vb, lb, *_ = b.solve(delta, 0.0)
    # both are backward-stable solutions of one problem (κ(A) = 1e3); λ found to MINPACK's
    # 10 % band may differ between routes only through rounding, which the secular equation's
    # Newton iteration amplifies by at most κ²: C·n·ε·κ² relative
    kappa2 = 1e6
    assert abs(la - lb) <= C * n * EPS * kappa2 * lb
    assert np.linalg.norm(va - vb) <= C * n * EPS * kappa2 * np.linalg.norm(vb)


def test_cholesky_falls_back_to_the_svd_for_tiny_lambda():
    # κ(A) = 1e7: a λ just above the smallest s² needs κ(AᵀA + λI) far beyond CHOL_MAX_COND
    A, r = _case(60, 30, seed=3, cond=1e7)
    V = np.linalg.svd(A)[2]
    r = r + A @ (1e3 * V[-1])  # make the Gauss-Newton step long along the weakest direction
    fact = TrustRegionSubproblem(np, A, r, EPS, TINY)
    n0 = fact.gn[1]
    delta = 0.5 * n0
    out = fact.solve(delta, 0.0)
    # the band is met at a λ far below CHOL_MAX_COND's reach: the step still solves the
    # subproblem to its backward-error bound and the forward bound at that λ (_check)
    assert out[1] < 1e-10
    _check(A, r, delta, out)


def test_exactly_singular_r_uses_the_minimum_norm_svd_step():
    A, r = _case(30, 20, seed=5)
    A[:, 4] = 0.0  # a zero column: R has an exactly zero diagonal entry
    fact = TrustRegionSubproblem(np, A, r, EPS, TINY)
    assert fact.gn is None
    v, lam, pnorm, _ = fact.solve(1e6, 0.0)
    assert lam == 0.0
    # The minimum-norm solution has exactly 0 in entry 4; LAPACK's lstsq reference puts
    # rounding there (2.9e-12 on one machine, 0 on another), so compare norm-wise within the
    # least-squares bound of the rank-19 problem, not entry-wise against the noise.
    ref = np.linalg.lstsq(A, -r, rcond=None)[0]
    assert np.linalg.norm(-v - ref) <= _lstsq_bound(A, ref, r)
    assert abs(v[4]) <= _lstsq_bound(A, ref, r)


def _consistent(m, n, seed, cond, dtype=np.float64):
    """A with κ(A) = cond and r = −A x (a zero least-squares residual): the Gauss-Newton step is
    x exactly, and a backward-stable route gets it to C·n·ε·κ (Wedin, no κ² term), while a route
    through AᵀA has an error of order ε·κ²."""
    A, _ = _case(m, n, seed, cond=cond)
    x = np.random.default_rng(seed + 1).standard_normal(n)
    A = A.astype(dtype)
    r = (-(A.astype(np.float64) @ x)).astype(dtype)
    x = np.linalg.lstsq(A.astype(np.float64), -r.astype(np.float64), rcond=None)[0]
    return A, r, x


@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("cond", [1.0, 1e3, 9e3, 1.2e4, 1e6])
def test_gauss_newton_step_has_backward_stable_accuracy(n, cond):
    """The Gauss-Newton step comes from the QR: the accuracy of a backward-stable least-squares
    solve, C·n·ε·κ(A) with a zero residual (Wedin), at every conditioning.  A route through
    AᵀA (error ~ ε·κ², 2e-4 relative at κ = 1e6) would miss it by orders of magnitude."""
    A, r, x = _consistent(n + 2, n, 11, cond)
    fact = TrustRegionSubproblem(np, A, r, EPS, TINY)
    delta = 2 * np.linalg.norm(x)
    out = fact.solve(delta, 0.0)
    assert out[1] == 0.0
    _check(A, r, delta, out)
    assert np.linalg.norm(-out[0] - x) <= _lstsq_bound(A, x, r)


def test_float32_solves_the_subproblem_to_its_bounds():
    """float32: the step solves the subproblem to float32's bounds, the λ band included."""
    eps32, tiny32 = float(np.finfo(np.float32).eps), float(np.finfo(np.float32).tiny)
    A32, r32, x32 = _consistent(12, 10, 11, 10.0, np.float32)
    fact = TrustRegionSubproblem(np, A32, r32, eps32, tiny32)
    for shrink in (2.0, 0.3):
        delta = shrink * float(np.linalg.norm(x32))
        _check(A32, r32, delta, fact.solve(delta, 0.0), eps=eps32)


@given(data=st.data())
def test_gram_form_matches_the_svd_within_its_error_bound(data):
    """The batched LM's Gram form (:func:`newtonkit.methods._trust.lm_terms`), over generated
    shapes (n ≤ SVD_MAX_N), κ(A) up to 1e4 (where ε·κ(AᵀA) < GRAM_MAX_ERR, so it is taken),
    scales and λ ≥ 0: the step p̂(λ) = −V c from the eigendecomposition of AᵀA is within the
    docstring's bound of the SVD's, ‖δp̂‖ ≤ c ε (κ(AᵀA + λI) ‖p̂‖ + ‖A‖‖r‖ / (s²_min + λ));
    c = 16 is the worst of 30 000 random cases, the test allows 50.  (The second term is the
    rounding of Aᵀr, which the SVD route's Uᵀr shares: it dominates when r is nearly
    orthogonal to A's range.)"""
    n = data.draw(st.sampled_from(range(1, SVD_MAX_N + 1)), label="n")
    m = data.draw(st.sampled_from(range(n, 2 * n + 4)), label="m")
    # log10 κ on a grid (st.sampled_from draws it about uniformly; st.floats put κ = 1 in over
    # half the derandomized examples)
    cond = 10.0 ** data.draw(st.sampled_from(S.grid(0.0, 3.99)), label="log10 κ(A)")
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
    A, r = _case(m, n, seed, cond=cond)
    A = A * 10.0 ** data.draw(st.sampled_from(S.grid(-3.0, 3.0)), label="log10 scale")
    [(gram, terms)] = lm_terms(np, A[None], r[None], EPS, np.ones(1, bool))
    s2_g, sq_g, _, Vt_g, _ = (t[0] for t in terms)
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    s2 = np.sort(s * s)
    assert EPS * s2[-1] < GRAM_MAX_ERR * s2[0] and gram[0]  # the Gram form qualified and was taken
    lam = data.draw(st.sampled_from([0.0, 1e-3, 1.0, 1e3]), label="λ / s²_min") * s2[0]
    ref = (s * (U.T @ r) / (s * s + lam)) @ Vt
    step = (sq_g / (s2_g + lam)) @ Vt_g
    kappa = (s2[-1] + lam) / (s2[0] + lam)
    bound = 50 * EPS * (kappa * np.linalg.norm(ref)
                        + np.sqrt(s2[-1]) * np.linalg.norm(r) / (s2[0] + lam))
    assert np.linalg.norm(step - ref) <= bound


def test_lm_on_badly_and_moderately_conditioned_jacobians():
    """penalty2_10's scaled Jacobians have κ(AᵀA) ≈ 4e8–2e9, penalty1_10's ≈ 2e5–1e6: both
    reach the global minimum."""
    for name in ("penalty2_10", "penalty1_10"):
        res = _lm(_BY_NAME[name])
        assert _BY_NAME[name].status(res.fun) == "global", name


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("pivoting", [False, True])
@pytest.mark.parametrize("m, n", [(5, 3), (9, 9), (40, 17)])
def test_qr_r(backend, dtype, pivoting, m, n):
    xp = S.namespace(backend)
    eps = float(np.finfo(dtype).eps)
    rng = np.random.default_rng(m + n)
    a, b = (S.to_backend(v, backend, dtype)
            for v in (rng.standard_normal((m, n)), rng.standard_normal(m)))
    a_np, b_np = (B.to_numpy(v).astype(np.float64) for v in (a, b))  # the rounded data
    R, qtb, perm = B.qr_r(xp, a, b, pivoting=pivoting)
    assert R.dtype == a.dtype and qtb.dtype == a.dtype
    R = B.to_numpy(R).astype(np.float64)
    np.testing.assert_array_equal(np.tril(R, -1), 0.0)  # R itself, upper triangular
    perm_np = np.arange(n) if perm is None else B.to_numpy(perm)
    assert sorted(perm_np) == list(range(n))
    Q = np.linalg.lstsq(R.T, a_np[:, perm_np].T, rcond=None)[0].T  # a[:, perm] = Q R
    # Q recovered through R⁻ᵀ: orthonormal to C·n·ε·κ(a) (κ of a Gaussian 40×17 is below 10)
    kappa = np.linalg.cond(a_np)
    np.testing.assert_allclose(Q.T @ Q, np.eye(n), rtol=0, atol=C * n * eps * kappa)
    np.testing.assert_allclose(B.to_numpy(qtb), Q.T @ b_np, rtol=0,
                               atol=C * n * eps * kappa * np.linalg.norm(b_np))
    if pivoting and backend == "numpy":
        d = np.abs(np.diag(R))
        assert np.all(d[:-1] >= d[1:] * (1 - 1e-12))


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("driver", ["gesdd", "gesvd"])
@pytest.mark.parametrize("m, n", [(7, 4), (4, 7), (30, 30)])
def test_svd_is_backward_stable(backend, dtype, driver, m, n):
    """``B.svd`` (NumPy: LAPACK's ``driver`` with its workspace query; other namespaces their
    ``linalg.svd``): the reduced factors, singular values in decreasing order, ``U`` and ``Vᵀ``
    orthonormal to C·k·ε and ``U diag(s) Vᵀ`` equal to ``a`` to C·k·ε·‖a‖₂ (backward
    stability; k = min(m, n))."""
    xp = S.namespace(backend)
    eps, k = float(np.finfo(dtype).eps), min(m, n)
    a = S.to_backend(np.random.default_rng(m * n).standard_normal((m, n)), backend, dtype)
    U, s, Vt = B.svd(xp, a, driver=driver)
    assert (tuple(U.shape), tuple(s.shape), tuple(Vt.shape)) == ((m, k), (k,), (k, n))
    assert U.dtype == s.dtype == Vt.dtype == a.dtype
    U, s, Vt, a_np = (B.to_numpy(v).astype(np.float64) for v in (U, s, Vt, a))
    assert np.all(s[:-1] >= s[1:])
    for Q in (U.T @ U, Vt @ Vt.T):
        np.testing.assert_allclose(Q, np.eye(k), rtol=0, atol=C * k * eps)
    np.testing.assert_allclose((U * s) @ Vt, a_np, rtol=0,
                               atol=C * k * eps * np.linalg.norm(a_np, 2))


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_vdot_and_norm_match_the_standard_calls(backend):
    xp = S.namespace(backend)
    v = S.to_backend(np.random.default_rng(1).standard_normal(4), backend, "float64")
    # sums of 4 squares in another order: 4·ε relative
    np.testing.assert_allclose(B.vdot(xp, v, v), float(xp.vecdot(v, v)), rtol=4 * EPS)
    np.testing.assert_allclose(B.norm(xp, v), float(xp.linalg.vector_norm(v)), rtol=4 * EPS)


# -- LM end to end ---------------------------------------------------------------------------

_PATH = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "nls_problems.py"
_spec = importlib.util.spec_from_file_location("nls_problems", _PATH)
nls = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("nls_problems", nls)
_spec.loader.exec_module(nls)
_BY_NAME = {p.name: p for p in nls.all_problems()}


def _lm(p, **opts):
    return nk.minimize(p.residual, p.x0.copy(), method="lm", jac=p.jacobian,
                       options={"xtol": 1e-10, "ftol": 1e-10, "gtol": 1e-10,
                                "maxfev": 100 * (p.n + 1), **opts})


@pytest.mark.parametrize("name", ["powell_singular", "ext_powell_singular_200"])
def test_singular_at_the_solution_ends_like_minpack(name):
    """Pivoted QR and MINPACK's rank rule (R is used unless a diagonal entry is exactly zero)
    keep the end game of problems singular at x* within 2× MINPACK's evaluations (SciPy's lm,
    same run).  Convergence there is linear and the count depends on rounding: 38 on
    powell_singular under OpenBLAS' Haswell and Prescott kernels, 61 under SkylakeX (SciPy: 38);
    a rank rule that discards R's small diagonal takes hundreds."""
    p = _BY_NAME[name]
    res = _lm(p)
    assert res.success and p.status(res.fun) == "global"
    ref = scipy.optimize.least_squares(p.residual, p.x0.copy(), jac=p.jacobian, method="lm",
                                       xtol=1e-10, ftol=1e-10, gtol=1e-10,
                                       max_nfev=100 * (p.n + 1))
    assert res.nfev <= 2 * ref.nfev


def test_large_problem_is_solved():
    """ext_rosenbrock_200 (n = 200 > SVD_MAX_N: the QR + Cholesky route, whose accuracy
    CHOL_MAX_COND bounds; _check's forward bound covers it in the subproblem tests)."""
    p = _BY_NAME["ext_rosenbrock_200"]
    res = _lm(p)
    assert res.success and p.status(res.fun) == "global"


@pytest.mark.parametrize("n", [4, SVD_MAX_N + 4])
def test_array_api_strict_follows_numpy(n):
    """The generic branches (no pivoting; for n > SVD_MAX_N the QR + Cholesky route) reach the
    same solution as NumPy's."""
    out = {}
    for backend in ("numpy", "array_api_strict"):
        xp = S.namespace(backend)
        t = S.to_backend(np.linspace(0.1, 1.0, 3 * n), backend, "float64")
        k = S.to_backend(np.arange(1.0, n + 1.0), backend, "float64")
        E = xp.exp(-0.1 * t[:, None] * k[None, :])

        def res(x, xp=xp, t=t, E=E):
            return E @ x - xp.sin(t) - xp.vecdot(x, x) * t

        def jac(x, t=t, E=E):
            return E - 2.0 * t[:, None] * x[None, :]

        x0 = S.to_backend(np.full(n, 0.1), backend, "float64")
        r = nk.minimize(res, x0, method="lm", jac=jac)
        assert r.success, (backend, r.message)
        out[backend] = (B.to_numpy(r.x), r.fun)
    # Two converged runs stop at different points near the minimiser x*.  With g = Jᵀr and
    # ∇²f = JᵀJ − 2(Σᵢ rᵢtᵢ)I ⪰ μI (the residual's curvature is −2tᵢI), each point is within
    # ‖g‖/μ of x*, so the two are within the sum of those distances.
    t, k = np.linspace(0.1, 1.0, 3 * n), np.arange(1.0, n + 1.0)
    E = np.exp(-0.1 * t[:, None] * k[None, :])
    dist = 0.0
    for x, _ in out.values():
        r = E @ x - np.sin(t) - (x @ x) * t
        J = E - 2.0 * t[:, None] * x[None, :]
        mu = np.linalg.eigvalsh(J.T @ J - 2 * (r @ t) * np.eye(n))[0]
        assert mu > 0
        dist += np.linalg.norm(J.T @ r) / mu
    assert np.linalg.norm(out["array_api_strict"][0] - out["numpy"][0]) <= dist


@given(data=st.data())
def test_subproblem_property_over_shapes_conditioning_and_radii(data):
    """Over generated shapes (both sides of SVD_MAX_N), condition numbers up to 1e6, radii and
    start values λ₀: the step solves (AᵀA + λI)p̂ = −Aᵀr, λ = 0 exactly when the Gauss-Newton
    step fits, and otherwise ‖p̂‖ is within 10 % of Δ (MINPACK's acceptance band)."""
    n = data.draw(st.sampled_from(range(1, 2 * SVD_MAX_N + 1)), label="n")
    m = data.draw(st.sampled_from(range(n, 2 * n + 4)), label="m")
    cond = 10.0 ** data.draw(st.sampled_from(S.grid(0.0, 6.0)), label="log10 cond")
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
    A, r = _case(m, n, seed, cond=cond)
    shrink = 10.0 ** data.draw(st.sampled_from(S.grid(-4.0, 0.5, 0.125)), label="log10 Δ/‖p̂(0)‖")
    par0 = data.draw(st.sampled_from([0.0, 1e-6, 1.0, 1e3]), label="λ₀")
    fact = TrustRegionSubproblem(np, A, r, EPS, TINY)
    delta = shrink * np.linalg.norm(np.linalg.lstsq(A, r, rcond=None)[0])
    out = fact.solve(delta, par0)
    _check(A, r, delta, out)
    if abs(1.1 * shrink - 1.0) > 1e-6:  # away from the boundary, where rounding decides
        assert (out[1] == 0.0) == (1.1 * shrink > 1.0)


@given(data=st.data())
def test_subproblem_property_rank_deficient(data):
    """Exactly rank-deficient A (k of n singular values zero): the same identities, with p̂(0)
    the minimum-norm least-squares step."""
    n = data.draw(st.integers(2, 2 * SVD_MAX_N), label="n")
    m = data.draw(st.integers(n, 2 * n + 3), label="m")
    k = data.draw(st.integers(1, n - 1), label="zero singular values")
    seed = data.draw(st.integers(0, 2 ** 32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.standard_normal((m, n)))[0]
    V = np.linalg.qr(rng.standard_normal((n, n)))[0]
    s = np.geomspace(1.0, 1e-3, n)
    s[n - k:] = 0.0
    A, r = (U * s) @ V.T, rng.standard_normal(m)
    shrink = 10.0 ** data.draw(st.sampled_from(S.grid(-4.0, 0.5, 0.125)), label="log10 Δ/‖p̂(0)‖")
    fact = TrustRegionSubproblem(np, A, r, EPS, TINY)
    delta = shrink * np.linalg.norm(np.linalg.lstsq(A, r, rcond=1e-10)[0])
    _check(A, r, delta, fact.solve(delta, 0.0))


@pytest.mark.parametrize("batch", [False, True])
def test_a_radius_shrunk_by_rejections_is_no_xtol(batch):
    """Chebyquad (n = 8) from 10·x0, f = 1e22: the column scaling D is of order 1e11, so
    MINPACK's xtol test Δ ≤ xtol·‖Dx‖ held once rejected first trials had shrunk Δ, and the
    run ended XTOL, success, at x0 with nothing accepted (SciPy's lm too, status 3).  With the
    Gauss-Newton step's length asked on the first trials only, it ended XTOL two accepted
    steps later (ρ = 0.91, 0.9999, λ > 0: a radius growing back), still at f = 1e22; it is now
    asked wherever the radius is unproven (``_trust.radius_unproven``).  A success must be at
    one of the problem's known minima (this start reaches none within maxfev)."""
    p = _BY_NAME["chebyquad_8"]
    x0 = 10 * p.x0
    if batch:
        res = nk.minimize(lambda X: np.stack([p.residual(x) for x in X]), x0[None],
                          method="lm", jac=lambda X: np.stack([p.jacobian(x) for x in X]),
                          batch=True)
        ok, f = bool(res.success[0]), float(res.fun[0])
    else:
        res = nk.minimize(p.residual, x0, method="lm", jac=p.jacobian)
        ok, f = res.success, res.fun
    assert not ok or p.status(f) != "failed", (ok, f)


def test_radius_unproven_rule():
    """The rule itself, on scalars and elementwise on arrays: unproven until a Gauss-Newton
    step has been accepted, and after a λ > 0 trial with ρ > ¼; MINPACK's test (proven)
    after a shrink (ρ ≤ ¼) or a Gauss-Newton step (λ = 0) once one has been accepted."""
    from newtonkit.methods._trust import radius_unproven
    cases = [(True, 0.0, -1.0, True), (True, 1.0, 0.1, True), (False, 1.0, 0.9, True),
             (False, 1.0, 0.3, True), (False, 1.0, 0.25, False), (False, 1.0, -2.0, False),
             (False, 0.0, 0.9, False), (False, 0.0, 0.1, False)]
    for no_gn_step, par, ratio, want in cases:
        assert bool(radius_unproven(no_gn_step, par, ratio)) is want, (no_gn_step, par, ratio)
    no_gn_step, par, ratio, want = (np.array(c) for c in zip(*cases, strict=True))
    np.testing.assert_array_equal(radius_unproven(no_gn_step, par, ratio), want)


def test_a_radius_cut_before_any_gauss_newton_step_is_no_xtol():
    """Chebyquad (n = 8) from 10·x0 with 3-point differences: the run ended XTOL, success,
    at f = 1e22 after a trial that shrank the radius (ρ ≤ ¼), before any Gauss-Newton step
    had been accepted: every radius so far came from the initial one by cuts, and the
    Gauss-Newton step's length is now asked until such a step is accepted.  A success must be
    at one of the problem's known minima."""
    p = _BY_NAME["chebyquad_8"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nk.problems.FiniteDifferenceWarning)
        res = nk.minimize(p.residual, 10 * p.x0, method="lm", jac="3-point")
    assert not res.success or p.status(res.fun) != "failed", (res.termination, res.fun)


def test_batched_radius_cut_before_any_gauss_newton_step_is_no_xtol():
    """The batched LM's rule (the single path's): Chebyquad in float32 (residuals and
    Jacobian computed in float64 and rounded) from a start of the stress runs ended XTOL,
    success, at f = 1.19e7 (f(x0) = 1.2e7) after a trial that shrank a radius never grown
    back from its cuts, with no Gauss-Newton step accepted.  A success must be at one of
    the problem's known minima."""
    p = _BY_NAME["chebyquad_8"]
    x0 = np.array([0.034941792488098145, -0.013885749503970146, -0.1690671741962433,
                   0.09446117281913757, -0.1810159832239151, 1.2688648700714111,
                   1.5731282234191895, 0.26081985235214233], np.float32)

    def r(X):
        return np.stack([p.residual(x.astype(np.float64)) for x in X]).astype(np.float32)

    def jac(X):
        return np.stack([p.jacobian(x.astype(np.float64)) for x in X]).astype(np.float32)

    with np.errstate(over="ignore", invalid="ignore"):
        res = nk.minimize(r, x0[None], method="lm", jac=jac, batch=True)
    ok, f = bool(res.success[0]), float(res.fun[0])
    assert not ok or p.status(f) != "failed", (res.termination_of(0), f)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_radius_that_underflows_is_no_convergence(dtype):
    """Powell's badly scaled function from (0, 100): the first radius factor·‖Dx₀‖ is tiny,
    λ's bracket ‖Aᵀr‖/Δ passes float32's range (its cast overflowed, a RuntimeWarning), the
    step underflows to 0 and Δ to 0, and ``Δ ≤ xtol·‖Dx‖`` ended the float32 run XTOL,
    success, at x0 (f = 0.5).  The Gauss-Newton step's length now takes part in the xtol test,
    and α is kept within the dtype: no success at x0, no warning (errors in this suite)."""
    def r(x):
        return np.array([1e4 * x[0] * x[1] - 1,
                         np.exp(-x[0]) + np.exp(-x[1]) - 1.0001]).astype(dtype)

    def jac(x):
        return np.array([[1e4 * x[1], 1e4 * x[0]],
                         [-np.exp(-x[0]), -np.exp(-x[1])]]).astype(dtype)

    res = nk.minimize(r, np.array([0.0, 100.0], dtype), method="lm", jac=jac)
    assert not res.success or res.fun <= 1e-6, (res.termination, res.fun)
