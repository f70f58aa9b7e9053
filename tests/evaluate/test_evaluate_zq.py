"""``bertrt eval`` for question-answering (SQuAD JSONL: exact match and F1) and zero-shot-classification
(labelled data, the candidate labels being the data's labels or ``--candidate-labels``), on tiny bundles
(tests/tasks/zq_models.py), their figures checked against hand-computed values and the PyTorch reference."""

from __future__ import annotations

import json

import pytest

import bertrt
from bertrt import evaluate as bev
from bertrt.errors import InputError
from bertrt.evaluate import readers
from tests.tasks.zq_models import zq_bundle, zq_checkpoint

ZS, QA = "zero-shot-classification", "question-answering"
CONTEXT = "Maria works at Acme Corp. in Groningen. She flew to New York on Monday."
QUESTIONS = [
    ("Where does Maria work?", {"text": ["Acme Corp.", "Acme"], "answer_start": [15, 15]}),
    ("Where did she fly to?", ["New York"]),
    ("When did she fly?", {"text": ["Monday"], "answer_start": [64]}),
    ("Who is the mayor?", {"text": [], "answer_start": []}),
]


def _squad_file(path, rows=QUESTIONS):
    lines = [json.dumps({"question": q, "context": CONTEXT, "answers": a}) for q, a in rows]
    path.write_text("\n".join(lines) + "\n\n")  # a blank line at the end is skipped
    return path


def test_read_squad_takes_both_answer_layouts_and_names_bad_lines(tmp_path):
    items = readers.read_squad(_squad_file(tmp_path / "q.jsonl"))
    assert [e.answers for e in items] == [("Acme Corp.", "Acme"), ("New York",), ("Monday",), ()]
    assert items[0].input == {"question": "Where does Maria work?", "context": CONTEXT}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps({"question": "q?", "context": "c", "answers": {"text": [1]}})
        + "\n"
        + json.dumps({"question": "", "context": "c", "answers": []})
        + "\n{not json\n"
    )
    with pytest.raises(
        InputError, match=r"3 malformed line\(s\): line 1: 'answers' must be .*line 2: .*line 3"
    ):
        readers.read_squad(bad)
    with pytest.raises(InputError, match="no such question-answering data file"):
        readers.read_squad(tmp_path / "missing.jsonl")


def test_evaluate_qa_hand_computed(tmp_path):
    items = readers.read_squad(_squad_file(tmp_path / "q.jsonl"))
    answers = {
        "Where does Maria work?": "acme corp",  # EM 1 (case, punctuation), F1 1
        "Where did she fly to?": "to New York on Monday",  # EM 0, F1 2*0.4*1/1.4 = 4/7
        "When did she fly?": [{"answer": "Paris"}, {"answer": "Monday"}],  # top_k: the first counts: 0, 0
        "Who is the mayor?": "",  # no gold answer, empty prediction: 1, 1
    }

    def pipe(inputs):
        out = answers
        return [
            out[i["question"]] if isinstance(out[i["question"]], list) else {"answer": out[i["question"]]}
            for i in inputs
        ]

    m = bev.evaluate_qa(pipe, items)
    assert m["exact_match"] == 50.0
    assert m["f1"] == round(100 * (1 + 4 / 7 + 0 + 1) / 4, 2) == 64.29
    assert m["support"] == 4 and m["answers"] == ["acme corp", "to New York on Monday", "Paris", ""]


def test_eval_cli_question_answering(model_cache, tmp_path, capsys):
    from bertrt.cli import main

    bundle = zq_bundle(model_cache, "bert", QA)
    data = _squad_file(tmp_path / "squad.jsonl")
    out = tmp_path / "out"
    argv = ["eval", str(bundle), str(data), "--out", str(out), "--threads", "1"]
    assert main([*argv, "--pytorch", str(zq_checkpoint(model_cache, "bert", QA))]) == 0
    ev = json.loads((out / "eval.json").read_text())["evaluations"][0]
    assert ev["task"] == QA and ev["size"] == 4
    assert list(ev["systems"]) == ["pytorch", "bertrt-fp32", "bertrt-int8"]
    assert ev["agreement"]["bertrt-fp32 vs pytorch"] == 100.0  # the same answers as transformers
    fp32 = ev["systems"]["bertrt-fp32"]
    assert {k: fp32[k] for k in ("exact_match", "f1")} == {
        k: ev["systems"]["pytorch"][k] for k in ("exact_match", "f1")
    }
    # the figures are SQuAD's on the pipeline's own answers
    pipe = bertrt.pipeline(QA, str(bundle), precision="fp32")
    predicted = [pipe(question=q, context=CONTEXT)["answer"] for q, _ in QUESTIONS]
    gold = [list(e.answers) for e in readers.read_squad(data)]
    expected = bev.metrics.squad_metrics(gold, predicted)
    assert (fp32["exact_match"], fp32["f1"]) == (expected["exact_match"], expected["f1"])
    md = (out / "eval.md").read_text()
    assert "## Question answering" in md and "bertrt-int8 EM / F1" in md and "| SQuAD F1 |" in md
    assert "answer agreement" in capsys.readouterr().out

    # a TSV for a QA bundle, and --candidate-labels for a task with its own labels: one clear line each
    assert main([*argv, "--format", "tsv"]) == 1
    assert "needs a JSONL file of questions" in capsys.readouterr().err
    assert main([*argv, "--candidate-labels", "a"]) == 1
    assert "scores its own labels" in capsys.readouterr().err


