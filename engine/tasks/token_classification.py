"""token-classification (NER): entities per text, as transformers' pipeline (see bertrt.ner and docs/ner.md).

Options: ``aggregation_strategy``, ``ignore_labels``, ``stride``, ``word_grouping`` and transformers'
deprecated ``grouped_entities`` / ``ignore_subwords``, checked by :func:`bertrt.ner.validate_options`.
Long texts are never cut: each runs as windows over the whole text, ``stride`` tokens shared by
neighbours, and the windows' entities are merged back into one list per text.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import ner
from .base import Cli, Encoding, Option, Task, non_negative_int

__all__ = ["TASK", "TokenClassification"]


@dataclass(frozen=True)
class _Options:
    stride: int
    post: dict  # aggregation_strategy, ignore_labels, word_grouping for ner.entities_for_text


@dataclass(frozen=True)
class _Windows(Encoding):
    counts: list[int]  # windows per text, in order: sequences[sum(counts[:i]):][:counts[i]] belong to text i


class TokenClassification(Task):
    name = "token-classification"
    auto_class = "AutoModelForTokenClassification"
    output = "logits"
    dims = ("batch", "sequence", "labels")
    labels = True
    options = (
        Option(
            "aggregation_strategy",
            str,
            "none",
            ner.AGGREGATION_STRATEGIES,
            help="group tokens into entities (default none: one entry per token)",
        ),
        Option(
            "ignore_labels",
            list[str],
            None,
            help="labels left out (default O; none given: keep every label)",
            cli=Cli(nargs="*"),
        ),
        Option(
            "stride",
            int | None,
            None,
            help="tokens shared by neighbouring windows of a long text",
            cli=Cli(parse=non_negative_int),
        ),
        Option(
            "word_grouping",
            str,
            "offsets",
            ner.WORD_GROUPINGS,
            help="what makes a word: character offsets (default) or the tokenizer's word ids",
        ),
        Option(
            "grouped_entities",
            bool | None,
            None,
            help="deprecated (transformers): use aggregation_strategy",
            cli=None,
        ),
        Option(
            "ignore_subwords",
            bool | None,
            None,
            help="deprecated (transformers): use aggregation_strategy",
            cli=None,
        ),
    )

    def check_options(self, pipe, options: Mapping) -> _Options:
        self.reject_unknown(options)
        opts = ner.validate_options(
            **options, max_length=pipe.max_length, num_special_tokens=pipe.tokenizer.num_special_tokens
        )
        return _Options(
            opts["stride"] or 0,
            {k: opts[k] for k in ("aggregation_strategy", "ignore_labels", "word_grouping")},
        )

    def setup(self, pipe) -> dict:
        # The tokenizer callables NER needs, built once: id_to_token remembers the strings it looked up.
        return ner.tokenizer_hooks(
            pipe.tokenizer.raw, unk_token=pipe.tokenizer.special_tokens.get("unk_token")
        )

    def encode(self, pipe, items: list, opts: _Options) -> _Windows:
        per_text = pipe.tokenizer.encode_windows(items, stride=opts.stride)
        return _Windows([w for windows in per_text for w in windows], [len(windows) for windows in per_text])

    def batch_output(self, output: np.ndarray) -> np.ndarray:
        # The softmax of a whole padded batch at once (per token, so each window's rows are its own).
        return ner.softmax(output.astype(np.float32, copy=False))

    def collect(self, output: np.ndarray, row: int, seq, opts: _Options) -> np.ndarray:
        return output[row, : len(seq)]

    def finish(self, pipe, items: list, encoded: _Windows, collected: list, opts: _Options) -> list:
        results, cursor = [], 0
        for text, count in zip(items, encoded.counts):
            records = []
            for enc, scores in zip(
                encoded.sequences[cursor : cursor + count], collected[cursor : cursor + count]
            ):
                records.append(
                    {
                        "input_ids": enc.ids,
                        "offsets": enc.offsets,
                        "special_tokens_mask": enc.special_tokens_mask,
                        "word_ids": enc.word_ids,
                        "scores": scores,
                    }
                )
            cursor += count
            results.append(
                ner.entities_for_text(
                    text,
                    records,
                    pipe.id2label,
                    **opts.post,
                    **pipe.task_state,
                    stride=opts.stride,
                    trusted=True,
                )
            )
        return results


TASK = TokenClassification()
