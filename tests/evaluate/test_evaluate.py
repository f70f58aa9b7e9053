"""bertrt.evaluate: readers, alignment, metrics, evaluate_bundle and the ``bertrt eval`` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bertrt import evaluate as bev
from bertrt.errors import BertrtError, InputError
from bertrt.evaluate import readers
from tests.builders import CLS_LABELS, NER_LABELS

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------------- IOB readers


def test_read_iob_wnut_and_conll_formats(tmp_path):
    wnut = tmp_path / "wnut.txt"
    wnut.write_text(
        "Empire\tB-facility\nState\tI-facility\n.\tO\n\t\nNew York\tB-geo-loc\n", encoding="utf-8"
    )
    got = readers.read_iob(wnut)
    assert got == [
        readers.Sentence(("Empire", "State", "."), ("B-facility", "I-facility", "O")),
        readers.Sentence(("New York",), ("B-geo-loc",)),
    ]

    conll = tmp_path / "conll.txt"
    conll.write_text(
        "-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n"
    )
    got = readers.read_iob(conll)
    assert [s.tags for s in got] == [("B-ORG", "O"), ("B-PER",)]
    assert got[0].tokens == ("EU", "rejects")

    out = readers.write_iob(got, tmp_path / "round.txt")
    assert readers.read_iob(out) == got


def test_read_iob_rejects_bad_tags_and_empty_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Paris\tLOCATION\nis\tO\nnice\n")
    with pytest.raises(InputError, match=r"2 malformed.*line 1.*LOCATION.*line 3"):
        readers.read_iob(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no sentences"):
        readers.read_iob(empty)
    with pytest.raises(InputError, match="no such"):
        readers.read_iob(tmp_path / "missing.txt")


def test_read_labelled_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabel\ngreat movie\tpositive\nawful\tnegative\n")
    assert readers.read_labelled(tsv) == [
        readers.Example("great movie", "positive"),
        readers.Example("awful", "negative"),
    ]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a\\tb", "label": 1}\n\n{"text": "c", "label": "neg"}\n')
    assert readers.read_labelled(jsonl) == [readers.Example("a\tb", "1"), readers.Example("c", "neg")]
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"text": "ok", "label": 0}\nnot json\n{"label": 1}\n')
    with pytest.raises(InputError, match=r"2 malformed.*line 2.*line 3"):
        readers.read_labelled(broken)
    notab = tmp_path / "n.tsv"
    notab.write_text("no label here\n")
    with pytest.raises(InputError, match="line 1"):
        readers.read_labelled(notab)


# -------------------------------------------------------------------------------------- alignment


def test_token_spans():
    text, spans = bev.token_spans(["@paulwalk", "loves", "New", "York"])
    assert text == "@paulwalk loves New York"
    assert [text[s:e] for s, e in spans] == ["@paulwalk", "loves", "New", "York"]


def test_entities_to_iob_hand_made():
    text, spans = bev.token_spans(
        ["@paulwalk", "saw", "the", "Empire", "State", "Building", "in", "NYC", "LA"]
    )
    at = text.index
    ents = [
        # starts inside the first token (WordPiece splits "@" off): the token still belongs to it
        {"entity_group": "person", "start": 1, "end": 9},
        {"entity_group": "facility", "start": at("Empire"), "end": at("Building") + 8},
        # two adjacent entities of the same type stay two entities
        {"entity_group": "geo-loc", "start": at("NYC"), "end": at("NYC") + 3},
        {"entity_group": "geo-loc", "start": at("LA"), "end": at("LA") + 2},
    ]
    assert bev.entities_to_iob(ents, spans) == [
        "B-person",
        "O",
        "O",
        "B-facility",
        "I-facility",
        "I-facility",
        "O",
        "B-geo-loc",
        "B-geo-loc",
    ]
    # order of the entity list does not matter; the earlier entity keeps a token claimed twice
    overlapping = [
        {"entity_group": "product", "start": at("State"), "end": at("in")},
        {"entity_group": "facility", "start": at("Empire"), "end": at("State") + 2},
    ]
    assert bev.entities_to_iob(overlapping, spans)[3:7] == ["B-facility", "I-facility", "B-product", "O"]
    # aggregation "none" output: B-/I- prefixes are dropped from ``entity``
    assert bev.entities_to_iob([{"entity": "I-person", "start": 0, "end": 4}], spans)[:2] == ["B-person", "O"]
    assert bev.entities_to_iob([], spans) == ["O"] * 9
    with pytest.raises(InputError, match="entity_group"):
        bev.entities_to_iob([{"start": 0, "end": 1}], spans)


# ---------------------------------------------------------------------------------------- metrics


def test_ner_metrics_hand_computed_and_equal_to_seqeval():
    from seqeval.metrics import f1_score, precision_score, recall_score

    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["B-ORG", "O"]]
    m = bev.ner_metrics(gold, pred)
    # entities: gold PER, LOC, ORG; predicted PER, ORG(wrong), ORG(right) -> tp 2, 3 predicted, 3 gold
    assert m["micro"] == {"precision": 66.67, "recall": 66.67, "f1": 66.67, "support": 3}
    assert m["per_type"]["PER"]["f1"] == 100.0
    assert m["per_type"]["LOC"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
    assert m["per_type"]["ORG"] == {"precision": 50.0, "recall": 100.0, "f1": 66.67, "support": 1}
    assert m["macro"]["f1"] == pytest.approx((100 + 0 + 200 / 3) / 3, abs=0.01)
    assert m["micro"]["f1"] == pytest.approx(100 * f1_score(gold, pred), abs=0.005)
    assert m["micro"]["precision"] == pytest.approx(100 * precision_score(gold, pred), abs=0.005)
    assert m["micro"]["recall"] == pytest.approx(100 * recall_score(gold, pred), abs=0.005)
    assert m["macro"]["f1"] == pytest.approx(100 * f1_score(gold, pred, average="macro"), abs=0.005)
    assert m["token_accuracy"] == pytest.approx(100 * 5 / 6, abs=0.01)
    assert m["predicted_entities"] == 3
    with pytest.raises(InputError):
        bev.ner_metrics(gold, pred[:1])


def test_classifier_metrics_hand_computed():
    m = bev.classifier_metrics(
        ["positive", "positive", "negative", "negative"], ["positive", "negative", "negative", "negative"]
    )
    assert m["accuracy"] == 75.0
    assert m["f1_positive"] == 66.67  # P 1, R 1/2
    assert m["f1_per_label"]["negative"] == 80.0  # P 2/3, R 1
    assert m["macro_f1"] == pytest.approx((200 / 3 + 80) / 2, abs=0.01)


def test_evaluate_classifier_maps_ids_and_rejects_unknown_labels():
    examples = [readers.Example("good", "1"), readers.Example("bad", "0"), readers.Example("meh", "negative")]

    def pipe(texts):
        return [{"label": "positive" if t == "good" else "negative", "score": 0.9} for t in texts]

    m = bev.evaluate_classifier(pipe, examples, id2label={"0": "negative", "1": "positive"})
    assert m["accuracy"] == 100.0 and m["labels"] == ["positive", "negative", "negative"]
    with pytest.raises(InputError, match="neutral"):
        bev.evaluate_classifier(
            pipe, [readers.Example("x", "neutral")], id2label={"0": "negative", "1": "positive"}
        )
    with pytest.raises(InputError, match="returned"):
        bev.evaluate_classifier(lambda t: [], examples, id2label={"0": "negative", "1": "positive"})


# ------------------------------------------------------------------------------------------- CLI


def _tiny_iob(path: Path) -> Path:
    words = [
        "Maria",
        "loves",
        "Groningen",
        "and",
        "John",
        "Smith",
        "works",
        "at",
        "Acme",
        "Corp",
        "in",
        "New",
        "York",
        "City",
    ]
    tags = [
        "B-PER",
        "O",
        "B-LOC",
        "O",
        "B-PER",
        "I-PER",
        "O",
        "O",
        "B-ORG",
        "I-ORG",
        "O",
        "B-LOC",
        "I-LOC",
        "I-LOC",
    ]
    assert set(tags) <= set(NER_LABELS)
    sentences = [
        readers.Sentence(tuple(words[i:j]), tuple(tags[i:j])) for i, j in ((0, 4), (4, 10), (10, 14), (0, 14))
    ]
    return readers.write_iob(sentences, path)


def test_eval_cli_ner_on_tiny_bundle(tiny_bundle, tiny_checkpoint, tmp_path, capsys):
    from bertrt.cli import main

    bundle = tiny_bundle("bert", "token-classification")
    data = _tiny_iob(tmp_path / "tiny.iob")
    out = tmp_path / "out"
    rc = main(
        [
            "eval",
            str(bundle),
            str(data),
            "--pytorch",
            str(tiny_checkpoint("bert", "token-classification")),
            "--out",
            str(out),
            "--threads",
            "1",
        ]
    )
    assert rc == 0
    report = json.loads((out / "eval.json").read_text())
    ev = report["evaluations"][0]
    assert ev["task"] == "token-classification" and ev["size"] == 4
    assert list(ev["systems"]) == ["pytorch", "bertrt-fp32", "bertrt-int8"]
    # fp32 ONNX must reproduce PyTorch's decisions on the same text and aggregation
    assert ev["systems"]["pytorch"]["predicted_entities"] > 0  # a random head tags plenty: a real comparison
    assert ev["agreement"]["bertrt-fp32 vs pytorch"] == 100.0
    assert ev["systems"]["bertrt-fp32"]["micro"] == ev["systems"]["pytorch"]["micro"]
    assert 0.0 <= ev["agreement"]["bertrt-int8 vs bertrt-fp32"] <= 100.0
    md = (out / "eval.md").read_text()
    assert "micro avg" in md and "macro avg" in md and "bertrt-int8 P / R / F1" in md
    assert "micro avg" in capsys.readouterr().out


def test_eval_cli_classifier_and_errors(tiny_bundle, tiny_checkpoint, tmp_path, capsys):
    from bertrt.cli import main

    bundle = tiny_bundle("bert", "text-classification")
    rows = [
        ("Maria loves Groningen.", CLS_LABELS[2]),
        ("The plot? Not so much.", CLS_LABELS[0]),
        ("note: take a note", CLS_LABELS[1]),
        ("He said: 'It's fine'", "2"),
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    out = tmp_path / "out"
    rc = main(
        [
            "eval",
            str(bundle),
            str(data),
            "--precision",
            "fp32",
            "--pytorch",
            str(tiny_checkpoint("bert", "text-classification")),
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    ev = json.loads((out / "eval.json").read_text())["evaluations"][0]
    assert list(ev["systems"]) == ["pytorch", "bertrt-fp32"]
    assert ev["agreement"] == {"bertrt-fp32 vs pytorch": 100.0}
    assert ev["systems"]["pytorch"]["accuracy"] == ev["systems"]["bertrt-fp32"]["accuracy"]
    assert ev["systems"]["pytorch"]["examples"] == 4

    # an IOB file for a classifier, and unknown gold labels: one clear line, exit code 1
    capsys.readouterr()
    assert main(["eval", str(bundle), str(_tiny_iob(tmp_path / "x.iob")), "--format", "iob"]) == 1
    assert "needs a TSV/JSONL file" in capsys.readouterr().err
    bad = tmp_path / "bad.tsv"
    bad.write_text("fine\tsplendid\n")
    assert main(["eval", str(bundle), str(bad), "--precision", "fp32"]) == 1
    assert "splendid" in capsys.readouterr().err


def test_int8_targets_and_markdown():
    def ev(task, fp32, int8):
        key = "micro" if task == bev.NER else None
        m = (lambda v: {"micro": {"f1": v}}) if key else (lambda v: {"accuracy": v})
        return {
            "task": task,
            "dataset": f"{task}-{fp32}",
            "systems": {"bertrt-fp32": m(fp32), "bertrt-int8": m(int8)},
        }

    rows = bev.int8_targets(
        [
            ev(bev.NER, 40.0, 38.5),
            ev(bev.CLS, 80.0, 79.2),
            {"task": bev.CLS, "dataset": "x", "systems": {"bertrt-fp32": {"accuracy": 1}}},
        ]
    )
    assert [(r["delta"], r["met"]) for r in rows] == [(-1.5, False), (-0.8, True)]


def test_line_readers_split_on_newline_only(tmp_path):
    """A lone CR, NEL or LINE SEPARATOR inside a text stays in the text; CRLF line ends are dropped."""
    tsv = tmp_path / "crlf.tsv"
    tsv.write_bytes("text\tlabel\r\nfine\rstill one text\tpositive\r\na\u2028b\x85c\tnegative\n".encode())
    assert readers.read_labelled(tsv) == [
        readers.Example("fine\rstill one text", "positive"),
        readers.Example("a\u2028b\x85c", "negative"),
    ]
    jsonl = tmp_path / "sep.jsonl"
    jsonl.write_bytes('{"text": "x\u2028y", "label": 1}\r\n{"text": "z", "label": 0}\n'.encode())
    assert readers.read_labelled(jsonl) == [readers.Example("x\u2028y", "1"), readers.Example("z", "0")]
    iob = tmp_path / "crlf.iob"
    iob.write_bytes(b"Paris\tB-LOC\r\nis\tO\r\n\r\nnice\tO\r\n")
    assert readers.read_iob(iob) == [
        readers.Sentence(("Paris", "is"), ("B-LOC", "O")),
        readers.Sentence(("nice",), ("O",)),
    ]
    assert [line for _, line in readers.iter_lines(tsv)][1] == "fine\rstill one text\tpositive"


def test_classifier_metrics_are_scikit_learns_figures():
    """The numpy-free classifier figures match scikit-learn's (when it is installed) on varied labels."""
    sk = pytest.importorskip("sklearn.metrics")
    import random

    rng = random.Random(0)
    for _ in range(300):
        labels = ["positive", "negative", "neutral", "x"][: rng.randint(1, 4)]
        gold = [rng.choice(labels) for _ in range(rng.randint(1, 30))]
        pred = [rng.choice(labels[: rng.randint(1, len(labels))]) for _ in gold]
        names = sorted(set(gold) | set(pred))
        m = bev.classifier_metrics(gold, pred)
        assert m["accuracy"] == bev.metrics.pct(sk.accuracy_score(gold, pred))
        assert m["macro_f1"] == bev.metrics.pct(
            sk.f1_score(gold, pred, labels=names, average="macro", zero_division=0)
        )
        per = sk.f1_score(gold, pred, labels=names, average=None, zero_division=0)
        assert m["f1_per_label"] == {lab: bev.metrics.pct(f) for lab, f in zip(names, per)}


