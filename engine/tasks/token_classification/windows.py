"""A text's windows: checking the caller's arrays, and merging overlapping windows into one token sequence.

A window is a dict of unpadded arrays (``input_ids``, ``offsets``, ``special_tokens_mask``, ``word_ids``,
and ``logits`` or their softmax ``scores``); a checked window is a :class:`Window` (``input_ids, offsets,
special_tokens_mask, word_ids, scores``): the pipeline builds those itself, a caller's dicts go through
:func:`check_window`. :func:`merge_windows` is the lossless merge of ``word_grouping="tokenizer"``.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from ...errors import InputError
from ...numeric import softmax

__all__ = ["Window", "check_window", "merge_windows"]


class Window(NamedTuple):
    """One checked window: int64 arrays of matching lengths (``word_ids`` -1 for none, offsets inside
    the text) and finite float ``scores`` (n, labels), the softmax of the logits."""

    input_ids: np.ndarray
    offsets: np.ndarray
    special_tokens_mask: np.ndarray
    word_ids: np.ndarray
    scores: np.ndarray


_WINDOW_KEYS = ("input_ids", "offsets", "special_tokens_mask", "word_ids", "logits")


def check_window(k: int, window: Mapping, text_len: int) -> Window:
    """The caller's window dict as a :class:`Window` after checking it; scores are the
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
    return Window(ids, offsets, special, word_ids, _scores(values, given))


def _scores(values: np.ndarray, given: str) -> np.ndarray:
    if given == "logits":
        return softmax(values)
    return values if values.dtype in (np.float32, np.float64) else values.astype(np.float32)


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


def merge_windows(checked: list[tuple[np.ndarray, ...]], stride) -> tuple[np.ndarray, ...]:
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
