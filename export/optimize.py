"""Step 2: fp32 graph optimization with onnxruntime's transformer optimizer, and the fused-operator counts.

The architecture table (:mod:`bertrt.architectures`) gives the optimizer's model type (every row uses its
``bert`` fusions: EmbedLayerNormalization, Attention, SkipLayerNormalization, BiasGelu/FastGelu/Gelu;
DeBERTa, MPNet and ModernBERT get only the LayerNorm/Gelu ones, their attention matches no fusion) and
which fusions to expect. An expected fusion that is missing (fewer Attention fusions than layers: a slow
graph) puts a ``warning`` in the record that the summary and the manifest show; a fusion the table does
not expect (``attention_fusion=False``) is only logged.

Pre-pass (:func:`swap_residual_inputs`): onnxruntime's Attention fusion finds a layer from its residual
``Add`` by following that Add's *first* ``Add`` parent to the attention output projection, and does not try
the other one. ALBERT's first layer adds the attention output to the embedding projection (itself an
``Add`` of a MatMul), listed first, so that layer stayed unfused (1 of 2 on the tiny model, 11 of 12 on
albert-base). The pre-pass puts the attention-output input first in such residual Adds; an Add is
commutative, so the graph computes the same floats, and the fusion then finds every layer (and the
embeddings). It changes nothing where the attention output already comes first (BERT, RoBERTa, ...).

Post-pass (:func:`split_skip_layernorm`, ``skip_layernorm="split"``, the default): each fused
``SkipLayerNormalization`` becomes ``Add`` (+ ``Add`` of its bias) + the standard ``LayerNormalization``.
onnxruntime 1.32's CPU kernel for the fused op is 2.5x slower than the three standard ones on the
same tensors (``python -m benchmarks.kernels``; MiniLM: 12 of them were 16% of the int8 graph's kernel
time). The split computes the same sum and the same normalization (fp32 rounding differs); the record
keeps the optimizer's own counts and says how many were split. ``"fused"`` keeps them.

Post-pass for rows with ``fold_constants`` (DeBERTa): :func:`bertrt.export.fold.fold_constants` turns
weight-only subgraphs (the relative-position projections) into initializers before int8 quantization,
then :func:`bertrt.export.deberta.untile_position_scores` drops the per-batch Tile of those projections
in the position-score MatMuls, and :func:`bertrt.export.deberta.drop_equal_length_branches` replaces the
per-layer key-vs-query length ``If`` by its always-taken branch; the record says how many of each
(``constants_folded``, ``position_scores_untiled``, ``length_branches_dropped``).

Post-pass for rows with ``attention_bias_fusion`` (MPNet): :func:`bertrt.export.mpnet.fuse_bias_attention`
maps each layer's attention, relative-position bias included, onto ``MultiHeadAttention``; the record's
``attention_bias_fused`` says how many layers, and they count as fused attention.

Post-pass for rows with ``rotary_attention`` (ModernBERT): :func:`bertrt.export.modernbert.rewrite_modernbert`
maps each layer's RoPE glue and sdpa attention onto ``RotaryEmbedding`` + ``MultiHeadAttention``
(``rotary_attention_fused``; they count as fused attention) and computes the GLU input projection as two
MatMuls instead of one sliced in halves (``glu_projections_split``).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from bertrt.architectures import get_architecture
from bertrt.errors import ExportError

__all__ = [
    "FUSED_OPS",
    "SKIP_LAYERNORM_MODES",
    "count_ops",
    "model_dims",
    "optimize_graph",
    "split_skip_layernorm",
    "swap_residual_inputs",
]

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


#: what to do with the optimizer's SkipLayerNormalization nodes (see the module docstring)
SKIP_LAYERNORM_MODES = ("split", "fused")


def model_dims(config) -> dict:
    """num_heads, hidden_size and num_layers of a transformers config (DistilBERT names them differently)."""
    return {
        "num_heads": int(config.num_attention_heads),
        "hidden_size": int(config.hidden_size),
        "num_layers": int(config.num_hidden_layers),
        # the rotary caches' length (export/modernbert.py); 0 when the config has no such field
        "max_positions": int(getattr(config, "max_position_embeddings", 0) or 0),
    }


def count_ops(graph) -> dict[str, int]:
    """Count the nodes per op_type of an ``onnx.GraphProto`` (pure)."""
    counts: dict[str, int] = {}
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


# What may consume a residual Add: a LayerNormalization, or the first nodes of one written out (opset < 17).
_NORM_CONSUMERS = ("LayerNormalization", "ReduceMean", "SkipLayerNormalization")


def swap_residual_inputs(graph) -> int:
    """Put the attention output projection first in each residual Add of ``graph`` (an
    ``onnx.GraphProto``, changed in place); return how many Adds were swapped.

    A residual Add here is an Add of two computed inputs whose output feeds a layer norm. Its second
    input is the attention output projection when it is an ``Add(MatMul(Reshape(...)), bias)`` (the
    dense layer applied to the heads reshaped back to hidden size); the first is then swapped in when it
    is not such a projection itself. See the module docstring for why.
    """
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def attention_output(name: str) -> bool:
        node = producer.get(name)
        if node is None or node.op_type != "Add":
            return False
        matmuls = [producer.get(i) for i in node.input]
        matmuls = [m for m in matmuls if m is not None and m.op_type == "MatMul"]
        return bool(matmuls) and any(
            producer.get(i) is not None and producer[i].op_type == "Reshape" for i in matmuls[0].input
        )

    swapped = 0
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        if not any(c.op_type in _NORM_CONSUMERS for c in consumers.get(node.output[0], [])):
            continue
        first, second = node.input
        if attention_output(second) and not attention_output(first):
            node.input[0], node.input[1] = second, first
            swapped += 1
    return swapped


def split_skip_layernorm(graph) -> int:
    """Replace, in place, each ``com.microsoft`` ``SkipLayerNormalization`` of ``graph`` (an
    ``onnx.GraphProto``) by ``Add(input, skip)`` [+ ``Add(bias)``] + ``LayerNormalization`` (last axis,
    same epsilon); its optional sum output (``input_skip_bias_sum``) becomes the Add's output. Nodes that
    use its mean / inverse-std outputs are left fused. Returns how many were split."""
    from onnx import helper

    new_nodes, split = [], 0
    for node in graph.node:
        extra = list(node.output[1:3])
        if node.op_type != "SkipLayerNormalization" or node.domain != "com.microsoft" or any(extra):
            new_nodes.append(node)
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        x, skip, gamma = node.input[:3]
        beta = node.input[3] if len(node.input) > 3 else ""
        bias = node.input[4] if len(node.input) > 4 else ""
        prefix = f"{(node.name or node.output[0]).replace('/', '_').strip('_')}_split"
        total = node.output[3] if len(node.output) > 3 and node.output[3] else f"{prefix}_sum"
        first = f"{prefix}_xs" if bias else total
        new_nodes.append(helper.make_node("Add", [x, skip], [first], name=f"{prefix}/Add"))
        if bias:
            new_nodes.append(helper.make_node("Add", [first, bias], [total], name=f"{prefix}/AddBias"))
        new_nodes.append(
            helper.make_node(
                "LayerNormalization",
                [total, gamma, *([beta] if beta else [])],
                [node.output[0]],
                name=f"{prefix}/LayerNormalization",
                axis=-1,
                epsilon=float(attrs.get("epsilon", 1e-12)),
            )
        )
        split += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    return split


def _prepass(src: Path) -> tuple[Path, int]:
    """``src`` with :func:`swap_residual_inputs` applied: a new file beside it (external weights, if any,
    stay where they are and are referenced as before), or ``src`` itself when nothing was swapped."""
    import onnx

    model = onnx.load(str(src), load_external_data=False)
    swapped = swap_residual_inputs(model.graph)
    if not swapped:
        return src, 0
    out = src.with_name(src.stem + ".prepass.onnx")
    onnx.save(model, str(out))
    log.info("fusion pre-pass: attention output put first in %d residual Add(s)", swapped)
    return out, swapped


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


def optimize_graph(src: Path, dst: Path, model_type: str, dims: dict, skip_layernorm: str = "split") -> dict:
    """Fuse ``src`` into ``dst``; return the fusion record (counts, expected attention, warning).

    Without an optimizer model type in the architecture table the graph is copied unfused.
    ``skip_layernorm``: one of :data:`SKIP_LAYERNORM_MODES` (module docstring).
    """
    if skip_layernorm not in SKIP_LAYERNORM_MODES:
        raise ExportError(
            f"skip_layernorm must be one of {', '.join(SKIP_LAYERNORM_MODES)}, got {skip_layernorm!r}"
        )
    row = get_architecture(model_type)
    if row is None:
        raise ExportError(f"model_type {model_type!r} is not in the architecture table")
    if row.ort_model_type is None:
        import onnx

        shutil.copyfile(src, dst)
        model = onnx.load(str(dst), load_external_data=False)
        optimizer = "none (no onnxruntime fusion covers this model_type)"
    else:
        prepared, swapped = _prepass(src)
        model = _fuse(prepared, dst, row.ort_model_type, dims)
        optimizer = f"onnxruntime.transformers.optimizer (model_type={row.ort_model_type}, opt_level=0)"
        if swapped:
            optimizer += f", pre-pass: {swapped} residual Add input(s) reordered"
    ops = count_ops(model.graph)
    counts = {op: ops.get(op, 0) for op in FUSED_OPS}
    split = 0
    if skip_layernorm == "split" and counts["SkipLayerNormalization"]:
        import onnx

        split = split_skip_layernorm(model.graph)
        onnx.save(model, str(dst))
        log.info("SkipLayerNormalization: %d split into Add + LayerNormalization", split)
    folded = untiled = branches = 0
    if row.fold_constants:
        import onnx

        from .deberta import drop_equal_length_branches, untile_position_scores
        from .fold import fold_constants

        branches = drop_equal_length_branches(model)
        folded = fold_constants(model)
        untiled = untile_position_scores(model)
        if untiled:  # the scale's Shape now reads the folded projection: fold that arithmetic too
            folded += fold_constants(model)
        if folded or untiled or branches:
            onnx.save(model, str(dst))
    bias_fused = 0
    if row.attention_bias_fusion:
        import onnx

        from .mpnet import fuse_bias_attention

        bias_fused = fuse_bias_attention(model, dims["num_heads"])
        if bias_fused:
            onnx.save(model, str(dst))
            counts["MultiHeadAttention"] += bias_fused
    rewrites = {"rotary_attention_fused": 0, "glu_projections_split": 0}
    if row.rotary_attention:
        import onnx

        from .modernbert import rewrite_modernbert

        rewrites = rewrite_modernbert(model, dims.get("max_positions", 0))
        if any(rewrites.values()):
            onnx.save(model, str(dst))
            counts["MultiHeadAttention"] += rewrites["rotary_attention_fused"]
    attention = counts["Attention"] + counts["MultiHeadAttention"]
    expected = dims["num_layers"]
    record = {
        "optimizer": optimizer,
        "counts": counts,
        "attention_fused": attention,
        "attention_expected": expected,
        "skip_layernorm": {"mode": skip_layernorm, "split": split},
        "constants_folded": folded,
        "position_scores_untiled": untiled,
        "length_branches_dropped": branches,
        "attention_bias_fused": bias_fused,
        **rewrites,
        "warning": None,
    }
    problems = []
    if attention < expected:
        note = f"only {attention} of {expected} attention layers were fused"
        if (row.attention_fusion and row.ort_model_type is not None) or row.attention_bias_fusion:
            problems.append(f"{note}; the graph runs unfused attention (slower)")
        else:
            log.info("fusion: %s (expected for %s)", note, row.name)
    if row.embed_fusion and row.ort_model_type is not None and not counts["EmbedLayerNormalization"]:
        problems.append("the embeddings were not fused into EmbedLayerNormalization (slower)")
    if problems:
        record["warning"] = "; ".join(problems)
        log.warning("fusion: %s", record["warning"])
    return record
