"""The linear algebra of newtonkit._backend that the array API standard lacks: Cholesky with a
shift, triangular solves, overflow-safe norms; each checked against its backward-error bound on
every backend."""

from __future__ import annotations

import array_api_compat
import numpy as np
import pytest
import strategies as S

from newtonkit import _backend as B


def _gamma(k: int) -> float:
    """Higham's γ_k = kε/(1 − kε) for float64: the relative error bound of k roundings."""
    eps = np.finfo(np.float64).eps
    return k * eps / (1 - k * eps)


def test_array_namespace_of_an_ndarray_is_compats():
    x = np.ones(3)
    assert B.array_namespace(x) is array_api_compat.array_namespace(x)


@pytest.mark.parametrize("backend", S.BACKENDS)
@pytest.mark.parametrize("n", [1, 3, 12, 70])
@pytest.mark.parametrize("shift", [0.0, 0.3])
def test_shifted_cholesky_and_its_solves(backend, n, shift):
    """``cholesky(a, shift)`` factors ``a + shift·I``; ``cho_solve`` and ``solve_triangular``
    solve with the factor; an indefinite matrix is reported, not raised."""
    import scipy.linalg

    xp = S.namespace(backend)
    rng = np.random.default_rng(n)
    G = rng.standard_normal((n + 2, n))
    a_np = G.T @ G
    a = S.to_backend(a_np, backend, "float64")
    L, ok = B.cholesky(xp, a, shift=shift)
    assert ok
    L_np = B.to_numpy(L)
    want = scipy.linalg.cholesky(a_np + shift * np.eye(n), lower=True)
    a_s = a_np + shift * np.eye(n)
    norm_a = np.linalg.norm(a_s, 2)
    # Cholesky is backward stable: L Lᵀ = A + ΔA, |ΔA| ≤ γ_{n+1}|L||Lᵀ| and ‖|L||Lᵀ|‖₂ ≤ n‖A‖₂
    # (Higham, ASNA 2nd ed., Thm 10.3 and its proof); the product L Lᵀ adds γ_n |L||Lᵀ|.
    assert np.linalg.norm(L_np @ L_np.T - a_s, 2) <= (_gamma(n + 1) + _gamma(n)) * n * norm_a
    b_np = rng.standard_normal(n)
    b = S.to_backend(b_np, backend, "float64")
    x = B.to_numpy(B.cho_solve(xp, L, b))
    # two triangular solves with the computed factor: (A + ΔA) x = b with |ΔA| ≤ γ_{3n+1}|L||Lᵀ|
    # (Higham Thm 10.4), so ‖A x − b‖ ≤ γ_{3n+1}·n·‖A‖₂‖x‖ (+ one rounding of the product A x)
    resid = np.linalg.norm(a_s @ x - b_np)
    assert resid <= (_gamma(3 * n + 1) + _gamma(n)) * n * norm_a * np.linalg.norm(x)
    for lower in (True, False):
        for trans in (False, True):
            T = want if lower else want.T.copy()
            for T_b in (T, np.asfortranarray(T)):
                got = B.to_numpy(B.solve_triangular(xp, S.to_backend(T_b, backend, "float64"),
                                                    b, lower=lower, trans=trans))
                # substitution is componentwise backward stable: (T + ΔT) x = b with
                # |ΔT| ≤ γ_n |T| (Higham Thm 8.5), so |op(T) x − b| ≤ γ_n |op(T)||x| (+ γ_n
                # for forming the product here)
                op = T_b.T if trans else T_b
                assert np.all(np.abs(op @ got - b_np) <= 2 * _gamma(n) * (np.abs(op) @ np.abs(got)))
    if backend == "numpy":  # a zero on the diagonal: LinAlgError, as SciPy
        singular = want.copy()
        singular[n // 2, n // 2] = 0.0
        with pytest.raises(np.linalg.LinAlgError, match="singular"):
            B.solve_triangular(xp, singular, b, lower=True)
    if n > 1:  # indefinite: a − (λ_max + 1)·I
        bad = -(np.linalg.eigvalsh(a_np)[-1] + 1.0)
        assert B.cholesky(xp, a, shift=bad) == (None, False)


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_safe_column_norms_do_not_overflow(backend):
    """``column_norms(safe=True)`` agrees with the plain norms where those are finite and stays
    finite (and right) for entries whose squares overflow."""
    xp = S.namespace(backend)
    rng = np.random.default_rng(7)
    a_np = rng.standard_normal((9, 4))
    a_np[:, 2] = 0.0  # a zero column stays zero
    for scale in (1.0, 1e-200, 1e200):
        a = S.to_backend(a_np * scale, backend, "float64")
        got = B.to_numpy(B.column_norms(xp, a, safe=True))
        want = np.linalg.norm(a_np, axis=0) * scale
        # a norm of m = 9 entries: squares, a sum and a root (and a scaling): ≤ γ_{m+3} relative,
        # for either result, so they differ by at most twice that
        np.testing.assert_allclose(got, want, rtol=2 * _gamma(a_np.shape[0] + 3))


@pytest.mark.parametrize("backend", S.BACKENDS)
def test_norm_does_not_overflow(backend):
    """``B.norm`` is √(v·v) where that is finite and ``s‖v/s‖`` where the squares overflow;
    an infinite entry gives inf and a NaN gives NaN."""
    xp = S.namespace(backend)
    v_np = np.array([3.0, -4.0, 0.0, 12.0])
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # the cheap first try
        for scale in (1.0, 1e200, 1e-200):
            v = S.to_backend(v_np * scale, backend, "float64")
            # 13·scale is exact in float64 up to the rounding of scale·v; a norm of 4 entries
            # with a scaling step is within γ_{4+3} of it
            np.testing.assert_allclose(B.norm(xp, v), 13.0 * scale, rtol=_gamma(7))
        assert B.norm(xp, S.to_backend(np.zeros(3), backend, "float64")) == 0.0
        for bad, want in ((np.inf, np.inf), (np.nan, np.nan)):
            v = S.to_backend(np.array([1e200, bad, 1.0]), backend, "float64")
            np.testing.assert_equal(B.norm(xp, v), want)
