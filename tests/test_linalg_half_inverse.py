"""Properties of the truncated matrix power ``J^κ g = V_k Σ_k^κ U_kᵀ g`` (``half_inverse``).

References come from the float64 SVD of the very values the code was given (see strategies.py).
Tolerances: :func:`strategies.hig_rtol` (ε·cond_k for the SVD route, ε·cond_k² for a Gram in the
working dtype), measured relative to ``‖J^κ‖·‖g‖``; every generated spectrum has a gap of 10×
on each side of the threshold, so kept rank and kept subspace are well resolved in both dtypes.
"""

from __future__ import annotations

import numpy as np
import pytest
import strategies as S
from hypothesis import example, given, note
from hypothesis import strategies as st

from newtonkit.linalg import half_inverse, truncated_svd
from newtonkit.operators import FunctionOperator, MatrixOperator

ROUTES = ("auto", "svd", "gram")
EPS64 = S.eps("float64")


@st.composite
def routed(draw, routes=ROUTES, factor: float = 1.0, extra: float = 0.0, kappas=None, **kw):
    """``(route, case)`` (``(route, case, κ)`` with ``kappas``): the route drawn first, then a
    case whose kept condition number keeps ``factor·cond_k^extra·hig_rtol(route)`` at most
    S.MEANINGFUL (S.cond_limit): the property's tolerance must separate a right answer from a
    wrong one."""
    route = draw(st.sampled_from(routes), label="route")
    case = draw(S.svd_cases(max_cond=S.cond_limit(route, factor, extra), **kw))
    if kappas is None:
        return route, case
    return route, case, draw(st.sampled_from(kappas), label="κ")


def _matvec_err(A: np.ndarray, x: np.ndarray) -> float:
    """Bound on the float64 rounding of ``A @ x`` (a test's own product): γ_n·‖|A||x|‖ with
    γ_n = n·ε/(1 − n·ε), n the inner dimension (Higham, Accuracy and Stability, §3.5)."""
    n = A.shape[1]
    return n * EPS64 / (1 - n * EPS64) * float(np.linalg.norm(np.abs(A) @ np.abs(x)))


# The 2×2 rank-1 float64 J of the soak failure (issue 13): J = σ u vᵀ with J ≈ [[28.52,
# 37.05], [−26.66, −34.63]], truncation 0.024; seed 12161 draws a v almost in J's null space
# (|v₁ᵀv|/‖v‖ ≈ 7e-5), so the test's own float64 product J·v is 1e4× less accurate relative to
# ‖Jv‖ than ε: the old bound, which charged only ε·‖Jv‖ for the input, failed on the Gram route.
_J_SOAK = np.outer([28.52, -26.66], [1.0, 37.05 / 28.52])
_SOAK_CASE = S.case_from_matrix(_J_SOAK, 0.024, [0.6, -1.3], seed=12161)
# The 6 × 5 float64 J of a second soak failure (2026-12-06, σ = 3.9e-3, 3.6e-10, 2.3e-12, ...,
# truncation 5e-6, k = 1): seed 2818667 draws a v with cos(v₁, v) ≈ 0.015, and the test's own
# float64 reference V_k Σ_k^{1/2} V_kᵀ v was 4.6e-13 off relative to P‖Jv‖ (the library's
# result: 2.9e-16 from a 50-digit reference), beyond the bound that left out the reference's
# error.
_J_SOAK2 = np.array([
    [-9.1355502544005472e-04, 1.3094110919567212e-03, -3.6516244826777461e-04,
     -1.0118710252835837e-03, -1.9815704304586628e-03],
    [5.8396768426685305e-04, -8.3700900691170851e-04, 2.3342115300932498e-04,
     6.4681376738910960e-04, 1.2666704423650809e-03],
    [2.8049578692411448e-04, -4.0203842968676053e-04, 1.1211861884983157e-04,
     3.1068253666480624e-04, 6.0841656178897967e-04],
    [-1.9045754017916810e-04, 2.7298555555243912e-04, -7.6128900684692451e-05,
     -2.1095435591027040e-04, -4.1311718065032148e-04],
    [5.6673825378006739e-04, -8.1231366713510069e-04, 2.2653427948518941e-04,
     6.2773019431080622e-04, 1.2292981432492863e-03],
    [-2.3798006804857610e-04, 3.4110024811477937e-04, -9.5124411541973303e-05,
     -2.6359122470370473e-04, -5.1619715094833785e-04]])
