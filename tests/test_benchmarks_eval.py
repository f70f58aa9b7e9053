"""Data loaders, IOB/entity alignment, metrics and the ``bertrt eval`` CLI (no fine-tuning here)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from benchmarks import data as bdata
from benchmarks import evaluate as bev
from bertrt.errors import InputError
from tests.conftest import CLS_LABELS, NER_LABELS

# ------------------------------------------------------------------------------------------ WNUT-16


def test_wnut16_counts_and_types():
    sentences = bdata.load_wnut16()
    assert len(sentences) == 2394
    types = bdata.entity_types(sentences)
    assert types == ["company", "facility", "geo-loc", "movie", "musicartist", "other", "person", "product",
                     "sportsteam", "tvshow"]
    assert all(len(s.tokens) == len(s.tags) > 0 for s in sentences)
    tags = [t for s in sentences for t in s.tags]
    assert tags.count("B-person") == 449 and tags.count("O") == 44007
    assert sentences[0].tokens[:3] == ("@paulwalk", "It", "'s")


def test_wnut16_split_is_seeded_disjoint_and_complete():
    splits = {name: bdata.load_wnut16(name) for name in ("train", "dev", "test")}
    assert {k: len(v) for k, v in splits.items()} == {"train": 1676, "dev": 239, "test": 479}
    assert bdata.load_wnut16("test") == splits["test"]  # same seed, same split
    everything = bdata.load_wnut16()
    index = {id(s): i for i, s in enumerate(everything)}
    assert len(index) == len(everything)
    # disjoint and complete: as multisets of sentences
    joined = sorted(map(repr, splits["train"] + splits["dev"] + splits["test"]))
    assert joined == sorted(map(repr, everything))
    other = bdata.split_dataset(everything, bdata.WNUT_FRACTIONS, seed=14)
    assert other["test"] != splits["test"]
    with pytest.raises(InputError, match="split"):
        bdata.load_wnut16("validation")


# ------------------------------------------------------------------------------------- IOB readers


def test_read_iob_wnut_and_conll_formats(tmp_path):
    wnut = tmp_path / "wnut.txt"
    wnut.write_text("Empire\tB-facility\nState\tI-facility\n.\tO\n\t\nNew York\tB-geo-loc\n", encoding="utf-8")
    got = bdata.read_iob(wnut)
    assert got == [bdata.Sentence(("Empire", "State", "."), ("B-facility", "I-facility", "O")),
                   bdata.Sentence(("New York",), ("B-geo-loc",))]

    conll = tmp_path / "conll.txt"
    conll.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    got = bdata.read_iob(conll)
    assert [s.tags for s in got] == [("B-ORG", "O"), ("B-PER",)]
    assert got[0].tokens == ("EU", "rejects")

    out = bdata.write_iob(got, tmp_path / "round.txt")
    assert bdata.read_iob(out) == got


def test_read_iob_rejects_bad_tags_and_empty_files(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("Paris\tLOCATION\nis\tO\nnice\n")
    with pytest.raises(InputError, match=r"2 malformed.*line 1.*LOCATION.*line 3"):
        bdata.read_iob(bad)
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="no sentences"):
        bdata.read_iob(empty)
    with pytest.raises(InputError, match="no such"):
        bdata.read_iob(tmp_path / "missing.txt")


def test_read_labelled_tsv_and_jsonl(tmp_path):
    tsv = tmp_path / "d.tsv"
    tsv.write_text("text\tlabel\ngreat movie\tpositive\nawful\tnegative\n")
    assert bdata.read_labelled(tsv) == [bdata.Example("great movie", "positive"), bdata.Example("awful", "negative")]
    jsonl = tmp_path / "d.jsonl"
    jsonl.write_text('{"text": "a\\tb", "label": 1}\n\n{"text": "c", "label": "neg"}\n')
    assert bdata.read_labelled(jsonl) == [bdata.Example("a\tb", "1"), bdata.Example("c", "neg")]
    broken = tmp_path / "b.jsonl"
    broken.write_text('{"text": "ok", "label": 0}\nnot json\n{"label": 1}\n')
    with pytest.raises(InputError, match=r"2 malformed.*line 2.*line 3"):
        bdata.read_labelled(broken)
    notab = tmp_path / "n.tsv"
    notab.write_text("no label here\n")
    with pytest.raises(InputError, match="line 1"):
        bdata.read_labelled(notab)


# ------------------------------------------------------------------------------------------ VADER

_MOVIES = "".join(f"{i}\t{r}\tmovie snippet {i}\r\n" for i, r in enumerate(
    [2.3, -1.5, 0.0, 0.1, -0.05, 3.9, -4.0, 1.0, -2.2, 0.4, -0.3, 0.0], 1))
_AMAZON = "1_1\t-0.9\tno picture\r\n1_2\t0\tneutral line\r\n1_3\t1.2\tworks fine\r\n"
_TWEETS = "1\t2.7\tSo lucky.\r\n2\t-1.1\tugh\r\n"
_NYT = "1_1\t0.4\tevents\r\n"


def _tar_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, payload in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buf.getvalue()


def _vader_archives(tmp_path: Path) -> tuple[Path, Path]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    inner = _tar_bytes({f"hutto_ICWSM_2014/{bdata.VADER_SETS[k]}": v.encode() for k, v in
                        {"movies": _MOVIES, "amazon": _AMAZON, "tweets": _TWEETS, "nyt": _NYT}.items()}
                       | {"hutto_ICWSM_2014/_README_.txt": b"readme"})
    inner_path = tmp_path / "hutto_ICWSM_2014.tar.gz"
    inner_path.write_bytes(inner)
    sdist = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(_tar_bytes({"vaderSentiment-3.3.2/setup.py": b"",
                                  "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner}))
    return inner_path, sdist


def test_vader_loader_labels_by_sign_and_drops_zero(tmp_path):
    inner, sdist = _vader_archives(tmp_path)
    for archive, cache in ((inner, tmp_path / "c1"), (sdist, tmp_path / "c2")):
        movies = bdata.load_vader("movies", archive=archive, cache_dir=cache)
        assert len(movies) == 10  # the two exact zeros are dropped
        assert movies[0] == bdata.Example("movie snippet 1", "positive")
        assert movies[1].label == "negative" and movies[3].text == "movie snippet 5"
        assert [e.label for e in movies].count("positive") == 5
        assert not any(e.text.endswith("\r") for e in movies)
    # once extracted, the cache is used without an archive (no download attempted)
    again = bdata.load_vader("amazon", cache_dir=tmp_path / "c2")
    assert again == [bdata.Example("no picture", "negative"), bdata.Example("works fine", "positive")]
    strict = bdata.load_vader("movies", neutral_band=0.5, archive=inner, cache_dir=tmp_path / "c3")
    assert len(strict) == 6 and all("snippet 4" not in e.text for e in strict)


def test_vader_split_and_errors(tmp_path):
    inner, _ = _vader_archives(tmp_path)
    parts = {s: bdata.load_vader("movies", s, archive=inner, cache_dir=tmp_path / "c") for s in ("train", "dev", "test")}
    assert [len(parts[s]) for s in ("train", "dev", "test")] == [8, 1, 1]
    assert sorted(e.text for p in parts.values() for e in p) == sorted(
        e.text for e in bdata.load_vader("movies", cache_dir=tmp_path / "c"))
    with pytest.raises(InputError, match="unknown VADER set"):
        bdata.load_vader("imdb", cache_dir=tmp_path / "c")
    # a cached sdist that is not PyPI's file is refused, not trusted
    _, sdist = _vader_archives(tmp_path / "fake")
    (tmp_path / "c5").mkdir()
    (tmp_path / "c5" / sdist.name).write_bytes(sdist.read_bytes())
    with pytest.raises(InputError, match="sha256"):
        bdata.fetch_vader(cache_dir=tmp_path / "c5")
    empty = tmp_path / "empty.tar.gz"
    empty.write_bytes(_tar_bytes({"x/readme.txt": b"nothing"}))
    with pytest.raises(InputError, match="GroundTruth"):
        bdata.fetch_vader(empty, tmp_path / "c4")


# -------------------------------------------------------------------------------------- alignment


def test_token_spans():
    text, spans = bev.token_spans(["@paulwalk", "loves", "New", "York"])
    assert text == "@paulwalk loves New York"
    assert [text[s:e] for s, e in spans] == ["@paulwalk", "loves", "New", "York"]


def test_entities_to_iob_hand_made():
    text, spans = bev.token_spans(["@paulwalk", "saw", "the", "Empire", "State", "Building", "in", "NYC", "LA"])
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
        "B-person", "O", "O", "B-facility", "I-facility", "I-facility", "O", "B-geo-loc", "B-geo-loc"]
    # order of the entity list does not matter; the earlier entity keeps a token claimed twice
    overlapping = [{"entity_group": "product", "start": at("State"), "end": at("in")},
                   {"entity_group": "facility", "start": at("Empire"), "end": at("State") + 2}]
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
    m = bev.classifier_metrics(["positive", "positive", "negative", "negative"],
                               ["positive", "negative", "negative", "negative"])
    assert m["accuracy"] == 75.0
    assert m["f1_positive"] == 66.67  # P 1, R 1/2
    assert m["f1_per_label"]["negative"] == 80.0  # P 2/3, R 1
    assert m["macro_f1"] == pytest.approx((200 / 3 + 80) / 2, abs=0.01)


def _oracle_ner(sentences):
    """A stand-in pipeline that returns the gold entities of the sentences (in order) by character offsets.

    (Keyed by position, not text: WNUT holds the same text twice with different annotations.)"""
    queue = iter(sentences)

    def pipe(texts):
        out = []
        for text in texts:
            s = next(queue)
            gold_text, spans = bev.token_spans(s.tokens)
            assert gold_text == text
            ents = []
            for (start, end), tag in zip(spans, s.tags):
                if tag.startswith("B-"):
                    ents.append({"entity_group": tag[2:], "start": start + 1 if end - start > 1 else start,
                                 "end": end})
                elif tag.startswith("I-"):
                    ents[-1]["end"] = end
            out.append(ents)
        return out

    return pipe


def test_evaluate_ner_round_trips_gold_on_real_wnut():
    test = bdata.load_wnut16("test")
    m = bev.evaluate_ner(_oracle_ner(test), test, chunk=100)
    assert m["micro"]["f1"] == 100.0 and m["sentences"] == 479
    assert m["tags"] == [list(s.tags) for s in test]
    assert set(m["per_type"]) <= set(bdata.entity_types(bdata.load_wnut16()))


def test_evaluate_classifier_maps_ids_and_rejects_unknown_labels():
    examples = [bdata.Example("good", "1"), bdata.Example("bad", "0"), bdata.Example("meh", "negative")]

    def pipe(texts):
        return [{"label": "positive" if t == "good" else "negative", "score": 0.9} for t in texts]

    m = bev.evaluate_classifier(pipe, examples, id2label={"0": "negative", "1": "positive"})
    assert m["accuracy"] == 100.0 and m["labels"] == ["positive", "negative", "negative"]
    with pytest.raises(InputError, match="neutral"):
        bev.evaluate_classifier(pipe, [bdata.Example("x", "neutral")], id2label={"0": "negative", "1": "positive"})
    with pytest.raises(InputError, match="returned"):
        bev.evaluate_classifier(lambda t: [], examples, id2label={"0": "negative", "1": "positive"})


# ------------------------------------------------------------------------------------------- CLI


def _tiny_iob(path: Path) -> Path:
    words = ["Maria", "loves", "Groningen", "and", "John", "Smith", "works", "at", "Acme", "Corp", "in", "New", "York", "City"]
    tags = ["B-PER", "O", "B-LOC", "O", "B-PER", "I-PER", "O", "O", "B-ORG", "I-ORG", "O", "B-LOC", "I-LOC",
            "I-LOC"]
    assert set(tags) <= set(NER_LABELS)
    sentences = [bdata.Sentence(tuple(words[i:j]), tuple(tags[i:j])) for i, j in ((0, 4), (4, 10), (10, 14), (0, 14))]
    return bdata.write_iob(sentences, path)


def test_eval_cli_ner_on_tiny_bundle(tiny_bundle, tiny_checkpoint, tmp_path, capsys):
    from bertrt.cli import main

    bundle = tiny_bundle("bert", "token-classification")
    data = _tiny_iob(tmp_path / "tiny.iob")
    out = tmp_path / "out"
    rc = main(["eval", str(bundle), str(data), "--pytorch", str(tiny_checkpoint("bert", "token-classification")),
               "--out", str(out), "--threads", "1"])
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
    rows = [("Maria loves Groningen.", CLS_LABELS[2]), ("The plot? Not so much.", CLS_LABELS[0]),
            ("note: take a note", CLS_LABELS[1]), ("He said: 'It's fine'", "2")]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"text": t, "label": lab}) + "\n" for t, lab in rows))
    out = tmp_path / "out"
    rc = main(["eval", str(bundle), str(data), "--precision", "fp32", "--pytorch",
               str(tiny_checkpoint("bert", "text-classification")), "--out", str(out)])
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
        return {"task": task, "dataset": f"{task}-{fp32}", "systems": {"bertrt-fp32": m(fp32), "bertrt-int8": m(int8)}}

    rows = bev.int8_targets([ev(bev.NER, 40.0, 38.5), ev(bev.CLS, 80.0, 79.2),
                             {"task": bev.CLS, "dataset": "x", "systems": {"bertrt-fp32": {"accuracy": 1}}}])
    assert [(r["delta"], r["met"]) for r in rows] == [(-1.5, False), (-0.8, True)]


# ------------------------------------------------------------------------- fine-tuning recipe (no training)


def test_recipe_hash_and_finished_marker(tmp_path):
    from benchmarks import finetune

    recipe = dict(finetune.RECIPES["ner"])
    digest = finetune.recipe_hash(recipe)
    assert digest == finetune.recipe_hash(dict(recipe))
    assert digest != finetune.recipe_hash(recipe | {"epochs": recipe["epochs"] + 1})
    folder = tmp_path / "wnut-ner"
    assert not finetune.is_finished(folder, digest)
    folder.mkdir()
    for name in ("model.safetensors", "config.json"):
        (folder / name).write_text("{}")
    (folder / "recipe.json").write_text(json.dumps({"recipe_hash": "something-else"}))
    assert not finetune.is_finished(folder, digest)
    (folder / "recipe.json").write_text(json.dumps({"recipe_hash": digest}))
    assert finetune.is_finished(folder, digest)


def test_ner_features_label_every_subtoken():
    from transformers import AutoTokenizer

    from benchmarks import finetune

    tokenizer = AutoTokenizer.from_pretrained(finetune.base_model_dir())
    labels = ["O", "B-person", "I-person", "B-geo-loc", "I-geo-loc"]
    label2id = {lab: i for i, lab in enumerate(labels)}
    sentence = bdata.Sentence(("@paulwalk", "loves", "#NewYork", "!"), ("B-person", "O", "B-geo-loc", "O"))
    feat = finetune._ner_features(tokenizer, [sentence], label2id, 64)[0]
    pieces = tokenizer.convert_ids_to_tokens(feat["input_ids"])
    got = [(p, labels[i] if i >= 0 else None, f) for p, i, f in zip(pieces, feat["labels"], feat["first"])]
    assert got[0] == ("[CLS]", None, False) and got[-1] == ("[SEP]", None, False)
    assert got[1:4] == [("@", "B-person", True), ("paul", "I-person", False), ("##walk", "I-person", False)]
    assert ("loves", "O", True) in got and got[-2] == ("!", "O", True)
    assert [g[1] for g in got if g[0] in ("new", "##yo", "##rk")] == ["I-geo-loc"] * 3
