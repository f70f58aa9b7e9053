"""Step 3: int8 quantization of the fused fp32 graph. Two recipes (``INT8_RECIPES``):

- ``per-token`` (default): activations quantized per token (one symmetric scale per row), weights per
  output column, by bertrt's own graph rewrite (``export/per_token.py``): onnxruntime's quantizer has no
  per-token activation scales. Each fused Attention is unfused into its Q, K and V MatMuls (quantized per
  token) and an fp32 attention in standard ops (MatMul, Softmax; ``per_token.unfuse_attention``). The embedding tables are quantized weight-only by onnxruntime's
  ``quantize_dynamic`` (EmbedLayerNormalization / Gather). A text's result does not depend on the texts
  that share its batch (WNUT-16 NER, batch 1 vs 32: 100% entity agreement; see
  benchmarks/results/int8_recipe.md).
- ``dynamic``: onnxruntime's ``quantize_dynamic`` on MatMul, Attention (QAttention), EmbedLayerNormalization
  and Gather: s8 weights, u8 activations with ONE scale and zero point per tensor, computed over the whole
  batch at run time; results change with the batch composition (93.6% entity agreement on WNUT-16).

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

from bertrt import cpu
from bertrt.errors import ExportError

__all__ = [
    "ATTENTION_MODES",
    "DEFAULT_RECIPE",
    "INT8_RECIPES",
    "PER_TOKEN_ATTENTION",
    "QUANTIZE_MODES",
    "cpu_flags",
    "has_vnni",
    "quantize_graph",
]

log = logging.getLogger("bertrt.export")

QUANTIZE_MODES = ("int8", "none")
INT8_RECIPES = ("per-token", "dynamic")
DEFAULT_RECIPE = "per-token"
ATTENTION_MODES = ("per-token", "fp32", "qattention")
PER_TOKEN_ATTENTION = "per-token"
_VNNI_FLAGS = ("avx512_vnni", "avx_vnni")


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """CPU flags from ``/proc/cpuinfo`` text (this machine's when None: :mod:`bertrt.cpu`); empty when
    unknown."""
    if cpuinfo is None:
        return set(cpu.read_cpuinfo().flags)
    return set(cpu.parse_cpuinfo(cpuinfo).flags)


def has_vnni(flags: set[str]) -> bool:
    return any(f in flags for f in _VNNI_FLAGS)


def quantize_graph(
    src: Path,
    dst: Path,
    per_channel: bool = False,
    flags: set[str] | None = None,
    recipe: str = DEFAULT_RECIPE,
    attention: str | None = None,
) -> dict:
    """Quantize ``src`` into ``dst`` with ``recipe`` (:data:`INT8_RECIPES`); return the manifest's record.

    ``attention`` (per-token recipe only): "per-token" unfuses each Attention into its Q, K and V MatMuls
    (quantized per token like the others) and an fp32 attention in standard ops; "fp32" leaves the fused
    Attention nodes (packed QKV weights) in fp32; "qattention" quantizes them with onnxruntime's QAttention
    (per-tensor activations: batch dependent). Default :data:`PER_TOKEN_ATTENTION`.
    """
    if recipe not in INT8_RECIPES:
        raise ExportError(f"int8 recipe must be one of {', '.join(INT8_RECIPES)}, got {recipe!r}")
    attention = PER_TOKEN_ATTENTION if attention is None else attention
    if attention not in ATTENTION_MODES:
        raise ExportError(f"attention must be one of {', '.join(ATTENTION_MODES)}, got {attention!r}")
    src, dst = Path(src).resolve(), Path(dst).resolve()  # shape inference runs in a temporary folder
    flags = cpu_flags() if flags is None else flags
    vnni = has_vnni(flags)
    x86 = platform.machine().lower() in ("x86_64", "amd64", "i686")
    reduce_range = bool(x86 and not vnni)
    machine = {
        "reduce_range": reduce_range,
        "vnni": vnni,
        "cpu_flags": sorted(f for f in flags if f in _VNNI_FLAGS or f.startswith("avx512")),
    }
    if recipe == "dynamic":
        record = {
            "recipe": "dynamic",
            "method": "dynamic",
            "weight_type": "QInt8",
            "activation_type": "QUInt8 (dynamic, per tensor)",
            "activation_granularity": "per tensor (one scale and zero point over the whole batch: batch dependent)",
            "weight_granularity": "per output channel" if per_channel else "per tensor",
            "per_channel": bool(per_channel),
            **machine,
            "op_types": ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"],
            "batch_invariant": False,
        }
        record["shape_inference"] = _quantize_dynamic(src, dst, record["op_types"], per_channel, reduce_range)
    else:
        ort_ops = ["EmbedLayerNormalization", "Gather", *(["Attention"] if attention == "qattention" else [])]
        record = {
            "recipe": "per-token",
            "method": "dynamic, per-token activations (bertrt graph rewrite)",
            "weight_type": "QInt8",
            "activation_type": "QUInt8 (dynamic, per token, symmetric, zero point 128)",
            "activation_granularity": "per token: one scale per row of the last axis, max|x|/127",
            "weight_granularity": "per output column, symmetric (max|W[:, n]|/"
            + ("63" if reduce_range else "127")
            + ")",
            "per_channel": True,
            **machine,
            "op_types": [
                "MatMul",
                *(["Attention"] if attention != "fp32" else []),
                "EmbedLayerNormalization",
                "Gather",
            ],
            "matmul": "MatMul with a constant 2-D weight -> QuantizeLinear(x*inv) (once per distinct input) + "
            "MatMulIntegerToFloat(a_scale 1, b_scale w_scale) + Div(inv), inv = 127/max|x| per token",
            "onnxruntime_quantize_dynamic": {
                "op_types": ort_ops,
                "per_channel": bool(per_channel),
                "note": "weight-only for EmbedLayerNormalization/Gather (batch independent)"
                + (
                    "; QAttention quantizes its input per tensor (batch dependent)"
                    if attention == "qattention"
                    else ""
                ),
            },
            "attention": attention,
            "fp32_nodes": {
                "fp32": ["Attention (packed QKV MatMul, softmax)"],
                "per-token": ["attention MatMuls (QK^T, softmax x V: activation x activation)"],
                "qattention": [],
            }[attention],
            "batch_invariant": attention != "qattention",
        }
        with tempfile.TemporaryDirectory(prefix="bertrt-quant-") as tmp:
            stage = Path(tmp) / "stage.onnx"
            record["shape_inference"] = _quantize_dynamic(src, stage, ort_ops, per_channel, reduce_range)
            record["unfused_attention"], record["rewritten_matmuls"] = _rewrite_per_token(
                stage, dst, reduce_range, unfuse=attention == "per-token"
            )
        record["fp32_nodes"] += _fp32_leftovers(dst)
    _check_runs(dst)
    return record


def _quantize_dynamic(
    src: Path, dst: Path, op_types: list[str], per_channel: bool, reduce_range: bool, weight_type: str = "s8"
) -> str:
    """onnxruntime's quantize_dynamic on ``op_types`` (``weight_type`` "s8", or "u8" for
    benchmarks.int8_recipe's variant); returns how tensor types were inferred."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    extra_options: dict = {}
    how = "symbolic, auto_merge (onnxruntime quant_pre_process, optimization skipped)"
    with tempfile.TemporaryDirectory(prefix="bertrt-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        try:
            # auto_merge resolves the symbolic dims RoBERTa's position-id arithmetic leaves unmerged. On
            # failure the shape inference saves a debug copy into the working directory: keep it in tmp.
            with working_directory(tmp):
                quant_pre_process(str(src), str(prepared), skip_optimization=True, auto_merge=True)
        except Exception as exc:
            log.warning("quantize: symbolic shape inference failed (%s); untyped tensors taken as float", exc)
            prepared = src
            extra_options["DefaultTensorType"] = onnx.TensorProto.FLOAT
            how = f"failed ({type(exc).__name__}); DefaultTensorType=FLOAT"
        try:
            quantize_dynamic(
                str(prepared),
                str(dst),
                op_types_to_quantize=op_types,
                per_channel=per_channel,
                reduce_range=reduce_range,
                weight_type=QuantType.QInt8 if weight_type == "s8" else QuantType.QUInt8,
                extra_options=extra_options,
            )
        except Exception as exc:
            raise ExportError(f"int8 quantization of {src.name} failed: {exc}") from exc
    return how


def _rewrite_per_token(src: Path, dst: Path, reduce_range: bool, unfuse: bool) -> tuple[int, int]:
    """(Attention nodes unfused, MatMul nodes rewritten)."""
    import onnx

    from .per_token import rewrite_matmuls, unfuse_attention

    model = onnx.load(str(src))
    try:
        unfused = unfuse_attention(model) if unfuse else []
        done = rewrite_matmuls(model, reduce_range=reduce_range)
        onnx.save(model, str(dst))
    except Exception as exc:
        raise ExportError(f"per-token int8 rewrite of {src.name} failed: {exc}") from exc
    return len(unfused), len(done)


def _fp32_leftovers(path: Path) -> list[str]:
    """Names of MatMul / Attention nodes that still compute in fp32 (e.g. activation x activation)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    attention = ("_unfused/Scores", "_unfused/Context")  # the unfused attention's own, listed above
    return [
        n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and not n.name.endswith(attention)
    ]


@contextlib.contextmanager
def working_directory(path: str):
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
