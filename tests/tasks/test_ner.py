"""bertrt.tasks.token_classification as pure functions: hand-made arrays in, entities out (no model, no tokenizer)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from bertrt.errors import InputError
from bertrt.tasks import token_classification as ner
from bertrt.tasks.token_classification import (
    Window,
    check_options,
    entities_for_text,
    entities_of_windows,
    merge_overlapping,
    softmax,
    validate_options,
)

LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "MISC"]
ID2LABEL = dict(enumerate(LABELS))
L = {name: i for i, name in enumerate(LABELS)}


def _vocab_hooks(tokens: list[str], *, word_aware: bool = True):
    """A toy WordPiece vocabulary: ids are positions in ``tokens``; joining strips ``##`` like BERT's decoder."""

    def decode_tokens(toks: list[str]) -> str:
        out = ""
        for i, t in enumerate(toks):
            out += t[2:] if (i and t.startswith("##")) else ((" " if i else "") + t)
        return out

    return {
        "id_to_token": lambda i: tokens[i],
        "decode": lambda ids: decode_tokens([tokens[i] for i in ids]),
        "decode_tokens": decode_tokens,
        "word_aware": word_aware,
    }


def _window(spans, labels, *, vocab, text, sharp=6.0, second=None, word_ids=None):
    """A window [CLS] tokens [SEP]. ``spans``: (token, start, end); ``labels``: winning label per token.

    ``second`` optionally gives per token (label, logit) of a runner-up, to shape averages.
    """
    n = len(spans) + 2
    ids = [vocab.index("[CLS]")] + [vocab.index(t) for t, _, _ in spans] + [vocab.index("[SEP]")]
    offsets = [(0, 0)] + [(s, e) for _, s, e in spans] + [(0, 0)]
    logits = np.zeros((n, len(LABELS)), dtype=np.float32)
    for j, label in enumerate(labels, start=1):
        logits[j, L[label]] = sharp
        if second and second[j - 1]:
            other, value = second[j - 1]
            logits[j, L[other]] = value
    if word_ids is None:
        word_ids = list(range(len(spans)))
    return {
        "input_ids": np.array(ids, dtype=np.int64),
        "offsets": np.array(offsets, dtype=np.int64),
        "special_tokens_mask": np.array([1] + [0] * len(spans) + [1], dtype=np.int64),
        "word_ids": np.array([-1] + list(word_ids) + [-1], dtype=np.int64),
        "logits": logits,
    }


TEXT = "Microsoft hired John Smith in Paris"
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "Micro", "##soft", "hired", "John", "Smith", "in", "Paris"]
SPANS = [
    ("Micro", 0, 5),
    ("##soft", 5, 9),
    ("hired", 10, 15),
    ("John", 16, 20),
    ("Smith", 21, 26),
    ("in", 27, 29),
    ("Paris", 30, 35),
]


def _run(labels, strategy, *, second=None, ignore_labels=("O",), text=TEXT, spans=SPANS, vocab=VOCAB, **kw):
    hooks = _vocab_hooks(vocab, word_aware=kw.pop("word_aware", True))
    window = _window(spans, labels, vocab=vocab, text=text, second=second, word_ids=kw.pop("word_ids", None))
    return entities_for_text(text, [window], ID2LABEL, strategy, ignore_labels, **hooks, **kw)


def test_public_api_is_pinned():
    public = (
        "AGGREGATION_STRATEGIES TASK WORD_GROUPINGS NerOptions TokenClassification Window"
        " check_options check_window entities_for_text entities_of_windows merge_overlapping softmax"
        " tokenizer_hooks validate_options"
    )
    assert sorted(ner.__all__) == sorted(public.split())  # exactly these names, each once
    assert ner.AGGREGATION_STRATEGIES == ("none", "simple", "first", "average", "max")


