"""Bundle resolution: precision / model_file selection in bertrt, Optimum and onnx/-subfolder layouts,
and the typed errors for broken bundles: a BundleError naming the path and the problem; loading runs no
code from the bundle; every metadata problem is found at load, all in one error, and the server refuses
such a bundle."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys

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
        load_bundle(folder, precision="fp8")  # fp16 is a precision now (model.fp16.onnx)


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


# ---- a broken bundle is a BundleError naming the path and the problem; loading runs no bundle code -------


@pytest.fixture()
def ner_copy(runtime_bundle, tmp_path):
    folder = tmp_path / "bundle"
    shutil.copytree(runtime_bundle("bert", "token-classification"), folder)
    return folder


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_corrupt_onnx_names_the_file(ner_copy):
    model = ner_copy / "model.int8.onnx"
    model.write_bytes(b"\x08\x07garbage, not a protobuf" * 100)
    with pytest.raises(BundleError, match="sha256|bytes") as info:  # the manifest catches it first
        bertrt.pipeline(None, ner_copy)
    assert "model.int8.onnx" in str(info.value) and info.value.path == str(ner_copy)
    with pytest.raises(BundleError, match="onnxruntime cannot load") as info:  # and onnxruntime without it
        bertrt.pipeline(None, ner_copy, verify=False)
    assert info.value.path == str(model)


def test_missing_model_and_tokenizer_files(ner_copy):
    (ner_copy / "model.int8.onnx").unlink()
    with pytest.raises(ModelFileNotFoundError, match="ONNX files present: model.onnx") as info:
        bertrt.pipeline(None, ner_copy)
    assert info.value.path == str(ner_copy)
    (ner_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="required file is missing") as info:
        bertrt.pipeline(None, ner_copy, precision="fp32")
    assert info.value.path == str(ner_copy / "tokenizer.json")


def test_tokenizer_sha256_mismatch(ner_copy):
    _edit_json(ner_copy / "tokenizer.json", lambda t: t.update(truncation=None))  # same content, new bytes
    with pytest.raises(BundleError, match=r"tokenizer\.json: .*(sha256 mismatch|bytes)"):
        bertrt.pipeline(None, ner_copy, precision="fp32")


def test_tokenizer_larger_than_the_embedding(ner_copy):
    config = json.loads((ner_copy / "config.json").read_text())
    rows = config["vocab_size"]
    _edit_json(ner_copy / "config.json", lambda c: c.update(vocab_size=rows - 10))
    with pytest.raises(BundleError, match=rf"can emit id {rows - 1}.*vocab_size is {rows - 10}") as info:
        bertrt.pipeline(None, ner_copy, precision="fp32", verify=False)
    assert info.value.path == str(ner_copy / "tokenizer.json")
    # an added token past the last row, with config unchanged
    _edit_json(ner_copy / "config.json", lambda c: c.update(vocab_size=rows))
    _edit_json(
        ner_copy / "tokenizer.json",
        lambda t: t["added_tokens"].append(
            {
                "id": rows,
                "content": "<extra>",
                "single_word": False,
                "lstrip": False,
                "rstrip": False,
                "normalized": False,
                "special": True,
            }
        ),
    )
    # issue 18 item 11: a tokenizer with added tokens past the embedding (CamemBERT's <s>NOTUSED) loads;
    # a text producing such an id is refused naming the token, every other text runs
    pipe = bertrt.pipeline(None, ner_copy, precision="fp32", verify=False)
    assert pipe(["Maria loves Groningen.", "John"]) and pipe.tokenizer.vocab_size == rows
    with pytest.raises(InputError, match=rf"index\(es\) 1: token '<extra>' \(id {rows}\) has no row") as info:
        pipe(["fine", "not <extra> here", "fine"])
    assert info.value.items == (1,)
    with pytest.raises(InputError, match="'<extra>'"):
        pipe("<extra>", aggregation_strategy="first", stride=2)  # NER windows are checked the same way


def test_ner_label_count_must_match_the_logits(optimum_folder, tmp_path):
    folder = tmp_path / "labels"
    shutil.copytree(optimum_folder("bert", "token-classification"), folder)
    _edit_json(folder / "config.json", lambda c: c.update(id2label={"0": "O", "1": "B-PER"}))
    with pytest.raises(BundleError, match="outputs 9 labels but config.json id2label has 2") as info:
        bertrt.pipeline(None, folder, precision="fp32")
    assert info.value.path == str(folder / "model.onnx")


def test_unknown_format_in_manifest(ner_copy):
    _edit_json(ner_copy / MANIFEST, lambda m: m.update(format="other-tool"))
    with pytest.raises(BundleError, match="format is 'other-tool'") as info:
        bertrt.pipeline(None, ner_copy)
    assert info.value.path == str(ner_copy / MANIFEST)


class _Trap:
    """Unpickling this creates a marker file: proof that a pickle from the bundle was loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_loading_runs_no_code_from_the_bundle(ner_copy, tmp_path):
    markers = [tmp_path / f"ran-{i}" for i in range(4)]
    (ner_copy / "pytorch_model.bin").write_bytes(pickle.dumps(_Trap(markers[0])))
    (ner_copy / "training_args.bin").write_bytes(pickle.dumps(_Trap(markers[1])))
    (ner_copy / "modeling_evil.py").write_text(f"open({str(markers[2])!r}, 'w')\n")
    (ner_copy / "tokenizer.py").write_text(f"open({str(markers[3])!r}, 'w')\n")
    (ner_copy / "__init__.py").write_text(f"open({str(markers[3])!r}, 'w')\n")
    _edit_json(
        ner_copy / "config.json",
        lambda c: c.update(
            auto_map={"AutoModelForTokenClassification": "modeling_evil.Model"}, trust_remote_code=True
        ),
    )
    opened = []

    def audit(event, args):
        if event == "open" and isinstance(args[0], str) and args[0].startswith(str(ner_copy)):
            opened.append(args[0])
        elif event in ("pickle.find_class", "import") and opened is not None:
            name = args[0] if event == "import" else f"{args[0]}.{args[1]}"
            if "evil" in str(name) or str(ner_copy) in str(args):
                opened.append(f"{event}:{name}")

    sys.addaudithook(audit)  # hooks cannot be removed; this one only records paths under this tmp folder
    pipe = bertrt.pipeline(None, ner_copy, precision="fp32", verify=False)
    result = pipe("Maria loves Groningen.", aggregation_strategy="first", ignore_labels=[])
    assert result and not any(m.exists() for m in markers)
    names = {p.rsplit("/", 1)[-1] for p in opened}
    assert names <= {"bundle.json", "config.json", "tokenizer_config.json", "special_tokens_map.json"}, names
    assert str(ner_copy) not in sys.path and "modeling_evil" not in sys.modules


