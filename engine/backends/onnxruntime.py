"""The onnxruntime backend: int8 (``model.int8.onnx``, the per-token recipe) and fp32 (``model.onnx``) on
onnxruntime's CPU provider, or the execution providers given (:class:`bertrt.session.OnnxSession`)."""

from __future__ import annotations

from .base import Backend

__all__ = ["BACKEND", "OnnxRuntime"]


class OnnxRuntime(Backend):
    name = "onnxruntime"
    precisions = ("int8", "fp32")
    packages = ("onnxruntime",)
    distributions = ("onnxruntime",)
    takes_providers = True
    lacks = {"bf16": "its CPU provider has no bf16 kernels"}

    def open(self, model_path, plan, output_name=None):
        from ..session import OnnxSession

        return OnnxSession(model_path, plan.threads, plan.providers, output_name)


BACKEND = OnnxRuntime()
