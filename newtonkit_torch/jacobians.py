"""Per-sample Jacobians of a network composed with a physics function.

For a network ``f_θ`` (an ``nn.Module``), a batch of inputs ``x_1 … x_B`` and a differentiable
physics function ``P`` the stacked Jacobian that HIG and Gauss-Newton invert is

    J = [ ∂P(f_θ(x_1), x_1)/∂θ ; … ; ∂P(f_θ(x_B), x_B)/∂θ ]      (B·m × n),

rows ordered sample-major (sample ``i`` owns rows ``i·m … i·m + m − 1``), columns the selected
parameters flattened in order.  It is computed in one call as
``vmap(jacrev(θ ↦ P(f_θ(x_i), x_i)))`` over the batch with :func:`torch.func.functional_call`,
i.e. ``B·m`` reverse products of *single-sample* graphs batched together, instead of ``B·m``
backward passes through the whole batch.

``physics(output, input) -> y`` receives **one sample** (no batch dimension): the network output
``f_θ(x_i)`` and the input ``x_i``; ``y`` may have any shape (it is flattened to ``m`` values).
``physics=None`` means ``y = f_θ(x_i)``.

The chain route (:func:`chained_jacobian`) uses the structure ``J_i = P_i · N_i`` with the physics
Jacobian ``P_i = ∂P(o, x_i)/∂o`` at ``o = f_θ(x_i)`` (``m × k``, ``k`` network outputs) and the
network Jacobian ``N_i = ∂f_θ(x_i)/∂θ`` (``k × n``): the physics is differentiated only with
respect to its ``k`` inputs, by a batched function the caller may specialise (for a time-stepping
physics :func:`rollout_jacobian`), and ``N_i`` is never formed: the rows of ``J_i`` are the ``m``
reverse products ``P_iᵀ e_c`` pulled back through the network alone.

A per-sample Jacobian sees a batch of one, so layers that couple the samples or update buffers
in the forward are refused with a ``ValueError`` naming the layer: batch norm in train mode or
with ``track_running_stats=False``, and any norm layer in train mode that tracks running
statistics.  Call ``model.eval()`` first (running statistics are used and stay unchanged).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from newtonkit.operators import FunctionOperator, MatrixOperator

from .autograd import _load_forward_ad

__all__ = [
    "select_parameters", "flat_parameters", "per_sample_jacobian",
    "per_sample_jacobian_operator", "batched_outputs", "chained_jacobian", "rollout_jacobian",
]

Physics = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def select_parameters(model: nn.Module, params: Iterable[Any] | None = None) -> list[str]:
    """Names of the parameters of ``model`` to differentiate with respect to.

    ``params`` is ``None`` (every parameter with ``requires_grad``), or an iterable of names or
    of ``nn.Parameter`` objects of ``model`` (matched by identity); the returned order is the
    order given (the column order of the Jacobian).
    """
    named = dict(model.named_parameters())
    if params is None:
        return [k for k, p in named.items() if p.requires_grad]
    by_id = {id(p): k for k, p in named.items()}
    names = []
    for p in params:
        if isinstance(p, str):
            if p not in named:
                raise ValueError(f"{type(model).__name__} has no parameter {p!r}; it has "
                                 f"{sorted(named)}")
            names.append(p)
        elif isinstance(p, torch.Tensor) and id(p) in by_id:
            names.append(by_id[id(p)])
        else:
            raise ValueError("params must name parameters of the model or be its nn.Parameter "
                             "objects")
    if len(set(names)) != len(names):
        raise ValueError(f"a parameter is selected twice: {names}")
    return names


def flat_parameters(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The tensors flattened and concatenated: ``θ = [vec(p_1); vec(p_2); …]`` (detached)."""
    return torch.cat([t.detach().reshape(-1) for t in tensors])


def _check_per_sample(model: nn.Module) -> None:
    """Refuse normalisation layers that a per-sample Jacobian cannot represent.

    A ``_BatchNorm`` layer that normalises with batch statistics (train mode, or
    ``track_running_stats=False``) couples the samples: ``y_i`` depends on every ``x_j``, while
    a per-sample Jacobian sees a batch of one.  A norm layer in train mode with
    ``track_running_stats=True`` also updates its running statistics in place, which ``vmap``
    cannot do.
    """
    for path, m in model.named_modules():
        if not isinstance(m, nn.modules.batchnorm._NormBase):
            continue
        layer = f"{path or type(model).__name__!r} ({type(m).__name__})"
        whole_batch = "or differentiate the whole batch (an optimizer closure returning (y, loss))"
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not m.track_running_stats:
            raise ValueError(
                f"layer {layer} normalises with batch statistics (track_running_stats=False), "
                f"which couple the samples of a batch; a per-sample Jacobian cannot represent "
                f"it: give it track_running_stats=True and call model.eval(), {whole_batch}")
        if m.training and m.track_running_stats:
            raise ValueError(
                f"layer {layer} is in train mode: it updates its running statistics in place "
                f"(and batch norm normalises with batch statistics), which a per-sample "
                f"Jacobian (vmap over samples) cannot do: call model.eval() (the running "
                f"statistics are then used and left unchanged), {whole_batch}")