_SOAK_CASE2 = S.case_from_matrix(_J_SOAK2, 5e-6, np.ones(6), seed=2818667)
# The 4 × 4 float64 J of a third soak failure (2026-12-06, AMD EPYC, OpenBLAS Zen kernels;
# σ = 3.9e-3, 1.26e-5, 1.26e-5, 3.9e-6, truncation 1e-4, k = 4): ‖A − U Σ Vᵀ‖₂ was 10.4·4·ε·σ_max.
_J_SOAK3 = np.array([
    [3.5549730329265350e-04, 1.9031726533290259e-03, -1.1734976474976505e-03,
     2.5715459636629226e-03],
    [-1.3588119364921222e-04, -7.1530805568417863e-04, 4.2938634417901897e-04,
     -9.5250222613496756e-04],
    [6.5006525173919171e-05, 3.2665009629339459e-04, -1.9358429112891132e-04,
     4.3855978385187646e-04],
    [1.4022541034485852e-04, 6.9436402822836121e-04, -4.3373717258721905e-04,
     9.3182667390108432e-04]])
_SOAK_CASE3 = S.case_from_matrix(_J_SOAK3, 1e-4, [-0.0355, 1.367, -0.308, -0.442], seed=111)


def _pnorm(case: S.SVDCase, kappa: float) -> float:
    """‖V_k Σ_k^κ U_kᵀ‖₂."""
    return float(max(case.s[0] ** kappa, case.s[case.k - 1] ** kappa))


def _apply(case: S.SVDCase, g64: np.ndarray, kappa: float, route: str = "auto", **kw):
    d, info = half_inverse(case.J, case.vec(g64), kappa, case.truncation, route=route, **kw)
    note(f"case {case.shape} {case.backend} {case.dtype} k={case.k} r={case.r} "
         f"t={case.truncation:.3g} cond_k={case.cond_k:.3g} route={info.route}")
    return d, info


def _matrix(case: S.SVDCase, kappa: float, route: str) -> tuple[np.ndarray, str]:
    """The n × m matrix J^κ built by applying the direction to identity columns."""
    m = case.shape[0]
    cols, routes = [], set()
    for j in range(m):
        d, info = _apply(case, np.eye(m)[:, j], kappa, route)
        cols.append(S.to_np(d))
        routes.add(info.route)
    assert len(routes) == 1, routes
    return np.stack(cols, axis=1), routes.pop()


