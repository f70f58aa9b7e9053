"""A toy task for tests/tasks/test_tasks_registry.py: the classifier's raw logits, scaled, one list per text.

It is the whole of what a new task needs besides one ``register_task`` line: a Task with a name, the
exporter's head class, an option (which becomes ``bertrt predict --scale``), a head check and a finish;
and for the other commands: its tune gates and what makes two results agree (``bertrt tune``), the
Arrow type of its results (``bertrt batch``), its validation texts and output comparison (the exporter).
"""

from __future__ import annotations

from types import MappingProxyType

from bertrt.errors import InputError
from bertrt.tasks import figures
from bertrt.tasks.base import Cli, Option, Task, ValidationInputs, label_head

__all__ = ["TASK", "TOY_TEXTS", "ClsLogit"]

#: the toy's own validation texts (no pairs)
TOY_TEXTS = ("Maria loves Groningen.", "Paris is far away from here, or so they say.", "ok")


class ClsLogit(Task):
    name = "cls-logit"
    auto_class = "AutoModelForSequenceClassification"
    output = "logits"
    labels = True
    options = (Option("scale", float, 1.0, help="multiply the logits by this", cli=Cli(parse=float)),)
    gates = MappingProxyType({"accuracy.agreement": 0.5, "invariance.agreement": 0.99})

    def check_options(self, pipe, options):
        opts = super().check_options(pipe, options)
        if isinstance(opts["scale"], bool) or not isinstance(opts["scale"], (int, float)):
            raise InputError(f"scale must be a number, got {opts['scale']!r}")
        return opts

    def check_head(self, pipe) -> int:
        return label_head(pipe, rank=2)

    def finish(self, pipe, items, encoded, collected, opts) -> list:
        return [{"logits": [float(x) * opts["scale"] for x in row]} for row in collected]

    def signature(self, result) -> int:
        logits = result["logits"]
        return max(range(len(logits)), key=logits.__getitem__)

    def validation_inputs(self, mask_token) -> ValidationInputs:
        return ValidationInputs(TOY_TEXTS, pairs=())

    def compare_outputs(self, reference, candidate, batches, mask_id) -> dict:
        out = super().compare_outputs(reference, candidate, batches, mask_id)
        agree = [figures.argmax_agreement(ref, cand) for ref, cand in zip(reference, candidate)]
        out["logit_agreement"] = min(agree)
        return out

    def result_spec(self, pipe, options):
        import pyarrow as pa

        from bertrt.batch.results import ResultSpec

        return ResultSpec("list", pa.struct([("logits", pa.list_(pa.float32()))]))


TASK = ClsLogit()
