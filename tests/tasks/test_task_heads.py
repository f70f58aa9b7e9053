"""The task protocol's ``Task.head``: a task runs only on a graph that has its head.

Each task states the graph output it reads and that output's shape (``Task.head``: name and dimensions,
the last being hidden size, labels or vocabulary). A bundle whose graph lacks it is refused when the
pipeline is built, with a TaskError that says what the bundle is (``describe_bundle``); before, the
session fell back to the first output and only the rank was compared, so feature-extraction on an NER
bundle returned the logits as "embeddings", NER on an embeddings bundle labelled hidden dimensions
``LABEL_31`` and NER on a masked-LM bundle gave one "label" per vocabulary entry.
"""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import pytest

import bertrt
from bertrt.errors import BundleError, TaskError
from bertrt.session import OnnxSession
from bertrt.tasks import get_task
from bertrt.tasks.base import Head, describe_bundle, identify

TASKS = ("feature-extraction", "fill-mask", "text-classification", "token-classification")


@pytest.fixture(scope="module")
def bundles(runtime_bundle):
    """task -> the tiny BERT bundle exported for it."""
    return {task: runtime_bundle("bert", task) for task in TASKS}


def _vocab(folder) -> int:
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(folder / "tokenizer.json")).get_vocab_size(with_added_tokens=True)


# -- each task states its head --------------------------------------------------------------------------
def test_every_task_states_the_output_and_shape_it_needs():
    heads = {name: get_task(name).head for name in TASKS}
    assert heads == {
        "feature-extraction": Head("last_hidden_state", ("batch", "sequence", "hidden")),
        "fill-mask": Head("logits", ("batch", "sequence", "vocabulary")),
        "text-classification": Head("logits", ("batch", "labels")),
        "token-classification": Head("logits", ("batch", "sequence", "labels")),
    }
    assert str(heads["feature-extraction"]) == "last_hidden_state (batch, sequence, hidden)"


@pytest.mark.parametrize("task", TASKS)
def test_each_task_loads_on_its_own_bundle(bundles, task):
    pipe = bertrt.pipeline(task, bundles[task], precision="fp32")
    assert pipe.session.output_name == get_task(task).output
    assert describe_bundle(pipe).startswith(f"a {task} model (")


# -- the wrong task for the head is refused, saying what the bundle is ---------------------------------------
def test_feature_extraction_on_an_ner_bundle_is_refused(bundles):
    # Before: the session fell back to `logits` and pooling="mean" returned a 9-vector of NER logits.
    with pytest.raises(TaskError) as info:
        bertrt.pipeline("feature-extraction", bundles["token-classification"], precision="fp32")
    message = str(info.value)
    assert (
        "this bundle is a token-classification model (9 labels); "
        "feature-extraction needs last_hidden_state (batch, sequence, hidden)" in message
    )
    assert "logits ['batch_size', 'sequence_length', 9]" in message  # the graph's outputs
    assert message.startswith(str(bundles["token-classification"]))


def test_ner_on_an_embeddings_bundle_is_refused(bundles):
    # Before: last_hidden_state was read as logits, giving entities labelled LABEL_0..LABEL_31.
    with pytest.raises(TaskError) as info:
        bertrt.pipeline("ner", bundles["feature-extraction"], precision="fp32")
    message = str(info.value)
    assert "this bundle is a feature-extraction model (hidden size 32); " in message
    assert "token-classification needs logits (batch, sequence, labels)" in message
    assert "LABEL_" not in message


def test_ner_on_a_masked_lm_bundle_is_refused(bundles):
    # Same name (logits) and rank (3) as an NER head: the bundle's own task says it is a vocabulary.
    folder = bundles["fill-mask"]
    with pytest.raises(TaskError) as info:
        bertrt.pipeline("ner", folder, precision="fp32")
    assert (
        f"this bundle is a fill-mask model (a vocabulary of {_vocab(folder)}); "
        "token-classification needs logits (batch, sequence, labels)" in str(info.value)
    )


def test_ner_on_a_masked_lm_folder_that_does_not_say_its_task(optimum_folder, tmp_path):
    # No bundle.json, no architectures: what the bundle is comes from its outputs and widths (a logits
    # width of the whole vocabulary and no id2label is a vocabulary, not 405 labels).
    folder = tmp_path / "mlm"
    shutil.copytree(optimum_folder("bert", "fill-mask"), folder)
    config = json.loads((folder / "config.json").read_text())
    config.pop("architectures", None)
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(
        TaskError, match=r"this bundle is a fill-mask model \(a vocabulary of \d+\); token-cl"
    ):
        bertrt.pipeline("ner", folder, precision="fp32")
    assert bertrt.pipeline("fill-mask", folder, precision="fp32").task == "fill-mask"


