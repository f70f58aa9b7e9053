"""The runtime on whatever users feed it.

Non-str items, empty and blank texts inside batches, 100,000-character texts under a token budget,
hostile unicode (emoji, CJK, combining marks, RTL, zero-width, control characters), bad options that
must fail before the model runs, a text the tokenizer cannot take (a lone surrogate, an undecodable byte
kept by ``surrogateescape``: an InputError naming the item, before any work) and an empty ``text_pair``
(no pair, as transformers). All on the tiny fp32 bundles (ms per call).

Offset semantics asserted here (the "surface" of an entity is ``text[start:end]``):

* every strategy: ``0 <= start < end <= len(text)``, the surface is not blank and has no leading or
  trailing whitespace, entities are sorted by ``start`` and do not overlap (``prev.end <= next.start``),
  except that the token-level strategies (``none``, ``simple``) on byte-level BPE may give two entities
  on the one character whose byte tokens they split;
* ``none``: one entity per token; ``(start, end)`` is that token's offsets (``pipe.tokenize``), so the
  byte tokens of one character (byte-level BPE) share that character's span (equal, never partial); for
  the unknown token, ``word`` is the surface itself; other ``word``s are token strings (``##ing``);
* ``simple``/``first``/``average``/``max``: the span runs from the first member token's start to the last
  one's end, so the surface includes the text between words (spaces, dropped control characters); ``word``
  is the tokenizer decoder's join of the member tokens, and equals the surface once both are normalized by
  the tokenizer's normalizer and whitespace is removed (a group cut inside a word keeps its ``##`` prefix;
  a group cut inside a byte-split character decodes to U+FFFD there: transformers' words).

These hold for WordPiece tokenizers (BERT, DistilBERT) with transformers' default word grouping. For
byte-level BPE (RoBERTa) transformers' semantics produce zero-width entities (``Ġ`` tokens of runs of
spaces) and several entities on one character (a character split in byte tokens); the runtime reproduces
that for parity, and ``word_grouping="tokenizer"`` is the mode that gives the invariants, so the RoBERTa
cases run with it.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bertrt
from bertrt.errors import BertrtError, InputError, InputTypeError, TaskError
from bertrt.tokenize import check_text
from tests.builders import ARCHS
from tests.runtime.test_runtime_parity import assert_same

STRATEGIES = ("none", "simple", "first", "average", "max")
NORMAL = ["Maria loves Groningen.", "John Smith works at Acme Corp. in New York City!", "東京 🍕 Zürich"]
BLANKS = ["", " ", "   \n\t  ", "\r\n\u3000\xa0"]  # empty, or whitespace only
INVISIBLE = ["\u200b", "\x00\x07", "\u202e"]  # zero-width / control only: may have entities (byte-level)


class _Counting:
    """Wraps a pipeline's session.run: records the input_ids shape of every call, or forbids calls."""

    def __init__(self, pipe, forbid: bool = False):
        self.pipe, self.forbid, self.shapes = pipe, forbid, []
        self._run = pipe.session.run

    def __call__(self, batch):
        if self.forbid:
            raise AssertionError("the model ran although the call should have failed before any work")
        self.shapes.append(batch["input_ids"].shape)
        return self._run(batch)

    def __enter__(self):
        self.pipe.session.run = self
        return self

    def __exit__(self, *exc):
        del self.pipe.session.run  # back to the class method


@pytest.fixture(scope="module")
def pipes(runtime_bundle):
    cache = {}

    def get(arch: str, task: str):
        if (arch, task) not in cache:
            cache[arch, task] = bertrt.pipeline(task, runtime_bundle(arch, task), precision="fp32", threads=1)
        return cache[arch, task]

    return get


# -- non-str items ------------------------------------------------------------------------------------------
BAD_ITEMS = [
    (None, "NoneType"),
    (b"bytes", "bytes"),
    (42, "int"),
    (3.5, "float"),
    (["nested"], "list"),
    (("a", "b"), "tuple"),
    (np.str_("x").encode(), "bytes"),
]