# ---- everything checkable about a bundle is checked at load, in one BundleError --------------------------


def _holed(labels: dict) -> dict:
    """id2label with id 3 missing and id 12 present (same number of labels)."""
    holed = {k: v for k, v in labels.items() if k != "3"}
    holed["12"] = labels["3"]
    return holed


def test_id2label_with_a_hole_fails_at_load(ner_copy):
    # Before: the bundle loaded, then every NER call raised an *input* error.
    _edit_json(ner_copy / MANIFEST, lambda m: m.update(id2label=_holed(m["id2label"])))
    with pytest.raises(BundleError) as info:
        load_bundle(ner_copy)
    assert info.value.path == str(ner_copy)
    assert (
        "bundle.json id2label must have the ids 0..8 (9 labels), found ids 0..12: missing 3, out of range 12"
    ) in str(info.value)
    with pytest.raises(BundleError, match="missing 3, out of range 12"):
        bertrt.pipeline("ner", ner_copy)


def test_id2label_hole_in_config_json_without_a_manifest(optimum_folder, tmp_path):
    # Before: text-classification silently labelled the class LABEL_3.
    folder = tmp_path / "cls"
    shutil.copytree(optimum_folder("bert", "text-classification"), folder)
    config = json.loads((folder / "config.json").read_text())
    labels = config["id2label"]
    config["id2label"] = {"0": labels["0"], "1": labels["1"], "3": labels["2"]}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        BundleError,
        match=r"config\.json id2label must have the ids 0\.\.2 \(3 labels\), found ids 0\.\.3: missing 2, "
        r"out of range 3",
    ):
        bertrt.pipeline(None, folder, precision="fp32")


@pytest.mark.parametrize(
    "id2label,needle",
    [
        ({"0": "O", "1": 7}, "bundle.json id2label labels must be strings: id 1: 7"),
        ({"0": "O", "x": "B-PER"}, "bundle.json id2label has ids that are not integers: 'x'"),
        ({"0": "O", "00": "B-PER"}, "bundle.json id2label lists id 0 more than once"),
        (["O", "B-PER"], "bundle.json id2label must be an object {id: label}, found list"),
        ({"1": "O", "2": "B-PER"}, "found ids 1..2: missing 0, out of range 2"),
        ({"-1": "O", "0": "B-PER"}, "found ids -1..0: missing 1, out of range -1"),
    ],
)
def test_malformed_id2label(ner_copy, id2label, needle):
    _edit_json(ner_copy / MANIFEST, lambda m: m.update(id2label=id2label))
    with pytest.raises(BundleError) as info:
        load_bundle(ner_copy)
    assert needle in str(info.value)


