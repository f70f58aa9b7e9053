"""Token-classification post-processing: logits of a text's windows in, entities out.

Pure numpy and Python; no model, no tokenizer object. The result matches
``transformers.TokenClassificationPipeline`` (transformers 4.57) for the same logits and tokenization:
the same keys in the same order (``entity``/``entity_group``, ``score``, ``index``, ``word``, ``start``,
``end``), the same decisions, the same order of entities, and the same merging of overlapping windows
when ``stride`` is used (default ``word_grouping``); numbers are plain Python ``float``/``int``.

How transformers builds entities (and so how this module does):

* ``scores = softmax(logits)`` per token (shift by the row max, exp, normalize), in float32.
* Special tokens (``special_tokens_mask``) are dropped. Each other token gets ``word =
  id_to_token(id)`` (the surface ``text[start:end]`` for the unknown token) and an ``is_subword`` flag:
  for tokenizers whose model has a ``continuing_subword_prefix`` (WordPiece ``##``) a token is a
  sub-word when its token string and its surface differ in length; otherwise (byte-level BPE, ...)
  when it does not start the text and neither the character before it nor its first character is a
  space. The unknown token is never a sub-word.
* ``none``: one entity per token (argmax label). ``simple``: the same tokens, grouped.
  ``first``/``average``/``max``: tokens are first fused into words (a word is a token followed by its
  sub-words) whose label is the first token's argmax, the argmax of the mean scores, or the argmax of
  the token with the highest score; then the words are grouped.
* Grouping: consecutive entities join while they share the tag (``B-``/``I-`` stripped) and the next
  one is not a ``B-``; a group's score is the mean of its members' scores, its ``word`` is
  ``decode_tokens`` of the members' words, its label the first member's label after its first ``-``.
* Entities whose label is in ``ignore_labels`` are removed, per window; with several windows the
  survivors are sorted by ``start`` and overlapping ones reduced to the longer (then higher-scoring) one.
  That merge can silently drop text: an entity that starts inside an earlier one and is longer replaces
  it, and the earlier one's head is lost (a word cut at a window edge with ``stride > 0``; with byte-level
  BPE even with stride 0, when an edge falls inside a character split into several byte tokens: about 2%
  of the tokens of a 100,000-character RoBERTa text in tests/test_reliability_inputs.py). The default
  mode keeps this for parity; **for long texts use ``word_grouping="tokenizer"``**, which merges windows
  without loss (point 3 below).

Beyond transformers, ``word_grouping="tokenizer"`` trusts the tokenizer instead of the heuristic:

1. for first/average/max, a token continues the word of the previous kept token exactly
   when both have the same word id (``word_ids``, from the pre-tokenizer); the ``is_subword`` rule and
   its unknown-token exception are not used, and no fallback-heuristic warning is raised;
2. for every strategy, tokens whose surface ``text[start:end]`` is empty or whitespace are dropped like
   special tokens (byte-level BPE emits such ``Ġ``/``Ċ``/``ĉ`` tokens, often zero-width, for newlines,
   tabs and runs of spaces; WordPiece never does), so every entity has ``start < end`` and a
   non-blank surface;
3. several windows are merged at the token level *before* aggregation: the overflow windows' repeated
   tokens are recognized by (id, offsets) alignment, each token keeps the logits of the window where it
   is farthest from an edge (max-context rule), and the one token sequence of the text is aggregated
   once. No entity merge is needed, so no token is dropped; ``index`` is the token's position in the
   text's untruncated encoding (special tokens included, as for one window). For a text that fits one
   window the result is the same as without this step.

This fixes the heuristic's failures on tokenizers without a sub-word prefix (RoBERTa-style byte-level
BPE): a character split into several byte tokens (they share one offset span, so the heuristic starts
a word at each piece: duplicate spans, or a word cut in two); a word after a newline or a tab, glued to
the previous word because no *space* precedes it; zero-width blank tokens that become entities of
their own and cut an entity in two. It also separates punctuation as the pre-tokenizer does (``Corp.``
gives ``Corp`` and ``.``), where the heuristic glues it to the word before. With WordPiece the word ids
and the ``##`` rule agree on the test corpus; they can differ only where a token's normalized length differs
from its surface (ligatures, decomposed accents) or around the unknown token.
``word``, scores, labels and the grouping of words into entities are computed as in transformers.
"""

from __future__ import annotations

import functools
import itertools
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from .errors import InputError

