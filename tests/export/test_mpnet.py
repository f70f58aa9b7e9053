"""MPNet's attention on MultiHeadAttention (export/mpnet.py): what the bundle holds, exactness against the
unfused graph (with a relative-position bias large enough to matter), and batch invariance."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402

from bertrt.architectures import ARCHITECTURES  # noqa: E402
from bertrt.export import optimize  # noqa: E402
from bertrt.export.mpnet import fuse_bias_attention  # noqa: E402
from bertrt.session import DISABLED_OPTIMIZERS  # noqa: E402

N_LAYERS = 2  # tests/builders.py builds 2-layer models
TASK = "token-classification"


def _session(model):
    data = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(
        data, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
    )


def _batch(seed: int = 0, rows: int = 3, length: int = 23):
    rng = np.random.default_rng(seed)
    ids = rng.integers(5, 200, (rows, length)).astype(np.int64)
    mask = np.ones_like(ids)
    for row in range(1, rows):
        mask[row, length - 4 * row :] = 0
    return ids, mask


def test_mpnet_bundle_runs_one_multiheadattention_per_layer(tiny_bundle):
    bundle = tiny_bundle("mpnet", TASK)
    fusion = json.loads((bundle / "bundle.json").read_text())["fusion"]
    assert fusion["attention_bias_fused"] == fusion["attention_fused"] == N_LAYERS
    assert fusion["warning"] is None
    for name, gemms in (("model.onnx", "MatMul"), ("model.int8.onnx", "MatMulIntegerToFloat")):
        ops = [n.op_type for n in onnx.load(str(bundle / name)).graph.node]
        assert ops.count("MultiHeadAttention") == N_LAYERS, name
        assert "Softmax" not in ops and "Expand" not in ops, name  # the bias is not copied per text
        assert ops.count(gemms) == 6 * N_LAYERS + 1, name  # Q, K, V, output, FFN in, out; the head
    int8 = [n.op_type for n in onnx.load(str(bundle / "model.int8.onnx")).graph.node]
    assert "MatMul" not in int8  # every weight GEMM is per-token int8


def test_rewrite_matches_the_unfused_graph_with_a_large_position_bias(tiny_checkpoint, tmp_path, monkeypatch):
    from bertrt.export import convert

    folder = tiny_checkpoint("mpnet", TASK)
    model = convert.load_model(folder, TASK, "eager")
    raw = convert.export_onnx(model, TASK, tmp_path / "raw")
    dims = optimize.model_dims(model.config)
    plain = dataclasses.replace(ARCHITECTURES["mpnet"], attention_bias_fusion=False)
    monkeypatch.setattr(optimize, "get_architecture", lambda model_type: plain)
    record = optimize.optimize_graph(raw, tmp_path / "unfused.onnx", "mpnet", dims)
    assert record["attention_fused"] == record["attention_bias_fused"] == 0
    unfused = onnx.load(str(tmp_path / "unfused.onnx"))
    for init in unfused.graph.initializer:  # random init is ~0.02: make the bias decide the attention
        if "relative_attention_bias" in init.name:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 300, init.name))
    fused = onnx.ModelProto()
    fused.CopyFrom(unfused)
    assert fuse_bias_attention(fused, 2 * dims["num_heads"]) == 0  # heads the graph does not split into
    assert fuse_bias_attention(fused, dims["num_heads"]) == N_LAYERS
    assert fuse_bias_attention(fused, dims["num_heads"]) == 0  # nothing left to rewrite
    before, after = _session(unfused.SerializeToString()), _session(fused.SerializeToString())
    zeroed = onnx.ModelProto()
    zeroed.CopyFrom(fused)
    for init in zeroed.graph.initializer:
        if "relative_attention_bias" in init.name:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 0, init.name))
    ids, mask = _batch()
    feed = {"input_ids": ids, "attention_mask": mask}
    want, got = before.run(None, feed)[0], after.run(None, feed)[0]
    real = mask.astype(bool)
    np.testing.assert_allclose(got[real], want[real], atol=1e-5, rtol=0)
    no_bias = _session(zeroed.SerializeToString()).run(None, feed)[0]
    assert np.abs(no_bias - got)[real].max() > 1e-2  # the bias reached every layer's scores


@pytest.mark.parametrize("name", ["model.onnx", "model.int8.onnx"])
def test_mpnet_graphs_are_batch_invariant(tiny_bundle, name):
    session = _session(tiny_bundle("mpnet", TASK) / name)
    ids, mask = _batch(seed=1)
    batch = session.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    for row in range(len(ids)):
        n = int(mask[row].sum())
        alone = session.run(
            None, {"input_ids": ids[row : row + 1, :n], "attention_mask": mask[row : row + 1, :n]}
        )
        np.testing.assert_array_equal(alone[0][0], batch[row, :n])