@pytest.mark.parametrize(
    "arch,max_length,needle",
    [
        (
            "bert",
            65,
            "bundle.json max_length 65 exceeds the 64 positions of the model "
            "(config.json max_position_embeddings 64)",
        ),
        (
            "roberta",
            63,
            "bundle.json max_length 63 exceeds the 62 positions of the model "
            "(config.json max_position_embeddings 64 - position offset 2 for RoBERTa)",
        ),
        ("bert", 2, "bundle.json max_length must be an int >= 3 (the special tokens and one token), found 2"),
        (
            "bert",
            "64",
            "bundle.json max_length must be an int >= 3 (the special tokens and one token), found '64'",
        ),
    ],
)
def test_manifest_max_length_is_checked_at_load(tiny_bundle, tmp_path, arch, max_length, needle):
    # Before: max_length 600 loaded, then a long text raised onnxruntime's raw InvalidArgument.
    folder = tmp_path / "bundle"
    shutil.copytree(tiny_bundle(arch, "token-classification"), folder)  # the exporter's bundle.json
    _edit_json(folder / MANIFEST, lambda m: m.update(max_length=max_length))
    with pytest.raises(BundleError) as info:
        bertrt.pipeline(None, folder)
    assert needle in str(info.value)


def test_every_problem_is_reported_at_once(ner_copy):
    def breakit(m):
        m.update(id2label=_holed(m["id2label"]), max_length=600, problem_type="ranking")
        m["id2label"]["0"] = None

    _edit_json(ner_copy / MANIFEST, breakit)
    with pytest.raises(BundleError) as info:
        load_bundle(ner_copy)
    message = str(info.value)
    assert "bundle metadata is invalid (4 problems): " in message
    for needle in (
        "labels must be strings: id 0: None",
        "missing 3, out of range 12",
        "max_length 600 exceeds the 64 positions",
        "bundle.json problem_type must be one of single_label_classification, multi_label_classification, "
        "regression or null, found 'ranking'",
    ):
        assert needle in message


@pytest.mark.parametrize(
    "model_max_length,needle",
    [
        (
            2,
            "tokenizer_config.json model_max_length must be an int >= 3 (the special tokens and one token), "
            "found 2",
        ),
        (-5, "found -5"),
        ("512", "found '512'"),
        (12.5, "found 12.5"),
    ],
)
def test_tokenizer_model_max_length_without_a_manifest(optimum_folder, tmp_path, model_max_length, needle):
    folder = tmp_path / "ner"
    shutil.copytree(optimum_folder("bert", "token-classification"), folder)
    _edit_json(folder / "tokenizer_config.json", lambda t: t.update(model_max_length=model_max_length))
    with pytest.raises(BundleError) as info:
        load_bundle(folder, precision="fp32")
    assert needle in str(info.value)
    _edit_json(folder / "tokenizer_config.json", lambda t: t.update(model_max_length=int(1e30)))  # no limit
    assert load_bundle(folder, precision="fp32").max_length == 64
    _edit_json(folder / "tokenizer_config.json", lambda t: t.update(model_max_length=1000.0))  # capped
    assert load_bundle(folder, precision="fp32").max_length == 64


def test_positions_must_hold_a_sequence(optimum_folder, tmp_path):
    folder = tmp_path / "ner"
    shutil.copytree(optimum_folder("roberta", "token-classification"), folder)
    _edit_json(folder / "config.json", lambda c: c.update(max_position_embeddings=4))
    with pytest.raises(
        BundleError,
        match=r"config\.json max_position_embeddings must be an int >= 5 \(position offset 2 for RoBERTa\), "
        r"found 4",
    ):
        load_bundle(folder, precision="fp32")


def test_manifest_input_and_output_names(ner_copy):
    _edit_json(ner_copy / MANIFEST, lambda m: m.update(input_names=["input_ids", "position_ids"]))
    with pytest.raises(BundleError, match=r"input_names lists 'position_ids', which the runtime cannot feed"):
        load_bundle(ner_copy)
    _edit_json(ner_copy / MANIFEST, lambda m: m.update(input_names=["attention_mask"], output_names=[]))
    with pytest.raises(BundleError) as info:
        load_bundle(ner_copy)
    assert "input_names has no 'input_ids'" in str(info.value)
    assert "output_names must be a non-empty list of names, found []" in str(info.value)
    # Names the runtime could feed, but not the graph's: caught once the session exists.
    _edit_json(ner_copy / MANIFEST, lambda m: m.update(input_names=["input_ids"], output_names=["logits"]))
    with pytest.raises(
        BundleError,
        match=r"does not match the manifest: bundle\.json input_names \['input_ids'\] "
        r"but the graph has \[.*'attention_mask'",
    ) as info:
        bertrt.pipeline(None, ner_copy)
    assert info.value.path.endswith(".onnx")
    # A model_file of the user's own is not the manifest's graph: not compared.
    shutil.copy(ner_copy / "model.onnx", ner_copy / "mine.onnx")
    assert bertrt.pipeline(None, ner_copy, model_file="mine.onnx").task == "token-classification"


