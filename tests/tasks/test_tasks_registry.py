"""The task registry and protocol: every task is one module; a new one is that module plus one registration.

The toy task (tests/toy_task.py, registered here with one ``register_task`` call) runs end to end through
``bertrt.pipeline``, ``bertrt predict --scale``, ``bertrt batch`` (its Arrow type), ``bertrt tune`` (its
gates and agreement) and the exporter's validation (its texts and output comparison) without any other
file knowing it.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import bertrt
from bertrt import cli_predict, tasks
from bertrt.cli import main
from bertrt.errors import InputError, TaskError
from bertrt.tasks.base import UNSET, WARM_UP_TEXT, Encoding, Option, Task

TEXTS = ["Maria loves Groningen.", "Paris"]


def _predict_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    cli_predict.add_arguments(parser)
    return parser


# -- the registry -----------------------------------------------------------------------------------------
def test_every_registered_task_implements_the_protocol():
    assert tasks.TASKS == (
        "feature-extraction",
        "fill-mask",
        "text-classification",
        "token-classification",
        "sentence-embedding",
        "zero-shot-classification",
        "question-answering",
        "sparse-embedding",
        "rerank",
    )
    for name in tasks.TASKS:
        task = tasks.get_task(name)
        assert isinstance(task, Task) and task.name == name
        assert task.auto_class.startswith("AutoModel")
        assert isinstance(task.output, str) and isinstance(task.pairs, bool)
        assert all(isinstance(o, Option) for o in task.options)
        assert len(set(task.option_names)) == len(task.options)
        for step in (
            "check_options",
            "check_head",
            "setup",
            "encode",
            "batch_output",
            "collect",
            "finish",
            "shape",
            "warm_up_text",
        ):
            assert callable(getattr(task, step))
        text = task.warm_up_text(SimpleNamespace(mask_token="<mask>"))
        if name == "question-answering":
            assert text == {"question": "Where did Maria fly from?", "context": WARM_UP_TEXT}
            continue
        assert text == (WARM_UP_TEXT.replace("Groningen", "<mask>") if name == "fill-mask" else WARM_UP_TEXT)


def test_exporter_head_classes_come_from_the_tasks():
    heads = {name: tasks.get_task(name).auto_class for name in tasks.TASKS}
    assert heads == {
        "feature-extraction": "AutoModel",
        "fill-mask": "AutoModelForMaskedLM",
        "text-classification": "AutoModelForSequenceClassification",
        "token-classification": "AutoModelForTokenClassification",
        "sentence-embedding": "AutoModel",
        "zero-shot-classification": "AutoModelForSequenceClassification",
        "question-answering": "AutoModelForQuestionAnswering",
        "sparse-embedding": "AutoModelForMaskedLM",
        "rerank": "AutoModelForSequenceClassification",
    }


@pytest.mark.parametrize(
    "alias, name",
    [
        ("ner", "token-classification"),
        ("sentiment-analysis", "text-classification"),
        ("embeddings", "feature-extraction"),
        ("default", "feature-extraction"),
        ("fill-mask", "fill-mask"),
    ],
)
def test_names_and_aliases_resolve(alias, name):
    assert tasks.normalize_task(alias) == name
    assert tasks.get_task(alias) is tasks.get_task(name)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(TaskError, match="unknown task 'nope'; expected one of feature-extraction, fill-mask"):
        tasks.get_task("nope")
    with pytest.raises(TaskError, match="must be a str"):
        tasks.normalize_task(3)


@pytest.mark.parametrize(
    "architecture, task",
    [
        ("BertForTokenClassification", "token-classification"),
        ("RobertaForSequenceClassification", "text-classification"),
        ("BertForMaskedLM", "fill-mask"),
        ("BertForPreTraining", "fill-mask"),
        ("AlbertForPreTraining", "fill-mask"),
        ("ElectraForPreTraining", "feature-extraction"),  # the discriminator: no MLM head
        ("ElectraForMaskedLM", "fill-mask"),  # the generator
        ("DebertaV2ForTokenClassification", "token-classification"),
        ("DistilBertModel", "feature-extraction"),
        ("BertForQuestionAnswering", "question-answering"),
        ("BertForMultipleChoice", None),
    ],
)
def test_head_suffixes(architecture, task):
    assert tasks.task_of_architecture(architecture) == task


def test_architecture_knowledge_lives_in_the_architecture_table_only():
    from bertrt.architectures import get_architecture

    assert not hasattr(tasks, "SUPPORTED_MODEL_TYPES")
    assert get_architecture("roberta").position_offset == 2 and not get_architecture("roberta").token_type_ids
    assert get_architecture("bert").token_type_ids and get_architecture("bert").position_offset == 0


def test_names_and_aliases_are_unique():
    with pytest.raises(TaskError, match="already registered: ner"):
        tasks.register_task("something", "tests.toy_task", aliases=("ner",))
    with pytest.raises(TaskError, match="built-in"):
        tasks.unregister_task("fill-mask")


# -- command-line flags from the options --------------------------------------------------------------------
def test_every_cli_option_is_a_predict_flag():
    parser = _predict_parser()
    flags = parser._option_string_actions
    for name in tasks.TASKS:
        for option in tasks.get_task(name).options:
            assert (option.flag in flags) == (option.cli is not None), option.name
    # Accepted by the pipeline, not spelled on the command line (as before).
    assert "--truncation" not in flags and "--grouped-entities" not in flags


def test_predict_flags_keep_their_spelling():
    parser = _predict_parser()
    args = parser.parse_args(
        [
            "b",
            "--top-k",
            "all",
            "--targets",
            "a",
            "--targets",  # one value per list flag, repeated (issue 18 item 5)
            "b",
            "--ignore-labels",
            "--normalize",
            "--stride",
            "0",
            "--pooling",
            "mean",
        ]
    )
    assert args.top_k is None and args.targets == ["a", "b"] and args.ignore_labels == []
    assert args.normalize is True and args.stride == 0 and args.pooling == "mean"
    assert not hasattr(parser.parse_args(["b"]), "top_k")  # only given flags reach the pipeline
    assert parser.parse_args(["b", "--top-k", "3"]).top_k == 3
    for bad in (["--top-k", "0"], ["--stride", "-1"], ["--aggregation-strategy", "median"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["b", *bad])


def test_option_without_cli_refuses_a_flag():
    with pytest.raises(TaskError):
        Option("x", bool, cli=None).argparse_kwargs()
    assert repr(UNSET) == "UNSET"


# -- Pipeline.shape / warm_up_text (the server's seams) ---------------------------------------------------
def test_shape_matches_a_direct_call(runtime_bundle):
    pipe = bertrt.pipeline(None, runtime_bundle("bert", "text-classification"), precision="fp32")
    pair = {"text": "Maria", "text_pair": "Groningen"}
    for inputs, options in (
        ("hi", {}),
        ("hi", {"top_k": 2}),
        (pair, {}),
        (["hi", "yo"], {}),
        (["hi"], {"top_k": None}),
    ):
        as_list = inputs if isinstance(inputs, list) else [inputs]
        assert pipe.shape(pipe(as_list, **options), inputs, **options) == pipe(inputs, **options)
    assert pipe.warm_up_text == WARM_UP_TEXT
    assert isinstance(pipe.shape(pipe(["hi"]), "hi"), list)  # transformers' legacy [dict]


def test_fill_mask_warm_up_holds_the_mask(runtime_bundle):
    pipe = bertrt.pipeline(None, runtime_bundle("bert", "fill-mask"), precision="fp32")
    text = pipe.warm_up_text
    assert pipe.tokenizer.mask_token in text and "Groningen" not in text
    assert pipe.shape(pipe([text]), text) == pipe(text)


# -- a new task: one module + one registry line -------------------------------------------------------------
@pytest.fixture
def toy_task():
    tasks.register_task("cls-logit", "tests.toy_task", aliases=("logits",), heads=("ForClsLogit",))
    try:
        yield tasks.get_task("cls-logit")
    finally:
        tasks.unregister_task("cls-logit")
    assert "cls-logit" not in tasks.TASKS and "logits" not in tasks.TASK_ALIASES


def _raw_logits(folder) -> np.ndarray:
    """The text-classification pipeline's unnormalized scores, in label order."""
    pipe = bertrt.pipeline("text-classification", folder, precision="fp32")
    rows = pipe(TEXTS, top_k=None, function_to_apply="none")
    label_ids = {label: i for i, label in pipe.id2label.items()}
    out = np.zeros((len(TEXTS), len(label_ids)))
    for r, row in enumerate(rows):
        for entry in row:
            out[r, label_ids[entry["label"]]] = entry["score"]
    return out


