"""The registry of automatic-differentiation providers, keyed by backend name.

A provider factory is called as ``factory(fun, x_shape, args=())`` where ``fun(x, *args)``
takes ``x`` of shape ``x_shape`` and returns a 0-d scalar or an array; it returns an object with
(``x`` flat of shape ``(n,)``, results flat)::

    value(x), value_and_grad(x) -> (f, g), hvp(x, v), hessian(x) -> (n, n),
    jvp(x, v) -> J v, vjp(x, w) -> Jᵀ w, jacobian(x) -> (m, n)

``newtonkit_torch`` registers the PyTorch provider when imported; :func:`get_autodiff` imports it
lazily the first time a torch problem arrives without derivatives, so the core never imports
torch at module level.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from .. import _backend as B

__all__ = ["register_autodiff", "get_autodiff"]

_PROVIDERS: dict[str, Callable] = {}
# Packages that register a provider for a backend when imported.
_LAZY = {"torch": "newtonkit_torch"}


#: The error for a ``fun`` an autodiff provider cannot differentiate (single and batched).
NOT_IN_GRAPH = ("fun's output does not depend on x in torch's autograd graph (it is computed "
                "under torch.no_grad(), detached, or constant), so autodiff derivatives would "
                "be zero; compute it with differentiable torch operations, or pass the "
                "derivatives (jac=, hess= or hessp=; for a ShardedObjective its grad and hessp)")


def register_autodiff(backend_name: str, factory: Callable) -> None:
    """Register ``factory`` as the derivative provider for arrays of ``backend_name``.

    Parameters
    ----------
    backend_name : str
        ``'numpy'``, ``'torch'``, ``'cupy'``, ... (as :func:`newtonkit._backend.backend_name`).
    factory : callable
        ``factory(fun, x_shape, args=())`` returning a provider (module docstring).  A later
        registration for the same backend replaces the earlier one.
    """
    if not isinstance(backend_name, str) or not backend_name:
        raise TypeError(f"backend_name must be a non-empty string, got {backend_name!r}")
    if not callable(factory):
        raise TypeError(f"the autodiff factory must be callable, got {type(factory).__name__}")
    _PROVIDERS[backend_name] = factory


def get_autodiff(xp: Any) -> Callable | None:
    """The provider factory registered for the backend of namespace ``xp``, or ``None``.

    For ``'torch'`` with nothing registered yet, ``newtonkit_torch`` is imported first (it
    registers itself); an import failure leaves ``None`` (the caller falls back to finite
    differences and warns).
    """
    name = B.backend_name(xp)
    if name not in _PROVIDERS and name in _LAZY:
        try:
            importlib.import_module(_LAZY[name])
        except ImportError:
            return None
    return _PROVIDERS.get(name)
