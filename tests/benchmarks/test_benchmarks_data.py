"""This repository's data sets (WNUT-16, VADER), scored end to end, and the fine-tuning recipe (no training)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from benchmarks import data as bdata
from bertrt.errors import InputError
from bertrt.evaluate import Example, Sentence, entity_types, evaluate_ner, token_spans

# ------------------------------------------------------------------------------------------ WNUT-16


def test_wnut16_counts_and_types():
    sentences = bdata.load_wnut16()
    assert len(sentences) == 2394
    types = entity_types(sentences)
    assert types == [
        "company",
        "facility",
        "geo-loc",
        "movie",
        "musicartist",
        "other",
        "person",
        "product",
        "sportsteam",
        "tvshow",
    ]
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


# ------------------------------------------------------------------------------------------ VADER

_MOVIES = "".join(
    f"{i}\t{r}\tmovie snippet {i}\r\n"
    for i, r in enumerate([2.3, -1.5, 0.0, 0.1, -0.05, 3.9, -4.0, 1.0, -2.2, 0.4, -0.3, 0.0], 1)
)
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
    inner = _tar_bytes(
        {
            f"hutto_ICWSM_2014/{bdata.VADER_SETS[k]}": v.encode()
            for k, v in {"movies": _MOVIES, "amazon": _AMAZON, "tweets": _TWEETS, "nyt": _NYT}.items()
        }
        | {"hutto_ICWSM_2014/_README_.txt": b"readme"}
    )
    inner_path = tmp_path / "hutto_ICWSM_2014.tar.gz"
    inner_path.write_bytes(inner)
    sdist = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    sdist.write_bytes(
        _tar_bytes(
            {
                "vaderSentiment-3.3.2/setup.py": b"",
                "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": inner,
            }
        )
    )
    return inner_path, sdist


def test_vader_loader_labels_by_sign_and_drops_zero(tmp_path):
    inner, sdist = _vader_archives(tmp_path)
    for archive, cache in ((inner, tmp_path / "c1"), (sdist, tmp_path / "c2")):
        movies = bdata.load_vader("movies", archive=archive, cache_dir=cache)
        assert len(movies) == 10  # the two exact zeros are dropped
        assert movies[0] == Example("movie snippet 1", "positive")
        assert movies[1].label == "negative" and movies[3].text == "movie snippet 5"
        assert [e.label for e in movies].count("positive") == 5
        assert not any(e.text.endswith("\r") for e in movies)
    # once extracted, the cache is used without an archive (no download attempted)
    again = bdata.load_vader("amazon", cache_dir=tmp_path / "c2")
    assert again == [Example("no picture", "negative"), Example("works fine", "positive")]
    strict = bdata.load_vader("movies", neutral_band=0.5, archive=inner, cache_dir=tmp_path / "c3")
    assert len(strict) == 6 and all("snippet 4" not in e.text for e in strict)


def test_vader_split_and_errors(tmp_path):
    inner, _ = _vader_archives(tmp_path)
    parts = {
        s: bdata.load_vader("movies", s, archive=inner, cache_dir=tmp_path / "c")
        for s in ("train", "dev", "test")
    }
    assert [len(parts[s]) for s in ("train", "dev", "test")] == [8, 1, 1]
    assert sorted(e.text for p in parts.values() for e in p) == sorted(
        e.text for e in bdata.load_vader("movies", cache_dir=tmp_path / "c")
    )
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


# ------------------------------------------------------------------- scoring on WNUT-16 (no model)


def _oracle_ner(sentences):
    """A stand-in pipeline that returns the gold entities of the sentences (in order) by character offsets.

    (Keyed by position, not text: WNUT holds the same text twice with different annotations.)"""
    queue = iter(sentences)

    def pipe(texts):
        out = []
        for text in texts:
            s = next(queue)
            gold_text, spans = token_spans(s.tokens)
            assert gold_text == text
            ents = []
            for (start, end), tag in zip(spans, s.tags):
                if tag.startswith("B-"):
                    ents.append(
                        {
                            "entity_group": tag[2:],
                            "start": start + 1 if end - start > 1 else start,
                            "end": end,
                        }
                    )
                elif tag.startswith("I-"):
                    ents[-1]["end"] = end
            out.append(ents)
        return out

    return pipe


def test_evaluate_ner_round_trips_gold_on_real_wnut():
    test = bdata.load_wnut16("test")
    m = evaluate_ner(_oracle_ner(test), test, chunk=100)
    assert m["micro"]["f1"] == 100.0 and m["sentences"] == 479
    assert m["tags"] == [list(s.tags) for s in test]
    assert set(m["per_type"]) <= set(entity_types(bdata.load_wnut16()))


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
    sentence = Sentence(("@paulwalk", "loves", "#NewYork", "!"), ("B-person", "O", "B-geo-loc", "O"))
    feat = finetune._ner_features(tokenizer, [sentence], label2id, 64)[0]
    pieces = tokenizer.convert_ids_to_tokens(feat["input_ids"])
    got = [(p, labels[i] if i >= 0 else None, f) for p, i, f in zip(pieces, feat["labels"], feat["first"])]
    assert got[0] == ("[CLS]", None, False) and got[-1] == ("[SEP]", None, False)
    assert got[1:4] == [("@", "B-person", True), ("paul", "I-person", False), ("##walk", "I-person", False)]
    assert ("loves", "O", True) in got and got[-2] == ("!", "O", True)
    assert [g[1] for g in got if g[0] in ("new", "##yo", "##rk")] == ["I-geo-loc"] * 3
