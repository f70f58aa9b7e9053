"""feature-extraction: token vectors, pooled sentence vectors or word vectors.

No option gives transformers' output as numpy: an array (1, tokens, dim) per text. ``pooling="mean"|
"cls"|"max"`` gives one vector (dim,) per text (mask-aware); ``normalize=True`` scales the vectors
(pooled or per token) to unit length; ``pooling="words"`` gives ``{"words", "offsets", "vectors"}`` per
text with one vector per word pooled from its sub-tokens (``word_pooling="mean"|"max"|"first"``).
``truncation`` (default True) cuts at the model's max length; False makes a longer text an error.

The post-processing is pure numpy: :func:`pool` (one vector per text, mask-aware), :func:`l2_normalize`
and :func:`word_vectors` (one vector per word from its sub-tokens, by the tokenizer's word ids).

``bertrt batch``'s ``result``: pooled ``fixed_size_list<float32>[dim]``; no pooling
``list<fixed_size_list<float32>[dim]>`` (one vector per token, the (1, tokens, dim) array without its
leading 1); ``pooling=words`` ``struct<words: list<string>, offsets: list<fixed_size_list<int32>[2]>,
vectors: list<fixed_size_list<float32>[dim]>>``. ``bertrt tune`` and the exporter compare cosines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InputError
from . import figures
from .base import Cli, Encoding, Option, Task

__all__ = ["POOLINGS", "TASK", "WORD_POOLINGS", "FeatureExtraction", "l2_normalize", "pool", "word_vectors"]

POOLINGS = ("mean", "cls", "max")
WORD_POOLINGS = ("mean", "max", "first")


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str = "mean") -> np.ndarray:
    """(batch, tokens, dim) with a (batch, tokens) 0/1 mask -> (batch, dim). Masked positions are ignored."""
    hidden = np.asarray(hidden, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)[..., None]
    if mode == "cls":
        return hidden[:, 0, :].copy()
    if mode == "mean":
        total = (hidden * mask).sum(axis=1)
        return total / np.clip(mask.sum(axis=1), 1e-9, None)
    if mode == "max":
        return np.where(mask > 0, hidden, -np.inf).max(axis=1)
    raise ValueError(f"unknown pooling {mode!r}; expected one of {', '.join(POOLINGS)}")


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.clip(norm, 1e-12, None)


def word_vectors(
    hidden: np.ndarray, word_ids: np.ndarray, mode: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Token vectors (tokens, dim) and word ids (tokens,), -1 for special tokens -> (words (W,) ids in
    order of first appearance, vectors (W, dim))."""
    hidden = np.asarray(hidden, dtype=np.float32)
    word_ids = np.asarray(word_ids)
    keep = word_ids >= 0
    words, first, inverse = np.unique(word_ids[keep], return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # words in reading order
    tokens = hidden[keep]
    out = np.zeros((len(words), hidden.shape[-1]), dtype=np.float32)
    if mode == "mean":
        np.add.at(out, inverse, tokens)
        out /= np.bincount(inverse, minlength=len(words))[:, None]
    elif mode == "max":
        out.fill(-np.inf)
        np.maximum.at(out, inverse, tokens)
    elif mode == "first":
        out = tokens[first]
    else:
        raise ValueError(f"unknown word pooling {mode!r}; expected one of {', '.join(WORD_POOLINGS)}")
    return words[order], out[order]


_POOLINGS = POOLINGS + ("words",)


@dataclass(frozen=True)
class _Options:
    pooling: str | None
    normalize: bool
    word_pooling: str
    truncation: bool


class FeatureExtraction(figures.CosineFigures, Task):
    name = "feature-extraction"
    auto_class = "AutoModel"
    output = "last_hidden_state"
    dims = ("batch", "sequence", "hidden")
    reference_options = MappingProxyType({"pooling": "mean"})  # bertrt bench: the reference mean-pools
    options = (
        Option(
            "pooling",
            str | None,
            None,
            _POOLINGS,
            help="one vector per text (mean, cls, max) or per word (words); absent: one per token",
        ),
        Option("normalize", bool, False, help="scale every vector to unit length", cli=Cli(flag=True)),
        Option(
            "word_pooling",
            str,
            "mean",
            WORD_POOLINGS,
            help="how --pooling words pools a word's sub-tokens (default mean)",
        ),
        Option(
            "truncation", bool, True, help="cut texts at the model's max length (False: an error)", cli=None
        ),
    )

    def check_options(self, pipe, options: Mapping) -> _Options:
        self.reject_unknown(options)
        pooling = options.get("pooling")
        if pooling is not None and pooling not in _POOLINGS:
            raise InputError(f"pooling must be None or one of {', '.join(_POOLINGS)}, got {pooling!r}")
        word_pooling = options.get("word_pooling", "mean")
        if word_pooling not in WORD_POOLINGS:
            raise InputError(f"word_pooling must be one of {', '.join(WORD_POOLINGS)}, got {word_pooling!r}")
        if "word_pooling" in options and pooling != "words":
            raise InputError("word_pooling applies only with pooling='words'")
        normalize = options.get("normalize", False)
        truncation = options.get("truncation", True)
        for name, value in (("normalize", normalize), ("truncation", truncation)):
            if not isinstance(value, bool):
                raise InputError(f"{name} must be True or False, got {value!r}")
        return _Options(pooling, normalize, word_pooling, truncation)

    def encode(self, pipe, items: list, opts: _Options) -> Encoding:
        encodings = pipe.tokenizer.encode_batch(items, truncate=opts.truncation)
        if not opts.truncation:
            too_long = [i for i, e in enumerate(encodings) if len(e) > pipe.max_length]
            if too_long:
                raise InputError(
                    f"input(s) at index {', '.join(map(str, too_long[:20]))} exceed the model's "
                    f"max length of {pipe.max_length} tokens and truncation=False"
                )
        return Encoding(encodings)

    def collect(self, output: np.ndarray, row: int, seq, opts: _Options) -> np.ndarray:
        tokens = output[row, : len(seq)].astype(np.float32, copy=True)
        if opts.pooling in POOLINGS:
            return pool(tokens[None], np.ones((1, len(seq))), opts.pooling)[0]
        return tokens

    def finish(self, pipe, items: list, encoded: Encoding, collected: list, opts: _Options) -> list:
        pooling, normalize = opts.pooling, opts.normalize
        results = []
        for item, enc, vec in zip(items, encoded.sequences, collected):
            if pooling == "words":
                words, pooled = word_vectors(vec, enc.word_ids, opts.word_pooling)
                text = item if isinstance(item, str) else item[0]
                spans = [
                    (
                        int(enc.offsets[enc.word_ids == w, 0].min()),
                        int(enc.offsets[enc.word_ids == w, 1].max()),
                    )
                    for w in words
                ]
                if normalize:
                    pooled = l2_normalize(pooled)
                results.append({"words": [text[s:e] for s, e in spans], "offsets": spans, "vectors": pooled})
            elif pooling is None:
                results.append((l2_normalize(vec) if normalize else vec)[None])
            else:
                results.append(l2_normalize(vec) if normalize else vec)
        return results

    def result_spec(self, pipe, options: Mapping):
        from ..batch.results import pooled_spec, tokens_spec, words_spec

        probe = pipe([pipe.warm_up_text], **options)[0]
        if isinstance(probe, dict):
            return words_spec(np.asarray(probe["vectors"]).shape[-1])
        array = np.asarray(probe)
        return pooled_spec(array.shape[0]) if array.ndim == 1 else tokens_spec(array.shape[-1])


TASK = FeatureExtraction()
