"""bertrt.evaluate: readers, alignment, metrics, evaluate_bundle and the ``bertrt eval`` CLI.

Also what a demanding user runs into: an unwritable ``--out`` fails before the work; non-UTF-8 data files
name the file, line and byte offset; gold entity types / labels the model does not have are warned about
and reported; JSONL readers survive pathological JSON; a byte-order mark, CR line ends, a space-separated
line in a TAB file, the malformed-line count, data of the wrong kind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bertrt import evaluate as bev
from bertrt.errors import BertrtError, BundleError, InputError
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
        key = "micro" if task == "token-classification" else None
        m = (lambda v: {"micro": {"f1": v}}) if key else (lambda v: {"accuracy": v})
        return {
            "task": task,
            "dataset": f"{task}-{fp32}",
            "systems": {"bertrt-fp32": m(fp32), "bertrt-int8": m(int8)},
        }

    rows = bev.int8_targets(
        [
            ev("token-classification", 40.0, 38.5),
            ev("text-classification", 80.0, 79.2),
            {"task": "text-classification", "dataset": "x", "systems": {"bertrt-fp32": {"accuracy": 1}}},
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


def _iob(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    return readers.write_iob(
        [readers.Sentence(tuple(t for t, _ in s), tuple(g for _, g in s)) for s in sentences], path
    )


def _ner_data(path: Path, extra_type: str | None = None) -> Path:
    sentences = [
        [("Maria", "B-PER"), ("loves", "O"), ("Groningen", "B-LOC")],
        [("John", "B-PER"), ("Smith", "I-PER"), ("works", "O"), ("at", "O"), ("Acme", "B-ORG")],
    ]
    if extra_type:
        sentences.append([("the", "O"), ("Nile", f"B-{extra_type}"), ("flows", "O")])
        sentences.append([("Foo", f"B-{extra_type}"), ("Bar", f"I-{extra_type}"), ("Baz", f"B-{extra_type}")])
    return _iob(path, sentences)


# ----------------------------------------------------------------------- --out checked before the work


def _no_evaluation(monkeypatch) -> list:
    from bertrt.evaluate import cli as eval_cli

    calls: list = []
    monkeypatch.setattr(eval_cli, "evaluate_bundle", lambda *a, **k: calls.append(a) or {})
    return calls


def test_eval_out_that_cannot_be_a_folder_fails_before_any_work(tmp_path, monkeypatch, capsys):
    from bertrt.cli import main

    calls = _no_evaluation(monkeypatch)
    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    for out in (a_file, a_file / "sub"):
        assert main(["eval", str(tmp_path / "bundle"), str(tmp_path / "d.iob"), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert str(out) in err and "output folder" in err, err
    assert calls == []  # nothing was evaluated


def test_eval_out_in_a_read_only_folder_fails_before_any_work(tmp_path, monkeypatch, capsys):
    """chmod 0o500 where it binds; as root (who ignores modes, as in CI) /sys, which nobody can write."""
    from bertrt.cli import main

    calls = _no_evaluation(monkeypatch)
    root = os.name == "posix" and os.geteuid() == 0
    locked = Path("/sys") if root else tmp_path / "locked"
    if not root:
        locked.mkdir()
        locked.chmod(0o500)
    try:
        for out in (locked, locked / "bertrt-new"):
            assert main(["eval", str(tmp_path / "b"), str(tmp_path / "d.iob"), "--out", str(out)]) == 1
            err = capsys.readouterr().err
            assert str(out) in err and "cannot write" in err, err
    finally:
        if not root:
            locked.chmod(0o700)
    assert calls == []


def test_check_writable_creates_the_folder_and_leaves_no_probe(tmp_path):
    out = bev.check_writable(tmp_path / "a" / "b")
    assert out.is_dir() and list(out.iterdir()) == []
    (out / "eval.json").mkdir()
    with pytest.raises(InputError, match=r"eval\.json there is a folder"):
        bev.check_writable(out)


def test_write_results_is_utf8_whatever_the_locale(tmp_path):
    """eval.json / eval.md are UTF-8 even under an ASCII locale (LC_ALL=C without UTF-8 mode): a data set
    name or label with non-ASCII characters used to raise UnicodeEncodeError after all the work."""
    code = (
        "import sys; from pathlib import Path; from bertrt.evaluate import write_results; "
        "write_results({'dataset': 'Z\\u00fcrich \\u2713'}, '# Z\\u00fcrich \\u2713', Path(sys.argv[1]))"
    )
    env = {**os.environ, "LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONIOENCODING": ""}
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "eval.json").read_bytes().decode("utf-8")) == {"dataset": "Zürich ✓"}
    assert (tmp_path / "eval.md").read_bytes().decode("utf-8") == "# Zürich ✓\n"


# ------------------------------------------------------------------------------ non-UTF-8 data files


@pytest.mark.parametrize(
    ("name", "good", "reader"),
    [
        ("d.iob", b"Paris\tB-LOC\n", readers.read_iob),
        ("d.tsv", b"fine\tpositive\n", readers.read_labelled),
        ("d.jsonl", b'{"text": "fine", "label": 1}\n', readers.read_labelled),
    ],
)
def test_non_utf8_files_name_the_file_line_and_byte_offset(tmp_path, name, good, reader):
    path = tmp_path / name
    bad_line = good[:2] + b"\xe9" + good[2:]  # Latin-1 "é" in the middle of a word
    path.write_bytes(good + bad_line)
    offset = len(good) + bad_line.index(b"\xe9")
    with pytest.raises(InputError) as info:
        reader(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not valid UTF-8 at line 2 (byte offset {offset}, ")
    assert "0xe9" in msg and "save the file as UTF-8" in msg
    assert isinstance(info.value, BertrtError) and not isinstance(info.value, UnicodeDecodeError)


def test_utf16_file_is_named_as_such(tmp_path):
    path = tmp_path / "d.tsv"
    path.write_bytes("fine\tpositive\n".encode("utf-16"))
    with pytest.raises(InputError, match=r"line 1 \(byte offset 0.*UTF-16 byte-order mark"):
        readers.read_labelled(path)


def test_eval_cli_on_a_non_utf8_iob_file_says_which_file_and_line(tiny_bundle, tmp_path, capsys):
    from bertrt.cli import main

    data = tmp_path / "latin1.iob"
    data.write_bytes("Maria\tB-PER\nM\u00fcnchen\tB-LOC\n".encode("latin-1"))
    rc = main(["eval", str(tiny_bundle("bert", "token-classification")), str(data), "--out", str(tmp_path)])
    assert rc == 1
    err = capsys.readouterr().err
    assert f"{data}: not valid UTF-8 at line 2 (byte offset 13" in err and "UnicodeDecodeError" not in err


def test_benchmarks_lenient_reading_still_replaces_bad_bytes(tmp_path):
    path = tmp_path / "x.tsv"
    path.write_bytes(b"a\xffb\tpositive\n")
    assert list(readers.iter_lines(path, errors="replace")) == [(1, "a\ufffdb\tpositive")]


# ------------------------------------------------------------------------- BOM, CR line ends, odd lines


def test_a_utf8_byte_order_mark_is_not_part_of_the_first_line(tmp_path):
    bom = b"\xef\xbb\xbf"
    iob = tmp_path / "bom.iob"
    iob.write_bytes(bom + b"-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\n")
    assert readers.read_iob(iob) == [readers.Sentence(("EU",), ("B-ORG",))]
    tsv = tmp_path / "bom.tsv"
    tsv.write_bytes(bom + b"text\tlabel\r\ngreat\tpositive\r\n")
    assert readers.read_labelled(tsv) == [readers.Example("great", "positive")]
    jsonl = tmp_path / "bom.jsonl"
    jsonl.write_bytes(bom + b'{"text": "great", "label": 2}\n')
    assert readers.read_labelled(jsonl) == [readers.Example("great", "2")]
    # the offset of a bad byte still counts the BOM's three bytes
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(bom + b"a\xffb\tpositive\n")
    with pytest.raises(InputError, match=r"line 1 \(byte offset 4, byte column 5"):
        readers.read_labelled(bad)


def test_files_with_classic_mac_line_ends_are_refused_not_read_as_one_line(tmp_path):
    iob = tmp_path / "cr.iob"
    iob.write_bytes(b"Paris\tB-LOC\ris\tO\r\rnice\tO\r")  # used to be one token "Paris" tagged "O"
    with pytest.raises(InputError, match=r"cr\.iob.*(carriage return|\\r)"):
        readers.read_iob(iob)
    tsv = tmp_path / "cr.tsv"
    tsv.write_bytes(b"text\tlabel\rgreat\tpositive\rawful\tnegative\r")  # used to be one example
    with pytest.raises(InputError, match=r"cr\.tsv: its lines end in a lone carriage return"):
        readers.read_labelled(tsv)
    # one record with a final CR is fine, and so is a lone CR inside a text of a \n file
    one = tmp_path / "one.tsv"
    one.write_bytes(b"great\tpositive\r")
    assert readers.read_labelled(one) == [readers.Example("great", "positive")]


def test_iob_line_with_a_carriage_return_inside_is_malformed(tmp_path):
    iob = tmp_path / "mixed.iob"
    iob.write_bytes(b"Paris\tB-LOC\r\nis\tO\rnice\tO\n\nok\tO\n")
    with pytest.raises(InputError, match=r"1 malformed line\(s\): line 2: a carriage return"):
        readers.read_iob(iob)


def test_space_separated_line_in_a_tab_file_is_not_cut_to_its_first_word(tmp_path):
    iob = tmp_path / "mixed.iob"
    iob.write_text("Empire\tB-facility\nNew York B-geo-loc\nsays\tO\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"line 2: 3 space-separated columns in a TAB-separated file"):
        readers.read_iob(iob)
    # CoNLL files (space-separated from the first token line) keep their middle columns as before
    conll = tmp_path / "conll.txt"
    conll.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n", encoding="utf-8")
    assert readers.read_iob(conll)[0].tokens == ("EU", "rejects")


def test_malformed_line_count_is_the_true_count(tmp_path):
    """A guard on the reworked problem collection (first five shown, all counted)."""
    iob = tmp_path / "bad.iob"
    iob.write_text("".join(f"w{i}\tNOPE\n" for i in range(30)) + "ok\tO\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"^\S+: 30 malformed line\(s\): line 1: .*line 5: [^;]*$"):
        readers.read_iob(iob)
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("no tab\n" * 12, encoding="utf-8")
    with pytest.raises(InputError, match=r"12 malformed line\(s\)"):
        readers.read_labelled(tsv)


def test_tsv_header_after_leading_blank_lines_is_still_a_header(tmp_path):
    tsv = tmp_path / "h.tsv"
    tsv.write_text("\n\ntext\tlabel\ngreat\tpositive\n", encoding="utf-8")
    assert readers.read_labelled(tsv) == [readers.Example("great", "positive")]


@pytest.mark.parametrize("content", ["", "\n\n   \n\t\n", "\r\n\r\n"])
def test_empty_and_blank_only_files_say_so(tmp_path, content):
    for name, reader, what in (
        ("e.iob", readers.read_iob, "no sentences"),
        ("e.tsv", readers.read_labelled, "no labelled examples"),
        ("e.jsonl", readers.read_labelled, "no labelled examples"),
    ):
        path = tmp_path / name
        path.write_text(content, encoding="utf-8", newline="")
        with pytest.raises(InputError, match=what):
            reader(path)


def test_ndjson_is_jsonl_for_the_writer_and_evaluate_bundle(tiny_bundle, tmp_path):
    examples = [readers.Example("a\tb", "positive"), readers.Example("c", "negative")]
    path = readers.write_labelled(examples, tmp_path / "d.ndjson")
    assert json.loads(path.read_text(encoding="utf-8").splitlines()[0]) == {
        "text": "a\tb",
        "label": "positive",
    }
    assert readers.read_labelled(path) == examples
    ev = bev.evaluate_bundle(tiny_bundle("bert", "text-classification"), path, precisions=("fp32",))
    assert ev["size"] == 2 and ev["dataset"] == "d.ndjson"


# ----------------------------------------------------------------------------------- JSONL pathology


def test_jsonl_pathological_lines_are_malformed_lines_not_crashes(tmp_path):
    deep = '{"text": "a", "label": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    lines = [
        '{"text": "ok", "label": 0}',
        deep,  # RecursionError in json.loads
        '{"text": "b", "label": ' + "9" * 5000 + "}",  # ValueError: beyond Python's int digit limit
        '{"text": "\\ud800 lone", "label": 1}',  # not Unicode text: cannot be tokenized or written back
        '{"text": "c\u2028d", "label": 1}',  # U+2028 stays inside its line
    ]
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        readers.read_labelled(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: 3 malformed line(s): line 2: ")
    assert "nested too deeply" in msg and "line 3: " in msg and "line 4: " in msg and "surrogate" in msg
    path.write_text("\n".join([lines[0], lines[4]]) + "\n", encoding="utf-8")
    assert readers.read_labelled(path)[1] == readers.Example("c\u2028d", "1")


# -------------------------------------------------------------- gold labels the model does not have


def test_gold_entity_types_the_model_lacks_are_warned_and_reported(tiny_bundle, tmp_path, caplog):
    bundle = tiny_bundle("bert", "token-classification")
    data = _ner_data(tmp_path / "d.iob", extra_type="RIVER")
    with caplog.at_level(logging.WARNING, logger="bertrt.evaluate"):
        ev = bev.evaluate_bundle(bundle, data, precisions=("fp32",))
    assert ev["gold_labels_not_in_model"] == {"RIVER": 3}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "RIVER (3)" in warnings[0] and "score 0 F1" in warnings[0]
    assert "LOC" in warnings[0]  # the model's types are named
    assert ev["systems"]["bertrt-fp32"]["per_type"]["RIVER"]["f1"] == 0.0
    md = bev.render_markdown([ev])
    assert "**Warning:** gold entity types of d.iob that the model does not have" in md and "RIVER (3)" in md
    # the clean data set: nothing to report
    clean = bev.evaluate_bundle(bundle, _ner_data(tmp_path / "c.iob"), precisions=("fp32",))
    assert clean["gold_labels_not_in_model"] == {} and "**Warning:**" not in bev.render_markdown([clean])


def test_eval_cli_writes_the_missing_types_into_eval_json_and_eval_md(tiny_bundle, tmp_path, caplog):
    from bertrt.cli import main

    data = _ner_data(tmp_path / "d.iob", extra_type="RIVER")
    out = tmp_path / "out"
    bundle = tiny_bundle("bert", "token-classification")
    with caplog.at_level(logging.WARNING, logger="bertrt.evaluate"):
        assert main(["eval", str(bundle), str(data), "--precision", "fp32", "--out", str(out)]) == 0
    ev = json.loads((out / "eval.json").read_text(encoding="utf-8"))["evaluations"][0]
    assert ev["gold_labels_not_in_model"] == {"RIVER": 3}
    assert "RIVER (3)" in (out / "eval.md").read_text(encoding="utf-8")
    assert any("RIVER (3)" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_gold_types_none_of_which_the_model_has_are_an_error(tiny_bundle, tmp_path):
    data = _iob(tmp_path / "wnut.iob", [[("Maria", "B-person"), ("in", "O"), ("Paris", "B-geo-loc")]])
    with pytest.raises(InputError, match=r"none of the gold entity types \['geo-loc', 'person'\]"):
        bev.evaluate_bundle(tiny_bundle("bert", "token-classification"), data, precisions=("fp32",))


def test_gold_labels_not_in_model_counts_support_by_seqeval_chunks():
    sentences = [
        readers.Sentence(("a", "b", "c", "d"), ("B-X", "I-X", "I-X", "O")),
        readers.Sentence(("a", "b", "c"), ("I-X", "O", "B-PER")),  # IOB1-style I- start is a chunk
        readers.Sentence(("a", "b"), ("S-X", "E-Y")),
    ]
    id2label = dict(enumerate(["O", "B-PER", "I-PER"]))
    assert bev.gold_labels_not_in_model("token-classification", sentences, id2label) == {"X": 3, "Y": 1}
    assert bev.gold_labels_not_in_model("token-classification", sentences, {}) == {}


def test_classifier_gold_labels_the_model_lacks_are_warned_not_fatal(caplog):
    id2label = {0: "negative", 1: "positive"}
    examples = [
        readers.Example("good", "1"),
        readers.Example("bad", "negative"),
        readers.Example("meh", "neutral"),
        readers.Example("so-so", "neutral"),
    ]

    def pipe(texts):
        return [{"label": "positive" if t == "good" else "negative", "score": 0.9} for t in texts]

    with caplog.at_level(logging.WARNING, logger="bertrt.evaluate"):
        m = bev.evaluate_classifier(pipe, examples, id2label=id2label)
    assert m["gold_labels_not_in_model"] == {"neutral": 2}
    assert m["accuracy"] == 50.0 and m["f1_per_label"]["neutral"] == 0.0
    assert any("neutral (2)" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)


def test_classifier_bundle_without_id2label_maps_gold_ids_to_label_i(tiny_bundle, tmp_path):
    """A bundle without id2label predicts LABEL_i; gold ids used to be compared as "1" vs "LABEL_1"
    (0 accuracy, silently)."""
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle("bert", "text-classification"), bundle)
    for name in ("config.json", "bundle.json"):
        data = json.loads((bundle / name).read_text(encoding="utf-8"))
        data.pop("id2label", None)
        data.pop("label2id", None)
        data.get("files", {}).pop("config.json", None)  # the edited config no longer matches its sha256
        (bundle / name).write_text(json.dumps(data), encoding="utf-8")
    texts = ["Maria loves Groningen.", "The plot? Not so much.", "note: take a note"]
    from bertrt import pipeline

    predicted = [r["label"] for r in pipeline("text-classification", str(bundle), precision="fp32")(texts)]
    assert set(predicted) <= {f"LABEL_{i}" for i in range(len(CLS_LABELS))}
    gold = [readers.Example(t, p.removeprefix("LABEL_")) for t, p in zip(texts, predicted)]  # gold ids
    ev = bev.evaluate_bundle(bundle, gold, precisions=("fp32",))
    assert ev["systems"]["bertrt-fp32"]["accuracy"] == 100.0
    assert ev.get("gold_labels_not_in_model") == {}
    assert bev.bertrt_pipeline("text-classification", bundle, "fp32").id2label == {
        i: f"LABEL_{i}" for i in range(len(CLS_LABELS))
    }


# ---------------------------------------------------------------------------------- bundle and API misuse


def test_bundle_task_names_a_missing_folder_and_corrupt_json(tmp_path):
    with pytest.raises(BundleError, match="no such folder"):
        bev.bundle_task(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match=r"config\.json: not valid JSON"):
        bev.bundle_task(tmp_path)


def test_evaluate_bundle_refuses_loaded_data_of_the_wrong_kind(tiny_bundle):
    bundle = tiny_bundle("bert", "token-classification")
    with pytest.raises(
        InputError, match=r"data item 1 is Example, not Sentence: a token-classification bundle"
    ):
        bev.evaluate_bundle(
            bundle,
            [readers.Sentence(("a",), ("O",)), readers.Example("a", "O")],
            precisions=("fp32",),
        )


# ------------------------------------------------------------------------------------------ writers


def test_writers_refuse_what_would_not_read_back_and_write_nothing(tmp_path):
    cases = [
        (readers.Sentence(("a", "b"), ("O",)), "2 tokens and 1 tags"),  # zip() used to drop "b"
        (readers.Sentence(("a\tb",), ("O",)), "TAB"),  # read back as token "a"
        (readers.Sentence(("line\nbreak",), ("O",)), "line break"),
        (readers.Sentence((), ()), "0 tokens"),  # vanished on reading
        (readers.Sentence(("x",), ("LOC",)), "tag 'LOC'"),
    ]
    for sentence, why in cases:
        path = tmp_path / "w.iob"
        with pytest.raises(InputError, match=rf"w\.iob: sentence 1 cannot be written as IOB lines: .*{why}"):
            readers.write_iob([readers.Sentence(("ok",), ("O",)), sentence], path)
        assert not path.exists()
    for example, suffix in (
        (readers.Example("fine", "pos\tneg"), ".tsv"),  # read back as text "fine\tpos", label "neg"
        (readers.Example(" \n ", "positive"), ".tsv"),  # a blank text: a malformed line on reading
        (readers.Example("\ud800", "positive"), ".jsonl"),  # UnicodeEncodeError half-way through the file
    ):
        path = tmp_path / f"w{suffix}"
        with pytest.raises(InputError, match=r"example 0 cannot be written"):
            readers.write_labelled([example], path)
        assert not path.exists()
    kept = [readers.Example("a\u2028b  c\x85d", "positive")]
    assert readers.read_labelled(readers.write_labelled(kept, tmp_path / "k.jsonl")) == kept


def test_mixed_iob1_and_iob2_gold_is_scored_by_chunks():
    """A guard: IOB1 gold (an entity may start with I-) scores like its IOB2 equivalent."""
    iob1 = [["I-PER", "I-PER", "B-PER", "O", "I-LOC"]]
    iob2 = [["B-PER", "I-PER", "B-PER", "O", "B-LOC"]]
    assert bev.ner_metrics(iob1, iob2)["micro"]["f1"] == 100.0
    assert bev.ner_metrics(iob1, iob2)["micro"]["support"] == 3


def test_eval_scores_text_pairs_not_the_first_text_alone(tiny_bundle, tmp_path):
    import bertrt

    bundle = tiny_bundle("bert", "text-classification")
    pairs = [("A man sleeps.", "Nobody is awake."), ("A man sleeps.", "A person rests."), ("Hi", "there")]
    pipe = bertrt.pipeline(None, bundle, precision="fp32")
    expected = [r["label"] for r in pipe([{"text": a, "text_pair": b} for a, b in pairs])]
    data = tmp_path / "nli.jsonl"
    data.write_text(
        "".join(
            json.dumps({"text": a, "text_pair": b, "label": y}) + "\n" for (a, b), y in zip(pairs, expected)
        )
    )
    examples = readers.read_labelled(data)
    assert examples[0] == readers.Example("A man sleeps.", expected[0], "Nobody is awake.")
    assert readers.read_labelled(readers.write_labelled(examples, tmp_path / "back.jsonl")) == examples
    with pytest.raises(InputError, match="TSV cannot hold"):
        readers.write_labelled(examples, tmp_path / "back.tsv")
    ev = bev.evaluate_bundle(bundle, data, precisions=("fp32",), threads=1)
    assert ev["systems"]["bertrt-fp32"]["accuracy"] == 100.0
    seen = []
    bev.evaluate_classifier(
        lambda items: seen.extend(items) or [{"label": "positive", "score": 1.0}] * len(items), examples
    )
    assert seen == [{"text": a, "text_pair": b} for a, b in pairs]  # what the system is given


def test_eval_refuses_a_pytorch_reference_of_another_task_or_labels(
    tiny_bundle, tiny_checkpoint, tmp_path, capsys
):
    import shutil

    from bertrt.cli import main

    ner = tiny_bundle("bert", "token-classification")
    cls_checkpoint = tiny_checkpoint("bert", "text-classification")
    data = _tiny_iob(tmp_path / "tiny.iob")
    out = tmp_path / "out"
    argv = ["eval", str(ner), str(data), "--precision", "fp32", "--out", str(out), "--pytorch"]
    assert main([*argv, str(cls_checkpoint)]) == 1
    err = capsys.readouterr().err
    assert "a text-classification checkpoint" in err and "no reference for this token-classification" in err
    assert not (out / "eval.json").exists()
    relabelled = shutil.copytree(tiny_checkpoint("bert", "token-classification"), tmp_path / "relabelled")
    config = json.loads((relabelled / "config.json").read_text())
    config["id2label"] = {k: f"X-{v}" for k, v in config["id2label"].items()}
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (relabelled / "config.json").write_text(json.dumps(config))
    assert main([*argv, str(relabelled)]) == 1
    assert "are not the bundle's" in capsys.readouterr().err
