"""zero-shot-classification and question-answering through the other surfaces: keyword inputs and bad
input in the API, ``bertrt predict`` flags, ``POST /models/{name}/predict`` (the Inference API's shape,
as transformers' pipeline answers), the server's warm-up, ``bertrt batch``'s result type, and the
exporter's task inference (an NLI checkpoint exports as text-classification unless asked)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import bertrt
from bertrt.errors import InputError, InputTypeError
from bertrt.tasks import compatible_tasks
from tests.serve.fakes import over_http
from tests.tasks.zq_models import zq_bundle, zq_checkpoint

ZS, QA = "zero-shot-classification", "question-answering"
CONTEXT = "Maria works at Acme Corp. in Groningen. She flew to New York on Monday."


@pytest.fixture(scope="module")
def zs(model_cache):
    return bertrt.pipeline(ZS, zq_bundle(model_cache, "bert", ZS), precision="fp32")


@pytest.fixture(scope="module")
def qa(model_cache):
    return bertrt.pipeline(QA, zq_bundle(model_cache, "bert", QA), precision="fp32")


def test_zero_shot_options_are_checked(zs):
    with pytest.raises(InputError, match="at least one candidate label"):
        zs("text")
    with pytest.raises(InputError, match="at least one candidate label"):
        zs("text", candidate_labels=" , ")
    with pytest.raises(InputError, match="hypothesis_template"):
        zs("text", candidate_labels=["a"], hypothesis_template="no placeholder")
    built = bertrt.pipeline(ZS, zs.bundle.root, precision="fp32", candidate_labels=["a", "b"])
    assert built("text") == zs("text", candidate_labels="a, b")
    assert zs("text", candidate_labels=["a", "b"], multi_class=True) == zs(
        "text", candidate_labels=["a", "b"], multi_label=True
    )


def test_question_answering_input_forms(qa):
    one = qa(question="Where does Maria work?", context=CONTEXT)
    assert set(one) == {"score", "start", "end", "answer"}
    assert CONTEXT[one["start"] : one["end"]] == one["answer"]
    assert qa({"question": "Where does Maria work?", "context": CONTEXT}) == one
    assert qa([{"question": "Where does Maria work?", "context": CONTEXT}]) == [one]  # transformers: one
    both = qa(question=["Where does Maria work?", "Who flew?"], context=[CONTEXT, CONTEXT])
    assert len(both) == 2 and both[0] == one
    with pytest.raises(InputError, match="2 questions and 1 contexts"):
        qa(question=["a?", "b?"], context=[CONTEXT])
    with pytest.raises(InputTypeError, match="'context', a non-empty str"):
        qa({"question": "a?", "context": ""})
    with pytest.raises(InputTypeError, match="question= and context="):
        qa()
    with pytest.raises(InputError, match="top_k"):
        qa(question="a?", context=CONTEXT, top_k=0)
    with pytest.raises(InputError, match="max_seq_len"):
        qa(question="a?", context=CONTEXT, max_seq_len=10_000)


def _predict(*args, stdin=None):
    out = subprocess.run(
        [sys.executable, "-m", "bertrt.cli", "predict", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def test_predict_flags(zs, qa):
    lines = _predict(
        str(zs.bundle.root),
        "--precision",
        "fp32",
        "--candidate-labels",
        "travel",
        "--candidate-labels",
        "food",
        "--multi-label",
        "Maria flew to Paris.",
    )
    assert lines[0]["result"] == zs(
        "Maria flew to Paris.", candidate_labels=["travel", "food"], multi_label=True
    )
    line = json.dumps({"text": "Where does Maria work?", "text_pair": CONTEXT, "id": 3})
    (got,) = _predict(
        str(qa.bundle.root), "--precision", "fp32", "--jsonl", "--top-k", "3", stdin=line + "\n"
    )
    assert got["id"] == 3
    assert got["result"] == qa(question="Where does Maria work?", context=CONTEXT, top_k=3)


def _json(value):
    return json.loads(json.dumps(value))


def test_served_answers(zs, qa):
    async def zero_shot(client, app):
        body = {"inputs": "Maria flew to Paris.", "parameters": {"candidate_labels": ["travel", "food"]}}
        return (await client.post("/models/m/predict", json=body)).json()

    assert over_http(zs, zero_shot) == zs("Maria flew to Paris.", candidate_labels=["travel", "food"])

    async def answer(client, app):
        body = {
            "inputs": {"question": "Where does Maria work?", "context": CONTEXT},
            "parameters": {"top_k": 2},
        }
        many = {"inputs": [{"question": "Where does Maria work?", "context": CONTEXT}] * 2}
        return (
            (await client.post("/models/m/predict", json=body)).json(),
            (await client.post("/models/m/predict", json=many)).json(),
        )

    one, many = over_http(qa, answer)
    assert one == _json(qa(question="Where does Maria work?", context=CONTEXT, top_k=2))
    single = qa(question="Where does Maria work?", context=CONTEXT)
    assert many == [_json(single)] * 2


def test_batch_result_types(zs, qa):
    pytest.importorskip("pyarrow")
    assert "labels: list<item: string>" in str(zs.spec.result_spec(zs, {"candidate_labels": ["a"]}).type)
    assert str(qa.spec.result_spec(qa, {}).type).startswith("struct<score: double")


def test_nli_checkpoints_export_for_either_task():
    assert compatible_tasks("DebertaV2ForSequenceClassification")[:2] == ("text-classification", ZS)
    assert compatible_tasks("BertForQuestionAnswering")[0] == QA
    assert "feature-extraction" in compatible_tasks("BertForQuestionAnswering")


def test_squad_metrics():
    from bertrt.evaluate.metrics import squad_metrics, squad_normalize

    assert squad_normalize("The  Eiffel Tower!") == "eiffel tower"
    got = squad_metrics(
        [["the Eiffel Tower", "Eiffel"], ["Paris"], []], ["Eiffel Tower.", "in Paris France", ""]
    )
    # exact: 1, 0, 1 (no gold answer, empty prediction); f1: 1, 2*(1/3*1)/(1/3+1) = 0.5, 1
    assert got == {"exact_match": 66.67, "f1": 83.33, "support": 3}


def test_batch_answers_questions(qa, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    data = tmp_path / "qa.jsonl"
    data.write_text(
        json.dumps({"question": "Where does Maria work?", "context": CONTEXT}) + "\n", encoding="utf-8"
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "bertrt.cli",
            "batch",
            str(qa.bundle.root),
            str(data),
            str(tmp_path / "out"),
            "--precision",
            "fp32",
            "--text-field",
            "question",
            "--text-pair-field",
            "context",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    (part,) = (tmp_path / "out").glob("part-*.parquet")
    (row,) = pq.read_table(part).to_pylist()
    assert row["result"] == _json(qa(question="Where does Maria work?", context=CONTEXT))


@pytest.mark.parametrize("task", [ZS, QA])
def test_bench_reference_answers_one_text_as_a_list(model_cache, qa, zs, task):
    """bertrt bench warms each system up on one text: transformers' QA pipeline answers a one-item list
    with a bare dict, which the reference call turns back into a list (it was a KeyError)."""
    from bertrt.export.bench_reference import reference_call
    from bertrt.tasks import get_task

    pipe = qa if task == QA else zs
    texts = get_task(task).tune_sample(pipe, ["Maria flew to Paris on Monday.", "Hans eats pizza in Rome."])
    call = reference_call(task, zq_checkpoint(model_cache, "bert", task), threads=1)
    one, two = call(texts[:1], 1), call(texts, 2)
    assert isinstance(one, list) and len(one) == 1 and len(two) == 2
    assert get_task(task).signature(one[0]) == get_task(task).signature(two[0])
    ours = pipe(texts, batch_size=2, **get_task(task).reference_options)
    assert [get_task(task).signature(r) for r in ours] == [get_task(task).signature(r) for r in two]