__all__ = [
    "AGGREGATION_STRATEGIES",
    "WORD_GROUPINGS",
    "entities_for_text",
    "merge_overlapping",
    "softmax",
    "tokenizer_hooks",
    "validate_options",
]

#: aggregation strategies, as in transformers' ``AggregationStrategy``.
AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")
#: how first/average/max find words: transformers' offset heuristic, or the tokenizer's word ids.
WORD_GROUPINGS = ("offsets", "tokenizer")
_WORD_STRATEGIES = frozenset({"first", "average", "max"})
_WINDOW_KEYS = ("input_ids", "offsets", "special_tokens_mask", "word_ids", "logits")
_FALLBACK_WARNING = "Tokenizer does not support real words, using fallback heuristic"


# --------------------------------------------------------------------------------------------- options


def _strategy_name(value) -> str | None:
    """Lower-case name of a strategy given as str, transformers' AggregationStrategy, or None."""
    if value is None:
        return "none"
    value = getattr(value, "value", value)  # transformers' AggregationStrategy is a str Enum
    return value.lower() if isinstance(value, str) else None


def validate_options(
    aggregation_strategy="none",
    ignore_labels=None,
    stride=None,
    word_grouping="offsets",
    *,
    max_length: int | None = None,
    num_special_tokens: int = 0,
    grouped_entities: bool | None = None,
    ignore_subwords: bool | None = None,
) -> dict:
    """Check and normalize the token-classification options; one :class:`InputError` lists every problem.

    Returns ``{"aggregation_strategy": str, "ignore_labels": tuple[str, ...], "stride": int | None,
    "word_grouping": str}``.

    * ``aggregation_strategy``: one of :data:`AGGREGATION_STRATEGIES` (any case, or transformers'
      ``AggregationStrategy``); None means ``"none"``.
    * ``ignore_labels``: an iterable of label strings (None means ``("O",)``, a single str one label).
    * ``stride``: None or an int ``>= 0``; like transformers, not allowed with ``"none"``. With
      ``max_length`` (the model's max tokens per window) it must leave room for new tokens:
      ``stride < max_length - num_special_tokens`` (transformers checks only ``stride < max_length``
      and lets the tokenizer fail later on the rest).
    * ``word_grouping``: one of :data:`WORD_GROUPINGS`.
    * ``grouped_entities``/``ignore_subwords``: transformers' deprecated flags; when either is given
      they decide the strategy as transformers does (both -> first, grouped only -> simple, else none).
    """
    problems: list[str] = []

    if grouped_entities is not None or ignore_subwords is not None:
        if grouped_entities and ignore_subwords:
            aggregation_strategy = "first"
        elif grouped_entities:
            aggregation_strategy = "simple"
        else:
            aggregation_strategy = "none"
        warnings.warn(
            "`grouped_entities`/`ignore_subwords` are deprecated (as in transformers); "
            f'using aggregation_strategy="{aggregation_strategy}"',
            UserWarning,
            stacklevel=2,
        )

    strategy = _strategy_name(aggregation_strategy)
    if strategy not in AGGREGATION_STRATEGIES:
        problems.append(
            f"aggregation_strategy={aggregation_strategy!r} is unknown; expected one of "
            f"{', '.join(AGGREGATION_STRATEGIES)}"
        )

    labels: tuple[str, ...] = ()
    if ignore_labels is None:
        labels = ("O",)
    elif isinstance(ignore_labels, str):
        labels = (ignore_labels,)
    elif isinstance(ignore_labels, Iterable) and not isinstance(ignore_labels, (bytes, Mapping)):
        labels = tuple(ignore_labels)
        bad = [label for label in labels if not isinstance(label, str)]
        if bad:
            problems.append(
                f"ignore_labels must hold label strings; got {bad[0]!r} ({type(bad[0]).__name__})"
            )
    else:
        problems.append(f"ignore_labels must be a list of label strings, got {type(ignore_labels).__name__}")

    if stride is not None:
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)):
            problems.append(f"stride must be an int or None, got {type(stride).__name__}")
        else:
            stride = int(stride)
            if stride < 0:
                problems.append(f"stride={stride} must be >= 0")
            elif max_length is not None and stride >= max_length - num_special_tokens:
                problems.append(
                    f"stride={stride} must be less than the max length {max_length} minus the "
                    f"{num_special_tokens} special tokens of a window (at most {max_length - num_special_tokens - 1})"
                )
        if strategy == "none":
            problems.append(
                'stride is given to process all the text but aggregation_strategy="none"; choose '
                "simple, first, average or max"
            )

    grouping = word_grouping.lower() if isinstance(word_grouping, str) else word_grouping
    if grouping not in WORD_GROUPINGS:
        problems.append(
            f"word_grouping={word_grouping!r} is unknown; expected one of {', '.join(WORD_GROUPINGS)}"
        )

    if problems:
        raise InputError("invalid token-classification options: " + "; ".join(problems))
    return {
        "aggregation_strategy": strategy,
        "ignore_labels": labels,
        "stride": stride,
        "word_grouping": grouping,
    }


