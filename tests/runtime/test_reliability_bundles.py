"""Broken bundles give a BundleError naming the path and the problem; loading runs no bundle code (issue 5).

Missing files, unknown schema version, truncated ONNX, config sha256 and id2label/logits mismatch for
text-classification are covered in tests/runtime/test_runtime_bundle.py; here the remaining cases.
"""

from __future__ import annotations

import json
import pickle
import shutil
import sys

import pytest

import bertrt
from bertrt.bundle import MANIFEST
from bertrt.errors import BundleError, ModelFileNotFoundError


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
    with pytest.raises(BundleError, match=f"can emit id {rows}"):
        bertrt.pipeline(None, ner_copy, precision="fp32", verify=False)


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
