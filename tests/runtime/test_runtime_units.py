"""Stages in isolation: tokenizer (against transformers' fast tokenizer), post-processing (pure numpy)."""

from __future__ import annotations

import numpy as np
import pytest

from bertrt.architectures import ARCHITECTURES
from bertrt.errors import InputError
from bertrt.tasks import feature_extraction as embeddings
from bertrt.tasks import fill_mask
from bertrt.tasks import text_classification as classification
from bertrt.tokenize import TextTokenizer, clean_up_tokenization
from tests.builders import ARCHS, MAX_POS
from tests.corpus import PARITY_TEXTS


def _tokenizers(checkpoint):
    from transformers import AutoTokenizer

    ref = AutoTokenizer.from_pretrained(str(checkpoint))
    cfg = {"clean_up_tokenization_spaces": ref.clean_up_tokenization_spaces}
    specials = {"mask_token": ref.mask_token, "pad_token": ref.pad_token, "unk_token": ref.unk_token}
    ours = TextTokenizer(checkpoint / "tokenizer.json", ref.model_max_length, cfg, specials)
    return ref, ours


@pytest.mark.parametrize("arch", ARCHS)
def test_encoding_matches_transformers(arch, tiny_checkpoint):
    ref, ours = _tokenizers(tiny_checkpoint(arch, "token-classification"))
    for text in PARITY_TEXTS:
        expected = ref(text, truncation=True, return_offsets_mapping=True, return_special_tokens_mask=True)
        got = ours.encode_batch([text])[0]
        assert got.ids.tolist() == expected["input_ids"]
        assert [tuple(o) for o in got.offsets.tolist()] == [tuple(o) for o in expected["offset_mapping"]]
        assert got.special_tokens_mask.tolist() == expected["special_tokens_mask"]
        assert [None if w < 0 else w for w in got.word_ids.tolist()] == expected.word_ids()


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("stride", [0, 5, 20])
def test_windows_match_transformers_overflow(arch, stride, tiny_checkpoint):
    ref, ours = _tokenizers(tiny_checkpoint(arch, "token-classification"))
    long_text = PARITY_TEXTS[-1] + " Élodie 🍕 東京\tend"
    expected = ref(
        long_text,
        truncation=True,
        return_overflowing_tokens=True,
        stride=stride,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    windows = ours.encode_windows([long_text], stride=stride)[0]
    assert len(windows) == len(expected["input_ids"]) > 1
    for k, window in enumerate(windows):
        assert window.ids.tolist() == expected["input_ids"][k]
        assert len(window) <= MAX_POS
        assert [tuple(o) for o in window.offsets.tolist()] == [
            tuple(o) for o in expected["offset_mapping"][k]
        ]
        assert window.special_tokens_mask.tolist() == expected["special_tokens_mask"][k]
        assert [None if w < 0 else w for w in window.word_ids.tolist()] == expected.word_ids(k)


@pytest.mark.parametrize("arch", ARCHS)
def test_decode_matches_transformers(arch, tiny_checkpoint):
    ref, ours = _tokenizers(tiny_checkpoint(arch, "fill-mask"))
    for text in PARITY_TEXTS + ["don't you ? I 'm here , ok ."]:
        ids = ref(text)["input_ids"]
        for skip in (False, True):
            assert ours.decode(ids, skip_special_tokens=skip) == ref.decode(ids, skip_special_tokens=skip)
        assert ours.decode([ids[1]]) == ref.decode([ids[1]])
    wordpiece = ARCHITECTURES[arch].tokenizer_family == "wordpiece"  # Unigram and byte-level BPE have none
    assert ours.continuing_subword_prefix == ("##" if wordpiece else None)


def test_clean_up_tokenization():
    assert clean_up_tokenization("I do n't know , he 's here .") == "I don't know, he's here."


def test_stride_must_leave_room(tmp_path):
    from tests.builders import wordpiece_tokenizer

    wordpiece_tokenizer(lowercase=False).save(str(tmp_path / "tokenizer.json"))
    ours = TextTokenizer(tmp_path / "tokenizer.json", 16, {}, {"pad_token": "[PAD]"})
    with pytest.raises(InputError, match="stride"):
        ours.encode_windows(["a b c"], stride=14)  # 16 - 2 special tokens leaves 14
    assert len(ours.encode_windows(["a b c"], stride=13)[0]) == 1


# -- pure post-processing ------------------------------------------------------------------------------
def test_classify_legacy_topk_and_functions():
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]], dtype=np.float32)
    labels = {0: "a", 1: "b", 2: "c"}
    legacy = classification.classify(logits, labels, "softmax")
    assert [r["label"] for r in legacy] == ["b", "c"]
    expected = np.exp(3) / np.exp([1, 3, 2]).sum()
    assert abs(legacy[0]["score"] - expected) < 1e-6 and type(legacy[0]["score"]) is float
    top2 = classification.classify(logits, labels, "sigmoid", top_k=2, legacy=False)
    assert [e["label"] for e in top2[0]] == ["b", "c"] and len(top2[0]) == 2
    assert abs(top2[0][0]["score"] - 1 / (1 + np.exp(-3))) < 1e-6
    everything = classification.classify(logits, labels, "none", top_k=None, legacy=False)
    assert [e["score"] for e in everything[0]] == [3.0, 2.0, 1.0]