# ---------------------------------------------------------------------------------------------- arrays


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis as transformers computes it (shift by the max, exp, normalize)."""
    logits = np.asarray(logits)
    if logits.dtype != np.float64:
        logits = logits.astype(np.float32, copy=False)
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def _labels(id2label, num_labels: int) -> list[str]:
    labels = []
    is_mapping = isinstance(id2label, Mapping)
    for i in range(num_labels):
        label = id2label.get(i, id2label.get(str(i))) if is_mapping else None
        if label is None:
            raise InputError(
                f"the model gives {num_labels} logits per token but id2label has no label for index {i} "
                f"(it has {len(id2label) if is_mapping else 0} labels)"
            )
        labels.append(str(label))
    return labels


@functools.lru_cache(maxsize=64)
def _cached_label_table(items: tuple, types: tuple, num_labels: int) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    return _table(_labels(dict(items), num_labels))


def _table(labels: list[str]) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    return labels, [_tag(label) for label in labels], [label.split("-", 1)[-1] for label in labels]


def _label_table(id2label, num_labels: int) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(label, (B|I, tag), group name) of each label index; cached by id2label's contents (the labels'
    types included: ``True == 1`` but their labels differ)."""
    if type(id2label) is dict:
        try:
            return _cached_label_table(tuple(id2label.items()), tuple(map(type, id2label.values())), num_labels)
        except TypeError:  # an unhashable key or label: not cached
            pass
    return _table(_labels(id2label, num_labels))


def _check_window(k: int, window: Mapping, text_len: int) -> tuple[np.ndarray, ...]:
    """The window's arrays (ids, offsets, special, word_ids, scores) after checking them; scores are the
    window's ``scores`` when given, else ``softmax(logits)``."""
    missing = [key for key in _WINDOW_KEYS[:4] if key not in window]
    if "logits" not in window and "scores" not in window:
        missing.append("logits (or scores)")
    if missing:
        raise InputError(f"window {k} lacks {', '.join(missing)}")
    ids = np.asarray(window["input_ids"]).reshape(-1)
    offsets = np.asarray(window["offsets"])
    special = np.asarray(window["special_tokens_mask"]).reshape(-1)
    word_ids = np.asarray(window["word_ids"]).reshape(-1)
    given = "scores" if "scores" in window else "logits"
    values = np.asarray(window[given])
    if word_ids.dtype == object:  # a list straight from Encoding.word_ids, with None
        word_ids = np.array([-1 if w is None else w for w in word_ids.tolist()], dtype=np.int64)
    n = ids.shape[0]
    if (
        offsets.shape != (n, 2)
        or special.shape != (n,)
        or word_ids.shape != (n,)
        or values.ndim != 2
        or values.shape[0] != n
    ):
        raise InputError(
            f"window {k}: arrays disagree: input_ids {ids.shape}, offsets {offsets.shape}, special_tokens_mask "
            f"{special.shape}, word_ids {word_ids.shape}, {given} {values.shape} (expected n, (n, 2), n, n, (n, L))"
        )
    if given == "logits":
        if values.size and (np.isnan(values).any() or np.isposinf(values).any()):
            raise InputError(f"window {k}: logits hold NaN or +inf; the model output is unusable")
    elif values.size and not np.isfinite(values).all():
        raise InputError(f"window {k}: scores hold NaN or inf; expected the softmax of the logits")
    if n and (offsets.min() < 0 or offsets.max() > text_len or np.any(offsets[:, 0] > offsets[:, 1])):
        raise InputError(f"window {k}: offsets outside the text of {text_len} characters")
    return ids, offsets, special, word_ids, _scores(values, given)


def _scores(values: np.ndarray, given: str) -> np.ndarray:
    if given == "logits":
        return softmax(values)
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float32)


def _trusted_window(window: Mapping) -> tuple[np.ndarray, ...]:
    """A window built by the pipeline itself: int64 arrays of matching lengths, word_ids with -1, finite
    logits (or their precomputed ``scores``); nothing is checked."""
    given = "scores" if "scores" in window else "logits"
    return (
        window["input_ids"],
        window["offsets"],
        window["special_tokens_mask"],
        window["word_ids"],
        _scores(np.asarray(window[given]), given),
    )