def test_text_classification_on_an_ner_bundle_is_refused(bundles):
    with pytest.raises(TaskError) as info:
        bertrt.pipeline("text-classification", bundles["token-classification"], precision="fp32")
    assert (
        "this bundle is a token-classification model (9 labels); text-classification needs logits "
        "(batch, labels)" in str(info.value)
    )


@pytest.mark.parametrize("source", ["text-classification", "token-classification"])
def test_fill_mask_on_a_classifier_is_refused(bundles, source):
    labels = {"text-classification": 3, "token-classification": 9}[source]
    with pytest.raises(TaskError) as info:
        bertrt.pipeline("fill-mask", bundles[source], precision="fp32")
    assert (
        f"this bundle is a {source} model ({labels} labels); fill-mask needs logits "
        "(batch, sequence, vocabulary)" in str(info.value)
    )


def test_feature_extraction_on_a_masked_lm_bundle_is_refused(bundles):
    with pytest.raises(TaskError, match="fill-mask model .*; feature-extraction needs last_hidden_state"):
        bertrt.pipeline("feature-extraction", bundles["fill-mask"], precision="fp32")


def test_a_label_count_that_contradicts_the_head_is_still_a_bundle_error(optimum_folder, tmp_path):
    folder = tmp_path / "labels"
    shutil.copytree(optimum_folder("bert", "token-classification"), folder)
    config = json.loads((folder / "config.json").read_text())
    config["id2label"] = {"0": "O", "1": "B-PER"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match="outputs 9 labels but config.json id2label has 2"):
        bertrt.pipeline(None, folder, precision="fp32")


# -- the session reads the output by name, never another one ---------------------------------------------------
def test_session_has_no_fallback_to_the_first_output(bundles):
    model = bundles["token-classification"] / "model.onnx"
    with pytest.raises(BundleError, match=r"no output 'last_hidden_state' \(its outputs: logits \["):
        OnnxSession(model, threads=1, output_name="last_hidden_state")
    session = OnnxSession(model, threads=1)
    assert session.output_name is None and list(session.outputs) == ["logits"]
    with pytest.raises(RuntimeError, match="select_output"):
        session.run({})
    session.select_output("logits")
    assert session.output_name == "logits" and session.output_shape[-1] == 9


# -- describe_bundle: one description, from the bundle's task or from its outputs ---------------------------
def _fake(outputs, task=None, id2label=None, vocab=100):
    return SimpleNamespace(
        session=SimpleNamespace(outputs=outputs),
        bundle=SimpleNamespace(task=task, id2label=id2label or {}),
        tokenizer=SimpleNamespace(vocab_size=vocab),
    )


def test_describe_bundle_from_its_outputs_and_widths():
    hidden = {"last_hidden_state": ["batch", "seq", 384]}
    assert describe_bundle(_fake(hidden)) == "a feature-extraction model (hidden size 384)"
    assert describe_bundle(_fake({"logits": ["b", 1]})) == "a text-classification model (1 label)"
    assert describe_bundle(_fake({"logits": ["b", "s", 7]})) == "a token-classification model (7 labels)"
    assert describe_bundle(_fake({"logits": ["b", "s", 120]})) == "a fill-mask model (a vocabulary of 120)"
    # id2label decides between labels and vocabulary when it is there
    labelled = _fake({"logits": ["b", "s", 120]}, id2label={i: str(i) for i in range(120)})
    assert describe_bundle(labelled) == "a token-classification model (120 labels)"
    # the bundle's own task wins when its graph has that task's head
    own = _fake({"logits": ["b", "s", 7]}, task="fill-mask")
    assert identify(own).task == "fill-mask"
    # sentence-transformers style outputs: no task's head
    foreign = _fake({"token_embeddings": ["b", "s", 384], "sentence_embedding": ["b", 384]})
    assert identify(foreign).task is None
    assert describe_bundle(foreign) == (
        "a model with output(s) token_embeddings ['b', 's', 384], sentence_embedding ['b', 384], "
        "the head of no known task"
    )
