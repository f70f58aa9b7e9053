"""Entities of a text from its windows' scores: label tables, words, groups, and the window merge.

The steps follow ``transformers.TokenClassificationPipeline`` (docs/ner.md describes them and where
``word_grouping="tokenizer"`` departs from them): per token the argmax label of the softmax scores;
tokens fused into words for first/average/max; consecutive words grouped by tag; labels in
``ignore_labels`` dropped; with several windows, overlapping entities reduced by :func:`merge_overlapping`.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from ...errors import InputError
from .hooks import ids_decoder
from .options import WORD_STRATEGIES, NerOptions, check_options
from .windows import Window, check_window, merge_windows

__all__ = ["entities_for_text", "entities_of_windows", "merge_overlapping"]

_FALLBACK_WARNING = "Tokenizer does not support real words, using fallback heuristic"


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
def _cached_label_table(
    items: tuple, types: tuple, num_labels: int
) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    return _table(_labels(dict(items), num_labels))


def _table(labels: list[str]) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    return labels, [_tag(label) for label in labels], [label.split("-", 1)[-1] for label in labels]


def _label_table(id2label, num_labels: int) -> tuple[list[str], list[tuple[str, str]], list[str]]:
    """(label, (B|I, tag), group name) of each label index; cached by id2label's contents (the labels'
    types included: ``True == 1`` but their labels differ)."""
    if type(id2label) is dict:
        try:
            return _cached_label_table(
                tuple(id2label.items()), tuple(map(type, id2label.values())), num_labels
            )
        except TypeError:  # an unhashable key or label: not cached
            pass
    return _table(_labels(id2label, num_labels))


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


def _trim_spans(text: str, starts: list[int], ends: list[int]) -> tuple[list[int], list[int]]:
    """Token spans without the whitespace they include: SentencePiece ``▁word`` pieces (Metaspace without
    WhitespaceSplit) and byte-level ``Ġword`` pieces under a plain TemplateProcessing (DeBERTa,
    ModernBERT) have offsets that start at the space before the word. Spans must not be blank."""
    trimmed_starts, trimmed_ends = [], []
    for s, e in zip(starts, ends):
        surface = text[s:e]
        trimmed_starts.append(s + len(surface) - len(surface.lstrip()))
        trimmed_ends.append(e - len(surface) + len(surface.rstrip()))
    return trimmed_starts, trimmed_ends


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
    if grouping == "tokenizer":
        starts, ends = _trim_spans(text, starts, ends)
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
                "word": decode_tokens(
                    [word(w) for w in members] if words_joined else [token(j) for j in members]
                ),
                "start": starts[word_lo[w_lo]],
                "end": ends[word_hi[w_hi - 1] - 1],
            }
        )
    return entities


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
) -> list[dict]:
    """Entities of one text from the logits of its windows, as transformers' token-classification pipeline.

    ``windows``: one dict per window of ``text`` (several only when the text was cut with a stride), each
    with unpadded arrays ``input_ids`` (n,), ``offsets`` (n, 2) character offsets into ``text``,
    ``special_tokens_mask`` (n,), ``word_ids`` (n,) with -1 for none, ``logits`` (n, L). Instead of
    ``logits`` a window may hold ``scores`` (n, L), their softmax already computed (as
    :func:`bertrt.numeric.softmax` does, e.g. for a whole padded batch at once: the softmax is per token,
    so the result is the same).
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
    level first (:func:`bertrt.tasks.token_classification.windows.merge_windows`: the overflow windows' repeated tokens are
    recognized by id and offsets, each token keeps the logits of the window where it has the most context
    on both sides), then the single token sequence is aggregated once, so no entity merge is needed and
    every token is kept.
    ``index`` is then the token's position in the text's untruncated encoding (special tokens included,
    as for a single window). ``stride``: the number of tokens each overflow window repeats, as given to
    the tokenizer; when given it is checked, else the repeated tokens are found by alignment. The windows
    must be consecutive and their ``word_ids`` those of the whole text, as ``tokenizers`` gives them in
    overflowing encodings; windows that do not chain raise :class:`InputError`.

    Every argument is checked; :func:`entities_of_windows` is the same for windows and options that are
    checked already (the pipeline's).
    """
    options = check_options(aggregation_strategy, ignore_labels, None, word_grouping)
    if stride is not None and (
        isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 0
    ):
        raise InputError(f"stride must be None or an int >= 0, got {stride!r}")
    if not isinstance(text, str):
        raise InputError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(windows, Sequence) or isinstance(windows, (str, bytes)):
        raise InputError(f"windows must be a list of dicts, got {type(windows).__name__}")
    checked = [check_window(k, w, len(text)) for k, w in enumerate(windows)]
    return entities_of_windows(
        text,
        checked,
        id2label,
        dataclasses.replace(options, stride=None if stride is None else int(stride)),
        id_to_token=id_to_token,
        decode=decode,
        word_aware=word_aware,
        decode_tokens=decode_tokens,
        unk_token_id=unk_token_id,
    )


def entities_of_windows(
    text: str,
    checked: Sequence[Window],
    id2label: dict[int, str],
    options: NerOptions,
    *,
    id_to_token: Callable[[int], str],
    decode: Callable[[list[int]], str],
    word_aware: bool,
    decode_tokens: Callable[[list[str]], str] | None = None,
    unk_token_id: int | None = None,
) -> list[dict]:
    """:func:`entities_for_text` for a text's checked windows (:class:`Window`, as the pipeline builds
    them) and options (:class:`NerOptions`, from :func:`check_options`): nothing is checked again."""
    strategy, grouping, stride = options.aggregation_strategy, options.word_grouping, options.stride
    ignore = frozenset(options.ignore_labels)
    if not checked:
        return []
    num_labels = {a[4].shape[1] for a in checked}
    if len(num_labels) != 1:
        raise InputError(f"windows disagree on the number of labels: {sorted(num_labels)}")
    table = _label_table(id2label, num_labels.pop())

    if decode_tokens is None:
        decode_tokens = ids_decoder(id_to_token, decode, (i for a in checked for i in a[0].tolist()))
    if strategy in WORD_STRATEGIES and grouping == "offsets" and not word_aware:
        warnings.warn(_FALLBACK_WARNING, UserWarning, stacklevel=2)

    if grouping == "tokenizer" and len(checked) > 1:
        checked = [merge_windows(checked, None if stride is None else int(stride))]
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