@pytest.mark.parametrize(
    "task", ["token-classification", "text-classification", "fill-mask", "feature-extraction"]
)
@pytest.mark.parametrize("bad, type_name", BAD_ITEMS)
def test_non_str_items_raise_type_error_naming_index_and_type(pipes, task, bad, type_name):
    pipe = pipes("bert", task)
    good = "Paris [MASK] nice." if task == "fill-mask" else "Paris is nice."
    with _Counting(pipe, forbid=True):
        with pytest.raises(InputTypeError, match=rf"index 2\b.*\b{type_name}\b") as info:
            pipe([good, good, bad, good])
        assert isinstance(info.value, TypeError) and isinstance(info.value, BertrtError)
        with pytest.raises(TypeError, match=type_name):
            pipe(bad) if not isinstance(bad, (list, tuple)) else pipe([bad])


def test_non_sequence_inputs_raise_type_error(pipes):
    pipe = pipes("bert", "token-classification")
    for bad in (None, 7, {"text": "x"}, {"a"}, iter(["x"])):
        with pytest.raises(InputTypeError):
            pipe(bad)


# -- empty and blank texts ----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["bert", "roberta"])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_blank_texts_give_empty_ner_results_without_disturbing_the_batch(pipes, arch, strategy):
    pipe = pipes(arch, "token-classification")
    mixed = [NORMAL[0], *BLANKS, *INVISIBLE, NORMAL[1], NORMAL[2]]
    options = {"aggregation_strategy": strategy, "ignore_labels": []}
    if arch == "roberta":
        options["word_grouping"] = "tokenizer"
    out = pipe(mixed, **options)
    alone = {t: pipe(t, **options) for t in NORMAL}
    for text, result in zip(mixed, out):
        if text in BLANKS:
            assert result == [], (text, result)
        elif text in INVISIBLE:
            _check_invariants(text, result, strategy)
        else:
            _same_entities(result, alone[text])
            assert result, text  # nothing ignored: a normal text has entities


def test_blank_texts_get_a_classification_and_leave_the_others_unchanged(pipes):
    pipe = pipes("bert", "text-classification")
    labels = set(pipe.id2label.values())
    mixed = [*BLANKS[:2], NORMAL[0], *BLANKS[2:], NORMAL[1]]
    out = pipe(mixed, top_k=None)
    for text, result in zip(mixed, out):
        assert [r["label"] for r in result] and {r["label"] for r in result} == labels
        assert abs(sum(r["score"] for r in result) - 1) < 1e-5
        if text in NORMAL:
            _same_entities(result, pipe(text, top_k=None))
    features = pipes("bert", "feature-extraction")
    vectors = features(["", NORMAL[0]], pooling="mean")
    assert all(np.isfinite(v).all() for v in vectors)
    np.testing.assert_allclose(vectors[1], features(NORMAL[0], pooling="mean"), atol=1e-5, rtol=0)


def _same_entities(a: list[dict], b: list[dict]):
    assert len(a) == len(b), (a, b)
    for x, y in zip(a, b):
        assert list(x) == list(y)
        for key in x:
            if isinstance(x[key], float):
                assert abs(x[key] - y[key]) <= 1e-5, (key, x, y)
            else:
                assert x[key] == y[key], (key, x, y)


# -- 100,000-character texts --------------------------------------------------------------------------------
LONG_UNIT = "Angela Merkel met Emmanuel Macron in Paris on Monday. 東京 🍕 é\u200bשלום\x07 Zürich ☕\n"


def _uncovered_tokens(text: str, entities: list[dict], offsets) -> tuple[list, int]:
    """Non-blank tokens (by offsets) whose characters are not all inside some entity; and their count."""
    covered = np.zeros(len(text) + 1, dtype=np.int64)
    for e in entities:
        covered[e["start"]] += 1
        covered[e["end"]] -= 1
    inside = np.cumsum(covered)[: len(text)] > 0
    kept = [(s, e) for s, e in offsets if e > s and not text[s:e].isspace()]
    return [(s, e) for s, e in kept if not inside[s:e].all()], len(kept)


