"""bertrt.tasks.token_classification against transformers' TokenClassificationPipeline on the tiny checkpoints, without ONNX.

The engine side mirrors the runtime: windows from the checkpoint's ``tokenizer.json`` through
``tokenizers`` (truncation and stride as the pipeline asks), logits from the same PyTorch model run on
each unpadded window, and the tokenizer callables from :func:`bertrt.tasks.token_classification.tokenizer_hooks`. Also the
``word_grouping="tokenizer"`` extension on the real tokenizers.
"""

from __future__ import annotations

import itertools
import json
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tokenizers import Tokenizer

from bertrt.architectures import ARCHITECTURES
from bertrt.tasks.token_classification import AGGREGATION_STRATEGIES, entities_for_text, tokenizer_hooks
from tests.builders import ARCHS
from tests.corpus import PARITY_TEXTS

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

# Beyond the shared corpus: unknown characters for WordPiece, byte-split characters for byte-level BPE,
# punctuation glued to words, empty and blank texts, a second long text (accents and emoji) for strides.
EXTRA_TEXTS = [
    "ж Ω ﬁne (really?) Corp.",
    "",
    "   ",
    "Corp.\tX\nY  Z",
    "Élodie García 🍕 ate in Zürich. " * 10,
]
TEXTS = PARITY_TEXTS + EXTRA_TEXTS
STRIDES = (8, 30)
SCORE_TOL = 1e-4