def test_softmax_is_shift_invariant_and_normalized():
    logits = np.array([[1000.0, 999.0, -5.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    p = softmax(logits)
    assert p.dtype == np.float32 and np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(
        p[0, :2], np.exp([0.0, -1.0]) / (1 + np.exp(-1.0) + np.exp(-1005.0)), rtol=1e-6
    )
    np.testing.assert_allclose(p[1], 1 / 3, rtol=1e-6)


def test_none_gives_one_entity_per_token_with_exact_keys_and_types():
    labels = ["B-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "B-LOC"]
    out = _run(labels, "none")
    assert [e["word"] for e in out] == ["Micro", "##soft", "John", "Smith", "Paris"]
    assert [e["index"] for e in out] == [1, 2, 4, 5, 7]  # positions in the window, [CLS] included
    assert [e["entity"] for e in out] == ["B-ORG", "I-ORG", "B-PER", "I-PER", "B-LOC"]
    first = out[0]
    assert list(first) == ["entity", "score", "index", "word", "start", "end"]
    assert type(first["score"]) is float and type(first["start"]) is int and type(first["index"]) is int
    expected = float(softmax(np.array([6.0] + [0.0] * (len(LABELS) - 1), dtype=np.float32))[0])
    assert first["score"] == pytest.approx(expected, abs=1e-7)
    assert (first["start"], first["end"]) == (0, 5)


def test_simple_groups_b_i_runs_and_splits_on_b():
    labels = ["B-ORG", "I-ORG", "O", "B-PER", "B-PER", "I-LOC", "I-LOC"]
    out = _run(labels, "simple")
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in out] == [
        ("ORG", "Microsoft", 0, 9),
        ("PER", "John", 16, 20),
        ("PER", "Smith", 21, 26),
        ("LOC", "in Paris", 27, 35),
    ]
    assert list(out[0]) == ["entity_group", "score", "word", "start", "end"]


def test_simple_joins_i_after_b_of_same_tag_and_label_without_prefix():
    labels = ["MISC", "MISC", "O", "B-PER", "I-PER", "I-ORG", "B-LOC"]
    out = _run(labels, "simple")
    assert [(e["entity_group"], e["word"]) for e in out] == [
        ("MISC", "Microsoft"),
        ("PER", "John Smith"),
        ("ORG", "in"),
        ("LOC", "Paris"),
    ]


def test_group_score_is_mean_of_member_scores():
    labels = ["B-ORG", "I-ORG", "O", "O", "O", "O", "O"]
    second = [("O", 5.0), None, None, None, None, None, None]
    tokens = _run(labels, "none", second=second)
    group = _run(labels, "simple", second=second)
    assert group[0]["score"] == pytest.approx((tokens[0]["score"] + tokens[1]["score"]) / 2, abs=1e-7)
    assert tokens[0]["score"] < tokens[1]["score"]  # the runner-up really changed the first score


def test_first_average_max_force_one_label_per_word():
    # "Micro" B-ORG (barely: PER close behind), "##soft" I-PER (sharp) -> the three strategies disagree.
    labels = ["B-ORG", "B-PER", "O", "O", "O", "O", "O"]
    second = [("B-PER", 5.9), None, None, None, None, None, None]
    first = _run(labels, "first", second=second)
    maxed = _run(labels, "max", second=second)
    average = _run(labels, "average", second=second)
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in first] == [
        ("ORG", "Microsoft", 0, 9)
    ]
    assert [(e["entity_group"], e["word"]) for e in maxed] == [("PER", "Microsoft")]
    assert [(e["entity_group"], e["word"]) for e in average] == [("PER", "Microsoft")]
    # average: mean of both tokens' distributions, scored at its argmax
    s1 = softmax(np.array([0, 5.9, 0, 6.0, 0, 0, 0, 0], dtype=np.float32))
    s2 = softmax(np.array([0, 6.0, 0, 0, 0, 0, 0, 0], dtype=np.float32))
    assert average[0]["score"] == pytest.approx(float((s1 + s2)[1] / 2), abs=1e-6)
    assert first[0]["score"] == pytest.approx(float(s1[3]), abs=1e-6)
    assert maxed[0]["score"] == pytest.approx(float(s2[1]), abs=1e-6)


def test_max_takes_the_first_token_on_equal_scores():
    labels = ["B-ORG", "B-PER", "O", "O", "O", "O", "O"]
    out = _run(labels, "max")  # both sub-tokens score exactly the same
    assert [(e["entity_group"], e["word"]) for e in out] == [("ORG", "Microsoft")]


def test_ignore_labels_filters_after_grouping():
    labels = ["B-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "B-LOC"]
    assert [e["entity_group"] for e in _run(labels, "simple", ignore_labels=())] == [
        "ORG",
        "O",
        "PER",
        "O",
        "LOC",
    ]
    assert [e["entity_group"] for e in _run(labels, "simple", ignore_labels=["O", "PER"])] == ["ORG", "LOC"]
    # a bare str is one label (transformers would test substrings of it)
    assert [e["entity"] for e in _run(labels, "none", ignore_labels="O")] == [
        "B-ORG",
        "I-ORG",
        "B-PER",
        "I-PER",
        "B-LOC",
    ]
    # grouped entities are matched by their stripped tag, tokens by their full label
    assert [e["entity"] for e in _run(labels, "none", ignore_labels=["O", "I-PER"])] == [
        "B-ORG",
        "I-ORG",
        "B-PER",
        "B-LOC",
    ]


def test_unknown_token_uses_surface_and_starts_a_word():
    text = "Zoë rocks"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "##rocks", "rocks"]
    spans = [("[UNK]", 0, 3), ("##rocks", 4, 9)]
    window = _window(spans, ["B-PER", "I-PER"], vocab=vocab, text=text)
    hooks = _vocab_hooks(vocab)
    tokens = entities_for_text(text, [window], ID2LABEL, "none", **hooks, unk_token_id=1)
    assert [e["word"] for e in tokens] == ["Zoë", "##rocks"]
    words = entities_for_text(text, [window], ID2LABEL, "first", **hooks, unk_token_id=1)
    # "##rocks" is a sub-word by the length rule (6 != 5) and joins the unknown token's word
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in words] == [
        ("PER", "Zoërocks", 0, 9)
    ]
    # without unk_token_id the token string is kept, as for any token
    plain = entities_for_text(text, [window], ID2LABEL, "none", **hooks)
    assert plain[0]["word"] == "[UNK]"


def test_fallback_heuristic_for_tokenizers_without_subword_prefix_warns_and_uses_spaces():
    text = "ab cd\nef"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "a", "b", "cd", "ef"]
    spans = [("a", 0, 1), ("b", 1, 2), ("cd", 3, 5), ("ef", 6, 8)]
    window = _window(
        spans, ["B-PER", "B-ORG", "B-LOC", "B-LOC"], vocab=vocab, text=text, word_ids=[0, 0, 1, 2]
    )
    hooks = _vocab_hooks(vocab, word_aware=False)
    with pytest.warns(UserWarning, match="fallback heuristic"):
        out = entities_for_text(text, [window], ID2LABEL, "first", **hooks)
    # "b" follows "a" without a space: sub-word; "ef" follows a newline, not a space: glued to "cd"
    assert [(e["entity_group"], e["start"], e["end"]) for e in out] == [("PER", 0, 2), ("LOC", 3, 8)]
    fixed = entities_for_text(text, [window], ID2LABEL, "first", **hooks, word_grouping="tokenizer")
    assert [(e["entity_group"], e["start"], e["end"]) for e in fixed] == [
        ("PER", 0, 2),
        ("LOC", 3, 5),
        ("LOC", 6, 8),
    ]


