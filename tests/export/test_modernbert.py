"""ModernBERT's attention on RotaryEmbedding + MultiHeadAttention (export/modernbert.py): the rewrite fires on
every layer, keeps fp32 within 1e-4 of PyTorch (padding and the sliding window included), and the int8
graph has every weight GEMM in int8 and gives a text the same result alone as in a padded batch."""

from __future__ import annotations

import json

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")

from bertrt.export.modernbert import (  # noqa: E402
    fuse_rotary_attention,
    rotary_caches,
    split_glu_projection,
)

TASK = "token-classification"
LAYERS = 2  # tests/builders.py: every 2nd layer global, an 8-token local window


def _session(path):
    from bertrt.session import DISABLED_OPTIMIZERS

    return ort.InferenceSession(
        str(path), providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
    )


def _batch(vocab: int, length: int = 40):
    """Three texts of ``length`` tokens (past the 8-token window), the second padded after a third."""
    rng = np.random.default_rng(3)
    ids = rng.integers(5, vocab - 5, (3, length)).astype(np.int64)
    mask = np.ones_like(ids)
    mask[1, length // 3 :] = 0
    return ids, mask


def test_only_modernbert_maps_its_attention_onto_rotary_kernels():
    from bertrt.architectures import ARCHITECTURES

    assert {name for name, row in ARCHITECTURES.items() if row.rotary_attention} == {"modernbert"}


def test_rotary_caches_are_pytorchs_tables():
    import torch
    from transformers.models.modernbert.modeling_modernbert import ModernBertRotaryEmbedding

    config = transformers.ModernBertConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=512)
    config.rope_theta = 160000.0
    rope = ModernBertRotaryEmbedding(config)
    positions = torch.arange(512)[None, :]
    cos, sin = rope(torch.zeros(1, dtype=torch.float32), positions)
    want_cos, want_sin = cos[0, :, :8].numpy(), sin[0, :, :8].numpy()
    got_cos, got_sin = rotary_caches(rope.inv_freq.numpy(), (rope.attention_scaling,) * 2, 512)
    np.testing.assert_allclose(got_cos, want_cos, atol=1e-6, rtol=0)
    np.testing.assert_allclose(got_sin, want_sin, atol=1e-6, rtol=0)


def test_a_graph_without_the_pattern_is_left_alone():
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Softmax", ["x"], ["y"], axis=-1)],
        "plain",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    assert fuse_rotary_attention(model, 64) == 0
    assert [n.op_type for n in model.graph.node] == ["Softmax"]


def _glu_model():
    """y = gelu(x @ W[:, :3]) * (x @ W[:, 3:]) written as transformers' chunk(2): Slices sized from a Shape."""
    from onnx import TensorProto, helper, numpy_helper

    def const(name, value):
        return helper.make_node(
            "Constant", [], [name], value=numpy_helper.from_array(np.array(value, np.int64))
        )

    w = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    nodes = [
        const("c_last", [-1]),
        const("c_one", [1]),
        const("c_two", [2]),
        const("c_zero", [0]),
        helper.make_node("MatMul", ["x", "W"], ["h"], name="Wi"),
        helper.make_node("Shape", ["h"], ["shape"]),
        helper.make_node("Gather", ["shape", "c_last"], ["last"], axis=0),
        helper.make_node("Add", ["last", "c_one"], ["last1"]),
        helper.make_node("Div", ["last1", "c_two"], ["half0"]),
        helper.make_node("Mul", ["half0", "c_one"], ["half"]),
        helper.make_node("Mul", ["half0", "c_two"], ["end"]),
        helper.make_node("Slice", ["h", "c_zero", "half", "c_last"], ["a"]),
        helper.make_node("Slice", ["h", "half", "end", "c_last"], ["b"]),
        helper.make_node("Gelu", ["a"], ["ga"]),
        helper.make_node("Mul", ["ga", "b"], ["y"]),
    ]
    graph = helper.make_graph(
        nodes,
        "glu",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3])],
        initializer=[numpy_helper.from_array(w, "W")],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])


def test_glu_projection_split_in_two_matmuls_gives_the_same_values():
    model = _glu_model()
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(np.float32)

    def run(m):
        return ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x}
        )[0]

    before = run(model)
    assert split_glu_projection(model) == 1
    assert [n.op_type for n in model.graph.node] == ["MatMul", "MatMul", "Gelu", "Mul"]
    np.testing.assert_array_equal(run(model), before)
    assert split_glu_projection(model) == 0


def test_modernbert_bundle_runs_fused_rope_and_attention(tiny_bundle):
    bundle = tiny_bundle("modernbert", TASK)
    manifest = json.loads((bundle / "bundle.json").read_text())
    fusion = manifest["fusion"]
    assert fusion["rotary_attention_fused"] == fusion["glu_projections_split"] == LAYERS
    assert fusion["attention_fused"] == fusion["attention_expected"] == LAYERS
    for name in ("model.onnx", "model.int8.onnx"):
        ops = [n.op_type for n in onnx.load(str(bundle / name)).graph.node]
        assert ops.count("RotaryEmbedding") == 2 * LAYERS, name
        assert ops.count("MultiHeadAttention") == LAYERS, name
        # the unfused attention, the tables, the GLU chunk; RoPE's rotate_half (Neg) in fp32 (the per-token
        # int8 rewrite has Neg nodes of its own: max(max x, -min x))
        for glue in ("Softmax", "Cos", "Sin", "Slice", *(["Neg"] if name == "model.onnx" else [])):
            assert glue not in ops, (name, glue)
    # every weight GEMM is int8: no MatMul is left in fp32
    assert not [n for n in onnx.load(str(bundle / "model.int8.onnx")).graph.node if n.op_type == "MatMul"]
    assert len(manifest["quantization"]["fp32_nodes"]) == 1  # the recipe's attention label, no node names


def test_fused_modernbert_matches_pytorch_and_is_batch_invariant(tiny_bundle, tiny_checkpoint):
    import torch

    bundle = tiny_bundle("modernbert", TASK)
    model = transformers.AutoModelForTokenClassification.from_pretrained(
        tiny_checkpoint("modernbert", TASK), attn_implementation="sdpa"
    ).eval()
    ids, mask = _batch(model.config.vocab_size)
    with torch.inference_mode():
        want = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits.numpy()
    keep = mask.astype(bool)
    fp32 = _session(bundle / "model.onnx").run(None, {"input_ids": ids, "attention_mask": mask})[0]
    assert np.abs(fp32 - want)[keep].max() <= 1e-4
    int8 = _session(bundle / "model.int8.onnx")
    batch = int8.run(None, {"input_ids": ids, "attention_mask": mask})[0]
    n = int(mask[1].sum())
    alone = int8.run(None, {"input_ids": ids[1:2, :n], "attention_mask": mask[1:2, :n]})[0]
    np.testing.assert_array_equal(alone[0], batch[1, :n])


def test_openvino_reads_the_rewritten_graph_as_onnxruntime_runs_it(tiny_bundle):
    """OpenVINO's reading of com.microsoft RotaryEmbedding needs [B, S] position ids (the offset form [0] is
    misread): the fp32 IR export validates the IR against onnxruntime at 1e-4."""
    ov = pytest.importorskip("openvino")
    path = tiny_bundle("modernbert", TASK) / "model.onnx"
    ids, mask = _batch(600)
    compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    got = compiled({"input_ids": ids, "attention_mask": mask})[0]
    want = _session(path).run(None, {"input_ids": ids, "attention_mask": mask})[0]
    assert np.abs(got - want)[mask.astype(bool)].max() <= 1e-4
