"""Per-token int8: a graph rewrite that quantizes each MatMul's activations with one scale per token.

Why: onnxruntime's ``quantize_dynamic`` quantizes activations with ``DynamicQuantizeLinear``, one scale and
zero point per *tensor*, taken from the min/max of the whole batch ``[B, S, K]``. A text's result then
depends on the texts that share its batch (WNUT-16 NER: 93.6% entity agreement between batch 1 and batch
32). onnxruntime's quantizer (1.32) offers no per-token (per-row) activation scales, for dynamic or static
quantization, so this module writes the quantized subgraph itself.

For each ``MatMul(X[..., K], W)`` whose ``W`` is a constant 2-D float initializer ``[K, N]``:

- weights: int8 per output column, symmetric: ``w_scale[n] = max|W[:, n]| / qmax``, ``Wq = round(W / w_scale)``
  (``qmax`` = 127, or 63 with ``reduce_range`` for x86 CPUs without VNNI, whose u8*s8 path saturates int16);
- activations, per row (token): ``s = max(max|X|, eps) / 127`` over the last axis, ``q = round(X / s) + 128``
  as uint8 (``QuantizeLinear`` with scale 1 and zero point 128 does the round, the shift and the
  saturation in one kernel), so that the scalar ``a_zero_point = 128`` makes the activations exactly
  symmetric;
- ``Y = MatMulIntegerToFloat(q, Wq, a_scale=1, b_scale=w_scale, a_zero_point=128) / inv`` with
  ``inv = 127 / s``: onnxruntime's contrib GEMM accumulates exactly in int32 and applies
  ``float(acc) * w_scale[n]`` in its output stage (bit-identical to ``Cast`` + ``Mul(w_scale)``, two fewer
  kernels and passes over the output); its scales must be constants per tensor / per column, so the
  per-token scale is a separate ``Div`` by the ``inv`` the quantization already computed (one kernel, not
  a ``Div`` for ``s`` and a ``Mul``). A bias cannot ride in the GEMM's epilogue (it would be scaled by
  ``s``); the node that consumed the MatMul's output (bias Add, BiasGelu, LayerNormalization) keeps
  consuming it.
- MatMuls that read the same tensor (separate Q, K and V projections, any fan-out) share one
  quantization of it: one scale per token per input, not per MatMul.

Kernels: 7 per quantized input (ReduceMax, ReduceMin, Neg, Max, Div, Mul, QuantizeLinear; the row's
max|x| as max(max x, -min x): two reads of x and no written tensor, where Abs + ReduceMax wrote and
re-read a full copy; the same numbers; 12% less CPU time at bert-base, 32 x 128 tokens, docs/speed.md
section 6) + 2 per MatMul (MatMulIntegerToFloat, Div). Measured and rejected (fine-tuned MiniLM NER,
Zen 4, raw sessions): ``MatMulNBits`` 8-bit with int8 compute (``accuracy_level=4``, activations quantized per row per block
inside one kernel) runs 272 (block 32) and 337 (block 128, not batch invariant) sentences/s against this
recipe's 495 (``python -m benchmarks.kernels``, benchmarks/results/kernels.md); ``QuantizeLinear`` with a
per-row runtime scale (opset-21 blocked quantization, one kernel instead of Mul + QuantizeLinear) runs a
generic loop, 5x slower end to end (a prototype, not kept).

Each token's grid depends on that token only and the int32 accumulation is exact, so the int8 parts
give identical results whatever the batch; only the fp32 parts (LayerNorm, softmax) can differ, at
fp32 rounding. onnxruntime's ``MatMulIntegerToFloat`` / ``DynamicQuantizeMatMul`` fusions (which assume a
per-tensor activation scale) find nothing to fuse: the activations come from ``QuantizeLinear`` (not
``DynamicQuantizeLinear``) and the GEMM is already emitted (tests compare the loaded session with a numpy
reference at every optimization level).
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = [
    "ACT_EPS",
    "ATTENTION_FORMS",
    "ROW_MAX_FORMS",
    "quantize_weight_per_column",
    "reference_matmul",
    "rewrite_matmuls",
    "unfuse_attention",
]

log = logging.getLogger("bertrt.export")

ACT_EPS = 1e-12  # floor of a row's max|x|: an all-zero row quantizes to 0 instead of dividing by 0


def quantize_weight_per_column(w: np.ndarray, qmax: int = 127) -> tuple[np.ndarray, np.ndarray]:
    """(int8 weights [K, N], float32 scales [N]): symmetric, one scale per output column."""
    w = np.asarray(w, dtype=np.float32)
    absmax = np.abs(w).max(axis=0)
    scale = np.where(absmax > 0, absmax / qmax, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale), -qmax, qmax).astype(np.int8)
    return q, scale


def reference_matmul(x: np.ndarray, w: np.ndarray, qmax: int = 127) -> np.ndarray:
    """What the rewritten subgraph computes, in numpy (float64 scaling, exact integer product)."""
    wq, w_scale = quantize_weight_per_column(w, qmax)
    x = np.asarray(x, dtype=np.float32)
    absmax = np.maximum(np.abs(x).max(axis=-1, keepdims=True), np.float32(ACT_EPS))
    inv = (np.float32(127.0) / absmax).astype(np.float32)
    q = np.clip(np.rint(x * inv), -127, 127).astype(np.int64)
    acc = q @ wq.astype(np.int64)
    return ((acc.astype(np.float32) * w_scale) / inv).astype(np.float32)


def _consts(graph, prefix: str, values: dict) -> dict:
    from onnx import numpy_helper

    names = {}
    for key, value in values.items():
        name = f"{prefix}_{key}"
        graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        names[key] = name
    return names


def _quantize_input(x: str, shared: dict) -> tuple[list, str, str]:
    """(nodes, uint8 q, inv): the per-token quantization of tensor ``x``, emitted once per tensor; the
    MatMuls that read the same ``x`` reuse it (``shared["inputs"]``)."""
    from onnx import helper

    if x in shared["inputs"]:
        return [], *shared["inputs"][x]
    prefix = f"{x.replace('/', '_').replace(':', '_').strip('_')}_ptq"
    t = {
        k: f"{prefix}_{k}"
        for k in ("abs", "absmax", "rowmax", "rowmin", "negmin", "safe", "inv", "scaled", "q")
    }
    nodes = [
        *_row_absmax(x, t, prefix, shared),
        helper.make_node("Div", [shared["qmax_a"], t["safe"]], [t["inv"]], name=f"{prefix}/Inv"),
        helper.make_node("Mul", [x, t["inv"]], [t["scaled"]], name=f"{prefix}/Scale"),
        helper.make_node(
            "QuantizeLinear", [t["scaled"], shared["one"], shared["zp"]], [t["q"]], name=f"{prefix}/Quantize"
        ),
    ]
    shared["inputs"][x] = (t["q"], t["inv"])
    return nodes, t["q"], t["inv"]


def _rewrite_one(graph, node, w: np.ndarray, qmax: int, shared: dict) -> list:
    from onnx import helper, numpy_helper

    wq, w_scale = quantize_weight_per_column(w, qmax)
    prefix = f"{(node.name or node.output[0]).replace('/', '_').strip('_')}_pt"
    weights, scales = f"{prefix}_Wq", f"{prefix}_w_scale"
    graph.initializer.extend([numpy_helper.from_array(wq, weights), numpy_helper.from_array(w_scale, scales)])
    nodes, q, inv = _quantize_input(node.input[0], shared)
    return [
        *nodes,
        # exact int32 accumulation, then float(acc) * w_scale[n] in the GEMM's output stage (a_scale = 1)
        helper.make_node(
            "MatMulIntegerToFloat",
            [q, weights, shared["one"], scales, shared["zp"]],
            [f"{prefix}_yw"],
            name=f"{prefix}/MatMulIntegerToFloat",
            domain="com.microsoft",
        ),
        helper.make_node("Div", [f"{prefix}_yw", inv], [node.output[0]], name=f"{prefix}/RowScale"),
    ]


def _row_absmax(x: str, t: dict, prefix: str, shared: dict) -> list:
    """``t["safe"]`` = max(max|x| over the last axis, eps), keepdims. "minmax" (default): max(ReduceMax(x),
    -ReduceMin(x), eps), two reads of x; "abs" (the previous form, for benchmarks.glue_speed's before
    graph): Max(ReduceMax(Abs(x)), eps), which writes and re-reads |x|."""
    from onnx import helper

    if shared["row_max"] == "abs":
        return [
            helper.make_node("Abs", [x], [t["abs"]], name=f"{prefix}/Abs"),
            _reduce("ReduceMax", t["abs"], t["absmax"], f"{prefix}/ReduceMax", shared),
            helper.make_node("Max", [t["absmax"], shared["eps"]], [t["safe"]], name=f"{prefix}/Max"),
        ]
    return [
        _reduce("ReduceMax", x, t["rowmax"], f"{prefix}/ReduceMax", shared),
        _reduce("ReduceMin", x, t["rowmin"], f"{prefix}/ReduceMin", shared),
        helper.make_node("Neg", [t["rowmin"]], [t["negmin"]], name=f"{prefix}/Neg"),
        helper.make_node("Max", [t["rowmax"], t["negmin"], shared["eps"]], [t["safe"]], name=f"{prefix}/Max"),
    ]


def _reduce(op: str, x: str, y: str, name: str, shared: dict):
    """``op`` (ReduceMax / ReduceMin) over the last axis, keepdims; ``axes`` is an input from opset 18, an
    attribute before."""
    from onnx import helper

    if shared["opset"] >= 18:
        return helper.make_node(op, [x, shared["axes"]], [y], name=name, keepdims=1)
    return helper.make_node(op, [x], [y], name=name, axes=[-1], keepdims=1)


ROW_MAX_FORMS = ("minmax", "abs")


def rewrite_matmuls(
    model, reduce_range: bool = False, exclude: set[str] | frozenset = frozenset(), row_max: str = "minmax"
) -> list[str]:
    """Rewrite, in place, every ``MatMul`` of ``model`` whose B is a constant 2-D float initializer.

    Returns the names of the rewritten nodes. ``exclude``: MatMul node names to leave fp32. ``row_max``:
    how the row's max|x| is computed (:data:`ROW_MAX_FORMS`, same numbers; see :func:`_row_absmax`).
    """
    if row_max not in ROW_MAX_FORMS:
        raise ValueError(f"row_max must be one of {', '.join(ROW_MAX_FORMS)}, got {row_max!r}")
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    qmax = 63 if reduce_range else 127
    opset = _opset(model)
    shared = _consts(
        graph,
        "per_token",
        {
            **({"axes": np.array([-1], dtype=np.int64)} if opset >= 18 else {}),
            "eps": np.array(ACT_EPS, dtype=np.float32),
            "qmax_a": np.array(127.0, dtype=np.float32),
            "one": np.array(1.0, dtype=np.float32),
            "zp": np.array(128, dtype=np.uint8),
        },
    )
    shared["opset"] = opset
    shared["row_max"] = row_max
    shared["inputs"] = {}
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    consumers: dict[str, int] = {}
    for n in graph.node:
        for name in n.input:
            consumers[name] = consumers.get(name, 0) + 1
    new_nodes, done, unused = [], [], []
    for node in graph.node:
        b = inits.get(node.input[1]) if node.op_type == "MatMul" and len(node.input) == 2 else None
        if b is None or len(b.dims) != 2 or b.data_type != TensorProto.FLOAT or node.name in exclude:
            new_nodes.append(node)
            continue
        new_nodes.extend(_rewrite_one(graph, node, numpy_helper.to_array(b), qmax, shared))
        done.append(node.name)
        consumers[b.name] -= 1
        if consumers[b.name] == 0:
            unused.append(b.name)
    del graph.node[:]
    graph.node.extend(new_nodes)
    keep = [i for i in graph.initializer if i.name not in set(unused)]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    log.info(
        "per-token int8: rewrote %d MatMul nodes reading %d distinct inputs", len(done), len(shared["inputs"])
    )
    return done


ATTENTION_FORMS = ("explicit", "mha")


def unfuse_attention(model, form: str = "explicit") -> list[str]:
    """Split, in place, each fused ``Attention`` so that its QKV projection is plain MatMuls.

    The fused Attention op computes its QKV projection inside, out of reach of the per-token rewrite
    (onnxruntime's QAttention quantizes that input per tensor). Unfused, the projections become plain
    MatMuls with constant weights, which :func:`rewrite_matmuls` quantizes per token; the attention
    itself (bias add, softmax, mask) stays fp32. ``form``:

    - "explicit" (default): three MatMuls (Q, K, V column blocks of the packed weight; the softmax scale
      folded into Q's weight and bias, exact for a power of two such as 1/8 at head size 64) and the
      attention as standard ops: bias Add, Reshape/Transpose to heads, MatMul, additive key mask,
      Softmax, MatMul, Transpose/Reshape back. Results identical to "mha" where compared (logits max
      |diff| 0.0 at bert-base size; masked keys get ``mask_filter_value`` added, so their softmax weight
      is exactly 0), no Split copy of a packed output, and a graph OpenVINO's ONNX frontend reads (it refuses the
      MultiHeadAttention form). onnxruntime 1.32's profiler gave the CPU ``MultiHeadAttention`` with a key
      mask 2.5-4x the node time of these ops (bert-base, 8 x 128 tokens); end to end the gain measured
      on a shared machine was 1.0-1.05x (docs/speed.md section 6). The mask is the raw [B, S] mask that
      fed the fused op's mask index ((Q)EmbedLayerNormalization or ReduceSum).
    - "mha": one packed QKV MatMul + Split + ``MultiHeadAttention`` with the same mask index, heads and
      mask filter value (the previous form; also the fallback when the raw mask cannot be found).

    Only the plain BERT form is unfused (constant weight and bias, a mask index, no past state, no
    unidirectional or per-head hidden sizes); others are left as they are. Returns the names of the
    unfused nodes.
    """
    from onnx import helper

    if form not in ATTENTION_FORMS:
        raise ValueError(f"form must be one of {', '.join(ATTENTION_FORMS)}, got {form!r}")
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producers = {o: n for n in graph.node for o in n.output}
    shared: dict = {}
    new_nodes, done = [], []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = (
            node.op_type == "Attention"
            and node.domain == "com.microsoft"
            and 3 <= len(node.input) <= 4
            and len(node.output) == 1
            and node.input[1] in inits
            and node.input[2] in inits
            and len(inits[node.input[1]].dims) == 2
            and set(attrs) <= {"num_heads", "mask_filter_value", "scale"}
            and not attrs.get("unidirectional")
        )
        if not plain:
            new_nodes.append(node)
            continue
        mask = node.input[3] if len(node.input) == 4 else ""
        prefix = f"{(node.name or node.output[0]).replace('/', '_').strip('_')}_unfused"
        raw = _raw_mask(mask, producers)
        if form == "explicit" and (raw is not None or not mask):
            new_nodes += _explicit_attention(model, node, attrs, inits, raw, prefix, shared)
        else:
            new_nodes += _mha_attention(model, node, attrs, mask, prefix)
        done.append(node.name)
    del graph.node[:]
    graph.node.extend(new_nodes)
    read = {i for n in graph.node for i in n.input}
    sliced = shared.get("sliced", set()) - read  # the packed QKV weights the explicit form copied
    keep = [i for i in graph.initializer if i.name not in sliced]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    log.info("per-token int8: unfused %d Attention nodes (%s)", len(done), form)
    return done


def _raw_mask(mask: str, producers: dict) -> str | None:
    """The [B, S] 0/1 mask behind a fused Attention's mask index (the lengths that
    (Q)EmbedLayerNormalization or ReduceSum compute from it), or None."""
    node = producers.get(mask)
    if node is None:
        return None
    if (
        node.op_type.endswith("EmbedLayerNormalization")
        and len(node.input) > 7
        and list(node.output)[1:2] == [mask]
    ):
        return node.input[7] or None
    if node.op_type == "ReduceSum" and node.input:
        return node.input[0]
    return None


def _mha_attention(model, node, attrs: dict, mask: str, prefix: str) -> list:
    from onnx import helper

    x, weight, bias = node.input[:3]
    qkv, q, k, v = (f"{prefix}_{t}" for t in ("qkv", "q", "k", "v"))
    return [
        helper.make_node("MatMul", [x, weight], [qkv], name=f"{prefix}/QKV_MatMul"),
        helper.make_node(
            "Split",
            [qkv],
            [q, k, v],
            name=f"{prefix}/Split",
            axis=-1,
            **({"num_outputs": 3} if _opset(model) >= 18 else {}),
        ),
        helper.make_node(
            "MultiHeadAttention",
            [q, k, v, bias, mask],
            list(node.output),
            name=f"{prefix}/MultiHeadAttention",
            domain="com.microsoft",
            **attrs,
        ),
    ]


def _explicit_attention(model, node, attrs: dict, inits: dict, raw: str | None, prefix: str, shared: dict):
    """Q/K/V MatMuls + the attention in standard ops (see :func:`unfuse_attention`)."""
    from onnx import TensorProto, helper, numpy_helper

    x, weight, bias = node.input[:3]
    w, b = numpy_helper.to_array(inits[weight]), numpy_helper.to_array(inits[bias])
    shared.setdefault("sliced", set()).update((weight, bias))
    heads, d = int(attrs["num_heads"]), w.shape[1] // 3
    scale = np.float32(attrs.get("scale") or 1.0 / np.sqrt(d // heads))
    graph, opset = model.graph, _opset(model)
    if "heads" not in shared:
        shared.update(
            _consts(
                graph,
                f"{prefix}_shared",
                {
                    "heads": np.array([0, 0, heads, -1], dtype=np.int64),
                    "merge": np.array([0, 0, -1], dtype=np.int64),
                    "one": np.array(1.0, dtype=np.float32),
                    "fill": np.array(attrs.get("mask_filter_value", -10000.0), dtype=np.float32),
                    "axes": np.array([1, 2], dtype=np.int64),
                },
            )
        )
    nodes = []
    if raw and ("mask", raw) not in shared:  # one additive key mask [B, 1, 1, S] per raw mask
        add = f"{prefix}_key_mask"
        unsqueeze = (
            helper.make_node(
                "Unsqueeze", [f"{add}_2d", shared["axes"]], [add], name=f"{prefix}/MaskUnsqueeze"
            )
            if opset >= 13
            else helper.make_node(
                "Unsqueeze", [f"{add}_2d"], [add], name=f"{prefix}/MaskUnsqueeze", axes=[1, 2]
            )
        )
        nodes += [
            helper.make_node("Cast", [raw], [f"{add}_f"], name=f"{prefix}/MaskCast", to=TensorProto.FLOAT),
            helper.make_node("Sub", [shared["one"], f"{add}_f"], [f"{add}_off"], name=f"{prefix}/MaskOff"),
            helper.make_node("Mul", [f"{add}_off", shared["fill"]], [f"{add}_2d"], name=f"{prefix}/MaskFill"),
            unsqueeze,
        ]
        shared[("mask", raw)] = add
    perms = {"q": [0, 2, 1, 3], "k": [0, 2, 3, 1], "v": [0, 2, 1, 3]}
    for i, t in enumerate("qkv"):
        factor = scale if t == "q" else np.float32(1.0)
        block = _consts(
            graph,
            f"{prefix}_{t}",
            {
                "weight": np.ascontiguousarray(w[:, i * d : (i + 1) * d] * factor, dtype=np.float32),
                "bias": np.ascontiguousarray(b[i * d : (i + 1) * d] * factor, dtype=np.float32),
            },
        )
        nodes += [
            helper.make_node(
                "MatMul", [x, block["weight"]], [f"{prefix}_{t}_mm"], name=f"{prefix}/{t.upper()}_MatMul"
            ),
            helper.make_node(
                "Add",
                [f"{prefix}_{t}_mm", block["bias"]],
                [f"{prefix}_{t}"],
                name=f"{prefix}/{t.upper()}_Bias",
            ),
            helper.make_node(
                "Reshape",
                [f"{prefix}_{t}", shared["heads"]],
                [f"{prefix}_{t}_4d"],
                name=f"{prefix}/{t.upper()}_Heads",
            ),
            helper.make_node(
                "Transpose",
                [f"{prefix}_{t}_4d"],
                [f"{prefix}_{t}_t"],
                name=f"{prefix}/{t.upper()}_Transpose",
                perm=perms[t],
            ),
        ]
    scores = f"{prefix}_scores"
    nodes.append(
        helper.make_node("MatMul", [f"{prefix}_q_t", f"{prefix}_k_t"], [scores], name=f"{prefix}/Scores")
    )
    if raw:
        nodes.append(
            helper.make_node(
                "Add", [scores, shared[("mask", raw)]], [f"{scores}_masked"], name=f"{prefix}/KeyMask"
            )
        )
        scores = f"{scores}_masked"
    nodes += [
        helper.make_node("Softmax", [scores], [f"{prefix}_probs"], name=f"{prefix}/Softmax", axis=-1),
        helper.make_node(
            "MatMul", [f"{prefix}_probs", f"{prefix}_v_t"], [f"{prefix}_ctx"], name=f"{prefix}/Context"
        ),
        helper.make_node(
            "Transpose",
            [f"{prefix}_ctx"],
            [f"{prefix}_ctx_t"],
            name=f"{prefix}/ContextTranspose",
            perm=[0, 2, 1, 3],
        ),
        helper.make_node(
            "Reshape", [f"{prefix}_ctx_t", shared["merge"]], list(node.output), name=f"{prefix}/Merge"
        ),
    ]
    return nodes


def _opset(model) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