# --------------------------------------------------------------------------------------------- grouping


def _tag(label: str) -> tuple[str, str]:
    """transformers' get_tag: ("B"|"I", tag); a label without a B-/I- prefix counts as I-."""
    if label.startswith("B-"):
        return "B", label[2:]
    if label.startswith("I-"):
        return "I", label[2:]
    return "I", label


def _runs(label_ids: list[int], tags: list[tuple[str, str]]) -> list[tuple[int, int]]:
    """``(lo, hi)`` of each group of consecutive items (by label index): an item joins the previous one
    when it has the same tag and is not a ``B-`` (transformers' group_entities)."""
    runs: list[tuple[int, int]] = []
    lo, last_tag = 0, None
    for j, label in enumerate(label_ids):
        bi, tag = tags[label]
        if j and not (tag == last_tag and bi != "B"):
            runs.append((lo, j))
            lo = j
        last_tag = tag
    if label_ids:
        runs.append((lo, len(label_ids)))
    return runs


def merge_overlapping(entities: list[dict]) -> list[dict]:
    """Merge entities of overlapping windows as transformers does.

    Sorted (stably) by ``start``; an entity starting inside the kept one replaces it when it is longer,
    or as long with a higher score; otherwise it is dropped.
    """
    if not entities:
        return []
    ordered = sorted(entities, key=lambda e: e["start"])
    merged: list[dict] = []
    previous = ordered[0]
    for entity in ordered:
        if previous["start"] <= entity["start"] < previous["end"]:
            length, previous_length = entity["end"] - entity["start"], previous["end"] - previous["start"]
            if length > previous_length or (
                length == previous_length and entity["score"] > previous["score"]
            ):
                previous = entity
        else:
            merged.append(previous)
            previous = entity
    merged.append(previous)
    return merged


def _word_starts(
    text: str,
    tokens: list[str] | None,
    starts: list[int],
    ends: list[int],
    unknown_at: list[int],
    word_ids: np.ndarray | None,
    *,
    word_aware: bool,
    grouping: str,
) -> list[int]:
    """Positions (into the kept tokens, at least one) where a new word begins, ascending, 0 first.

    ``tokens`` (token strings, the unknown token's surface) are read only by the offsets rule of a
    word-aware tokenizer, ``word_ids`` (of the kept tokens) only by the tokenizer rule;
    ``unknown_at``: positions of the unknown token, which never continues a word (offsets rule).
    """
    if grouping == "tokenizer":
        new = np.ones(len(starts), dtype=bool)
        new[1:] = (word_ids[1:] != word_ids[:-1]) | (word_ids[1:] < 0)
        return np.flatnonzero(new).tolist()
    if word_aware:  # a sub-word's token string is longer than its surface (the ## prefix)
        new = [len(t) == e - s for t, s, e in zip(tokens, starts, ends)]
    else:  # no space before it or at its start
        new = [s == 0 or " " in text[s - 1 : s + 1] for s in starts]
    for j in unknown_at:
        new[j] = True
    new[0] = True
    return [j for j, is_new in enumerate(new) if is_new]


