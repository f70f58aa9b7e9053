"""A toy task for tests/tasks/test_tasks_registry.py: the classifier's raw logits, scaled, one list per text.

It is the whole of what a new task needs besides one ``register_task`` line: a Task with a name, the
exporter's head class, an option (which becomes ``bertrt predict --scale``), a head check and a finish.
"""

from __future__ import annotations

from bertrt.errors import InputError
from bertrt.tasks.base import Cli, Option, Task, label_head

__all__ = ["TASK", "ClsLogit"]


class ClsLogit(Task):
    name = "cls-logit"
    auto_class = "AutoModelForSequenceClassification"
    output = "logits"
    labels = True
    options = (Option("scale", float, 1.0, help="multiply the logits by this", cli=Cli(parse=float)),)

    def check_options(self, pipe, options):
        opts = super().check_options(pipe, options)
        if isinstance(opts["scale"], bool) or not isinstance(opts["scale"], (int, float)):
            raise InputError(f"scale must be a number, got {opts['scale']!r}")
        return opts

    def check_head(self, pipe) -> int:
        return label_head(pipe, rank=2)

    def finish(self, pipe, items, encoded, collected, opts) -> list:
        return [{"logits": [float(x) * opts["scale"] for x in row]} for row in collected]


TASK = ClsLogit()