def test_toy_task_is_registered(toy_task):
    assert tasks.TASKS[-1] == "cls-logit" and tasks.normalize_task("logits") == "cls-logit"
    assert toy_task.auto_class == "AutoModelForSequenceClassification"  # what the exporter would load
    assert tasks.infer_task({"architectures": ["BertForClsLogit"]}) == "cls-logit"
    assert "--scale" in _predict_parser()._option_string_actions


def test_toy_task_through_the_pipeline(toy_task, runtime_bundle):
    folder = runtime_bundle("bert", "text-classification")
    pipe = bertrt.pipeline("logits", folder, precision="fp32")
    assert pipe.task == "cls-logit" and pipe.spec is toy_task and pipe.num_labels == 3
    got = pipe(TEXTS, scale=2.0)
    np.testing.assert_allclose([r["logits"] for r in got], 2.0 * _raw_logits(folder), atol=1e-5)
    assert pipe(TEXTS[0]) == pipe([TEXTS[0]])[0]
    with pytest.raises(InputError, match="unknown option.*cls-logit: top_k; accepted: scale"):
        pipe("x", top_k=2)
    with pytest.raises(InputError, match="scale must be a number"):
        pipe([], scale="big")


def test_toy_task_through_bertrt_predict(toy_task, runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "text-classification")
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    code = main(
        ["predict", str(folder), "--task", "cls-logit", "--precision", "fp32", "--scale", "2", *TEXTS]
    )
    out = capsys.readouterr().out
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    np.testing.assert_allclose(
        [line["result"]["logits"] for line in lines], 2.0 * _raw_logits(folder), atol=1e-5
    )


