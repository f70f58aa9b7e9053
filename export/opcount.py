"""Bundle step: the matmul op count of the graph per text, as ``a + b·L + c·L²`` for L tokens.

``bertrt bench`` reports each system's GEMM op/s and its share of the machine's GEMM peak; the runtime
reads no ONNX protobuf, so the exporter records the count in bundle.json (``matmul_ops``). It comes from
the graph itself: the fp32 graph runs at batch 1 at a few sequence lengths with the inputs of every
counted node (:data:`COUNTED`) as extra outputs, each node's ops follow from the shapes it saw (2 per
multiply-add), and the three coefficients are solved exactly from three lengths and checked at a fourth.
Fused attention nodes count their score and context products (``4·L²·hidden`` per layer); embedding
lookups, normalization, softmax and activations are not counted. Weight GEMMs on one row per text (a
pooler, a classifier on [CLS]) land in ``a``, per-token ones in ``b``, attention in ``c``.
"""

from __future__ import annotations

import logging
from fractions import Fraction
from pathlib import Path

import numpy as np

__all__ = ["COUNTED", "LENGTHS", "matmul_ops", "node_ops"]

log = logging.getLogger("bertrt.export")

#: operators whose products are counted
COUNTED = (
    "MatMul",
    "FusedMatMul",
    "MatMulInteger",
    "MatMulIntegerToFloat",
    "Gemm",
    "Attention",
    "MultiHeadAttention",
)
#: sequence lengths the graph runs at (three to solve, the last to check); short, so DeBERTa's
#: relative-position window (2L-1 columns, at most 2 x its buckets) stays unclipped on the tiny test
#: models too (past 2 x buckets tokens the record overestimates its position products slightly)
LENGTHS = (4, 6, 8, 10)


def _attr(node, name: str, default):
    for a in node.attribute:
        if a.name == name:
            return a.i if a.type == a.INT else list(a.ints)
    return default


def _matmul(a: tuple, b: tuple, trans_a: bool = False, trans_b: bool = False) -> int:
    """2 x multiply-adds of numpy-style ``a @ b`` (batch dimensions broadcast)."""
    a, b = list(a), list(b)
    if len(a) == 1:
        a = [1, *a]
    if len(b) == 1:
        b = [*b, 1]
    if trans_a:
        a[-2], a[-1] = a[-1], a[-2]
    if trans_b:
        b[-2], b[-1] = b[-1], b[-2]
    batch = np.broadcast_shapes(tuple(a[:-2]), tuple(b[:-2]))
    return 2 * int(np.prod(batch, dtype=np.int64)) * a[-2] * a[-1] * b[-1]