def _single_sample_fn(model: nn.Module, names: list[str], physics: Physics | None,
                      ) -> tuple[Callable, dict[str, torch.Tensor]]:
    """``fn(selected, x_i) -> (y_i flat, y_i flat)`` and the frozen tensors it closes over.

    Raises ``ValueError`` for a normalisation layer that couples samples or updates buffers
    (:func:`_check_per_sample`).
    """
    _check_per_sample(model)
    frozen = {k: v.detach() for k, v in model.named_parameters() if k not in names}
    frozen.update({k: v.detach() for k, v in model.named_buffers()})

    def fn(selected: dict[str, torch.Tensor], x: torch.Tensor):
        out = functional_call(model, {**frozen, **selected}, (x.unsqueeze(0),))[0]
        y = out if physics is None else physics(out, x)
        y = y.reshape(-1)
        return y, y

    return fn, frozen


def per_sample_jacobian(model: nn.Module, inputs: torch.Tensor, physics: Physics | None = None,
                        *, params: Iterable[Any] | None = None, method: str = "vmap",
                        chunk_size: int | None = None, return_outputs: bool = False,
                        as_operator: bool = False) -> Any:
    """The stacked per-sample Jacobian ``J = ∂P(f_θ(x_i), x_i)/∂θ`` over a batch.

    Parameters
    ----------
    model : nn.Module
        The network ``f_θ``; it is called on ``x_i.unsqueeze(0)`` (a batch of one).
    inputs : Tensor
        The batch, shape ``(B, ...)``.
    physics : callable, optional
        ``physics(output, input) -> y`` for one sample; ``None`` for ``y = f_θ(x_i)``.
    params : iterable, optional
        Names or ``nn.Parameter`` objects selecting the columns (default: all trainable).
    method : {"vmap", "loop"}
        ``"vmap"``: one ``vmap(jacrev)`` call; ``"loop"``: a Python loop over samples and output
        components (one backward pass each), the reference and the fallback.
    chunk_size : int, optional
        Samples per vectorised call (bounds the memory of ``"vmap"``).
    return_outputs : bool
        Also return the physics outputs ``Y`` (shape ``(B, m)``).
    as_operator : bool
        Return a :class:`newtonkit.operators.MatrixOperator` around ``J`` instead of the tensor.

    Returns
    -------
    J : Tensor or MatrixOperator
        Shape ``(B·m, n)``, sample-major rows, on the device and in the dtype of the model.
    Y : Tensor
        Only with ``return_outputs``: ``(B, m)`` physics outputs at the current parameters.
    """
    names = select_parameters(model, params)
    if not names:
        raise ValueError("no parameters selected (none of the model's parameters requires grad)")
    named = dict(model.named_parameters())
    fn, _ = _single_sample_fn(model, names, physics)
    B, n = inputs.shape[0], sum(named[k].numel() for k in names)
    if method not in ("vmap", "loop"):
        raise ValueError(f"method must be 'vmap' or 'loop', got {method!r}")
    if B == 0:  # (a rank without samples) vmap cannot index an empty batch: m from one zero x
        selected = {k: named[k].detach() for k in names}
        with torch.no_grad():
            m = fn(selected, inputs.new_zeros(inputs.shape[1:]))[0].numel()
        J, Y = selected[names[0]].new_zeros(0, n), selected[names[0]].new_zeros(0, m)
    elif method == "vmap":
        selected = {k: named[k].detach() for k in names}
        jac, Y = vmap(jacrev(fn, has_aux=True), in_dims=(None, 0), chunk_size=chunk_size)(
            selected, inputs)
        m = Y.shape[1]
        J = torch.cat([jac[k].reshape(B, m, -1) for k in names], dim=2).reshape(B * m, -1)
    else:
        leaves = {k: named[k].detach().requires_grad_(True) for k in names}
        rows, ys = [], []
        with torch.enable_grad():
            for i in range(B):
                y, _ = fn(leaves, inputs[i])
                ys.append(y.detach())
                for c in range(y.numel()):
                    grads = torch.autograd.grad(y[c], list(leaves.values()), retain_graph=True,
                                                allow_unused=True)
                    rows.append(torch.cat([
                        torch.zeros_like(leaves[k]).reshape(-1) if g is None else g.reshape(-1)
                        for k, g in zip(names, grads, strict=True)]))
        J, Y = torch.stack(rows), torch.stack(ys)
    out = MatrixOperator(J) if as_operator else J
    return (out, Y) if return_outputs else out


