"""Issue 14 (reliability) for ``bertrt eval``: defects found by using it adversarially, each pinned here.

Item 8 of the issue: an unwritable ``--out`` fails before the work; non-UTF-8 data files name the file,
line and byte offset; gold entity types / labels the model does not have are warned about and reported;
JSONL readers survive pathological JSON. Plus what a demanding user runs into: a byte-order mark, CR line
ends, a space-separated line in a TAB file, the malformed-line count, data of the wrong kind, ...
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
from tests.builders import CLS_LABELS

ROOT = Path(__file__).resolve().parents[2]


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


# ------------------------------------------------------------------ item 8a: --out checked before the work


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


# ------------------------------------------------------------------------- item 8b: non-UTF-8 data files


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


# ------------------------------------------------------------------------------ item 8d: JSONL pathology


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


# --------------------------------------------------------- item 8c: gold labels the model does not have


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
    assert bev.gold_labels_not_in_model(bev.NER, sentences, id2label) == {"X": 3, "Y": 1}
    assert bev.gold_labels_not_in_model(bev.NER, sentences, {}) == {}


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

    predicted = [r["label"] for r in pipeline(bev.CLS, str(bundle), precision="fp32")(texts)]
    assert set(predicted) <= {f"LABEL_{i}" for i in range(len(CLS_LABELS))}
    gold = [readers.Example(t, p.removeprefix("LABEL_")) for t, p in zip(texts, predicted)]  # gold ids
    ev = bev.evaluate_bundle(bundle, gold, precisions=("fp32",))
    assert ev["systems"]["bertrt-fp32"]["accuracy"] == 100.0
    assert ev.get("gold_labels_not_in_model") == {}
    assert bev.bertrt_pipeline(bev.CLS, bundle, "fp32").id2label == {
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