@given(routed(factor=3.0, extra=1.0, max_small=12, max_large=20))
def test_kappa_minus_one_is_moore_penrose(rc):
    route, case = rc
    # X = J^{-1} built column by column is the Moore–Penrose inverse of the truncated J_k: the
    # four Penrose identities with J (X kills the discarded left singular vectors, so X J = X J_k
    # and J X = J_k X).  Perturbation: ‖ΔX‖ ≤ rtol·‖X‖ gives each identity an error of at most
    # 3·rtol·cond_k relative to its natural scale (‖J‖ or ‖X‖; J ΔX J, ΔX J X + X J ΔX + …).
    # The check's own float64 products add 2·max(m, n)·ε64·cond_k (γ_n of two products, each
    # relative to ‖J‖²‖X‖ = cond_k·‖J‖).  routed() keeps 3·cond_k·rtol ≤ 2.5e-2: for the Gram
    # route (rtol ~ ε·cond_k²) that means cond_k ≲ 4e3 in float64, its documented limit.
    X, used = _matrix(case, -1.0, route)
    J, k = case.J64, case.k
    Jk = case.U[:, :k] @ (case.s[:k, None] * case.Vt[:k])
    tol = 3 * case.cond_k * S.hig_rtol(case, used) + 2 * max(case.shape) * EPS64 * case.cond_k
    assert tol <= 2 * S.MEANINGFUL  # (the bound can tell a wrong X from a right one)
    nJ, nX = case.s[0], 1.0 / case.s[k - 1]
    assert np.linalg.norm(J @ X @ J - Jk, 2) <= tol * nJ
    assert np.linalg.norm(X @ J @ X - X, 2) <= tol * nX
    JX, XJ = J @ X, X @ J
    assert np.linalg.norm(JX - JX.T, 2) <= tol
    assert np.linalg.norm(XJ - XJ.T, 2) <= tol
    if case.r == case.k:  # nothing nonzero discarded: J X J = J itself up to ‖J − J_k‖ = σ_{k+1}
        # (the rounding of J to the working dtype leaves σ_{k+1} ~ ε_w·‖J‖, not 0)
        sk1 = case.s[k] if k < len(case.s) else 0.0
        assert np.linalg.norm(J @ X @ J - J, 2) <= tol * nJ + sk1


@given(routed())
def test_kappa_minus_one_matches_numpy_pinv(rc):
    route, case = rc
    # numpy.linalg.pinv keeps σ > rtol·σ_max, the same cutoff rule; tolerance hig_rtol.
    d, info = _apply(case, case.g64, -1.0, route)
    want = np.linalg.pinv(case.J64, rtol=case.truncation) @ case.g64
    err = S.rel_err(d, want, _pnorm(case, -1.0) * np.linalg.norm(case.g64))
    assert err <= S.hig_rtol(case, info.route) <= S.MEANINGFUL, err
    assert info.rank == case.k


@given(routed(factor=2.0, extra=1.0))
@example(rc=("gram", _SOAK_CASE))
@example(rc=("auto", _SOAK_CASE2))
def test_half_power_identities(rc):
    route, case = rc
    # κ = −1/2 with J = U Σ Vᵀ:
    #   J·J^κ g     = U_k Σ_k^{1/2} U_kᵀ g = (JJᵀ)^{1/4} g on the kept subspace,
    #   J^κ·(J v)   = V_k Σ_k^{1/2} V_kᵀ v = (JᵀJ)^{1/4} v on the kept subspace,
    #   J^κ·J·J^κ g = V_k U_kᵀ g.
    # With rtol = hig_rtol and P = ‖J^κ‖ = σ_k^{-1/2}: an error δ = rtol·P‖g‖ in d becomes at
    # most ‖J‖·δ after multiplying by J (relative to σ₁P‖g‖: rtol).  The last identity applies
    # J^κ to J·d: d's error gives ‖J^κ J δd‖ ≤ cond_k·rtol·‖g‖, the second call's own error
    # rtol·P‖Jd‖ ≤ sqrt(cond_k)·rtol·‖g‖.  The test's own inputs J·v and J·d are float64 products
    # (error γ_n‖|J||x|‖, _matvec_err) rounded to the working dtype (ε_w/2 relative); J^κ maps
    # an input error e to at most P‖e‖.  The product error is not small relative to ‖Jv‖ when v
    # is nearly in J's null space (the soak failure, @example).  Nor is the error of the second
    # reference itself: LAPACK's V_k lies within c·(m + n)·ε·σ₁/gap of the exact kept subspace
    # (Wedin; gap = σ_k − σ_{k+1}; c = DIM_C as in hig_rtol), so V_k Σ_k^{1/2} V_kᵀ v is off by
    # up to twice that times σ₁^{1/2}‖v‖ (the second soak failure, @example).
    k, U, s, V = case.k, case.U, case.s, case.Vt.T
    g = case.g64
    kap = -0.5
    P = _pnorm(case, kap)
    u_w = S.eps(case.dtype) / 2
    d, info = _apply(case, g, kap, route)
    rtol = S.hig_rtol(case, info.route)
    d64 = S.to_np(d)
    want = U[:, :k] @ (np.sqrt(s[:k]) * (U[:, :k].T @ g))
    scale1 = s[0] * P * np.linalg.norm(g)
    assert S.rel_err(case.J64 @ d64, want, scale1) <= rtol + _matvec_err(case.J64, d64) / scale1

    v = np.random.default_rng(case.seed + 1).standard_normal(case.shape[1])
    Jv = S.rounded(case.J64 @ v, case.dtype)
    d2, info2 = _apply(case, Jv, kap, route)
    want2 = V[:, :k] @ (np.sqrt(s[:k]) * (V[:, :k].T @ v))
    scale2 = P * np.linalg.norm(Jv)
    e_in = _matvec_err(case.J64, v) + u_w * np.linalg.norm(Jv)
    gap = s[k - 1] - (s[k] if k < s.size else 0.0)
    e_ref = 2 * S.DIM_C * sum(case.shape) * EPS64 * s[0] / gap * np.sqrt(s[0]) * np.linalg.norm(v)
    assert S.rel_err(d2, want2, scale2) <= rtol + (P * e_in + e_ref) / scale2

    Jd = S.rounded(case.J64 @ d64, case.dtype)
    d3, _ = _apply(case, Jd, kap, route)
    want3 = V[:, :k] @ (U[:, :k].T @ g)
    e_in = _matvec_err(case.J64, d64) + u_w * np.linalg.norm(Jd)
    c = case.cond_k
    bound3 = (c + c**0.5) * rtol + P * e_in / np.linalg.norm(g)
    assert S.rel_err(d3, want3, np.linalg.norm(g)) <= bound3


