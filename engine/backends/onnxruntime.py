"""The onnxruntime backend: int8 (``model.int8.onnx``, the per-token recipe) and fp32 (``model.onnx``) on
onnxruntime's CPU provider, or the execution providers given (:class:`bertrt.session.OnnxSession`); fp16
(``model.fp16.onnx``, ``bertrt export --fp16``) with an accelerator provider (``providers="cuda"``),
where it is the default precision. On an accelerator the session runs with IO binding."""

from __future__ import annotations

from ..errors import ModelFileNotFoundError
from .base import Backend

__all__ = ["BACKEND", "OnnxRuntime"]


class OnnxRuntime(Backend):
    name = "onnxruntime"
    precisions = ("int8", "fp32", "fp16")
    packages = ("onnxruntime",)
    distributions = ("onnxruntime",)
    takes_providers = True
    accelerator_precisions = ("fp16",)
    lacks = {"bf16": "its CPU provider has no bf16 kernels"}

    def model_file(self, root, manifest, precision):
        try:
            return super().model_file(root, manifest, precision)
        except ModelFileNotFoundError as exc:
            if precision != "fp16":
                raise
            raise ModelFileNotFoundError(
                exc.path,
                f"{exc.problem}; a bundle has model.fp16.onnx when exported with bertrt export --fp16 "
                "(or run precision='fp32' on the GPU)",
            ) from exc

    def open(self, model_path, plan, output_name=None):
        from ..session import OnnxSession

        return OnnxSession(
            model_path, plan.threads, plan.providers, output_name, spinning=getattr(plan, "spinning", None)
        )


BACKEND = OnnxRuntime()