def test_evaluate_bundle_on_a_tiny_bundle(tiny_bundle, tmp_path):
    bundle = tiny_bundle("bert", "token-classification")
    data = _tiny_iob(tmp_path / "tiny.iob")
    ev = bev.evaluate_bundle(bundle, data, precisions=("fp32",), threads=1)
    assert ev["task"] == "token-classification" and ev["dataset"] == "tiny.iob" and ev["size"] == 4
    assert list(ev["systems"]) == ["bertrt-fp32"] and ev["agreement"] == {} and ev["checkpoint"] is None
    m = ev["systems"]["bertrt-fp32"]
    assert m["sentences"] == 4 and m["tokens"] == 28 and "tags" not in m
    loaded = bev.evaluate_bundle(bundle, readers.read_iob(data), precisions=("fp32",), limit=2, name="two")
    assert loaded["dataset"] == "two" and loaded["size"] == 2
    with pytest.raises(InputError, match="unknown precision"):
        bev.evaluate_bundle(bundle, data, precisions=("fp16",))


def test_eval_writes_to_bertrt_results_in_the_working_directory(tiny_bundle, tmp_path, monkeypatch, capsys):
    import argparse

    from bertrt.cli import main
    from bertrt.evaluate import cli as eval_cli

    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    assert parser.parse_args(["b", "d"]).out == Path("bertrt-results") == bev.DEFAULT_OUT
    assert not bev.DEFAULT_OUT.is_absolute()

    data = _tiny_iob(tmp_path / "tiny.iob")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert (
        main(["eval", str(tiny_bundle("bert", "token-classification")), str(data), "--precision", "fp32"])
        == 0
    )
    assert json.loads((work / "bertrt-results" / "eval.json").read_text())["evaluations"][0]["size"] == 4
    assert (work / "bertrt-results" / "eval.md").is_file()
    assert not list((ROOT / "engine").rglob("eval.json"))  # never into the package
    assert "bertrt-results" in capsys.readouterr().err