@given(routed())
def test_kappa_plus_one_is_transpose_on_kept_subspace(rc):
    route, case = rc
    # κ = +1: d = V_k Σ_k U_kᵀ g = J_kᵀ g; with no nonzero discarded values this is Jᵀ g.
    k = case.k
    d, info = _apply(case, case.g64, 1.0, route)
    Jk = case.U[:, :k] @ (case.s[:k, None] * case.Vt[:k])
    scale = case.s[0] * np.linalg.norm(case.g64)
    rtol = S.hig_rtol(case, info.route)
    assert S.rel_err(d, Jk.T @ case.g64, scale) <= rtol
    if case.r == case.k:
        assert S.rel_err(d, case.J64.T @ case.g64, scale) <= rtol


@given(routed(kappas=(-1.0, -0.5, 0.0, 0.5, 1.0)))
def test_matches_reference_power(rc):
    route, case, kappa = rc
    # Direct comparison with V_k Σ_k^κ U_kᵀ g; dtype and backend of the result preserved.
    d, info = _apply(case, case.g64, kappa, route)
    assert S.backend_of(d) == case.backend and S.dtype_name(d) == case.dtype
    assert tuple(d.shape) == (case.shape[1],)
    err = S.rel_err(d, case.power(kappa) @ case.g64, _pnorm(case, kappa) *
                    np.linalg.norm(case.g64))
    assert err <= S.hig_rtol(case, info.route), err


