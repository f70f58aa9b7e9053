"""Task names, aliases and inference of the task from a checkpoint's ``config.json``.

Pure data and functions: shared by the runtime (foreign bundles) and the exporter.
"""

from __future__ import annotations

from .errors import TaskError

__all__ = ["SUPPORTED_MODEL_TYPES", "TASKS", "TASK_ALIASES", "infer_task", "normalize_task"]

#: The four tasks bertrt serves, with the transformers pipeline name they mirror.
TASKS = ("feature-extraction", "fill-mask", "text-classification", "token-classification")

TASK_ALIASES = {
    "ner": "token-classification",
    "sentiment-analysis": "text-classification",
    "embeddings": "feature-extraction",
    "default": "feature-extraction",
}

#: model_type -> properties that matter to export and runtime.
SUPPORTED_MODEL_TYPES = {
    "bert": {"token_type_ids": True, "position_offset": 0},
    "roberta": {"token_type_ids": False, "position_offset": 2},  # positions start at padding_idx + 1
    "distilbert": {"token_type_ids": False, "position_offset": 0},
}

# Suffix of the architecture name (as in config.json "architectures") -> task.
_HEAD_SUFFIXES = (
    ("ForTokenClassification", "token-classification"),
    ("ForSequenceClassification", "text-classification"),
    ("ForMaskedLM", "fill-mask"),
    ("ForPreTraining", "fill-mask"),
    ("Model", "feature-extraction"),
)


def normalize_task(task: str) -> str:
    """Return the canonical task name for ``task`` (accepting aliases such as ``ner``)."""
    if not isinstance(task, str):
        raise TaskError(f"task must be a str, got {type(task).__name__}")
    canonical = TASK_ALIASES.get(task, task)
    if canonical not in TASKS:
        raise TaskError(f"unknown task {task!r}; expected one of {', '.join(TASKS)} (or alias ner)")
    return canonical


def task_of_architecture(architecture: str) -> str | None:
    """Task served by a head class such as ``BertForTokenClassification``; None when unknown."""
    for suffix, task in _HEAD_SUFFIXES:
        if architecture.endswith(suffix):
            return task
    return None


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
    if task == "feature-extraction":
        return ("feature-extraction",)
    # Every head model still carries the encoder, so it can also be exported for embeddings.
    return (task, "feature-extraction")
