"""Step 3: dynamic int8 quantization of the fused fp32 graph with onnxruntime's quantizer.

Weights are signed int8 (``QInt8``), activations are quantized to uint8 at run time. Without VNNI
(AVX512-VNNI / AVX-VNNI), the u8*s8 integer path can saturate, so weights use 7 bits (``reduce_range``).

A fused graph holds contrib operators (Attention, SkipLayerNormalization, ...) that ONNX's own shape
inference does not know, which leaves the quantizer without tensor types. We first run onnxruntime's
pre-processing with its symbolic shape inference (which knows the contrib ops; graph optimization is
skipped because the graph is already fused). Should that fail, the quantizer is told that untyped
tensors are float (``DefaultTensorType``), which holds for these fp32 graphs. The recipe records which.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import tempfile
from pathlib import Path

from engine.errors import ExportError

__all__ = ["QUANTIZE_MODES", "cpu_flags", "has_vnni", "quantize_graph"]

log = logging.getLogger("bertrt.export")

QUANTIZE_MODES = ("int8", "none")
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """CPU flags from ``/proc/cpuinfo`` text (read when None); empty when unknown."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def has_vnni(flags: set[str]) -> bool:
    return any(f in flags for f in _VNNI_FLAGS)


def quantize_graph(src: Path, dst: Path, per_channel: bool = False, flags: set[str] | None = None) -> dict:
    """Quantize ``src`` into ``dst``; return the recipe written to the manifest."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    flags = cpu_flags() if flags is None else flags
    vnni = has_vnni(flags)
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
    reduce_range = bool(x86 and not vnni)
    recipe = {
        "method": "dynamic",
        "weight_type": "QInt8",
        "activation_type": "QUInt8 (dynamic, per tensor)",
        "per_channel": bool(per_channel),
        "reduce_range": reduce_range,
        "vnni": vnni,
        "cpu_flags": sorted(f for f in flags if f in _VNNI_FLAGS or f.startswith("avx512")),
        "op_types": ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"],
        "shape_inference": "symbolic, auto_merge (onnxruntime quant_pre_process, optimization skipped)",
    }
    extra_options: dict = {}
    with tempfile.TemporaryDirectory(prefix="bertrt-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            # auto_merge resolves the symbolic dims RoBERTa's position-id arithmetic leaves unmerged. On
            # failure the shape inference saves a debug copy into the working directory: keep it in tmp.
            with _working_directory(tmp):
                quant_pre_process(str(src), str(prepared), skip_optimization=True, auto_merge=True)
        except Exception as exc:  # noqa: BLE001 - symbolic shape inference raises bare exceptions; we fall back
            log.warning("quantize: symbolic shape inference failed (%s); untyped tensors taken as float", exc)
            prepared = src
            extra_options["DefaultTensorType"] = onnx.TensorProto.FLOAT
            recipe["shape_inference"] = f"failed ({type(exc).__name__}); DefaultTensorType=FLOAT"
        try:
            quantize_dynamic(
                str(prepared), str(dst), op_types_to_quantize=recipe["op_types"], per_channel=per_channel,
                reduce_range=reduce_range, weight_type=QuantType.QInt8, extra_options=extra_options,
            )
        except Exception as exc:
            raise ExportError(f"int8 quantization of {src.name} failed: {exc}") from exc
    _check_runs(dst)
    return recipe


@contextlib.contextmanager
def _working_directory(path: str):
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _check_runs(path: Path) -> None:
    """The quantized graph must load in onnxruntime (its kernels are checked at session creation)."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"the int8 graph {path.name} does not load in onnxruntime: {exc}") from exc