@given(routed(factor=2.0, kappas=(-1.0, -0.5, 1.0)))
def test_truncation_discards(rc):
    route, case, kappa = rc
    # (a) d is orthogonal to every discarded right singular vector (null space included);
    # (b) adding to g any combination of discarded left singular vectors (10× the size of g)
    #     leaves d unchanged; (c) nothing is clamped: the reported rank is k, the kept values
    #     are the k largest singular values, all strictly above the reported threshold, which is
    #     truncation·σ_max.  A clamped value σ → threshold would put a component of size
    #     threshold^κ·|u_iᵀg| along v_i, far outside these tolerances.
    k = case.k
    g = case.g64
    d, info = _apply(case, g, kappa, route)
    rtol = S.hig_rtol(case, info.route)
    scale = _pnorm(case, kappa) * np.linalg.norm(g)
    d64 = S.to_np(d)
    assert np.linalg.norm(case.Vt[k:] @ d64) <= rtol * scale

    m = case.shape[0]
    if k < m:
        c = np.random.default_rng(case.seed + 2).standard_normal(m - k)
        g2 = g + 10 * np.linalg.norm(g) * case.U[:, k:] @ (c / np.linalg.norm(c))
        g2 = S.rounded(g2, case.dtype)
        d2, _ = _apply(case, g2, kappa, route)
        scale2 = _pnorm(case, kappa) * np.linalg.norm(g2)
        assert S.rel_err(d2, d64, scale2) <= 2 * rtol

    assert info.rank == k
    sv = S.to_np(info.singular_values)
    assert sv.shape == (k,)
    assert np.all(sv > info.threshold)
    # singular values: absolute error ε·σ_max (SVD) or ε·σ_max·cond_k (Gram: ε·σ_max² / σ)
    sv_tol = S.hig_rtol(case, info.route) / case.cond_k * case.s[0]
    assert np.max(np.abs(sv - case.s[:k])) <= sv_tol
    # the threshold truncation·σ̂_max: σ̂_max's error times truncation, plus one float64 rounding
    assert abs(info.threshold - case.truncation * case.s[0]) <= sv_tol * case.truncation + \
        EPS64 * case.truncation * case.s[0]


@given(S.svd_cases(max_cond=S.cond_limit("svd", 2.0)))
@example(case=_SOAK_CASE3)
def test_truncated_svd_factors(case):
    # truncated_svd keeps exactly the k values above truncation·σ_max (the cases have a 10× gap
    # on each side of the threshold), and U_k Σ_k V_kᵀ is A's best rank-k approximation:
    # ‖A − U_k Σ_k V_kᵀ‖₂ = σ_{k+1} up to the SVD's backward error plus the rounding of the
    # product that rebuilds A: LAPACK's own test of its SVD drivers (TESTING/EIG/ddrvbd.f,
    # threshold 35 in TESTING/svd.in) accepts ‖A − U Σ Vᵀ‖ ≤ 35·max(m, n)·ε·‖A‖, ε of the input
    # dtype as the SVD runs in it.  (10 instead of 35 failed a soak case, @example: ratio 10.4.)
    U, s, Vt, thr, s_max = truncated_svd(case.J, case.truncation)
    k = case.k
    assert tuple(s.shape) == (k,) and tuple(U.shape) == (case.shape[0], k)
    assert tuple(Vt.shape) == (k, case.shape[1])
    s64 = S.to_np(s)
    assert np.all(s64 > thr) and thr == case.truncation * s_max
    A = S.to_np(case.J)
    resid = A - S.to_np(U) @ np.diag(s64) @ S.to_np(Vt)
    tol = 35 * max(case.shape) * S.eps(case.dtype) * case.s[0]
    tail = case.s[k] if k < min(case.shape) else 0.0
    assert abs(np.linalg.norm(resid, 2) - tail) <= tol


def test_values_at_the_threshold_are_discarded():
    # σ = 2, 1 and a relative truncation 0.5: the threshold is exactly 1, and σ ≤ threshold is
    # discarded (HIG code keeps σ > c strictly).  Diagonal input: the SVD is exact.
    J = np.diag([2.0, 1.0])
    for route in ("svd", "gram"):
        d, info = half_inverse(J, np.ones(2), -1.0, 0.5, route=route)
        assert info.rank == 1, route
        # σ=2 kept: d = v₁ σ⁻¹ u₁ᵀg = 0.5 in the first entry; SVD of a diagonal matrix is
        # exact and the Gram route's eigh of diag(4, 1) too, up to 2ε relative
        np.testing.assert_allclose(d, [0.5, 0.0], rtol=0, atol=2 * np.finfo(float).eps)


