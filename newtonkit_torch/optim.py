"""``torch.optim`` optimizers that invert the physics Jacobian: HIG and Gauss-Newton.

Both take one mini-batch step from the stacked per-sample Jacobian ``J = ∂y/∂θ``
(``B·m × n``, rows sample-major) of the *physics outputs* ``y`` and the loss gradient
``g = (∂L/∂y)ᵀ`` (length ``B·m``):

- HIG (Schnell, Holl & Thuerey 2022): ``θ ← θ − η · V Σ^κ Uᵀ g`` for ``J = U Σ Vᵀ``, ``κ = −1/2``,
  singular values ``σ ≤ truncation · σ_max`` discarded
  (:func:`newtonkit.linalg.half_inverse`);
- Gauss-Newton: the truncated pseudo-inverse ``θ ← θ − η · J⁺ g`` (``κ = −1``, same truncation),
  or with ``damping = μ > 0`` Levenberg-Marquardt ``θ ← θ − η (JᵀJ + μI)⁻¹ Jᵀ g``
  (:func:`newtonkit.linalg.gauss_newton_step`), or with ``adaptive=True`` Levenberg-Marquardt
  whose damping follows Marquardt's rule (a step that does not lower the batch loss is undone
  and retried with more damping; the closure is called again for every trial).

The closure
-----------
``step(closure)`` calls ``closure()`` once with gradients enabled (``GaussNewton(adaptive=True)``
once more per trial step, on the same mini-batch).  It returns either

``(y, loss)``
    ``y``: the per-sample physics outputs, shape ``(B, ...)`` (flattened to ``B·m``), computed
    from the parameters with the autograd graph kept; ``loss``: a 0-d tensor computed from
    ``y``.  ``J`` is then built by batched reverse mode over the ``B·m`` rows of ``y`` (general,
    but every row costs a backward pass through the whole batch), or
``(y, loss, J)``
    with the Jacobian already formed, columns in the optimizer's order of its trainable
    parameters (all groups, each parameter flattened).  :meth:`physics_closure` builds such a
    closure with ``vmap`` per-sample Jacobians (the fast path): ``closure =
    opt.physics_closure(model, x, physics, loss_fn)``.

``step`` returns the loss (detached).  Parameter groups whose direction settings agree are
solved jointly on their combined columns; each group's ``lr`` scales its own part of the step.

Routes
------
The direction is solved on one of the routes of :mod:`newtonkit.linalg` (``docs/routes.md``):
for ``J`` of ``N`` rows and ``P`` columns, ``"kernel"`` (``N < P``: the ``N × N`` Gram
``JJᵀ``, nothing ``P × P``), ``"normal"`` (``N ≥ P``), ``"svd"``, or ``"matrix-free"`` (CG on
the kernel system; for HIG a randomized SVD whose rank follows the truncation).  ``route=
"auto"`` (default) picks it from the shapes and ``memory_budget`` (bytes, default 2 GiB); the
route taken is in ``last_info["solves"][i].route`` and in each trained parameter's state
(``opt.state[p]["route"]``).

Line search
-----------
With ``line_search="grid"`` (energy natural gradient descent, Müller & Zeinhofer 2023) the
step is ``θ ← θ − η* · lr · d`` with ``η*`` the factor of ``step_sizes`` (default ENGD's grid
``2⁻ᵏ``, ``k = 0 … 30``) whose trial point has the lowest loss, all of them evaluated;
``"backtracking"`` takes the first factor, in the order given, whose loss is below the current
one.  Either way a step is taken only if its loss is strictly below the loss at ``θ`` (both
from the same loss evaluation); otherwise the parameters are left unchanged (bit for bit) and
``last_info["line_search"]["step_size"]`` is 0.  When ``η = 1`` is chosen the parameters are
exactly those of the plain step.  The trials are evaluated by ``step(closure, loss_closure)``:
``loss_closure()`` returns the 0-d loss at the current parameters (gradients are enabled, in
case the loss needs input derivatives as a PINN residual does; no Jacobian is wanted);
by default the ``loss`` attribute of a :meth:`~JacobianOptimizer.physics_closure` closure (one
batched forward), else ``closure()[1]``.  Each step costs ``len(step_sizes) + 1`` loss
evaluations with ``"grid"`` and ``≤`` that with ``"backtracking"``.  The groups solved
separately share one ``η`` (the search is over the combined step); box bounds project every
trial point.  ``last_info["line_search"]``: ``step_size``, ``loss`` (at the chosen point),
``initial_loss``, ``evaluations``.

Momentum (SPRING)
-----------------
``GaussNewton(momentum=μ)`` (a per-group setting, ``0 ≤ μ < 1``, default 0: no momentum) is
SPRING (Goldshlager, Abrahamsen & Lin 2024): the direction solves
``min_d ‖J d − g‖² + λ‖d − μ d₋‖²`` for the previous direction ``d₋``, i.e. the route's usual
solve with the right-hand side ``g − μ J d₋``, plus ``μ d₋`` (``GaussNewton`` docstring).
``d₋`` is kept per parameter as ``opt.state[p]["momentum_buffer"]`` (so ``state_dict``
carries it): the direction before ``lr`` and the line search's factor, and before the box
projection.  It starts at 0 and restarts at 0 (the buffer is ``None``) after a step that is
not taken: the line search found no lower loss, or the direction was not finite.  With
``μ = 0`` nothing is stored and the step is the plain one, bit for bit.  Momentum and
``adaptive=True`` do not combine (``ValueError``).

Averaged Gramian (ENGD)
-----------------------
``GaussNewton(gram_ema=β)`` (a per-group setting, ``0 ≤ β < 1``, default 0: off) keeps an
exponential moving average of the Gramian over steps, as energy natural gradient descent does
for PINNs whose points are drawn anew every step (Müller & Zeinhofer 2023; Dangel, Müller &
Zeinhofer 2024): ``G_k = β G_{k−1} + (1 − β) J_kᵀJ_k`` from ``G_0 = 0``, and the direction
``d = (Ĝ_k + λI)⁺ J_kᵀ g`` with the bias-corrected ``Ĝ_k = G_k / (1 − β^k)`` (so the first
step is the plain damped step).  ``G`` is ``P × P`` (the ``"normal"`` route's Gram, stored as
``opt.state[p]["gram"]`` of the solve's first parameter ``p``, with ``"gram_steps"`` = k;
``state_dict`` carries both, and ``"gram_columns"``, which of the group's parameters are
trainable); it restarts when the trainable columns change (other parameters, or another
number).  The solve is the eigendecomposition of ``Ĝ + λI``: eigenvalues at or below
``P·ε`` times the largest are the eigensolver's rounding and are dropped (LAPACK ``gelsd``'s
default cutoff, the
pseudo-inverse ENGD takes), and with ``λ = 0`` also the singular values ``√eigenvalue`` at or
below the ``truncation``.  ``route`` must be ``"auto"`` or ``"normal"``; ``gram_ema`` does not
combine with ``momentum`` or ``adaptive=True`` (``ValueError``).  It needs about ``3P²``
entries (the average, ``JᵀJ``, the eigenvectors): more than an explicit ``memory_budget`` is a
``ValueError`` at the step, before anything changes.  ``last_info["solves"]`` holds a
:class:`AveragedGramInfo`.

Frozen parameters, batch norm, autograd, state_dict
---------------------------------------------------
- Only parameters with ``requires_grad=True`` at the time of the step are trained, as in
  ``torch.optim``: ``J`` has columns for them alone, and frozen parameters
  (``requires_grad=False``) stay untouched, bit for bit, in both closure styles.
- :meth:`physics_closure` differentiates one sample at a time, so it refuses (``ValueError``
  naming the layer) batch norm in train mode or without running statistics: call
  ``model.eval()``, or use a ``(y, loss)`` closure on the whole batch, which differentiates
  through the batch statistics; its ordinary forward then updates the running statistics once
  per closure call: once per step, and once more per trial step, rejected ones included
  (``GaussNewton(adaptive=True)``, and a line search whose loss is ``closure()[1]``: pass a
  ``loss_closure`` that evaluates in eval mode to keep the statistics of trial points out).
- Parameters are updated in place under ``torch.no_grad``: they stay leaves without history,
  and the returned loss and ``last_info`` carry no autograd graph.
- ``state_dict()`` records the optimizer class (key ``"optimizer"``); ``load_state_dict``
  refuses a state_dict whose parameter groups hold another optimizer's settings (a
  ``GaussNewton`` state_dict into ``HIG``, ``HIG`` into ``GaussNewton``, ``torch.optim.Adam``'s).

Box bounds
----------
Physical parameters often have a range (a velocity or a rate is positive, a fraction lies in
[0, 1]).  A parameter group may carry ``"bounds": (lower, upper)``, each ``None`` (no bound on
that side), a number or a tensor broadcastable to every parameter of the group::

    opt = GaussNewton([{"params": [velocity], "bounds": (1500.0, 5500.0)},
                       {"params": [rates], "bounds": (0.0, None)},
                       {"params": net.parameters()}])

After every step (and every trial step of ``GaussNewton(adaptive=True)``, before the closure
sees it) the group's trainable parameters are projected onto the box (``clamp``); the
direction itself is the unconstrained one (a projected step, not a bounded solve), so a
parameter whose unconstrained optimum lies outside the box ends on the bound.  Frozen
parameters are not touched.  A parameter that starts outside its box is moved in at the
first step.  ``lower > upper`` anywhere, or a NaN bound, is a ``ValueError`` when the group is
added.  The bounds are part of the group's settings: ``state_dict`` saves them and
``load_state_dict`` restores them (a state_dict saved before bounds existed loads with none).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from newtonkit import checks as C
from newtonkit.checks import all_finite
from newtonkit.linalg import gauss_newton_step, half_inverse, truncated_svd

from .autograd import unit_rows
from .jacobians import Physics, batched_outputs, chained_jacobian, per_sample_jacobian

__all__ = ["HIG", "AveragedGramInfo", "GaussNewton", "JacobianOptimizer"]

Closure = Callable[[], tuple]
GN_ROUTES = ("auto", "svd", "kernel", "normal", "matrix-free")
LINE_SEARCHES = ("grid", "backtracking")
#: ENGD's grid (Müller & Zeinhofer 2023): η = 2⁻ᵏ, k = 0 … 30, largest first.
STEP_SIZES = tuple(2.0 ** -k for k in range(31))


def closure_outputs(closure: Closure, params: list[torch.Tensor],
                    chunk_size: int | None) -> tuple[torch.Tensor, ...]:
    """Call a ``(y, loss)`` or ``(y, loss, J)`` closure: ``(y, loss, ∂loss/∂y, J)``, with
    ``J = ∂y/∂params`` by reverse mode, row by row, when the closure gives none."""
    with torch.enable_grad():
        out = closure()
        if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
            raise TypeError("the closure must return (y, loss) or (y, loss, J)")
        y, loss = out[0], out[1]
        J = out[2] if len(out) == 3 else None
        if loss.numel() != 1:
            raise ValueError(f"the loss must be a scalar, got shape {tuple(loss.shape)}")
        (gy,) = torch.autograd.grad(loss.reshape(()), y, retain_graph=J is None)
        if J is None:
            J = _jacobian_by_rows(y, params, chunk_size)
    return y, loss, gy, J


def _jacobian_by_rows(y: torch.Tensor, params: list[torch.Tensor],
                      chunk_size: int | None = None) -> torch.Tensor:
    """Dense ``∂y/∂θ`` (rows of ``y`` flat) by batched reverse mode, looping where unsupported.
    A ``y`` that depends on none of ``params`` (detached in the closure) is a ``ValueError``:
    its Jacobian would be 0 and the step a silent no-op."""
    if y.grad_fn is None and not any(p is y for p in params):
        raise ValueError("the closure's y depends on none of the optimizer's parameters (was "
                         "it detached, or computed under torch.no_grad()?): its Jacobian is 0")
    y = y.reshape(-1)
    m = y.numel()
    k = m if chunk_size is None else max(1, int(chunk_size))
    cols = [p.numel() for p in params]
    blocks = []
    for start in range(0, m, k):
        stop = min(m, start + k)
        E = unit_rows(start, stop, m, y.dtype, y.device)
        try:
            gs = torch.autograd.grad(y, params, E, retain_graph=True, is_grads_batched=True,
                                     allow_unused=True)
            gs = [torch.zeros(stop - start, c, dtype=y.dtype, device=y.device) if g is None
                  else g.reshape(stop - start, -1) for g, c in zip(gs, cols, strict=True)]
            blocks.append(torch.cat(gs, dim=1))
        except (RuntimeError, NotImplementedError):
            for e in E:
                gs = torch.autograd.grad(y, params, e, retain_graph=True, allow_unused=True)
                blocks.append(torch.cat([torch.zeros(c, dtype=y.dtype, device=y.device)
                                         if g is None else g.reshape(-1)
                                         for g, c in zip(gs, cols, strict=True)])[None])
    return torch.cat(blocks, dim=0)


def _checked_bounds(bounds: Any, params: list[torch.Tensor]) -> tuple | None:
    """``bounds`` as ``(lower, upper)`` (each ``None``, a float or a detached tensor), checked
    against every parameter: broadcastable, no NaN, ``lower <= upper``."""
    if bounds is None:
        return None
    if not (isinstance(bounds, (tuple, list)) and len(bounds) == 2):
        raise ValueError(f"a parameter group's bounds must be a pair (lower, upper) of None, "
                         f"numbers or tensors, got {bounds!r}")
    out = []
    for side in bounds:
        if side is None or isinstance(side, torch.Tensor):
            out.append(None if side is None else side.detach().clone())
        else:
            try:
                out.append(float(side))
            except (TypeError, ValueError):
                raise ValueError(f"bounds must be None, numbers or tensors, got "
                                 f"{type(side).__name__}") from None
    lo, hi = out
    for p in params:
        lo_t, hi_t = (torch.as_tensor(default if b is None else b, dtype=torch.float64)
                      for b, default in ((lo, -torch.inf), (hi, torch.inf)))
        try:
            lo_t, hi_t = (torch.broadcast_to(b, p.shape) for b in (lo_t, hi_t))
        except RuntimeError:
            raise ValueError(f"bounds of shapes {tuple(lo_t.shape)}, {tuple(hi_t.shape)} do not "
                             f"broadcast to a parameter of shape {tuple(p.shape)}") from None
        if bool(torch.isnan(lo_t).any() | torch.isnan(hi_t).any()):
            raise ValueError("bounds contain NaN")
        if bool((lo_t > hi_t).any()):
            raise ValueError(f"lower bound > upper bound for a parameter of shape "
                             f"{tuple(p.shape)} (lower must be <= upper everywhere)")
    return lo, hi


def _checked_line_search(line_search: Any, step_sizes: Any) -> tuple[str | None, tuple]:
    """``(line_search, step_sizes)`` checked; ``step_sizes`` defaults to ENGD's grid."""
    if line_search is not None:
        line_search = C.choice(line_search, "line_search", LINE_SEARCHES)
    if step_sizes is None:
        return line_search, STEP_SIZES if line_search else ()
    if line_search is None:
        raise ValueError("step_sizes is only used with a line search: pass line_search='grid' "
                         "or 'backtracking' as well")
    if isinstance(step_sizes, (str, bytes)) or not isinstance(step_sizes, Iterable):
        raise TypeError(f"step_sizes must be a sequence of positive numbers, got "
                        f"{type(step_sizes).__name__}")
    sizes = tuple(C.real(float(e) if isinstance(e, torch.Tensor) else e, "each of step_sizes",
                         low=0.0, low_open=True) for e in step_sizes)
    if not sizes:
        raise ValueError("step_sizes is empty: give at least one step size η > 0")
    return line_search, sizes


