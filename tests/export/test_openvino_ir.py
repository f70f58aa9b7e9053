"""``export_model(openvino_ir=...)`` / ``bertrt export --openvino-ir``: OpenVINO IR files in the bundle.

One tiny BERT feature-extraction bundle is exported with both IRs. Tolerances: the IR sessions against
OpenVINO reading ``model.onnx`` (today's path: converted at load, int8 weights compressed by nncf at
load) within IR_TOL = 1e-5 (the same graph, the same nncf call and kernels: observed bit-identical);
against onnxruntime fp32 those of tests/runtime/test_openvino.py: fp32 1e-4 (raw outputs and pipeline
results), int8 max |Δ| 0.05 and cosine >= 0.999 per embedding.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from importlib import metadata

import numpy as np
import pytest

import bertrt
from bertrt import backends
from bertrt.bundle import FP32_FILE, MANIFEST, OPENVINO_FILE, OPENVINO_INT8_FILE, load_bundle
from bertrt.errors import BackendError, BundleError, ExportError, InputError
from bertrt.export import cli as export_cli
from bertrt.export import openvino_ir
from bertrt.export.pipeline import BUNDLE_FILES
from bertrt.session_openvino import OpenVinoSession
from tests.corpus import TRAIN_TEXT

# openvino and nncf are test dependencies (make setup installs the extra): a missing one fails, never skips.
import nncf  # noqa: F401  isort: skip
import openvino  # noqa: F401  isort: skip

TASK = "feature-extraction"
OUTPUT = "last_hidden_state"
IR_FILES = {
    OPENVINO_FILE: "model.openvino.bin",
    OPENVINO_INT8_FILE: "model.openvino-int8.bin",
}
IR_TOL = 1e-5
FP32_TOL = 1e-4
INT8_TOL = 0.05
TEXTS = list(TRAIN_TEXT)[:12]


@pytest.fixture(scope="module")
def ir_bundle(tiny_checkpoint, tmp_path_factory):
    """(folder, manifest) of the tiny BERT feature-extraction bundle exported with both IRs."""
    from bertrt.export import export_model

    out = tmp_path_factory.mktemp("bundle-openvino-ir") / "bundle"
    manifest = export_model(tiny_checkpoint("bert", TASK), out, task=TASK, openvino_ir="both")
    return out, manifest


def _padded_batch(pipe, texts=TEXTS[:5]):
    """A right-padded batch as the runtime builds it (bertrt.batching.pad_batch)."""
    from bertrt.batching import pad_batch

    return pad_batch(pipe.tokenizer.encode_batch(texts, truncate=True), pipe.tokenizer.pad_token_id)


def _max_diff(a, b, mask) -> float:
    """Max |a - b| over the real tokens (the pipelines never read padded positions)."""
    return float(np.abs(a - b)[mask.astype(bool)].max())


def _copy(folder, tmp_path):
    dst = tmp_path / "bundle"
    shutil.copytree(folder, dst)
    return dst


def test_ir_files_are_in_the_manifest_with_their_sha256(ir_bundle):
    folder, manifest = ir_bundle
    on_disk = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    assert on_disk["files"] == manifest["files"]
    for xml, weights in IR_FILES.items():
        for name in (xml, weights):
            data = (folder / name).read_bytes()
            assert manifest["files"][name] == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    # the int8 IR stores int8 weights: well under the fp32 IR's weights (tiny model: embeddings dominate)
    assert (
        manifest["files"]["model.openvino-int8.bin"]["bytes"]
        < 0.5 * manifest["files"]["model.openvino.bin"]["bytes"]
    )
    record = manifest["openvino_ir"]
    assert record["files"] == {
        "fp32": [OPENVINO_FILE, "model.openvino.bin"],
        "int8": [OPENVINO_INT8_FILE, "model.openvino-int8.bin"],
    }
    assert record["produced_by"] == {
        "openvino": metadata.version("openvino"),
        "nncf": metadata.version("nncf"),
    }
    assert "compress_to_fp16=False" in record["convert"]
    assert "INT8_SYM" in record["int8"]["weights"] and "GROUP_SIZE 32" in record["int8"]["activations"]
    figures = record["validation"]
    assert figures["fp32"]["max_abs_diff"] <= FP32_TOL and figures["fp32_atol"] == FP32_TOL
    assert figures["int8"]["cosine_min"] >= figures["int8_gates"]["cosine_min"] == 0.95
    # a re-export into the folder removes the IR files an earlier one wrote (no stale IR left behind)
    assert set(IR_FILES) | set(IR_FILES.values()) <= set(BUNDLE_FILES)


def test_fp32_ir_is_used_and_matches_the_onnx_path(ir_bundle):
    folder, _ = ir_bundle
    ov = bertrt.pipeline(TASK, folder, precision="fp32", backend="openvino")
    assert (ov.session.source, ov.bundle.model_path.name) == ("ir", OPENVINO_FILE)
    assert not ov.session.compressed_at_load and ov.session.inference_precision == "f32"
    onnx_path = OpenVinoSession(folder / FP32_FILE, precision="fp32", output_name=OUTPUT)
    assert onnx_path.source == "onnx"
    ref = bertrt.pipeline(TASK, folder, precision="fp32", backend="onnxruntime")
    batch = _padded_batch(ref)
    raw_ir, raw_onnx, raw_ort = ov.session.run(batch), onnx_path.run(batch), ref.session.run(batch)
    assert raw_ir.shape == raw_onnx.shape == raw_ort.shape
    assert _max_diff(raw_ir, raw_onnx, batch["attention_mask"]) <= IR_TOL
    assert _max_diff(raw_ir, raw_ort, batch["attention_mask"]) <= FP32_TOL
    for a, b in zip(ref(TEXTS), ov(TEXTS)):
        assert np.abs(np.asarray(a) - np.asarray(b)).max() <= FP32_TOL


def test_int8_ir_is_used_without_compressing_at_load(ir_bundle):
    folder, _ = ir_bundle
    ov = bertrt.pipeline(TASK, folder, precision="int8", backend="openvino")
    assert (ov.session.source, ov.bundle.model_path.name) == ("ir-int8", OPENVINO_INT8_FILE)
    assert not ov.session.compressed_at_load  # nncf ran at export, not here
    # today's path: model.onnx converted and its weights compressed by nncf at load
    at_load = OpenVinoSession(folder / FP32_FILE, precision="int8", output_name=OUTPUT)
    assert (at_load.source, at_load.compressed_at_load) == ("onnx", True)
    ref = bertrt.pipeline(TASK, folder, precision="fp32", backend="onnxruntime")
    batch = _padded_batch(ref)
    raw_ir, raw_at_load = ov.session.run(batch), at_load.run(batch)
    assert _max_diff(raw_ir, raw_at_load, batch["attention_mask"]) <= IR_TOL  # the same int8 weights
    raw_fp32 = ref.session.run(batch)
    assert 0 < _max_diff(raw_ir, raw_fp32, batch["attention_mask"]) <= INT8_TOL  # int8, not the fp32 weights
    for a, b in zip(ref(TEXTS), ov(TEXTS)):
        a, b = (np.asarray(x, dtype=np.float64).ravel() for x in (a, b))
        assert np.abs(a - b).max() <= INT8_TOL
        assert a @ b / np.linalg.norm(a) / np.linalg.norm(b) >= 0.999


def test_bf16_reads_the_fp32_ir(ir_bundle):
    folder, _ = ir_bundle
    if not backends.has_bf16():
        with pytest.raises(BackendError, match="bf16"):
            bertrt.pipeline(TASK, folder, precision="bf16", backend="openvino")
        return
    pipe = bertrt.pipeline(TASK, folder, precision="bf16", backend="openvino")
    assert (pipe.session.source, pipe.session.inference_precision) == ("ir", "bf16")


def test_onnxruntime_and_explicit_model_files(ir_bundle):
    folder, _ = ir_bundle
    assert bertrt.pipeline(TASK, folder, precision="int8").bundle.model_path.name == "model.int8.onnx"
    assert (
        bertrt.pipeline(TASK, folder, precision="fp32", backend="onnxruntime").bundle.model_path.name
        == FP32_FILE
    )
    # model_file= wins over the IR; an fp32 IR at int8 is compressed at load, an int8 IR refuses fp32
    pipe = bertrt.pipeline(TASK, folder, precision="int8", backend="openvino", model_file=OPENVINO_FILE)
    assert (pipe.session.source, pipe.session.compressed_at_load) == ("ir", True)
    with pytest.raises(InputError, match="int8-compressed weights; precision 'fp32'"):
        bertrt.pipeline(TASK, folder, precision="fp32", backend="openvino", model_file=OPENVINO_INT8_FILE)


@pytest.mark.parametrize(
    "name,how",
    [("model.openvino-int8.bin", "flip"), ("model.openvino.bin", "truncate"), (OPENVINO_FILE, "flip")],
)
def test_tampered_ir_is_a_bundle_error(ir_bundle, tmp_path, name, how):
    folder = _copy(ir_bundle[0], tmp_path)
    data = bytearray((folder / name).read_bytes())
    if how == "flip":
        data[len(data) // 2] ^= 0xFF
    else:
        del data[-64:]
    (folder / name).write_bytes(bytes(data))
    precision = "int8" if "int8" in name else "fp32"
    problem = "sha256 mismatch" if how == "flip" else f"{len(data)} bytes, manifest says {len(data) + 64}"
    with pytest.raises(BundleError, match=f"{name}: {problem}"):
        bertrt.pipeline(TASK, folder, precision=precision, backend="openvino")
    # the other backend does not read the IR: unaffected
    assert bertrt.pipeline(TASK, folder, precision=precision, backend="onnxruntime").backend == "onnxruntime"


def test_ir_not_recorded_is_not_used(ir_bundle, tmp_path, caplog):
    folder = _copy(ir_bundle[0], tmp_path)
    manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    for name in list(manifest["files"]):
        if name.startswith("model.openvino-int8"):
            del manifest["files"][name]
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with caplog.at_level("WARNING", logger="bertrt"):
        pipe = bertrt.pipeline(TASK, folder, precision="int8", backend="openvino")
    assert (pipe.session.source, pipe.session.compressed_at_load) == ("onnx", True)
    assert f"{OPENVINO_INT8_FILE} is not recorded in {MANIFEST}" in caplog.text
    assert load_bundle(folder, "fp32", backend="openvino").model_path.name == OPENVINO_FILE  # still recorded


def test_flag_without_openvino_is_an_export_error(tiny_checkpoint, tmp_path, monkeypatch):
    from bertrt.export import export_model

    checkpoint = tiny_checkpoint("bert", TASK)
    with pytest.raises(ExportError, match="openvino_ir must be one of none, fp32, int8, both"):
        export_model(checkpoint, tmp_path / "bad", task=TASK, openvino_ir="fp16")
    monkeypatch.setitem(sys.modules, "nncf", None)  # import nncf -> ImportError
    with pytest.raises(ExportError, match=r"int8 OpenVINO IR needs nncf.*pip install 'bertrt\[openvino\]'"):
        export_model(checkpoint, tmp_path / "no-nncf", task=TASK, openvino_ir="int8")
    openvino_ir.check_available("fp32")  # the fp32 IR does not need nncf
    monkeypatch.setitem(sys.modules, "openvino", None)
    for mode in ("fp32", "int8", "both"):
        with pytest.raises(
            ExportError, match=r"needs the openvino package.*pip install 'bertrt\[openvino\]'"
        ):
            export_model(checkpoint, tmp_path / mode, task=TASK, openvino_ir=mode)
    assert not any(tmp_path.iterdir())  # refused before any work: nothing written
    openvino_ir.check_available("none")  # the default needs neither


def test_cli_flag_and_summary(ir_bundle):
    parser = argparse.ArgumentParser()
    export_cli.add_arguments(parser)
    assert parser.parse_args(["ckpt", "out"]).openvino_ir == "none"
    assert parser.parse_args(["ckpt", "out", "--openvino-ir", "both"]).openvino_ir == "both"
    with pytest.raises(SystemExit):
        parser.parse_args(["ckpt", "out", "--openvino-ir", "fp16"])
    folder, manifest = ir_bundle
    row = next(
        line for line in export_cli.summary_table(manifest, str(folder)).splitlines() if "openvino IR" in line
    )
    assert f"openvino {metadata.version('openvino')}" in row and "fp32 max|Δ|" in row and "int8" in row
