"""``bertrt export --fp16``: model.fp16.onnx written from the fused graph, hashed, validated, loadable.

The numeric check here runs the fp16 graph on the CPU provider (no GPU in CI); the CUDA parity tests are
in tests/runtime/test_gpu.py (marked ``gpu``).
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bertrt.bundle import FP16_FILE, FP32_FILE, MANIFEST, file_sha256, load_bundle
from bertrt.errors import BundleError, ExportError


def _provider() -> str:
    import onnxruntime as ort

    cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    return "CUDAExecutionProvider" if cuda else "CPUExecutionProvider"


#: where the export validates the fp16 graph: CUDA when this onnxruntime has it (the device run), else CPU
_PROVIDER = _provider()


def _graph(path):
    import onnx

    return onnx.load(str(path))


def test_fp16_file_is_hashed_recorded_and_keeps_io_types(tiny_fp16_bundle):
    import onnx

    root = tiny_fp16_bundle("bert", "token-classification")
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    entry = manifest["files"][FP16_FILE]
    assert entry["sha256"] == file_sha256(root / FP16_FILE)
    assert entry["bytes"] == (root / FP16_FILE).stat().st_size
    record = manifest["fp16"]
    assert record["keep_io_types"] is True and record["file"] == FP16_FILE
    check = record["validation"]
    assert check["provider"] == _PROVIDER and ("note" in check) == (_PROVIDER == "CPUExecutionProvider")
    assert set(check["gates"]) == {"token_agreement"}
    assert check["figures"]["token_agreement"] >= check["gates"]["token_agreement"]
    assert np.isfinite(check["figures"]["max_abs_diff"])

    graph = _graph(root / FP16_FILE).graph
    assert {i.name: i.type.tensor_type.elem_type for i in graph.input} == dict.fromkeys(
        ("input_ids", "attention_mask", "token_type_ids"), onnx.TensorProto.INT64
    )
    assert [o.type.tensor_type.elem_type for o in graph.output] == [onnx.TensorProto.FLOAT]
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in graph.initializer)
    # the GPU graph keeps SkipLayerNormalization fused; model.onnx has it split for the CPU kernels
    ops = {n.op_type for n in graph.node}
    assert "SkipLayerNormalization" in ops and "Attention" in ops
    assert "SkipLayerNormalization" not in {n.op_type for n in _graph(root / FP32_FILE).graph.node}


def test_fp16_bundle_loads_and_a_tampered_file_is_refused(tiny_fp16_bundle, tmp_path):
    root = tiny_fp16_bundle("bert", "token-classification")
    assert load_bundle(root, "fp16").model_path.name == FP16_FILE
    copy = tmp_path / "b"
    shutil.copytree(root, copy)
    data = bytearray((copy / FP16_FILE).read_bytes())
    data[-10] ^= 0xFF
    (copy / FP16_FILE).write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(copy, "fp16")


def test_fp16_session_on_cpu_with_io_binding_matches_fp32(tiny_fp16_bundle):
    from bertrt.session import OnnxSession

    root = tiny_fp16_bundle("bert", "token-classification")
    fp32 = OnnxSession(root / FP32_FILE, 1, None, "logits")
    fp16 = OnnxSession(root / FP16_FILE, 1, "cpu", "logits", io_binding=True)
    assert fp16.device == "cpu" and fp32.device is None
    rng = np.random.default_rng(0)
    mask = np.ones((3, 11), np.int64)
    mask[1, 6:] = 0
    batch = {
        "input_ids": rng.integers(5, 90, (3, 11)),
        "attention_mask": mask,
        "token_type_ids": np.zeros((3, 11), np.int64),
    }
    a, b = fp32.run(batch), fp16.run(batch)
    assert b.dtype == np.float32 and b.shape == a.shape
    real = mask.astype(bool)
    assert np.abs(a - b)[real].max() < 0.02


def test_unfused_architecture_converts_and_validates(tiny_fp16_bundle):
    root = tiny_fp16_bundle("deberta-v2", "feature-extraction")
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    figures = manifest["fp16"]["validation"]["figures"]
    assert figures["cosine_min"] >= 0.995
    assert "Attention" not in {n.op_type for n in _graph(root / FP16_FILE).graph.node}


def test_summary_names_the_fp16_graph(tiny_fp16_bundle):
    from bertrt.export.cli import summary_table

    root = tiny_fp16_bundle("bert", "token-classification")
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    text = summary_table(manifest, str(root))
    where = _PROVIDER.removesuffix("ExecutionProvider")
    assert "fp16 size" in text and "fp16 vs torch" in text and f"on {where}" in text


def test_fp16_flag_reaches_export_model(monkeypatch, tmp_path):
    import argparse

    from bertrt.export import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert parser.parse_args(["m", "o", "--fp16"]).fp16 is True
    assert parser.parse_args(["m", "o"]).fp16 is False


def test_fp16_must_be_a_bool(tmp_path):
    from bertrt.export import export_model

    with pytest.raises(ExportError, match="fp16 must be True or False"):
        export_model(tmp_path / "none", tmp_path / "out", fp16="yes")