def test_tokenizer_grouping_follows_word_ids_and_skips_blank_tokens():
    text = "New  York"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "New", "G", "Y", "ork"]
    # byte-level style: a zero-width blank token between the words, and a word split in two pieces
    spans = [("New", 0, 3), ("G", 4, 4), ("Y", 5, 6), ("ork", 6, 9)]
    window = _window(spans, ["B-LOC", "O", "I-LOC", "B-PER"], vocab=vocab, text=text, word_ids=[0, 1, 2, 2])
    hooks = _vocab_hooks(vocab, word_aware=False)
    out = entities_for_text(
        text, [window], ID2LABEL, "first", ignore_labels=(), **hooks, word_grouping="tokenizer"
    )
    assert [(e["entity_group"], text[e["start"] : e["end"]]) for e in out] == [("LOC", "New  York")]
    with pytest.warns(UserWarning):
        legacy = entities_for_text(text, [window], ID2LABEL, "first", ignore_labels=(), **hooks)
    # the heuristic makes the zero-width blank a word of its own (an empty "O" entity) that cuts "New York"
    assert [(e["entity_group"], e["start"], e["end"]) for e in legacy] == [
        ("LOC", 0, 3),
        ("O", 4, 4),
        ("LOC", 5, 9),
    ]
    tokens = entities_for_text(
        text, [window], ID2LABEL, "none", ignore_labels=(), **hooks, word_grouping="tokenizer"
    )
    assert all(e["start"] < e["end"] for e in tokens) and len(tokens) == 3


