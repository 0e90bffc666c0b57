"""Hypothesis strategies and backend helpers shared by the property tests.

Every generated case carries both the backend array the code under test sees and a float64 NumPy
copy of *the same rounded values* (``to_np(to_backend(a))``), so references are computed from
what the code was actually given: float32 rounding of the input is never counted as an error of
the code.  References use float64 NumPy/LAPACK.

Matrices are built as ``J = U diag(s) Vᵀ`` with random orthogonal ``U``, ``V``.  Hypothesis
draws every structural parameter — shape kind and sizes, backend, dtype, rank, number of
discarded values, log10 of the kept condition number cond_k and of the truncation (quarter-decade
grids), spectrum kind (log-uniform, evenly log-spaced, clustered), power-of-two scale — with
``st.sampled_from``, whose draws are close to uniform under the derandomized ci profile (its
``st.floats``/``st.integers`` put about a third of the examples at a bound) and which shrinks
towards the first entry, so a failure shrinks to a small, well-conditioned case.  Only the
continuous parts (orthogonal factors, interior singular values, vectors) come from a drawn seed.

cond_k reaches MAX_COND_K: 1e8 in float64, 1e3 in float32 (the float32 SVD route's bound
C·ε₃₂·cond_k is 2.3e-2 there; at 1e4 it would pass answers without a correct digit).  Properties
whose tolerance grows faster (a Gram's ε·cond_k², a Penrose identity's extra cond_k) restrict
their cases with ``max_cond=cond_limit(...)`` so that every tolerance stays ≤ MEANINGFUL.
Under the ci profile (100 examples per property) the kept condition numbers of
test_linalg_half_inverse's 1,300 float64/float32 cases spread over every decade up to the limit.

For truncated inverses the spectrum is built around a truncation threshold with a *gap*: kept
singular values are at least ``GAP``× above the threshold and discarded ones at least ``GAP``×
below it, so the kept rank is well defined in either dtype and the comparisons are made on
well-resolved parts only.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st


def _optional(name: str) -> Any:
    """The module ``name``, or None where it is not installed (``pip install ".[test]"`` has
    neither torch nor, before its extra, array_api_strict: their cases skip)."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


torch = _optional("torch")
array_api_strict = _optional("array_api_strict")
#: Where the generated cases live: ``NEWTONKIT_TEST_DEVICE`` = ``cpu`` (default) or ``cuda``.
#: With ``cuda`` the torch cases of :func:`to_backend` are CUDA tensors and CuPy joins the
#: backends (benchmarks/gpu_check.py runs the suite so); tensors a test makes itself stay where
#: it puts them, and torch's default device is left alone, so that a library call that forgets
#: ``device=`` still lands on the CPU and fails.
DEVICE = os.environ.get("NEWTONKIT_TEST_DEVICE", "cpu")
if DEVICE not in ("cpu", "cuda"):
    raise ValueError(f"NEWTONKIT_TEST_DEVICE={DEVICE!r}: expected 'cpu' or 'cuda'")
if DEVICE == "cuda" and not (torch is not None and torch.cuda.is_available()):
    raise RuntimeError("NEWTONKIT_TEST_DEVICE=cuda needs torch with a CUDA device")
cupy = _optional("cupy") if DEVICE == "cuda" else None
ALL_BACKENDS = ("numpy", "torch", "array_api_strict", "cupy")
BACKENDS = tuple(b for b in ALL_BACKENDS
                 if b == "numpy" or (b == "cupy" and cupy is not None)
                 or (b != "cupy" and _optional(b) is not None))
DTYPES = ("float32", "float64")
GAP = 10.0  # factor between the threshold and the nearest kept / discarded singular value
# Largest condition number cond_k = σ_1/σ_k of the generated kept part, by dtype.  float64: 1e8.
# float32: 1e3 generated, of which the half-inverse properties can use up to about 260 on the
# SVD route (its bound 10·(m+n)·ε₃₂·cond_k, hig_rtol, reaches MEANINGFUL there at m+n = 80)
# and about 16 through a Gram (ε₃₂·cond_k²); cond_limit restricts each property's cases.
MAX_COND_K = {"float32": 1e3, "float64": 1e8}
# Smallest relative truncation per dtype for generated half-inverse cases: the kept part spans
# [GAP·t, 1], so these allow every cond_k up to MAX_COND_K.  (A Gram route cannot resolve
# t < 10·sqrt(ε64) ≈ 1.5e-7 and falls back to the SVD there, REFERENCE.md.)
MIN_TRUNCATION = {"float32": 1e-4, "float64": 1e-9}
# A generated case must leave a property's tolerance at or below this (relative): above it the
# bound no longer separates a right answer from a wrong one (see cond_limit).
MEANINGFUL = 2.5e-2


