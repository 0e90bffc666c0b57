"""The PyTorch derivative provider (DEVELOPING.md, "Derivative providers").

For a torch callable ``f(x_shaped, *args)`` (a 0-d scalar or an array) the provider gives, on
flat vectors ``x`` of length ``n`` and flat outputs of length ``m``:

- ``value(x)``, ``value_and_grad(x) -> (f, ∇f)`` by reverse mode;
- ``hvp(x, v) = ∇²f(x) v`` forward-over-reverse, ``jvp(∇f)(x; v)`` through :mod:`torch.func`,
  falling back to double backward ``∇_x (∇f(x)ᵀ v)`` where a model's custom autograd functions
  have no forward-mode rule;
- ``jvp(x, v) = J v`` (forward mode; double-backward fallback) and ``vjp(x, w) = Jᵀ w``;
- dense ``jacobian(x)`` (``m × n``) and ``hessian(x)`` (``n × n``): ``vmap`` of ``vjp`` over
  rows of the identity when ``m <= n`` (of ``jvp`` over its columns otherwise; of ``hvp`` for
  the Hessian), one chunk of at most ``chunk_size`` basis vectors at a time.  Without an explicit
  ``chunk_size`` the chunk is ``max_memory / (c · itemsize · (n + m))`` basis vectors
  (``c = 8`` allows for the intermediates of one product), so a 10k-parameter Hessian is built
  in pieces instead of one batched call that would allocate ``n`` copies of every intermediate.
  Where ``vmap`` is not supported the columns are computed one at a time.

Everything stays on the device and in the dtype of ``x`` (results carry the dtype ``f``
computes in).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from functools import cache
from typing import Any

import torch

from newtonkit.problems._registry import NOT_IN_GRAPH

__all__ = ["TorchAutodiff", "torch_autodiff"]

#: Default bound on the memory one batched chunk of products may use (bytes).
DEFAULT_MAX_MEMORY = 1 << 30
_INTERMEDIATE_FACTOR = 8
# Errors torch raises when a transform or a double backward is not supported by some operation.
_UNSUPPORTED = (RuntimeError, NotImplementedError, TypeError)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)


def unit_rows(start: int, stop: int, n: int, dtype: torch.dtype,
              device: torch.device) -> torch.Tensor:
    """Rows ``start … stop−1`` of the ``n × n`` identity, shape ``(stop − start, n)``."""
    E = torch.zeros(stop - start, n, dtype=dtype, device=device)
    E[:, start:stop] = torch.eye(stop - start, dtype=dtype, device=device)
    return E


def _not_a_tensor(out: Any) -> str:
    """The error message for a ``fun`` that returned something other than a tensor."""
    if out is None:
        return ("fun returned None; it must return a torch.Tensor computed from x (did it "
                "forget a return statement?)")
    if isinstance(out, (int, float)):
        return (f"fun returned a Python {type(out).__name__} ({out!r}), not a torch.Tensor: "
                f"autodiff needs a tensor computed from x, so keep the computation in torch "
                f"(no .item(), float() or .numpy() in fun)")
    return f"fun returned a {type(out).__name__}; autodiff needs a torch.Tensor computed from x"


@cache
def _load_forward_ad() -> None:
    """Import torch's forward-mode decompositions once, hiding their ``torch.jit`` deprecation.

    Torch loads them on the first forward-mode call and warns (a ``DeprecationWarning`` about
    its own use of ``torch.jit.script``) that users cannot act on.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\..*")
        try:
            from torch._decomp import decompositions_for_jvp  # noqa: F401
        except ImportError:  # a torch without this module needs no preloading
            pass