def test_decode_by_ids_is_used_without_decode_tokens():
    hooks = _vocab_hooks(VOCAB)
    seen = []

    def decode(ids):
        seen.append(list(ids))
        return hooks["decode"](ids)

    window = _window(SPANS, ["B-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "O"], vocab=VOCAB, text=TEXT)
    out = entities_for_text(
        TEXT, [window], ID2LABEL, "simple", id_to_token=hooks["id_to_token"], decode=decode, word_aware=True
    )
    assert [e["word"] for e in out] == ["Microsoft", "John Smith"]
    assert [VOCAB.index("Micro"), VOCAB.index("##soft")] in seen


def test_overlapping_windows_merge_longer_then_higher_score():
    entities = [
        {"entity_group": "PER", "score": 0.9, "word": "John", "start": 16, "end": 20},
        {"entity_group": "PER", "score": 0.8, "word": "John Smith", "start": 16, "end": 26},
        {"entity_group": "LOC", "score": 0.5, "word": "Paris", "start": 30, "end": 35},
        {"entity_group": "ORG", "score": 0.7, "word": "Paris", "start": 30, "end": 35},
        {"entity_group": "ORG", "score": 0.7, "word": "Paris", "start": 30, "end": 35},
        {"entity_group": "ORG", "score": 0.4, "word": "Micro", "start": 0, "end": 5},
    ]
    out = merge_overlapping(entities)
    assert [(e["word"], e["entity_group"], e["score"]) for e in out] == [
        ("Micro", "ORG", 0.4),
        ("John Smith", "PER", 0.8),
        ("Paris", "ORG", 0.7),
    ]
    assert out[2] is entities[3]  # equal length and score: the first one stays
    assert merge_overlapping([]) == []


def test_two_windows_are_merged_and_each_filtered_first():
    # the same text cut in two overlapping windows; the second sees "John Smith" whole
    w1 = _window(SPANS[:4], ["B-ORG", "I-ORG", "O", "B-PER"], vocab=VOCAB, text=TEXT)
    w2 = _window(SPANS[3:], ["B-PER", "I-PER", "O", "B-LOC"], vocab=VOCAB, text=TEXT, word_ids=[3, 4, 5, 6])
    hooks = _vocab_hooks(VOCAB)
    out = entities_for_text(TEXT, [w1, w2], ID2LABEL, "simple", **hooks)
    assert [(e["entity_group"], e["word"], e["start"], e["end"]) for e in out] == [
        ("ORG", "Microsoft", 0, 9),
        ("PER", "John Smith", 16, 26),
        ("LOC", "Paris", 30, 35),
    ]
    # tokens seen twice are reduced to one ("none" is allowed over windows, as the runtime never cuts)
    tokens = entities_for_text(TEXT, [w1, w2], ID2LABEL, "none", **hooks)
    assert [e["word"] for e in tokens] == ["Micro", "##soft", "John", "Smith", "Paris"]


def test_empty_windows_and_special_only_windows_give_no_entities():
    hooks = _vocab_hooks(VOCAB)
    assert entities_for_text("", [], ID2LABEL, "simple", **hooks) == []
    window = _window([], [], vocab=VOCAB, text="")
    for strategy in ner.AGGREGATION_STRATEGIES:
        assert entities_for_text("", [window], ID2LABEL, strategy, **hooks) == []


def test_validate_options_normalizes():
    assert validate_options() == {
        "aggregation_strategy": "none",
        "ignore_labels": ("O",),
        "stride": None,
        "word_grouping": "offsets",
    }
    got = validate_options(
        "FIRST", ["O", "MISC"], np.int64(16), "Tokenizer", max_length=64, num_special_tokens=2
    )
    assert got == {
        "aggregation_strategy": "first",
        "ignore_labels": ("O", "MISC"),
        "stride": 16,
        "word_grouping": "tokenizer",
    }
    assert type(got["stride"]) is int
    assert validate_options(None)["aggregation_strategy"] == "none"
    assert validate_options("simple", stride=0)["stride"] == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"aggregation_strategy": "best"}, "aggregation_strategy='best' is unknown"),
        ({"aggregation_strategy": 3}, "aggregation_strategy=3 is unknown"),
        ({"ignore_labels": 5}, "ignore_labels must be a list of label strings, got int"),
        ({"ignore_labels": ["O", None]}, "ignore_labels must hold label strings; got None"),
        ({"aggregation_strategy": "simple", "stride": -1}, "stride=-1 must be >= 0"),
        ({"aggregation_strategy": "simple", "stride": 2.5}, "stride must be an int or None, got float"),
        ({"aggregation_strategy": "simple", "stride": True}, "stride must be an int or None, got bool"),
        (
            {"aggregation_strategy": "simple", "stride": 62, "max_length": 64, "num_special_tokens": 2},
            "stride=62 must be less than the max length 64 minus the 2 special tokens",
        ),
        ({"aggregation_strategy": "simple", "stride": 64, "max_length": 64}, "stride=64 must be less than"),
        ({"stride": 8}, 'aggregation_strategy="none"'),
        ({"word_grouping": "words"}, "word_grouping='words' is unknown; expected one of offsets, tokenizer"),
    ],
)
def test_validate_options_rejects_bad_values_naming_them(kwargs, message):
    with pytest.raises(InputError, match="invalid token-classification options") as info:
        validate_options(**kwargs)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_validate_options_reports_every_problem_at_once():
    with pytest.raises(InputError) as info:
        validate_options("nope", 5, -3, "x")
    text = str(info.value)
    for part in ("aggregation_strategy='nope'", "ignore_labels", "stride=-3", "word_grouping='x'"):
        assert part in text


