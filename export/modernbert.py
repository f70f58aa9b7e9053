"""ModernBERT's attention on onnxruntime's fused CPU kernels: ``RotaryEmbedding`` + ``MultiHeadAttention``.

Why: the exported sdpa attention runs RoPE as Slice/Neg/Concat/Mul/Add glue on [B, H, S, d] tensors
(twice per layer, ~14% of the int8 graph's time) and the attention as separate Mul/MatMul/Add/Softmax/
MatMul/Transpose/Reshape nodes, with the cos/sin tables recomputed from the length on every call.
onnxruntime's transformer optimizer has no ModernBERT model type and its rotary fusion
(``fusion_rotary_attention``) targets decoder patterns (causal, past state), so this is bertrt's own pattern
rewrite. ``GroupQueryAttention`` (which has RoPE inside) is causal on the CPU: unusable for an encoder.

Per layer, the traced pattern (transformers 4.57 ``sdpa_attention_forward``)::

    qkv = MatMul(x, Wqkv) -> Reshape [B, S, 3, H, d] -> Transpose(0, 3, 2, 1, 4) -> Split(axis 2) -> Squeeze
    q' = q * cos + Concat(-q[d/2:], q[:d/2]) * sin          (k likewise; cos/sin: [1, 1, S, d] from the length)
    out = MatMul(Softmax(MatMul(q' * c, k'^T * c) + mask), v) -> Transpose(0, 2, 1, 3) -> Reshape [B, S, D]

becomes::

    q, k, v = Split(qkv, 3, axis -1)                                    ([B, S, D] each, heads contiguous)
    q' = RotaryEmbedding(q, pos, cos_cache, sin_cache, num_heads=H)    (k likewise; non-interleaved)
    out = MultiHeadAttention(q', k', v, attention_bias=mask, num_heads=H)  (scale 1/sqrt(d), as sdpa's)

``mask`` is the graph's own additive [B, 1, S, S] mask (padding, and for local layers the sliding window):
the same additive bias PyTorch adds, so global and local layers need nothing else. The caches are
``cos/sin(float32(position * inv_freq)) * scaling`` for positions ``0 .. max_positions - 1``, from the
layer's own ``inv_freq`` initializer and scaling constant (local and global layers have different rotary
bases; one cache pair per distinct table), the same fp32 product PyTorch forms. A layer that does not
match exactly is left as it is (and not counted). ``pos`` [B, S] = 0 .. S - 1 per row is computed once per
call from the first layer's ``qkv`` shape (Shape, Gather, Range, Expand): onnxruntime also takes the
offset form (a constant [0]), but OpenVINO's reading of the contrib op does not (max |Δ| 4.6 on a
probe, against 2e-7 with [B, S] ids), and the IR export validates against onnxruntime.

Also :func:`split_glu_projection`: the MLP's ``Wi`` product ``[B, S, 2N]`` is cut in two by ``chunk(2)``
(two Slice copies per layer); two MatMuls on the weight's halves write the halves directly (exact).
:func:`rewrite_modernbert` runs both (the exporter's hook, row field ``rotary_attention``).
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["fuse_rotary_attention", "rewrite_modernbert", "rotary_caches", "split_glu_projection"]

log = logging.getLogger("bertrt.export")


def _attr(node, name):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


class _Graph:
    """Producer / consumer / constant lookups over one ``onnx.GraphProto``."""

    def __init__(self, graph):
        from onnx import numpy_helper

        self.producer = {o: n for n in graph.node for o in n.output}
        self.consumers: dict[str, list] = {}
        for n in graph.node:
            for name in n.input:
                self.consumers.setdefault(name, []).append(n)
        self.inits = {i.name: i for i in graph.initializer}
        self._np = numpy_helper

    def node(self, name, op):
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op else None

    def const(self, name):
        if name in self.inits:
            return self._np.to_array(self.inits[name])
        node = self.producer.get(name)
        if (
            node is not None
            and node.op_type == "Constant"
            and node.attribute
            and node.attribute[0].name == "value"
        ):
            return self._np.to_array(node.attribute[0].t)
        return None

    def only_reader(self, name) -> bool:
        return len(self.consumers.get(name, [])) == 1


def _rotary(g: _Graph, name):
    """(x4, cos, sin) when ``name`` is ``x4 * cos + Concat(Neg(x4[d/2:]), x4[:d/2]) * sin``; else None."""
    add = g.node(name, "Add")
    if add is None:
        return None
    muls = [g.node(i, "Mul") for i in add.input]
    if None in muls:
        return None
    for plain, rotated in (muls, muls[::-1]):
        concat = g.node(rotated.input[0], "Concat")
        if concat is None or len(concat.input) != 2 or _attr(concat, "axis") not in (-1, 3):
            continue
        neg = g.node(concat.input[0], "Neg")
        first, second = g.node(neg.input[0], "Slice") if neg else None, g.node(concat.input[1], "Slice")
        if first is None or second is None or not all(_last_axis(g, s, (3, -1)) for s in (first, second)):
            continue
        x4 = plain.input[0]
        if first.input[0] != x4 or second.input[0] != x4:
            continue
        cos, sin = plain.input[1], rotated.input[1]
        return x4, cos, sin
    return None


def _last_axis(g: _Graph, slice_node, allowed: tuple[int, ...]) -> bool:
    """``slice_node`` slices one axis, named by a constant ``axes`` input in ``allowed``."""
    axes = g.const(slice_node.input[3]) if len(slice_node.input) > 3 and slice_node.input[3] else None
    return axes is not None and axes.size == 1 and int(axes.reshape(-1)[0]) in allowed


def _table(g: _Graph, unsqueezed):
    """(inv_freq [d/2], scaling, "cos"/"sin") for ``Unsqueeze(Mul(Cos|Sin(Concat(T, T)), scaling), 1)``
    with ``T = Transpose(MatMul(Expand(inv_freq[1, d/2, 1]), positions))``; else None."""
    unsq = g.node(unsqueezed, "Unsqueeze")
    axes = g.const(unsq.input[1]) if unsq is not None and len(unsq.input) > 1 else None
    if axes is None or axes.reshape(-1).tolist() != [1]:
        return None
    mul = g.node(unsq.input[0], "Mul")
    if mul is None:
        return None
    scaling = g.const(mul.input[1])
    trig = g.producer.get(mul.input[0])
    if scaling is None or scaling.size != 1 or trig is None or trig.op_type not in ("Cos", "Sin"):
        return None
    concat = g.node(trig.input[0], "Concat")
    if concat is None or len(concat.input) != 2 or concat.input[0] != concat.input[1]:
        return None
    transpose = g.node(concat.input[0], "Transpose")
    matmul = g.node(transpose.input[0], "MatMul") if transpose is not None else None
    expand = g.node(matmul.input[0], "Expand") if matmul is not None else None
    inv_freq = g.const(expand.input[0]) if expand is not None else None
    if inv_freq is None or inv_freq.ndim != 3 or inv_freq.shape[0] != 1 or inv_freq.shape[2] != 1:
        return None
    return inv_freq.reshape(-1).astype(np.float32), float(scaling.reshape(-1)[0]), trig.op_type.lower()


def _qkv_split(g: _Graph, q4, k4, v4):
    """(qkv [B, S, 3 * H * d], H, d) when q4, k4, v4 are the three ``Squeeze(Split(Transpose(Reshape(qkv,
    [B, -1, 3, H, d]), (0, 3, 2, 1, 4)), axis 2))`` outputs, in order; else None."""
    squeezes = [g.node(x, "Squeeze") for x in (q4, k4, v4)]
    if None in squeezes:
        return None
    split = g.node(squeezes[0].input[0], "Split")
    if split is None or [s.input[0] for s in squeezes] != list(split.output) or _attr(split, "axis") != 2:
        return None
    transpose = g.node(split.input[0], "Transpose")
    if transpose is None or list(_attr(transpose, "perm") or []) != [0, 3, 2, 1, 4]:
        return None
    reshape = g.node(transpose.input[0], "Reshape")
    if reshape is None:
        return None
    concat = g.node(reshape.input[1], "Concat")
    dims = [g.const(i) for i in concat.input[1:]] if concat is not None and len(concat.input) == 5 else None
    if dims is None or any(d is None for d in dims):
        return None
    seq, three, heads, head_dim = (int(d.reshape(-1)[0]) for d in dims)
    if seq != -1 or three != 3 or heads <= 0 or head_dim <= 0 or head_dim % 2:
        return None
    return reshape.input[0], heads, head_dim


def _scaled(g: _Graph, name, transposed: bool):
    """The tensor ``name`` scales by a Mul (sdpa's sqrt(scale) on q and k), through a last-two-axes Transpose
    when ``transposed`` (k)."""
    mul = g.node(name, "Mul")
    if mul is None:
        return None
    inner = mul.input[0]
    if transposed:
        transpose = g.node(inner, "Transpose")
        if transpose is None or list(_attr(transpose, "perm") or []) != [0, 1, 3, 2]:
            return None
        inner = transpose.input[0]
    return inner


def _match(g: _Graph, softmax):
    """The layer's pieces around ``softmax`` (a dict), or None when the pattern differs."""
    if _attr(softmax, "axis") not in (-1, 3, None):
        return None
    add = g.node(softmax.input[0], "Add")
    scores = g.node(add.input[0], "MatMul") if add is not None else None
    if scores is None:
        return None
    mask = add.input[1]
    readers = g.consumers.get(softmax.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "MatMul" or readers[0].input[0] != softmax.output[0]:
        return None
    context = readers[0]
    after = g.consumers.get(context.output[0], [])
    if (
        len(after) != 1
        or after[0].op_type != "Transpose"
        or list(_attr(after[0], "perm") or []) != [0, 2, 1, 3]
    ):
        return None
    back = g.consumers.get(after[0].output[0], [])
    if len(back) != 1 or back[0].op_type != "Reshape":
        return None
    q_rot, k_rot = _scaled(g, scores.input[0], False), _scaled(g, scores.input[1], True)
    q, k = (_rotary(g, x) if x else None for x in (q_rot, k_rot))
    if q is None or k is None or (q[1], q[2]) != (k[1], k[2]):
        return None
    split = _qkv_split(g, q[0], k[0], context.input[1])
    if split is None:
        return None
    cos, sin = _table(g, q[1]), _table(g, q[2])
    if cos is None or sin is None or cos[2] != "cos" or sin[2] != "sin" or not np.array_equal(cos[0], sin[0]):
        return None
    qkv, heads, head_dim = split
    if cos[0].size * 2 != head_dim:
        return None
    return {
        "qkv": qkv,
        "heads": heads,
        "mask": mask,
        "output": back[0].output[0],
        "tables": (q[1], q[2]),
        "inv_freq": cos[0],
        "scaling": (cos[1], sin[1]),
    }


def _position_ids(qkv: str, out: str) -> list:
    """Nodes computing ``out`` [B, S] int64 = 0 .. S - 1 on each row, from ``qkv`` [B, S, *]'s shape."""
    from onnx import helper

    names = {k: f"{out}_{k}" for k in ("shape", "lead", "length", "range")}
    return [
        helper.make_node("Shape", [qkv], [names["shape"]], name=f"{out}/Shape"),
        helper.make_node(
            "Gather",
            [names["shape"], "modernbert_rotary_batch_seq"],
            [names["lead"]],
            name=f"{out}/Lead",
            axis=0,
        ),
        helper.make_node(
            "Gather",
            [names["shape"], "modernbert_rotary_one"],
            [names["length"]],
            name=f"{out}/Length",
            axis=0,
        ),
        helper.make_node(
            "Range",
            ["modernbert_rotary_zero", names["length"], "modernbert_rotary_one"],
            [names["range"]],
            name=f"{out}/Range",
        ),
        helper.make_node("Expand", [names["range"], names["lead"]], [out], name=f"{out}/Expand"),
    ]


def rotary_caches(inv_freq: np.ndarray, scaling: tuple[float, float], max_positions: int):
    """(cos, sin) [max_positions, d/2] float32: ``cos/sin(float32(p * inv_freq)) * scaling`` (PyTorch's fp32
    product of position and frequency, then the trig function in fp32)."""
    angles = np.arange(max_positions, dtype=np.float32)[:, None] * inv_freq.astype(np.float32)[None, :]
    cos = (np.cos(angles.astype(np.float32)) * np.float32(scaling[0])).astype(np.float32)
    sin = (np.sin(angles.astype(np.float32)) * np.float32(scaling[1])).astype(np.float32)
    return cos, sin


def fuse_rotary_attention(model, max_positions: int) -> int:
    """Rewrite, in place, each ModernBERT attention layer of ``model`` (an ``onnx.ModelProto``) as described
    in the module docstring; the caches cover positions ``0 .. max_positions - 1``. Returns how many
    layers were rewritten."""
    from onnx import helper, numpy_helper

    from .fold import drop_dead

    if max_positions <= 0:
        return 0
    graph = model.graph
    g = _Graph(graph)
    caches: dict[tuple, tuple[str, str]] = {}
    pos = "modernbert_rotary_position_ids"
    new_inits = [
        numpy_helper.from_array(np.array([0, 1], np.int64), "modernbert_rotary_batch_seq"),
        numpy_helper.from_array(np.array(1, np.int64), "modernbert_rotary_one"),
        numpy_helper.from_array(np.array(0, np.int64), "modernbert_rotary_zero"),
    ]
    insert: dict[str, list] = {}  # output tensor of the old Reshape -> nodes that now compute it
    done = 0
    for node in list(graph.node):
        if node.op_type != "Softmax":
            continue
        found = _match(g, node)
        if found is None:
            continue
        key = (found["inv_freq"].tobytes(), found["scaling"])
        if key not in caches:
            index = len(caches)
            cos, sin = rotary_caches(found["inv_freq"], found["scaling"], max_positions)
            names = (f"modernbert_rotary_cos_{index}", f"modernbert_rotary_sin_{index}")
            new_inits += [numpy_helper.from_array(cos, names[0]), numpy_helper.from_array(sin, names[1])]
            caches[key] = names
        cos_name, sin_name = caches[key]
        prefix = f"modernbert_attention_{done}"
        q, k, v, q_rot, k_rot = (f"{prefix}_{t}" for t in ("q", "k", "v", "q_rot", "k_rot"))
        heads = found["heads"]
        insert[found["output"]] = [
            *(_position_ids(found["qkv"], pos) if not done else []),
            helper.make_node(
                "Split", [found["qkv"]], [q, k, v], name=f"{prefix}/Split", axis=-1, **_split_kwargs(model)
            ),
            *(
                helper.make_node(
                    "RotaryEmbedding",
                    [x, pos, cos_name, sin_name],
                    [y],
                    name=f"{prefix}/RotaryEmbedding_{x[-1]}",
                    domain="com.microsoft",
                    num_heads=heads,
                    interleaved=0,
                )
                for x, y in ((q, q_rot), (k, k_rot))
            ),
            helper.make_node(
                "MultiHeadAttention",
                [q_rot, k_rot, v, "", "", found["mask"]],
                [found["output"]],
                name=f"{prefix}/MultiHeadAttention",
                domain="com.microsoft",
                num_heads=heads,
            ),
        ]
        done += 1
    if not done:
        return 0
    nodes = []
    for node in graph.node:
        replaced = next((o for o in node.output if o in insert), None)
        nodes.extend(insert.pop(replaced) if replaced is not None else [node])
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend(new_inits)
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    drop_dead(graph)
    log.info(
        "modernbert: %d attention layers on RotaryEmbedding + MultiHeadAttention (%d rotary tables)",
        done,
        len(caches),
    )
    return done


def _split_kwargs(model) -> dict:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 18)
    return {"num_outputs": 3} if opset >= 18 else {}


def rewrite_modernbert(model, max_positions: int) -> dict[str, int]:
    """Both rewrites of this module, in place; the fusion record's counts."""
    return {
        "rotary_attention_fused": fuse_rotary_attention(model, max_positions),
        "glu_projections_split": split_glu_projection(model),
    }


def _glu_halves(g: _Graph, matmul):
    """(first Slice, second Slice) when ``matmul``'s output is read only by the two halves of
    transformers' ``chunk(2, dim=-1)`` (``[0:h]`` and ``[h:2h]``, ``h = (L + 1) // 2`` from its Shape) and a
    Shape feeding them; else None."""
    readers = g.consumers.get(matmul.output[0], [])
    slices = [n for n in readers if n.op_type == "Slice"]
    if len(slices) != 2 or any(n.op_type not in ("Slice", "Shape") for n in readers):
        return None
    for first, second in (slices, slices[::-1]):
        if len(first.input) < 4 or len(second.input) < 4 or first.input[0] != second.input[0]:
            continue
        start = g.const(first.input[1])
        if start is None or start.reshape(-1).tolist() != [0] or first.input[2] != second.input[1]:
            continue
        if not all(_last_axis(g, s, (-1,)) for s in (first, second)):
            continue
        half, end = g.node(first.input[2], "Mul"), g.node(second.input[2], "Mul")
        if half is None or end is None or half.input[0] != end.input[0]:
            continue
        one, two = g.const(half.input[1]), g.const(end.input[1])
        if one is None or two is None or one.reshape(-1).tolist() != [1] or two.reshape(-1).tolist() != [2]:
            continue
        div = g.node(half.input[0], "Div")
        add = g.node(div.input[0], "Add") if div is not None else None
        gather = g.node(add.input[0], "Gather") if add is not None else None
        shape = g.node(gather.input[0], "Shape") if gather is not None else None
        if shape is None or shape.input[0] != matmul.output[0]:
            continue
        return first, second
    return None


def split_glu_projection(model) -> int:
    """Rewrite, in place, each ``MatMul(x, W[K, 2N])`` whose output only feeds the two halves of a GLU
    ``chunk(2, dim=-1)`` (ModernBERT's ``Wi``) as two MatMuls ``x @ W[:, :N]`` and ``x @ W[:, N:]`` writing
    the halves directly: no Slice copies of the [B, S, 2N] product, and the per-token int8 rewrite
    quantizes ``x`` once for both. Returns how many were split."""
    from onnx import helper, numpy_helper

    from .fold import splice

    graph = model.graph
    g = _Graph(graph)
    replace: dict[int, list] = {}
    dead: set[int] = set()
    for index, node in enumerate(graph.node):
        if node.op_type != "MatMul" or node.input[1] not in g.inits:
            continue
        weight = g.const(node.input[1])
        if weight.ndim != 2 or weight.shape[1] % 2:
            continue
        halves = _glu_halves(g, node)
        if halves is None:
            continue
        n = weight.shape[1] // 2
        made = []
        for part, target in zip((weight[:, :n], weight[:, n:]), halves, strict=True):
            name = f"{target.output[0].replace('/', '_').strip('_')}_W"
            graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(part), name))
            made.append(
                helper.make_node(
                    "MatMul", [node.input[0], name], [target.output[0]], name=f"{node.name}_{len(made)}"
                )
            )
        dead.update(id(target) for target in halves)  # now produced by the new MatMuls
        replace[index] = made
    if not replace:
        return 0
    splice(graph, replace, skip=dead)
    log.info("modernbert: %d GLU input projections split in two (no chunk Slices)", len(replace))
    return len(replace)