@given(routed(factor=2.0))
def test_scaling(rc):
    route, case = rc
    j = S.pick(case.seed, [i for i in range(-6, 7) if i], 1)  # (an exact scaling: any works)
    # J → cJ (c = 2^j, exact in floating point) scales the κ = −1/2 direction by c^(−1/2); the
    # relative threshold keeps the same singular values.  Both directions carry hig_rtol.
    c = 2.0**j
    d1, info = _apply(case, case.g64, -0.5, route)
    d2, _ = half_inverse(case.J * c, case.g, -0.5, case.truncation, route=route)
    scale = _pnorm(case, -0.5) * np.linalg.norm(case.g64)
    assert S.rel_err(c**0.5 * S.to_np(d2), S.to_np(d1), scale) <= 2 * S.hig_rtol(case, info.route)


@given(routed(factor=3.0))
def test_linear_in_g(rc):
    route, case = rc
    # d(αg + βh) = α d(g) + β d(h): the direction is linear in the output-space vector.
    rng = np.random.default_rng(case.seed + 3)
    h = S.rounded(rng.standard_normal(case.shape[0]), case.dtype)
    a, b = 0.75, -1.5  # exact in binary
    gh = S.rounded(a * case.g64 + b * h, case.dtype)
    d1, info = _apply(case, case.g64, -0.5, route)
    d2, _ = _apply(case, h, -0.5, route)
    d3, _ = _apply(case, gh, -0.5, route)
    scale = _pnorm(case, -0.5) * (np.linalg.norm(case.g64) + 2 * np.linalg.norm(h))
    want = a * S.to_np(d1) + b * S.to_np(d2)
    assert S.rel_err(d3, want, scale) <= 3 * S.hig_rtol(case, info.route)


@given(S.svd_cases(max_cond=S.cond_limit("gram", 3.0)), st.sampled_from((-1.0, -0.5, 1.0)))
def test_all_routes_agree(case, kappa):
    # SVD, Gram (the smaller side: JJᵀ for wide, JᵀJ for tall), randomized at full target rank
    # (dense and as a matrix-free operator) and the automatic choice all match the reference,
    # each to its own hig_rtol, hence one another to the sum of two.
    want = case.power(kappa) @ case.g64
    scale = _pnorm(case, kappa) * np.linalg.norm(case.g64)
    p = min(case.shape)
    xp = S.namespace(case.backend)
    J = case.J
    op = FunctionOperator(case.shape, lambda x: J @ x, lambda y: xp.matrix_transpose(J) @ y,
                          like=J)
    runs = {
        "svd": half_inverse(J, case.g, kappa, case.truncation, route="svd"),
        "gram": half_inverse(J, case.g, kappa, case.truncation, route="gram"),
        "auto": half_inverse(J, case.g, kappa, case.truncation),
        "randomized": half_inverse(J, case.g, kappa, case.truncation, route="randomized",
                                   rank=p),
        "randomized-op": half_inverse(op, case.g, kappa, case.truncation, rank=p),
        "operator-dense": half_inverse(MatrixOperator(J), case.g, kappa, case.truncation),
    }
    for name, (d, info) in runs.items():
        err = S.rel_err(d, want, scale)
        # the randomized range finder at full rank carries the SVD's error model; its
        # power iterations with QR re-orthogonalisation add a small constant (factor 3)
        factor = 3.0 if name.startswith("randomized") else 1.0
        assert err <= S.hig_rtol(case, info.route, factor), (name, info.route, err)
        assert info.rank == case.k, (name, info.rank)
        assert S.dtype_name(d) == case.dtype
    assert runs["svd"][1].route == "svd"
    # below 10·sqrt(ε64) of σ_max no Gram resolves the threshold: the SVD is taken
    # (half_inverse names the Gram it formed: "kernel" = JJᵀ, "normal" = JᵀJ)
    gram_routes = ("kernel", "normal", "kernel-float64", "normal-float64") \
        if case.truncation >= 10 * EPS64**0.5 else ("svd",)
    assert runs["gram"][1].route in gram_routes
    assert runs["randomized-op"][1].route == "randomized"


@given(S.svd_cases(deficient=True, discarded=False, max_cond=S.cond_limit("svd", 3.0)),
       st.sampled_from((-1.0, -0.5)))