def _window_entities(
    text: str,
    arrays: tuple[np.ndarray, ...],
    table: tuple[list[str], list[tuple[str, str]], list[str]],
    strategy: str,
    ignore: frozenset,
    *,
    id_to_token: Callable[[int], str],
    decode_tokens: Callable[[list[str]], str],
    word_aware: bool,
    grouping: str,
    unk_token_id: int | None,
) -> list[dict]:
    """Entities of one window (``arrays``: ids, offsets, special, word_ids, softmax scores), filtered.

    Labels, scores and groups are decided for every token first; the ``word`` strings (token strings
    joined by the decoder, the costly part) are built only for the entities that pass ``ignore``.
    """
    ids, offsets, special, word_ids, scores = arrays
    labels, tags, group_names = table
    keep = np.flatnonzero(special == 0)
    if grouping == "tokenizer" and keep.size:
        # Whitespace-only / zero-width tokens (byte-level BPE's Ġ, Ċ, ĉ) are not words.
        surface_blank = np.fromiter(
            (text[s:e].isspace() or s == e for s, e in offsets[keep].tolist()), dtype=bool, count=keep.size
        )
        keep = keep[~surface_blank]
    k = keep.size
    if k == 0:
        return []

    scores = scores[keep]  # (k, L)
    best = scores.argmax(axis=-1)
    best_score = scores.max(axis=-1)  # the argmax's own value
    best_list, score_list = best.tolist(), best_score.tolist()
    kept_ids = ids[keep]
    starts, ends = offsets[keep].T.tolist()
    unknown_at = np.flatnonzero(kept_ids == unk_token_id).tolist() if unk_token_id is not None else []
    unknown_set = frozenset(unknown_at)
    kept_ids = kept_ids.tolist()
    tokens: list[str] | None = None  # every kept token's string, when the word rule reads them

    def token(j: int) -> str:  # the unknown token's word is its surface
        if tokens is not None:
            return tokens[j]
        return text[starts[j] : ends[j]] if j in unknown_set else id_to_token(kept_ids[j])

    if strategy == "none":
        index_list = keep.tolist()
        return [
            {
                "entity": labels[best_list[j]],
                "score": score_list[j],
                "index": index_list[j],
                "word": token(j),
                "start": starts[j],
                "end": ends[j],
            }
            for j in range(k)
            if labels[best_list[j]] not in ignore
        ]
    if strategy == "simple":
        word_lo, word_hi = list(range(k)), list(range(1, k + 1))  # one "word" per token
        word_label, word_score = best_list, score_list
        words_joined = False
    else:  # first / average / max: tokens -> words (one label each) -> groups of words
        if grouping == "offsets" and word_aware:
            tokens = list(map(id_to_token, kept_ids))
            for j in unknown_at:
                tokens[j] = text[starts[j] : ends[j]]
        word_lo = _word_starts(
            text,
            tokens,
            starts,
            ends,
            unknown_at,
            word_ids[keep] if grouping == "tokenizer" else None,
            word_aware=word_aware,
            grouping=grouping,
        )
        word_hi = [*word_lo[1:], k]
        if strategy == "first":
            word_label = [best_list[j] for j in word_lo]
            word_score = [score_list[j] for j in word_lo]
        else:
            lo = np.asarray(word_lo, dtype=np.int64)
            hi = np.asarray(word_hi, dtype=np.int64)
            if strategy == "max":
                # first token holding the word's highest score (Python's max keeps the first of equals)
                word_max = np.maximum.reduceat(best_score, lo)
                token_word = np.repeat(np.arange(lo.size), hi - lo)
                is_top = best_score == word_max[token_word]
                top = np.full(lo.size, k, dtype=np.int64)
                np.minimum.at(top, token_word[is_top], np.flatnonzero(is_top))
                word_label, word_score = best[top].tolist(), best_score[top].tolist()
            else:  # average
                mean = np.add.reduceat(scores, lo, axis=0) / (hi - lo)[:, None].astype(scores.dtype)
                label = mean.argmax(axis=-1)
                word_label, word_score = label.tolist(), mean[np.arange(lo.size), label].tolist()
        words_joined = True

    def word(w: int) -> str:  # a word's string: its tokens joined by the decoder
        return decode_tokens([token(j) for j in range(word_lo[w], word_hi[w])])

    entities = []
    for w_lo, w_hi in _runs(word_label, tags):
        name = group_names[word_label[w_lo]]
        if name in ignore:
            continue
        members = range(w_lo, w_hi)
        entities.append(
            {
                "entity_group": name,
                "score": sum(word_score[w_lo:w_hi]) / (w_hi - w_lo),  # float64 mean of float32 scores
                "word": decode_tokens([word(w) for w in members] if words_joined else [token(j) for j in members]),
                "start": starts[word_lo[w_lo]],
                "end": ends[word_hi[w_hi - 1] - 1],
            }
        )
    return entities


# ------------------------------------------------------------------------------- token-level window merge


def _repeats(prev: tuple[np.ndarray, np.ndarray], cur: tuple[np.ndarray, np.ndarray], o: int) -> bool:
    """Whether the first ``o`` content tokens of ``cur`` are the last ``o`` of ``prev`` (ids and offsets)."""
    (p_ids, p_off), (c_ids, c_off) = prev, cur
    p = p_ids.shape[0]
    return bool(np.array_equal(p_ids[p - o :], c_ids[:o]) and np.array_equal(p_off[p - o :], c_off[:o]))