def test_default_steps_make_a_sequence_task():
    task = Task()
    assert task.check_options(None, {}) == {} and task.batch_output("x") == "x"
    assert task.shape([1], True, "t", {}) == 1 and task.shape([1, 2], False, ["a", "b"], {}) == [1, 2]
    assert task.finish(None, ["a"], Encoding([]), [np.ones(2)], {})[0].tolist() == [1, 1]
    with pytest.raises(InputError, match="accepted: none"):
        task.check_options(None, {"x": 1})


@pytest.fixture
def toy_bundle(toy_task, runtime_bundle, tmp_path):
    """A copy of the tiny classifier bundle whose bundle.json names the toy task: every command finds it."""
    source = runtime_bundle("bert", "text-classification")
    assert (source / "bundle.json").is_file(), f"{source}: the runtime fixture is a bertrt bundle"
    folder = shutil.copytree(source, tmp_path / "toy")
    manifest = json.loads((folder / "bundle.json").read_text())
    manifest["task"] = "cls-logit"
    (folder / "bundle.json").write_text(json.dumps(manifest))
    return folder


def test_toy_task_through_bertrt_batch(toy_bundle, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet

    import bertrt.batch

    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS))
    summary = bertrt.batch.run(
        toy_bundle, source, tmp_path / "out", task_options={"scale": 2.0}, progress=False, workers=1
    )
    assert summary.complete and summary.rows_written == len(TEXTS)
    table = pa.parquet.read_table(next((tmp_path / "out").glob("part-*.parquet")))
    assert str(table.schema.field("result").type).replace("<element:", "<item:") == (
        "struct<logits: list<item: float>>"
    )
    got = [row["logits"] for row in table.column("result").to_pylist()]
    expected = bertrt.pipeline(None, toy_bundle)(TEXTS, scale=2.0)  # the bundle's default precision
    np.testing.assert_allclose(got, [r["logits"] for r in expected], atol=1e-5)


def test_toy_task_through_bertrt_tune(toy_bundle, toy_task):
    from bertrt import tune

    entry = tune.tune(
        toy_bundle, texts=TEXTS * 4, backend_names=["onnxruntime"], precisions=["fp32"],
        batch_sizes=(4,), repeats=1, write=False,
    )  # fmt: skip
    assert entry["task"] == "cls-logit" and entry["gates"] == dict(toy_task.gates)
    (candidate,) = entry["candidates"]
    assert candidate["figures"] == {"accuracy.agreement": 1.0, "invariance.agreement": 1.0}
    assert candidate["passed"] and entry["winner"]["precision"] == "fp32"
    assert tune.compare("cls-logit", [{"logits": [0.0, 1.0]}], [{"logits": [2.0, 1.0]}]) == {"agreement": 0.0}


def test_toy_task_through_export_validation(toy_task, tiny_checkpoint, toy_bundle):
    transformers = pytest.importorskip("transformers")
    from bertrt.export import validate
    from tests.toy_task import TOY_TEXTS

    checkpoint = tiny_checkpoint("bert", "text-classification")
    model = transformers.AutoModelForSequenceClassification.from_pretrained(checkpoint).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    record = validate.validate_bundle(model, tokenizer, "cls-logit", toy_bundle / "model.onnx", None, 64)
    # the toy's own texts, no pair batch; its own figure beside max |diff|
    assert record["batches"] == {"padded batch": [len(TOY_TEXTS), record["batches"]["padded batch"][1]],
                                 "single": [1, record["batches"]["single"][1]]}  # fmt: skip
    assert record["output"] == "logits" and record["compared_positions"] == "all"
    assert record["fp32"]["logit_agreement"] == 1.0 and record["fp32"]["max_abs_diff"] <= 1e-4