PhysicsJacobian = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def chained_jacobian(model: nn.Module, inputs: torch.Tensor, physics_jacobian: PhysicsJacobian,
                     *, params: Iterable[Any] | None = None,
                     return_outputs: bool = False) -> Any:
    """The stacked per-sample Jacobian by the chain rule ``J_i = P_i · N_i`` (module docstring).

    Equals :func:`per_sample_jacobian` (same row and column order) up to rounding, for the
    physics whose batched Jacobian ``physics_jacobian`` returns.  The network runs once on the
    whole batch; the physics is differentiated only with respect to the network outputs.

    Parameters
    ----------
    model : nn.Module
        The network ``f_θ``, called on the whole batch; sample ``i`` of its output must depend
        on ``x_i`` alone (as for :func:`per_sample_jacobian`; norm layers are checked the same
        way).
    inputs : Tensor
        The batch, shape ``(B, ...)``.
    physics_jacobian : callable
        ``physics_jacobian(outputs, inputs) -> (Y, P)`` for the whole batch: the network outputs
        ``outputs`` (``(B, ...)``, ``k`` values per sample), the physics outputs ``Y``
        (``(B, ...)``, ``m`` values per sample) and their Jacobians ``P`` (``(B, m, k)``,
        ``P[i] = ∂Y_i/∂outputs_i``, both sides flattened per sample).  Called without autograd
        recording.  For a time-stepping physics see :func:`rollout_jacobian`.
    params : iterable, optional
        Names or ``nn.Parameter`` objects selecting the columns (default: all trainable).
    return_outputs : bool
        Also return ``Y`` flattened to ``(B, m)``.

    Returns
    -------
    J : Tensor
        ``(B·m, n)``, sample-major rows: row ``i·m + c`` is ``P[i, c] · ∂f_θ(x_i)/∂θ``.
    Y : Tensor
        Only with ``return_outputs``.
    """
    names = select_parameters(model, params)
    if not names:
        raise ValueError("no parameters selected (none of the model's parameters requires grad)")
    named = dict(model.named_parameters())
    net, _ = _single_sample_fn(model, names, None)
    selected = {k: named[k].detach() for k in names}
    B = inputs.shape[0]
    with torch.no_grad():
        outputs = model(inputs)
        Y, P = physics_jacobian(outputs, inputs)
    n_out = outputs[0].numel()
    Y = Y.reshape(B, -1)
    m = Y.shape[1]
    if P.shape != (B, m, n_out):
        raise ValueError(f"physics_jacobian returned P of shape {tuple(P.shape)}; expected "
                         f"(B, m, k) = ({B}, {m}, {n_out}) for {m} physics outputs and {n_out} "
                         f"network outputs per sample")

    def rows(x: torch.Tensor, p: torch.Tensor) -> dict[str, torch.Tensor]:
        # one sample: its m rows P[i, c] pulled back through the network (m reverse products)
        _, pull = torch.func.vjp(lambda s: net(s, x)[0], selected)
        return vmap(lambda w: pull(w)[0])(p)

    jac = vmap(rows)(inputs, P.to(outputs.dtype))
    J = torch.cat([jac[k].reshape(B, m, -1) for k in names], dim=2).reshape(B * m, -1)
    return (J, Y) if return_outputs else J