def _candidate_overlaps(prev: tuple[np.ndarray, np.ndarray], cur: tuple[np.ndarray, np.ndarray]) -> set[int]:
    """Every ``o`` (0 included) for which ``cur`` could start with the last ``o`` tokens of ``prev``.

    Only the positions of ``prev`` equal to ``cur``'s first token are tried, so the cost is about the
    length of the overlap region, not its square.
    """
    (p_ids, p_off), (c_ids, c_off) = prev, cur
    span = min(p_ids.shape[0], c_ids.shape[0])
    if span == 0:
        return {0}
    tail_ids, tail_off = p_ids[p_ids.shape[0] - span :], p_off[p_off.shape[0] - span :]
    first = np.flatnonzero((tail_ids == c_ids[0]) & (tail_off == c_off[0]).all(axis=1))
    return {0} | {span - q for q in first.tolist() if _repeats(prev, cur, span - q)}


def _overlaps(keys: list[tuple[np.ndarray, np.ndarray]], stride: int | None) -> list[int]:
    """How many leading content tokens of each window after the first repeat the previous window's.

    ``keys``: (ids (n,), offsets (n, 2)) of each window's content tokens. A token is identified by its id
    *and* its offsets: ids alone repeat all over a text; offsets alone repeat within a character split
    into several byte tokens (byte-level BPE), where a window edge can fall, so that the last token of
    one window and the first of the next share their offsets (and differ in id).

    The tokenizer's overflow windows each repeat exactly ``stride`` tokens of the one before (fewer only
    when a window is shorter). With ``stride`` given that is checked. Without it, the overlap is the
    largest one that every pair of consecutive windows admits: a single pair can be ambiguous where a
    character's byte tokens repeat one id (U+0820 is E0 A0 A0) and the edge falls between the equal ones,
    which the other pairs decide; then each new token must not start before the previous window's last one.
    """
    pairs = list(itertools.pairwise(keys))
    if stride is not None:
        out = []
        for k, (prev, cur) in enumerate(pairs, start=1):
            o = min(stride, prev[0].shape[0], cur[0].shape[0])
            if not _repeats(prev, cur, o):
                raise InputError(
                    f"window {k} does not start with the last {o} tokens of window {k - 1} "
                    f"(stride={stride}): the windows are not consecutive overflow windows of this text"
                )
            out.append(o)
        return out
    common = set.intersection(*(_candidate_overlaps(prev, cur) for prev, cur in pairs))
    o = max(common)  # 0 is always a candidate
    for k, (prev, cur) in enumerate(pairs, start=1):
        if o < cur[0].shape[0] and prev[0].shape[0] and cur[1][o, 0] < prev[1][-1, 0]:
            raise InputError(
                f"window {k} does not continue window {k - 1}: its first new token {cur[1][o].tolist()} "
                f"starts before the last token of window {k - 1} {prev[1][-1].tolist()}, and no overlap "
                "fits every pair of windows; pass the windows' stride"
            )
    return [o] * len(pairs)


def _merge_windows(checked: list[tuple[np.ndarray, ...]], stride) -> tuple[np.ndarray, ...]:
    """The text's one token sequence from its overlapping windows, as a single window's arrays.

    Content tokens (``special_tokens_mask == 0``) of consecutive windows are chained, each overflow
    window's repeated head (see :func:`_overlaps`) is not appended again. A token seen in several windows
    takes its logits (and word id) from the window where it sits farthest from an edge,
    ``min(tokens before it, tokens after it)`` among the window's content tokens (the max-context rule;
    on a tie the earlier window). The arrays start with the first window's leading special tokens
    (``[CLS]``/``<s>``), so a position in them is the token's position in the text's untruncated
    encoding; no trailing special token is added (it would be dropped anyway). Linear in the total
    number of window tokens.
    """
    contents = [np.flatnonzero(a[2] == 0) for a in checked]  # rows of the content tokens
    keys = [(a[0][rows], a[1][rows]) for a, rows in zip(checked, contents)]
    bases, total = [], 0
    for key, overlap in zip(keys, [0, *_overlaps(keys, stride)]):
        bases.append(total - overlap)
        total = bases[-1] + key[0].shape[0]

    first_ids, first_off, first_special, first_words, first_logits = checked[0]
    lead = int(contents[0][0]) if contents[0].size else first_ids.shape[0]  # leading special rows
    ids = np.concatenate([first_ids[:lead], np.zeros(total, dtype=first_ids.dtype)])
    offsets = np.concatenate([first_off[:lead], np.zeros((total, 2), dtype=first_off.dtype)])
    special = np.concatenate([first_special[:lead], np.zeros(total, dtype=first_special.dtype)])
    word_ids = np.concatenate([first_words[:lead], np.full(total, -1, dtype=first_words.dtype)])
    logits = np.concatenate(
        [first_logits[:lead], np.zeros((total, first_logits.shape[1]), dtype=first_logits.dtype)]
    )
    quality = np.full(total, -1, dtype=np.int64)
    for (w_ids, w_off, _, w_words, w_logits), rows, base in zip(checked, contents, bases):
        n = rows.size
        if n == 0:
            continue
        at = np.arange(n)
        q = np.minimum(at, n - 1 - at)
        better = q > quality[base : base + n]  # strict: the earlier window keeps a tie
        pos = lead + base + at[better]
        src = rows[better]
        quality[base : base + n][better] = q[better]
        ids[pos], offsets[pos] = w_ids[src], w_off[src]
        word_ids[pos], logits[pos] = w_words[src], w_logits[src]
    return ids, offsets, special, word_ids, logits


