"""Do the linear-algebra property tests catch a wrong answer?  (Not collected by pytest.)

Runs the linalg property files under each of three mutants of the library code and reports
how many tests fail; every mutant must make the suite fail.

    PYTHONPATH=. .venv/bin/python tests/mutation_check.py            # all mutants
    PYTHONPATH=. .venv/bin/python tests/mutation_check.py perturb    # one

Mutants (applied by monkeypatching, in a fresh subprocess each):
- ``perturb``: every result scaled by ``1 + 1e-6`` (a relative error 1e-6): the half-inverse
  routes (``_svd``, ``_gram``, ``_randomized``), the Gauss-Newton step (``_qr``, ``_lstsq``,
  CGLS) and the Cholesky solve (``_backend.cho_solve``, used by the Gauss-Newton "cholesky"
  method, ``regularized_cholesky_solve`` and the LM subproblem's Cholesky route).
- ``drop``: the smallest kept singular value dropped (its term left out): half-inverse
  (``_powers`` gives 0 for it) and the Gauss-Newton "lstsq" method.
- ``clamp``: discarded singular values clamped to the threshold instead of dropped: the
  half-inverse's dense routes (``σ ≤ thr`` enter as ``thr^κ``) and the Gauss-Newton "lstsq"
  method at μ = 0 (``σ ≤ cut`` enter as ``1/cut``).

The ``mutation`` hypothesis profile (tests/conftest.py: the ci examples, no shrinking) keeps a
run to about a minute per mutant.
"""

from __future__ import annotations

import importlib
import os
import pathlib
import subprocess
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
FILES = ["tests/test_linalg_half_inverse.py", "tests/test_linalg_gauss_newton.py",
         "tests/test_linalg_cholesky.py", "tests/test_lmpar.py"]
MUTANTS = ("none", "perturb", "drop", "clamp")
REL = 1e-6


def _scaled(f, idx=0):
    """``f`` with its result (or element ``idx`` of a tuple result) times 1 + REL."""

    def g(*a, **k):
        out = f(*a, **k)
        if out is None:
            return None
        if isinstance(out, tuple):
            return (out[0] * (1 + REL),) + tuple(out[1:]) if idx == 0 else out
        return out * (1 + REL)

    return g


def _apply(mutant: str, mp) -> None:
    from newtonkit import _backend as B

    GN, HI = _module("gauss_newton"), _module("half_inverse")
    if mutant == "perturb":
        for name in ("_svd", "_gram", "_randomized"):
            mp.setattr(HI, name, _scaled(getattr(HI, name)))
        mp.setattr(GN, "_qr", _scaled(GN._qr))
        mp.setattr(GN, "_lstsq", _scaled(GN._lstsq))
        mp.setattr(GN, "cgls", _scaled(GN.cgls))
        mp.setattr(B, "cho_solve", _scaled(B.cho_solve))
    elif mutant == "drop":
        def powers(s, exponent):
            p = s ** exponent
            xp = _ns(p)
            mask = xp.arange(p.shape[0], device=_dev(p)) == p.shape[0] - 1
            return xp.where(mask, xp.zeros_like(p), p)

        mp.setattr(HI, "_powers", powers)
        mp.setattr(GN, "_lstsq", _lstsq_mutant("drop"))
    elif mutant == "clamp":
        for name in ("_svd", "_gram"):
            mp.setattr(HI, name, _clamped(getattr(HI, name)))
        mp.setattr(GN, "_lstsq", _lstsq_mutant("clamp"))
    elif mutant != "none":
        raise ValueError(mutant)


def _module(name):
    """The module newtonkit.linalg.<name> (the package re-exports functions of the same name)."""
    return importlib.import_module(f"newtonkit.linalg.{name}")


def _ns(a):
    import array_api_compat

    return array_api_compat.array_namespace(a)


def _dev(a):
    import array_api_compat

    return array_api_compat.device(a)


