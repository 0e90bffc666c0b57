"""Deepwave adapter: the scalar wave equation as a newtonkit forward model.

The forward model ``F(v)`` maps a velocity model ``v`` (shape ``model_shape``) to the receiver
data of :func:`deepwave.scalar` (shape ``(n_shots, n_receivers, nt)``).  Its derivatives are

- ``J p``: :func:`deepwave.scalar_born` with ``dv = p``, the exact linearisation of the discrete
  propagator (no finite differences, no forward-mode autograd);
- ``Jᵀ w``: reverse mode through :func:`deepwave.scalar`.

For the misfit ``L(v) = (1/M) ‖F(v) − d‖²`` (``torch.nn.MSELoss``, ``M`` data samples),
:class:`MSEMisfit` gives ``∇L = (2/M) Jᵀ r``, the Gauss-Newton product
``G p = (2/M) Jᵀ(J p)`` (positive semi-definite, first derivatives only) and the Hessian product
``H p = ∇(∇Lᵀ p)`` by double backward, which deepwave runs as a Born forward and adjoint pass.

Time-step ratio
---------------
When ``dt`` breaks the CFL condition, deepwave propagates ``r`` internal steps per sample: it
upsamples the source wavelet by ``r`` (:func:`deepwave.discretisation.upsample`), propagates at
``dt / r`` and downsamples the receiver data.  Deepwave 0.1.0's compiled backend refuses double
backward when ``r > 1``.  This adapter does the resampling itself: it reads ``r``, the PML
frequency and ``max_vel`` from a gradient-free probe call (pinning them), upsamples the wavelet
with deepwave's own routine and the same taper arguments, propagates at ``dt / r`` (internal ratio
1) and downsamples with deepwave's own routine.  The forward data are bit-identical to the
plain call; the gradient becomes the exact discrete adjoint (stride 1 instead of ``r``); Hessian
products work on the compiled backend.

Batching
--------
Deepwave accepts a batched model ``[n_shots, *model_shape]``.  ``k`` products run as one call
with the survey repeated ``k`` times, the model repeated once per copy and one direction per
copy.  For dense Hessians the first-order graph of ``k`` copies is built once and reused for all
``n / k`` double-backward batches (``retain_graph``), so the cost is ``k`` forward+backward passes
plus ``n`` double backwards.  ``k`` is chosen from a memory bound (``max_memory`` bytes).
"""

from __future__ import annotations

import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch

try:
    import deepwave
    from deepwave.discretisation import downsample, upsample
except ImportError as _exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "newtonkit_torch.deepwave needs the optional dependency 'deepwave' (>= 0.1.0); install "
        "it with `pip install newtonkit[deepwave]` (or `pip install deepwave`)"
    ) from _exc

from newtonkit.operators import HessianOperator, JacobianOperator

__all__ = ["ScalarWave", "MatrixFreeScalarWave", "MSEMisfit", "DEFAULT_MAX_MEMORY"]

#: Default byte budget for one batched call (model copies, stored wavefields, products).
DEFAULT_MAX_MEMORY = 1 << 30

# Per-shot tensors that are repeated along the shot dimension for a batched call.
_PER_SHOT = ("source_amplitudes", "source_locations", "source_mask", "receiver_locations",
             "receiver_mask", "wavefield_0", "wavefield_m1")
_RESAMPLING = ("freq_taper_frac", "time_pad_frac", "time_taper")
_SCALAR_ARGS = frozenset(inspect.signature(deepwave.scalar).parameters) - {"v", "grid_spacing",
                                                                            "dt"}
_BORN_ARGS = frozenset(inspect.signature(deepwave.scalar_born).parameters)
_BORN_RENAME = {"receiver_locations": "sc_receiver_locations", "receiver_mask": "sc_receiver_mask"}
# Stored-wavefield factor per model copy: forward history (1), first backward (2), Born (4).
_STORE = {"born": 0, "vjp": 1, "gn": 1, "hvp": 4}
# On a CPU a product costs the same batched or not, and big batches lose cache locality (seed
# grid, 2 cores: a 600-column Hessian takes 19 s with 8 copies per call, 29 s with 50), so
# CPU batches stop at these sizes; on a GPU only the memory bound applies.
_CPU_COPIES = {"born": 64, "vjp": 8, "gn": 8, "hvp": 8}