def test_ner_evaluation_without_seqeval_names_the_extra(tiny_bundle, tmp_path, monkeypatch):
    data = _tiny_iob(tmp_path / "tiny.iob")
    monkeypatch.setitem(sys.modules, "seqeval", None)  # None in sys.modules: the import raises ImportError
    monkeypatch.setitem(sys.modules, "seqeval.metrics", None)
    with pytest.raises(BertrtError, match=r"pip install 'bertrt\[eval\]'"):
        bev.evaluate_bundle(tiny_bundle("bert", "token-classification"), data, precisions=("fp32",))


#: ``bertrt eval`` with only the runtime and seqeval importable. seqeval itself imports scikit-learn (its
#: one ``UndefinedMetricWarning``, and pip installs scikit-learn with it), so sklearn is refused to every
#: importer except seqeval and sklearn's own modules: bertrt must never import it.
LEAN_EVAL = r"""
import importlib.abc, json, sys

BLOCKED = ("torch", "transformers", "optimum", "tqdm", "benchmarks")
ALLOWED_SKLEARN_IMPORTERS = ("seqeval", "sklearn", "scipy")

def _importer():
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_globals.get("__name__", "")
        if not name.startswith(("importlib", "_frozen_importlib")):
            return name
        frame = frame.f_back
    return ""

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split(".")[0]
        if top in BLOCKED or name.startswith("bertrt.export"):
            raise ImportError(f"blocked by the import guard: {name}")
        if top == "sklearn" and not _importer().startswith(ALLOWED_SKLEARN_IMPORTERS):
            raise ImportError(f"blocked by the import guard: {name} (imported by {_importer()})")
        return None

sys.meta_path.insert(0, Blocker())
for name in list(sys.modules):
    if name.split(".")[0] in BLOCKED + ("sklearn",):
        del sys.modules[name]

from bertrt.cli import main
bundle, data, out, checkpoint = sys.argv[1:5]
rc = main(["eval", bundle, data, "--out", out, "--threads", "1"])
rc_pytorch = main(["eval", bundle, data, "--out", out, "--pytorch", checkpoint])
leaked = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED or n.startswith("bertrt.export"))
print(json.dumps({"rc": rc, "rc_pytorch": rc_pytorch, "leaked": leaked, "seqeval": "seqeval" in sys.modules}))
"""


def test_eval_runs_with_only_the_runtime_and_seqeval(tiny_bundle, tiny_checkpoint, tmp_path):
    bundle = tiny_bundle("bert", "token-classification")
    data = _tiny_iob(tmp_path / "tiny.iob")
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            LEAN_EVAL,
            str(bundle),
            str(data),
            str(out),
            str(tiny_checkpoint("bert", "token-classification")),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"rc": 0, "rc_pytorch": 1, "leaked": [], "seqeval": True}
    assert "pip install 'bertrt[export]'" in proc.stderr and "--pytorch" in proc.stderr
    ev = json.loads((out / "eval.json").read_text())["evaluations"][0]
    assert list(ev["systems"]) == ["bertrt-fp32", "bertrt-int8"] and ev["size"] == 4
    assert ev["systems"]["bertrt-fp32"]["micro"]["support"] == 10  # gold entities of the four sentences
