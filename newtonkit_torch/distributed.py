r"""Problems sharded over the ranks of a ``torch.distributed`` process group (SPMD).

The outputs (rows) of a least-squares problem are split over ``P`` ranks: rank ``k`` holds the
rows :math:`F_k(x)` (its shots, its samples) and computes only those, and every rank runs
:func:`newtonkit.minimize` unchanged on the replicated parameters ``x``:

.. math::

    F(x) = \begin{bmatrix} F_0(x) \\ \vdots \\ F_{P-1}(x) \end{bmatrix}, \qquad
    J = \begin{bmatrix} J_0 \\ \vdots \\ J_{P-1} \end{bmatrix}, \qquad
    J^T w = \sum_k J_k^T w_k, \qquad f(x) = \sum_k f_k(x).

:class:`ShardedModel` (methods ``"gn"``, ``"lm"``, ``"hig"``): each rank evaluates
:math:`F_k(x)` and :math:`J_k v` locally from the replicated ``x``, ``v``; the blocks are
gathered in rank order (``all_gather``, a copy: the same bits on every rank), so the method's
residual-space linear algebra (norms, QR/SVD of a dense ``J``, CGLS) runs on identical data on
every rank.  :math:`J^T w` is computed locally on the rank's slice :math:`w_k` and summed with
``all_reduce(SUM)``.

:class:`ShardedObjective` (method ``"newton"``, ``hessp``): everything lives in parameter space,
:math:`f = \sum_k f_k`, :math:`\nabla f = \sum_k \nabla f_k`, :math:`\nabla^2 f\,p = \sum_k
\nabla^2 f_k\,p`, each one ``all_reduce(SUM)`` of local results; nothing of length ``m`` moves.

Identical decisions on every rank
    Every rank holds the same ``x`` and receives the same bits from every collective: a gather
    copies, and gloo's (and NCCL's) ring all-reduce ends with one reduced copy sent to all ranks
    (``tests/torch_adapter/test_distributed.py`` checks the bits).  So every scalar a method
    decides on is the same on every rank, and the iterates are bitwise identical.  Against a
    single-process run only the summation order of :math:`\sum_k` differs: each reduced entry
    differs by at most about :math:`\varepsilon \cdot P \cdot \sum_k |(\cdot)_k|` (a few ulps
    of the partial sums' scale), and a run amplifies this like any rounding error (by the
    conditioning of the steps); the tests use ``rtol = 1e-10`` in float64.

Faults
    Each operation wraps the local work: an exception on any rank is announced to all ranks
    inside the same collective (a per-rank failure flag travels with the data), and then every
    rank raises the same :class:`ShardError`, naming the failed ranks and their errors (the
    failed rank chains its own exception).  A NaN on one rank reaches every rank through the
    gather or the sum, so every rank ends with the same status (non-finite values).  A rank
    that dies or hangs outside these operations is caught by the process group's
    timeout (``init_process_group(timeout=...)``): the other ranks' collectives raise.

Sharded torch optimizers
    :class:`ShardedClosure` wraps the closure of :class:`newtonkit_torch.optim.GaussNewton`
    or :class:`~newtonkit_torch.optim.HIG` on each rank (its mini-batch shard): it returns the
    gathered outputs, the loss :math:`L = \sum_k L_k` and the gathered Jacobian rows, so the
    optimizer's step (SVD, Gram, CG) runs unchanged on identical data on every rank.

Bad input
    No initialised process group: ``RuntimeError`` at construction.  On the first evaluation
    every rank compares the size and a checksum of its ``x`` (and of the tensors named in
    ``shared``, e.g. the parameters of a model that must be the same everywhere) with
    ``all_reduce(MAX)`` of ``(v, -v)``: a difference is a :class:`ShardError` on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.distributed as dist

from .autograd import TorchAutodiff

__all__ = ["ShardError", "ShardedClosure", "ShardedModel", "ShardedObjective"]


class ShardError(RuntimeError):
    """An operation of a sharded problem failed or its inputs differ between ranks; raised
    with the same message on every rank."""


def _group_info(group: Any) -> tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "torch.distributed is not initialised: call torch.distributed.init_process_group("
            "backend='gloo' or 'nccl') on every rank first (torchrun sets MASTER_ADDR, "
            "MASTER_PORT, RANK and WORLD_SIZE; see docs/distributed.md)")
    return dist.get_rank(group), dist.get_world_size(group)


class _Sharded:
    """The collectives with failure flags, and the start-up checks."""

    def __init__(self, group: Any = None, shared: Iterable[torch.Tensor] = ()) -> None:
        self.group = group
        self.rank, self.size = _group_info(group)
        self.shared = [t.detach() if isinstance(t, torch.Tensor) else t for t in shared]
        self._checked = False

    # -- failures ------------------------------------------------------------------------------
    def _collective(self, collective: Callable, *args: Any, what: str, **kwargs: Any) -> None:
        """``collective(*args, group=..., **kwargs)``; where it fails (a rank that died
        closes its connections: gloo raises at once, NCCL after the group's timeout) the
        surviving ranks raise :class:`ShardError` saying so."""
        try:
            collective(*args, group=self.group, **kwargs)
        except RuntimeError as e:  # torch.distributed.DistBackendError and the like
            raise ShardError(
                f"{what}: the collective {collective.__name__} failed on rank {self.rank} of "
                f"{self.size}; another rank has probably stopped (crashed, killed or out of "
                f"time). The backend says: {str(e).splitlines()[0]}") from e

    def _raise(self, failed: list[int], what: str, err: BaseException | None) -> None:
        """Every rank: the same :class:`ShardError` for the ranks in ``failed`` (not empty)."""
        mine = None if err is None else f"{type(err).__name__}: {err}"
        msgs: list[Any] = [None] * self.size
        self._collective(dist.all_gather_object, msgs, mine, what=what)
        text = "; ".join(f"rank {r}: {msgs[r]}" for r in failed)
        raise ShardError(f"{what} failed on rank(s) {failed} of {self.size}: {text}") from err

    def _sum(self, local: Callable[[], torch.Tensor], n: int, like: torch.Tensor,
             what: str) -> torch.Tensor:
        r""":math:`\sum_k` ``local()`` (flat, ``n`` entries) over the ranks, one all_reduce."""
        err = None
        try:
            out = local().detach().reshape(-1).to(like.dtype)
            if out.numel() != n:
                raise ValueError(f"the local result has {out.numel()} entries, expected {n}")
        except Exception as e:  # announced to every rank below
            err, out = e, torch.zeros(n, dtype=like.dtype, device=like.device)
        flags = torch.zeros(self.size, dtype=like.dtype, device=like.device)
        flags[self.rank] = 0.0 if err is None else 1.0
        buf = torch.cat([out, flags])
        self._collective(dist.all_reduce, buf, op=dist.ReduceOp.SUM, what=what)
        failed = [r for r in range(self.size) if buf[n + r] != 0]
        if failed:
            self._raise(failed, what, err)
        return buf[:n]

    def _gather(self, local: Callable[[], torch.Tensor], like: torch.Tensor,
                what: str) -> tuple[torch.Tensor, list[int]]:
        """The flat ``local()`` of every rank, concatenated in rank order, and their sizes."""
        err, out = None, None
        try:
            out = local().detach().reshape(-1).to(like.dtype)
        except Exception as e:  # announced to every rank below
            err = e
        head = torch.tensor([0.0 if err is None else 1.0, 0.0 if out is None else out.numel()],
                            dtype=torch.float64, device=like.device)
        heads = [torch.empty_like(head) for _ in range(self.size)]
        self._collective(dist.all_gather, heads, head, what=what)
        failed = [r for r in range(self.size) if heads[r][0] != 0]
        if failed:
            self._raise(failed, what, err)
        sizes = [int(h[1]) for h in heads]
        big = max(sizes)
        padded = torch.zeros(big, dtype=like.dtype, device=like.device)
        padded[:out.numel()] = out
        pieces = [torch.empty_like(padded) for _ in range(self.size)]
        self._collective(dist.all_gather, pieces, padded, what=what)
        return torch.cat([p[:s] for p, s in zip(pieces, sizes, strict=True)]), sizes

    # -- start-up checks -----------------------------------------------------------------------
    def check_replicated(self, x: torch.Tensor) -> None:
        """Raise :class:`ShardError` on every rank unless ``x`` (and ``shared``) have the same
        size and checksum on every rank.

        The checksums :math:`\\sum_i t_i` and :math:`\\sum_i t_i \\sin(i + 1)` (float64, over
        the finite entries) and :math:`\\sum_i \\sin(i + 1)` over the nan, the +inf and the
        −inf entries go through ``all_reduce(MAX)`` of ``(c, -c)``; a difference (MAX ≠ MIN) is
        an error.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"a sharded problem needs torch tensors, got {type(x).__name__}")
        vals = [float(x.numel())]
        for t in [x, *self.shared]:
            vals += _checksums(t)
        v = torch.tensor(vals, dtype=torch.float64, device=x.device)
        buf = torch.cat([v, -v])
        self._collective(dist.all_reduce, buf, op=dist.ReduceOp.MAX,
                         what="the start-up check of x0")
        hi, lo = buf[:v.numel()], -buf[v.numel():]
        if hi[0] != lo[0]:
            raise ShardError(f"the ranks have different parameter sizes (from {int(lo[0])} to "
                             f"{int(hi[0])}): every rank must start from the same x0")
        k = 1 + _N_CHECKSUMS  # the checksums of x; those of 'shared' follow
        if not torch.equal(hi[1:k], lo[1:k]):
            raise ShardError("x0 differs between ranks (checksums differ): every rank must start "
                             "from the same x0 (seed or broadcast it from rank 0)")
        if not torch.equal(hi[k:], lo[k:]):
            raise ShardError("the shared model state differs between ranks (checksums of "
                             "'shared' differ): load or broadcast the same model on every rank")

    def _start(self, x: torch.Tensor) -> None:
        if not self._checked:
            self.check_replicated(x)
            self._checked = True