def _clamped(route):
    """A half-inverse route that adds ``Σ_{σᵢ ≤ thr} vᵢ thr^κ uᵢᵀ g`` (the discarded values
    clamped to the threshold)."""

    def g(A, xp, gv, exponent, truncation, relative):
        d, info = route(A, xp, gv, exponent, truncation, relative)
        U, s, Vt = (np.asarray(x, dtype=np.float64) for x in
                    map(_to_np, xp.linalg.svd(A, full_matrices=False)))
        thr = float(info.threshold)
        low = s <= thr
        if thr > 0 and np.any(low):
            extra = Vt[low].T @ (thr ** exponent * (U[:, low].T @ _to_np(gv)))
            d = d + xp.asarray(extra, dtype=d.dtype, device=_dev(d))
        return d, info

    return g


def _lstsq_mutant(kind):
    original = _module("gauss_newton")._lstsq

    def f(xp, J, r, mu, diag):
        if mu and kind == "clamp":  # nothing is discarded with damping
            return original(xp, J, r, mu, diag)
        Jn, rn = _to_np(J), _to_np(r)
        if diag is not None and mu:
            sc = 1.0 / np.sqrt(_to_np(diag))
        else:
            sc = np.ones(Jn.shape[1])
        U, s, Vt = np.linalg.svd(Jn * sc[None, :], full_matrices=False)
        if mu:
            fct = s / (s * s + mu)
        else:
            cut = max(Jn.shape) * float(np.finfo(_np_dtype(J)).eps) * s[0]
            fct = np.where(s > cut, 1.0 / np.where(s > cut, s, 1.0),
                           1.0 / cut if kind == "clamp" else 0.0)
        if kind == "drop":
            kept = np.flatnonzero(fct != 0)
            if kept.size:
                fct[kept[-1]] = 0.0
        y = -(Vt.T @ (fct * (U.T @ rn))) * sc
        return xp.asarray(y, dtype=J.dtype, device=_dev(J))

    return f


def _to_np(x):
    from newtonkit import _backend as B

    return np.asarray(B.to_numpy(x), dtype=np.float64)


def _np_dtype(x):
    return np.float32 if "32" in str(x.dtype) else np.float64


class _Count:
    def __init__(self):
        self.failed, self.passed = set(), set()

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed.add(report.nodeid)
        elif report.passed and report.when == "call":
            self.passed.add(report.nodeid)


def _run_one(mutant: str) -> int:
    import pytest

    os.environ.setdefault("NEWTONKIT_HYPOTHESIS_PROFILE", "mutation")
    sys.path.insert(0, str(ROOT / "tests"))
    mp = pytest.MonkeyPatch()
    _apply(mutant, mp)
    count = _Count()
    pytest.main(["-q", "-p", "no:cacheprovider", "--no-header", "-o", "addopts=",
                 *[str(ROOT / f) for f in FILES]], plugins=[count])
    mp.undo()
    failed = count.failed
    print(f"RESULT {mutant} {len(failed)} {len(failed | count.passed)}")
    for t in sorted(failed):
        print(f"FAILED-TEST {t}")
    return 0


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        return _run_one(argv[1])
    wanted = argv or list(MUTANTS)
    rows, ok = [], True
    for mutant in wanted:
        out = subprocess.run([sys.executable, __file__, "--one", mutant], cwd=ROOT,
                             capture_output=True, text=True, env={**os.environ})
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if not line:
            print(out.stdout[-3000:], out.stderr[-3000:])
            return 2
        _, _, nfail, ntot = line[-1].split()
        names = [ln.split(maxsplit=1)[1] for ln in out.stdout.splitlines()
                 if ln.startswith("FAILED-TEST ")]
        rows.append((mutant, int(nfail), int(ntot), names))
        if (mutant == "none") != (int(nfail) == 0):
            ok = False
    print("| mutant | tests failing (of tests run) |")
    print("|---|---|")
    for mutant, nfail, ntot, _ in rows:
        print(f"| {mutant} | {nfail} of {ntot} |")
    for mutant, _, _, names in rows:
        if mutant != "none":
            print(f"\n{mutant}: " + ", ".join(n.split("/")[-1] for n in names))
    print("\nOK: every mutant fails the suite" if ok else
          "\nA MUTANT SURVIVED (or the unmutated suite failed)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