class _Reference:
    """One architecture: the transformers pipeline, and the runtime-style tokenizer, hooks and windows."""

    def __init__(self, path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.pipe = transformers.pipeline("token-classification", model=str(path), device="cpu")
        self.model = self.pipe.model
        self.tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        config = json.loads((path / "tokenizer_config.json").read_text())
        self.max_length = config["model_max_length"]
        self.hooks = tokenizer_hooks(self.tokenizer, unk_token=config["unk_token"])
        self.id2label = json.loads((path / "config.json").read_text())["id2label"]  # str keys, as on disk
        self._windows: dict = {}

    def windows(self, text: str, stride: int | None) -> list[dict]:
        key = (text, stride)
        if key not in self._windows:
            self.tokenizer.enable_truncation(self.max_length, stride=stride or 0)
            encoding = self.tokenizer.encode(text)
            encodings = [encoding] + (list(encoding.overflowing) if stride is not None else [])
            windows = []
            for enc in encodings:
                ids = torch.tensor([enc.ids])
                inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
                if "token_type_ids" in self.pipe.tokenizer.model_input_names:
                    inputs["token_type_ids"] = torch.tensor([enc.type_ids])
                with torch.no_grad():
                    logits = self.model(**inputs).logits[0].numpy()
                windows.append(
                    {
                        "input_ids": np.asarray(enc.ids, dtype=np.int64),
                        "offsets": np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2),
                        "special_tokens_mask": np.asarray(enc.special_tokens_mask, dtype=np.int64),
                        "word_ids": np.asarray(
                            [-1 if w is None else w for w in enc.word_ids], dtype=np.int64
                        ),
                        "logits": logits,
                    }
                )
            self._windows[key] = windows
        return self._windows[key]

    def engine(self, text, strategy, ignore_labels, stride=None, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return entities_for_text(
                text,
                self.windows(text, stride),
                self.id2label,
                strategy,
                ignore_labels,
                **self.hooks,
                **kwargs,
            )

    def engine_windows(self, text, windows, strategy, ignore_labels, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return entities_for_text(
                text, windows, self.id2label, strategy, ignore_labels, **self.hooks, **kwargs
            )

    def transformers(self, text, strategy, ignore_labels, stride=None):
        kwargs = {"aggregation_strategy": strategy, "ignore_labels": list(ignore_labels)}
        if stride is not None:
            kwargs["stride"] = stride
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return self.pipe(text, **kwargs)


@pytest.fixture(scope="module")
def reference(tiny_checkpoint):
    cache = {}

    def get(arch):
        if arch not in cache:
            cache[arch] = _Reference(tiny_checkpoint(arch, "token-classification"))
        return cache[arch]

    # The models are tiny: intra-op threads only add synchronization (about 100x slower on 2 cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield get
    torch.set_num_threads(threads)


def _assert_same(got, want, where):
    assert len(got) == len(want), f"{where}: {len(got)} entities, transformers {len(want)}\n{got}\n{want}"
    for g, w in zip(got, want):
        assert list(g) == list(w), f"{where}: keys {list(g)} != {list(w)}"
        for key, value in w.items():
            if key == "score":
                assert type(g[key]) is float
                assert abs(g[key] - float(value)) <= SCORE_TOL, f"{where}: score {g} vs {w}"
            else:
                assert g[key] == value, f"{where}: {key} {g} vs {w}"
                if key in ("start", "end", "index"):
                    assert type(g[key]) is int


@pytest.mark.parametrize("strategy", AGGREGATION_STRATEGIES)
@pytest.mark.parametrize("arch", ARCHS)
def test_same_entities_as_transformers(reference, arch, strategy):
    ref = reference(arch)
    compared = 0
    for text in TEXTS:
        # every entity (O included), then transformers' default ignore_labels
        for ignore_labels in ((), ("O",)):
            want = ref.transformers(text, strategy, ignore_labels)
            _assert_same(ref.engine(text, strategy, ignore_labels), want, f"{arch}/{strategy}/{text[:20]!r}")
            compared += len(want)
    assert compared > 3 * len(TEXTS)  # the comparison covered real entities, not empty lists


@pytest.mark.parametrize("strategy", [s for s in AGGREGATION_STRATEGIES if s != "none"])
@pytest.mark.parametrize("arch", ARCHS)
def test_long_texts_with_stride_merge_like_transformers(reference, arch, strategy):
    ref = reference(arch)
    long_texts = [t for t in TEXTS if len(ref.windows(t, 8)) > 1]
    assert len(long_texts) == 2  # both long texts really need several windows
    for text in long_texts:
        for stride in STRIDES:
            for ignore_labels in (("O",), ()):  # every entity last: `got` below keeps them all
                want = ref.transformers(text, strategy, ignore_labels, stride)
                got = ref.engine(text, strategy, ignore_labels, stride)
                _assert_same(got, want, f"{arch}/{strategy}/stride={stride}/{text[:20]!r}")
            # the overlap really produced duplicates that the merge removed
            windows = ref.windows(text, stride)
            per_window = sum(len(ref.engine_windows(text, [w], strategy, ())) for w in windows)
            assert per_window > len(ref.engine(text, strategy, (), stride))
            # nothing is cut: the entities reach the end of the text
            assert max(e["end"] for e in got) >= len(text.rstrip()) - 1


def test_hooks_match_the_transformers_tokenizer(reference):
    for arch in ARCHS:
        ref = reference(arch)
        hf = ref.pipe.tokenizer
        # transformers' own test (gather_pre_entities): Unigram models have no such attribute at all
        assert ref.hooks["word_aware"] == bool(
            getattr(hf._tokenizer.model, "continuing_subword_prefix", None)
        )
        assert ref.hooks["word_aware"] == (ARCHITECTURES[arch].tokenizer_family == "wordpiece")
        assert ref.hooks["unk_token_id"] == hf.unk_token_id
        tokens = hf.convert_ids_to_tokens(hf("Élodie García visited Zürich 🍕")["input_ids"])[1:-1]
        assert ref.hooks["decode_tokens"](tokens) == hf.convert_tokens_to_string(tokens)
        assert [ref.hooks["id_to_token"](i) for i in range(10)] == hf.convert_ids_to_tokens(list(range(10)))
    assert reference("roberta").hooks["word_aware"] is False and reference("bert").hooks["word_aware"] is True


@pytest.mark.parametrize("arch", ARCHS)
def test_the_corpus_reaches_each_tokenizer_familys_quirks(reference, arch):
    """The parity above covers what the heuristic does on each family (docs/ner.md): Unigram's lone ``▁``
    pieces and fused unknown characters; offsets that start at the space before a word (Metaspace
    without WhitespaceSplit, byte-level BPE under a plain template); WordPiece's unknown token."""
    ref = reference(arch)
    family = ARCHITECTURES[arch].tokenizer_family
    lone = unknown = spaced = 0
    for text in TEXTS:
        encoding = ref.tokenizer.encode(text)
        pieces = zip(encoding.ids, encoding.tokens, encoding.offsets, encoding.special_tokens_mask)
        for token_id, token, (start, _), special in pieces:
            if not special:
                lone += token == "▁"
                unknown += token_id == ref.hooks["unk_token_id"]  # Unigram's token is the surface
                spaced += text[start : start + 1] == " "
    if family == "unigram":
        assert lone > 0 and unknown > 0
    if family == "wordpiece":
        assert unknown > 0
    # the hub-style XLM-R layout (WhitespaceSplit) and RoBERTa's trimmed offsets exclude the space
    assert (spaced > 20) == (arch not in ("xlm-roberta", "roberta") and family != "wordpiece")


# ------------------------------------------------------------------------- word_grouping="tokenizer"


def _every_token_b_per(windows, id2label):
    """The same windows with logits that label every token B-PER: each word becomes its own entity."""
    b_per = next(int(k) for k, v in id2label.items() if v == "B-PER")
    out = []
    for w in windows:
        logits = np.zeros_like(w["logits"])
        logits[:, b_per] = 10.0
        out.append({**w, "logits": logits})
    return out


def _words(ref, text, grouping, strategy="first"):
    windows = _every_token_b_per(ref.windows(text, None), ref.id2label)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return entities_for_text(
            text, windows, ref.id2label, strategy, (), **ref.hooks, word_grouping=grouping
        )


def test_tokenizer_grouping_fixes_roberta_byte_split_characters(reference):
    ref = reference("roberta")
    text = "ж Ω"
    legacy = _words(ref, text, "offsets")
    spans = [(e["start"], e["end"]) for e in legacy]
    # the heuristic starts a word at each byte piece of a character: duplicate spans, a zero-width "word"
    assert len(spans) > len(set(spans)) and any(s == e for s, e in spans)
    fixed = _words(ref, text, "tokenizer")
    assert [text[e["start"] : e["end"]] for e in fixed] == ["ж", "Ω"]
    assert [e["word"].strip() for e in fixed] == ["ж", "Ω"]


@pytest.mark.parametrize(
    "text", ["First line\nSecond line with Paris\n\nThird", "tab\tseparated\tBarack\tObama"]
)
def test_tokenizer_grouping_fixes_words_after_newlines_and_tabs(reference, text):
    ref = reference("roberta")
    legacy = [text[e["start"] : e["end"]] for e in _words(ref, text, "offsets")]
    assert any("\n" in s or "\t" in s for s in legacy)  # the heuristic glues words across a newline/tab
    fixed = _words(ref, text, "tokenizer")
    assert [text[e["start"] : e["end"]] for e in fixed] == text.split()
    assert [e["word"].strip() for e in fixed] == text.split()


def test_tokenizer_grouping_separates_punctuation_like_the_pre_tokenizer(reference):
    ref = reference("roberta")
    text = "Acme Corp. (really?)"
    assert [text[e["start"] : e["end"]] for e in _words(ref, text, "offsets")] == [
        "Acme",
        "Corp.",
        "(really?)",
    ]
    assert [text[e["start"] : e["end"]] for e in _words(ref, text, "tokenizer")] == [
        "Acme",
        "Corp",
        ".",
        "(",
        "really",
        "?)",
    ]


@pytest.mark.parametrize("arch", [a for a in ARCHS if ARCHITECTURES[a].tokenizer_family == "wordpiece"])
def test_tokenizer_grouping_keeps_wordpiece_words(reference, arch):
    # WordPiece's ## rule already finds the pre-tokenizer's words: the two groupings agree there
    ref = reference(arch)
    for text in TEXTS:
        for strategy in ("first", "average", "max"):
            assert _words(ref, text, "tokenizer", strategy) == _words(ref, text, "offsets", strategy), text


@pytest.mark.parametrize("arch", ARCHS)
def test_tokenizer_grouping_offsets_invariants_on_model_logits(reference, arch):
    ref = reference(arch)
    checked = 0
    for text in TEXTS:
        stride = 8 if len(ref.windows(text, 8)) > 1 else None
        for strategy in AGGREGATION_STRATEGIES:
            entities = ref.engine(
                text, strategy, (), None if strategy == "none" else stride, word_grouping="tokenizer"
            )
            for e in entities:
                assert 0 <= e["start"] < e["end"] <= len(text), (text, e)
                surface = text[e["start"] : e["end"]]
                assert surface.strip() == surface != "", (text, e)
            if strategy in ("first", "average", "max"):
                spans = [(e["start"], e["end"]) for e in entities]
                assert spans == sorted(spans)
                assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), (text, spans)
            checked += len(entities)
    assert checked > 0


def _random_windows(ref, text, seed):
    """Windows of ``text`` (stride 8 when it needs several) with random logits: no model run."""
    ref.tokenizer.enable_truncation(ref.max_length, stride=8)
    encoding = ref.tokenizer.encode(text)
    rng = np.random.default_rng(seed)
    windows = []
    for enc in [encoding] + list(encoding.overflowing):
        windows.append(
            {
                "input_ids": np.asarray(enc.ids, dtype=np.int64),
                "offsets": np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2),
                "special_tokens_mask": np.asarray(enc.special_tokens_mask, dtype=np.int64),
                "word_ids": np.asarray([-1 if w is None else w for w in enc.word_ids], dtype=np.int64),
                "logits": rng.normal(0, 3, size=(len(enc.ids), len(ref.id2label))).astype(np.float32),
            }
        )
    return windows


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    text=st.text(st.characters(codec="utf-8"), max_size=120),
    seed=st.integers(0, 2**32 - 1),
    strategy=st.sampled_from(("first", "average", "max")),
    arch=st.sampled_from(ARCHS),
)
def test_tokenizer_grouping_offsets_invariants_on_random_unicode(reference, text, seed, strategy, arch):
    ref = reference(arch)
    windows = _random_windows(ref, text, seed)
    entities = ref.engine_windows(text, windows, strategy, (), word_grouping="tokenizer")
    spans = [(e["start"], e["end"]) for e in entities]
    for start, end in spans:
        assert 0 <= start < end <= len(text)
        assert not text[start:end].isspace()
    assert spans == sorted(spans)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), spans