_N_CHECKSUMS = 5


def _checksums(t: torch.Tensor) -> list[float]:
    """:meth:`_Sharded.check_replicated`'s checksums of ``t``: two sums of its finite entries
    and one of where it is nan, +inf and −inf (a sum with a nan or ±inf entry would be nan or
    inf − inf, and nan equals nothing: identical tensors would differ)."""
    t = t.detach().reshape(-1).to(torch.float64)
    w = torch.sin(torch.arange(1, t.numel() + 1, dtype=torch.float64, device=t.device))
    finite = torch.where(torch.isfinite(t), t, torch.zeros_like(t))
    where = [torch.isnan(t), t == math.inf, t == -math.inf]
    return [float(finite.sum()), float((finite * w).sum())] + [float((w * m).sum())
                                                               for m in where]


class ShardedModel(_Sharded):
    r"""A forward model whose output rows are split over the ranks of a process group.

    ``ShardedModel(local)(x)`` is :math:`F(x) = [F_0(x); \dots; F_{P-1}(x)]` (flat, rank
    order), where rank ``k`` computes only its own :math:`F_k(x)` = ``local(x)``.  Pass it as
    ``fun`` (a residual) or as the model of a :class:`newtonkit.Composite` to
    :func:`newtonkit.minimize` with ``"gn"``, ``"lm"`` or ``"hig"``, on every rank.

    Parameters
    ----------
    local : callable
        ``local(x) -> Tensor`` (any shape, may differ in size between ranks): this rank's rows,
        e.g. the residuals :math:`F_k(x) - d_k` of its shots.  Its ``jvp(x, v)``,
        ``vjp(x, w)`` and ``jacobian(x)`` are used when it has them, else torch autograd.
    group : ProcessGroup, optional
        The process group (default: the world).
    dense : bool
        ``True``: also give ``jacobian(x)``, the gathered dense :math:`(m, n)` Jacobian (the
        methods' QR/SVD routes; :math:`m n` entries on every rank).  ``False`` (default): only
        ``jvp``/``vjp``, so the methods work matrix-free.
    shared : iterable of Tensor
        Tensors that must be identical on every rank (checked once, at the first evaluation).

    Notes
    -----
    ``J v`` is :math:`[J_0 v; \dots; J_{P-1} v]` (local products, gathered); ``Jᵀ w`` is
    :math:`\sum_k J_k^T w_k` (local products on this rank's slice :math:`w_k`, one
    ``all_reduce``).  The gathered vectors have the full length ``m`` on every rank: the
    communication per product is ``m`` numbers for ``J v`` and ``n`` for ``Jᵀ w``.
    """

    def __init__(self, local: Callable[[torch.Tensor], torch.Tensor], group: Any = None, *,
                 dense: bool = False, shared: Iterable[torch.Tensor] = ()) -> None:
        if not callable(local):
            raise TypeError(f"the local model must be callable, got {type(local).__name__}")
        super().__init__(group, shared)
        self.local = local
        self._ad: TorchAutodiff | None = None
        self._sizes: list[int] | None = None
        self._local_shape: tuple[int, ...] | None = None
        if dense:
            self.jacobian = self._jacobian

    def _autodiff(self, x: torch.Tensor) -> TorchAutodiff:
        if self._ad is None:
            self._ad = TorchAutodiff(self.local, tuple(x.shape))
        return self._ad

    def _local_call(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            y = self.local(x)
        if not isinstance(y, torch.Tensor):
            raise TypeError(f"the local model returned {type(y).__name__}, not a torch.Tensor")
        self._local_shape = tuple(y.shape)
        return y

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`F(x)`, flat, the blocks of all ranks in rank order."""
        self._start(x)
        y, self._sizes = self._gather(lambda: self._local_call(x), x, "the forward model")
        return y

    def _offsets(self) -> tuple[int, int]:
        if self._sizes is None:
            raise RuntimeError("evaluate the model at x before its derivatives")
        start = sum(self._sizes[:self.rank])
        return start, start + self._sizes[self.rank]

    def jvp(self, x: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        r""":math:`J v = [J_0 v; \dots; J_{P-1} v]` (local products, gathered)."""
        self._start(x)

        def local() -> torch.Tensor:
            if callable(getattr(self.local, "jvp", None)):
                return self.local.jvp(x, v)
            return self._autodiff(x).jvp(x.reshape(-1), v.reshape(-1))

        return self._gather(local, x, "jvp")[0]

    def vjp(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        r""":math:`J^T w = \sum_k J_k^T w_k` (``w`` flat of length ``m``; one ``all_reduce``)."""
        self._start(x)

        def local() -> torch.Tensor:
            a, b = self._offsets()
            wk = w.reshape(-1)[a:b]
            if callable(getattr(self.local, "vjp", None)):
                return self.local.vjp(x, wk.reshape(self._local_shape))
            return self._autodiff(x).vjp(x.reshape(-1), wk)

        return self._sum(local, x.numel(), x, "vjp").reshape(x.shape)

    def _jacobian(self, x: torch.Tensor) -> torch.Tensor:
        """The dense ``(m, n)`` Jacobian: the local rows of every rank, gathered."""
        self._start(x)
        n = x.numel()

        def local() -> torch.Tensor:
            if callable(getattr(self.local, "jacobian", None)):
                return self.local.jacobian(x)
            return self._autodiff(x).jacobian(x.reshape(-1))

        J, sizes = self._gather(local, x, "jacobian")
        return J.reshape(-1, n)

    def objective(self) -> ShardedObjective:
        r"""The least-squares objective :math:`f(x) = \tfrac12 \sum_k \|F_k(x)\|^2` as a
        :class:`ShardedObjective` (for ``method="newton"`` with its ``grad``/``hessp``)."""
        local = self.local
        return ShardedObjective(lambda x: 0.5 * torch.sum(local(x) ** 2), self.group,
                                shared=self.shared)


class ShardedObjective(_Sharded):
    r"""A scalar objective :math:`f(x) = \sum_k f_k(x)` summed over the ranks of a group.

    For ``method="newton"``::

        obj = ShardedObjective(local_f)
        nk.minimize(obj, x0, method="newton", jac=obj.grad, hessp=obj.hessp)

    Parameters
    ----------
    local : callable
        ``local(x) -> 0-d Tensor``: this rank's term :math:`f_k(x)` (differentiable by torch
        autograd, twice for ``hessp``).
    group : ProcessGroup, optional
        The process group (default: the world).
    shared : iterable of Tensor
        Tensors that must be identical on every rank (checked at the first evaluation).

    Notes
    -----
    ``obj(x)``, ``obj.grad(x)`` and ``obj.hessp(x, p)`` each compute the local term
    (:math:`f_k`, :math:`\nabla f_k`, :math:`\nabla^2 f_k\,p`) and sum it over the ranks with
    one ``all_reduce``; only ``n`` numbers (one for ``f``) travel.
    """

    def __init__(self, local: Callable[[torch.Tensor], torch.Tensor], group: Any = None, *,
                 shared: Iterable[torch.Tensor] = ()) -> None:
        if not callable(local):
            raise TypeError(f"the local objective must be callable, got {type(local).__name__}")
        super().__init__(group, shared)
        self.local = local
        self._ad: TorchAutodiff | None = None

    def _autodiff(self, x: torch.Tensor) -> TorchAutodiff:
        if self._ad is None:
            self._ad = TorchAutodiff(self.local, tuple(x.shape))
        return self._ad

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`f(x) = \sum_k f_k(x)` (0-d, float64 sum)."""
        self._start(x)
        like = torch.zeros((), dtype=torch.float64, device=x.device)
        return self._sum(lambda: self._autodiff(x).value(x.reshape(-1)), 1, like,
                         "the objective")[0].to(x.dtype)

    def value_and_grad(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(f(x), \nabla f(x))` from one local forward and backward pass and one
        ``all_reduce`` of the ``n + 1`` numbers :math:`(f_k, \nabla f_k)` (``f`` 0-d, the
        gradient in the shape of ``x``)."""
        self._start(x)
        n = x.numel()

        def local() -> torch.Tensor:
            f, g = self._autodiff(x).value_and_grad(x.reshape(-1))
            return torch.cat([g.reshape(-1).to(x.dtype), f.reshape(1).to(x.dtype)])

        out = self._sum(local, n + 1, x, "the objective and gradient")
        return out[n], out[:n].reshape(x.shape)

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla f(x) = \sum_k \nabla f_k(x)`."""
        self._start(x)
        return self._sum(lambda: self._autodiff(x).grad(x.reshape(-1)), x.numel(), x,
                         "the gradient").reshape(x.shape)

    def hessp(self, x: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla^2 f(x)\, p = \sum_k \nabla^2 f_k(x)\, p`."""
        self._start(x)
        return self._sum(lambda: self._autodiff(x).hvp(x.reshape(-1), p.reshape(-1)),
                         x.numel(), x, "the Hessian-vector product").reshape(x.shape)


class ShardedClosure(_Sharded):
    r"""The closure of a :class:`~newtonkit_torch.optim.GaussNewton` or
    :class:`~newtonkit_torch.optim.HIG` optimizer with the mini-batch split over the ranks.

    Every rank builds the same model and optimizer (the same parameters, checked at the first
    call) and a closure on its own shard of the batch; ``opt.step(ShardedClosure(opt,
    closure))`` then takes the step of the whole batch on every rank::

        opt = GaussNewton(model.parameters(), damping=1e-3)
        local = opt.physics_closure(model, x[mine], physics, loss_fn)   # this rank's samples
        closure = ShardedClosure(opt, local)
        for _ in range(steps):
            opt.step(closure)

    Parameters
    ----------
    optimizer : JacobianOptimizer
        The optimizer whose trainable parameters are the columns of ``J`` (read at each call,
        as the optimizer does).
    closure : callable
        This rank's closure, ``() -> (y_k, loss_k)`` or ``(y_k, loss_k, J_k)`` (the forms of
        :mod:`newtonkit_torch.optim`), on its shard.  The batch loss is the sum
        :math:`L = \sum_k L_k` of the ranks' losses: for a mean over the whole batch divide
        by the global batch size, not the shard's.
    group : ProcessGroup, optional
        The process group (default: the world).
    shared : iterable of Tensor
        More tensors that must be identical on every rank (buffers, frozen parameters);
        the trainable parameters are always checked.

    Notes
    -----
    Each call computes :math:`g_k = (\partial L_k/\partial y_k)^T` and, unless the closure
    returns it, :math:`J_k = \partial y_k/\partial\theta` (batched reverse mode) on the
    rank, then gathers :math:`(L_k, y_k, g_k, J_k)` of every rank in rank order (one
    ``all_gather`` of :math:`1 + m_k(n + 2)` numbers per rank) and returns

    .. math::  y = [y_0; \dots; y_{P-1}], \quad L = \sum_k L_k + g^T (y - \bar y),
               \quad J = [J_0; \dots; J_{P-1}],

    with :math:`y` a fresh leaf equal to its value :math:`\bar y`, so ``L`` has the value
    :math:`\sum_k L_k` and :math:`\partial L/\partial y = g` (the gathered loss
    gradient): the optimizer sees the whole batch.  Every rank holds the same bits, so it
    solves for the same step and the parameters stay identical (tested bitwise).  Against
    one process with the whole batch only :math:`\sum_k L_k` is summed in another order (the
    step itself does not depend on ``L``; ``GaussNewton(adaptive=True)`` compares losses).
    An exception in one rank's closure is a :class:`ShardError` on every rank (raised from
    ``step``); a NaN on one rank reaches every rank's ``J`` or ``g``, and every rank's
    optimizer refuses the step alike.  ``GaussNewton(adaptive=True)`` calls the closure for
    every trial step, each a full sharded call (its ``J`` is not needed there, but the
    closure cannot know).
    """

    def __init__(self, optimizer: Any, closure: Callable[[], tuple], group: Any = None, *,
                 shared: Iterable[torch.Tensor] = ()) -> None:
        if not callable(closure):
            raise TypeError(f"closure must be callable, got {type(closure).__name__}")
        if not callable(getattr(optimizer, "trainable_params", None)):
            raise TypeError(f"optimizer must be a newtonkit_torch.optim optimizer (GaussNewton, "
                            f"HIG), got {type(optimizer).__name__}")
        super().__init__(group, shared)
        self.optimizer, self.closure = optimizer, closure

    def _local(self, params: list[torch.Tensor], n: int) -> torch.Tensor:
        from .optim import closure_outputs

        y, loss, gy, J = closure_outputs(self.closure, params, self.optimizer.jacobian_chunk_size)
        m = y.numel()
        if tuple(J.shape) != (m, n):
            raise ValueError(f"J has shape {tuple(J.shape)}; expected ({m}, {n}) (rows = "
                             f"outputs of this rank's y, columns = the optimizer's trainable "
                             f"parameters)")
        return torch.cat([loss.detach().reshape(1), y.detach().reshape(-1),
                          gy.detach().reshape(-1), J.detach().reshape(-1)])

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(y, loss, J)`` of the whole batch (see the class notes)."""
        params = self.optimizer.trainable_params()
        if not params:
            raise ValueError("the optimizer has no parameter that requires grad")
        like = params[0].detach()
        self._start(torch.cat([p.detach().reshape(-1) for p in params]))
        n = sum(p.numel() for p in params)
        with torch.enable_grad():
            flat, sizes = self._gather(lambda: self._local(params, n), like, "the closure")
        loss, ys, gs, Js, pos = flat.new_zeros(()), [], [], [], 0
        for s in sizes:
            m = (s - 1) // (n + 2)
            piece = flat[pos:pos + s]
            loss = loss + piece[0]
            ys.append(piece[1:1 + m])
            gs.append(piece[1 + m:1 + 2 * m])
            Js.append(piece[1 + 2 * m:].reshape(m, n))
            pos += s
        y_bar, g = torch.cat(ys), torch.cat(gs)
        y = y_bar.clone().requires_grad_(True)
        with torch.enable_grad():
            total = loss + torch.sum(g * (y - y_bar))
        return y, total, torch.cat(Js)