def entities_for_text(
    text: str,
    windows: list[dict],
    id2label: dict[int, str],
    aggregation_strategy: str = "none",
    ignore_labels=("O",),
    *,
    id_to_token: Callable[[int], str],
    decode: Callable[[list[int]], str],
    word_aware: bool,
    word_grouping: str = "offsets",
    decode_tokens: Callable[[list[str]], str] | None = None,
    unk_token_id: int | None = None,
    stride: int | None = None,
    trusted: bool = False,
) -> list[dict]:
    """Entities of one text from the logits of its windows, as transformers' token-classification pipeline.

    ``windows``: one dict per window of ``text`` (several only when the text was cut with a stride), each
    with unpadded arrays ``input_ids`` (n,), ``offsets`` (n, 2) character offsets into ``text``,
    ``special_tokens_mask`` (n,), ``word_ids`` (n,) with -1 for none, ``logits`` (n, L). Instead of
    ``logits`` a window may hold ``scores`` (n, L), their softmax already computed (as :func:`softmax`
    does, e.g. for a whole padded batch at once: the softmax is per token, so the result is the same).
    ``id2label`` maps label index (int or str keys) to label. ``id_to_token`` is the tokenizer's
    id -> token string; ``word_aware`` whether its model has a ``continuing_subword_prefix``.

    Words of grouped entities: transformers joins token *strings* with the tokenizer's decoder
    (``convert_tokens_to_string``, no ``clean_up_tokenization_spaces``), and uses the surface text for
    the unknown token. Pass ``decode_tokens`` (``tokenizers.Tokenizer.decoder.decode``) and
    ``unk_token_id`` to get exactly that; :func:`tokenizer_hooks` builds every callable from a
    ``tokenizers.Tokenizer``. Without ``decode_tokens`` the words are ``decode(ids)`` of the members'
    token ids, which equals transformers except where a group holds the unknown token.

    Several windows (``word_grouping="offsets"``, transformers' way): the entities of each window are
    built apart and merged by :func:`merge_overlapping`, which keeps the longer of two overlapping
    entities and so can drop the head of the other one: text silently lost at a window edge, even with
    stride 0 when the edge falls inside a character split into byte tokens (byte-level BPE). For
    ``aggregation_strategy="none"`` (which transformers does not allow with a stride) this keeps one
    entity per token span and ``index`` stays the token's position in its own window.

    Several windows with ``word_grouping="tokenizer"`` (lossless): the windows are merged at the token
    level first (:func:`_merge_windows`: the overflow windows' repeated tokens are recognized by id and
    offsets, each token keeps the logits of the window where it has the most context on both sides), then
    the single token sequence is aggregated once, so no entity merge is needed and every token is kept.
    ``index`` is then the token's position in the text's untruncated encoding (special tokens included,
    as for a single window). ``stride``: the number of tokens each overflow window repeats, as given to
    the tokenizer; when given it is checked, else the repeated tokens are found by alignment. The windows
    must be consecutive and their ``word_ids`` those of the whole text, as ``tokenizers`` gives them in
    overflowing encodings; windows that do not chain raise :class:`InputError`.

    ``trusted=True`` skips every check of the options and windows, for callers that built them
    themselves (the pipeline): options as :func:`validate_options` returns them, windows with int64
    numpy arrays of matching lengths, offsets inside ``text``, ``word_ids`` with -1 and finite logits
    or scores. Anything else gives undefined results, so external callers should leave it False.
    """
    if trusted:
        strategy, grouping, ignore = aggregation_strategy, word_grouping, frozenset(ignore_labels)
        checked = [_trusted_window(w) for w in windows]
    else:
        options = validate_options(aggregation_strategy, ignore_labels, None, word_grouping)
        if stride is not None and (
            isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 0
        ):
            raise InputError(f"stride must be None or an int >= 0, got {stride!r}")
        if not isinstance(text, str):
            raise InputError(f"text must be a str, got {type(text).__name__}")
        if not isinstance(windows, Sequence) or isinstance(windows, (str, bytes)):
            raise InputError(f"windows must be a list of dicts, got {type(windows).__name__}")
        strategy, grouping = options["aggregation_strategy"], options["word_grouping"]
        ignore = frozenset(options["ignore_labels"])
        checked = [_check_window(k, w, len(text)) for k, w in enumerate(windows)]
    if not checked:
        return []
    num_labels = {a[4].shape[1] for a in checked}
    if len(num_labels) != 1:
        raise InputError(f"windows disagree on the number of labels: {sorted(num_labels)}")
    table = _label_table(id2label, num_labels.pop())

    if decode_tokens is None:
        decode_tokens = _ids_decoder(id_to_token, decode, (i for a in checked for i in a[0].tolist()))
    if strategy in _WORD_STRATEGIES and grouping == "offsets" and not word_aware:
        warnings.warn(_FALLBACK_WARNING, UserWarning, stacklevel=2)

    if grouping == "tokenizer" and len(checked) > 1:
        checked = [_merge_windows(checked, None if stride is None else int(stride))]
    entities: list[dict] = []
    for arrays in checked:
        entities.extend(
            _window_entities(
                text,
                arrays,
                table,
                strategy,
                ignore,
                id_to_token=id_to_token,
                decode_tokens=decode_tokens,
                word_aware=word_aware,
                grouping=grouping,
                unk_token_id=unk_token_id,
            )
        )
    if len(checked) > 1:
        entities = merge_overlapping(entities)
    for entity in entities:  # plain Python numbers
        entity["score"] = float(entity["score"])
        entity["start"], entity["end"] = int(entity["start"]), int(entity["end"])
    return entities