def test_randomized_recovers_exact_low_rank(case, kappa):
    # For J of exact rank r and target rank r, the range finder (r + 10 samples, 2 power
    # iterations) captures range(J) up to rounding: same result as the SVD, same error model.
    d, info = half_inverse(case.J, case.g, kappa, case.truncation, route="randomized",
                           rank=case.r)
    err = S.rel_err(d, case.power(kappa) @ case.g64,
                    _pnorm(case, kappa) * np.linalg.norm(case.g64))
    assert err <= S.hig_rtol(case, "svd", 3.0), err
    assert info.rank == case.k


@given(S.svd_cases(dtype="float32", min_truncation=1e-6, max_truncation=3e-3,
                   kinds=("tall", "wide"), max_cond=S.cond_limit("svd")))
def test_gram_precision_rule_float32(case):
    # REFERENCE.md: through JJᵀ float32 loses singular values below ~3e-4·σ_max.  With a
    # relative threshold below GRAM_SAFETY·sqrt(eps32) = 3.5e-3 the Gram route must upcast to
    # float64, so the error follows eps64·cond_k² + eps32·cond_k (never eps32·cond_k², which is
    # up to 1e3 here).
    d, info = half_inverse(case.J, case.g, -0.5, case.truncation, route="gram")
    assert info.route in ("kernel-float64", "normal-float64")
    assert S.dtype_name(d) == "float32"
    err = S.rel_err(d, case.power(-0.5) @ case.g64,
                    _pnorm(case, -0.5) * np.linalg.norm(case.g64))
    assert err <= S.hig_rtol(case, "gram-float64"), err
    assert info.rank == case.k


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("backend", S.BACKENDS)
def test_threshold_below_gram_resolution_takes_svd(backend, dtype):
    # A relative threshold below 10·sqrt(eps64) = 1.5e-7 cannot be resolved by any Gram: the
    # Gram route must fall back to the SVD (REFERENCE.md precision rule).
    rng = np.random.default_rng(0)
    J = (S.random_orthogonal(rng, 30, 12) * np.logspace(0, -2, 12)) @ \
        S.random_orthogonal(rng, 12, 12).T
    _, info = half_inverse(S.to_backend(J, backend, dtype),
                           S.to_backend(rng.standard_normal(30), backend, dtype), -0.5, 1e-8,
                           route="gram")
    assert info.route == "svd"


@given(routed(factor=2.0))
def test_absolute_threshold(rc):
    route, case = rc
    # relative=False with the absolute value truncation·σ_max gives the relative result;
    # info.threshold is that absolute value.
    thr = case.truncation * case.s[0]
    d1, info1 = _apply(case, case.g64, -0.5, route)
    d2, info2 = half_inverse(case.J, case.g, -0.5, thr, relative=False, route=route)
    assert info2.threshold == thr  # the absolute threshold is passed through
    assert info2.rank == case.k
    scale = _pnorm(case, -0.5) * np.linalg.norm(case.g64)
    assert S.rel_err(d2, S.to_np(d1), scale) <= 2 * S.hig_rtol(case, info2.route)


@given(routed(factor=2.0, kappas=(-1.0, -0.5, 1.0), backend="numpy"))
def test_numpy_and_torch_agree(rc):
    route, case, kappa = rc
    S.require("torch")
    # The same float values on NumPy and PyTorch give the same direction, each within hig_rtol
    # of the reference, hence of each other to twice that.
    d_np, info = _apply(case, case.g64, kappa, route)
    Jt = S.to_backend(case.J64, "torch", case.dtype)
    gt = S.to_backend(case.g64, "torch", case.dtype)
    d_t, info_t = half_inverse(Jt, gt, kappa, case.truncation, route=route)
    assert S.backend_of(d_t) == "torch" and S.dtype_name(d_t) == case.dtype
    assert info_t.rank == info.rank and info_t.route == info.route
    scale = _pnorm(case, kappa) * np.linalg.norm(case.g64)
    assert S.rel_err(d_t, S.to_np(d_np), scale) <= 2 * S.hig_rtol(case, info.route)


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("route", ["svd", "gram"])
def test_zero_matrix_gives_zero_direction(backend, route):
    # σ_max = 0: nothing is strictly above the threshold 0, so d = 0 and rank 0 (no 0^κ).
    J = S.to_backend(np.zeros((4, 3)), backend, "float64")
    d, info = half_inverse(J, S.to_backend(np.ones(4), backend, "float64"), -0.5, route=route)
    assert info.rank == 0
    np.testing.assert_array_equal(S.to_np(d), np.zeros(3))


