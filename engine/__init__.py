"""bertrt runtime: ONNX inference for BERT-family encoders with numpy, tokenizers and onnxruntime only.

::

    import bertrt
    ner = bertrt.pipeline("ner", "path/to/bundle")          # task None: read from the bundle
    ner("Maria loves Groningen", aggregation_strategy="first")

Importing ``bertrt`` is cheap and has no side effects: the pipeline machinery (numpy, tokenizers,
onnxruntime) loads on first use of :func:`pipeline`.
"""

from __future__ import annotations

from . import errors
from .errors import (
    BertrtError,
    BundleError,
    InputError,
    InputTypeError,
    ModelFileNotFoundError,
    TaskError,
)
from .tasks import TASKS

__all__ = [
    "TASKS",
    "BertrtError",
    "Bundle",
    "BundleError",
    "InputError",
    "InputTypeError",
    "ModelFileNotFoundError",
    "Pipeline",
    "TaskError",
    "__version__",
    "errors",
    "load_bundle",
    "pipeline",
]

__version__ = "0.1.0"

_LAZY = {"pipeline": "pipelines", "Pipeline": "pipelines", "load_bundle": "bundle", "Bundle": "bundle"}


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bertrt' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