# -- backends ---------------------------------------------------------------------------------


def namespace(backend: str) -> Any:
    """The array namespace the code under test will see for ``backend``."""
    import array_api_compat

    return array_api_compat.array_namespace(to_backend(np.zeros(1), backend, "float64"))


def to_backend(a: Any, backend: str, dtype: str) -> Any:
    """A copy of the NumPy array ``a`` on ``backend`` with ``dtype`` ('float32'|'float64'|...)."""
    require(backend)
    a = np.asarray(a)
    if backend == "numpy":
        return np.array(a, dtype=dtype)
    if backend == "torch":
        return torch.tensor(np.array(a, dtype=dtype), device=DEVICE)
    if backend == "cupy":
        return cupy.asarray(np.array(a, dtype=dtype))
    if backend == "array_api_strict":
        return array_api_strict.asarray(np.array(a, dtype=dtype),
                                        dtype=getattr(array_api_strict, dtype))
    raise ValueError(backend)


def require(backend: str) -> None:
    """Skip the calling test when ``backend`` is not installed."""
    if backend not in BACKENDS:
        pytest.skip(f"{backend} is not installed")


def to_np(x: Any) -> np.ndarray:
    """A float64 NumPy copy of a backend array (tests only)."""
    if torch is not None and isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy().astype(np.float64)
    if cupy is not None and isinstance(x, cupy.ndarray):
        return x.get().astype(np.float64)
    return np.array(np.asarray(x), dtype=np.float64)


def rounded(a: np.ndarray, dtype: str) -> np.ndarray:
    """``a`` rounded to ``dtype`` and back to float64: the values the code actually sees."""
    return np.asarray(a, dtype=dtype).astype(np.float64)


def eps(dtype: str) -> float:
    return float(np.finfo(dtype).eps)


def dtype_name(x: Any) -> str:
    """'float32'/'float64'/... of a backend array."""
    return str(x.dtype).replace("torch.", "").replace("array_api_strict.", "")


def backend_of(x: Any) -> str:
    if torch is not None and isinstance(x, torch.Tensor):
        return "torch"
    if isinstance(x, np.ndarray):
        return "numpy"
    if type(x).__module__.startswith("array_api_strict"):
        return "array_api_strict"
    if cupy is not None and isinstance(x, cupy.ndarray):
        return "cupy"
    return type(x).__module__


backends = st.sampled_from(BACKENDS)
dtypes = st.sampled_from(DTYPES)
seeds = st.integers(0, 2**32 - 1)


