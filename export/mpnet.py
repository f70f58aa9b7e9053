"""MPNet's attention on ``com.microsoft`` ``MultiHeadAttention``, its relative-position bias included.

MPNet adds a relative-position bias to every layer's scores, ``softmax(Q K^T / sqrt(d) + B_pos + M)``,
with ``B_pos`` [1, H, S, S] computed once per call (bucketed relative positions, an embedding lookup; the
graph ``Expand``s it to the batch) and ``M`` [B, 1, 1, S] the key padding mask (``(1 - mask) * min``).
onnxruntime's BERT attention fusion has no place for the extra term, so the optimizer leaves each layer as
MatMul / Div / Add / Add / Softmax / MatMul with four Reshape + Transpose around it, and the per-token int8
graph runs three quantized projections and all that fp32 glue per layer.

:func:`fuse_bias_attention` rewrites each such layer, found from its Softmax, into one ``MultiHeadAttention``
that reads the three projection MatMuls' outputs (the packed [3D] Q/K/V bias as its ``bias`` input,
``scale`` from the score Div/Mul) and whose additive ``attention_bias`` is the sum of the score terms:
``B_pos + M`` is one Add per call (the ``Expand`` to the batch is dropped: the mask's batch dim broadcasts)
shared by every layer that adds the same terms. The three projections stay separate MatMuls of one input,
which the per-token rewrite (:mod:`bertrt.export.per_token`) quantizes once: onnxruntime's CPU kernel
refuses packed QKV ([B, S, N, 3, H]: "not implemented for CPU"), and one packed [D, 3D] GEMM needs a
``Split`` copy before MultiHeadAttention, measured no faster (docs/speed.md). Same products, same softmax:
the fp32 graph gives the unfused one's results (bit-identical on the tiny models).

The matching is bertrt's own pattern walk over the exported graph (onnxruntime's ``FusionAttention``
matches BERT's mask forms only, not an extra additive term), using onnxruntime's ``OnnxModel`` to follow
parents. Only the exact eager-attention form (constant 2-D weights, 1-D biases, one layer input, 4-D
head transposes, a constant score scale) is rewritten; anything else is left as it is.
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["fuse_bias_attention"]

log = logging.getLogger("bertrt.export")

_HEADS = [0, 2, 1, 3]  # [B, S, N, d] -> [B, N, S, d] (Q, V) and back (the context)
_KEYS_T = [0, 2, 3, 1]  # [B, S, N, d] -> [B, N, d, S] (K^T)


def _attr(node, name):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


class _Graph:
    """Lookups over one graph: producers, consumers, constants (initializers and Constant nodes)."""

    def __init__(self, model):
        from onnxruntime.transformers.onnx_model import OnnxModel

        self.onnx = OnnxModel(model)
        self.graph = model.graph
        self.inits = {i.name: i for i in self.graph.initializer}
        self.producer = self.onnx.output_name_to_node()
        self.consumers = self.onnx.input_name_to_nodes()

    def const(self, name: str):
        from onnx import numpy_helper

        if name in self.inits:
            return numpy_helper.to_array(self.inits[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant" and node.attribute[0].name == "value":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    def parent(self, node, index: int, op_type: str):
        parent = self.producer.get(node.input[index]) if index < len(node.input) else None
        return parent if parent is not None and parent.op_type == op_type else None

    def split_shape(self, reshape) -> tuple[int, int] | None:
        """The last two dims (heads, head size) a head-splitting ``Reshape`` asks for, when constant."""
        shape = self.const(reshape.input[1])
        if shape is None:
            concat = self.producer.get(reshape.input[1])
            if concat is None or concat.op_type != "Concat" or len(concat.input) < 2:
                return None
            tail = [self.const(name) for name in concat.input[-2:]]
            if any(t is None or t.size != 1 for t in tail):
                return None
            shape = np.concatenate([t.reshape(-1) for t in tail])
        return (int(shape[-2]), int(shape[-1])) if shape.size >= 2 else None


def _projection(g: _Graph, transpose, perm):
    """``(x, x @ W, W, b, (heads, head size))`` of ``Transpose[perm](Reshape(Add(MatMul(x, W), b)))`` (b on
    either side), else None."""
    if transpose is None or list(_attr(transpose, "perm") or []) != perm:
        return None
    path = g.onnx.match_parent_path(transpose, ["Reshape", "Add"], [0, 0], g.producer)
    if path is None:
        return None
    add = path[1]
    for m in (0, 1):
        matmul = g.parent(add, m, "MatMul")
        bias = g.const(add.input[1 - m])
        weight = g.const(matmul.input[1]) if matmul is not None else None
        if weight is not None and weight.ndim == 2 and bias is not None and bias.ndim == 1:
            if bias.shape[0] == weight.shape[1] and weight.dtype == bias.dtype == np.float32:
                return matmul.input[0], matmul.output[0], weight, bias, g.split_shape(path[0])
    return None


def _score_terms(g: _Graph, softmax):
    """``(scores MatMul, scale, [additive terms])`` of ``Softmax(Add(...Add(Div(MatMul, c), t1)..., tn))``,
    each Add and the Div read by nothing else; else None. ``scale`` multiplies the product."""

    def scaled(node) -> bool:
        return (
            node.op_type in ("Div", "Mul")
            and g.parent(node, 0, "MatMul") is not None
            and g.const(node.input[1]) is not None
        )

    def chain(name: str) -> bool:
        node = g.producer.get(name)
        return (
            node is not None
            and len(g.consumers.get(name, [])) == 1
            and (node.op_type == "Add" or scaled(node))
        )

    terms, node = [], g.producer.get(softmax.input[0])
    while node is not None and node.op_type == "Add" and chain(node.output[0]):
        sides = [i for i in (0, 1) if chain(node.input[i])]
        if len(sides) != 1:
            return None
        terms.insert(0, node.input[1 - sides[0]])
        node = g.producer[node.input[sides[0]]]
    if node is None or not scaled(node) or not terms or not chain(node.output[0]):
        return None
    c = g.const(node.input[1]).reshape(-1)
    if c.size != 1 or float(c[0]) == 0.0:
        return None
    scale = 1.0 / float(c[0]) if node.op_type == "Div" else float(c[0])
    return g.parent(node, 0, "MatMul"), scale, terms


def _unexpanded(g: _Graph, term: str) -> str:
    """The input of the ``Expand`` that produced ``term`` (the position bias broadcast to the batch), or
    ``term``: summed with the mask term, whose batch dim broadcasts, it needs no copy per text."""
    node = g.producer.get(term)
    return node.input[0] if node is not None and node.op_type == "Expand" else term


def _match(g: _Graph, softmax, num_heads: int):
    """Everything one layer's rewrite needs, or None when ``softmax`` is not an MPNet attention's."""
    if _attr(softmax, "axis") not in (-1, 3):
        return None
    found = _score_terms(g, softmax)
    if found is None:
        return None
    scores, scale, terms = found
    q = _projection(g, g.producer.get(scores.input[0]), _HEADS)
    k = _projection(g, g.producer.get(scores.input[1]), _KEYS_T)
    readers = g.consumers.get(softmax.output[0], [])
    context = readers[0] if len(readers) == 1 and readers[0].op_type == "MatMul" else None
    if q is None or k is None or context is None or context.input[0] != softmax.output[0]:
        return None
    v = _projection(g, g.producer.get(context.input[1]), _HEADS)
    after = g.consumers.get(context.output[0], [])
    if v is None or len(after) != 1 or after[0].op_type != "Transpose":
        return None
    if list(_attr(after[0], "perm") or []) != _HEADS:
        return None
    merge = g.consumers.get(after[0].output[0], [])
    if len(merge) != 1 or merge[0].op_type != "Reshape":
        return None
    shape = g.const(merge[0].input[1])
    hidden = q[2].shape[1]
    if shape is None or shape.size != 3 or int(shape[-1]) not in (hidden, -1):
        return None
    if not (q[0] == k[0] == v[0]) or not (q[2].shape == k[2].shape == v[2].shape) or hidden % num_heads:
        return None
    if not q[4] == k[4] == v[4] == (num_heads, hidden // num_heads):  # the heads MultiHeadAttention will use
        return None
    return {"x": q[0], "q": q, "k": k, "v": v, "scale": scale, "terms": terms, "output": merge[0]}


def fuse_bias_attention(model, num_heads: int) -> int:
    """Rewrite, in place, each MPNet attention layer of ``model`` (an ``onnx.ModelProto``) into one
    ``MultiHeadAttention`` with its score terms as ``attention_bias`` (module docstring); return how many
    layers were rewritten."""
    from onnx import helper, numpy_helper

    from .fold import drop_dead

    g = _Graph(model)
    layers = [m for s in list(g.graph.node) if s.op_type == "Softmax" for m in [_match(g, s, num_heads)] if m]
    if not layers:
        return 0
    if not any(o.domain == "com.microsoft" for o in model.opset_import):
        model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    biases: dict[tuple, str] = {}  # the score terms -> their sum, computed once
    before: dict[int, list] = {}  # node position -> new nodes to put there
    position = {id(n): i for i, n in enumerate(g.graph.node)}
    for index, layer in enumerate(layers):
        prefix = f"mpnet_attention_{index}"
        out = layer["output"]
        at = position[id(out)]
        new = []
        terms = tuple(layer["terms"])
        if len(terms) > 1:  # the other terms' broadcast (the mask's batch dim) stands in for the Expand
            terms = tuple(_unexpanded(g, t) for t in terms)
        if terms not in biases:
            total = terms[0]
            for t, term in enumerate(terms[1:]):
                name = f"mpnet_attention_bias_{len(biases)}_{t}"
                new.append(helper.make_node("Add", [total, term], [name], name=f"{name}/Add"))
                total = name
            biases[terms] = total
        bias = np.concatenate([layer[p][3] for p in "qkv"])
        g.graph.initializer.append(numpy_helper.from_array(bias, f"{prefix}_qkv_bias"))
        new.append(
            helper.make_node(
                "MultiHeadAttention",
                [*(layer[p][1] for p in "qkv"), f"{prefix}_qkv_bias", "", biases[terms]],
                list(out.output),
                name=f"{prefix}/MultiHeadAttention",
                domain="com.microsoft",
                num_heads=num_heads,
                scale=layer["scale"],
            )
        )
        before[at] = new
    nodes = []
    for i, node in enumerate(g.graph.node):
        if i in before:
            nodes.extend(before[i])
        else:
            nodes.append(node)
    del g.graph.node[:]
    g.graph.node.extend(nodes)
    drop_dead(g.graph)
    log.info(
        "mpnet: %d attention layers on MultiHeadAttention (%d shared score biases)", len(layers), len(biases)
    )
    return len(layers)