def test_deprecated_flags_pick_the_strategy_like_transformers():
    with pytest.warns(UserWarning, match="deprecated"):
        assert (
            validate_options(grouped_entities=True, ignore_subwords=True)["aggregation_strategy"] == "first"
        )
    with pytest.warns(UserWarning):
        assert validate_options("max", grouped_entities=True)["aggregation_strategy"] == "simple"
    with pytest.warns(UserWarning):
        assert validate_options("max", grouped_entities=False)["aggregation_strategy"] == "none"


def test_entities_for_text_validates_before_work():
    hooks = _vocab_hooks(VOCAB)
    good = _window(SPANS, ["O"] * 7, vocab=VOCAB, text=TEXT)
    with pytest.raises(InputError, match="aggregation_strategy='fast'"):
        entities_for_text(TEXT, [good], ID2LABEL, "fast", **hooks)
    with pytest.raises(InputError, match="word_grouping"):
        entities_for_text(TEXT, [good], ID2LABEL, "first", **hooks, word_grouping="spaces")
    with pytest.raises(InputError, match="lacks logits"):
        entities_for_text(TEXT, [{k: v for k, v in good.items() if k != "logits"}], ID2LABEL, **hooks)
    with pytest.raises(InputError, match="arrays disagree"):
        entities_for_text(TEXT, [{**good, "logits": good["logits"][:-1]}], ID2LABEL, **hooks)
    with pytest.raises(InputError, match="offsets outside the text of 5 characters"):
        entities_for_text(TEXT[:5], [good], ID2LABEL, **hooks)
    with pytest.raises(InputError, match="8 logits per token but id2label has no label for index 7"):
        entities_for_text(TEXT, [good], dict(list(ID2LABEL.items())[:7]), **hooks)
    with pytest.raises(InputError, match="text must be a str"):
        entities_for_text(b"x", [good], ID2LABEL, **hooks)
    nan = {**good, "logits": good["logits"].copy()}
    nan["logits"][3, 2] = np.nan
    with pytest.raises(InputError, match="window 0: logits hold NaN"):
        entities_for_text(TEXT, [nan], ID2LABEL, "max", **hooks)
    # word ids straight from tokenizers (None for special tokens) are accepted
    listed = {**good, "word_ids": [None, *range(7), None]}
    assert entities_for_text(
        TEXT, [listed], ID2LABEL, "first", ignore_labels=(), **hooks, word_grouping="tokenizer"
    )
    # config.json keys are strings: accepted
    assert entities_for_text(
        TEXT, [good], {str(k): v for k, v in ID2LABEL.items()}, ignore_labels=(), **hooks
    )