class ScalarWave:
    """Forward model ``v -> receiver data`` around :func:`deepwave.scalar`.

    Parameters
    ----------
    grid_spacing : float or sequence of float
        Cell size (passed to deepwave).
    dt : float
        Sample interval of the source wavelet and of the receiver data.
    resample : bool
        Handle a CFL time-step ratio ``r > 1`` by resampling (module docstring; default).
        ``False`` leaves it to deepwave (Hessians then need ``backend="eager"``).
    model_shape : tuple of int, optional
        Shape of ``v``; read from the first call with a model-shaped ``v`` when not given
        (needed before flat ``(n,)`` vectors can be used).
    max_memory : int, optional
        Byte budget that sets the batch of model copies per call (default 1 GiB).
    batch_size : int, optional
        Fixed number of copies per batched call (overrides ``max_memory``).
    **kwargs
        Any other keyword of :func:`deepwave.scalar` (``pml_width``, ``max_vel``, ``accuracy``,
        ``pml_freq``, ``nt``, ``boundary``, ``backend``, ...), passed through.

    Other Parameters
    ----------------
    source_amplitudes, source_locations, receiver_locations : Tensor
        The survey, shapes ``[shot, source, time]``, ``[shot, source, ndim]`` and
        ``[shot, receiver, ndim]`` (or ``sources={"u": ...}``/``receivers={"u": ...}``).
        Required keywords of :func:`deepwave.scalar`.

    Notes
    -----
    ``v`` may be model-shaped or flat; ``jvp``/``vjp`` return data-shaped ``J p`` and ``Jᵀ w``
    in the shape of ``v``.  Give ``max_vel`` for a discretisation that does not change with the
    model (otherwise it is read from ``v`` by a probe call on every evaluation).
    """

    def __init__(self, grid_spacing: float | Sequence[float], dt: float, *,
                 resample: bool = True, model_shape: Sequence[int] | None = None,
                 max_memory: int | None = None, batch_size: int | None = None,
                 **kwargs: Any) -> None:
        kwargs = dict(kwargs)
        _flatten_channel_mappings(kwargs)
        unknown = set(kwargs) - _SCALAR_ARGS
        if unknown:
            raise TypeError(f"unknown deepwave.scalar keyword(s) {sorted(unknown)}")
        if kwargs.get("source_amplitudes") is None or kwargs.get("source_locations") is None:
            raise ValueError("ScalarWave needs source_amplitudes and source_locations")
        if kwargs.get("receiver_locations") is None:
            raise ValueError("ScalarWave needs receiver_locations (the data F(v) are recorded "
                             "there)")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if max_memory is not None and not max_memory > 0:
            raise ValueError(f"max_memory must be a positive number of bytes, got {max_memory!r}")
        src = kwargs.pop("source_amplitudes")
        nt = kwargs.pop("nt", None)
        if nt is not None:  # fit the wavelet to nt in user samples, as deepwave does
            src = torch.nn.functional.pad(src, (0, max(0, int(nt) - src.shape[-1])))[..., :nt]
        self.grid_spacing, self.dt, self.resample = grid_spacing, float(dt), bool(resample)
        self.source_amplitudes = src
        self.n_shots = int(src.shape[0])
        self.model_shape = None if model_shape is None else tuple(int(s) for s in model_shape)
        self.max_memory = DEFAULT_MAX_MEMORY if max_memory is None else int(max_memory)
        self.batch_size = None if batch_size is None else int(batch_size)
        self._taper = {k: kwargs.pop(k) for k in _RESAMPLING if k in kwargs}
        self._kwargs = kwargs
        self._batchable = all(kwargs.get(k) is None or isinstance(kwargs[k], torch.Tensor)
                              for k in _PER_SHOT) and kwargs.get("initial_state") is None
        self._setup: dict | None = None
        self._last_setup: dict | None = None
        self._checked: set[int] = set()
        self._cache: _Graph | None = None  # the forward graph of the last vjp (_graph)

    # -- discretisation ------------------------------------------------------------------------
    def setup(self, v: torch.Tensor) -> dict:
        """The resolved discretisation for model ``v``.

        Returns
        -------
        dict
            ``step_ratio`` (deepwave's ``r`` for the plain call), ``dt`` (the ``dt`` actually
            passed), ``resampled`` (bool), ``max_vel`` and ``pml_freq`` (pinned values).
        """
        if self._setup is not None:
            return self._setup
        v = self._shaped(v).detach()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            info = deepwave.scalar(v, self.grid_spacing, self.dt,
                                   source_amplitudes=self.source_amplitudes,
                                   **self._kwargs, **self._taper).info
        r = int(info.step_ratio)
        resampled = self.resample and r > 1
        if resampled and self._kwargs.get("model_gradient_sampling_interval", 1) != 1:
            raise ValueError("model_gradient_sampling_interval must be 1 when the time-step "
                             "ratio is handled by resampling (exact Hessians need stride 1)")
        src = self.source_amplitudes
        if resampled:
            src = upsample(src, r, **self._taper)
        setup = {"step_ratio": r, "dt": self.dt / r if resampled else self.dt,
                 "resampled": resampled, "max_vel": float(info.max_vel),
                 "pml_freq": float(info.pml_freq), "source_amplitudes": src}
        if resampled and r not in self._checked:  # check once that the inner call runs at 1
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                inner = deepwave.scalar(v, self.grid_spacing, setup["dt"],
                                        **self._call_kwargs(setup, 1)).info
            if inner.step_ratio != 1:
                raise RuntimeError(f"resampling by {r} left deepwave an internal time-step "
                                   f"ratio of {inner.step_ratio}; pass resample=False")
            self._checked.add(r)
        if self._kwargs.get("max_vel") is not None:
            self._setup = setup  # otherwise the ratio may change with the model
        self._last_setup = setup
        return setup

    def _call_kwargs(self, setup: dict, k: int, born: bool = False) -> dict:
        kw = dict(self._kwargs)
        kw["source_amplitudes"] = setup["source_amplitudes"]
        kw["max_vel"], kw["pml_freq"] = setup["max_vel"], setup["pml_freq"]
        if not setup["resampled"]:
            kw.update(self._taper)
        if k > 1:
            for name in _PER_SHOT:
                if kw.get(name) is not None:
                    t = kw[name]
                    kw[name] = t.repeat(k, *([1] * (t.ndim - 1)))
        if born:
            kw = {_BORN_RENAME.get(a, a): b for a, b in kw.items()}
            kw = {a: b for a, b in kw.items() if a in _BORN_ARGS}
        return kw

    def _finish(self, data: torch.Tensor, setup: dict, k: int) -> torch.Tensor:
        if setup["resampled"]:
            data = downsample(data, setup["step_ratio"], **self._taper)
        return data if k == 0 else data.reshape(k, self.n_shots, *data.shape[1:])

    def _models(self, V: torch.Tensor, k: int) -> torch.Tensor:
        return V if k == 0 or self.n_shots == 1 else V.repeat_interleave(self.n_shots, dim=0)

    def _propagate(self, V: torch.Tensor, k: int = 0) -> torch.Tensor:
        """Data for ``V`` (model-shaped, ``k = 0``) or ``k`` copies ``V[j]``: ``(k, S, R, T)``."""
        setup = self.setup(V if k == 0 else V[0])
        out = deepwave.scalar(self._models(V, k), self.grid_spacing, setup["dt"],
                              **self._call_kwargs(setup, max(k, 1)))
        return self._finish(out.receiver_amplitudes, setup, k)

    def _born(self, V: torch.Tensor, P: torch.Tensor, k: int = 0) -> torch.Tensor:
        setup = self.setup(V if k == 0 else V[0])
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", deepwave.MigrationWarning)
            out = deepwave.scalar_born(self._models(V, k), self.grid_spacing, setup["dt"],
                                       dv=self._models(P, k),
                                       **self._call_kwargs(setup, max(k, 1), born=True))
        return self._finish(out[-1], setup, k)

    # -- shapes --------------------------------------------------------------------------------
    def _shaped(self, v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"the model must be a torch.Tensor, got {type(v).__name__}")
        if v.ndim >= 2:
            if self.model_shape is None:
                self.model_shape = tuple(v.shape)
            elif tuple(v.shape) != self.model_shape:
                raise ValueError(f"model of shape {tuple(v.shape)}, expected {self.model_shape}")
            return v
        if self.model_shape is None:
            raise ValueError("a flat model needs model_shape (pass model_shape= or call the "
                             "model once with a model-shaped v)")
        if v.numel() != self.n:
            raise ValueError(f"flat model of {v.numel()} entries, expected {self.n}")
        return v.reshape(self.model_shape)

    @property
    def n(self) -> int:
        """Number of model parameters (``prod(model_shape)``)."""
        if self.model_shape is None:
            raise ValueError("model_shape is not known yet")
        return math.prod(self.model_shape)

    def data_shape(self) -> tuple[int, int, int]:
        """``(n_shots, n_receivers, nt)`` of the receiver data."""
        nt = self.source_amplitudes.shape[-1]
        return (self.n_shots, int(self._kwargs["receiver_locations"].shape[1]), int(nt))

    def batch(self, kind: str = "hvp", n_total: int | None = None) -> int:
        """Model copies per batched call for products of ``kind`` under the memory bound.

        ``kind``: ``"born"`` (no stored history), ``"vjp"``/``"gn"`` (forward history),
        ``"hvp"`` (forward, adjoint and Born histories).  The estimate per copy is the stored
        wavefield histories plus fields and data; on a CPU the batch is also capped (see
        ``_CPU_COPIES``).  ``n_total`` caps the result and evens out the chunks.
        """
        if self.batch_size is not None or not self._batchable:
            k = self.batch_size if self._batchable and self.batch_size else 1
        else:
            pml = self._kwargs.get("pml_width", 20)
            ndim = len(self.model_shape)
            pml = [int(pml)] * (2 * ndim) if isinstance(pml, (int, float)) else list(pml)
            halo = int(self._kwargs.get("accuracy", 4))
            cells = math.prod(s + pml[2 * i] + pml[2 * i + 1] + halo
                              for i, s in enumerate(self.model_shape))
            setup = self._last_setup or {"step_ratio": 1}
            nt = self.source_amplitudes.shape[-1] * setup["step_ratio"]
            item = self.source_amplitudes.element_size()
            per_copy = self.n_shots * item * (cells * (8 + _STORE[kind] * nt)
                                              + 4 * math.prod(self.data_shape()[1:])
                                              * setup["step_ratio"]) + 4 * self.n * item
            k = max(1, int(self.max_memory // per_copy))
            if self.source_amplitudes.device.type == "cpu":
                k = min(k, _CPU_COPIES[kind])
        if n_total is not None:
            k = min(k, n_total)
            k = math.ceil(n_total / math.ceil(n_total / k))
        return k

    # -- forward model -------------------------------------------------------------------------
    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """Receiver data ``F(v)``, ``(n_shots, n_receivers, nt)``; differentiable in ``v``."""
        return self._propagate(self._shaped(v))

    def jvp(self, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``J p`` by :func:`deepwave.scalar_born` (data-shaped)."""
        return self._born(self._shaped(v).detach(), self._shaped(p).to(v.dtype))

    def vjp(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``Jᵀ w`` by reverse mode, in the shape of ``v``.

        The forward graph at ``v`` is kept and reused while ``v`` has the same values (compared
        with the graph's copy: an in-place change through ``v.data`` bumps no version), so
        repeated products at one point cost one backward pass each.
        """
        graph = self._graph(v)
        (g,) = torch.autograd.grad(graph.data, graph.V,
                                   w.reshape(graph.data.shape).to(graph.data.dtype),
                                   retain_graph=True)
        return g.reshape(v.shape)

    def _graph(self, v: torch.Tensor) -> _Graph:
        V, graph = self._shaped(v).detach(), self._cache
        if (graph is None or graph.V.dtype != V.dtype or graph.V.device != V.device
                or not torch.equal(graph.V.detach(), V)):
            graph = self._cache = _Graph(self, V, 0)
        return graph

    def jvp_batch(self, v: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        """``J p_j`` for the rows ``p_j`` of ``P`` (``(k, *model_shape)`` or ``(k, n)``).

        Runs as batched Born calls; returns ``(k, n_shots, n_receivers, nt)``.
        """
        V = self._shaped(v).detach()
        P = P.reshape(-1, *V.shape).to(V.dtype)
        kb = self.batch("born", P.shape[0])
        out = []
        for s in range(0, P.shape[0], kb):
            Pc = P[s:s + kb]
            out.append(self._born(V.expand(Pc.shape[0], *V.shape).contiguous(), Pc,
                                  Pc.shape[0]))
        return torch.cat(out)

    def vjp_batch(self, v: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
        """``Jᵀ w_j`` for ``W`` of shape ``(k, *data_shape)``; returns ``(k, *model_shape)``."""
        V = self._shaped(v).detach()
        W = W.reshape(-1, *self.data_shape())
        kb = self.batch("vjp", W.shape[0])
        graph, out = None, []
        for s in range(0, W.shape[0], kb):
            Wc = W[s:s + kb]
            if graph is None or graph.k != kb:
                graph = _Graph(self, V, kb)
            if Wc.shape[0] < kb:
                Wc = torch.cat([Wc, Wc.new_zeros(kb - Wc.shape[0], *Wc.shape[1:])])
            out.append(graph.vjp(Wc)[: min(kb, W.shape[0] - s)])
        return torch.cat(out)

    def jacobian(self, v: torch.Tensor) -> torch.Tensor:
        """Dense ``J`` of shape ``(m, n)``: batched Born columns (or ``Jᵀ`` rows if ``m < n``)."""
        V = self._shaped(v).detach()
        n, m = V.numel(), math.prod(self.data_shape())
        if m < n:
            E = torch.eye(m, dtype=V.dtype, device=V.device)
            return self.vjp_batch(V, E).reshape(m, n)
        E = torch.eye(n, dtype=V.dtype, device=V.device)
        return self.jvp_batch(V, E).reshape(n, m).T.contiguous()

    def jacobian_operator(self, v: torch.Tensor) -> JacobianOperator:
        """``J`` at ``v`` as a newtonkit :class:`~newtonkit.operators.JacobianOperator`."""
        return JacobianOperator(self, self._shaped(v).detach())

    def matrix_free(self) -> MatrixFreeScalarWave:
        """This model without ``jacobian``: newtonkit then keeps ``J`` matrix-free (jvp/vjp)."""
        return MatrixFreeScalarWave(self)


class MatrixFreeScalarWave:
    """A :class:`ScalarWave` seen through ``__call__``, ``jvp`` and ``vjp`` only.

    ``newtonkit.Composite(model.matrix_free(), loss)`` makes Gauss-Newton solve with CGLS on
    Born products and reverse-mode products instead of assembling the dense Jacobian.
    """

    def __init__(self, model: ScalarWave) -> None:
        self.model = model

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v)``."""
        return self.model(v)

    def jvp(self, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``J p`` (Born)."""
        return self.model.jvp(v, p)

    def vjp(self, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """``Jᵀ w`` (reverse mode)."""
        return self.model.vjp(v, w)


class _Graph:
    """The forward graph of ``k`` model copies (``k = 0``: the model itself) at a fixed ``v``."""

    def __init__(self, model: ScalarWave, v: torch.Tensor, k: int) -> None:
        self.model, self.k = model, k
        self.V = (v.clone() if k == 0 else v.expand(k, *v.shape).clone()).requires_grad_(True)
        with torch.enable_grad():
            self.data = model._propagate(self.V, k)

    def vjp(self, W: torch.Tensor) -> torch.Tensor:
        (g,) = torch.autograd.grad(self.data, self.V, W.to(self.data.dtype), retain_graph=True)
        return g


class MSEMisfit:
    """``L(v) = mean((F(v) − d)²)`` (``torch.nn.MSELoss``) for a :class:`ScalarWave` ``F``.

    Parameters
    ----------
    model : ScalarWave
    observed : Tensor
        Observed data ``d``, shape ``(n_shots, n_receivers, nt)``.

    Notes
    -----
    Every method takes ``v`` model-shaped or flat and returns vectors in the shape of ``v``;
    dense matrices are ``(n, n)``.  ``newtonkit.minimize(misfit, v0, method="newton",
    jac=misfit.grad, hess=misfit.hessian)`` runs exact Newton.
    """

    def __init__(self, model: ScalarWave, observed: torch.Tensor) -> None:
        if not isinstance(model, ScalarWave):
            raise TypeError(f"model must be a ScalarWave, got {type(model).__name__}")
        if tuple(observed.shape) != model.data_shape():
            raise ValueError(f"observed data of shape {tuple(observed.shape)}, the model "
                             f"records {model.data_shape()}")
        self.model, self.observed = model, observed.detach()
        self.m = observed.numel()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """``L(v)`` as a 0-d tensor, differentiable in ``v``."""
        return torch.mean((self.model(v) - self.observed) ** 2)

    def _batched_loss(self, V: torch.Tensor, k: int) -> torch.Tensor:
        # Sum over copies of each copy's mean: copy j's gradient is ∇L(V[j]).
        return ((self.model._propagate(V, k) - self.observed) ** 2).sum() / self.m

    def value(self, v: torch.Tensor) -> torch.Tensor:
        """``L(v)`` (0-d, no graph)."""
        with torch.no_grad():
            return self(v)

    def value_and_grad(self, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L(v), ∇L(v))``, the gradient in the shape of ``v``."""
        x = v.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            f = self(x)
            (g,) = torch.autograd.grad(f, x)
        return f.detach(), g

    def grad(self, v: torch.Tensor) -> torch.Tensor:
        """``∇L(v) = (2/M) Jᵀ (F(v) − d)``."""
        return self.value_and_grad(v)[1]

    def residual(self, v: torch.Tensor) -> torch.Tensor:
        """``F(v) − d`` (no graph)."""
        with torch.no_grad():
            return self.model(v) - self.observed

    # -- Hessian -------------------------------------------------------------------------------
    def hvp(self, v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """``∇²L(v) p`` by double backward (one forward, one backward, one Born pair)."""
        V = self.model._shaped(v).detach()
        return _HvpGraph(self, V, 1).apply(self.model._shaped(p)[None])[0].reshape(v.shape)

    def hvp_batch(self, v: torch.Tensor, P: torch.Tensor) -> torch.Tensor:
        """``∇²L(v) p_j`` for the rows of ``P`` (``(k, n)`` or ``(k, *model_shape)``)."""
        V = self.model._shaped(v).detach()
        return self._hvp_rows(V, P.reshape(-1, *V.shape).to(V.dtype)).reshape(P.shape)

    def _hvp_rows(self, V: torch.Tensor, P: torch.Tensor,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
        kb = self.model.batch("hvp", P.shape[0])
        graph = _HvpGraph(self, V, kb, weights)
        return torch.cat([graph.apply(P[s:s + kb]) for s in range(0, P.shape[0], kb)])

    def hessian(self, v: torch.Tensor) -> torch.Tensor:
        """Dense ``∇²L(v)``, ``(n, n)``, symmetrised.

        ``H = (2/M) JᵀJ + S`` with ``S = Σᵢ wᵢ ∇²Fᵢ``, ``w = (2/M)(F(v) − d)`` held fixed: ``J``
        from batched Born products and ``S`` from batched double backward of ``⟨F(v), w⟩``,
        which skips the second adjoint pass a full Hessian-vector product makes (about a third
        of its cost).  When the dense ``J`` would exceed ``max_memory`` the columns are full
        Hessian-vector products instead.
        """
        V = self.model._shaped(v).detach()
        n = V.numel()
        eye = torch.eye(n, dtype=V.dtype, device=V.device).reshape(n, *V.shape)
        if self.m * n * V.element_size() <= self.model.max_memory:
            J = self.model.jacobian(V)
            w = (2.0 / self.m) * self.residual(V)
            H = self._hvp_rows(V, eye, w).reshape(n, n) + (2.0 / self.m) * (J.T @ J)
        else:
            H = self._hvp_rows(V, eye).reshape(n, n)
        return 0.5 * (H + H.T)

    def hessian_operator(self, v: torch.Tensor) -> HessianOperator:
        """``∇²L(v)`` as a :class:`~newtonkit.operators.HessianOperator` on flat vectors.

        The first-order graph is built once per batch size and reused by every product.
        """
        V = self.model._shaped(v).detach()
        graphs: dict[int, _HvpGraph] = {}

        def apply(P: torch.Tensor) -> torch.Tensor:  # P: (k, n)
            k = P.shape[0]
            kb = self.model.batch("hvp", k)
            if kb not in graphs:
                graphs.clear()
                graphs[kb] = _HvpGraph(self, V, kb)
            return torch.cat([graphs[kb].apply(P[s:s + kb].reshape(-1, *V.shape))
                              for s in range(0, k, kb)]).reshape(k, -1)

        return HessianOperator(lambda p: apply(p[None])[0], V.numel(), like=V.reshape(-1),
                               hvp_batch=lambda P: apply(P.T).T)

    # -- Gauss-Newton --------------------------------------------------------------------------
    def gauss_newton_operator(self, v: torch.Tensor) -> HessianOperator:
        """``G = (2/M) JᵀJ`` at ``v`` (PSD), matrix-free: Born for ``J p``, reverse mode for ``Jᵀ``.

        The forward graph is reused by every product.
        """
        V = self.model._shaped(v).detach()
        graphs: dict[int, _Graph] = {}
        scale = 2.0 / self.m

        def apply(P: torch.Tensor) -> torch.Tensor:  # P: (k, n)
            k = P.shape[0]
            kb = self.model.batch("gn", k)
            if kb not in graphs:
                graphs.clear()
                graphs[kb] = _Graph(self.model, V, kb)
            out = []
            for s in range(0, k, kb):
                Pc = P[s:s + kb].reshape(-1, *V.shape)
                Pc = torch.cat([Pc, Pc.new_zeros(kb - Pc.shape[0], *V.shape)])
                JP = self.model._born(V.expand(kb, *V.shape).contiguous(), Pc, kb)
                out.append(graphs[kb].vjp(JP)[: min(kb, k - s)])
            return scale * torch.cat(out).reshape(k, -1)

        return HessianOperator(lambda p: apply(p[None])[0], V.numel(), like=V.reshape(-1),
                               hvp_batch=lambda P: apply(P.T).T, tags=("positive_semidefinite",))

    def gauss_newton_matrix(self, v: torch.Tensor) -> torch.Tensor:
        """Dense ``G = (2/M) JᵀJ`` from the dense Jacobian (batched Born)."""
        J = self.model.jacobian(v)
        return (2.0 / self.m) * (J.T @ J)


class _HvpGraph:
    """First-order graph of ``k`` copies kept for repeated double backward (``retain_graph``).

    Without ``weights`` the graph is the gradient of the misfit (full Hessian products); with
    ``weights`` ``w`` it is the gradient of ``⟨F(v), w⟩`` (products with ``Σᵢ wᵢ ∇²Fᵢ``).
    """

    def __init__(self, misfit: MSEMisfit, v: torch.Tensor, k: int,
                 weights: torch.Tensor | None = None) -> None:
        self.k = k
        self.V = v.expand(k, *v.shape).clone().requires_grad_(True)
        with torch.enable_grad():
            if weights is None:
                loss = misfit._batched_loss(self.V, k)
            else:
                loss = (misfit.model._propagate(self.V, k) * weights).sum()
            (self.G,) = torch.autograd.grad(loss, self.V, create_graph=True)

    def apply(self, P: torch.Tensor) -> torch.Tensor:
        """``H p_j`` for up to ``k`` directions ``P`` (``(j, *model_shape)``)."""
        j = P.shape[0]
        if j > self.k:
            raise ValueError(f"{j} directions for a graph of {self.k} copies")
        if j < self.k:
            P = torch.cat([P, P.new_zeros(self.k - j, *P.shape[1:])])
        (h,) = torch.autograd.grad(self.G, self.V, P.to(self.G.dtype), retain_graph=True)
        return h[:j]


def _flatten_channel_mappings(kwargs: dict) -> None:
    """Turn ``sources={"u": (amp, loc[, mask])}`` / ``receivers={"u": loc}`` into flat keywords."""
    src = kwargs.pop("sources", None)
    if src is not None:
        if not isinstance(src, Mapping) or set(src) != {"u"}:
            raise ValueError("sources must be a mapping with the single channel 'u'")
        spec = tuple(src["u"])
        kwargs["source_amplitudes"], kwargs["source_locations"] = spec[0], spec[1]
        if len(spec) > 2:
            kwargs["source_mask"] = spec[2]
    rec = kwargs.pop("receivers", None)
    if rec is not None:
        if not isinstance(rec, Mapping) or set(rec) != {"u"}:
            raise ValueError("receivers must be a mapping with the single channel 'u'")
        spec = rec["u"]
        if isinstance(spec, tuple):
            kwargs["receiver_locations"], kwargs["receiver_mask"] = spec
        else:
            kwargs["receiver_locations"] = spec
