"""Does ``success=True`` hold up?  A search for false successes (not collected by pytest).

Runs newtonkit's least-squares and Newton methods on the Moré-Garbow-Hillstrom problems with
n ≤ 10 (``benchmarks/nls_problems.py``) from the standard start and from random starts, and
flags every run that reports success at a point an independent solver can still improve:

    PYTHONPATH=. .venv/bin/python tests/stress_success.py                 # every suite
    PYTHONPATH=. .venv/bin/python tests/stress_success.py bounds --seed 1 --starts 5

Suites (the methods each runs):

- ``plain``: lm, lm with 2-point differences, gn, hig, trf in a wide box, batched lm and gn;
- ``scaled``: r(x) → c·r(x/s), values and variables far from 1 (c from 1e-150 to 1e20, s from
  1e-100 to 1e12): lm (also 2-point and unscaled), gn, Newton;
- ``bounds``: random boxes (sides infinite at random): trf (analytic and 2-point), lm and hig
  with bounds, the batched projected Gauss-Newton;
- ``newton``: Newton on ½‖r‖² (gradient callable, 3-point, batched);
- ``robust``: every built-in robust loss, ``f_scale`` 0.1, 1 or 10: lm, trf, gn;
- ``float32``: the problems in float32 (residuals and Jacobians computed in float64 and
  rounded): lm (also 2-point), gn, hig, trf in a wide box, Newton, batched lm;
- ``multistart``: sums of two and three exponentials from random starts (bench_batch.py's
  multistart problem), batched lm, gn, hig and hig with a line search.

The oracle, from the returned point with tolerances 1e-15: SciPy's ``least_squares`` (``lm``;
``trf`` with the same bounds or loss), or BFGS for Newton.  A run is flagged where it lowers
the cost by more than 1e-6 of it and by more than 1e-12 of the cost at the start (float32:
1e-3 and 1e-6, about 10⁴ and 10 of its ε, since float32 residuals round at ε·|y|).  A flag is a
lead, not a verdict: a trust-region oracle can jump to another basin of a non-convex cost
(the redescending losses), and some stops are the documented semantics of a test (Newton's
absolute gtol; xtol in unscaled x as SciPy's).  docs/DEVELOPING.md lists what the runs of
2026-12-07 found.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import warnings

import numpy as np
from scipy.optimize import least_squares, minimize

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import nls_problems  # noqa: E402

import newtonkit as nk  # noqa: E402

LOSSES = ("soft_l1", "huber", "cauchy", "arctan")


def cost(p, x):
    r = p.residual(x)
    return 0.5 * float(r @ r)


def improvable(p, x, bounds=None, loss="linear", f_scale=1.0):
    """The cost SciPy reaches from ``x`` (tight tolerances), or ``None`` where it raises."""
    kw = dict(xtol=1e-15, ftol=1e-15, gtol=1e-15, max_nfev=3000)
    try:
        if bounds is None and loss == "linear":
            return least_squares(p.residual, x, jac=p.jacobian, method="lm", **kw).cost
        lb, ub = bounds if bounds is not None else (-np.inf, np.inf)
        x = np.clip(x, np.nextafter(lb, np.inf), np.nextafter(ub, -np.inf))
        return least_squares(p.residual, x, jac=p.jacobian, method="trf", bounds=(lb, ub),
                             loss=loss, f_scale=f_scale, **kw).cost
    except ValueError:
        return None


def bfgs_cost(p, x):
    """The cost BFGS reaches on ½‖r‖² from ``x`` (the oracle of Newton's runs)."""
    return minimize(lambda z: cost(p, z), x, jac=lambda z: p.jacobian(z).T @ p.residual(z),
                    method="BFGS", options={"gtol": 1e-14, "maxiter": 5000}).fun


def robust_cost(p, x, loss, f_scale):
    """SciPy's robust cost at ``x`` (one evaluation)."""
    return least_squares(p.residual, x, jac=p.jacobian, loss=loss, f_scale=f_scale,
                         max_nfev=1).cost


class Stress:
    def __init__(self, seed: int, starts: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.starts = starts
        self.runs = self.flags = 0
        self.problems = [p for p in nls_problems.all_problems() if p.n <= 10]

    def points(self, p, spread=0.5):
        x0 = np.asarray(p.x0, float)
        scale = np.maximum(np.abs(x0), 1.0)
        S = [x0] + [x0 + spread * scale * self.rng.standard_normal(p.n)
                    for _ in range(self.starts - 1)]
        return [s for s in S if np.all(np.isfinite(p.residual(s)))]

    def run(self, p, label, s, fun, *args, bounds=None, loss="linear", f_scale=1.0,
            newton=False, **kwargs):
        """``fun(*args, **kwargs)`` (a ``minimize``/``least_squares`` call; ``bounds`` and a
        robust ``loss`` go to it and to the oracle), then the check."""
        if bounds is not None:
            kwargs["bounds"] = bounds
        if loss != "linear":
            kwargs.update(loss=loss, f_scale=f_scale)
        try:
            res = fun(*args, **kwargs)
        except Exception:  # a refusal or a fault: not a success
            return
        self.check(p, label, s, (np.asarray(res.x), bool(res.success), res.message),
                   bounds=bounds, loss=loss, f_scale=f_scale, newton=newton)

    def check(self, p, label, s, out, bounds=None, loss="linear", f_scale=1.0, newton=False,
              rel=(1e-6, 1e-12)):
        """Flag a success at ``out = (x, success, message)`` that the oracle improves by more
        than ``rel[0]`` of the cost there and ``rel[1]`` of the cost at the start."""
        self.runs += 1
        x, ok, msg = out
        x = np.asarray(x, dtype=np.float64)
        if not ok or not np.all(np.isfinite(x)):
            return
        if bounds is not None and (np.any(x < bounds[0]) or np.any(x > bounds[1])):
            self.flags += 1
            print(f"FLAG {p.name} {label}: outside the box", flush=True)
            return
        robust = loss != "linear"
        f, f_start = ((robust_cost(p, x, loss, f_scale), robust_cost(p, s, loss, f_scale))
                      if robust else (cost(p, x), cost(p, s)))
        best = bfgs_cost(p, x) if newton else improvable(p, x, bounds, loss, f_scale)
        if best is None:
            return
        dec = f - best
        if dec > rel[0] * abs(f) and dec > rel[1] * abs(f_start):
            self.flags += 1
            print(f"FLAG {p.name:24s} {label:14s} f={f:.6g} (start {f_start:.3g}) "
                  f"oracle lowers it by {dec:.2e}: {msg}\n     from {s.tolist()!r}", flush=True)

    def batched(self, p, label, S, bounds=None, **kw):
        def F(X):
            return np.stack([p.residual(x) for x in X])

        def J(X):
            return np.stack([p.jacobian(x) for x in X])

        res = nk.minimize(F, np.array(S), jac=J, batch=True, bounds=bounds, **kw)
        self.check_rows(p, label, S, res, bounds=bounds)

    def check_rows(self, p, label, S, res, **kw):
        """:meth:`check` on each row of the batched result ``res`` from the starts ``S``."""
        for i, s in enumerate(S):
            out = (np.asarray(res.x[i]), bool(res.success[i]), res.message_of(i))
            self.check(p, label, np.asarray(s, dtype=np.float64), out, **kw)

    def plain(self):
        for p in self.problems:
            S = self.points(p)
            for s in S:
                wide = 1e3 * np.maximum(np.abs(s), 1)
                box = (s - wide, s + wide)
                for label, kw in (("lm", dict(method="lm", jac=p.jacobian)),
                                  ("lm-2pt", dict(method="lm", jac="2-point")),
                                  ("gn", dict(method="gn", jac=p.jacobian)),
                                  ("hig", dict(method="hig", jac=p.jacobian))):
                    self.run(p, label, s, nk.minimize, p.residual, s.copy(), **kw)
                self.run(p, "trf-wide", s, nk.minimize, p.residual, s.copy(), method="lm",
                         jac=p.jacobian, bounds=box)
            for method in ("lm", "gn"):
                self.batched(p, f"{method}-batch", S, method=method)

    def scaled(self):
        pairs = ((1e-150, 1.0), (1e150, 1.0), (1e-20, 1.0), (1.0, 1e-12), (1.0, 1e12),
                 (1e-100, 1e-100), (1e20, 1e8))
        for p in self.problems:
            for c, sx in pairs:
                u0 = np.asarray(p.x0, float) * (1 + 0.1 * self.rng.standard_normal(p.n))
                if np.all(np.isfinite(p.residual(u0))):
                    self._scaled(p, c, sx, u0)

    def _scaled(self, p, c, sx, u0):
        """The runs on r(x) = c·r_p(x/sx) from x = sx·u0, judged on the unscaled problem."""
        def r(x):
            return c * p.residual(x / sx)

        def J(x):
            return (c / sx) * p.jacobian(x / sx)

        def f(x):
            return 0.5 * float(r(x) @ r(x))

        def g(x):
            return J(x).T @ r(x)

        runs = {"lm": (r, dict(method="lm", jac=J)),
                "lm-2pt": (r, dict(method="lm", jac="2-point")),
                "lm-noscale": (r, dict(method="lm", jac=J, options={"scaling": False})),
                "gn": (r, dict(method="gn", jac=J)),
                "newton": (f, dict(method="newton", jac=g))}
        for label, (fun, kw) in runs.items():
            try:
                res = nk.minimize(fun, sx * u0, **kw)
            except Exception:
                continue
            self.check(p, f"{label} c={c:.0e} s={sx:.0e}", u0,
                       (np.asarray(res.x) / sx, bool(res.success), res.message))

    def bounds(self):
        for p in self.problems:
            for s in self.points(p, spread=0.3):
                scale = np.maximum(np.abs(s), 1.0)
                lb = s - scale * self.rng.uniform(0.05, 2.0, p.n)
                ub = s + scale * self.rng.uniform(0.05, 2.0, p.n)
                lb[self.rng.random(p.n) < 0.3] = -np.inf
                ub[self.rng.random(p.n) < 0.3] = np.inf
                box = (lb, ub)
                self.run(p, "trf", s, nk.least_squares, p.residual, s, jac=p.jacobian,
                         bounds=box, method="trf")
                self.run(p, "trf-2pt", s, nk.least_squares, p.residual, s, bounds=box,
                         method="trf")
                for method in ("lm", "hig"):
                    self.run(p, f"{method}-bounds", s, nk.minimize, p.residual, s.copy(),
                             method=method, jac=p.jacobian, bounds=box)
                self.batched(p, "gn-batch-bounds", [s], bounds=box, method="gn")

    def newton(self):
        for p in self.problems:
            S = self.points(p)

            def f(x, p=p):
                return cost(p, x)

            def g(x, p=p):
                return p.jacobian(x).T @ p.residual(x)

            for s in S:
                for label, jac in (("newton", g), ("newton-3pt", "3-point")):
                    self.run(p, label, s, nk.minimize, f, s.copy(), method="newton", jac=jac,
                             newton=True)
            res = nk.minimize(lambda X, f=f: np.array([f(x) for x in X]), np.array(S),
                              method="newton", jac=lambda X, g=g: np.stack([g(x) for x in X]),
                              batch=True)
            self.check_rows(p, "newton-batch", S, res, newton=True)

    def robust(self):
        for p in self.problems:
            if p.m <= p.n:
                continue
            for s in self.points(p, spread=0.3)[:3]:
                for loss in LOSSES:
                    fs = float(self.rng.choice([0.1, 1.0, 10.0]))
                    for method in ("lm", "trf", "gn"):
                        self.run(p, f"{method} {loss} C={fs:g}", s, nk.least_squares,
                                 p.residual, s, jac=p.jacobian, method=method, loss=loss,
                                 f_scale=fs)

    def float32(self):
        rel = (1e-3, 1e-6)
        for p in self.problems:
            def r(x, p=p):
                return p.residual(x.astype(np.float64)).astype(np.float32)

            def J(x, p=p):
                return p.jacobian(x.astype(np.float64)).astype(np.float32)

            def f(x):
                return np.float32(0.5 * np.sum(r(x).astype(np.float64) ** 2))

            def g(x):
                return J(x).T @ r(x)

            S = [s.astype(np.float32) for s in self.points(p)]
            S = [s for s in S if np.isfinite(np.sum(np.square(r(s))))]  # (f in float32)
            for s in S:
                s64 = s.astype(np.float64)
                wide = 1e3 * np.maximum(np.abs(s), 1)
                for label, fun, kw in (("lm", r, dict(method="lm", jac=J)),
                                       ("lm-2pt", r, dict(method="lm", jac="2-point")),
                                       ("gn", r, dict(method="gn", jac=J)),
                                       ("hig", r, dict(method="hig", jac=J)),
                                       ("trf-wide", r, dict(method="lm", jac=J,
                                                            bounds=(s - wide, s + wide))),
                                       ("newton", f, dict(method="newton", jac=g))):
                    try:
                        res = nk.minimize(fun, s.copy(), **kw)
                    except Exception:
                        continue
                    self.check(p, f"f32 {label}", s64, (res.x, bool(res.success),
                                                        res.message),
                               newton=label == "newton", rel=rel)
            if S:
                res = nk.minimize(lambda X: np.stack([r(x) for x in X]), np.array(S),
                                  jac=lambda X: np.stack([J(x) for x in X]), batch=True,
                                  method="lm")
                self.check_rows(p, "f32 lm-batch", S, res, rel=rel)


    def multistart(self):
        """Batched lm, gn and hig from 25 random starts per ``--starts`` on sums of two and
        three exponentials (bench_batch.py's multistart problem and its three-term kin):
        decay rates that run away leave exactly zero columns, and huge cancelling amplitudes
        plateaus, where the change tests are easily fooled."""
        t = np.linspace(0.0, 6.0, 60)
        noise = 0.01 * np.random.default_rng(1).standard_normal(t.size)
        for terms in (((1.0, 2.5), (0.6, 0.3)), ((1.0, 4.0), (0.8, 1.0), (0.4, 0.2))):
            p = _exponential_sum(t, sum(a * np.exp(-b * t) for a, b in terms) + noise,
                                 len(terms))
            S = np.empty((25 * self.starts, p.n))
            S[:, 0::2] = self.rng.uniform(-2.0, 2.0, (S.shape[0], p.n // 2))
            S[:, 1::2] = 10.0 ** self.rng.uniform(-2.0, 1.0, (S.shape[0], p.n // 2))
            for label, kw in (("lm", dict(method="lm")), ("gn", dict(method="gn")),
                              ("hig", dict(method="hig")),
                              ("hig-ls", dict(method="hig", options={"line_search": True}))):
                res = nk.minimize(p.batch_residual, S, jac=p.batch_jacobian, batch=True, **kw)
                self.check_rows(p, f"{label}-multi", list(S), res)


class _exponential_sum:  # noqa: N801  (an NLSProblem's duck: name, n, residual, jacobian)
    """r(x) = Σ_k x_{2k} exp(−x_{2k+1} t) − y, with batched forms for ``batch=True``."""

    def __init__(self, t, y, k):
        self.t, self.y, self.n = t, y, 2 * k
        self.name = f"exp_sum_{k}"

    def batch_residual(self, X):
        return np.einsum("bk,bkm->bm", X[:, 0::2], np.exp(-X[:, 1::2, None] * self.t)) - self.y

    def batch_jacobian(self, X):
        E = np.exp(-X[:, 1::2, None] * self.t)  # (B, k, m)
        J = np.empty((X.shape[0], self.t.size, self.n))
        J[:, :, 0::2] = E.transpose(0, 2, 1)
        J[:, :, 1::2] = (-X[:, 0::2, None] * self.t * E).transpose(0, 2, 1)
        return J

    def residual(self, x):
        return self.batch_residual(np.asarray(x, dtype=np.float64)[None])[0]

    def jacobian(self, x):
        return self.batch_jacobian(np.asarray(x, dtype=np.float64)[None])[0]


def main(argv=None):
    suites = ("plain", "scaled", "bounds", "newton", "robust", "float32", "multistart")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("suite", nargs="*", help=f"any of {', '.join(suites)} (default: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--starts", type=int, default=6, help="start points per problem")
    args = ap.parse_args(argv)
    unknown = sorted(set(args.suite) - set(suites))
    if unknown:
        ap.error(f"unknown suite(s) {unknown}; choose from {', '.join(suites)}")
    warnings.simplefilter("ignore")
    np.seterr(all="ignore")
    st = Stress(args.seed, args.starts)
    for name in args.suite or suites:
        before = (st.runs, st.flags)
        getattr(st, name)()
        print(f"{name}: {st.runs - before[0]} runs, {st.flags - before[1]} flagged", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
