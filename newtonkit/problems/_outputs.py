r"""Problems on model outputs: residuals :math:`r(x)` and composites :math:`L(F(x))`.

Gauss-Newton, Levenberg-Marquardt and HIG see a map :math:`y = F(x)` (``(n,) -> (m,)`` flat)
with Jacobian :math:`J`, a loss :math:`L(y)` and :math:`g_y = \partial L/\partial y`.  A residual
callable is the case :math:`F = r`, :math:`L = \tfrac12\|y\|^2`, :math:`g_y = y`.

For (generalised) Gauss-Newton the loss Hessian :math:`H_L = S S^T` turns the model into least
squares in :math:`\tilde r = S^{-1} g_y`, :math:`\tilde J = S^T J`:
:math:`\tilde J^T \tilde r = J^T g_y` and :math:`\tilde J^T \tilde J = J^T H_L J`.  For the L2
loss :math:`S = \mathrm{diag}(\sqrt w)` and :math:`\tfrac12\|\tilde r\|^2 = L` exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import _backend as B
from ..operators import (
    DiagonalOperator,
    HessianOperator,
    JacobianOperator,
    LinearOperator,
    MatrixOperator,
    aslinearoperator,
)
from ._common import FD_SCHEMES, Counters, flat, is_array, matrix, same_backend, scalar
from ._composite import Composite
from ._fd import difference_steps, fd_jacobian, output_accuracy, unseen_gradient
from ._registry import get_autodiff

__all__ = ["OutputProblem", "Evaluation"]

# Above this many Jacobian entries an autodiff Jacobian is kept matrix-free (jvp/vjp).
_DENSE_LIMIT = 4_000_000


@dataclass(slots=True)  # not frozen: that makes construction 4x slower (one per trial)
class Evaluation:
    """Outputs ``y`` (flat), loss value ``f`` (float) and ``gy = ∂L/∂y`` (flat) at ``x``
    (treated as immutable)."""

    x: Any
    y: Any
    f: float
    gy: Any


class OutputProblem(Counters):
    """Outputs, loss and Jacobian of a residual callable or a :class:`Composite`."""

    kind = "outputs"

    def __init__(self, fun: Callable, x0: Any, shape: tuple[int, ...], args: tuple = (),
                 jac: Any = None, *, xp: Any = None) -> None:
        super().__init__()
        self.xp = B.array_namespace(x0) if xp is None else xp  # the driver passes its own
        self.dtype, self.n, self.shape, self.args = x0.dtype, x0.shape[0], tuple(shape), args
        # x is handed to the model as is when it already has the user's shape (no reshape view)
        self._flat = self.shape == (self.n,)
        self.notes: list[str] = []
        self.m: int | None = None
        self.y_shape: tuple[int, ...] | None = None
        self._jac_shapes: tuple[tuple[int, ...], ...] = ()  # set with y_shape: see outputs
        if isinstance(fun, Composite):
            if jac is not None and not (isinstance(jac, str) and jac in FD_SCHEMES):
                raise ValueError("with a Composite, give the forward model's derivatives as its "
                                 "jacobian/jvp/vjp methods (or jac='2-point'/'3-point' for "
                                 f"differences of the model), not jac={jac!r}")
            self.model, self.loss = fun.model, fun.loss
            self._model_args: tuple = ()
        else:
            self.model, self.loss, self._model_args = fun, None, tuple(args)
        self._jac_mode, self._jac, self._provider = self._jacobian_source(jac)
        self._returned: tuple[Any, Any] | None = None  # jac=True: (x, J) of the last call
        self._last: tuple[Any, Any] | None = None  # (x, F(x)) of the last call, for 2-point
        self.diff_step: float | None = None  # relative difference steps (the driver sets it)

    @property
    def jacobian_is_fd(self) -> bool:
        """Whether :meth:`jacobian` is a finite difference."""
        return self._jac_mode == "fd"

    def steps_beyond_x(self, x: Any) -> list[int]:
        """The indices j where a difference step exceeds a nonzero |x_j|: SciPy's default
        steps, η^p·max(1, |x_j|), at parameters of magnitude below η^p (1.5e-8 forward, 6e-6
        central in float64).  There the Jacobian column is a secant over more than the
        parameter itself.  Empty without differences, or with ``diff_step`` (steps relative
        to |x|)."""
        if not self.jacobian_is_fd or self.diff_step is not None:
            return []
        xp = self.xp
        h = difference_steps(xp, x, self._jac, self.accuracy)
        size = xp.abs(x)
        return [int(j) for j in xp.nonzero((size > 0) & (size < h))[0]]

    def unseen_gradient(self, ev: Any, J: Any) -> Any:
        """For a difference Jacobian, the bounds ``(unseen, seen)`` on each gradient entry's
        parts that its exactly zero entries may hide and that the rounding of the others may
        shift (:func:`._fd.unseen_gradient`; ``J`` the Jacobian at the evaluation ``ev``, or
        the Gauss-Newton J̃, which has the same zeros); else ``None``."""
        if not self.jacobian_is_fd:
            return None
        xp = self.xp
        return unseen_gradient(xp, J, xp.reshape(ev.y, (-1,)), ev.gy, ev.x, self._jac,
                               self.accuracy, self.diff_step, self.bounds)

    def _jacobian_source(self, jac: Any) -> tuple[str, Any, Any]:
        if jac is True:  # fun returns (r, J): outputs keeps the J of its last call
            return "true", None, None
        if jac is not None:
            if callable(jac) and not isinstance(jac, LinearOperator):
                return "callable", jac, None
            if isinstance(jac, str):
                if jac not in FD_SCHEMES:
                    raise ValueError(f"jac must be None, a callable, a matrix, an operator or one "
                                     f"of {FD_SCHEMES}, got {jac!r}")
                return "fd", jac, None
            if is_array(jac):  # a constant dense J: the solvers' exact dense routes
                if not B.all_finite(B.array_namespace(jac), jac):
                    raise ValueError("jac: a constant Jacobian needs finite entries; it has "
                                     "nan or inf")
                return "constant", jac, None
            try:
                return "constant", aslinearoperator(jac), None
            except ValueError as e:  # non-finite entries, a bad shape: say it is about jac
                raise ValueError(f"jac: {e}") from None
        model = self.model
        if callable(getattr(model, "jacobian", None)):
            return "model-dense", None, None
        if callable(getattr(model, "jvp", None)) and callable(getattr(model, "vjp", None)):
            return "model-operator", None, None
        factory = get_autodiff(self.xp)
        if factory is not None:
            return "autodiff", None, factory(self._call_model, self.shape, ())
        self.notes.append(
            f"no Jacobian given and no autodiff provider for {B.backend_name(self.xp)} arrays: "
            f"using forward finite differences ({self.n} evaluations per Jacobian); pass jac= "
            f"(or give the model jacobian/jvp/vjp) for speed and accuracy")
        return "fd", "2-point", None

    def _call_model(self, xs: Any, *extra: Any) -> Any:
        self.count_fev()  # the autodiff provider's calls of fun
        return self.model(xs, *self._model_args)

    # -- evaluation ----------------------------------------------------------------------------
    def _shaped(self, x: Any) -> Any:
        return x if self._flat else self.xp.reshape(x, self.shape)

    def outputs(self, x: Any) -> Any:
        """:math:`F(x)` flat (counts one function evaluation).

        With ``jac=True`` ``fun`` returns ``(r, J)``: ``J`` is kept for :meth:`jacobian` at the
        same ``x`` (one call of ``fun``, counted once in ``nfev``; ``njev`` counts the
        Jacobians used)."""
        self.count_fev()
        y = self.model(self._shaped(x), *self._model_args)
        if self._jac_mode == "true":
            if not (isinstance(y, tuple) and len(y) == 2):
                raise ValueError(f"with jac=True, fun must return a pair (r, J), got "
                                 f"{_describe(y)}")
            y, J = y
            self._returned = (x, J)
        if self.y_shape is None:
            self._check_first_output(y)
        if not hasattr(y, "shape"):
            y = self.xp.asarray(y, dtype=self.dtype, device=B.device(x))
        if self.y_shape is None:
            same_backend(self.xp, y, "the output of fun")
            self.accuracy = output_accuracy(float(self.xp.finfo(self.dtype).eps), y)
            self.y_shape = tuple(y.shape)
            self.m = m = int(self.xp.reshape(y, (-1,)).shape[0])
            if m == 0:
                raise ValueError(f"fun returned an empty output (shape {self.y_shape}): m = 0 "
                                 f"residuals, nothing to fit")
            # the user's own shapes a dense Jacobian may come in (besides (m, n))
            ys, xs = self.y_shape, self.shape
            self._jac_shapes = (ys + xs, ys + (self.n,), (m,) + xs)
        y = flat(self.xp, y, self.dtype, "the model output", self.m)
        self._last = (x, y)
        return y

    def _check_first_output(self, y: Any) -> None:
        """The model's first output: an array or a sequence (a residual of any shape, even one
        entry); ``None`` or a scalar residual is an error (a scalar one points to Newton)."""
        if y is None or isinstance(y, (str, bytes, dict)):
            what = "fun" if self.loss is None else "the model"
            raise TypeError(f"{what} returned {_describe(y)}; it must return an array of x0's "
                            f"backend (a residual vector r(x) for fun)")
        if self.loss is None and (getattr(y, "ndim", None) == 0 or isinstance(y, (int, float))):
            raise ValueError(f"fun returned a scalar ({_describe(y)}), but a residual vector "
                             f"r(x) is expected: methods 'gauss-newton', 'lm' and 'hig' "
                             f"minimise ½‖r‖²; for a scalar objective f(x) use "
                             f"method='newton'")

    def evaluate(self, x: Any) -> Evaluation:
        """Outputs, loss value and :math:`\\partial L/\\partial y` at ``x``."""
        xp = self.xp
        y = self.outputs(x)
        if self.loss is None:
            with np.errstate(over="ignore"):  # (inf at a far trial point: a rejected trial)
                f = 0.5 * B.vdot(xp, y, y)
            gy = y
        else:
            ys = xp.reshape(y, self.y_shape)
            f = scalar(self.loss.value(ys), "loss.value")
            gy = flat(xp, self.loss.grad(ys), self.dtype, "loss.grad(y)", self.m,
                      device=B.device(y))
        return Evaluation(x, y, f, gy)

    def jacobian(self, x: Any) -> Any:
        """:math:`J = \\partial F/\\partial x` at ``x``: dense ``(m, n)`` or a LinearOperator."""
        xp, mode, n = self.xp, self._jac_mode, self.n
        xs = self._shaped(x)
        self.njev += 1
        if mode in ("callable", "true"):  # the usual case first
            if mode == "callable":
                J = self._jac(xs, *self.args)
            else:  # jac=True: the J that came with r at x (fun is called again elsewhere)
                if self._returned is None or self._returned[0] is not x:
                    self.outputs(x)
                J = self._returned[1]
            if is_array(J):
                return matrix(xp, J, self.dtype, "the Jacobian", self.m, n, self._jac_shapes)
            J = aslinearoperator(J)
        elif mode == "constant":
            J = self._jac
        elif mode == "model-dense":
            J = self.model.jacobian(xs)
        elif mode == "model-operator":
            return JacobianOperator(self.model, xs)
        elif mode == "autodiff":
            m = self.m if self.m is not None else 1
            if m * n > _DENSE_LIMIT:
                p = self._provider
                return _ProviderJacobian(p, x, m)
            J = self._provider.jacobian(x)
        else:
            last = self._last  # F(x) is usually the last output computed: 2-point reuses it
            f0 = last[1] if last is not None and last[0] is x else None
            J = fd_jacobian(self.outputs, x, f0, scheme=self._jac, bounds=self.bounds,
                            accuracy=self.accuracy, rel_step=self.diff_step)
        if isinstance(J, LinearOperator):
            if self.m is not None and J.shape != (self.m, n):
                raise ValueError(f"the Jacobian operator has shape {J.shape}, expected "
                                 f"{(self.m, n)}")
            return J
        return matrix(xp, J, self.dtype, "the Jacobian", self.m, n, self._jac_shapes)

    # -- Gauss-Newton form ---------------------------------------------------------------------
    def gauss_newton_form(self, ev: Evaluation, J: Any) -> tuple[Any, Any]:
        r"""``(r̃, J̃)`` with :math:`\tilde J^T\tilde r = J^T g_y`, :math:`\tilde J^T\tilde J =
        J^T H_L J` (module docstring)."""
        xp, loss = self.xp, self.loss
        if loss is None:
            return ev.gy, J
        ys = xp.reshape(ev.y, self.y_shape)
        if callable(getattr(loss, "hessian_diag", None)):
            w = flat(xp, loss.hessian_diag(ys), self.dtype, "loss.hessian_diag(y)", self.m,
                     device=B.device(ys))
            pos = w > 0
            sw = xp.sqrt(xp.where(pos, w, xp.zeros_like(w)))
            safe = xp.where(pos, sw, xp.ones_like(sw))
            r = xp.where(pos, ev.gy / safe, xp.zeros_like(sw))
            Jt = sw[:, None] * J if not isinstance(J, LinearOperator) else DiagonalOperator(sw) @ J
            return r, Jt
        if callable(getattr(loss, "hessian", None)):
            H = xp.reshape(loss.hessian(ys), (self.m, self.m))
        elif callable(getattr(loss, "hvp", None)):
            H = HessianOperator(lambda v: flat(xp, loss.hvp(ys, xp.reshape(v, self.y_shape)),
                                               self.dtype, "loss.hvp", self.m,
                                               device=B.device(ys)),
                                self.m, like=ev.y).to_dense()
        else:
            raise ValueError(f"Gauss-Newton with the loss {type(loss).__name__} needs its Hessian "
                             f"in y: give it hessian_diag(y), hessian(y) or hvp(y, v) (or use "
                             f"method='hig', which needs only grad)")
        L, ok = B.cholesky(xp, H)
        if not ok:
            raise ValueError("the loss Hessian in y is not positive definite, so the "
                             "generalised Gauss-Newton model is not convex; use a convex loss "
                             "or method='newton'")
        r = B.solve_triangular(xp, L, ev.gy, lower=True)
        Lt = xp.matrix_transpose(L)
        Jt = Lt @ J if not isinstance(J, LinearOperator) else MatrixOperator(Lt) @ J
        return r, Jt


def _describe(obj: Any) -> str:
    """``obj``'s type for an error message (``None``, ``a float``, ``a tuple of 2``, ...)."""
    if obj is None:
        return "None"
    if isinstance(obj, tuple):
        return f"a tuple of {len(obj)}"
    shape = getattr(obj, "shape", None)
    if shape is not None:
        library = type(obj).__module__.split(".")[0]
        return f"a {library} {type(obj).__name__} of shape {tuple(shape)}"
    return f"a Python {type(obj).__name__}"


class _ProviderJacobian(LinearOperator):
    """The Jacobian at ``x`` as jvp/vjp products of an autodiff provider."""

    def __init__(self, provider: Any, x: Any, m: int) -> None:
        xp = B.array_namespace(x)
        super().__init__((m, x.shape[0]), x.dtype, xp, B.device(x))
        self.p, self.x = provider, x

    def _matvec(self, v):
        return self.xp.reshape(self.p.jvp(self.x, v), (-1,))

    def _rmatvec(self, w):
        return self.xp.reshape(self.p.vjp(self.x, w), (-1,))