def _mixed_windows():
    """Two overlapping windows of TEXT with varied labels, an unknown token and a runner-up label."""
    vocab = VOCAB
    labels = ["B-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "B-LOC"]
    second = [None, ("B-PER", 5.5), None, ("I-PER", 5.9), None, None, ("MISC", 6.0)]
    w1 = _window(SPANS[:5], labels[:5], vocab=vocab, text=TEXT, second=second[:5])
    w2 = _window(SPANS[3:], labels[3:], vocab=vocab, text=TEXT, second=second[3:], word_ids=range(3, 7))
    w2["input_ids"][4] = vocab.index("[UNK]")  # "Paris" unknown (after the overlap)
    return [w1, w2]


@pytest.mark.parametrize("strategy", ["none", "simple", "first", "average", "max"])
@pytest.mark.parametrize("grouping", ["offsets", "tokenizer"])
@pytest.mark.parametrize("ignore", [("O",), (), ("O", "PER", "B-ORG")])
def test_precomputed_scores_and_checked_windows_give_the_same_entities(strategy, grouping, ignore):
    hooks = {**_vocab_hooks(VOCAB), "unk_token_id": 1}
    for windows in (_mixed_windows(), _mixed_windows()[:1]):
        if strategy == "none" and len(windows) > 1 and grouping == "tokenizer":
            continue
        expected = entities_for_text(
            TEXT, windows, ID2LABEL, strategy, ignore, **hooks, word_grouping=grouping
        )
        with_scores = [
            {**{k: v for k, v in w.items() if k != "logits"}, "scores": softmax(w["logits"])} for w in windows
        ]
        assert (
            entities_for_text(TEXT, with_scores, ID2LABEL, strategy, ignore, **hooks, word_grouping=grouping)
            == expected
        )
        options = check_options(strategy, ignore, None, grouping)
        for given in (windows, with_scores):
            checked = [
                Window(
                    w["input_ids"],
                    w["offsets"],
                    w["special_tokens_mask"],
                    w["word_ids"],
                    w["scores"] if "scores" in w else softmax(w["logits"]),
                )
                for w in given
            ]
            got = entities_of_windows(TEXT, checked, ID2LABEL, options, **hooks)
            assert got == expected
            assert [[type(v) for v in e.values()] for e in got] == [
                [type(v) for v in e.values()] for e in expected
            ]


def test_words_are_decoded_only_for_entities_that_survive_ignore_labels():
    calls = []
    hooks = _vocab_hooks(VOCAB)
    join = hooks["decode_tokens"]
    hooks["decode_tokens"] = lambda toks: calls.append(list(toks)) or join(toks)
    labels = ["B-ORG", "I-ORG", "O", "B-PER", "I-PER", "O", "O"]
    out = entities_for_text(
        TEXT, [_window(SPANS, labels, vocab=VOCAB, text=TEXT)], ID2LABEL, "first", **hooks
    )
    assert [(e["entity_group"], e["word"]) for e in out] == [("ORG", "Microsoft"), ("PER", "John Smith")]
    # one decode per surviving word and one per surviving group; none for the "O" words
    assert calls == [["Micro", "##soft"], ["Microsoft"], ["John"], ["Smith"], ["John", "Smith"]]


def test_precomputed_scores_are_checked():
    hooks = _vocab_hooks(VOCAB)
    good = _window(SPANS, ["O"] * 7, vocab=VOCAB, text=TEXT)
    scores = {**{k: v for k, v in good.items() if k != "logits"}, "scores": softmax(good["logits"])}
    bad = {**scores, "scores": scores["scores"].copy()}
    bad["scores"][2, 1] = np.nan
    with pytest.raises(InputError, match="window 0: scores hold NaN or inf"):
        entities_for_text(TEXT, [bad], ID2LABEL, **hooks)
    with pytest.raises(InputError, match="arrays disagree.*scores"):
        entities_for_text(TEXT, [{**scores, "scores": scores["scores"][:-1]}], ID2LABEL, **hooks)
    with pytest.raises(InputError, match=r"lacks logits \(or scores\)"):
        entities_for_text(TEXT, [{k: v for k, v in scores.items() if k != "scores"}], ID2LABEL, **hooks)


def test_label_table_cache_tells_equal_comparing_labels_apart():
    hooks = _vocab_hooks(VOCAB)
    window = _window(SPANS, ["B-PER"] + ["O"] * 6, vocab=VOCAB, text=TEXT)  # label index 1 wins token 0
    as_int = {i: i for i in range(len(LABELS))}  # labels 0, 1, ... (True == 1 and hash(True) == hash(1))
    as_bool = {**as_int, 1: True}
    first = entities_for_text(TEXT, [window], as_int, "none", (), **hooks)
    second = entities_for_text(TEXT, [window], as_bool, "none", (), **hooks)
    assert first[0]["entity"] == "1" and second[0]["entity"] == "True"


def test_tokenizer_hooks_remember_token_strings():
    from tokenizers import Tokenizer, models

    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "a": 1, "b": 2}, unk_token="[UNK]"))
    hooks = ner.tokenizer_hooks(tok)
    assert [hooks["id_to_token"](i) for i in (2, 1, 2, 0, 7)] == ["b", "a", "b", "[UNK]", None]
    assert hooks["unk_token_id"] == 0 and hooks["word_aware"] is False


# -------------------------------------------------- word_grouping="tokenizer": windows merged token by token

# byte-level style: each "Ω" is split into two byte tokens sharing its offsets (Î, ©), blanks are separate
BYTES_TEXT = "Anna Ωmega met Ωx in Paris"
BYTES_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "Anna", "Î", "©", "mega", "met", "x", "in", "Paris", "Ġ"]
BYTES_SPANS = [
    ("Anna", 0, 4),
    ("Ġ", 5, 5),
    ("Î", 5, 6),
    ("©", 5, 6),
    ("mega", 6, 10),
    ("met", 11, 14),
    ("Î", 15, 16),
    ("©", 15, 16),
    ("x", 16, 17),
    ("in", 18, 20),
    ("Paris", 21, 26),
]
BYTES_WORDS = [0, 1, 1, 1, 1, 2, 3, 3, 3, 4, 5]
BYTES_LABELS = ["B-PER", "O", "B-ORG", "I-ORG", "I-ORG", "O", "B-LOC", "I-LOC", "I-LOC", "O", "B-LOC"]


def _whole(spans=BYTES_SPANS, words=BYTES_WORDS, labels=BYTES_LABELS, seed=None, text=BYTES_TEXT):
    """One window holding every token; with ``seed`` random logits (the labels then only shape the ids)."""
    window = _window(spans, labels, vocab=BYTES_VOCAB, text=text, word_ids=words)
    if seed is not None:
        rng = np.random.default_rng(seed)
        window["logits"] = rng.normal(0, 2, size=window["logits"].shape).astype(np.float32)
    return window


