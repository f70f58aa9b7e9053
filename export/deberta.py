"""DeBERTa's relative-position scores without the per-batch copy of the position keys.

The disentangled attention computes ``c2p = bmm(Q, tile(Kpos, B)^T)`` (and ``p2c`` with ``Qpos``): the
exported graph reads the position projection ``P`` [H, 2 * span, d] (an initializer once
:mod:`bertrt.export.fold` has run), ``Expand``s it by ones, ``Tile``s it to [B * H, 2 * span, d] and
``Transpose``s that, per layer and per term: two B-fold copies of a constant per layer per call. The
same product is ``MatMul(Q4, P^T)`` with the queries still in their [B, H, S, d] form (the input of
the ``Reshape`` that flattened them) and ``P^T`` a constant [H, d, 2 * span] that MatMul broadcasts
over B; a ``Reshape`` back to [B * H, S, 2 * span] (shape taken from the flattened queries) feeds the
``GatherElements`` as before. Same dot products, no copies.

Where the MatMul's only reader is a last-axis ``GatherElements`` (DeBERTa's ``c2p``/``p2c`` gathers), only the
columns it reads are multiplied: ``P^T`` is sliced to ``[min(index), max(index)]`` (two reductions of
the small [1, S, S] index, computed per call) and the index shifted by the minimum; at S tokens that
is at most 2S - 1 of the 2 * span columns (512 for DeBERTa-v3), the same values gathered.

Only the exact pattern ``MatMul(Reshape(X4), Transpose(Tile(Expand(P, ConstantOfShape(1)), r), [0, 2, 1]))``
with a 3-D float initializer ``P`` and a 4-D ``X4`` is rewritten; anything else is left as it is.

:func:`drop_equal_length_branches`: transformers' scripted ``build_rpos`` exports as an ``If`` per layer:
``if key.size(-2) != query.size(-2)`` rebuild the relative positions, else reuse them. In an encoder's
self-attention the keys and queries are projections of the same hidden states, so the lengths are
always equal and the else branch (an ``Identity`` of the shared positions) always runs; the ``If`` is
replaced by that ``Identity``. Besides a branch per layer per call, the ``If`` (its output rank unknown
to a static planner) is what OpenVINO's CPU plugin refuses to compile ("doesn't support If operation
with dynamic rank").
"""

from __future__ import annotations

import logging

import numpy as np

__all__ = ["drop_equal_length_branches", "untile_position_scores"]

#: ops a sequence length passes through between ``Shape`` and the ``Equal`` of ``build_rpos``
_SIZE_OPS = {"Slice", "Squeeze", "Unsqueeze", "Gather", "Cast", "Reshape", "Identity"}

log = logging.getLogger("bertrt.export")


def _attr(node, name):
    from onnx import helper

    return next((helper.get_attribute_value(a) for a in node.attribute if a.name == name), None)


def _ones_shape(node, producer) -> bool:
    """``node`` is ``ConstantOfShape`` with value 1 (an ``Expand`` by it changes nothing of a same-rank P)."""
    from onnx import numpy_helper

    if node is None or node.op_type != "ConstantOfShape":
        return False
    value = _attr(node, "value")
    return value is not None and np.all(numpy_helper.to_array(value) == 1)


def _const(name, inits, producer):
    from onnx import numpy_helper

    if name in inits:
        return numpy_helper.to_array(inits[name])
    node = producer.get(name)
    if (
        node is not None
        and node.op_type == "Constant"
        and node.attribute
        and node.attribute[0].name == "value"
    ):
        return numpy_helper.to_array(node.attribute[0].t)
    return None


