r"""A scalar objective :math:`f(x)` with its gradient and Hessian, on flat vectors.

Derivatives come from, in order: what the user passes (``jac``, ``jac=True``, ``hess``,
``hessp``, as in ``scipy.optimize.minimize``); the forward model of a :class:`Composite`
(:math:`\nabla f = J^T \partial L/\partial y` by ``vjp`` or ``jacobian``); the autodiff
provider registered for the backend; finite differences (with a
:class:`FiniteDifferenceWarning`; :mod:`._fd` for the steps).  A difference Hessian is dense
``(n, n)``, or, when asked for ``matrix_free``, an operator whose products are differences of
gradients along the vector (:func:`._fd.fd_hvp`): nothing of size ``n²`` is formed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import _backend as B
from ..operators import HessianOperator, aslinearoperator
from ._common import FD_SCHEMES, Counters, flat, is_array, matrix, scalar
from ._composite import Composite
from ._fd import (
    RICHARDSON_SHRINK,
    difference_steps,
    fd_hessian_from_grad,
    fd_hvp,
    fd_jacobian,
    forward_difference_bias,
    gradient_accuracy,
    gradient_error_bound,
    output_accuracy,
    richardson,
)
from ._registry import get_autodiff

__all__ = ["ScalarProblem"]


class ScalarProblem(Counters):
    """``f``, ``∇f`` and ``∇²f`` of a user objective at flat points ``x`` of shape ``(n,)``.

    ``notes`` lists the finite-difference fallbacks in use (the driver turns them into
    warnings).  ``value``/``value_and_grad`` return the value as a Python float.
    """

    kind = "objective"

    def __init__(self, fun: Callable, x0: Any, shape: tuple[int, ...], args: tuple = (),
                 jac: Any = None, hess: Any = None, hessp: Callable | None = None) -> None:
        super().__init__()
        self.fun, self.args, self.shape = fun, tuple(args), tuple(shape)
        self.xp = B.array_namespace(x0)
        self.dtype, self.n = x0.dtype, x0.shape[0]
        self.notes: list[str] = []
        self._cache: tuple[Any, float, Any] | None = None
        if not (jac is None or jac is True or callable(jac) or jac in FD_SCHEMES):
            raise ValueError(f"jac must be None, True, a callable or one of {FD_SCHEMES}, got "
                             f"{jac!r}")
        if not (hess is None or callable(hess) or isinstance(hess, str) and hess in FD_SCHEMES):
            raise ValueError(f"hess must be None, a callable or one of {FD_SCHEMES}, got {hess!r}")
        if hessp is not None and not callable(hessp):
            raise ValueError(f"hessp must be a callable hessp(x, p, *args), got {hessp!r}")
        if hess is not None and hessp is not None:
            raise ValueError("pass either hess or hessp, not both")
        self.jac, self.hess, self.hessp = jac, hess, hessp
        self._provider = None
        model_grad = (isinstance(fun, Composite) and jac is None and
                      (callable(getattr(fun.model, "vjp", None)) or
                       callable(getattr(fun.model, "jacobian", None))))
        self._grad_mode = ("true" if jac is True else "callable" if callable(jac) else
                           "fd" if jac in FD_SCHEMES else "model" if model_grad else None)
        need_ad = self._grad_mode is None or (hess is None and hessp is None)
        if need_ad:
            factory = get_autodiff(self.xp)
            if factory is not None:
                self._provider = factory(self._user_fun, self.shape, ())
        if self._grad_mode is None:
            if self._provider is not None:
                self._grad_mode = "autodiff"
            else:
                self._grad_mode = "fd"
                self.jac = "3-point"
                self.notes.append(
                    f"no gradient given (jac=None) and no autodiff provider for "
                    f"{B.backend_name(self.xp)} arrays: using central finite differences "
                    f"(2·n = {2 * self.n} evaluations of fun per gradient); pass jac= for speed "
                    f"and accuracy")
        if hess is not None:
            self._hess_mode = "callable" if callable(hess) else "fd"
        elif hessp is not None:
            self._hess_mode = "hessp"
        elif self._provider is not None:
            self._hess_mode = "autodiff"
        else:
            self._hess_mode = "fd"
            self.notes.append(
                f"no Hessian given (hess=None, hessp=None) and no autodiff provider for "
                f"{B.backend_name(self.xp)} arrays: using forward differences of the gradient "
                f"({self.n} gradients per Hessian, one per product with linear_solver='cg'); "
                f"pass hess= or hessp=")

    # -- evaluation ----------------------------------------------------------------------------
    def _user_fun(self, xs: Any, *extra: Any) -> Any:
        self.count_fev()  # the autodiff provider's calls of fun
        return self.fun(xs, *self.args)

    def _shaped(self, x: Any) -> Any:
        return self.xp.reshape(x, self.shape)

    def _raw(self, x: Any) -> Any:
        self.count_fev()
        out = self.fun(self._shaped(x), *self.args)
        if self.accuracy is None:  # (f, or (f, g) with jac=True)
            first = out[0] if isinstance(out, tuple) and out else out
            self.accuracy = output_accuracy(float(self.xp.finfo(self.dtype).eps), first)
        return out

    def value(self, x: Any) -> float:
        """:math:`f(x)` (``nan`` or ``inf`` are returned, not raised)."""
        if self._cache is not None and self._cache[0] is x:
            return self._cache[1]
        if self._grad_mode == "true":
            return self.value_and_grad(x)[0]
        if self._grad_mode == "autodiff":
            return scalar(self._provider.value(x), "fun")
        return scalar(self._raw(x), "fun")

    def value_and_grad(self, x: Any) -> tuple[float, Any]:
        """:math:`(f(x), \\nabla f(x))`, the gradient flat on the backend of ``x``."""
        if self._cache is not None and self._cache[0] is x and self._cache[2] is not None:
            return self._cache[1], self._cache[2]
        xp, mode = self.xp, self._grad_mode
        if mode == "true":
            out = self._raw(x)
            if not (isinstance(out, tuple) and len(out) == 2):
                raise ValueError("with jac=True, fun must return (f, grad)")
            self.njev += 1
            f, g = scalar(out[0], "fun"), out[1]
        elif mode == "autodiff":
            self.njev += 1
            f, g = self._provider.value_and_grad(x)
            f = scalar(f, "fun")
        elif mode == "model":
            model, loss = self.fun.model, self.fun.loss
            self.count_fev()
            xs = self._shaped(x)
            y = model(xs)
            f = scalar(loss.value(y), "the loss")
            gy = loss.grad(y)
            self.njev += 1
            if callable(getattr(model, "vjp", None)):
                g = model.vjp(xs, gy)
            else:
                J = xp.reshape(model.jacobian(xs), (-1, self.n))
                g = xp.reshape(gy, (-1,)) @ J
        else:
            f = self.value(x)
            if mode == "callable":
                self.njev += 1
                g = self.jac(self._shaped(x), *self.args)
                if self.grad_accuracy is None:  # (a float32 jac at float64 x: float32 steps
                    # for the Hessian's differences of it)
                    self.grad_accuracy = output_accuracy(float(xp.finfo(self.dtype).eps), g)
            else:
                g = fd_jacobian(self._value_array, x, self._value_array(x, f),
                                scheme=self.jac, bounds=self.bounds, accuracy=self.accuracy)
        g = flat(xp, g, self.dtype, "the gradient", self.n, device=B.device(x))
        if self.richardson:
            g = self.richardson_gradient(x, f, g)
        self._cache = (x, f, g)
        return f, g

    def use_richardson(self, x: Any, f: float, g: Any) -> None:
        """From now on a central-difference gradient is Richardson's (4·G(h/2) − G(h))/3
        (4n evaluations instead of 2n; error O(h⁴) and the rounding 3ε|f|/h): a Newton stop
        found resting on G's own error h²·f‴/6 goes on with it, from ``x`` on, where it is
        ``g`` (``f = f(x)``; cached)."""
        self.richardson, self._cache = True, (x, f, g)

    def _value_array(self, x: Any, f: float | None = None) -> Any:
        """f(x) (``f`` where given) as a 0-d array of x's dtype on x's device: the values
        the difference gradients subtract."""
        f = scalar(self._raw(x), "fun") if f is None else f
        return self.xp.asarray(f, dtype=self.dtype, device=B.device(x))

    def grad(self, x: Any) -> Any:
        """:math:`\\nabla f(x)`."""
        return self.value_and_grad(x)[1]

    @property
    def grad_scheme(self) -> str | None:
        """The difference scheme of the gradient (``"2-point"``/``"3-point"``), ``None`` when
        the gradient is not a difference."""
        return self.jac if self._grad_mode == "fd" else None

    def gradient_error(self, x: Any, f: float, curvature: Any) -> Any:
        """Bound on the error of each entry of the gradient at ``x`` (``f = f(x)``;
        ``curvature`` estimates the Hessian's diagonal): ``None`` for an exact gradient,
        else :func:`._fd.gradient_error_bound`."""
        scheme = self.grad_scheme
        return None if scheme is None else gradient_error_bound(x, f, curvature, scheme,
                                                                self.accuracy)

    richardson = False  # (use_richardson)

    def richardson_gradient(self, x: Any, f: float, g: Any = None) -> Any:
        """``(4·G_{h/2} − G_h)/3`` from the central-difference gradient ``G_h = g`` at ``x``
        (``f = f(x)``; computed here, 2n evaluations more, where ``g`` is ``None``): the h²
        term of both cancels, so what is left is O(h⁴) and the rounding, at most 3ε|f|/h
        (:func:`._fd.gradient_error_bound`'s central term, ×(4·2 + 1)/3).  Costs 2n
        evaluations (4n where ``g`` is ``None``); ``None`` unless the gradient is a
        difference."""
        if self.grad_scheme is None:
            return None
        xp = self.xp

        def central(accuracy: float) -> Any:
            G = fd_jacobian(self._value_array, x, self._value_array(x, f), scheme="3-point",
                            accuracy=accuracy, bounds=self.bounds)
            return flat(xp, G, self.dtype, "the gradient", self.n)

        if g is None:
            g = central(self.accuracy)
        eta = (self.accuracy or float(xp.finfo(self.dtype).eps)) / RICHARDSON_SHRINK
        return richardson(central(eta), g)

    def gradient_bias(self, x: Any, diagonal: Any) -> Any:
        """The leading error of a forward-difference gradient at ``x``, ``h_j·H_jj/2`` (``h_j``
        the signed step taken, in the box; ``diagonal`` the Hessian's, signed): subtracted,
        what remains is the rounding 2ε|f|/h and O(h²).  ``None`` unless the gradient is a
        forward difference."""
        if self.grad_scheme != "2-point":
            return None
        eta = float(self.xp.finfo(self.dtype).eps) if self.accuracy is None else self.accuracy
        return forward_difference_bias(self.xp, x, diagonal, eta, self.bounds)

    @property
    def hessian_is_operator(self) -> bool:
        """Whether :meth:`hessian` returns a matrix-free operator (``hessp`` given)."""
        return self._hess_mode == "hessp"

    def _hessian_differences(self) -> tuple[str, float]:
        """The scheme of a difference Hessian and the accuracy η of the gradient it differences
        (its steps are for the gradient's own accuracy, :mod:`._fd`)."""
        scheme = self.hess if isinstance(self.hess, str) else "2-point"
        eps = float(self.xp.finfo(self.dtype).eps)
        own = (self.accuracy if self.grad_scheme else self.grad_accuracy) or eps
        return scheme, gradient_accuracy(own, self.grad_scheme)

    def steps_beyond_x(self, x: Any) -> list[int]:
        """The indices j where a difference step of the gradient or of the Hessian exceeds a
        nonzero |x_j|: SciPy's default steps, η^p·max(1, |x_j|) (η the accuracy of what is
        differenced), at parameters below η^p.  There a gradient entry or a Hessian column is
        a secant over more than the parameter itself.  Empty without differences."""
        xp, h = self.xp, None
        if self._grad_mode == "fd":
            h = difference_steps(xp, x, self.jac, self.accuracy)
        if self._hess_mode == "fd":
            hh = difference_steps(xp, x, *self._hessian_differences())
            h = hh if h is None else xp.maximum(h, hh)
        if h is None:
            return []
        size = xp.abs(x)
        return [int(j) for j in xp.nonzero((size > 0) & (size < h))[0]]

    def hessian(self, x: Any, *, matrix_free: bool = False) -> Any:
        """:math:`\\nabla^2 f(x)`: a dense ``(n, n)`` array or a :class:`LinearOperator`.

        ``matrix_free`` asks for an operator from Hessian-vector products where the source
        provides them (``hessp``, autodiff, or differences of gradients); a ``hess`` callable
        gives what it returns.
        """
        xp, n, mode = self.xp, self.n, self._hess_mode
        if mode == "fd":
            scheme, eta = self._hessian_differences()
            g0 = self.grad(x)

            def grad(z: Any) -> Any:
                return self.value_and_grad(z)[1]

            if matrix_free:
                def fd_product(v: Any) -> Any:
                    self.nhev += 1
                    return fd_hvp(grad, x, g0, v, scheme=scheme, accuracy=eta)

                return HessianOperator(fd_product, n, like=x)
            self.nhev += 1
            H = fd_hessian_from_grad(grad, x, g0, scheme=scheme, accuracy=eta,
                                     bounds=self.bounds)
            return matrix(xp, H, self.dtype, "the Hessian", n, n, ())
        if mode == "hessp" or (mode == "autodiff" and matrix_free):
            xs = self._shaped(x)

            def hvp(v: Any) -> Any:
                self.nhev += 1
                if mode == "hessp":
                    out = self.hessp(xs, xp.reshape(v, self.shape), *self.args)
                else:
                    out = self._provider.hvp(x, v)
                return flat(xp, out, self.dtype, "hessp(x, p)", n, device=B.device(x))

            return HessianOperator(hvp, n, like=x)
        self.nhev += 1
        if mode == "callable":
            H = self.hess(self._shaped(x), *self.args)
            if not is_array(H):
                return aslinearoperator(H, tags=("symmetric",))
        else:
            H = self._provider.hessian(x)
        return matrix(xp, H, self.dtype, "the Hessian", n, n, (self.shape + self.shape,))
