"""The fp32 graph post-pass: SkipLayerNormalization split into Add + LayerNormalization."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from bertrt.errors import ExportError
from bertrt.export.optimize import optimize_graph, split_skip_layernorm
from bertrt.session import DISABLED_OPTIMIZERS

D = 32


def _graph(bias: bool, beta: bool, sum_output: bool):
    rng = np.random.default_rng(int(bias) * 4 + int(beta) * 2 + int(sum_output))
    inits = {
        "gamma": rng.uniform(0.5, 1.5, D),
        "beta": rng.standard_normal(D),
        "bias": rng.standard_normal(D),
    }
    inputs = ["x", "skip", "gamma", "beta" if beta or bias else "", "bias" if bias else ""]
    while inputs[-1] == "":
        inputs.pop()
    outputs = ["y", "", "", "sum"] if sum_output else ["y"]
    node = helper.make_node(
        "SkipLayerNormalization", inputs, outputs, name="sln", domain="com.microsoft", epsilon=1e-5
    )
    graph_outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", D])]
    if sum_output:
        graph_outputs.append(helper.make_tensor_value_info("sum", TensorProto.FLOAT, ["B", "S", D]))
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", "S", D]) for n in ("x", "skip")],
        graph_outputs,
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in inits.items() if k in inputs],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    )


def _run(model, feeds):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(
        model.SerializeToString(), options, ["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
    )
    return session.run(None, feeds)


@pytest.mark.parametrize(
    "bias,beta,sum_output", [(True, True, False), (False, True, True), (False, False, False)]
)
def test_split_computes_what_the_fused_op_computes(bias, beta, sum_output):
    fused = _graph(bias, beta, sum_output)
    split = onnx.ModelProto()
    split.CopyFrom(fused)
    assert split_skip_layernorm(split.graph) == 1
    onnx.checker.check_model(split)
    ops = [n.op_type for n in split.graph.node]
    assert ops == ["Add", *(["Add"] if bias else []), "LayerNormalization"]
    rng = np.random.default_rng(0)
    feeds = {n: (rng.standard_normal((3, 7, D)) * 4).astype(np.float32) for n in ("x", "skip")}
    want, got = _run(fused, feeds), _run(split, feeds)
    for a, b in zip(want, got):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-5)  # fp32 rounding of the same sums
    if sum_output:
        expected_sum = feeds["x"] + feeds["skip"]
        np.testing.assert_allclose(got[1], expected_sum, rtol=1e-6, atol=1e-6)


def test_nodes_whose_statistics_are_used_stay_fused():
    model = _graph(True, True, False)
    node = model.graph.node[0]
    node.output.extend(["mean"])
    assert split_skip_layernorm(model.graph) == 0
    assert [n.op_type for n in model.graph.node] == ["SkipLayerNormalization"]


def test_unknown_mode_is_refused(tmp_path):
    with pytest.raises(ExportError, match="skip_layernorm must be one of split, fused, got 'drop'"):
        optimize_graph(tmp_path / "a.onnx", tmp_path / "b.onnx", "bert", {}, skip_layernorm="drop")


def test_export_keeps_the_fused_op_when_asked_and_both_graphs_agree(tiny_checkpoint, tiny_bundle, tmp_path):
    import json

    from bertrt.bundle import FP32_FILE, MANIFEST
    from bertrt.export import export_model
    from bertrt.pipelines import pipeline

    task = "token-classification"
    out = tmp_path / "fused"
    export_model(tiny_checkpoint("bert", task), out, quantize="none", skip_layernorm="fused")
    ops = {n.op_type for n in onnx.load(str(out / FP32_FILE)).graph.node}
    assert "SkipLayerNormalization" in ops
    record = json.loads((out / MANIFEST).read_text())["fusion"]["skip_layernorm"]
    assert record == {"mode": "fused", "split": 0}
    texts = ["Maria lives in Groningen.", "John Smith works at Acme Corp. in New York City!"]
    fused = pipeline(task, out, precision="fp32", backend="onnxruntime")
    split = pipeline(task, tiny_bundle("bert", task), precision="fp32", backend="onnxruntime")
    for a, b in zip(fused(texts, aggregation_strategy="none"), split(texts, aggregation_strategy="none")):
        assert [t["entity"] for t in a] == [t["entity"] for t in b]
        np.testing.assert_allclose([t["score"] for t in a], [t["score"] for t in b], rtol=1e-4, atol=1e-5)
    with pytest.raises(ExportError, match="skip_layernorm must be one of split, fused"):
        export_model(tiny_checkpoint("bert", task), tmp_path / "bad", skip_layernorm="drop")


def test_cli_flag_and_summary_name_the_split(tiny_bundle):
    import argparse
    import json

    from bertrt.bundle import MANIFEST
    from bertrt.export import cli as export_cli

    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    assert parser.parse_args(["ckpt", "out"]).skip_layernorm == "split"
    assert parser.parse_args(["ckpt", "out", "--skip-layernorm", "fused"]).skip_layernorm == "fused"
    folder = tiny_bundle("bert", "token-classification")
    manifest = json.loads((folder / MANIFEST).read_text())
    row = next(
        line for line in export_cli.summary_table(manifest, str(folder)).splitlines() if "fusions" in line
    )
    split = manifest["fusion"]["skip_layernorm"]["split"]
    assert split > 0 and f"({split} SkipLayerNormalization split into Add + LayerNormalization)" in row
