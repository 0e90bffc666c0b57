"""``torch.optim`` optimizers that invert the physics Jacobian: HIG and Gauss-Newton.

Both take one mini-batch step from the stacked per-sample Jacobian ``J = ∂y/∂θ``
(``B·m × n``, rows sample-major) of the *physics outputs* ``y`` and the loss gradient
``g = (∂L/∂y)ᵀ`` (length ``B·m``):

- HIG (Schnell, Holl & Thuerey 2022): ``θ ← θ − η · V Σ^κ Uᵀ g`` for ``J = U Σ Vᵀ``, ``κ = −1/2``,
  singular values ``σ ≤ truncation · σ_max`` discarded
  (:func:`newtonkit.linalg.half_inverse`);
- Gauss-Newton: the truncated pseudo-inverse ``θ ← θ − η · J⁺ g`` (``κ = −1``, same truncation),
  or with ``damping = μ > 0`` Levenberg-Marquardt ``θ ← θ − η (JᵀJ + μI)⁻¹ Jᵀ g``
  (:func:`newtonkit.linalg.gauss_newton_step`).

The closure
-----------
``step(closure)`` calls ``closure()`` once with gradients enabled.  It returns either

``(y, loss)``
    ``y``: the per-sample physics outputs, shape ``(B, ...)`` (flattened to ``B·m``), computed
    from the parameters with the autograd graph kept; ``loss``: a 0-d tensor computed from
    ``y``.  ``J`` is then built by batched reverse mode over the ``B·m`` rows of ``y`` (general,
    but every row costs a backward pass through the whole batch), or
``(y, loss, J)``
    with the Jacobian already formed, columns in the optimizer's parameter order (all
    groups, each parameter flattened).  :meth:`physics_closure` builds such a closure with
    ``vmap`` per-sample Jacobians (the fast path): ``closure = opt.physics_closure(model, x,
    physics, loss_fn)``.

``step`` returns the loss (detached).  Parameter groups whose direction settings agree are
solved jointly on their combined columns; each group's ``lr`` scales its own part of the step.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from newtonkit._backend import all_finite

from .autograd import unit_rows
from .jacobians import Physics, _single_sample_fn, select_parameters

__all__ = ["HIG", "GaussNewton", "JacobianOptimizer"]

Closure = Callable[[], tuple]


def _jacobian_by_rows(y: torch.Tensor, params: list[torch.Tensor],
                      chunk_size: int | None = None) -> torch.Tensor:
    """Dense ``∂y/∂θ`` (rows of ``y`` flat) by batched reverse mode, looping where unsupported."""
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


class JacobianOptimizer(torch.optim.Optimizer):
    """Base class: a step ``θ ← θ − lr · D(J, g)`` from the physics Jacobian (see module doc).

    Subclasses define ``_solve_key(group)`` (the settings that must agree for a joint solve) and
    ``_direction(J, g, group) -> (d, info)``.
    """

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any],
                 jacobian_chunk_size: int | None = None) -> None:
        if not defaults["lr"] > 0:
            raise ValueError(f"lr must be positive, got {defaults['lr']!r}")
        super().__init__(params, defaults)
        self.jacobian_chunk_size = jacobian_chunk_size
        #: Diagnostics of the last step: loss, and for every joint solve its info object.
        self.last_info: dict[str, Any] = {}

    # -- subclass interface --------------------------------------------------------------------
    def _solve_key(self, group: dict[str, Any]) -> tuple:
        raise NotImplementedError

    def _direction(self, J: torch.Tensor, g: torch.Tensor,
                   group: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        raise NotImplementedError

    # -- the step ------------------------------------------------------------------------------
    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def physics_closure(self, model: nn.Module, inputs: torch.Tensor,
                        physics: Physics | None,
                        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        chunk_size: int | None = None) -> Closure:
        """A closure ``() -> (y, loss, J)`` with per-sample Jacobians by ``vmap``.

        Parameters
        ----------
        model : nn.Module
            The network; every parameter of this optimizer must belong to it.
        inputs : Tensor
            The mini-batch ``(B, ...)``.
        physics : callable or None
            ``physics(output, input) -> y`` for one sample (see :mod:`newtonkit_torch.jacobians`).
        loss_fn : callable
            ``loss_fn(y, inputs) -> 0-d tensor`` for the batch of physics outputs ``y`` (B, m).
        chunk_size : int, optional
            Samples per vectorised Jacobian call.
        """
        names = select_parameters(model, self._params())
        fn, _ = _single_sample_fn(model, names, physics)
        named = dict(model.named_parameters())

        def closure() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            selected = {k: named[k].detach() for k in names}
            jac, Y = torch.func.vmap(torch.func.jacrev(fn, has_aux=True), in_dims=(None, 0),
                                     chunk_size=chunk_size)(selected, inputs)
            B, m = Y.shape
            J = torch.cat([jac[k].reshape(B, m, -1) for k in names], dim=2).reshape(B * m, -1)
            y = Y.detach().requires_grad_(True)
            with torch.enable_grad():
                loss = loss_fn(y, inputs)
            return y, loss, J

        return closure

    @torch.no_grad()
    def step(self, closure: Closure | None = None) -> torch.Tensor:  # type: ignore[override]
        """One step; ``closure() -> (y, loss)`` or ``(y, loss, J)`` (see the module docstring)."""
        if closure is None:
            raise ValueError(f"{type(self).__name__}.step needs a closure returning (y, loss) or "
                             f"(y, loss, J): the Jacobian of the physics outputs y is required")
        with torch.enable_grad():
            out = closure()
            if not isinstance(out, (tuple, list)) or len(out) not in (2, 3):
                raise TypeError("the closure must return (y, loss) or (y, loss, J)")
            y, loss = out[0], out[1]
            J = out[2] if len(out) == 3 else None
            if loss.numel() != 1:
                raise ValueError(f"the loss must be a scalar, got shape {tuple(loss.shape)}")
            (gy,) = torch.autograd.grad(loss.reshape(()), y, retain_graph=J is None)
            params = self._params()
            if J is None:
                J = _jacobian_by_rows(y, params, self.jacobian_chunk_size)
        g = gy.reshape(-1).to(J.dtype)
        if not (all_finite(torch, g) and all_finite(torch, J)):
            raise FloatingPointError(
                f"{type(self).__name__}: the loss gradient or the Jacobian at the current "
                f"parameters is not finite (loss {float(loss):.4g}); the model has diverged, "
                f"the parameters are left unchanged")
        n_total = sum(p.numel() for p in params)
        if J.shape != (g.numel(), n_total):
            raise ValueError(f"J has shape {tuple(J.shape)}; expected ({g.numel()}, {n_total}) "
                             f"(rows = outputs of y, columns = this optimizer's parameters)")
        # Column offsets of every parameter, and the groups that share one solve.
        offsets, start = {}, 0
        for p in params:
            offsets[id(p)] = (start, start + p.numel())
            start += p.numel()
        solves: dict[tuple, list[dict[str, Any]]] = {}
        for group in self.param_groups:
            if group["params"]:
                solves.setdefault(self._solve_key(group), []).append(group)
        infos = []
        for groups in solves.values():
            ps = [p for grp in groups for p in grp["params"]]
            idx = torch.cat([torch.arange(*offsets[id(p)], device=J.device) for p in ps])
            Jg = J if idx.numel() == n_total else J[:, idx]
            d, info = self._direction(Jg, g, groups[0])
            infos.append(info)
            if not all_finite(torch, d):
                warnings.warn(f"{type(self).__name__}: the step has non-finite entries; the "
                              f"parameters are left unchanged", RuntimeWarning, stacklevel=2)
                continue
            pos = 0
            for grp in groups:
                for p in grp["params"]:
                    k = p.numel()
                    p.add_(d[pos:pos + k].reshape(p.shape).to(p.dtype), alpha=-grp["lr"])
                    pos += k
                    st = self.state[p]
                    st["step"] = st.get("step", 0) + 1
        self.last_info = {"loss": loss.detach(), "solves": infos}
        return loss.detach()


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
        :func:`newtonkit.linalg.half_inverse` route (``"auto"``, ``"svd"``, ``"gram"``).
    jacobian_chunk_size : int, optional
        Rows per batched reverse call when the closure does not return ``J``.

    Notes
    -----
    The direction is exactly ``newtonkit.linalg.half_inverse(J, g, exponent, truncation)`` on
    the Jacobian and loss gradient the closure provides; see the module docstring for the
    closure.  ``last_info["solves"]`` holds the ``HalfInverseInfo`` (kept rank, singular
    values, threshold) of each solve.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0, exponent: float = -0.5,
                 truncation: float = 1e-6, *, relative: bool = True, route: str = "auto",
                 jacobian_chunk_size: int | None = None) -> None:
        if not truncation >= 0:
            raise ValueError(f"truncation must be >= 0, got {truncation!r}")
        defaults = dict(lr=lr, exponent=float(exponent), truncation=float(truncation),
                        relative=bool(relative), route=route)
        super().__init__(params, defaults, jacobian_chunk_size)

    def _solve_key(self, group):
        return (group["exponent"], group["truncation"], group["relative"], group["route"])

    def _direction(self, J, g, group):
        from newtonkit.linalg import half_inverse

        return half_inverse(J, g, exponent=group["exponent"], truncation=group["truncation"],
                            relative=group["relative"], route=group["route"])


class GaussNewton(JacobianOptimizer):
    r"""Gauss-Newton on the physics Jacobian: ``θ ← θ − lr · J⁺ (∂L/∂y)ᵀ``.

    With ``damping = 0`` the pseudo-inverse is truncated as in :class:`HIG` (exponent −1, same
    ``truncation``), so HIG and Gauss-Newton differ only in ``κ``.  With ``damping = μ > 0`` it
    is Levenberg-Marquardt: ``θ ← θ − lr · (JᵀJ + μI)⁻¹ Jᵀ (∂L/∂y)ᵀ``.

    Parameters
    ----------
    params : iterable
        Parameters or parameter groups.
    lr : float
        The step ``η``.
    truncation : float
        Relative (or absolute, ``relative=False``) singular-value cutoff when ``damping == 0``.
    damping : float
        ``μ ≥ 0``.
    relative : bool
        Threshold relative to ``σ_max``.
    jacobian_chunk_size : int, optional
        Rows per batched reverse call when the closure does not return ``J``.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1.0, truncation: float = 1e-6,
                 damping: float = 0.0, *, relative: bool = True,
                 jacobian_chunk_size: int | None = None) -> None:
        if not truncation >= 0:
            raise ValueError(f"truncation must be >= 0, got {truncation!r}")
        if not damping >= 0:
            raise ValueError(f"damping must be >= 0, got {damping!r}")
        defaults = dict(lr=lr, truncation=float(truncation), damping=float(damping),
                        relative=bool(relative))
        super().__init__(params, defaults, jacobian_chunk_size)

    def _solve_key(self, group):
        return (group["truncation"], group["damping"], group["relative"])

    def _direction(self, J, g, group):
        if group["damping"] > 0:
            from newtonkit.linalg import gauss_newton_step

            step, info = gauss_newton_step(J, g, damping=group["damping"])
            return -step, info
        from newtonkit.linalg import half_inverse

        return half_inverse(J, g, exponent=-1.0, truncation=group["truncation"],
                            relative=group["relative"])