def node_ops(node, shapes: list) -> int:
    """Ops of one counted node from its inputs' shapes (None for an absent input)."""
    op = node.op_type
    if op == "Gemm":
        return _matmul(shapes[0], shapes[1], bool(_attr(node, "transA", 0)), bool(_attr(node, "transB", 0)))
    if op == "FusedMatMul":
        return _matmul(shapes[0], shapes[1], bool(_attr(node, "transA", 0)), bool(_attr(node, "transB", 0)))
    if op in ("MatMul", "MatMulInteger", "MatMulIntegerToFloat"):
        return _matmul(shapes[0], shapes[1])
    if op == "Attention":  # input [B, S, Hin] x weights [Hin, Hq + Hk + Hv], then QK^T and softmax . V
        (batch, seq, _), weight = shapes[0], shapes[1]
        sizes = _attr(node, "qkv_hidden_sizes", []) or [weight[1] // 3] * 3
        return _matmul(shapes[0], weight) + 2 * batch * seq * seq * (sizes[0] + sizes[2])
    if op == "MultiHeadAttention":
        query = shapes[0]
        key = shapes[1] if len(shapes) > 1 else None
        value = shapes[2] if len(shapes) > 2 else None
        if len(query) == 5:  # packed QKV [B, S, N, 3, H]
            batch, seq, heads, _, size = query
            return 4 * batch * seq * seq * heads * size
        batch, seq, hidden = query
        if key is None or len(key) != 3 or value is None or len(value) != 3:
            raise ValueError(f"MultiHeadAttention {node.name}: unsupported key/value shapes {key}, {value}")
        return 2 * batch * seq * key[1] * hidden + 2 * batch * seq * key[1] * value[2]
    raise ValueError(f"{op} is not a counted operator")


def _feeds(inputs, length: int) -> dict:
    feeds = {}
    for spec in inputs:
        if len(spec.shape) != 2 or "int" not in spec.type:
            raise ValueError(f"input {spec.name} is {spec.type} {spec.shape}, not (batch, sequence) ids")
        dtype = np.int32 if spec.type == "tensor(int32)" else np.int64
        fill = 0 if spec.name == "token_type_ids" else 1  # ids 1, mask 1, segment 0
        feeds[spec.name] = np.full((1, length), fill, dtype=dtype)
    return feeds


def _ops_at(graph, session_factory, lengths) -> list[int]:
    initializers = {t.name: tuple(t.dims) for t in graph.initializer}
    nodes = [n for n in graph.node if n.op_type in COUNTED and n.domain in ("", "ai.onnx", "com.microsoft")]
    wanted = sorted({name for n in nodes for name in n.input if name and name not in initializers})
    session = session_factory(wanted)
    totals = []
    for length in lengths:
        got = dict(zip(wanted, (o.shape for o in session.run(wanted, _feeds(session.get_inputs(), length)))))
        shapes = {**initializers, **got}
        totals.append(sum(node_ops(n, [shapes.get(i) if i else None for i in n.input]) for n in nodes))
    return totals


def _solve(lengths, totals) -> list[int]:
    """Exact a, b, c of ``a + b L + c L^2`` through the first three points (Lagrange, in fractions)."""
    (x0, x1, x2), (y0, y1, y2) = lengths[:3], totals[:3]
    d1 = Fraction(y1 - y0, x1 - x0)
    d2 = (Fraction(y2 - y1, x2 - x1) - d1) / (x2 - x0)
    c, b = d2, d1 - d2 * (x0 + x1)
    a = y0 - b * x0 - c * x0 * x0
    if any(v.denominator != 1 for v in (a, b, c)):
        raise ValueError(f"op counts {totals} at lengths {list(lengths)} are no integer quadratic")
    return [int(a), int(b), int(c)]


def matmul_ops(graph_path: str | Path, max_length: int, lengths=LENGTHS) -> dict | None:
    """bundle.json's ``matmul_ops`` record of the graph at ``graph_path``: ``coefficients`` [a, b, c]
    (ops per text of L tokens = a + b·L + c·L²), the lengths it was fitted and checked at, the counted
    nodes by operator. None (logged) when the graph cannot be counted this way."""
    import onnx
    import onnxruntime as ort

    lengths = [n for n in lengths if n <= max_length]
    if len(lengths) < 4:
        log.warning("export: no matmul op count (max length %d is below %d)", max_length, LENGTHS[-1])
        return None
    model = onnx.load(str(graph_path))

    def session(outputs):
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        probe.graph.output.extend(onnx.ValueInfoProto(name=name) for name in outputs)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.log_severity_level = 3
        return ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])

    try:
        totals = _ops_at(model.graph, session, lengths)
        coefficients = _solve(lengths, totals)
        a, b, c = coefficients
        if a + b * lengths[3] + c * lengths[3] ** 2 != totals[3]:
            raise ValueError(f"op counts {totals} at lengths {lengths} are not quadratic in the length")
    except Exception as exc:  # a graph this counter does not understand: the bench falls back to config
        log.warning("export: no matmul op count for %s (%s)", Path(graph_path).name, exc)
        return None
    counts: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type in COUNTED:
            counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return {
        "coefficients": coefficients,
        "formula": "ops per text of L tokens = a + b*L + c*L^2 (2 ops per multiply-add)",
        "graph": Path(graph_path).name,
        "lengths": lengths[:4],
        "nodes": counts,
    }