def rollout_jacobian(step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                     x0: torch.Tensor, controls: torch.Tensor,
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Final state of ``x_{t+1} = step(x_t, u_t)`` and its Jacobian with respect to the controls.

    For ``T`` steps, ``A_t = ∂step/∂x (x_t, u_t)`` and ``b_t = ∂step/∂u (x_t, u_t)``,

    .. math:: \frac{\partial x_T}{\partial u_t} = A_{T-1} A_{T-2} \cdots A_{t+1}\, b_t,

    computed as: the rollout once without autograd (``T`` calls of ``step`` on the batch), all
    ``A_t, b_t`` in **one** vectorised call (``vmap(jacrev(step))`` over the ``B·T`` visited
    points), then the products by the backward recursion ``L_{T-1} = I``,
    ``L_{t-1} = L_t A_t`` (``T`` small batched matrix products).  Reverse-mode autograd through
    the rollout computes the same sums in another order; the results agree to rounding, about
    ``T · ε`` relative to the products of the ``|A_t|``.

    Parameters
    ----------
    step : callable
        ``step(x, u) -> x_next`` for a batch ``x`` (``(B, d)``) and controls ``u`` (``(B, *c)``);
        it must also accept a single point, ``x`` of shape ``(d,)`` and ``u`` of shape ``c``
        (``vmap`` calls it so).
    x0 : Tensor
        Start states ``(B, d)``.
    controls : Tensor
        ``(B, T, *c)``; ``u_t = controls[:, t]``.

    Returns
    -------
    x_T : Tensor
        ``(B, d)``, the same as ``T`` calls of ``step`` on the batch.
    jac : Tensor
        ``(B, d, T·prod(c))``: ``∂x_T/∂controls`` per sample, controls flattened row-major.
    """
    if x0.ndim != 2:
        raise ValueError(f"x0 must have shape (B, d), got {tuple(x0.shape)}")
    if controls.ndim < 2 or controls.shape[0] != x0.shape[0] or controls.shape[1] == 0:
        raise ValueError(f"controls must have shape (B, T, ...) with B = {x0.shape[0]} (the "
                         f"batch of x0) and T >= 1 steps, got {tuple(controls.shape)}")
    (B, d), T, c_shape = x0.shape, controls.shape[1], controls.shape[2:]
    with torch.no_grad():
        states, x = [], x0
        for t in range(T):
            states.append(x)
            x = step(x, controls[:, t])
        X = torch.stack(states, dim=1).reshape(B * T, d)
        U = controls.reshape(B * T, *c_shape)
        A, b = vmap(jacrev(step, argnums=(0, 1)))(X, U)
    A = A.reshape(B, T, d, d).transpose(0, 1).contiguous()  # (T, B, d, d): A[t] contiguous
    b = b.reshape(B, T, d, -1)  # (B, T, d, c)
    L = torch.eye(d, dtype=x.dtype, device=x.device).expand(B, d, d)
    chain = [L]
    for t in range(T - 1, 0, -1):  # L_{t-1} = L_t A_t
        L = L @ A[t]
        chain.append(L)
    Ls = torch.stack(chain[::-1], dim=1)  # (B, T, d, d): L_t = ∂x_T/∂x_{t+1}
    jac = (Ls @ b).permute(0, 2, 1, 3).reshape(B, d, -1)
    return x, jac


def batched_outputs(model: nn.Module, inputs: torch.Tensor,
                    physics: Physics | None = None) -> torch.Tensor:
    """The physics outputs ``Y`` (``(B, m)``) of a batch, differentiable w.r.t. the parameters.

    Uses the model on the whole batch and ``vmap(physics)`` over samples.
    """
    out = model(inputs)
    y = out if physics is None else vmap(physics)(out, inputs)
    return y.reshape(inputs.shape[0], -1)


def per_sample_jacobian_operator(model: nn.Module, inputs: torch.Tensor,
                                 physics: Physics | None = None, *,
                                 params: Iterable[Any] | None = None) -> FunctionOperator:
    """The stacked per-sample Jacobian as a matrix-free operator (``J v`` and ``Jᵀ w``).

    ``matvec`` is one forward-mode pass ``torch.func.jvp`` and ``rmatvec`` one reverse pass
    ``torch.func.vjp`` of ``θ ↦ [P(f_θ(x_i), x_i)]_i`` at the current parameters; ``J`` is never
    formed.  Parameters as in :func:`per_sample_jacobian`.
    """
    _load_forward_ad()
    names = select_parameters(model, params)
    if not names:
        raise ValueError("no parameters selected (none of the model's parameters requires grad)")
    if inputs.shape[0] == 0:
        raise ValueError("per_sample_jacobian_operator needs at least one sample (an operator "
                         "has no empty shape); per_sample_jacobian gives the (0, n) matrix")
    named = dict(model.named_parameters())
    fn, _ = _single_sample_fn(model, names, physics)
    shapes = [named[k].shape for k in names]
    sizes = [math.prod(s) for s in shapes]
    theta = flat_parameters(named[k] for k in names)

    def unflatten(t: torch.Tensor) -> dict[str, torch.Tensor]:
        parts = torch.split(t, sizes)
        return {k: p.reshape(s) for k, p, s in zip(names, parts, shapes, strict=True)}

    def F(t: torch.Tensor) -> torch.Tensor:
        return vmap(lambda x: fn(unflatten(t), x)[0])(inputs).reshape(-1)

    with torch.no_grad():
        m_total = F(theta).numel()

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(F, (theta,), (v.to(theta.dtype),))[1]

    def rmatvec(w: torch.Tensor) -> torch.Tensor:
        _, pull = torch.func.vjp(F, theta)
        return pull(w.to(theta.dtype))[0]

    def matmat(V: torch.Tensor) -> torch.Tensor:
        return vmap(matvec, in_dims=1, out_dims=1)(V)

    def rmatmat(W: torch.Tensor) -> torch.Tensor:
        _, pull = torch.func.vjp(F, theta)
        return vmap(lambda w: pull(w)[0], in_dims=1, out_dims=1)(W.to(theta.dtype))

    return FunctionOperator((m_total, theta.numel()), matvec, rmatvec, like=theta,
                            matmat=matmat, rmatmat=rmatmat)