def _overflow(whole: dict, budget: int, stride: int) -> list[dict]:
    """``whole`` cut like tokenizers' overflowing windows: ``budget`` tokens each, the next one repeating the
    last ``stride`` tokens of the previous; [CLS] and [SEP] around each."""
    n = whole["input_ids"].shape[0] - 2
    windows, start = [], 0
    while True:
        stop = min(start + budget, n)
        rows = np.r_[0, np.arange(1 + start, 1 + stop), n + 1]
        windows.append({key: value[rows] for key, value in whole.items()})
        if stop == n:
            return windows
        start += budget - stride


def _tok(windows, strategy, text=BYTES_TEXT, **kw):
    return entities_for_text(
        text,
        windows,
        ID2LABEL,
        strategy,
        (),
        **_vocab_hooks(BYTES_VOCAB, word_aware=False),
        word_grouping="tokenizer",
        **kw,
    )


@pytest.mark.parametrize("budget, stride", [(2, 0), (3, 0), (4, 0), (4, 1), (4, 2), (4, 3), (5, 2), (3, 2)])
@pytest.mark.parametrize("strategy", ner.AGGREGATION_STRATEGIES)
def test_tokenizer_grouping_over_windows_equals_one_window(budget, stride, strategy):
    # the same logits in every window: the merged windows are exactly the one-window token sequence, so
    # every strategy gives the one-window entities, ``index`` included (position in the whole encoding)
    for seed in (0, 1, 2):
        whole = _whole(seed=seed)
        windows = _overflow(whole, budget, stride)
        assert len(windows) > 2
        want = _tok([whole], strategy)
        assert want
        assert _tok(windows, strategy) == want  # overlap found by (id, offsets) alignment
        assert _tok(windows, strategy, stride=stride) == want  # overlap given, and checked


def test_tokenizer_grouping_keeps_a_character_split_at_a_window_edge():
    # stride 0, windows of 3: [Anna Ġ Î] [© mega met] [Î © x] [in Paris]; the first edge falls between the
    # two byte tokens of the first "Ω": nothing is dropped, each Ω word is one entity
    windows = _overflow(_whole(), 3, 0)
    edges = [(w["offsets"][-2].tolist(), n["offsets"][1].tolist()) for w, n in itertools.pairwise(windows)]
    assert [5, 6] in [a for a, b in edges if a == b]  # an edge inside a byte-split character
    out = _tok(windows, "first")
    assert [(e["entity_group"], BYTES_TEXT[e["start"] : e["end"]]) for e in out] == [
        ("PER", "Anna"),
        ("ORG", "Ωmega"),
        ("O", "met"),
        ("LOC", "Ωx"),
        ("O", "in"),
        ("LOC", "Paris"),
    ]
    tokens = _tok(windows, "none")
    assert [e["index"] for e in tokens] == [1, 3, 4, 5, 6, 7, 8, 9, 10, 11]  # token 2 is the blank "Ġ"
    assert out[1]["word"] == "Î © mega"  # every member token (the toy decoder joins with spaces)
    # transformers' way (the default grouping) merges entities, not tokens: the first window's "Î" (5, 6)
    # and the second window's "© mega" (5, 10) overlap, the longer one wins and the head byte is lost
    with pytest.warns(UserWarning):
        legacy = entities_for_text(
            BYTES_TEXT, windows, ID2LABEL, "first", (), **_vocab_hooks(BYTES_VOCAB, word_aware=False)
        )
    assert [(e["entity_group"], e["start"], e["end"], e["word"]) for e in legacy][2] == (
        "ORG",
        5,
        10,
        "© mega",
    )


def test_tokenizer_grouping_takes_each_token_from_the_window_where_it_has_most_context():
    text = "a b c d e f"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", *"abcdef"]
    spans = [(ch, 2 * i, 2 * i + 1) for i, ch in enumerate("abcdef")]
    hooks = _vocab_hooks(vocab, word_aware=False)
    # windows of 4 with stride 2: [a b c d], [c d e f]. c has 1 token of context each side in the first
    # window, 0 on the left in the second: the first one's logits; d the other way round
    w1 = _window(spans[:4], ["B-PER", "B-PER", "B-LOC", "B-PER"], vocab=vocab, text=text, word_ids=range(4))
    w2 = _window(
        spans[2:], ["B-PER", "B-LOC", "B-PER", "B-PER"], vocab=vocab, text=text, word_ids=range(2, 6)
    )
    out = entities_for_text(
        text, [w1, w2], ID2LABEL, "none", (), **hooks, word_grouping="tokenizer", stride=2
    )
    assert [(e["word"], e["entity"], e["index"]) for e in out] == [
        ("a", "B-PER", 1),
        ("b", "B-PER", 2),
        ("c", "B-LOC", 3),
        ("d", "B-LOC", 4),
        ("e", "B-PER", 5),
        ("f", "B-PER", 6),
    ]
    # a tie (the middle of an odd overlap) keeps the earlier window: windows of 3, stride 2: [a b c],
    # [b c d]: b has context 1 in the first and 0 in the second -> first; c has 0 and 1 -> second
    w1 = _window(spans[:3], ["B-PER", "B-LOC", "B-PER"], vocab=vocab, text=text, word_ids=range(3))
    w2 = _window(spans[1:4], ["B-PER", "B-LOC", "B-PER"], vocab=vocab, text=text, word_ids=range(1, 4))
    out = entities_for_text(text, [w1, w2], ID2LABEL, "none", (), **hooks, word_grouping="tokenizer")
    assert [(e["word"], e["entity"]) for e in out] == [
        ("a", "B-PER"),
        ("b", "B-LOC"),
        ("c", "B-LOC"),
        ("d", "B-PER"),
    ]


