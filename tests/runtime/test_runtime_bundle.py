"""Bundle resolution: precision / model_file selection in bertrt, Optimum and onnx/-subfolder layouts,
and the typed errors for broken bundles."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import bertrt
from bertrt.bundle import MANIFEST, file_sha256, load_bundle, select_model_file
from bertrt.errors import BundleError, InputError, ModelFileNotFoundError, TaskError

TEXTS = ["Maria loves Groningen.", "John Smith works at Acme Corp. in New York City!"]
SIDE = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")


def _copy_side_files(src, dst):
    dst.mkdir(parents=True, exist_ok=True)
    for name in SIDE:
        if (src / name).exists():
            shutil.copy(src / name, dst / name)


@pytest.fixture()
def optimum_copy(optimum_folder, tmp_path):
    """A writable Optimum folder for the bert classifier, with model.onnx and model_quantized.onnx."""
    src = optimum_folder("bert", "text-classification")
    dst = tmp_path / "optimum"
    _copy_side_files(src, dst)
    shutil.copy(src / "model.onnx", dst / "model.onnx")
    shutil.copy(src / "model.onnx", dst / "model_quantized.onnx")
    return dst


def test_optimum_layout_precisions(optimum_copy):
    assert select_model_file(optimum_copy, "fp32").name == "model.onnx"
    assert select_model_file(optimum_copy, "int8").name == "model_quantized.onnx"
    bundle = load_bundle(optimum_copy)
    assert bundle.layout == "optimum" and bundle.task == "text-classification"
    pipe = bertrt.pipeline(None, optimum_copy)
    assert pipe.session.model_path.name == "model_quantized.onnx"
    assert pipe(TEXTS[0])[0]["label"] in {"negative", "neutral", "positive"}


def test_onnx_subfolder_layout(optimum_folder, tmp_path):
    src = optimum_folder("bert", "token-classification")
    repo = tmp_path / "repo"
    _copy_side_files(src, repo)
    (repo / "onnx").mkdir()
    shutil.copy(src / "model.onnx", repo / "onnx" / "model.onnx")
    shutil.copy(src / "model.onnx", repo / "onnx" / "model_q4.onnx")
    bundle = load_bundle(repo)
    assert bundle.layout == "onnx-subfolder" and bundle.model_path.name == "model_q4.onnx"
    assert load_bundle(repo, precision="fp32").model_path == repo / "onnx" / "model.onnx"
    shutil.copy(src / "model.onnx", repo / "onnx" / "model_int8.onnx")
    assert load_bundle(repo).model_path.name == "model_int8.onnx"  # int8 preferred over q4
    explicit = bertrt.pipeline("ner", repo, model_file="onnx/model_q4.onnx")
    reference = bertrt.pipeline("ner", repo, precision="fp32")
    assert explicit(TEXTS, aggregation_strategy="simple") == reference(TEXTS, aggregation_strategy="simple")


def test_nothing_matches_lists_present_files(optimum_folder, tmp_path):
    src = optimum_folder("bert", "fill-mask")
    folder = tmp_path / "only-fp32"
    _copy_side_files(src, folder)
    shutil.copy(src / "model.onnx", folder / "model.onnx")
    with pytest.raises(ModelFileNotFoundError, match=r"ONNX files present: model\.onnx") as info:
        load_bundle(folder, precision="int8")
    assert info.value.path == str(folder)
    with pytest.raises(ModelFileNotFoundError, match="model.onnx"):
        load_bundle(folder, model_file="nope.onnx")
    with pytest.raises(ModelFileNotFoundError, match="unknown precision"):
        load_bundle(folder, precision="fp16")


def test_missing_and_broken_files(optimum_folder, tmp_path):
    src = optimum_folder("bert", "fill-mask")
    folder = tmp_path / "broken"
    _copy_side_files(src, folder)
    shutil.copy(src / "model.onnx", folder / "model.onnx")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json"):
        load_bundle(folder, precision="fp32")
    shutil.copy(src / "tokenizer.json", folder / "tokenizer.json")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(BundleError, match="config.json.*not valid JSON"):
        load_bundle(folder, precision="fp32")
    shutil.copy(src / "config.json", folder / "config.json")
    data = (folder / "model.onnx").read_bytes()
    (folder / "model.onnx").write_bytes(data[: len(data) // 3])  # truncated ONNX
    with pytest.raises(BundleError, match="onnxruntime cannot load"):
        bertrt.pipeline(None, folder, precision="fp32")
    with pytest.raises(BundleError, match="no such folder"):
        load_bundle(tmp_path / "does-not-exist")
    with pytest.raises(BundleError, match="not a folder"):
        load_bundle(folder / "config.json")


def _manifest_bundle(src, folder):
    """A minimal bertrt bundle (bundle.json with sha256) around an fp32 graph."""
    _copy_side_files(src, folder)
    shutil.copy(src / "model.onnx", folder / "model.onnx")
    files = {p.name: {"sha256": file_sha256(p), "bytes": p.stat().st_size} for p in folder.iterdir()}
    manifest = {"schema_version": 1, "format": "bertrt-bundle", "task": "feature-extraction", "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest))
    return manifest


def test_manifest_checks(optimum_folder, tmp_path):
    src = optimum_folder("bert", "feature-extraction")
    folder = tmp_path / "bundle"
    manifest = _manifest_bundle(src, folder)
    bundle = load_bundle(folder, precision="fp32")
    assert bundle.layout == "bertrt" and bundle.task == "feature-extraction"

    config = json.loads((folder / "config.json").read_text())
    config["note"] = "edited"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="config.json"):
        load_bundle(folder, precision="fp32")
    shutil.copy(src / "config.json", folder / "config.json")

    model = folder / "model.onnx"
    raw = bytearray(model.read_bytes())
    raw[-1] ^= 0xFF  # same size, different content
    model.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match="sha256 mismatch"):
        load_bundle(folder, precision="fp32")
    shutil.copy(src / "model.onnx", model)

    (folder / MANIFEST).write_text(json.dumps({**manifest, "schema_version": 99}))
    with pytest.raises(BundleError, match="schema_version 99") as info:
        load_bundle(folder, precision="fp32")
    assert info.value.path.endswith(MANIFEST)


def test_task_checks(optimum_folder):
    folder = optimum_folder("bert", "feature-extraction")
    with pytest.raises(TaskError, match="unknown task"):
        bertrt.pipeline("translation", folder, precision="fp32")
    with pytest.raises(TaskError, match="feature-extraction model .*; text-classification needs logits"):
        bertrt.pipeline("text-classification", folder, precision="fp32")


def test_label_count_must_match_logits(optimum_folder, tmp_path):
    src = optimum_folder("bert", "text-classification")
    folder = tmp_path / "labels"
    _copy_side_files(src, folder)
    shutil.copy(src / "model.onnx", folder / "model.onnx")
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "only", "1": "two"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="3 labels"):
        bertrt.pipeline(None, folder, precision="fp32")


def test_bad_inputs_and_options_fail_before_work(optimum_folder):
    cls = bertrt.pipeline(None, optimum_folder("bert", "text-classification"), precision="fp32")
    with pytest.raises(TypeError, match="index 1.*NoneType"):
        cls(["ok", None])
    with pytest.raises(TypeError):
        cls(b"bytes")
    with pytest.raises(InputError, match="top_k"):
        cls("x", top_k=0)
    with pytest.raises(InputError, match="unknown option"):
        cls("x", pooling="mean")
    with pytest.raises(InputError, match="batch_size"):
        cls("x", batch_size=0)
    assert cls([]) == []
    fill = bertrt.pipeline(None, optimum_folder("bert", "fill-mask"), precision="fp32")
    with pytest.raises(InputError, match="index.* 1"):
        fill(["a [MASK] b", "no mask here"])
    with pytest.raises(InputError, match="target"):
        fill("a [MASK]", targets=[3])
    ner = bertrt.pipeline("ner", optimum_folder("bert", "token-classification"), precision="fp32")
    with pytest.raises(InputError, match="aggregation_strategy"):
        ner("x", aggregation_strategy="median")
    with pytest.raises(InputError, match="stride"):
        ner("x", aggregation_strategy="first", stride=64)
    with pytest.raises(InputError, match="execution provider"):
        bertrt.pipeline(
            "ner",
            optimum_folder("bert", "token-classification"),
            precision="fp32",
            providers=["NoSuchExecutionProvider"],
        )


def test_feature_extraction_options_and_tokenize(optimum_folder):
    pipe = bertrt.pipeline(None, optimum_folder("bert", "feature-extraction"), precision="fp32", threads=1)
    text = "An enchantingly Groningenesque evening."  # words the tiny vocabulary splits into pieces
    view = pipe.tokenize(text)
    assert set(view) == {"ids", "tokens", "offsets", "word_ids"}
    assert view["tokens"][0] == "[CLS]" and view["word_ids"][0] is None
    assert len(view["ids"]) == len(view["tokens"]) == len(view["offsets"])
    tokens = pipe(text)[0]
    mean = pipe(text, pooling="mean")
    np.testing.assert_allclose(mean, tokens.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(pipe(text, pooling="cls"), tokens[0], atol=1e-6)
    np.testing.assert_allclose(pipe(text, pooling="max"), tokens.max(axis=0), atol=1e-6)
    unit = pipe([text, "Paris"], pooling="mean", normalize=True)
    assert all(abs(np.linalg.norm(v) - 1) < 1e-5 for v in unit)
    words = pipe(text, pooling="words")
    assert words["words"] == ["An", "enchantingly", "Groningenesque", "evening", "."]
    assert words["offsets"][1] == (3, 15)
    assert words["vectors"].shape == (5, tokens.shape[-1])
    # a word split in sub-tokens gets the mean (or first / max) of its pieces
    pieces = [i for i, w in enumerate(view["word_ids"]) if w == 1]
    assert len(pieces) > 1, view["tokens"]
    np.testing.assert_allclose(words["vectors"][1], tokens[pieces].mean(axis=0), atol=1e-6)
    first = pipe(text, pooling="words", word_pooling="first")["vectors"][1]
    np.testing.assert_allclose(first, tokens[pieces[0]], atol=1e-6)
    with pytest.raises(InputError, match="pooling"):
        pipe(text, pooling="median")