def test_classification_defaults_and_checks():
    assert classification.default_function("regression", 1) == "none"
    assert classification.default_function("multi_label_classification", 5) == "sigmoid"
    assert classification.default_function(None, 1) == "sigmoid"
    assert classification.default_function(None, 3) == "softmax"
    assert classification.check_function("SoftMax") == "softmax"
    for bad in ("relu", 3):
        with pytest.raises(InputError):
            classification.check_function(bad)
    for bad in (0, -2, 1.5, True):
        with pytest.raises(InputError):
            classification.check_top_k(bad)


def test_fill_mask_top_predictions_with_targets():
    logits = np.log(np.array([[0.1, 0.5, 0.3, 0.1]], dtype=np.float32))
    scores, ids = fill_mask.top_predictions(logits, top_k=2)
    assert ids.tolist() == [[1, 2]] and np.allclose(scores, [[0.5, 0.3]], atol=1e-6)
    scores, ids = fill_mask.top_predictions(logits, top_k=5, target_ids=np.array([0, 3, 2]))
    assert ids.tolist() == [[2, 0, 3]] and scores.shape == (1, 3)  # capped at the number of targets
    assert fill_mask.mask_positions(np.array([2, 4, 7, 4]), 4).tolist() == [1, 3]


def test_pooling_is_mask_aware():
    hidden = np.array([[[1.0, 2.0], [3.0, 4.0], [100.0, -100.0]]], dtype=np.float32)
    mask = np.array([[1, 1, 0]])
    assert embeddings.pool(hidden, mask, "mean").tolist() == [[2.0, 3.0]]
    assert embeddings.pool(hidden, mask, "max").tolist() == [[3.0, 4.0]]
    assert embeddings.pool(hidden, mask, "cls").tolist() == [[1.0, 2.0]]
    unit = embeddings.l2_normalize(np.array([[3.0, 4.0]]))
    assert np.allclose(unit, [[0.6, 0.8]])


def test_word_vectors_pool_sub_tokens():
    hidden = np.arange(10, dtype=np.float32).reshape(5, 2)  # [CLS] en ##chant ##ing [SEP]
    words, vectors = embeddings.word_vectors(hidden, np.array([-1, 0, 0, 0, -1]), "mean")
    assert words.tolist() == [0] and np.allclose(vectors, [[4.0, 5.0]])
    words, vectors = embeddings.word_vectors(hidden, np.array([-1, 0, 1, 1, -1]), "first")
    assert words.tolist() == [0, 1] and np.allclose(vectors, [[2, 3], [4, 5]])
    _, vectors = embeddings.word_vectors(hidden, np.array([-1, 0, 1, 1, -1]), "max")
    assert np.allclose(vectors, [[2, 3], [6, 7]])