def _reads_trailing_dims(shape, consumers, inits, producer) -> bool:
    """Every consumer of ``shape`` (a Shape of the tiled [B * H, 2 * span, d]) is a Slice on axis 0 of
    the shape vector that starts at -2, -1, 1 or 2: it never reads the batch dim, so the Shape can read
    the untiled P [H, 2 * span, d] instead."""
    readers = consumers.get(shape.output[0], [])
    for node in readers:
        if node.op_type != "Slice" or len(node.input) < 3:
            return False
        start = _const(node.input[1], inits, producer)
        axes = _const(node.input[3], inits, producer) if len(node.input) > 3 and node.input[3] else None
        if start is None or start.size != 1 or int(start[0]) not in (-2, -1, 1, 2):
            return False
        if axes is not None and (axes.size != 1 or int(axes[0]) not in (0, -1)):
            return False
    return bool(readers)


_NAMES = (
    "posT",
    "y4",
    "shape",
    "lead",
    "rest",
    "begin",
    "end",
    "out_shape",
    "one",
    "axis",
    "lo0",
    "hi0",
    "lo",
    "hi1",
    "hi",
    "window",
    "idx",
)


def _window_index(matmul, consumers, producer):
    """The ``Expand`` of the index when ``matmul``'s only reader is a last-axis ``GatherElements`` whose
    index is an ``Expand`` read by nothing else (so the index can be shifted); else None."""
    readers = consumers.get(matmul.output[0], [])
    if len(readers) != 1 or readers[0].op_type != "GatherElements":
        return None
    gather = readers[0]
    if gather.input[0] != matmul.output[0] or _attr(gather, "axis") not in (-1, 2):
        return None
    expand = producer.get(gather.input[1])
    if expand is None or expand.op_type != "Expand" or len(consumers.get(expand.output[0], [])) != 1:
        return None
    return expand


def untile_position_scores(model) -> int:
    """Rewrite, in place, each position-score MatMul of ``model`` as described in the module docstring;
    return how many were rewritten."""
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    replace: dict[int, list] = {}
    for index, node in enumerate(graph.node):
        if node.op_type != "MatMul" or len(node.input) != 2:
            continue
        flat, right = producer.get(node.input[0]), producer.get(node.input[1])
        if flat is None or flat.op_type != "Reshape" or right is None or right.op_type != "Transpose":
            continue
        if list(_attr(right, "perm") or []) != [0, 2, 1]:
            continue
        tile = producer.get(right.input[0])
        expand = producer.get(tile.input[0]) if tile is not None and tile.op_type == "Tile" else None
        if expand is None or expand.op_type != "Expand" or expand.input[0] not in inits:
            continue
        if not _ones_shape(producer.get(expand.input[1]), producer):
            continue
        four = producer.get(flat.input[0])
        if four is None or four.op_type != "Transpose" or len(_attr(four, "perm") or []) != 4:
            continue
        pos = numpy_helper.to_array(inits[expand.input[0]])
        if pos.ndim != 3 or pos.dtype != np.float32:
            continue
        prefix = f"{(node.name or node.output[0]).replace('/', '_').strip('_')}_untiled"
        names = {k: f"{prefix}_{k}" for k in _NAMES}
        graph.initializer.extend(
            [
                numpy_helper.from_array(np.ascontiguousarray(pos.transpose(0, 2, 1)), names["posT"]),
                numpy_helper.from_array(np.array([0], np.int64), names["begin"]),
                numpy_helper.from_array(np.array([2], np.int64), names["end"]),
                numpy_helper.from_array(np.array([-1], np.int64), names["rest"]),
                numpy_helper.from_array(np.array([1], np.int64), names["one"]),
                numpy_helper.from_array(np.array([2], np.int64), names["axis"]),
            ]
        )
        for shape in consumers.get(tile.output[0], []):  # the scale reads the Tile's last dim: read P's
            if shape.op_type == "Shape" and _reads_trailing_dims(shape, consumers, inits, producer):
                shape.input[0] = expand.input[0]
        window = _window_index(node, consumers, producer)
        weights = names["posT"]
        nodes = []
        if window is not None:  # only the columns the gather reads: [min(index), max(index)]
            index_expand = window
            idx = index_expand.input[0]
            nodes += [
                helper.make_node("ReduceMin", [idx], [names["lo0"]], name=f"{prefix}/Lo", keepdims=0),
                helper.make_node("ReduceMax", [idx], [names["hi0"]], name=f"{prefix}/Hi", keepdims=0),
                helper.make_node(
                    "Reshape", [names["lo0"], names["one"]], [names["lo"]], name=f"{prefix}/Lo1"
                ),
                helper.make_node("Add", [names["hi0"], names["one"]], [names["hi1"]], name=f"{prefix}/HiEnd"),
                helper.make_node(
                    "Reshape", [names["hi1"], names["one"]], [names["hi"]], name=f"{prefix}/Hi1"
                ),
                helper.make_node(
                    "Slice",
                    [names["posT"], names["lo"], names["hi"], names["axis"]],
                    [names["window"]],
                    name=f"{prefix}/Window",
                ),
                helper.make_node("Sub", [idx, names["lo0"]], [names["idx"]], name=f"{prefix}/Shift"),
            ]
            index_expand.input[0] = names["idx"]
            weights = names["window"]
        replace[index] = [
            *nodes,
            helper.make_node("MatMul", [flat.input[0], weights], [names["y4"]], name=f"{prefix}/MatMul"),
            helper.make_node("Shape", [node.input[0]], [names["shape"]], name=f"{prefix}/Shape"),
            helper.make_node(
                "Slice",
                [names["shape"], names["begin"], names["end"]],
                [names["lead"]],
                name=f"{prefix}/Slice",
            ),
            helper.make_node(
                "Concat",
                [names["lead"], names["rest"]],
                [names["out_shape"]],
                name=f"{prefix}/Concat",
                axis=0,
            ),
            helper.make_node(
                "Reshape", [names["y4"], names["out_shape"]], list(node.output), name=f"{prefix}/Reshape"
            ),
        ]
    if not replace:
        return 0
    from .fold import splice

    splice(graph, replace)
    log.info("deberta: %d position-score MatMuls read the position projections untiled", len(replace))
    return len(replace)


