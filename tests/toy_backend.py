"""A toy backend for tests/runtime/test_backends_registry.py: the fp32 graph (``model.onnx``) run by
onnxruntime through a session of its own, which counts its runs.

It is the whole of what a new backend needs besides one ``register_backend`` line: a Backend with a
name and precisions, the model file it reads (the default: ``model.onnx`` for fp32) and how it opens a
session (anything with the :class:`bertrt.backends.Session` interface).
"""

from __future__ import annotations

from bertrt.backends import Backend
from bertrt.session import OnnxSession

__all__ = ["BACKEND", "ToySession"]


class ToySession(OnnxSession):
    """OnnxSession on the CPU provider; ``ToySession.runs`` counts the batches every instance ran."""

    runs = 0

    def run(self, batch):
        type(self).runs += 1
        return super().run(batch)


class Toy(Backend):
    name = "toy"
    precisions = ("fp32",)
    packages = ("onnxruntime",)
    distributions = ("onnxruntime",)

    def open(self, model_path, plan, output_name=None):
        return ToySession(model_path, plan.threads, None, output_name)


BACKEND = Toy()
