r"""``check_derivatives``: a user's Jacobian, jvp, vjp, gradient and Hessian against the
function and against each other.

Two kinds of check:

- **Taylor remainders** (:mod:`._taylor`): each derivative against differences of the function
  itself along a few random directions ``v``: ``jac``/``jvp`` on ``F``; ``vjp`` on the scalar
  :math:`\varphi(x) = \langle w, F(x)\rangle`, whose derivative along ``v`` is
  :math:`\langle J^T w, v\rangle`; ``hess``/``hessp`` on the gradient :math:`G = \nabla f`, with
  ``H v`` as its derivative.  The symmetric remainder must fall as :math:`h^3` (slope 3; a wrong
  derivative gives slope 1; fail below 2).
- **Cross-checks**, exact up to rounding (bound :math:`\text{rtol}\cdot\|J\|\cdot` the norms of
  the vectors, :math:`\text{rtol} = 10\,\epsilon\,(m + n)` by default as in
  :func:`~newtonkit.testing.check_operator`, :math:`\|J\|` estimated from the products):
  ``jac`` against ``jvp`` and ``vjp``; ``jvp`` against ``vjp`` by the dot-product identity
  :math:`\langle w, Jv\rangle = \langle J^T w, v\rangle`; ``hess`` against ``hessp``; the
  Hessian's symmetry :math:`\langle Hv, u\rangle = \langle v, Hu\rangle`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from .. import _backend as B
from ..operators import LinearOperator
from . import _taylor as T
from ._operators import default_rtol, dot_product_check
from ._report import Check, Report

__all__ = ["check_derivatives"]

# attribute of a model/provider -> keyword it stands for
_PROVIDED = (("jacobian", "jac"), ("grad", "jac"), ("jvp", "jvp"), ("vjp", "vjp"),
             ("hessian", "hess"), ("hvp", "hessp"))


def _sources(fun: Any, given: dict[str, Any]) -> tuple[Callable, dict[str, Callable], set]:
    """The function, the derivatives to check and which of them the object provided:
    keywords first, then a model's or a provider's methods (``jacobian``/``grad`` → jac,
    ``hvp`` → hessp, ``hessian`` → hess)."""
    if callable(fun):
        f = fun
    elif callable(getattr(fun, "value", None)):  # a derivative provider (value, jvp, ...)
        f = fun.value
    else:
        raise TypeError(f"fun must be callable (or a provider with value(x)), got "
                        f"{type(fun).__name__}")
    out = {k: v for k, v in given.items() if v is not None}
    provided = set()
    for attr, key in _PROVIDED:
        method = getattr(fun, attr, None)
        if key not in out and callable(method) and not isinstance(fun, type):
            out[key] = method
            provided.add(key)
    for key, v in out.items():
        if not callable(v):
            raise TypeError(f"{key} must be callable, got {type(v).__name__}")
    return f, out, provided


def check_derivatives(fun: Any, x: Any, *, jac: Callable | None = None,
                      jvp: Callable | None = None, vjp: Callable | None = None,
                      hess: Callable | None = None, hessp: Callable | None = None,
                      directions: int = 3, h_max: float | None = None,
                      h_min: float | None = None, noise: float | None = None,
                      rtol: float | None = None, seed: int = 0,
                      raise_error: bool = True) -> Report:
    r"""Check derivatives of ``fun`` at ``x`` by Taylor remainders and against each other.

    Parameters
    ----------
    fun : callable or model
        ``fun(x) -> y`` (any shapes; a 0-d ``y`` is a scalar objective).  A forward model or
        derivative provider passes its own derivatives: its ``jacobian``/``grad``, ``jvp``,
        ``vjp``, ``hessian`` and ``hvp`` methods are checked where the keyword is not given
        (a provider without ``__call__`` is evaluated by its ``value``).
    x : array
        The point (NumPy, PyTorch, ... array of float32 or float64; not modified).
    jac : callable, optional
        ``jac(x)``: the Jacobian ``(y.size, x.size)``, or for a scalar ``fun`` the gradient
        (shape of ``x``), as in SciPy.
    jvp, vjp : callable, optional
        ``jvp(x, v) = J v`` (``v`` shaped as ``x``), ``vjp(x, w) = Jᵀ w`` (``w`` shaped as ``y``).
    hess, hessp : callable, optional
        Scalar ``fun`` only: ``hess(x)`` the ``(n, n)`` Hessian (array or LinearOperator),
        ``hessp(x, p) = ∇²f(x) p``.  Their Taylor test differentiates the gradient, from
        ``jac`` or ``vjp`` (one of them is needed).
    directions : int
        Random directions per Taylor test (each costs two evaluations per step); an error
        confined to a few entries hides from a direction that happens to be small there.
    h_max, h_min : float, optional
        Largest and smallest steps, relative to directions of norm :math:`\max(\|x\|,
        \sqrt{n})` (defaults :math:`2^{-4}` and :math:`\epsilon^{1/3}/4`; see
        :mod:`newtonkit.testing._taylor`).
    noise : float, optional
        Relative accuracy :math:`\eta` of ``fun``'s (and the gradient's) values, which sets the
        rounding floor of the remainders; default :math:`10\epsilon`.  Raise it for a function
        computed by an iterative solver.
    rtol : float, optional
        Relative tolerance of the cross-checks; default :math:`10\,\epsilon\,(m+n)`.
    seed : int
        Seed of the random directions.
    raise_error : bool
        Raise ``AssertionError`` with the report's text when a check fails (default); else
        return the report.

    Returns
    -------
    Report
        One Taylor check per derivative given (``"jac: Taylor"``, ``"jvp: Taylor"``, ...: the
        smallest slope over the directions, against 2) and the cross-checks that the given
        derivatives allow (``"jvp vs jac"``, ``"vjp vs jac"``, ``"jvp/vjp dot-product"``,
        ``"hessp vs hess"``, ``"Hessian symmetry"``: error against its rounding bound).

    Raises
    ------
    ValueError
        ``x`` empty or not finite; ``fun(x)`` not finite; a derivative of the wrong shape;
        ``hess``/``hessp`` for a vector-valued ``fun``, or without a gradient.
    TypeError
        ``x`` not a real floating array; an argument that should be callable is not.

    Examples
    --------
    >>> import numpy as np
    >>> from newtonkit.testing import check_derivatives
    >>> A = np.array([[1.0, 2.0], [0.5, -1.0], [0.0, 3.0]])
    >>> fun = lambda x: np.tanh(A @ x)
    >>> jac = lambda x: (1 - np.tanh(A @ x) ** 2)[:, None] * A
    >>> check_derivatives(fun, np.array([0.3, -0.2]), jac=jac).ok
    True
    """
    f, src, provided = _sources(fun, dict(jac=jac, jvp=jvp, vjp=vjp, hess=hess, hessp=hessp))
    xp = B.array_namespace(x)
    B.check_real_float(xp, x, "x")
    shape, n = tuple(x.shape), math.prod(x.shape)
    if n == 0:
        raise ValueError(f"x is empty (shape {shape})")
    if not B.all_finite(xp, x):
        raise ValueError("x has non-finite entries (nan or inf)")
    x0 = xp.reshape(x, (-1,))
    eps = float(xp.finfo(x.dtype).eps)
    noise = 10.0 * eps if noise is None else float(noise)
    if int(directions) < 1:
        raise ValueError(f"directions must be a positive integer, got {directions!r}")

    def shaped(z: Any) -> Any:
        return xp.reshape(z, shape)

    def flat(out: Any, what: str, size: int | None = None) -> Any:
        if not hasattr(out, "shape"):
            try:
                out = xp.asarray(out, dtype=x.dtype, device=B.device(x))
            except (TypeError, ValueError):
                raise TypeError(f"{what} returned {type(out).__name__}, not an array") from None
        if size is not None and math.prod(out.shape) != size:
            raise ValueError(f"{what} returned shape {tuple(out.shape)}: {size} entries "
                             f"expected")
        return xp.reshape(xp.asarray(out), (-1,))

    y0 = f(shaped(x0))
    y_shape = tuple(getattr(y0, "shape", ()))
    F0 = flat(y0, "fun(x)")
    if not B.all_finite(xp, F0):
        raise ValueError("fun(x) is not finite at x (nan or inf): derivatives cannot be "
                         "checked there")
    m = F0.shape[0]
    scalar = len(y_shape) == 0
    if not scalar:  # a provider's hvp/hessian apply to scalar functions only
        for key in provided & {"hess", "hessp"}:
            del src[key]
    if ("hess" in src or "hessp" in src) and not scalar:
        raise ValueError(f"hess/hessp need a scalar fun; fun(x) has shape {y_shape}")

    def F(z: Any) -> Any:
        return flat(f(shaped(z)), "fun")

    rng_like = x0
    V = [B.standard_normal(xp, (n,), x.dtype, rng_like, seed + 2 * k) for k in range(directions)]
    scale = max(B.norm(xp, x0), math.sqrt(n))
    V = [v * (scale / B.norm(xp, v)) for v in V]
    W = [xp.astype(B.standard_normal(xp, (m,), x.dtype, rng_like, seed + 2 * k + 1), F0.dtype)
         for k in range(directions)]

    # -- first derivatives: the products each source gives ----------------------------------
    Jv: dict[str, list[Any]] = {}
    Jtw: dict[str, list[Any]] = {}
    if "jac" in src:
        J = src["jac"](shaped(x0))
        if isinstance(J, LinearOperator):
            Jv["jac"] = [J.matvec(v) for v in V]
            Jtw["jac"] = [J.rmatvec(w) for w in W]
        else:
            J = xp.reshape(flat(J, "jac(x)", m * n), (m, n))
            Jv["jac"] = [J @ v for v in V]
            Jtw["jac"] = [xp.matrix_transpose(J) @ w for w in W]
    if "jvp" in src:
        Jv["jvp"] = [flat(src["jvp"](shaped(x0), shaped(v)), "jvp(x, v)", m) for v in V]
    if "vjp" in src:
        Jtw["vjp"] = [flat(src["vjp"](shaped(x0), xp.reshape(w, y_shape)), "vjp(x, w)", n)
                      for w in W]
    def finite(name: str, products: list[Any]) -> None:
        """A derivative with a nan or inf product fails outright (the Taylor test of such a
        product resolves no slope, and a check that resolves nothing passes)."""
        bad = sum(not B.all_finite(xp, a) for a in products)
        if bad:
            report.checks.append(Check(f"{name}: finite", float(bad), 0.0, passed=False,
                                       detail=f"{bad} of {len(products)} products have nan "
                                              f"or inf entries (fun(x) is finite)"))

    ratios = [B.norm(xp, a) / B.norm(xp, v) for a, v in
              ((a, v) for prods in Jv.values() for a, v in zip(prods, V, strict=True))]
    ratios += [B.norm(xp, a) / B.norm(xp, w) for a, w in
               ((a, w) for prods in Jtw.values() for a, w in zip(prods, W, strict=True))]
    norm_J = max([r for r in ratios if math.isfinite(r)], default=0.0)
    tol = default_rtol(eps, m, n) if rtol is None else float(rtol)
    report = Report(f"check_derivatives at x of shape {shape} ({B.backend_name(xp)} "
                    f"{x.dtype}), fun(x) of shape {y_shape}; {directions} directions, noise = "
                    f"{noise:.2g}, rtol = {tol:.2g}, ‖J‖ ≈ {norm_J:.3g}")
    hs = T.steps(eps, h_max, h_min)
    for kind, products in (("J v", Jv), ("Jᵀ w", Jtw)):
        for name, prods in products.items():
            finite(name if name != "jac" else f"jac ({kind})", prods)

    def taylor(name: str, G: Callable, derivs: list[Any], norm_D: float,
               values: list[dict], project: list[Any] | None = None) -> None:
        slopes, texts = [], []
        for k, v in enumerate(V):
            w = None if project is None else project[k]
            d = derivs[k]
            if not (B.all_finite(xp, d) if hasattr(d, "shape") else math.isfinite(d)):
                slopes.append(math.nan)  # (failed by finite() already)
                texts.append(f"direction {k}: the derivative is not finite")
                continue
            r = T.remainders(G, xp, x0, v, d, hs, noise, norm_D, values[k], w, tol)
            s, text = r.describe()
            slopes.append(s)
            texts.append(f"direction {k}: {text}")
        resolved = [s for s in slopes if not math.isnan(s)]
        report.checks.append(Check(
            f"{name}: Taylor", min(resolved) if resolved else math.nan, T.THRESHOLD,
            relation=">=",
            detail="symmetric remainder ‖F(x+hv) − F(x−hv) − 2h·(derivative)‖/2 should fall "
                   "as h³ (slope 3; a wrong derivative gives 1)\n       " +
                   "\n       ".join(texts),
            passed=True if not resolved else None))

    values_F: list[dict] = [{} for _ in V]
    for name in ("jac", "jvp"):
        if name in Jv:
            taylor(name, F, Jv[name], norm_J, values_F)
    if "vjp" in Jtw:
        dphi = [B.vdot(xp, a, xp.astype(v, a.dtype))
                for a, v in zip(Jtw["vjp"], V, strict=True)]
        taylor("vjp", F, dphi, norm_J, values_F, project=W)

    # -- cross-checks of first derivatives ------------------------------------------------------
    def compare(name: str, got: list[Any], want: list[Any], vecs: list[Any], bound: float,
                what: str) -> None:
        errs = [B.norm(xp, a - b) / B.norm(xp, c) for a, b, c in zip(got, want, vecs, strict=True)]
        err = max(e if math.isfinite(e) else math.inf for e in errs)
        report.checks.append(Check(name, err, bound, detail=what,
                                   passed=None if math.isfinite(bound) else False))

    if "jac" in Jv and "jvp" in Jv:
        compare("jvp vs jac", Jv["jvp"], Jv["jac"], V, tol * norm_J, "max ‖jvp(x,v) − J v‖/‖v‖")
    if "jac" in Jtw and "vjp" in Jtw:
        compare("vjp vs jac", Jtw["vjp"], Jtw["jac"], W, tol * norm_J,
                "max ‖vjp(x,w) − Jᵀ w‖/‖w‖")
    jv_src = "jvp" if "jvp" in Jv else "jac" if "jac" in Jv else None
    jtw_src = "vjp" if "vjp" in Jtw else None
    if jv_src is not None and jtw_src is not None:
        stack = xp.stack
        report.checks.append(dot_product_check(
            xp, stack(V, axis=1), stack(Jv[jv_src], axis=1), stack(W, axis=1),
            stack(Jtw[jtw_src], axis=1), tol * norm_J, name=f"{jv_src}/{jtw_src} dot-product"))

    # -- second derivatives -----------------------------------------------------------------
    if "hess" in src or "hessp" in src:
        if "jac" in src:
            def grad(z: Any) -> Any:
                return flat(src["jac"](shaped(z)), "jac (the gradient)", n)
        elif "vjp" in src:
            one = xp.ones((), dtype=F0.dtype, device=B.device(x))

            def grad(z: Any) -> Any:
                return flat(src["vjp"](shaped(z), one), "vjp(x, 1) (the gradient)", n)
        else:
            raise ValueError("checking hess/hessp differentiates the gradient: pass jac= (the "
                             "gradient) or vjp= as well")
        U = [B.standard_normal(xp, (n,), x.dtype, rng_like, seed + 1000 + k)
             for k in range(directions)]
        Hv: dict[str, list[Any]] = {}
        Hu: dict[str, list[Any]] = {}
        if "hess" in src:
            H = src["hess"](shaped(x0))
            if isinstance(H, LinearOperator):
                apply = H.matvec
            else:
                H = xp.reshape(flat(H, "hess(x)", n * n), (n, n))

                def apply(p: Any) -> Any:
                    return H @ p
            Hv["hess"], Hu["hess"] = [apply(v) for v in V], [apply(u) for u in U]
        if "hessp" in src:
            def hp(p: Any) -> Any:
                return flat(src["hessp"](shaped(x0), shaped(p)), "hessp(x, p)", n)
            Hv["hessp"], Hu["hessp"] = [hp(v) for v in V], [hp(u) for u in U]
        for name in Hv:
            finite(name, Hv[name] + Hu[name])
        norm_H = max((B.norm(xp, a) / B.norm(xp, v) for prods in Hv.values()
                      for a, v in zip(prods, V, strict=True)), default=0.0)
        values_G: list[dict] = [{} for _ in V]
        for name in ("hess", "hessp"):
            if name in Hv:
                taylor(name, grad, Hv[name], norm_H, values_G)
        if "hess" in Hv and "hessp" in Hv:
            compare("hessp vs hess", Hv["hessp"], Hv["hess"], V, tol * norm_H,
                    "max ‖hessp(x,v) − H v‖/‖v‖")
        name = "hessp" if "hessp" in Hv else "hess"
        stack = xp.stack
        report.checks.append(dot_product_check(
            xp, stack(V, axis=1), stack(Hv[name], axis=1), stack(U, axis=1),
            stack(Hu[name], axis=1), tol * norm_H, name=f"{name}: Hessian symmetry"))
    if not report.checks:
        raise ValueError("nothing to check: pass jac, jvp, vjp, hess or hessp (or a model or "
                         "provider with such methods)")
    return report.finish(raise_error)
