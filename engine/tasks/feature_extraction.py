"""feature-extraction: token vectors, pooled sentence vectors or word vectors.

No option gives transformers' output as numpy: an array (1, tokens, dim) per text. ``pooling="mean"|
"cls"|"max"`` gives one vector (dim,) per text (mask-aware); ``normalize=True`` scales the vectors
(pooled or per token) to unit length; ``pooling="words"`` gives ``{"words", "offsets", "vectors"}`` per
text with one vector per word pooled from its sub-tokens (``word_pooling="mean"|"max"|"first"``).
``truncation`` (default True) cuts at the model's max length; False makes a longer text an error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import embeddings
from ..errors import InputError
from .base import Cli, Encoding, Option, Task

__all__ = ["TASK", "FeatureExtraction"]

_POOLINGS = embeddings.POOLINGS + ("words",)


@dataclass(frozen=True)
class _Options:
    pooling: str | None
    normalize: bool
    word_pooling: str
    truncation: bool


class FeatureExtraction(Task):
    name = "feature-extraction"
    auto_class = "AutoModel"
    output = "last_hidden_state"
    dims = ("batch", "sequence", "hidden")
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
            embeddings.WORD_POOLINGS,
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
        if word_pooling not in embeddings.WORD_POOLINGS:
            raise InputError(
                f"word_pooling must be one of {', '.join(embeddings.WORD_POOLINGS)}, got {word_pooling!r}"
            )
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
        if opts.pooling in embeddings.POOLINGS:
            return embeddings.pool(tokens[None], np.ones((1, len(seq))), opts.pooling)[0]
        return tokens

    def finish(self, pipe, items: list, encoded: Encoding, collected: list, opts: _Options) -> list:
        pooling, normalize = opts.pooling, opts.normalize
        results = []
        for item, enc, vec in zip(items, encoded.sequences, collected):
            if pooling == "words":
                words, pooled = embeddings.word_vectors(vec, enc.word_ids, opts.word_pooling)
                text = item if isinstance(item, str) else item[0]
                spans = [
                    (
                        int(enc.offsets[enc.word_ids == w, 0].min()),
                        int(enc.offsets[enc.word_ids == w, 1].max()),
                    )
                    for w in words
                ]
                if normalize:
                    pooled = embeddings.l2_normalize(pooled)
                results.append({"words": [text[s:e] for s, e in spans], "offsets": spans, "vectors": pooled})
            elif pooling is None:
                results.append((embeddings.l2_normalize(vec) if normalize else vec)[None])
            else:
                results.append(embeddings.l2_normalize(vec) if normalize else vec)
        return results


TASK = FeatureExtraction()
