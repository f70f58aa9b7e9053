"""``bertrt bench``'s GEMM op/s and % of peak: the op count the exporter records, the config fallback, the
hand-written GEMM graphs of the peak step. Nothing here asserts a speed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bertrt.bench import ops
from bertrt.bench.peak import gemm_model, measure_peaks


def _hand_count(config: dict, task: str) -> list[int]:
    """a, b, c of ``a + b L + c L^2`` for the tiny BERT, counted by hand from its sizes."""
    h, layers, inter = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    labels = len(config["id2label"])
    qkv, out, ffn = 2 * h * 3 * h, 2 * h * h, 2 * (2 * h * inter)  # per token, per layer
    b = layers * (qkv + out + ffn)
    c = layers * (2 * h + 2 * h)  # Q.K^T and softmax.V: 2 L^2 H each
    if task == "token-classification":
        return [0, b + 2 * h * labels, c]
    return [2 * h * h + 2 * h * labels, b, c]  # pooler dense on [CLS], then the classifier


@pytest.mark.parametrize("task", ["text-classification", "token-classification"])
def test_the_exporter_records_the_graphs_matmul_ops(tiny_bundle, task):
    bundle = tiny_bundle("bert", task)
    manifest = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    record = manifest["matmul_ops"]
    assert record["coefficients"] == _hand_count(config, task)
    assert record["graph"] == "model.onnx" and len(record["lengths"]) == 4
    count = ops.op_count(manifest, config, task)
    assert count.source == "bundle.json" and count(10) == sum(
        c * 10**i for i, c in enumerate(_hand_count(config, task))
    )
    # a bundle without the record: config.json's sizes give the same count for a BERT
    fallback = ops.op_count({}, config, task)
    assert fallback.source == "config.json" and fallback.coefficients == tuple(record["coefficients"])
    assert ops.sequence_ops(fallback, [3, 5]) == fallback(3) + fallback(5)


def test_no_count_without_record_or_sizes():
    assert ops.op_count({"matmul_ops": {"coefficients": [1, "x", 2]}}, {"vocab_size": 9}, None) is None


@pytest.mark.parametrize("precision", ["int8", "fp32"])
def test_the_hand_written_gemm_graphs_are_valid_onnx_and_compute_the_product(precision):
    import onnx
    import onnxruntime as ort

    data, feeds = gemm_model(precision, 4, 8, 16)
    model = onnx.ModelProto()
    model.ParseFromString(data)
    onnx.checker.check_model(model)
    (y,) = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, feeds)
    weight = onnx.numpy_helper.to_array(model.graph.initializer[0]).astype(np.float32)
    if precision == "fp32":
        np.testing.assert_allclose(y, feeds["a"] @ weight, rtol=1e-5, atol=1e-4)
    else:  # (a - 128) . w, scaled by 0.02 x 0.01
        expected = (feeds["a"].astype(np.float32) - 128) @ weight * np.float32(0.02 * 0.01)
        np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-4)


def test_measure_peaks_shape_of_the_result():
    result = measure_peaks(1, ("int8", "fp32"), rounds=1, run_s=0.0)
    assert set(result["peaks"]) == {"int8", "fp32"} and result["threads"] == 1
    for peak in result["peaks"].values():
        assert 0 < peak["min_gops"] <= peak["gops"] <= peak["max_gops"]


@pytest.mark.parametrize("arch", ["distilbert", "deberta-v2", "modernbert", "mpnet"])
def test_every_architecture_gets_a_quadratic_record(tiny_bundle, arch):
    """Unfused graphs (MatMul attention, DeBERTa's position products, ModernBERT's GLU) are counted too."""
    bundle = tiny_bundle(arch, "token-classification")
    record = json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))["matmul_ops"]
    config = json.loads((bundle / "config.json").read_text(encoding="utf-8"))
    a, b, c = record["coefficients"]
    estimate = ops.config_coefficients(config, "token-classification")
    assert a == 0 and b > 0 and c >= estimate[2]  # DeBERTa adds its position products to the L^2 term