@pytest.mark.parametrize(
    "arch, grouping, stride",
    [
        ("bert", "offsets", None),  # WordPiece, transformers' merge: nothing lost with windows side by side
        ("roberta", "tokenizer", None),  # byte-level BPE: window edges inside byte-split characters
        ("roberta", "tokenizer", 16),  # overlapping windows merged token by token
    ],
)
def test_100k_character_text_is_complete_and_bounded_by_the_token_budget(pipes, arch, grouping, stride):
    """Nothing silently lost over ~1000 windows.

    The default grouping follows transformers, whose merge of overlapping windows keeps the longer of two
    overlapping entities and so can drop the head of the other: with stride > 0 for a word cut at a window
    edge, and for byte-level BPE even with stride 0, where an edge can fall inside a character split into
    byte tokens (the runtime keeps that for parity; docs/ner.md documents it). ``word_grouping="tokenizer"``
    merges the windows token by token before aggregating, so it loses nothing for any tokenizer and stride.
    """
    pipe = pipes(arch, "token-classification")
    text = (LONG_UNIT * (100_000 // len(LONG_UNIT) + 1))[
        : 100_000 - 6
    ] + " Tokyo"  # an entity at the very end
    assert len(text) == 100_000
    budget = 4 * pipe.max_length
    with _Counting(pipe) as calls:
        entities = pipe(
            text,
            aggregation_strategy="first",
            ignore_labels=[],
            word_grouping=grouping,
            stride=stride,
            max_tokens_per_batch=budget,
        )
    windows = len(calls.shapes) and sum(rows for rows, _ in calls.shapes)
    assert windows > 100  # the text really ran as many windows
    assert all(rows * cols <= budget for rows, cols in calls.shapes), max(r * c for r, c in calls.shapes)
    # nothing silently lost: with no label ignored, every character the tokenizer keeps lies in an entity
    view = pipe.tokenize(text, truncation=False)
    missing, kept = _uncovered_tokens(text, entities, view["offsets"])
    assert kept > 10_000
    assert missing == [], (len(missing), missing[:5])
    assert entities[-1]["end"] == len(text) and entities[-1]["word"].endswith("Tokyo")  # from the last window
    _check_invariants(text, entities, "first")
    if grouping != "tokenizer" or stride is not None:
        return
    # token level: one entity per non-blank token of the whole text, ``index`` its position in the
    # untruncated encoding (the windows are merged into that one sequence)
    tokens = pipe(text, aggregation_strategy="none", ignore_labels=[], word_grouping=grouping)
    expected = [
        i
        for i, (s, e) in enumerate(view["offsets"])
        if e > s and not text[s:e].isspace() and view["word_ids"][i] is not None
    ]
    assert [t["index"] for t in tokens] == expected
    assert all(tuple(view["offsets"][t["index"]]) == (t["start"], t["end"]) for t in tokens)


def test_long_text_default_grouping_documents_transformers_merge_loss(pipes):
    """The documented loss of the default (transformers) grouping on byte-level BPE, which the tokenizer
    grouping fixes: on the same text at stride 0, transformers' heuristic gives overlapping entities (byte
    pieces of one character, window edges inside a character) and its merge of windows' entities keeps only
    the longer of two overlapping ones (about 2% of the tokens here; kept for parity, see docs/ner.md)."""
    pipe = pipes("roberta", "token-classification")
    text = (LONG_UNIT * (100_000 // len(LONG_UNIT) + 1))[:100_000]
    view = pipe.tokenize(text, truncation=False)
    with pytest.warns(UserWarning):  # transformers' fallback-heuristic warning
        legacy = pipe(text, aggregation_strategy="first", ignore_labels=[])
    fixed = pipe(text, aggregation_strategy="first", ignore_labels=[], word_grouping="tokenizer")
    lost, kept = _uncovered_tokens(text, legacy, view["offsets"])
    assert 0 < len(lost) < kept / 10
    assert _uncovered_tokens(text, fixed, view["offsets"])[0] == []


# -- hostile unicode ----------------------------------------------------------------------------------------
UNICODE_TEXTS = [
    "I ❤️ pizza 🍕 👩‍👩‍👧 and 🇳🇱 flags",
    "東京は日本の首都です。北京も大きい。",
    "e\u0301le\u0300ve Zu\u0308rich cafe\u0301 a\u0327\u0301\u0302",  # combining marks
    "مرحبا بالعالم Maria שלום עולם",  # right-to-left scripts
    "\u202eevil\u202c Maria\u200b\u200cGroningen\u200d\ufeff",  # bidi overrides, zero-width characters
    "tab\tbell\x07nul\x00esc\x1b del\x7f Paris\r\n",  # control characters
    "\U0001d54f\U0001d56a \u0130stanbul \u00df \ufb01ne",  # astral letters, İ and ß (case mapping grows), ligature
]


def _squash(text: str) -> str:
    return "".join(text.split())


def _check_invariants(
    text: str,
    entities: list[dict],
    strategy: str,
    pipe=None,
    check_words: bool = False,
    grouping: str = "offsets",
):
    spans = [(e["start"], e["end"]) for e in entities]
    for e in entities:
        start, end = e["start"], e["end"]
        assert type(start) is int and type(end) is int and 0 <= start < end <= len(text), (text, e)
        surface = text[start:end]
        assert surface.strip() == surface != "", (text, e)
    assert spans == sorted(spans), (text, spans)
    # "none"/"simple" are token-level: the byte tokens of one character (byte-level BPE) share its span, so
    # two of their entities may have the same span; spans never overlap partially
    token_level = strategy in ("none", "simple")
    assert all(a[1] <= b[0] or (token_level and a[1] - b[0] <= 1) for a, b in itertools.pairwise(spans)), (
        spans
    )
    if pipe is None:
        return
    if strategy == "none":
        view = pipe.tokenize(text, truncation=False)
        # one window, or windows merged token by token: index is the token's position in the text's encoding
        if len(view["ids"]) <= pipe.max_length or grouping == "tokenizer":
            unk = pipe.tokenizer.special_tokens.get("unk_token")
            for e in entities:
                assert tuple(view["offsets"][e["index"]]) == (e["start"], e["end"]), (text, e)
                if view["tokens"][e["index"]] == unk:
                    assert e["word"] == text[e["start"] : e["end"]]
        return
    if not check_words:
        return
    normalizer = pipe.tokenizer.raw.normalizer
    norm = normalizer.normalize_str if normalizer is not None else (lambda t: t)
    prefix = pipe.tokenizer.continuing_subword_prefix
    for e in entities:
        word = e["word"][len(prefix) :] if prefix and e["word"].startswith(prefix) else e["word"]
        if "\ufffd" in word:  # a group that starts or ends inside a byte-split character
            continue
        assert _squash(norm(word)) == _squash(norm(text[e["start"] : e["end"]])), (text, e)


CASES = [("bert", "offsets"), ("distilbert", "offsets"), ("roberta", "tokenizer"), ("bert", "tokenizer")]


@pytest.mark.parametrize("arch, grouping", CASES)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_hostile_unicode_offsets(pipes, arch, grouping, strategy):
    pipe = pipes(arch, "token-classification")
    texts = UNICODE_TEXTS + [" ".join(UNICODE_TEXTS) * 2]  # the last one needs windows
    stride = None if strategy == "none" else 8
    results = pipe(
        texts, aggregation_strategy=strategy, ignore_labels=[], stride=stride, word_grouping=grouping
    )
    for text, entities in zip(texts, results):
        assert entities or not text.strip()
        _check_invariants(text, entities, strategy, pipe, check_words=True, grouping=grouping)


@settings(
    max_examples=40, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(st.characters(codec="utf-8"), max_size=160),
    case=st.sampled_from(CASES),
    strategy=st.sampled_from(STRATEGIES),
)
def test_offset_invariants_on_random_unicode(pipes, text, case, strategy):
    arch, grouping = case
    pipe = pipes(arch, "token-classification")
    stride = None if strategy == "none" else 8
    entities = pipe(
        text, aggregation_strategy=strategy, ignore_labels=[], stride=stride, word_grouping=grouping
    )
    _check_invariants(text, entities, strategy, pipe, grouping=grouping)


# -- bad options fail before any work -----------------------------------------------------------------------
NER_BAD = [
    ({"aggregation_strategy": "median"}, "aggregation_strategy"),
    ({"aggregation_strategy": "first", "stride": 64}, "stride"),
    ({"aggregation_strategy": "first", "stride": 62}, "stride"),  # 64 minus 2 special tokens
    ({"aggregation_strategy": "first", "stride": -1}, "stride"),
    ({"aggregation_strategy": "none", "stride": 4}, "stride"),
    ({"word_grouping": "words"}, "word_grouping"),
    ({"ignore_labels": 5}, "ignore_labels"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": -3}, "batch_size"),
    ({"batch_size": 2.0}, "batch_size"),
    ({"max_tokens_per_batch": 0}, "max_tokens_per_batch"),
    ({"max_tokens_per_batch": 63}, "max_tokens_per_batch.*too small"),  # below one full window
    ({"top_k": 3}, "unknown option"),
]


@pytest.mark.parametrize("options, message", NER_BAD)
def test_bad_ner_options_raise_before_the_model_runs(pipes, options, message):
    pipe = pipes("bert", "token-classification")
    with _Counting(pipe, forbid=True), pytest.raises(ValueError, match=message) as info:
        pipe(["Maria loves Groningen.", "Paris"], **options)
    assert isinstance(info.value, InputError)


@pytest.mark.parametrize(
    "task, options, message",
    [
        ("text-classification", {"top_k": 0}, "top_k"),
        ("text-classification", {"top_k": -1}, "top_k"),
        ("text-classification", {"top_k": True}, "top_k"),
        ("text-classification", {"function_to_apply": "relu"}, "function_to_apply"),
        ("fill-mask", {"top_k": 0}, "top_k"),
        ("fill-mask", {"targets": []}, "target"),
        ("feature-extraction", {"pooling": "median"}, "pooling"),
        ("feature-extraction", {"normalize": "yes"}, "normalize"),
    ],
)
def test_bad_task_options_raise_before_the_model_runs(pipes, task, options, message):
    pipe = pipes("bert", task)
    text = "Paris [MASK] nice." if task == "fill-mask" else "Paris is nice."
    with _Counting(pipe, forbid=True), pytest.raises(InputError, match=message):
        pipe([text, text], **options)


def test_fill_mask_without_mask_raises_before_the_model_runs(pipes):
    pipe = pipes("bert", "fill-mask")
    with _Counting(pipe, forbid=True), pytest.raises(InputError, match=r"no mask token \(\[MASK\]\).* 1\b"):
        pipe(["Paris [MASK] nice.", "no mask at all", "[MASK]"])
    with _Counting(pipe) as calls:
        assert len(pipe(["Paris [MASK] nice.", "[MASK]"], top_k=2)) == 2
    assert calls.shapes


def test_fill_mask_bundle_without_a_mask_token_is_refused(runtime_bundle, tmp_path):
    import json
    import shutil

    folder = tmp_path / "nomask"
    shutil.copytree(runtime_bundle("bert", "fill-mask"), folder)
    for name in ("special_tokens_map.json", "tokenizer_config.json", "bundle.json"):
        path = folder / name
        if path.exists():
            data = json.loads(path.read_text())
            data.pop("mask_token", None)
            (data.get("special_tokens") or {}).pop("mask_token", None)
            data.get("files", {}).pop("special_tokens_map.json", None)
            data.get("files", {}).pop("tokenizer_config.json", None)
            path.write_text(json.dumps(data))
    with pytest.raises(TaskError, match="mask token") as info:
        bertrt.pipeline("fill-mask", folder, precision="fp32")
    assert isinstance(info.value, ValueError)


def test_bad_pipeline_arguments(runtime_bundle):
    folder = runtime_bundle("bert", "token-classification")
    for threads in (0, -2, 1.5, True):
        with pytest.raises(InputError, match="threads"):
            bertrt.pipeline("ner", folder, precision="fp32", threads=threads)
    with pytest.raises(TaskError, match="unknown task"):
        bertrt.pipeline("summarization", folder, precision="fp32")
    with pytest.raises(bertrt.ModelFileNotFoundError, match="precision"):
        bertrt.pipeline("ner", folder, precision="fp8")  # fp16 is a (GPU) precision now


# -- text the tokenizer cannot take -------------------------------------------------------------------------

TASKS = ("feature-extraction", "fill-mask", "text-classification", "token-classification")


class _NoRun:
    """Makes the pipeline's session fail if the model runs (the checks come before any work)."""

    def __init__(self, pipe):
        self.pipe = pipe

    def __enter__(self):
        def boom(batch):
            raise AssertionError("the model ran although the call should have failed before any work")

        self.pipe.session.run = boom

    def __exit__(self, *exc):
        del self.pipe.session.run


# -- invalid Unicode: an InputError naming the item, for every task -----------------------------------------
@pytest.mark.parametrize("task", TASKS)
@pytest.mark.parametrize("bad, code, at", [("ab\ud800c", "D800", 2), ("x\udcff", "DCFF", 1)])
def test_invalid_unicode_names_the_item_for_every_task(pipes, task, bad, code, at):
    pipe = pipes("bert", task)
    good = "Paris [MASK] nice." if task == "fill-mask" else "Paris is nice."
    if task == "fill-mask":
        bad = bad + " [MASK]"
    with _NoRun(pipe):
        with pytest.raises(InputError) as info:
            pipe([good, good, good, bad])
        assert (
            str(info.value)
            == f"input at index 3 is not valid Unicode: lone surrogate U+{code} at character {at}"
        )
        assert isinstance(info.value, BertrtError) and not isinstance(info.value, TypeError)
        with pytest.raises(InputError, match=rf"^input is not valid Unicode: lone surrogate U\+{code}"):
            pipe(bad)
    assert len(pipe([good, good])) == 2  # the pipeline still works


@pytest.mark.parametrize(
    "pair, field",
    [({"text": "ok", "text_pair": "b\ud800"}, "text_pair"), ({"text": "\udc80", "text_pair": "ok"}, "text")],
)
def test_invalid_unicode_in_a_text_pair_names_text_or_text_pair(pipes, pair, field):
    pipe = pipes("bert", "text-classification")
    with _NoRun(pipe):
        with pytest.raises(InputError, match=rf"^input at index 1 \({field}\) is not valid Unicode: lone"):
            pipe([{"text": "fine", "text_pair": "too"}, pair])
        with pytest.raises(InputError, match=rf"^input \({field}\) is not valid Unicode"):
            pipe(pair)


def test_invalid_unicode_in_tokenize_targets_and_check_inputs(pipes):
    ner = pipes("bert", "token-classification")
    with pytest.raises(
        InputError, match="^text is not valid Unicode: lone surrogate U\\+D800 at character 0"
    ):
        ner.tokenize("\ud800")
    with _NoRun(ner):  # the checks of a call, without the call (the server validates a request with it)
        assert ner.check_inputs(["fine", "also fine"]) is None
        with pytest.raises(InputError, match="^input at index 1 is not valid Unicode"):
            ner.check_inputs(["fine", "\ud800"])
    fill = pipes("bert", "fill-mask")
    with pytest.raises(InputError, match="^target at index 1 is not valid Unicode"):
        fill("Paris [MASK] nice.", targets=["the", "\ud800"])


def test_check_text():
    check_text("plain, émoji 🙂, CJK 中文, RTL \u202e, zero-width \u200b")  # valid Unicode passes
    with pytest.raises(
        InputError, match=r"^line 7 is not valid Unicode: lone surrogate U\+DE00 at character 3$"
    ):
        check_text("abc\ude00", "line 7")


# -- an empty text_pair is no pair --------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_empty_text_pair_matches_transformers(runtime_bundle, tiny_checkpoint, arch):
    transformers = pytest.importorskip("transformers")
    ref = transformers.pipeline(
        "text-classification", model=str(tiny_checkpoint(arch, "text-classification"))
    )
    pipe = bertrt.pipeline(None, runtime_bundle(arch, "text-classification"), precision="fp32", threads=1)
    text = "Maria loves Groningen."
    empty = {"text": text, "text_pair": ""}
    assert_same(ref(empty), pipe(empty))
    assert_same(ref([empty, empty], top_k=None), pipe([empty, empty], top_k=None))
    assert_same(ref(empty, top_k=2), pipe(empty, top_k=2))
    # the same scores as the text alone (transformers' tokenizer drops the empty pair)
    assert pipe(empty) == pipe(text)[0]
    # a None text_pair is no pair too; an empty text with a pair is still a pair
    assert pipe({"text": text, "text_pair": None}) == pipe(text)[0]
    pair_only = {"text": "", "text_pair": text}
    assert_same(ref(pair_only), pipe(pair_only))
