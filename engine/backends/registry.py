"""The backend registry: one line per built-in backend module; :func:`register_backend` adds another.

:data:`BACKENDS` maps each name to its :class:`~bertrt.backends.base.Backend`, in registration order,
and is the same dict object for the life of the process: the ``--backend`` choices of every command, the
static rule and ``bertrt tune``'s candidates read it when they run, so a registered backend is in all of
them.
"""

from __future__ import annotations

import importlib

from ..errors import InputError
from .base import PRECISIONS, Backend

__all__ = ["BACKENDS", "get_backend", "register_backend", "unregister_backend"]

#: name -> module (``.name``: a module of this package) defining ``BACKEND``
_BUILTIN = {"onnxruntime": ".onnxruntime", "openvino": ".openvino"}

BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, module: str) -> Backend:
    """Add the backend ``module`` defines as ``BACKEND`` (a Backend named ``name``); imported now (a backend
    module imports its engine only when a session opens)."""
    if name in BACKENDS or name == "auto":
        raise InputError(f"backend name already taken: {name!r}")
    loaded = getattr(importlib.import_module(module, __package__), "BACKEND", None)
    if not isinstance(loaded, Backend) or loaded.name != name:
        raise InputError(f"{module} must define BACKEND, a bertrt.backends.Backend named {name!r}")
    unknown = [p for p in loaded.precisions if p not in PRECISIONS]
    if unknown or not loaded.precisions:
        raise InputError(
            f"backend {name!r} declares precisions {list(loaded.precisions)}; each must be one of "
            f"{', '.join(PRECISIONS)}"
        )
    BACKENDS[name] = loaded
    return loaded


def unregister_backend(name: str) -> None:
    """Remove a backend added with :func:`register_backend` (a built-in one stays)."""
    if name in _BUILTIN:
        raise InputError(f"{name!r} is a built-in backend")
    BACKENDS.pop(name, None)


def get_backend(name: str) -> Backend:
    """The registered backend ``name``; InputError naming the choices when there is none."""
    backend = BACKENDS.get(name) if isinstance(name, str) else None
    if backend is None:
        raise InputError(f"unknown backend {name!r}; expected one of auto, {', '.join(BACKENDS)}")
    return backend


for _name, _module in _BUILTIN.items():
    register_backend(_name, _module)
