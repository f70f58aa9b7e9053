"""The one exception tree of bertrt.

Every error bertrt raises on purpose derives from :class:`BertrtError`, so a caller can catch the
family with one ``except``. Errors about the caller's arguments also derive from the matching builtin
(``ValueError``/``TypeError``), so code written against ``transformers.pipeline`` keeps working.

::

    BertrtError
    ├── BundleError            a bundle folder is missing a file, is corrupt, or does not match itself
    │   └── ModelFileNotFoundError   no ONNX file matches the requested precision / model_file
    ├── TaskError (ValueError) the task is unknown, or does not fit the model's head
    ├── InputError (ValueError)      a text or an option is unusable (bad strategy, top_k <= 0, ...)
    │   ├── InputTypeError (TypeError)   an input item is not a str (names its index and type)
    │   └── UsageError             a command-line flag that does not fit (the bundle's task): exit 2
    ├── ExportError            ``bertrt export`` failed (unsupported architecture, hub unreachable, ...)
    │   ├── UnsupportedModelError (ValueError)  the architecture is not a row of bertrt.architectures
    │   └── ValidationError    exported graph disagrees with PyTorch beyond tolerance / accuracy gate
    ├── ServeError             the HTTP server could not start or serve
    └── BackendError           a backend / precision cannot run here (extra not installed, CPU lacks bf16)
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BertrtError",
    "BundleError",
    "ExportError",
    "InputError",
    "InputTypeError",
    "ModelFileNotFoundError",
    "ServeError",
    "TaskError",
    "UnsupportedModelError",
    "UsageError",
    "ValidationError",
]


class BertrtError(Exception):
    """Base class of every error bertrt raises on purpose."""


class BundleError(BertrtError):
    """A bundle (or foreign ONNX folder) cannot be used; the message names the path and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ModelFileNotFoundError(BundleError):
    """No ONNX file in the bundle matches the requested precision or ``model_file``."""


class TaskError(BertrtError, ValueError):
    """Unknown task, a task that cannot be inferred, or one that does not match the model's head."""


class InputError(BertrtError, ValueError):
    """An input text or a task option is unusable; raised before any work is done.

    ``items``: the indexes of the input items it is about, with ``problem`` the message without them, so
    a caller that knows where each item came from (``bertrt predict``: a line, an argument) can say so."""

    def __init__(self, message: str = "", *, items=(), problem: str | None = None):
        self.items = tuple(items)
        self.problem = problem if problem is not None else message
        super().__init__(message)

    def __reduce__(self):  # keep items and problem across processes (Ray, multiprocessing workers)
        return _rebuild_input_error, (type(self), str(self), self.items, self.problem)


def _rebuild_input_error(cls, message: str, items: tuple, problem: str):
    error = cls.__new__(cls)
    InputError.__init__(error, message, items=items, problem=problem)
    return error


class InputTypeError(InputError, TypeError):
    """An input item is not a ``str``; the message names its index and its type."""


class UsageError(InputError):
    """A command-line usage error found after parsing (a flag the bundle's task does not take, a value
    that task does not accept); the ``bertrt`` command exits 2 on it, as on argparse's usage errors."""


class ExportError(BertrtError):
    """``bertrt export`` could not produce a bundle."""


class UnsupportedModelError(ExportError, ValueError):
    """The checkpoint's architecture is not one bertrt supports; the message lists the supported ones."""


class ValidationError(ExportError):
    """The exported graph disagrees with the PyTorch reference beyond tolerance (figures in the message)."""

    def __init__(self, message: str, figures: dict | None = None):
        self.figures = dict(figures or {})
        super().__init__(message)


class ServeError(BertrtError):
    """The HTTP server could not start or serve a model."""


class BackendError(BertrtError):
    """A backend or precision cannot run on this machine: its optional extra is not installed, or the CPU
    lacks the feature (bf16); the message names the backend and what to install or use instead."""