_J_ARG, _G_ARG = np.arange(12.0).reshape(4, 3) % 5 + np.eye(4, 3), np.ones(4)


@pytest.mark.parametrize("kwargs,match", [
    (dict(route="randomized", rank=2, oversampling=-1), r"oversampling must be >= 0, got -1"),
    (dict(route="randomized", rank=2, power_iterations=-1),
     r"power_iterations must be >= 0, got -1"),
    (dict(route="randomized", rank=2, power_iterations=1.5),
     r"power_iterations must be an integer, got 1.5"),
    (dict(route="svd", chunk_size=0), r"chunk_size must be >= 1, got 0"),
], ids=["oversampling", "power_iterations", "power_iterations-float", "chunk_size"])
def test_bad_integer_arguments_raise_naming_them(kwargs, match):
    with pytest.raises(ValueError, match=match):
        half_inverse(_J_ARG, _G_ARG, **kwargs)
    with pytest.raises(ValueError, match=match):  # the same for a matrix-free operator
        half_inverse(MatrixOperator(_J_ARG), _G_ARG, **kwargs)
    with pytest.raises(TypeError, match=rf"{match.split()[0]} must be an integer, got str"):
        half_inverse(_J_ARG, _G_ARG, **{**kwargs, match.split()[0]: "2"})


@pytest.mark.parametrize("scale", [1e-160, 1e-155, 1e155, 1e160])
@pytest.mark.parametrize("shape", [(10, 30), (30, 10)])
def test_gram_routes_survive_extreme_scales(scale, shape):
    """J of 1e±155: its Gram over- or underflows (JJᵀ ~ 1e∓310).  The Gram routes scale J by
    a power of two first (exact), as LAPACK's drivers do out of range; they gave non-finite
    steps with rank 10 and no error.  Each result is the scale-free one times scale^κ, in
    norm to 100·ε·κ of the Gram each solves (J0·scale rounds each entry by ε, and both runs
    carry their Gram's error ε·κ)."""
    from newtonkit.linalg import gauss_newton_step

    rng = np.random.default_rng(0)
    J0 = rng.standard_normal(shape)
    g = rng.standard_normal(shape[0])
    eps, sv = np.finfo(float).eps, np.linalg.svd(J0, compute_uv=False)
    for exponent in (-1.0, -0.5):
        want, _ = half_inverse(J0, g, exponent, route="gram")
        got, info = half_inverse(J0 * scale, g, exponent, route="gram")
        assert info.rank == min(shape)
        back = got / scale ** exponent  # (norms of the scaled vectors would overflow)
        assert np.linalg.norm(back - want) <= 100 * eps * (sv[0] / sv[-1]) ** 2 \
            * np.linalg.norm(want)
    if abs(np.log10(scale)) > 155:  # (μ·scale² is not a float64 there)
        return
    mu = 1e-3  # the kernel route of a damped step: (JᵀJ + μI)d = −Jᵀr, μ against ‖J‖² ≈ 40
    want, _ = gauss_newton_step(J0, g, mu, route="kernel")
    got, _ = gauss_newton_step(J0 * scale, g, (mu * scale) * scale, route="kernel")
    kappa = (sv[0] ** 2 + mu) / mu  # κ(JJᵀ + μI), its Gram's
    assert np.linalg.norm(got * scale - want) <= 100 * eps * kappa * np.linalg.norm(want)
