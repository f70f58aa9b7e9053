"""Constant folding at export (export/fold.py): weight-only subgraphs become initializers, same results."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from bertrt.export.fold import fold_constants  # noqa: E402


def _model():
    """y = x @ (LayerNorm(E)[:4] @ W)^T + shape-independent glue; E, W constants: only x is an input."""
    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.standard_normal((6, 8)).astype(np.float32), "E"),
        numpy_helper.from_array(rng.standard_normal((8, 8)).astype(np.float32), "W"),
        numpy_helper.from_array(np.ones(8, np.float32), "gamma"),
        numpy_helper.from_array(np.zeros(8, np.float32), "beta"),
    ]
    nodes = [
        helper.make_node("Constant", [], ["starts"], value=numpy_helper.from_array(np.array([0], np.int64))),
        helper.make_node("Constant", [], ["ends"], value=numpy_helper.from_array(np.array([4], np.int64))),
        helper.make_node("LayerNormalization", ["E", "gamma", "beta"], ["ln"], axis=-1),
        helper.make_node("Slice", ["ln", "starts", "ends"], ["sl"]),
        helper.make_node("MatMul", ["sl", "W"], ["pos"]),
        helper.make_node("Transpose", ["pos"], ["posT"], perm=[1, 0]),
        helper.make_node("MatMul", ["x", "posT"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fold",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
        initializer=inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _run(model, x):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["y"], {"x": x})[0]


def test_fold_turns_the_weight_only_cone_into_one_initializer():
    model = _model()
    x = np.random.default_rng(1).standard_normal((3, 8)).astype(np.float32)
    before = _run(model, x)
    assert fold_constants(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul"]
    assert {i.name for i in model.graph.initializer} == {"posT"}
    np.testing.assert_array_equal(_run(model, x), before)
    assert fold_constants(model) == 0  # nothing left to fold


def test_fold_leaves_a_graph_without_constant_work_alone():
    model = _model()
    del model.graph.node[:]
    model.graph.node.extend(
        [helper.make_node("MatMul", ["x", "W"], ["z"]), helper.make_node("Relu", ["z"], ["y"])]
    )
    assert fold_constants(model) == 0
    assert [n.op_type for n in model.graph.node] == ["MatMul", "Relu"]


def test_deberta_rows_fold_their_position_projections():
    from bertrt.architectures import ARCHITECTURES

    folding = {name for name, row in ARCHITECTURES.items() if row.fold_constants}
    assert folding == {"deberta", "deberta-v2"}


def test_deberta_v2_bundle_runs_its_position_terms_untiled_and_unquantized(tiny_bundle):
    """The exported DeBERTa-v3 graph: the position projections are initializers (no int8 GEMM reads
    them), no Tile copies them per batch, and each layer's c2p and p2c MatMul reads them directly."""
    import json

    bundle = tiny_bundle("deberta-v2", "token-classification")
    fusion = json.loads((bundle / "bundle.json").read_text())["fusion"]
    assert fusion["constants_folded"] > 0
    assert fusion["position_scores_untiled"] == 2 * 2  # c2p and p2c, 2 layers (tests/builders.py)
    for name in ("model.onnx", "model.int8.onnx"):
        graph = onnx.load(str(bundle / name)).graph
        assert not [n for n in graph.node if n.op_type == "Tile"], name
        assert not [n for n in graph.node if "proj_1" in n.name], name  # the position projections
        assert not [n for n in graph.node if n.op_type == "If"], name  # build_rpos's length branches


@pytest.mark.parametrize("family", ["deberta", "deberta-v2"])
def test_deberta_length_branches_dropped_and_openvino_compiles(tiny_bundle, family):
    """build_rpos's per-layer If (key length != query length: never true in self-attention) is gone from
    both DeBERTa graphs, and OpenVINO, which refuses an If of dynamic rank, now runs them with the same
    logits as onnxruntime."""
    import json

    import numpy as np

    import bertrt

    bundle = tiny_bundle(family, "token-classification")
    fusion = json.loads((bundle / "bundle.json").read_text())["fusion"]
    graph = onnx.load(str(bundle / "model.onnx")).graph
    assert not [n for n in graph.node if n.op_type == "If"]
    # deberta-v2 (shared keys): one If per layer (p2c); deberta: one per layer for each of c2p and p2c
    assert fusion["length_branches_dropped"] == {"deberta-v2": 2, "deberta": 4}[family]
    texts = ["Maria flew to Paris on Monday.", "Hans eats pizza in Rome with his friends."]
    ort = bertrt.pipeline("token-classification", bundle, precision="fp32", backend="onnxruntime")
    ov = bertrt.pipeline("token-classification", bundle, precision="fp32", backend="openvino")
    a = ort(texts, aggregation_strategy="none")
    b = ov(texts, aggregation_strategy="none")
    for x, y in zip(a, b):
        assert [t["entity"] for t in x] == [t["entity"] for t in y]
        np.testing.assert_allclose([t["score"] for t in x], [t["score"] for t in y], atol=1e-4)