def test_eval_zero_shot_scores_the_data_labels(model_cache, tmp_path):
    from bertrt.cli import main

    bundle = zq_bundle(model_cache, "bert", ZS)
    rows = [
        ("Maria flew to Paris on Monday.", "travel"),
        ("The soup was cold and salty.", "food"),
        ("The match ended in a draw.", "sport"),
        ("We booked a hotel by the sea.", "travel"),
        ("He ordered pasta and wine.", "food"),
    ]
    data = tmp_path / "zs.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    out = tmp_path / "out"
    argv = ["eval", str(bundle), str(data), "--out", str(out), "--threads", "1"]
    assert main([*argv, "--pytorch", str(zq_checkpoint(model_cache, "bert", ZS))]) == 0
    ev = json.loads((out / "eval.json").read_text())["evaluations"][0]
    assert ev["candidate_labels"] == ["food", "sport", "travel"] and ev["gold_labels_not_in_model"] == {}
    assert ev["agreement"]["bertrt-fp32 vs pytorch"] == 100.0
    fp32 = ev["systems"]["bertrt-fp32"]
    assert fp32["accuracy"] == ev["systems"]["pytorch"]["accuracy"]
    # hand-computed from the pipeline's own best labels
    pipe = bertrt.pipeline(ZS, str(bundle), precision="fp32")
    best = [r["labels"][0] for r in pipe([t for t, _ in rows], candidate_labels=["food", "sport", "travel"])]
    gold = [lab for _, lab in rows]
    assert fp32["accuracy"] == round(100 * sum(b == g for b, g in zip(best, gold)) / len(rows), 2)
    f1 = []
    for lab in ("food", "sport", "travel"):
        tp = sum(b == g == lab for b, g in zip(best, gold))
        n = best.count(lab) + gold.count(lab)
        f1.append(2 * tp / n if n else 0.0)
    assert fp32["macro_f1"] == round(100 * sum(f1) / 3, 2)
    assert "## Classification" in (out / "eval.md").read_text()

    # --candidate-labels: gold ids index them; a gold label outside them is warned about, not fatal
    ids = tmp_path / "ids.jsonl"
    ids.write_text(
        "".join(
            json.dumps({"text": t, "label": ["travel", "food", "sport"].index(lab)}) + "\n" for t, lab in rows
        )
    )
    given = ["--candidate-labels", "travel", "--candidate-labels", "food", "--candidate-labels", "sport"]
    assert main([*argv, "--precision", "fp32", *given]) == 0
    again = json.loads((out / "eval.json").read_text())["evaluations"][0]
    assert again["candidate_labels"] == ["travel", "food", "sport"]
    by_id = bev.evaluate_bundle(
        bundle, ids, precisions=("fp32",), candidate_labels=["travel", "food", "sport"]
    )
    assert by_id["systems"]["bertrt-fp32"]["accuracy"] == again["systems"]["bertrt-fp32"]["accuracy"]
    two = bev.evaluate_bundle(bundle, data, precisions=("fp32",), candidate_labels=["travel", "food"])
    assert two["gold_labels_not_in_model"] == {"sport": 1}


def test_zero_shot_results_score_their_best_label():
    def pipe(texts):
        return [{"sequence": t, "labels": ["b", "a"], "scores": [0.7, 0.3]} for t in texts]

    examples = [readers.Example("x", "b"), readers.Example("y", "a")]
    assert bev.evaluate_classifier(pipe, examples)["accuracy"] == 50.0


def test_tune_gates_question_answering_on_squad_data(model_cache, tmp_path):
    import shutil

    from bertrt.tune import tune

    bundle = shutil.copytree(zq_bundle(model_cache, "bert", QA), tmp_path / "qa")
    data = _squad_file(tmp_path / "squad.jsonl")
    result = tune(
        bundle,
        backend_names=["onnxruntime"],
        labelled=data,
        batch_sizes=(2,),
        repeats=1,
        threads=[1],
        write=False,
    )
    items = readers.read_squad(data)
    pipe = bertrt.pipeline(QA, str(bundle), precision="fp32")
    answers = [r["answer"] for r in pipe([e.input for e in items])]
    expected = bev.metrics.squad_metrics([list(e.answers) for e in items], answers)["f1"]
    assert result["labelled"] == {"items": 4, "reference_f1": expected}
    ran = [c for c in result["candidates"] if c["available"]]
    assert ran and all("labelled.f1_delta" in c["figures"] for c in ran)


def test_tune_runs_zero_shot_and_scores_the_data_labels(model_cache, tmp_path):
    import shutil

    from bertrt.tune import tune

    bundle = shutil.copytree(zq_bundle(model_cache, "bert", ZS), tmp_path / "zs")
    rows = [("Maria flew to Paris.", "travel"), ("The soup was cold.", "food"), ("A draw at home.", "sport")]
    data = tmp_path / "zs.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    quick = {"backend_names": ["onnxruntime"], "batch_sizes": (2,), "repeats": 1, "threads": [1]}
    quick["write"] = False
    assert tune(bundle, **quick)["candidates"][0]["figures"]["invariance.agreement"] == 1.0  # runs at all
    result = tune(bundle, labelled=data, **quick)
    pipe = bertrt.pipeline(ZS, str(bundle), precision="fp32")
    best = [r["labels"][0] for r in pipe([t for t, _ in rows], candidate_labels=["food", "sport", "travel"])]
    expected = round(100 * sum(b == lab for b, (_, lab) in zip(best, rows)) / 3, 2)
    assert result["labelled"] == {"items": 3, "reference_accuracy": expected}
