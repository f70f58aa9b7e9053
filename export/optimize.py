"""Step 2: fp32 graph optimization with onnxruntime's transformer optimizer, and the fused-operator counts.

The architecture table (:mod:`bertrt.architectures`) gives the optimizer's model type (BERT, RoBERTa and
DistilBERT all use its ``bert`` fusions: EmbedLayerNormalization, Attention, SkipLayerNormalization,
BiasGelu/FastGelu) and which fusions to expect. An expected fusion that is missing (fewer Attention
fusions than layers: a slow graph) puts a ``warning`` in the record that the summary and the manifest
show; a fusion the table does not expect is only logged.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from bertrt.architectures import get_architecture
from bertrt.errors import ExportError

__all__ = ["FUSED_OPS", "count_ops", "model_dims", "optimize_graph"]

log = logging.getLogger("bertrt.export")

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


def _fuse(src: Path, dst: Path, ort_type: str, dims: dict):
    """The optimizer's fused ``onnx.ModelProto`` of ``src``, saved to ``dst``."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        optimized = optimize_model(
            str(src),
            model_type=ort_type,
            num_heads=dims["num_heads"],
            hidden_size=dims["hidden_size"],
            optimization_options=FusionOptions(ort_type),
            opt_level=0,
            use_gpu=False,
        )
    except Exception as exc:  # the optimizer raises bare exceptions on graphs it cannot parse
        raise ExportError(f"onnxruntime's transformer optimizer failed on {src.name}: {exc}") from exc
    optimized.save_model_to_file(str(dst))
    return optimized.model


def optimize_graph(src: Path, dst: Path, model_type: str, dims: dict) -> dict:
    """Fuse ``src`` into ``dst``; return the fusion record (counts, expected attention, warning).

    Without an optimizer model type in the architecture table the graph is copied unfused.
    """
    row = get_architecture(model_type)
    if row is None:
        raise ExportError(f"model_type {model_type!r} is not in the architecture table")
    if row.ort_model_type is None:
        import onnx

        shutil.copyfile(src, dst)
        model = onnx.load(str(dst), load_external_data=False)
        optimizer = "none (no onnxruntime fusion covers this model_type)"
    else:
        model = _fuse(src, dst, row.ort_model_type, dims)
        optimizer = f"onnxruntime.transformers.optimizer (model_type={row.ort_model_type}, opt_level=0)"
    ops = count_ops(model.graph)
    counts = {op: ops.get(op, 0) for op in FUSED_OPS}
    attention = counts["Attention"] + counts["MultiHeadAttention"]
    expected = dims["num_layers"]
    record = {
        "optimizer": optimizer,
        "counts": counts,
        "attention_fused": attention,
        "attention_expected": expected,
        "warning": None,
    }
    problems = []
    if attention < expected:
        note = f"only {attention} of {expected} attention layers were fused"
        if row.attention_fusion and row.ort_model_type is not None:
            problems.append(f"{note}; the graph runs unfused attention (slower)")
        else:
            log.info("fusion: %s (expected for %s)", note, row.name)
    if row.embed_fusion and row.ort_model_type is not None and not counts["EmbedLayerNormalization"]:
        problems.append("the embeddings were not fused into EmbedLayerNormalization (slower)")
    if problems:
        record["warning"] = "; ".join(problems)
        log.warning("fusion: %s", record["warning"])
    return record
