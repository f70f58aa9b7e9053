"""Step 2: fp32 graph optimization with onnxruntime's transformer optimizer, and the fused-operator counts.

BERT, RoBERTa and DistilBERT all go through the optimizer's ``bert`` fusions (EmbedLayerNormalization,
Attention, SkipLayerNormalization, BiasGelu/FastGelu). Attention fusions fewer than the model's layers
mean a slow graph: the result carries a ``warning`` that the summary and the manifest show.
"""

from __future__ import annotations

import logging
from pathlib import Path

from bertrt.errors import ExportError

__all__ = ["FUSED_OPS", "ORT_MODEL_TYPES", "count_ops", "model_dims", "optimize_graph"]

log = logging.getLogger("bertrt.export")

#: bertrt model_type -> onnxruntime.transformers.optimizer model_type.
ORT_MODEL_TYPES = {"bert": "bert", "roberta": "bert", "distilbert": "bert"}

#: Fused operators counted in the manifest.
FUSED_OPS = (
    "EmbedLayerNormalization",
    "Attention",
    "MultiHeadAttention",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "FastGelu",
    "Gelu",
)


def model_dims(config) -> dict:
    """num_heads, hidden_size and num_layers of a transformers config (DistilBERT names them differently)."""
    return {
        "num_heads": int(config.num_attention_heads),
        "hidden_size": int(config.hidden_size),
        "num_layers": int(config.num_hidden_layers),
    }


def count_ops(graph) -> dict[str, int]:
    """Count the nodes per op_type of an ``onnx.GraphProto`` (pure)."""
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


def optimize_graph(src: Path, dst: Path, model_type: str, dims: dict) -> dict:
    """Fuse ``src`` into ``dst``; return the fusion record (counts, expected attention, warning)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    ort_type = ORT_MODEL_TYPES[model_type]
    options = FusionOptions(ort_type)
    try:
        optimized = optimize_model(
            str(src), model_type=ort_type, num_heads=dims["num_heads"], hidden_size=dims["hidden_size"],
            optimization_options=options, opt_level=0, use_gpu=False,
        )
    except Exception as exc:  # the optimizer raises bare exceptions on graphs it cannot parse
        raise ExportError(f"onnxruntime's transformer optimizer failed on {src.name}: {exc}") from exc
    optimized.save_model_to_file(str(dst))
    ops = count_ops(optimized.model.graph)
    counts = {op: ops.get(op, 0) for op in FUSED_OPS}
    attention = counts["Attention"] + counts["MultiHeadAttention"]
    expected = dims["num_layers"]
    record = {
        "optimizer": f"onnxruntime.transformers.optimizer (model_type={ort_type}, opt_level=0)",
        "counts": counts,
        "attention_fused": attention,
        "attention_expected": expected,
        "warning": None,
    }
    if attention < expected:
        record["warning"] = (
            f"only {attention} of {expected} attention layers were fused; the graph runs unfused attention "
            f"(slower)"
        )
        log.warning("fusion: %s", record["warning"])
    return record
