"""int8 recipes: the per-token rewrite against a numpy reference, batch invariance, manifest records."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bertrt.bundle import INT8_FILE, MANIFEST
from bertrt.export import quantize as quantize_stage
from bertrt.export.per_token import quantize_weight_per_column, reference_matmul, rewrite_matmuls
from tests.corpus import PARITY_TEXTS, TRAIN_TEXT

LEVELS = [
    ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
]
K, N = 48, 40


def _small_graph(opset: int, w: np.ndarray, bias: np.ndarray):
    """x [B, S, K] -> MatMul(W) -> Add(bias) -> Gelu-free y; plus an activation x activation MatMul."""
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["mm"], name="proj"),
        helper.make_node("Add", ["mm", "bias"], ["y"], name="bias_add"),
        helper.make_node("Transpose", ["x"], ["xt"], perm=[0, 2, 1]),
        helper.make_node("MatMul", ["x", "xt"], ["gram"], name="act_act"),
    ]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", K])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", N]),
            helper.make_tensor_value_info("gram", TensorProto.FLOAT, ["B", "S", "S"]),
        ],
        [numpy_helper.from_array(w, "W"), numpy_helper.from_array(bias, "bias")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _inputs(rng, batch=5, seq=9):
    # rows of very different magnitudes (a per-tensor scale would crush the small ones), one all-zero row
    x = rng.standard_normal((batch, seq, K)).astype(np.float32) * rng.uniform(0.01, 20, (batch, seq, 1))
    x = x.astype(np.float32)
    x[1, 4] = 0.0
    return x


def test_weight_quantization_is_symmetric_per_column():
    w = np.array([[1.0, -0.5, 0.0], [-2.0, 0.25, 0.0]], dtype=np.float32)
    q, scale = quantize_weight_per_column(w)
    np.testing.assert_allclose(scale, [2 / 127, 0.5 / 127, 1.0], rtol=1e-6)
    assert q.dtype == np.int8 and q[:, 2].tolist() == [0, 0]
    assert q[1, 0] == -127 and q[0, 1] == -127 and np.abs(q).max() == 127


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("level", LEVELS, ids=lambda lv: lv.name)
def test_rewrite_matches_numpy_reference_under_every_optimization_level(opset, level, tmp_path):
    """The loaded session (with onnxruntime's fusions at every level) computes exactly the per-token
    recipe: no fusion that assumes a per-tensor activation scale rewrites the subgraph."""
    rng = np.random.default_rng(opset)
    w = rng.standard_normal((K, N)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    model = _small_graph(opset, w, bias)
    assert rewrite_matmuls(model) == ["proj"]  # the activation x activation MatMul stays fp32
    onnx.checker.check_model(model)
    assert "W" not in {i.name for i in model.graph.initializer}  # fp32 weight dropped
    # the integer GEMM applies the per-column weight scale in its output stage (a_scale 1, zero point 128)
    gemm = next(n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat")
    assert (
        gemm.domain == "com.microsoft"
        and {n.op_type for n in model.graph.node} & {"MatMulInteger", "Cast"} == set()
    )
    assert numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == gemm.input[2])) == 1.0
    options = ort.SessionOptions()
    options.graph_optimization_level = level
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    x = _inputs(rng)
    y, gram = session.run(None, {"x": x})
    expected = reference_matmul(x, w) + bias
    np.testing.assert_allclose(y, expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(gram, x @ x.transpose(0, 2, 1), rtol=1e-4, atol=1e-3)
    np.testing.assert_array_equal(y[1, 4], bias)  # all-zero row: no division by zero
    # the recipe is a good approximation of the fp32 product, row by row (relative to the row's scale)
    exact = x @ w
    row_err = np.abs(y - bias - exact).max(-1) / (np.abs(exact).max(-1) + 1e-9)
    assert row_err[np.abs(exact).max(-1) > 0].max() < 0.05
    # batch invariance at the operator level: each row alone gives bit-identical outputs
    single = np.concatenate(
        [
            session.run(None, {"x": x[i : i + 1, j : j + 1]})[0]
            for i in range(x.shape[0])
            for j in range(x.shape[1])
        ]
    )
    np.testing.assert_array_equal(single.reshape(y.shape), y)


def test_matmuls_reading_one_tensor_share_its_quantization():
    """Q, K and V projections of one input: one per-token quantization, three integer GEMMs, each output
    equal to the reference; the kernel count is 7 per input + 2 per MatMul."""
    rng = np.random.default_rng(7)
    ws = [rng.standard_normal((K, N)).astype(np.float32) for _ in range(3)]
    names = ["q", "k", "v"]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", f"W{n}"], [n], name=f"proj_{n}") for n in names],
        "qkv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["B", "S", K])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", "S", N]) for n in names],
        [numpy_helper.from_array(w, f"W{n}") for w, n in zip(ws, names)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert rewrite_matmuls(model) == ["proj_q", "proj_k", "proj_v"]
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == 1 and ops.count("MatMulIntegerToFloat") == 3
    assert len(ops) == 7 + 2 * 3
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _inputs(rng)
    for got, w in zip(session.run(None, {"x": x}), ws):
        np.testing.assert_allclose(got, reference_matmul(x, w), rtol=1e-6, atol=1e-6)


def test_reduce_range_uses_seven_bit_weights():
    rng = np.random.default_rng(3)
    w = rng.standard_normal((K, N)).astype(np.float32)
    model = _small_graph(18, w, np.zeros(N, np.float32))
    rewrite_matmuls(model, reduce_range=True)
    wq = next(numpy_helper.to_array(i) for i in model.graph.initializer if i.name.endswith("_Wq"))
    assert np.abs(wq.astype(int)).max() == 63
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = _inputs(rng)
    np.testing.assert_allclose(
        session.run(None, {"x": x})[0], reference_matmul(x, w, qmax=63), rtol=1e-6, atol=1e-6
    )


def test_unknown_recipe_is_refused(tmp_path):
    from bertrt.errors import ExportError

    with pytest.raises(ExportError, match="int8 recipe must be one of per-token, dynamic"):
        quantize_stage.quantize_graph(tmp_path / "a.onnx", tmp_path / "b.onnx", recipe="static")
    with pytest.raises(ExportError, match="attention must be one of"):
        quantize_stage.quantize_graph(tmp_path / "a.onnx", tmp_path / "b.onnx", attention="int4")


def test_export_model_refuses_unknown_recipe(tiny_checkpoint, tmp_path):
    from bertrt.errors import ExportError
    from bertrt.export import export_model

    with pytest.raises(ExportError, match="int8_recipe must be one of"):
        export_model(tiny_checkpoint("bert", "token-classification"), tmp_path / "b", int8_recipe="per-row")
    assert not (tmp_path / "b").exists()


def _manifest(folder):
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


@pytest.mark.parametrize("task", ["token-classification", "text-classification"])
def test_per_token_manifest_and_graph(tiny_bundle, task):
    folder = tiny_bundle("bert", task)
    q = _manifest(folder)["quantization"]
    assert q["recipe"] == "per-token" and q["batch_invariant"] is True
    assert q["activation_granularity"].startswith("per token")
    assert q["weight_granularity"].startswith("per output column, symmetric")
    assert q["attention"] == "per-token" and q["unfused_attention"] == 2  # tiny models have 2 layers
    assert q["fp32_nodes"] == ["attention MatMuls (QK^T, softmax x V: activation x activation)"]
    assert q["op_types"] == ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"]
    graph = onnx.load(str(folder / INT8_FILE)).graph
    ops = [n.op_type for n in graph.node]
    # 2 layers x (Q, K, V, attention output, FFN in, FFN out) + the head's MatMul(s), all rewritten
    assert ops.count("MatMulIntegerToFloat") == q["rewritten_matmuls"] >= 13
    # the attention in standard ops: QK^T and softmax x V stay fp32 MatMuls, no packed-QKV Split
    assert ops.count("MatMul") == 4 and ops.count("Softmax") == 2
    assert not {"MultiHeadAttention", "Split", "MatMulInteger", "Attention", "DynamicQuantizeLinear"} & set(
        ops
    )
    assert "QAttention" not in ops
    assert "QEmbedLayerNormalization" in ops


def _texts():
    texts = list(dict.fromkeys(PARITY_TEXTS + TRAIN_TEXT))
    return (texts * 3)[:40]


def _entities(result):
    return [[(e["entity_group"], e["start"], e["end"]) for e in ents] for ents in result]


def _batch1_vs_batch32(folder, task):
    """(results equal in entities / labels, max score difference) of batch-1 and batch-32 int8 runs."""
    import bertrt

    pipe = bertrt.pipeline(task, folder, precision="int8")
    assert pipe.bundle.model_path.name == INT8_FILE
    texts = _texts()
    kwargs = {"aggregation_strategy": "simple"} if task == "token-classification" else {"top_k": None}
    single = [pipe(t, **kwargs) for t in texts]
    batched = pipe(texts, batch_size=32, **kwargs)
    if task == "token-classification":
        assert sum(map(len, single)) > 0  # the tiny random head does find entities: the check bites
        same = _entities(single) == _entities(batched)
    else:
        same = [[r["label"] for r in x] for x in single] == [[r["label"] for r in x] for x in batched]
    pairs = [(a["score"], b["score"]) for x, y in zip(single, batched) for a, b in zip(x, y)]
    return same, max(abs(a - b) for a, b in pairs)


@pytest.mark.parametrize("task", ["token-classification", "text-classification"])
def test_per_token_int8_results_do_not_depend_on_the_batch(tiny_bundle, task):
    same, diff = _batch1_vs_batch32(tiny_bundle("bert", task), task)
    assert same and diff <= 1e-5


def test_dynamic_recipe_stays_selectable(tiny_checkpoint, tmp_path):
    from bertrt.export import export_model

    m = export_model(
        tiny_checkpoint("bert", "token-classification"),
        tmp_path / "b",
        task="token-classification",
        int8_recipe="dynamic",
    )
    q = m["quantization"]
    assert q["recipe"] == "dynamic" and q["batch_invariant"] is False
    assert q["activation_granularity"].startswith("per tensor")
    assert q["weight_granularity"] == "per output channel"
    ops = {n.op_type for n in onnx.load(str(tmp_path / "b" / INT8_FILE)).graph.node}
    assert {"DynamicQuantizeLinear", "QAttention"} <= ops
    # the contrast that makes the per-token test meaningful: per-tensor scales move with the batch
    _same, diff = _batch1_vs_batch32(tmp_path / "b", "token-classification")
    assert diff > 1e-5


def test_cli_passes_the_recipe():
    import argparse

    from bertrt.export import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert parser.parse_args(["m", "o"]).int8_recipe == "per-token"
    assert parser.parse_args(["m", "o", "--int8-recipe", "dynamic"]).int8_recipe == "dynamic"
    with pytest.raises(SystemExit):
        parser.parse_args(["m", "o", "--int8-recipe", "static"])