# ------------------------------------------------------------------------------------ tokenizer hooks


def _ids_decoder(id_to_token: Callable[[int], str], decode: Callable[[list[int]], str], ids: Iterable[int]):
    """Fallback token-string joiner over an ids decoder, for the tokens of ``ids``.

    Each string that is a token of ``ids`` decodes through its id; any other string (the surface of an
    unknown token, a word that no token spells) cannot go through an ids decoder and is joined as is,
    with a space, so such groups may differ from transformers (pass ``decode_tokens`` to avoid it).
    """
    table = {id_to_token(i): i for i in set(ids)}

    def decode_tokens(tokens: list[str]) -> str:
        parts: list[str] = []
        run: list[int] = []
        for token in tokens:
            token_id = table.get(token)
            if token_id is None:
                if run:
                    parts.append(decode(run))
                    run = []
                parts.append(token)
            else:
                run.append(token_id)
        if run:
            parts.append(decode(run))
        return " ".join(parts)

    return decode_tokens


class _TokenStrings(dict):
    """id -> token string, asked of the tokenizer once per id (a dict hit is much cheaper than the call)."""

    def __init__(self, id_to_token: Callable[[int], str | None]):
        super().__init__()
        self._id_to_token = id_to_token

    def __missing__(self, index: int) -> str | None:
        token = self[index] = self._id_to_token(index)
        return token


def tokenizer_hooks(tokenizer, unk_token: str | None = None) -> dict:
    """Keyword arguments of :func:`entities_for_text` drawn from a ``tokenizers.Tokenizer``.

    ``id_to_token`` (remembering each id's string: build the hooks once per tokenizer and reuse them),
    ``decode`` (ids, special tokens kept), ``decode_tokens`` (the tokenizer's decoder
    over token strings, or a space join when it has none, as transformers' ``convert_tokens_to_string``),
    ``word_aware`` (its model has a ``continuing_subword_prefix``) and ``unk_token_id`` (of ``unk_token``,
    default the model's own unknown token).
    """
    decoder = tokenizer.decoder

    def decode_tokens(tokens: list[str]) -> str:
        return decoder.decode(list(tokens)) if decoder is not None else " ".join(tokens)

    model = tokenizer.model
    unk = unk_token if unk_token is not None else getattr(model, "unk_token", None)
    return {
        "id_to_token": _TokenStrings(tokenizer.id_to_token).__getitem__,
        "decode": lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False),
        "decode_tokens": decode_tokens,
        "word_aware": bool(getattr(model, "continuing_subword_prefix", None)),
        "unk_token_id": tokenizer.token_to_id(unk) if unk else None,
    }
