"""The OpenVINO backend (``pip install 'bertrt[openvino]'``): fp32, bf16 (a CPU with avx512_bf16 /
amx_bf16) and int8 (nncf int8 weights of ``model.onnx`` + per-token-group dynamic activation
quantization) on OpenVINO's CPU plugin (:class:`bertrt.session_openvino.OpenVinoSession`).

It reads the bundle's OpenVINO IR of the precision when bundle.json records it (``bertrt export
--openvino-ir``: ``model.openvino.xml`` for fp32 and bf16, ``model.openvino-int8.xml`` for int8), else
``model.onnx``, converted (and for int8 compressed) at load.
"""

from __future__ import annotations

import importlib.util

from ..bundle import FP32_FILE, OPENVINO_FILE, OPENVINO_INT8_FILE, recorded_file, select_model_file
from ..errors import BackendError
from .base import Backend

__all__ = ["BACKEND", "IR_FILES", "OpenVino"]

#: precision -> the IR file read when bundle.json records it
IR_FILES = {"fp32": OPENVINO_FILE, "bf16": OPENVINO_FILE, "int8": OPENVINO_INT8_FILE}


class OpenVino(Backend):
    name = "openvino"
    precisions = ("fp32", "bf16", "int8")
    extra = "openvino"
    packages = ("openvino",)  # and nncf for int8 (:meth:`check`)
    distributions = ("openvino", "nncf")

    def check(self, precision: str) -> None:
        from ..session_openvino import import_openvino

        import_openvino()
        if precision == "int8" and importlib.util.find_spec("nncf") is None:
            raise BackendError(
                "precision 'int8' on backend 'openvino' needs nncf, which is not installed: "
                "pip install 'bertrt[openvino]'"
            )

    def model_file(self, root, manifest, precision):
        ir = recorded_file(root, manifest, IR_FILES.get(precision, OPENVINO_FILE), FP32_FILE)
        return ir or select_model_file(root, "fp32")

    def open(self, model_path, plan, output_name=None):
        from ..session_openvino import OpenVinoSession

        return OpenVinoSession(model_path, plan.threads, plan.precision, output_name)


BACKEND = OpenVino()