def random_orthogonal(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """``n × k`` with orthonormal columns (Haar-distributed: QR of a Gaussian, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    q = q * np.sign(np.where(np.diag(r) == 0, 1.0, np.diag(r)))[None, :]
    return q[:, :k]


# -- shapes and spectra ------------------------------------------------------------------------


@st.composite
def shapes(draw, max_small: int = 24, max_large: int = 40, kinds=("tall", "wide", "square")):
    """``(m, n)``: tall (m > n), wide (m < n) or square, 1 ≤ sizes ≤ ``max_large``."""
    kind = draw(st.sampled_from(kinds))
    p = draw(st.integers(1, max_small))
    if kind == "square":
        return p, p
    q = draw(st.integers(p + 1, max(p + 1, max_large)))
    return (q, p) if kind == "tall" else (p, q)


def random_shape(rng: np.random.Generator, max_small: int = 24, max_large: int = 40,
                 kinds=("tall", "wide", "square")) -> tuple[int, int]:
    """As :func:`shapes` from a generator: the smaller size is in [1, 3] one time in five and
    in [4, max_small] otherwise."""
    kind = str(rng.choice(kinds))
    p = int(rng.integers(1, 4)) if rng.random() < 0.2 else int(rng.integers(4, max_small + 1))
    if kind == "square":
        return p, p
    q = int(rng.integers(p + 1, max(p + 1, max_large) + 1))
    return (q, p) if kind == "tall" else (p, q)


def _spread(rng: np.random.Generator, kind: str, count: int, lo: float, hi: float) -> np.ndarray:
    """``count`` values in ``[lo, hi]`` (log scale), descending: log-uniform, log-spaced or
    clustered (one or two tight clusters)."""
    if count == 0:
        return np.zeros(0)
    a, b = np.log10(lo), np.log10(hi)
    if kind == "logspaced":
        e = np.linspace(b, a, count)
    elif kind == "clustered":
        centres = rng.uniform(a, b, size=2)
        e = centres[rng.integers(0, 2, size=count)] + rng.uniform(-1e-3, 1e-3, size=count)
        e = np.clip(e, a, b)
    else:
        e = rng.uniform(a, b, size=count)
    return np.sort(10.0 ** e)[::-1]


@dataclass
class SVDCase:
    """A generated ``J = U diag(s) Vᵀ`` and its truncation set-up.

    ``J`` is on ``backend`` in ``dtype``; ``J64`` holds the same rounded values in float64;
    ``U, s, Vt`` is the *full* float64 SVD of ``J64`` (the reference); ``k`` is the number of
    singular values strictly above ``truncation·σ_max`` (relative threshold); ``r`` the exact rank
    before rounding; ``g`` a random output-space vector (backend) with float64 copy ``g64``.
    """

    backend: str
    dtype: str
    J: Any
    J64: np.ndarray
    U: np.ndarray
    s: np.ndarray
    Vt: np.ndarray
    k: int
    r: int
    truncation: float
    g: Any
    g64: np.ndarray
    seed: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.J64.shape

    @property
    def cond_k(self) -> float:
        """Condition number of the kept part, σ_1/σ_k."""
        return float(self.s[0] / self.s[self.k - 1])

    def vec(self, a: np.ndarray) -> Any:
        return to_backend(a, self.backend, self.dtype)

    def power(self, kappa: float) -> np.ndarray:
        """Reference ``V_k Σ_k^κ U_kᵀ`` (n × m, float64)."""
        k = self.k
        return self.Vt[:k].T @ (self.s[:k, None] ** kappa * self.U[:, :k].T)


def grid(lo: float, hi: float, step: float = 0.25) -> list[float]:
    """``hi, hi − step, …`` down to ``lo`` (both ends included): values for ``st.sampled_from``,
    whose draws are close to uniform under the derandomized ci profile (``st.floats`` and
    ``st.integers`` put a third of the examples at or next to a bound) and shrink towards the
    first entry."""
    count = int(np.floor((hi - lo) / step + 1e-9)) + 1
    out = [round(hi - i * step, 10) for i in range(max(count, 1))]
    if out[-1] > lo + 1e-9:
        out.append(lo)
    return out


def _per_dtype(value, dtype: str):
    return value[dtype] if isinstance(value, dict) else value


@st.composite
def svd_cases(draw, *, backend=None, dtype=None, deficient: bool | None = None,
              min_truncation: float | dict | None = None, max_truncation: float = 0.05,
              max_small: int = 24, max_large: int = 40, discarded: bool = True,
              kinds=("tall", "wide", "square"), scale: bool = True,
              max_cond: float | dict | None = None):
    """An :class:`SVDCase` with a gap of ``GAP`` around the relative threshold.

    ``deficient``: force exact rank deficiency (True), full rank (False) or either (None).
    ``discarded``: allow nonzero singular values below the threshold (else only exact zeros).
    ``min_truncation``: smallest relative threshold (a float, or a dict by dtype).
    ``max_cond``: largest condition number ``cond_k`` of the kept part (a float or a dict by
    dtype; default :data:`MAX_COND_K`), for properties whose bound is meaningful only below it.

    Hypothesis draws every structural parameter (shape, backend, dtype, rank, number of
    discarded values, log10 cond_k and log10 truncation on a quarter-decade grid, spectrum
    kind, power-of-two scale), so a failure shrinks to a small, well-conditioned case; the
    continuous parts (orthogonal factors, interior singular values, g) come from a drawn seed.
    """
    kind = draw(st.sampled_from(kinds), label="shape kind")
    p = draw(st.sampled_from(range(1, max_small + 1)), label="min(m, n)")
    if kind == "square":
        m, n = p, p
    else:
        q = draw(st.sampled_from(range(p + 1, max(p + 1, max_large) + 1)), label="max(m, n)")
        m, n = (q, p) if kind == "tall" else (p, q)
    backend = draw(st.sampled_from(BACKENDS), label="backend") if backend is None else backend
    dtype = draw(st.sampled_from(DTYPES), label="dtype") if dtype is None else dtype
    if deficient is None:
        deficient = draw(st.booleans(), label="deficient") if p > 1 else False
    r = p - draw(st.sampled_from(range(1, p)), label="p - rank") if (deficient and p > 1) \
        else p
    n_disc = draw(st.sampled_from(range(0, r)), label="discarded") if discarded else 0
    k = r - n_disc
    lo_t = _per_dtype(MIN_TRUNCATION if min_truncation is None else min_truncation, dtype)
    top = _per_dtype(MAX_COND_K if max_cond is None else max_cond, dtype)
    # kept part: σ in [1/cond_k, 1], cond_k = 10^L with L ≤ log10 top and 10^-L ≥ GAP·lo_t
    L_max = max(0.0, min(np.log10(top), -np.log10(GAP * lo_t)))
    L = draw(st.sampled_from(grid(0.0, L_max)), label="log10 cond_k") if k > 1 else 0.0
    # threshold: lo_t ≤ t ≤ min(max_truncation, 10^-L / GAP); the first grid entry puts the
    # smallest kept value right at the gap
    hi_t = min(np.log10(max_truncation), -L - np.log10(GAP))
    log_t = draw(st.sampled_from(grid(min(np.log10(lo_t), hi_t), hi_t)), label="log10 t")
    t = 10.0 ** log_t
    spectrum = draw(st.sampled_from(("loguniform", "logspaced", "clustered")),
                    label="spectrum")
    c = 2.0 ** draw(st.sampled_from(range(-8, 9)), label="log2 scale") if scale else 1.0
    seed = draw(seeds, label="seed")
    rng = np.random.default_rng(seed)
    kept = np.concatenate([[1.0], _spread(rng, spectrum, max(k - 2, 0), 10.0 ** -L, 1.0),
                           [10.0 ** -L]])[:k]
    disc = _spread(rng, spectrum, n_disc, t / GAP / 1e3, t / GAP)
    s_true = np.concatenate([kept, disc, np.zeros(p - r)])
    U0 = random_orthogonal(rng, m, p)
    V0 = random_orthogonal(rng, n, p)
    J_exact = c * (U0 * s_true[None, :]) @ V0.T
    J = to_backend(J_exact, backend, dtype)
    J64 = to_np(J)
    U, s, Vt = np.linalg.svd(J64, full_matrices=True)
    k_ref = int(np.count_nonzero(s > t * s[0]))
    assert k_ref == k, (k_ref, k, s, t)  # the gap survives rounding to float32
    g64 = rounded(rng.standard_normal(m), dtype)
    return SVDCase(backend, dtype, J, J64, U, s, Vt, k, r, t, to_backend(g64, backend, dtype),
                   g64, seed)


def case_from_matrix(J, truncation: float, g, *, backend: str = "numpy",
                     dtype: str = "float64", seed: int = 0) -> SVDCase:
    """An :class:`SVDCase` for a given matrix (regression ``@example``s)."""
    J = to_backend(np.asarray(J, dtype=np.float64), backend, dtype)
    J64 = to_np(J)
    U, s, Vt = np.linalg.svd(J64, full_matrices=True)
    k = int(np.count_nonzero(s > truncation * s[0]))
    r = int(np.count_nonzero(s > max(J64.shape) * eps(dtype) * s[0]))
    g64 = rounded(np.asarray(g, dtype=np.float64), dtype)
    return SVDCase(backend, dtype, J, J64, U, s, Vt, k, r, truncation,
                   to_backend(g64, backend, dtype), g64, seed)


def hig_rtol(case: SVDCase, route: str, factor: float = 1.0) -> float:
    """Relative tolerance for a truncated power ``V_k Σ_k^κ U_kᵀ`` computed by ``route``.

    Errors are measured relative to ``‖J^κ‖·‖g‖`` (the size of the operator times the input,
    not ``‖d‖``, which may be small by cancellation).

    - ``svd``/``randomized`` (at full rank): backward error ``ε‖J‖`` of the SVD; the truncated
      power of the kept part is perturbed by about ``ε·cond_k`` relative (Wedin; the gap of
      ``GAP`` at the threshold keeps the kept subspace stable), times a small dimension factor.
    - ``gram`` in the working dtype: the Gram squares the condition number, eigenvalues carry an
      absolute error ``ε·σ_max²``, so the kept part is perturbed by ``ε·cond_k²`` (REFERENCE.md).
    - ``gram-float64``: as ``gram`` with ε of float64, plus one rounding of the result to the
      working dtype (``ε_w``) and the float32 products ``ε_w·cond_k``.
    The dimension factor is derived, not calibrated: forming a Gram entry is a dot product of
    length m (or n), error γ_m·σ₁²; the symmetric eigensolver's and the SVD's backward errors
    are c·n·ε‖·‖ (LAPACK; c a small constant); the products that apply the factors to ``g``
    add γ_m + γ_n.  All told ``DIM_C·(m + n)·model`` with ``DIM_C = 10`` for the constant c and
    the few products of each route.  (It replaced 30·sqrt(max(m, n)), fitted to a calibration
    run, which the soak profile beat on a 35 × 3 Gram case: 5.3e-14 against 3.9e-14.)
    """
    dim = DIM_C * sum(case.shape)
    model = _model(route, case.dtype, case.cond_k)
    return factor * dim * model


#: The constant of the rounding bounds of :func:`hig_rtol` (times m + n).
DIM_C = 10.0


def _model(route: str, dtype: str, c: float) -> float:
    e = eps(dtype)
    # half_inverse reports which Gram it formed: "kernel" (JJᵀ) or "normal" (JᵀJ)
    route = {"kernel": "gram", "normal": "gram", "kernel-float64": "gram-float64",
             "normal-float64": "gram-float64", "matrix-free": "randomized"}.get(route, route)
    if route in ("svd", "randomized"):
        return e * c
    if route == "gram":
        return e * c * c
    if route == "gram-float64":
        return eps("float64") * c * c + e * c
    raise ValueError(route)


def cond_limit(route: str, factor: float = 1.0, extra: float = 0.0,
               max_dim: int = 40) -> dict[str, float]:
    """Largest cond_k, by dtype, for which ``factor·cond_k^extra·hig_rtol(route)`` stays at or
    below :data:`MEANINGFUL` for matrices up to ``max_dim``: the cases a property with that
    tolerance can be tested on (pass as ``svd_cases(max_cond=...)``).  ``route`` "auto" and
    "gram" take the Gram's ε·cond_k² (the route's documented accuracy); cond_k ≥ 1 always."""
    out = {}
    for dtype in DTYPES:
        routes = ("svd",) if route in ("svd", "randomized", "matrix-free") else ("gram",)

        def tol(c, dtype=dtype, routes=routes):
            return max(factor * c ** extra * DIM_C * 2 * max_dim * _model(r, dtype, c)
                       for r in routes)

        lo, hi = 0.0, np.log10(MAX_COND_K[dtype])  # bisection on log10 cond_k
        if tol(10.0 ** hi) <= MEANINGFUL:
            out[dtype] = 10.0 ** hi
            continue
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if tol(10.0 ** mid) <= MEANINGFUL else (lo, mid)
        out[dtype] = max(10.0 ** lo, 1.0)
    return out


@dataclass
class SymCase:
    """A symmetric ``H = Q diag(lam) Qᵀ`` with controlled ``λ_min`` and a right-hand side."""

    backend: str
    dtype: str
    H: Any
    H64: np.ndarray
    lam: np.ndarray  # float64 eigenvalues of H64, ascending
    g: Any
    g64: np.ndarray
    kind: str
    seed: int = 0

    @property
    def n(self) -> int:
        return self.H64.shape[0]

    def vec(self, a: np.ndarray) -> Any:
        return to_backend(a, self.backend, self.dtype)


# Smallest |λ_min| / λ_max generated per dtype: Cholesky of a shifted matrix is reliable when
# its smallest eigenvalue is far above n·ε·‖H‖ (float32: 40·1.2e-7 ≈ 5e-6).
MIN_REL_EIG = {"float32": 1e-3, "float64": 1e-8}


@st.composite
def symmetric_cases(draw, *, kinds=("definite", "indefinite", "semidefinite", "negative"),
                    backend=None, dtype=None, max_n: int = 30, min_n: int = 1):
    """A :class:`SymCase`.

    ``definite``: λ_min ∈ [MIN_REL_EIG, 1]·λ_max > 0.  ``indefinite``: λ_min = −10^u·λ_max with
    u ∈ [log10 MIN_REL_EIG, 0], the rest spread over [λ_min, λ_max].  ``semidefinite``: some
    exact zeros, the rest positive.  ``negative``: all eigenvalues negative.  The overall scale
    is a power of two in [2^-10, 2^10].
    """
    # as in svd_cases: hypothesis draws the structure, a drawn seed the continuous rest
    lo_n = max(min_n, 2)
    n = draw(st.sampled_from(range(lo_n, max(max_n, 2) + 1)), label="n")
    n = min(n, max_n)  # (max_n = 1: a 1×1 matrix; indefinite needs n ≥ 2)
    backend = draw(st.sampled_from(BACKENDS), label="backend") if backend is None else backend
    dtype = draw(st.sampled_from(DTYPES), label="dtype") if dtype is None else dtype
    kind = draw(st.sampled_from(kinds), label="kind")
    lo = MIN_REL_EIG[dtype]
    u = draw(st.sampled_from(grid(np.log10(lo), 0.0)), label="log10 |λ_min|/λ_max")
    z = draw(st.sampled_from(range(1, n)), label="zeros") if (kind == "semidefinite" and n > 1) \
        else 1
    e2 = draw(st.sampled_from(range(-10, 11)), label="log2 scale")
    seed = draw(seeds, label="seed")
    rng = np.random.default_rng(seed)
    if kind == "definite":
        lam = np.concatenate([[1.0, 10.0**u], 10.0 ** rng.uniform(u, 0.0, max(n - 2, 0))])[:n]
    elif kind == "indefinite":
        lam = np.concatenate([[1.0, -(10.0**u)], rng.uniform(-(10.0**u), 1.0, max(n - 2, 0))])
    elif kind == "semidefinite":
        pos = 10.0 ** rng.uniform(u, 0.0, max(n - 1 - z, 0))
        lam = np.concatenate([[1.0], pos, np.zeros(z)])[:n]
    else:  # negative
        lam = -np.concatenate([[1.0, 10.0**u], 10.0 ** rng.uniform(u, 0.0, max(n - 2, 0))])[:n]
    c = 2.0 ** e2
    Q = random_orthogonal(rng, n, n)
    H_exact = c * (Q * lam[None, :]) @ Q.T
    H_exact = 0.5 * (H_exact + H_exact.T)
    H64 = rounded(H_exact, dtype)
    H64 = np.tril(H64) + np.tril(H64, -1).T  # exactly symmetric after rounding
    g64 = rounded(rng.standard_normal(n), dtype)
    return SymCase(backend, dtype, to_backend(H64, backend, dtype), H64,
                   np.linalg.eigvalsh(H64), to_backend(g64, backend, dtype), g64, kind, seed)


def pick(seed: int, options, salt: int = 0):
    """A uniform choice among ``options`` from a case's seed (salted per use).

    Used instead of ``st.sampled_from`` for routes, methods, exponents and the like, whose draws
    hypothesis biases towards the first option under the derandomized ci profile."""
    options = tuple(options)
    return options[int(np.random.default_rng((seed, 7919 + salt)).integers(len(options)))]


def rel_err(got: Any, want: np.ndarray, scale: float | None = None) -> float:
    """``‖got − want‖ / scale`` (``scale`` defaults to ``‖want‖``; a zero scale gives the
    absolute error)."""
    got = to_np(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, (got.shape, want.shape)
    s = np.linalg.norm(want) if scale is None else scale
    d = np.linalg.norm(got - want)
    return float(d / s) if s > 0 else float(d)
