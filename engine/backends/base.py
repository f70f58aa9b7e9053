"""What a backend is: the :class:`Session` it opens and the :class:`Backend` declaration of its module.

A backend module (one per engine: :mod:`bertrt.backends.onnxruntime`, :mod:`bertrt.backends.openvino`)
defines ``BACKEND``, a :class:`Backend` that declares its name, the precisions it runs, the extra and
packages it needs, which bundle file it reads at a precision, and how it opens a session. Nothing here
imports an engine: a backend module imports its own when a session is opened or its check runs.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from ..errors import BackendError

if TYPE_CHECKING:
    from .planning import Plan

__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "Backend", "Session"]

#: every precision a backend may run (a backend declares the ones it does); fp16 is a GPU precision
PRECISIONS = ("int8", "fp32", "bf16", "fp16")
#: the precision the static rule (and a missing ``precision``) uses
DEFAULT_PRECISION = "int8"


@runtime_checkable
class Session(Protocol):
    """A loaded graph, as the pipeline uses it. ``inputs``: name -> ONNX type string of every declared
    input; ``input_dtypes``: name -> numpy dtype of those the runtime feeds; ``outputs``: name -> declared
    shape (ints, or names for dynamic dimensions); ``run(batch)`` returns the output chosen with
    :meth:`select_output` (or the outputs it stacks) for a padded batch (``input_ids``, ``attention_mask``, ``token_type_ids``) and
    is safe to call from several threads. :class:`bertrt.session.GraphIO` implements the input and output
    bookkeeping."""

    model_path: Path
    threads: int
    inputs: dict[str, str]
    input_dtypes: dict[str, Any]
    outputs: dict[str, list]
    output_names: list[str]
    output_name: str | None

    def select_output(self, name: str, stacked: tuple[str, ...] = ()) -> None: ...

    def run(self, batch: dict) -> Any: ...


class Backend:
    """One engine's declaration (subclass it in the backend's module and name an instance ``BACKEND``).

    ``precisions``: what it runs (a subset of :data:`PRECISIONS`); ``extra``: the ``bertrt[...]`` extra
    that installs it (None: part of the runtime); ``packages``: the modules it needs, checked without
    importing them (:meth:`available`); ``distributions``: those whose versions ``bertrt tune`` records;
    ``takes_providers``: whether onnxruntime execution providers apply; ``accelerator_precisions``: those
    of its precisions that run only with an accelerator provider given (fp16: CUDA), refused on the CPU
    default; ``lacks``: why it does not run a precision of :data:`PRECISIONS` (said in the error for it).
    """

    name: str = ""
    precisions: tuple[str, ...] = ()
    extra: str | None = None
    packages: tuple[str, ...] = ()
    distributions: tuple[str, ...] = ()
    takes_providers: bool = False
    accelerator_precisions: tuple[str, ...] = ()
    lacks: dict[str, str] = {}

    def available(self) -> bool:
        """Whether every package it needs is importable (without importing any)."""
        return all(importlib.util.find_spec(module) is not None for module in self.packages)

    def check(self, precision: str) -> None:
        """BackendError when something ``precision`` needs here is missing (the default: a package)."""
        for module in self.packages:
            if importlib.util.find_spec(module) is None:
                install = f"pip install 'bertrt[{self.extra}]'" if self.extra else f"pip install {module}"
                raise BackendError(
                    f"backend {self.name!r} needs the {module} package, which is not installed: {install}"
                )

    def model_file(self, root: Path, manifest: dict, precision: str) -> Path:
        """The bundle file it reads at ``precision`` (the default: ``model.int8.onnx`` for int8,
        ``model.onnx`` for fp32, or a foreign layout's file of that kind)."""
        from ..bundle import select_model_file

        return select_model_file(root, precision)

    def open(self, model_path: Path, plan: Plan, output_name: str | None = None) -> Session:
        """The session on ``model_path`` at ``plan``'s precision and threads."""
        raise NotImplementedError