class JacobianOptimizer(torch.optim.Optimizer):
    """Base class: a step ``θ ← θ − lr · D(J, g)`` from the physics Jacobian (see module doc).

    Subclasses define ``_solve_key(group)`` (the settings that must agree for a joint solve) and
    ``_direction(J, g, group) -> (d, info)``.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any],
                 jacobian_chunk_size: int | None = None,
                 memory_budget: float | None = None, line_search: str | None = None,
                 step_sizes: Iterable[float] | None = None) -> None:
        defaults.setdefault("bounds", None)
        super().__init__(params, defaults)
        self.jacobian_chunk_size = jacobian_chunk_size
        #: Bytes for the automatic route choice (None: newtonkit.linalg's default, 2 GiB).
        self.memory_budget = memory_budget
        #: None, "grid" or "backtracking", and the factors η it tries (module doc, Line search).
        self.line_search, self.step_sizes = _checked_line_search(line_search, step_sizes)
        #: Diagnostics of the last step: loss, and for every joint solve its info object.
        self.last_info: dict[str, Any] = {}

    # -- subclass interface --------------------------------------------------------------------
    def _solve_key(self, group: dict[str, Any]) -> tuple:
        raise NotImplementedError

    def _direction(self, J: torch.Tensor, g: torch.Tensor,
                   group: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    # -- state_dict ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """``torch.optim.Optimizer.state_dict()`` plus ``"optimizer"``: this class's name."""
        state = super().state_dict()
        state["optimizer"] = type(self).__name__
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a state_dict whose parameter groups hold exactly this optimizer's settings.

        Raises ``ValueError`` for another optimizer's state_dict (say ``GaussNewton``'s into
        ``HIG``, or ``torch.optim.Adam``'s), before anything is loaded.
        """
        optional = {"bounds", "route", "momentum", "gram_ema"}  # older ones may lack them
        mine = sorted(set(self.defaults) - optional)
        for saved in state_dict["param_groups"]:
            theirs = sorted(set(saved) - {"params", "param_names"} - optional)
            if theirs != mine:
                name = type(self).__name__
                source = state_dict.get("optimizer")
                origin = f"a {source} state_dict" if source else "another optimizer's state_dict"
                raise ValueError(
                    f"{name}.load_state_dict: this is {origin}, not a {name} one: its parameter "
                    f"groups have the settings {theirs}, {name} has {mine}; load it into the "
                    f"optimizer that saved it")
            # the settings, checked before anything is loaded (a copy: the dict is the user's)
            self._check_settings({**self.defaults, **{k: v for k, v in saved.items()
                                                      if k not in ("params", "param_names")}})
        super().load_state_dict(state_dict)
        for group in self.param_groups:
            group.setdefault("bounds", None)
            if "route" in self.defaults:
                group.setdefault("route", "auto")
            for name in ("momentum", "gram_ema"):
                if name in self.defaults:
                    group.setdefault(name, 0.0)

    # -- box bounds ------------------------------------------------------------------------------
    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """``torch.optim.Optimizer.add_param_group``, checking the group's ``"bounds"`` and
        settings (:meth:`_check_settings`)."""
        checked = {**self.defaults, **param_group}
        self._check_settings(checked)  # before the group is added (a copy: the dict is the user's)
        super().add_param_group(param_group)
        group = self.param_groups[-1]
        group.update({k: v for k, v in checked.items() if k in self.defaults})
        group["bounds"] = _checked_bounds(group["bounds"], group["params"])

    def _check_settings(self, group: dict[str, Any]) -> None:
        """A group's settings, checked as the constructor checks its defaults (a group may
        override any of them, here or in a loaded state_dict): ``lr > 0``."""
        group["lr"] = C.real(group["lr"], "lr", low=0.0, low_open=True)

    @staticmethod
    def _project(groups: list[dict[str, Any]]) -> None:
        """Clamp the trainable parameters of ``groups`` onto their groups' boxes."""
        for grp in groups:
            if grp.get("bounds") is None:
                continue
            lo, hi = grp["bounds"]
            for p in grp["params"]:
                if not p.requires_grad:
                    continue
                if lo is not None:
                    p.clamp_(min=torch.as_tensor(lo, dtype=p.dtype, device=p.device))
                if hi is not None:
                    p.clamp_(max=torch.as_tensor(hi, dtype=p.dtype, device=p.device))

    # -- the step ------------------------------------------------------------------------------
    @staticmethod
    def _trainable(groups: list[dict[str, Any]]) -> list[torch.Tensor]:
        """The parameters of ``groups`` that require grad, in order (the columns of ``J``)."""
        return [p for grp in groups for p in grp["params"] if p.requires_grad]

    def trainable_params(self) -> list[torch.Tensor]:
        """The parameters of all groups that require grad, in order: the columns of ``J``
        (each flattened), as a ``(y, loss, J)`` closure must lay them out."""
        return self._trainable(self.param_groups)

    def physics_closure(self, model: nn.Module, inputs: torch.Tensor,
                        physics: Physics | None,
                        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        chunk_size: int | None = None,
                        physics_jacobian: Callable | None = None) -> Closure:
        """A closure ``() -> (y, loss, J)`` with per-sample Jacobians by ``vmap``, or by the
        chain rule ``J_i = P_i N_i`` when ``physics_jacobian`` is given.

        ``J`` has the columns of the parameters that require grad when the closure is called.
        A norm layer the per-sample Jacobian cannot represent (batch norm in train mode or with
        ``track_running_stats=False``, any norm layer in train mode that tracks running
        statistics) is refused with a ``ValueError`` naming it: call ``model.eval()``, or use a
        ``(y, loss)`` closure (module docstring).

        Parameters
        ----------
        model : nn.Module
            The network; every trainable parameter of this optimizer must belong to it.
        inputs : Tensor
            The mini-batch ``(B, ...)``.
        physics : callable or None
            ``physics(output, input) -> y`` for one sample (see :mod:`newtonkit_torch.jacobians`).
        loss_fn : callable
            ``loss_fn(y, inputs) -> 0-d tensor`` for the batch of physics outputs ``y`` (B, m).
        chunk_size : int, optional
            Samples per vectorised Jacobian call.
        physics_jacobian : callable, optional
            ``physics_jacobian(outputs, inputs) -> (Y, P)`` for the whole batch (the physics
            outputs and their Jacobians with respect to the network outputs, ``(B, m, k)``):
            ``J`` by :func:`~newtonkit_torch.jacobians.chained_jacobian`, which differentiates
            the physics with respect to the network outputs only (e.g. a time-stepping physics
            by :func:`~newtonkit_torch.jacobians.rollout_jacobian`).  ``physics`` still gives
            the outputs of the line search's trial points.
        """
        def closure() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            # looked up per call: requires_grad and train/eval mode may change between steps
            if physics_jacobian is not None:
                J, Y = chained_jacobian(model, inputs, physics_jacobian,
                                        params=self.trainable_params(), return_outputs=True)
            else:
                J, Y = per_sample_jacobian(model, inputs, physics, params=self.trainable_params(),
                                           chunk_size=chunk_size, return_outputs=True)
            y = Y.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = loss_fn(y, inputs)
            return y, loss, J

        def loss_only() -> torch.Tensor:
            # the same outputs by one batched forward, for the line search's trial points
            with torch.no_grad():
                return loss_fn(batched_outputs(model, inputs, physics), inputs)

        closure.loss = loss_only  # type: ignore[attr-defined]
        return closure

    def _linearize(self, closure: Closure | None) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor, list]:
        """Call the closure; return ``(loss, J, g, solves)``.

        ``solves`` lists ``(groups, Jg)``: the parameter groups solved jointly and their
        columns of ``J``.
        """
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure returning (y, loss) or "
                             f"(y, loss, J): the Jacobian of the physics outputs y is required")
        params = self.trainable_params()
        if not params:
            raise ValueError(f"{type(self).__name__}: none of its parameters requires grad; "
                             f"there is nothing to train")
        with torch.no_grad():  # a parameter outside its box is moved in before the closure
            self._project(self.param_groups)  # sees it (the search compares feasible points)
        y, loss, gy, J = closure_outputs(closure, params, self.jacobian_chunk_size)
        g = gy.reshape(-1).to(J.dtype)
        if not (all_finite(torch, g) and all_finite(torch, J) and all_finite(torch, loss)):
            raise FloatingPointError(
                f"{type(self).__name__}: the loss, its gradient or the Jacobian at the current "
                f"parameters is not finite (loss {float(loss):.4g}); the model has diverged, "
                f"no step is taken (a parameter that started outside its bounds was clamped "
                f"onto them first)")
        n_total = sum(p.numel() for p in params)
        if J.shape != (g.numel(), n_total):
            raise ValueError(f"J has shape {tuple(J.shape)}; expected ({g.numel()}, {n_total}) "
                             f"(rows = outputs of y, columns = this optimizer's parameters "
                             f"that require grad)")
        # Column offsets of every parameter, and the groups that share one solve.
        offsets, start = {}, 0
        for p in params:
            offsets[id(p)] = (start, start + p.numel())
            start += p.numel()
        keyed: dict[tuple, list[dict[str, Any]]] = {}
        for group in self.param_groups:
            if self._trainable([group]):
                keyed.setdefault(self._solve_key(group), []).append(group)
        solves = []
        for groups in keyed.values():
            ps = self._trainable(groups)
            idx = torch.cat([torch.arange(*offsets[id(p)], device=J.device) for p in ps])
            solves.append((groups, J if idx.numel() == n_total else J[:, idx]))
        return loss.detach(), J, g, solves

    @staticmethod
    def _add(groups: list[dict[str, Any]], d: torch.Tensor, sign: float = -1.0) -> None:
        """``θ ← θ + sign · lr · d`` over the trainable parameters of ``groups`` (in order)."""
        pos = 0
        for grp in groups:
            for p in grp["params"]:
                if not p.requires_grad:
                    continue
                k = p.numel()
                p.add_(d[pos:pos + k].reshape(p.shape).to(p.dtype), alpha=sign * grp["lr"])
                pos += k

    def _count_step(self, groups: list[dict[str, Any]], route: str | None = None) -> None:
        for p in self._trainable(groups):
            st = self.state[p]
            st["step"] = st.get("step", 0) + 1
            if route is not None:
                st["route"] = route

    @torch.no_grad()
    def step(self, closure: Closure | None = None,  # type: ignore[override]
             loss_closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """One step; ``closure() -> (y, loss)`` or ``(y, loss, J)`` (see the module docstring).

        ``loss_closure() -> loss`` (0-d) evaluates the loss alone at the current parameters for
        the line search (module docstring, Line search); it defaults to the ``loss`` attribute
        of a :meth:`physics_closure` closure, else to ``closure()[1]``.
        """
        loss, J, g, solves = self._linearize(closure)
        infos, moves = [], []
        for groups, Jg in solves:
            mu = groups[0].get("momentum", 0.0)
            if mu:  # SPRING (GaussNewton docstring): d = μ d₋ + D(J, g − μ J d₋)
                d_prev = self._momentum_buffer(groups, Jg)
                d, info = self._direction(Jg, g - mu * (Jg @ d_prev), groups[0])
                d = d + mu * d_prev
            else:
                d, info = self._direction(Jg, g, groups[0])
            infos.append(info)
            if not all_finite(torch, d):
                warnings.warn(f"{type(self).__name__}: the step has non-finite entries; the "
                              f"parameters are left unchanged", RuntimeWarning, stacklevel=2)
                self._store_momentum(groups, None)
                continue
            moves.append((groups, d, getattr(info, "route", None)))
        self.last_info = {"loss": loss, "solves": infos}
        if self.line_search is None:
            self._move(moves, 1.0)
        else:
            eta, search = self._search(moves, _loss_closure(closure, loss_closure))
            self.last_info["line_search"] = search
            if eta == 0.0:  # no step taken: the momentum restarts from 0
                for groups, _, _ in moves:
                    self._store_momentum(groups, None)
                return loss
        for groups, d, route in moves:
            self._store_momentum(groups, d)
            self._count_step(groups, route)
        return loss

    def _momentum_buffer(self, groups: list[dict[str, Any]], J: torch.Tensor) -> torch.Tensor:
        """The previous direction ``d₋`` over the trainable parameters of ``groups`` (zeros for
        a parameter without a ``momentum_buffer``: the first step, or after a restart)."""
        return torch.cat([self.state[p]["momentum_buffer"].reshape(-1).to(J.dtype)
                          if self.state[p].get("momentum_buffer") is not None
                          else torch.zeros(p.numel(), dtype=J.dtype, device=J.device)
                          for p in self._trainable(groups)])

    def _store_momentum(self, groups: list[dict[str, Any]], d: torch.Tensor | None) -> None:
        """``state[p]["momentum_buffer"]``: ``p``'s part of ``d`` (``None``: cleared), for the
        groups with ``momentum > 0``."""
        if not groups[0].get("momentum", 0.0):
            return
        pos = 0
        for p in self._trainable(groups):
            k = p.numel()
            self.state[p]["momentum_buffer"] = None if d is None else \
                d[pos:pos + k].reshape(p.shape).clone()
            pos += k

    def _move(self, moves: list, eta: float) -> None:
        """``θ ← θ − η · lr · d`` for every ``(groups, d, route)``, then the boxes."""
        for groups, d, _ in moves:
            self._add(groups, d, sign=-eta)
            self._project(groups)

    def _search(self, moves: list, loss_at: Callable[[], torch.Tensor]) -> tuple[float, dict]:
        """The line search over ``self.step_sizes``; the parameters end at the chosen ``η``
        (``0.0``: none lowered the loss, parameters restored bit for bit)."""
        params = self._trainable([grp for groups, _, _ in moves for grp in groups])
        saved = [p.detach().clone() for p in params]

        def value() -> float:
            with torch.enable_grad():
                f = loss_at()
            if not isinstance(f, torch.Tensor) or f.numel() != 1:
                raise ValueError("the loss closure of the line search must return a 0-d "
                                 "tensor (the loss at the current parameters)")
            f = float(f.detach())
            return f if math.isfinite(f) else math.inf

        def restore() -> None:
            for p, p0 in zip(params, saved, strict=True):
                p.copy_(p0)

        try:
            f0 = value()
            best, f_best, evaluations = 0.0, f0, 1
            for eta in self.step_sizes if moves else ():
                self._move(moves, eta)
                f = value()
                restore()
                evaluations += 1
                if f < f_best:
                    best, f_best = eta, f
                    if self.line_search == "backtracking":
                        break
        except BaseException:
            restore()
            raise
        if best:
            self._move(moves, best)
        return best, {"step_size": best, "loss": f_best, "initial_loss": f0,
                      "evaluations": evaluations}


def _checked_flag(value: Any, name: str) -> bool:
    """A bool setting (Python or NumPy bool; not a string such as ``"no"``)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def _checked_fraction(value: Any, name: str) -> float:
    """``value`` as a float in ``[0, 1)``."""
    v = C.real(float(value) if isinstance(value, torch.Tensor) else value, name, low=0.0)
    if v >= 1.0:
        raise ValueError(f"{name} must be < 1, got {v:g}")
    return v


@dataclass(frozen=True)
class AveragedGramInfo:
    """What a ``GaussNewton(gram_ema=β)`` solve did (module docstring, Averaged Gramian).

    Attributes
    ----------
    rank : int
        Eigenvalues of ``Ĝ + μI`` kept.
    steps : int
        ``k``: the Jacobians averaged so far, this one included.
    eigenvalue_max : float
        The largest eigenvalue of ``Ĝ`` (``σ_max²`` of a single ``J``).
    route : str
        ``"gram-ema"``.
    """

    rank: int
    steps: int
    eigenvalue_max: float
    route: str = "gram-ema"


def _pseudo_solve(G: torch.Tensor, b: torch.Tensor, damping: float, truncation: float,
                  relative: bool) -> tuple[torch.Tensor, int, float]:
    """``((G + μI)⁺ b, rank, λ_max(G))`` for a symmetric positive semi-definite ``G``, by its
    eigendecomposition ``G = QΛQᵀ``: eigenvalues ``λ + μ ≤ n·ε·(λ_max + μ)`` are rounding (the
    eigensolver's backward error is ``O(ε‖G‖)``) and dropped, and for ``μ = 0`` also those with
    ``√λ`` at or below the ``truncation`` (relative to ``√λ_max``, or absolute)."""
    lam, Q = torch.linalg.eigh(G)  # ascending
    lam_max = float(lam[-1]) if lam.numel() else 0.0
    cut = G.shape[0] * torch.finfo(G.dtype).eps * (lam_max + damping)
    if damping == 0.0:
        cut = max(cut, (truncation * math.sqrt(max(lam_max, 0.0)) if relative else truncation) ** 2)
    keep = lam + damping > cut
    Qk = Q[:, keep]
    return Qk @ ((Qk.T @ b) / (lam[keep] + damping)), int(keep.sum()), lam_max


def _loss_closure(closure: Closure, loss_closure: Callable[[], torch.Tensor] | None
                  ) -> Callable[[], torch.Tensor]:
    if loss_closure is not None:
        if not callable(loss_closure):
            raise TypeError(f"loss_closure must be callable, got {type(loss_closure).__name__}")
        return loss_closure
    return getattr(closure, "loss", None) or (lambda: closure()[1])


class HIG(JacobianOptimizer):
    r"""Half-Inverse Gradients: ``θ ← θ − lr · V Σ^κ Uᵀ (∂L/∂y)ᵀ`` for ``J = ∂y/∂θ = U Σ Vᵀ``.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups.
    lr : float
        The step ``η`` (1.0 in the paper).
    exponent : float
        ``κ``: −1/2 is HIG, −1 the pseudo-inverse, +1 gradient descent (on ``Jᵀg``).
    truncation : float
        Singular values ``σ ≤ truncation · σ_max`` (absolute threshold if ``relative=False``)
        are discarded, never clamped.
    relative : bool
        Threshold relative to ``σ_max`` (default) or absolute.
    route : str
        :func:`newtonkit.linalg.half_inverse` route: ``"auto"``, ``"svd"``, ``"gram"``,
        ``"kernel"``, ``"normal"``, ``"matrix-free"`` (module docstring, Routes).
    jacobian_chunk_size : int, optional
        Rows per batched reverse call when the closure does not return ``J``.
    memory_budget : float, optional
        Bytes for ``route="auto"`` (default 2 GiB).
    line_search : {None, "grid", "backtracking"}
        ``None``: the plain step ``θ − lr·d``; otherwise ``θ − η·lr·d`` with ``η`` from
        ``step_sizes`` (module docstring, Line search).
    step_sizes : sequence of float, optional
        The factors ``η > 0`` the line search tries (default ``2⁻ᵏ``, ``k = 0 … 30``).

    Notes
    -----
    The direction is exactly ``newtonkit.linalg.half_inverse(J, g, exponent, truncation)`` on
    the Jacobian and loss gradient the closure provides; see the module docstring for the
    closure.  ``last_info["solves"]`` holds the ``HalfInverseInfo`` (kept rank, singular
    values, threshold) of each solve.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0, exponent: float = -0.5,
                 truncation: float = 1e-6, *, relative: bool = True, route: str = "auto",
                 jacobian_chunk_size: int | None = None,
                 memory_budget: float | None = None, line_search: str | None = None,
                 step_sizes: Iterable[float] | None = None) -> None:
        # every setting is checked per parameter group (_check_settings), these defaults too
        defaults = dict(lr=lr, exponent=exponent, truncation=truncation, relative=relative,
                        route=route)
        super().__init__(params, defaults, jacobian_chunk_size, memory_budget, line_search,
                         step_sizes)

    def _check_settings(self, group: dict[str, Any]) -> None:
        super()._check_settings(group)
        group["exponent"] = C.real(group["exponent"], "exponent")
        group["truncation"] = C.real(group["truncation"], "truncation", low=0.0)
        group["relative"] = _checked_flag(group["relative"], "relative")

    def _solve_key(self, group):
        return (group["exponent"], group["truncation"], group["relative"], group["route"])

    def _direction(self, J, g, group):
        return half_inverse(J, g, exponent=group["exponent"], truncation=group["truncation"],
                            relative=group["relative"], route=group["route"],
                            memory_budget=self.memory_budget)


class GaussNewton(JacobianOptimizer):
    r"""Gauss-Newton on the physics Jacobian: ``θ ← θ − lr · J⁺ (∂L/∂y)ᵀ``.

    Three forms of the step ``d`` (``J = U Σ Vᵀ``, ``g = (∂L/∂y)ᵀ``):

    - ``damping = 0``, ``adaptive=False`` (default): the truncated pseudo-inverse
      ``d = V Σ⁻¹ Uᵀ g`` over ``σ > truncation · σ_max``, i.e. :class:`HIG` with ``κ = −1``;
    - ``damping = μ > 0``: Levenberg-Marquardt with a fixed absolute ``μ``,
      ``d = (JᵀJ + μI)⁻¹ Jᵀ g`` (:func:`newtonkit.linalg.gauss_newton_step`);
    - ``adaptive=True``: Levenberg-Marquardt with Marquardt's (1963) damping rule on the
      truncated SVD, ``d = V diag(σ/(σ² + τ σ_max²)) Uᵀ g`` over the kept ``σ``.  The closure
      is evaluated again at the trial parameters (same mini-batch): if the loss decreased the
      step is kept and ``τ ← τ / damping_factor``; otherwise the parameters are restored,
      ``τ ← τ · damping_factor`` and the step is retried (the SVD is reused), at most
      ``max_trials`` times.  ``damping`` is the initial ``τ`` (default ``1e-3``); the current
      ``τ`` is kept in the optimizer state, so it survives ``state_dict``.

      ``τ`` is kept in ``[ε, 1/√ε]`` (``ε`` the machine epsilon of ``J``'s dtype), i.e. the
      damping ``μ = τ σ_max²`` in ``[ε σ_max², σ_max²/√ε]``, relative to the largest
      eigenvalue of the current Gram ``JᵀJ``.  Below the floor the damping is rounding noise
      against ``σ_max²``, yet kept steps alone would drive ``τ`` to 0 (exactly 0 after ~670
      from ``1e-3``, and ``0·ν`` never grows again).  For a loss ``½c‖y − t‖²`` and ``y``
      linear in ``θ``, a step with ``τ > (c − 2)/2`` lowers the loss (each kept residual
      component is multiplied by ``1 − cσ²/(σ² + τσ_max²) ∈ (−1, 1)``); so from the floor a
      change of the problem is recovered after at most ``⌊log_ν(c/(2ε))⌋ + 1`` rejected trials
      (``ν = damping_factor``; 37 for ``c = 100``, ``ν = 3`` in float64), and at the cap any
      ``c < 2/√ε`` is still handled.  The cap keeps ``τ`` finite: a run of rejections can no
      longer overflow it to ``inf``, after which no step is ever kept.  A loss scaled beyond
      that stalls (every trial rejected, parameters unchanged): scale the loss.

    With ``momentum = μ > 0`` (SPRING, Goldshlager, Abrahamsen & Lin 2024; not with
    ``adaptive=True``) the first two forms solve, for the previous direction ``d₋``,

    .. math:: d = \arg\min_d \|J d - g\|^2 + λ \|d - μ d_-\|^2
              = μ d_- + (J^T J + λ I)^{-1} J^T (g - μ J d_-),

    whose normal equations are ``(JᵀJ + λI) d = Jᵀg + λ μ d₋`` (``λ``: ``damping``, the ``μ``
    of the forms above; SPRING's notation here): the route's solve with ``g − μ J d₋`` in place
    of ``g``, plus ``μ d₋``.  For ``λ = 0`` with
    the truncated pseudo-inverse, ``d = J⁺g + μ (I − J⁺J) d₋``: the momentum acts only in the
    null space of the (truncated) ``J``, the directions the current batch does not see, which
    is how SPRING accumulates information over resampled batches.  The step is ``θ ← θ − lr·d``
    (``− η·lr·d`` with a line search); ``d`` is stored as ``d₋`` (module docstring, Momentum).

    With ``gram_ema = β > 0`` (ENGD's averaged Gramian; not with momentum or ``adaptive=True``)
    the first two forms use the bias-corrected moving average ``Ĝ_k`` of ``J_iᵀJ_i`` over the
    steps ``i ≤ k`` in place of ``JᵀJ``: ``d = (Ĝ_k + μI)⁺ Jᵀg`` (module docstring, Averaged
    Gramian).  With points drawn anew every step it carries the curvature of earlier samples
    the way momentum carries their directions.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups.
    lr : float
        The step ``η``.
    truncation : float
        Relative (or absolute, ``relative=False``) singular-value cutoff, for the truncated
        pseudo-inverse and the adaptive form.
    damping : float, optional
        Fixed ``μ ≥ 0`` (default 0); with ``adaptive=True`` the initial relative ``τ > 0``
        (default ``1e-3``).
    adaptive : bool
        Marquardt's damping rule (above); each retry costs one more closure call.
    damping_factor : float
        ``> 1``: the factor ``τ`` is divided by after a kept step, multiplied by after a
        rejected one.
    max_trials : int
        Trial steps per ``step`` call with ``adaptive=True`` (which excludes ``line_search``);
        if none lowers the loss the parameters are left unchanged.
    relative : bool
        Threshold relative to ``σ_max``.
    route : {"auto", "svd", "kernel", "normal", "matrix-free"}
        Linear-algebra route of the non-adaptive forms (module docstring, Routes): with
        ``damping > 0`` that of :func:`newtonkit.linalg.gauss_newton_step` (``"svd"``: its
        ``"lstsq"``), with ``damping = 0`` that of :func:`newtonkit.linalg.half_inverse`.
        ``adaptive=True`` always uses the SVD (reported as ``"svd"``).
    jacobian_chunk_size : int, optional
        Rows per batched reverse call when the closure does not return ``J``.
    memory_budget : float, optional
        Bytes for ``route="auto"`` (default 2 GiB).
    line_search : {None, "grid", "backtracking"}
        ``None``: the plain step ``θ − lr·d``; otherwise ``θ − η·lr·d`` with ``η`` from
        ``step_sizes`` (module docstring, Line search).
    step_sizes : sequence of float, optional
        The factors ``η > 0`` the line search tries (default ``2⁻ᵏ``, ``k = 0 … 30``).
    momentum : float
        SPRING's ``μ`` in ``[0, 1)`` (default 0: none); a per-group setting.
    gram_ema : float
        ``β`` in ``[0, 1)`` of the Gramian's moving average (default 0: none; ENGD's
        ``ema_factor``); a per-group setting.

    Notes
    -----
    ``last_info["solves"]`` holds each solve's info; with ``adaptive=True`` it is a dict with
    ``damping`` (the ``τ`` of the kept step, or the last one tried), ``trials``, ``accepted``
    and ``rank``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0, truncation: float = 1e-6,
                 damping: float | None = None, *, adaptive: bool = False,
                 damping_factor: float = 3.0, max_trials: int = 10, relative: bool = True,
                 route: str = "auto", jacobian_chunk_size: int | None = None,
                 memory_budget: float | None = None, line_search: str | None = None,
                 step_sizes: Iterable[float] | None = None, momentum: float = 0.0,
                 gram_ema: float = 0.0) -> None:
        if adaptive and line_search is not None:
            raise ValueError("GaussNewton: adaptive=True (Marquardt's damping rule) and "
                             "line_search are two step rules; choose one")
        if damping is None:
            damping = 1e-3 if adaptive else 0.0
        # every setting is checked per parameter group (_check_settings), these defaults too
        defaults = dict(lr=lr, truncation=truncation, damping=damping, adaptive=adaptive,
                        damping_factor=damping_factor, max_trials=max_trials,
                        relative=relative, route=route, momentum=momentum, gram_ema=gram_ema)
        super().__init__(params, defaults, jacobian_chunk_size, memory_budget, line_search,
                         step_sizes)

    def _check_settings(self, group: dict[str, Any]) -> None:
        super()._check_settings(group)
        group["truncation"] = C.real(group["truncation"], "truncation", low=0.0)
        group["adaptive"] = _checked_flag(group["adaptive"], "adaptive")
        group["relative"] = _checked_flag(group["relative"], "relative")
        group["route"] = C.choice(group["route"], "route", GN_ROUTES)
        mu = group["momentum"] = _checked_fraction(group["momentum"], "momentum")
        beta = group["gram_ema"] = _checked_fraction(group["gram_ema"], "gram_ema")
        if mu and group["adaptive"]:
            raise ValueError("GaussNewton: momentum (SPRING) and adaptive=True (Marquardt's "
                             "damping rule, which retries rejected steps) do not combine; use "
                             "momentum with a fixed damping and/or a line search")
        if beta and (mu or group["adaptive"]):
            raise ValueError("GaussNewton: gram_ema (the averaged Gramian) combines with neither "
                             "momentum nor adaptive=True; use it with a fixed damping and/or a "
                             "line search")
        if beta and group["route"] not in ("auto", "normal"):
            raise ValueError(f"GaussNewton: gram_ema averages the P × P Gramian JᵀJ (the "
                             f"'normal' route); route={group['route']!r} does not form it")
        # adaptive: the initial relative τ, which must be > 0 for τ·factor to ever grow
        group["damping"] = C.real(group["damping"], "damping", low=0.0,
                                  low_open=group["adaptive"])
        group["damping_factor"] = C.real(group["damping_factor"], "damping_factor", low=1.0,
                                         low_open=True)
        group["max_trials"] = C.integer(group["max_trials"], "max_trials", low=1)

    def _solve_key(self, group):
        key = (group["truncation"], group["damping"], group["relative"], group["adaptive"],
               group.get("route", "auto"), group.get("momentum", 0.0),
               group.get("gram_ema", 0.0))
        if group["adaptive"]:
            key += (group["damping_factor"], group["max_trials"])
        return key

    def _direction(self, J, g, group):
        if group.get("gram_ema", 0.0):
            return self._averaged_direction(J, g, group)
        route = group.get("route", "auto")
        if group["damping"] > 0:
            kw = dict(method="lstsq") if route == "svd" else dict(route=route)
            step, info = gauss_newton_step(J, g, damping=group["damping"],
                                           memory_budget=self.memory_budget, **kw)
            return -step, info
        return half_inverse(J, g, exponent=-1.0, truncation=group["truncation"],
                            relative=group["relative"], route=route,
                            memory_budget=self.memory_budget)

    def _averaged_direction(self, J, g, group):
        """``d = (Ĝ_k + μI)⁺ Jᵀg`` with the bias-corrected moving average ``Ĝ_k`` of ``JᵀJ``
        (module docstring, Averaged Gramian); the average is stored only when ``d`` is finite."""
        beta, n = group["gram_ema"], J.shape[1]
        need = 3 * n * n * J.element_size()  # the average, JᵀJ and the eigenvectors
        if self.memory_budget is not None and need > self.memory_budget:
            raise ValueError(f"GaussNewton(gram_ema): the averaged Gramian of {n} parameters "
                             f"needs about {need:,} bytes, more than memory_budget="
                             f"{self.memory_budget:g}; the parameters are left unchanged")
        state = self.state[self._trainable([group])[0]]
        G, k = state.get("gram"), state.get("gram_steps", 0)
        # which of the group's parameters are the columns (a state_dict without the record
        # keeps its average where the size matches)
        columns = [i for i, p in enumerate(group["params"]) if p.requires_grad]
        other = state.get("gram_columns", columns) != columns
        if G is None or G.shape != (n, n) or other:  # the first step, or other columns
            G, k = torch.zeros(n, n, dtype=J.dtype, device=J.device), 0
        G, k = beta * G.to(J.dtype) + (1.0 - beta) * (J.T @ J), k + 1
        if not all_finite(torch, G):  # JᵀJ overflowed: no direction (step warns, θ unchanged)
            return torch.full((n,), math.nan, dtype=J.dtype, device=J.device), \
                AveragedGramInfo(rank=0, steps=k, eigenvalue_max=math.inf)
        d, rank, lam_max = _pseudo_solve(G / (1.0 - beta ** k), J.T @ g, group["damping"],
                                         group["truncation"], group["relative"])
        if all_finite(torch, d):
            state["gram"], state["gram_steps"], state["gram_columns"] = G, k, columns
        return d, AveragedGramInfo(rank=rank, steps=k, eigenvalue_max=lam_max)

    @torch.no_grad()
    def step(self, closure: Closure | None = None,  # type: ignore[override]
             loss_closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor:
        """One step; ``closure() -> (y, loss)`` or ``(y, loss, J)`` (see the module docstring);
        ``loss_closure`` as in :meth:`JacobianOptimizer.step` (line search only)."""
        if not any(grp.get("adaptive") for grp in self.param_groups):
            return super().step(closure, loss_closure)
        if self.line_search is not None:
            raise ValueError("GaussNewton: a parameter group has adaptive=True while the "
                             "optimizer has a line search; choose one step rule")
        if len({self._solve_key(grp) for grp in self.param_groups
                if self._trainable([grp])}) > 1:
            raise ValueError("GaussNewton(adaptive=True) needs one joint solve: every parameter "
                             "group must have the same truncation, damping and adaptive settings")
        loss, J, g, [(groups, Jg)] = self._linearize(closure)
        group = groups[0]
        # J = U Σ Vᵀ once; every trial only re-filters  d(τ) = V σ/(σ² + τσ²_max) Uᵀ g.
        U, s, Vh, _, s_max = truncated_svd(Jg, group["truncation"], relative=group["relative"])
        sq = s * (U.T @ g)
        params = self._trainable(groups)
        # the τ in the state of any trainable parameter (all hold the same one)
        tau = next((self.state[p]["damping"] for p in params if "damping" in self.state[p]),
                   group["damping"])
        eps = torch.finfo(Jg.dtype).eps
        tau_min, tau_max = eps, eps ** -0.5
        tau = min(max(tau, tau_min), tau_max)
        saved = [p.detach().clone() for p in params]
        accepted, trials, tried = False, 0, tau
        while trials < group["max_trials"] and s.numel():
            trials += 1
            tried = tau
            d = Vh.T @ (sq / (s * s + tau * s_max ** 2))
            if all_finite(torch, d):
                self._add(groups, d)
                self._project(groups)
                try:
                    with torch.enable_grad():
                        trial = closure()[1].detach()
                    accepted = bool(torch.isfinite(trial)) and bool(trial < loss)
                finally:  # a rejected trial, or one the closure raised on, is undone
                    if not accepted:
                        for p, p0 in zip(params, saved, strict=True):
                            p.copy_(p0)
                if accepted:
                    break
            tau = min(tau * group["damping_factor"], tau_max)
        info = {"damping": tried, "trials": trials, "accepted": accepted,
                "rank": int(s.numel())}
        if accepted:
            self._count_step(groups, "svd")
            tau = max(tau / group["damping_factor"], tau_min)
        for p in params:
            self.state[p]["damping"] = tau
        self.last_info = {"loss": loss, "solves": [info]}
        return loss