def _from_shape(name: str, producer, steps: int = 6) -> bool:
    """``name`` is a dimension read off a ``Shape`` (through at most ``steps`` size ops)."""
    for _ in range(steps):
        node = producer.get(name)
        if node is None:
            return False
        if node.op_type == "Shape":
            return True
        if node.op_type not in _SIZE_OPS or not node.input:
            return False
        name = node.input[0]
    return False


def drop_equal_length_branches(model) -> int:
    """Replace, in place, each ``If(Not(Equal(len_a, len_b)))`` whose else branch is one ``Identity`` of an
    outer tensor (``build_rpos``, see the module docstring) with that ``Identity``; return how many.
    Only rows whose self-attention compares a key length with a query length call this (DeBERTa)."""
    from onnx import helper

    graph = model.graph
    producer = {o: n for n in graph.node for o in n.output}
    done = 0
    for index, node in enumerate(graph.node):
        if node.op_type != "If" or len(node.output) != 1:
            continue
        branch = _attr(node, "else_branch")
        if branch is None or len(branch.node) != 1 or branch.node[0].op_type != "Identity":
            continue
        source = branch.node[0].input[0]
        if source in {i.name for i in branch.initializer} or len(branch.output) != 1:
            continue
        cond = producer.get(node.input[0])
        if cond is not None and cond.op_type == "Cast":
            cond = producer.get(cond.input[0])
        equal = producer.get(cond.input[0]) if cond is not None and cond.op_type == "Not" else None
        if (
            equal is None
            or equal.op_type != "Equal"
            or not all(_from_shape(x, producer) for x in equal.input)
        ):
            continue
        graph.node[index].CopyFrom(helper.make_node("Identity", [source], [node.output[0]], name=node.name))
        done += 1
    return done