def test_tokenizer_grouping_with_a_repeated_byte_token_at_a_stride_0_edge():
    # a character of three byte tokens, the last two the same token ("\u0820" is E0 A0 A0 in UTF-8), a
    # window edge between the two equal ones: alone, that pair of windows could also overlap by one token
    text = "Anna \u0820 Paris in Rome"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "Anna", "à", "ł", "Paris", "in", "Rome"]
    spans = [("Anna", 0, 4), ("à", 5, 6), ("ł", 5, 6), ("ł", 5, 6), ("Paris", 7, 12), ("in", 13, 15)]
    spans.append(("Rome", 16, 20))
    labels = ["B-PER", "B-ORG", "I-ORG", "I-ORG", "B-LOC", "O", "B-LOC"]
    whole = _window(spans, labels, vocab=vocab, text=text, word_ids=[0, 1, 1, 1, 2, 3, 4])
    hooks = _vocab_hooks(vocab, word_aware=False)

    def run(windows, strategy="none", **kw):
        return entities_for_text(
            text, windows, ID2LABEL, strategy, (), **hooks, word_grouping="tokenizer", **kw
        )

    single = run([whole])
    assert len(single) == 7
    windows = _overflow(whole, 3, 0)  # [Anna à ł] [ł Paris in] [Rome]
    assert windows[0]["input_ids"][-2] == windows[1]["input_ids"][1] == vocab.index("ł")
    for strategy in ner.AGGREGATION_STRATEGIES:
        want = run([whole], strategy)
        assert run(windows, strategy, stride=0) == want  # the stride decides
        assert run(windows, strategy) == want  # the other pair admits no overlap: the one all pairs share
    # two windows only: the pair alone is ambiguous and the largest overlap is taken; one byte token of
    # the character is then read once, but no text is lost (its span stays covered)
    two = windows[:2]
    assert run(two, stride=0) == single[:6]
    assert [(e["start"], e["end"]) for e in run(two)] == [(0, 4), (5, 6), (5, 6), (7, 12), (13, 15)]


def test_tokenizer_grouping_rejects_windows_that_do_not_chain():
    windows = _overflow(_whole(), 4, 2)
    # windows out of order, or overlapping by different counts: no common overlap; a new token would
    # start before the last token of the previous window
    with pytest.raises(InputError, match="window 1 does not continue window 0"):
        _tok([windows[1], windows[0]], "first")
    with pytest.raises(InputError, match="window 2 does not continue window 1"):
        _tok([windows[0], windows[1], _overflow(_whole(), 4, 3)[2]], "first")


def test_tokenizer_grouping_rejects_windows_that_do_not_overlap_by_the_stride():
    windows = _overflow(_whole(), 4, 2)
    with pytest.raises(
        InputError, match=r"window 1 does not start with the last 1 tokens of window 0 \(stride=1\)"
    ):
        _tok(windows, "first", stride=1)
    for bad in (-1, 1.5, True, "2"):
        with pytest.raises(InputError, match="stride must be None or an int >= 0"):
            _tok(windows, "first", stride=bad)
    # the default grouping does not use the stride (transformers merges entities, not tokens)
    with pytest.warns(UserWarning):
        assert entities_for_text(
            BYTES_TEXT,
            windows,
            ID2LABEL,
            "first",
            (),
            **_vocab_hooks(BYTES_VOCAB, word_aware=False),
            stride=1,
        )


def test_tokenizer_grouping_of_one_window_does_not_depend_on_the_stride():
    whole = _whole(seed=3)
    for strategy in ner.AGGREGATION_STRATEGIES:
        assert (
            _tok([whole], strategy) == _tok([whole], strategy, stride=0) == _tok([whole], strategy, stride=7)
        )