def test_serve_refuses_to_start_on_a_broken_bundle(ner_copy):
    # Before: bertrt serve opened its port and answered every request 400, blaming the client.
    pytest.importorskip("fastapi")
    _edit_json(ner_copy / MANIFEST, lambda m: m.update(id2label=_holed(m["id2label"])))
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "bertrt.cli", "serve", f"ner={ner_copy}", "--port", "0", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert proc.returncode != 0
    assert "missing 3, out of range 12" in proc.stderr
    assert "listening on" not in proc.stderr


def test_each_file_is_hashed_once_and_the_content_hash_follows_the_model(
    optimum_folder, tmp_path, monkeypatch
):
    from bertrt import bundle as bundle_module

    folder = tmp_path / "bundle"
    _manifest_bundle(optimum_folder("bert", "feature-extraction"), folder)
    hashed = []
    real = bundle_module.file_sha256
    monkeypatch.setattr(bundle_module, "file_sha256", lambda path: hashed.append(path.name) or real(path))
    loaded = load_bundle(folder, precision="fp32")
    assert sorted(hashed) == sorted(n for n in loaded.runtime_files if n != MANIFEST)  # verified at load
    digest = loaded.content_hash
    assert loaded.content_hash == digest and len(hashed) == len(set(hashed))  # the verify's digests reused
    assert loaded.model_file == "model.onnx" and loaded.file_sha256("model.onnx") == real(
        folder / "model.onnx"
    )
    unverified = load_bundle(folder, precision="fp32", verify=False)
    assert unverified.content_hash == digest
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({**manifest, "created": "another time"}))
    assert load_bundle(folder, precision="fp32").content_hash == digest  # bundle.json is not the model


def test_read_metadata_reads_json_only(optimum_folder, tmp_path):
    from bertrt.bundle import read_metadata

    folder = tmp_path / "bundle"
    _manifest_bundle(optimum_folder("bert", "token-classification"), folder)
    (folder / "tokenizer.json").write_text("not a tokenizer")  # never read
    (folder / "model.onnx").write_bytes(b"not a model")  # never read nor hashed
    meta = read_metadata(folder)
    assert meta.task == "feature-extraction" and meta.root == folder
    assert meta.id2label == {
        str(k): v for k, v in json.loads((folder / "config.json").read_text())["id2label"].items()
    }
    with pytest.raises(BundleError, match="no such folder"):
        read_metadata(tmp_path / "missing")


def test_sentence_transformers_settings(optimum_folder, tmp_path):
    folder = tmp_path / "bundle"
    manifest = _manifest_bundle(optimum_folder("bert", "feature-extraction"), folder)
    record = {
        "modules": ["Transformer", "Pooling", "Dense", "Normalize"],
        "pooling": "cls",
        "normalize": True,
        "max_seq_length": 128,
        "dense": [{"in_features": 32, "out_features": 16, "bias": False, "activation_function": "x.Tanh"}],
        "prompts": {"query": "query: ", "passage": ""},
        "default_prompt_name": "query",
    }
    (folder / MANIFEST).write_text(json.dumps({**manifest, "sentence_transformers": record}))
    st = load_bundle(folder, precision="fp32").sentence_transformers
    assert (st.pooling, st.normalize, st.max_seq_length) == (("cls",), True, 128)
    assert (st.dense[0].in_features, st.dense[0].out_features, st.dense[0].bias) == (32, 16, False)
    assert st.prompts["query"] == "query: " and st.default_prompt_name == "query"
    assert load_bundle(folder, precision="fp32", verify=False).sentence_transformers == st
    for bad, match in (
        ({"pooling": 3}, "pooling must be"),
        ({"max_seq_length": 1}, "max_seq_length must be"),
        ({"dense": [{"out_features": 3}]}, "needs in_features"),
        ({"default_prompt_name": "nope"}, "default_prompt_name 'nope'"),
    ):
        (folder / MANIFEST).write_text(json.dumps({**manifest, "sentence_transformers": {**record, **bad}}))
        with pytest.raises(BundleError, match=match):
            load_bundle(folder, precision="fp32")
    (folder / MANIFEST).write_text(json.dumps(manifest))
    assert load_bundle(folder, precision="fp32").sentence_transformers is None