class TorchAutodiff:
    """Derivatives of a torch callable on flat vectors.

    Parameters
    ----------
    fun : callable
        ``fun(x_shaped, *args) -> Tensor`` (0-d for a scalar objective, any shape otherwise).
    x_shape : tuple of int
        The shape ``fun`` expects; the provider's ``x`` are flat ``(n,)`` tensors.
    args : tuple
        Extra positional arguments passed to ``fun``.
    chunk_size : int, optional
        Basis vectors per batched (``vmap``) call in ``jacobian``/``hessian``.
    max_memory : int, optional
        Byte budget that sets the chunk when ``chunk_size`` is not given (default 1 GiB).
    vectorize : bool
        Use ``vmap`` for dense matrices (default); ``False`` loops over columns.
    """

    def __init__(self, fun: Callable[..., torch.Tensor], x_shape: tuple[int, ...],
                 args: tuple = (), *, chunk_size: int | None = None,
                 max_memory: int | None = None, vectorize: bool = True) -> None:
        if not callable(fun):
            raise TypeError(f"fun must be callable, got {type(fun).__name__}")
        if chunk_size is not None and int(chunk_size) < 1:
            raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
        if max_memory is not None and not max_memory > 0:
            raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
        self.fun, self.x_shape, self.args = fun, tuple(int(s) for s in x_shape), tuple(args)
        self.n = math.prod(self.x_shape)
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.max_memory = DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
        self.vectorize = bool(vectorize)
        self.forward_mode_ok = True  # becomes False after the first forward-mode failure
        self.connected = False  # whether fun's output was seen in autograd's graph of x
        _load_forward_ad()
        self.out_shape: tuple[int, ...] | None = None

    # -- helpers -------------------------------------------------------------------------------
    def _call(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fun(x.reshape(self.x_shape), *self.args)
        if not isinstance(out, torch.Tensor):
            raise TypeError(_not_a_tensor(out))
        return out

    def _connect(self, out: torch.Tensor, zero_ok: bool = False) -> torch.Tensor:
        """``out``, ``fun``'s output at an ``x`` that requires grad; raises where it is not in
        autograd's graph (computed under ``no_grad``, detached, or constant), where torch's
        transforms would give zero derivatives without a word (a Newton run would end
        ``GTOL`` at any point of such an f, a saddle included).  ``zero_ok``: a residual
        that is all zero passes (the run ends ``ZERO`` there whatever its Jacobian; a
        constant branch ``torch.zeros(m)`` at an exact solution is legitimate)."""
        if out.requires_grad or out.numel() == 0 or (zero_ok and not bool(out.any())):
            self.connected = self.connected or out.requires_grad
            return out
        raise ValueError(NOT_IN_GRAPH)

    def _verify_connected(self, x: torch.Tensor) -> None:
        """Check once (one evaluation of ``fun``) that ``fun`` is differentiable by autograd
        (:meth:`_connect`), for the transforms that build no graph of their own."""
        if not self.connected:
            xr = x.clone().requires_grad_(True)
            with torch.enable_grad():
                self._connect(self._call(xr))

    def _check(self, x: torch.Tensor, name: str = "x") -> torch.Tensor:
        if torch.is_inference_mode_enabled():
            raise RuntimeError("autodiff derivatives cannot run under torch.inference_mode(); "
                               "call minimize outside it (torch.no_grad() is fine)")
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.numel() != self.n:
            raise ValueError(f"{name} must have {self.n} elements (shape {self.x_shape}), "
                             f"got shape {tuple(x.shape)}")
        return x.detach().reshape(-1)

    def _scalar(self, x: torch.Tensor) -> torch.Tensor:
        f = self._call(x)
        if f.numel() != 1:
            raise ValueError(f"a gradient or Hessian needs a scalar objective; fun returned "
                             f"shape {tuple(f.shape)} (use jacobian/jvp/vjp for residuals)")
        return f.reshape(())

    def _chunk(self, n_basis: int, m: int, itemsize: int) -> int:
        if self.chunk_size is not None:
            return min(self.chunk_size, n_basis)
        per = _INTERMEDIATE_FACTOR * itemsize * (self.n + m)
        return int(max(1, min(n_basis, self.max_memory // max(per, 1))))

    # -- values and first derivatives -----------------------------------------------------------
    def value(self, x: torch.Tensor) -> torch.Tensor:
        """``f(x)``: 0-d for a scalar objective, flat ``(m,)`` otherwise."""
        x = self._check(x)
        with torch.no_grad():
            f = self._call(x)
        return f.reshape(()) if f.numel() == 1 and f.ndim == 0 else _flat(f)

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f(x), ∇f(x))`` by one reverse pass."""
        x = self._check(x).requires_grad_(True)
        with torch.enable_grad():
            f = self._connect(self._scalar(x))
            (g,) = torch.autograd.grad(f, x, allow_unused=True)
        if g is None:
            g = torch.zeros_like(x)
        return f.detach(), g

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        """``∇f(x)``."""
        return self.value_and_grad(x)[1]

    def vjp(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``Jᵀ w`` for the Jacobian ``J = ∂f/∂x`` (``w`` flat, length ``m``)."""
        x = self._check(x).requires_grad_(True)
        with torch.enable_grad():
            y = self._connect(self._call(x), zero_ok=True)
            if w.numel() != y.numel():
                raise ValueError(f"w must have {y.numel()} elements (the output size), got "
                                 f"shape {tuple(w.shape)}")
            if not y.requires_grad:  # an all-zero constant residual (_connect)
                return torch.zeros_like(x)
            (g,) = torch.autograd.grad(y, x, w.reshape(y.shape).to(y.dtype), allow_unused=True)
        return torch.zeros_like(x) if g is None else g

    def jvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``J v`` by forward mode (double-backward trick where forward mode is unsupported)."""
        x = self._check(x)
        v = self._check(v, "v").to(x.dtype)
        self._verify_connected(x)
        if self.forward_mode_ok:
            try:
                _, out = torch.func.jvp(self._call, (x,), (v,))
                return _flat(out)
            except _UNSUPPORTED:
                self.forward_mode_ok = False
        # J v = ∂/∂u [Jᵀ u]ᵀ v : two reverse passes, exact for any u.
        xr = x.clone().requires_grad_(True)
        with torch.enable_grad():
            y = self._call(xr)
            u = torch.zeros_like(y, requires_grad=True)
            (g,) = torch.autograd.grad(y, xr, u, create_graph=True)
            (out,) = torch.autograd.grad(g, u, v)
        return _flat(out)

    # -- second derivatives --------------------------------------------------------------------
    def _hvp_func(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        grad_f = torch.func.grad(lambda z: self._call(z).reshape(()))
        return lambda v: torch.func.jvp(grad_f, (x,), (v,))[1]

    def hvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``∇²f(x) v``: forward-over-reverse, or double backward as a fallback."""
        x = self._check(x)
        v = self._check(v, "v").to(x.dtype)
        self._verify_connected(x)
        if self.forward_mode_ok:
            try:
                return self._hvp_func(x)(v)
            except _UNSUPPORTED:
                self.forward_mode_ok = False
        return self._hvp_double_backward(x, v[None])[0]

    def _hvp_double_backward(self, x: torch.Tensor, V: torch.Tensor) -> torch.Tensor:
        xr = x.clone().requires_grad_(True)
        with torch.enable_grad():
            f = self._scalar(xr)
            (g,) = torch.autograd.grad(f, xr, create_graph=True)
            rows = []
            for k in range(V.shape[0]):
                if not g.requires_grad:  # f is affine: zero Hessian
                    rows.append(torch.zeros_like(x))
                    continue
                (h,) = torch.autograd.grad(g, xr, V[k], retain_graph=True, allow_unused=True)
                rows.append(torch.zeros_like(x) if h is None else h)
        return torch.stack(rows)

    # -- dense matrices ------------------------------------------------------------------------
    def _batched(self, apply_one: Callable[[torch.Tensor], torch.Tensor],
                 loop: Callable[[torch.Tensor], torch.Tensor], n_basis: int, m: int,
                 like: torch.Tensor) -> torch.Tensor:
        """Stack ``apply_one(e_k)`` for the ``n_basis`` unit vectors, in memory-bounded chunks.

        Returns shape ``(n_basis, ...)``.  ``loop(E)`` computes a chunk without ``vmap``.
        """
        k = self._chunk(n_basis, m, like.element_size())
        out = []
        vectorize = self.vectorize
        for start in range(0, n_basis, k):
            stop = min(n_basis, start + k)
            E = unit_rows(start, stop, n_basis, like.dtype, like.device)
            if vectorize:
                try:
                    out.append(torch.func.vmap(apply_one)(E))
                    continue
                except _UNSUPPORTED:
                    vectorize = False
            out.append(loop(E))
        return torch.cat(out, dim=0)

    def jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """The dense Jacobian ``J = ∂f/∂x`` of shape ``(m, n)``."""
        x = self._check(x)
        xr = x.clone().requires_grad_(True)
        with torch.enable_grad():
            y = _flat(self._connect(self._call(xr), zero_ok=True))
        m = y.numel()
        if m == 0 or not y.requires_grad:  # an empty shard; an all-zero constant residual
            return y.new_zeros(m, self.n)
        if m <= self.n or not self.forward_mode_ok:

            def rev_one(e: torch.Tensor) -> torch.Tensor:
                (g,) = torch.autograd.grad(y, xr, e, retain_graph=True, allow_unused=True)
                return torch.zeros_like(x) if g is None else g

            def rev_loop(E: torch.Tensor) -> torch.Tensor:
                return torch.stack([rev_one(e) for e in E])

            like = torch.empty(0, dtype=y.dtype, device=y.device)
            return self._batched(rev_one, rev_loop, m, m, like)

        def fwd_one(e: torch.Tensor) -> torch.Tensor:
            return _flat(torch.func.jvp(self._call, (x,), (e,))[1])

        def fwd_loop(E: torch.Tensor) -> torch.Tensor:
            return torch.stack([self.jvp(x, e) for e in E])

        return self._batched(fwd_one, fwd_loop, self.n, m, x).mT.contiguous()

    def hessian(self, x: torch.Tensor) -> torch.Tensor:
        """The dense symmetric Hessian ``∇²f(x)`` of shape ``(n, n)``, symmetrised."""
        x = self._check(x)
        self._verify_connected(x)
        if self.forward_mode_ok:
            try:
                hv = self._hvp_func(x)
                H = self._batched(hv, lambda E: torch.stack([hv(e) for e in E]), self.n, 0, x)
                return 0.5 * (H + H.mT)
            except _UNSUPPORTED:
                self.forward_mode_ok = False
        k = self._chunk(self.n, 0, x.element_size())
        blocks = []
        for start in range(0, self.n, k):
            stop = min(self.n, start + k)
            E = unit_rows(start, stop, self.n, x.dtype, x.device)
            blocks.append(self._hvp_double_backward(x, E))
        H = torch.cat(blocks, dim=0)
        return 0.5 * (H + H.mT)


def torch_autodiff(fun: Callable[..., torch.Tensor], x_shape: tuple[int, ...],
                   args: tuple = (), **options: Any) -> TorchAutodiff:
    """The factory registered with :func:`newtonkit.problems.register_autodiff` for ``"torch"``.

    ``options`` are :class:`TorchAutodiff`'s keywords (``chunk_size``, ``max_memory``,
    ``vectorize``).
    """
    return TorchAutodiff(fun, x_shape, args, **options)
