"""The task registry: names, aliases, the head classes each task serves, and the module implementing it.

One line of :data:`_BUILTIN` per task; the module (one per task, beside this file) holds everything
else as a :class:`~bertrt.tasks.base.Task` named ``TASK``: options, head check, encode, collect,
finish, result shaping and its pure numpy post-processing, the exporter's auto class, validation inputs
and output comparison, tune's gates and agreement figures, the Arrow type of its results, its evaluation
metric and a warm-up text. Modules load on first
:func:`get_task`, so importing the registry is cheap (``import bertrt`` reads :data:`TASKS`).

A task outside this package is added with :func:`register_task` (an ``owner.module`` path whose module
defines ``TASK``). :data:`TASKS` and :data:`TASK_ALIASES` follow the registry; a ``from bertrt.tasks
import TASKS`` made before a registration keeps the earlier tuple.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import TaskError

if TYPE_CHECKING:
    from .base import Task

__all__ = [
    "ENCODER_TASK",
    "ENCODER_TASKS",
    "TASKS",
    "TASK_ALIASES",
    "TaskEntry",
    "compatible_tasks",
    "get_task",
    "infer_task",
    "normalize_task",
    "register_task",
    "task_of_architecture",
    "unregister_task",
]


@dataclass(frozen=True)
class TaskEntry:
    """One registry line: ``module`` is a dotted path (``.name`` for a module of this package)."""

    name: str
    module: str
    aliases: tuple[str, ...] = ()
    #: suffixes of config.json ``architectures`` names whose checkpoints this task serves
    heads: tuple[str, ...] = ()


_BUILTIN = (
    # ElectraForPreTraining is ELECTRA's discriminator (replaced-token detection, no MLM head): its
    # checkpoints embed. The longer suffix wins over fill-mask's ForPreTraining (BERT/ALBERT: MLM + NSP/SOP).
    TaskEntry(
        "feature-extraction",
        ".feature_extraction",
        aliases=("embeddings", "default"),
        heads=("Model", "ElectraForPreTraining"),
    ),
    TaskEntry("fill-mask", ".fill_mask", heads=("ForMaskedLM", "ForPreTraining")),
    TaskEntry(
        "text-classification",
        ".text_classification",
        aliases=("sentiment-analysis",),
        heads=("ForSequenceClassification",),
    ),
    TaskEntry(
        "token-classification", ".token_classification", aliases=("ner",), heads=("ForTokenClassification",)
    ),
    # no head suffix: inferred from a sentence-transformers checkpoint's modules.json (its Pooling module)
    TaskEntry("sentence-embedding", ".sentence_embedding"),
    TaskEntry("zero-shot-classification", ".zero_shot", heads=("ForSequenceClassification",)),
    TaskEntry("question-answering", ".question_answering", heads=("ForQuestionAnswering",)),
    TaskEntry("sparse-embedding", ".sparse_embedding", aliases=("splade",), heads=("ForMaskedLM",)),
    TaskEntry("rerank", ".rerank", aliases=("cross-encoder",), heads=("ForSequenceClassification",)),
)

#: The task a base model (no head) serves; every head model can be exported for it too.
ENCODER_TASK = "feature-extraction"
#: Tasks that read the encoder's token vectors alone: every checkpoint can be exported for them.
ENCODER_TASKS = (ENCODER_TASK, "sentence-embedding")

_REGISTRY: dict[str, TaskEntry] = {entry.name: entry for entry in _BUILTIN}
_LOADED: dict[str, Task] = {}

#: Canonical task names, in registry order (the transformers pipeline names they mirror).
TASKS: tuple[str, ...] = tuple(_REGISTRY)
#: alias -> canonical name
TASK_ALIASES: dict[str, str] = {alias: e.name for e in _BUILTIN for alias in e.aliases}


def register_task(
    name: str, module: str, aliases: tuple[str, ...] = (), heads: tuple[str, ...] = ()
) -> TaskEntry:
    """Add a task: ``module`` (loaded on first use) defines ``TASK``, a Task whose ``name`` is ``name``."""
    taken = set(_REGISTRY) | set(TASK_ALIASES)
    clashes = sorted(taken & ({name} | set(aliases)))
    if clashes:
        raise TaskError(f"task name or alias already registered: {', '.join(clashes)}")
    entry = TaskEntry(name, module, tuple(aliases), tuple(heads))
    _REGISTRY[name] = entry
    _refresh()
    return entry


def unregister_task(name: str) -> None:
    """Remove a task added with :func:`register_task` (a built-in one stays)."""
    if any(entry.name == name for entry in _BUILTIN):
        raise TaskError(f"{name!r} is a built-in task")
    _REGISTRY.pop(name, None)
    _LOADED.pop(name, None)
    _refresh()


def _refresh() -> None:
    global TASKS
    TASKS = tuple(_REGISTRY)
    TASK_ALIASES.clear()
    TASK_ALIASES.update({alias: e.name for e in _REGISTRY.values() for alias in e.aliases})


def normalize_task(task: str) -> str:
    """Return the canonical task name for ``task`` (accepting aliases such as ``ner``)."""
    if not isinstance(task, str):
        raise TaskError(f"task must be a str, got {type(task).__name__}")
    canonical = TASK_ALIASES.get(task, task)
    if canonical not in _REGISTRY:
        raise TaskError(f"unknown task {task!r}; expected one of {', '.join(TASKS)} (or alias ner)")
    return canonical


def get_task(task: str) -> Task:
    """The Task object of ``task`` (a name or alias), its module imported on first use."""
    name = normalize_task(task)
    loaded = _LOADED.get(name)
    if loaded is None:
        entry = _REGISTRY[name]
        module = importlib.import_module(entry.module, __name__)
        loaded = getattr(module, "TASK", None)
        if loaded is None or getattr(loaded, "name", None) != name:
            raise TaskError(f"{module.__name__} must define TASK, a Task named {name!r}")
        _LOADED[name] = loaded
    return loaded


def task_of_architecture(architecture: str) -> str | None:
    """Task served by a head class such as ``BertForTokenClassification``; None when unknown.

    The longest matching head suffix wins, so ``Model`` only claims what no head suffix does.
    """
    best, length = None, -1
    for entry in _REGISTRY.values():
        for suffix in entry.heads:
            if architecture.endswith(suffix) and len(suffix) > length:
                best, length = entry.name, len(suffix)
    return best


def infer_task(config: dict) -> str:
    """Infer the task from ``config.json``'s ``architectures``; TaskError when it cannot be."""
    archs = config.get("architectures") or []
    tasks = {t for t in (task_of_architecture(a) for a in archs) if t}
    if len(tasks) == 1:
        return tasks.pop()
    if not archs:
        raise TaskError("cannot infer the task: config.json has no 'architectures'; pass --task / task=")
    raise TaskError(
        f"cannot infer the task from architectures {archs}; pass one of {', '.join(TASKS)} explicitly"
    )


def compatible_tasks(architecture: str) -> tuple[str, ...]:
    """Tasks a checkpoint with this head can be exported for (a base model only embeds)."""
    task = task_of_architecture(architecture)
    if task is None:
        return ()
    # Every task claiming the same head (text-classification and zero-shot: ForSequenceClassification)
    # and, as every head model still carries the encoder, the embedding tasks.
    best = max(len(s) for e in _REGISTRY.values() for s in e.heads if architecture.endswith(s))
    same = [
        e.name
        for e in _REGISTRY.values()
        if any(len(s) == best and architecture.endswith(s) for s in e.heads)
    ]
    return tuple(dict.fromkeys((task, *same, *ENCODER_TASKS)))
