"""The token-classification Task: entities per text, as transformers' pipeline (docs/ner.md).

Options: ``aggregation_strategy``, ``ignore_labels``, ``stride``, ``word_grouping`` and transformers'
deprecated ``grouped_entities`` / ``ignore_subwords``, checked once by :func:`.options.check_options`.
Long texts are never cut: each runs as windows over the whole text, ``stride`` tokens shared by
neighbours, and the windows' entities are merged back into one list per text.

``bertrt batch``'s ``result``: ``list<struct<entity: string, score: float32, index: int32, word: string,
start: int32, end: int32>>`` (no aggregation: one entry per token), ``list<struct<entity_group: string,
score: float32, word: string, start: int32, end: int32>>`` (aggregated). ``bertrt tune`` compares the
entities (entity F1 and the share of identical texts); ``bertrt eval`` scores seqeval F1 on IOB data
with ``aggregation_strategy="first"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ...numeric import softmax
from .. import figures
from ..base import Cli, Encoding, Evaluation, Option, Task, non_negative_int
from .aggregate import entities_of_windows
from .hooks import tokenizer_hooks
from .options import AGGREGATION_STRATEGIES, WORD_GROUPINGS, NerOptions, check_options
from .windows import Window

__all__ = ["TASK", "TokenClassification", "entity_type"]


@dataclass(frozen=True)
class _Windows(Encoding):
    counts: list[int]  # windows per text, in order: sequences[sum(counts[:i]):][:counts[i]] belong to text i


class TokenClassification(Task):
    name = "token-classification"
    auto_class = "AutoModelForTokenClassification"
    output = "logits"
    dims = ("batch", "sequence", "labels")
    labels = True
    gates = MappingProxyType({"accuracy.entity_f1": 0.95, "invariance.agreement": 0.999})
    int8_gates = MappingProxyType({"token_agreement": 0.9})
    evaluation = Evaluation("iob", "f1")
    reference_options = MappingProxyType({"aggregation_strategy": "first"})
    reference_pipeline = reference_options
    options = (
        Option(
            "aggregation_strategy",
            str,
            "none",
            AGGREGATION_STRATEGIES,
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
            WORD_GROUPINGS,
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

    def check_options(self, pipe, options: Mapping) -> NerOptions:
        self.reject_unknown(options)
        opts = check_options(
            **options, max_length=pipe.max_length, num_special_tokens=pipe.tokenizer.num_special_tokens
        )
        return opts if opts.stride is not None else dataclasses.replace(opts, stride=0)

    def setup(self, pipe) -> dict:
        # The tokenizer callables NER needs, built once: id_to_token remembers the strings it looked up.
        return tokenizer_hooks(pipe.tokenizer.raw, unk_token=pipe.tokenizer.special_tokens.get("unk_token"))

    def encode(self, pipe, items: list, opts: NerOptions) -> _Windows:
        per_text = pipe.tokenizer.encode_windows(items, stride=opts.stride)
        return _Windows([w for windows in per_text for w in windows], [len(windows) for windows in per_text])

    def batch_output(self, output: np.ndarray) -> np.ndarray:
        # The softmax of a whole padded batch at once (per token, so each window's rows are its own).
        return softmax(output.astype(np.float32, copy=False))

    def collect(self, output: np.ndarray, row: int, seq, opts: NerOptions) -> np.ndarray:
        return output[row, : len(seq)]

    def finish(self, pipe, items: list, encoded: _Windows, collected: list, opts: NerOptions) -> list:
        results, cursor = [], 0
        for text, count in zip(items, encoded.counts):
            windows = [
                Window(enc.ids, enc.offsets, enc.special_tokens_mask, enc.word_ids, scores)
                for enc, scores in zip(
                    encoded.sequences[cursor : cursor + count], collected[cursor : cursor + count]
                )
            ]
            cursor += count
            results.append(entities_of_windows(text, windows, pipe.id2label, opts, **pipe.task_state))
        return results

    def signature(self, result) -> tuple:
        return tuple((e.get("entity_group", e.get("entity")), e["start"], e["end"]) for e in result)

    def agreement(self, reference, candidate) -> dict:
        ref = [self.signature(r) for r in reference]
        got = [self.signature(r) for r in candidate]
        return {
            "agreement": round(figures.share_equal(ref, got), 6),
            "entity_f1": round(figures.set_f1(ref, got), 6),
        }

    def compare_outputs(self, reference, candidate, batches, mask_id) -> dict:
        out = super().compare_outputs(reference, candidate, batches, mask_id)
        agree, tokens = 0.0, 0
        for ref, cand, (_, feed) in zip(reference, candidate, batches):
            n = int(feed["attention_mask"].sum())
            agree += figures.argmax_agreement(ref, cand, feed["attention_mask"]) * n
            tokens += n
        if tokens:
            out["token_agreement"] = agree / tokens
        return out

    def result_spec(self, pipe, options: Mapping):
        import pyarrow as pa

        from ...batch.results import ResultSpec

        # Keep every label, so the probe has entities to read the layout from.
        probe = pipe([pipe.warm_up_text], **{**options, "ignore_labels": []})[0]
        return ResultSpec("list", pa.list_(entity_type(bool(probe) and "entity_group" in probe[0])))


def entity_type(aggregated: bool):
    """The Arrow struct of one entity: aggregated (``entity_group``) or one per token (``entity``,
    ``index``); built on demand, pyarrow comes with bertrt[batch]."""
    import pyarrow as pa

    if aggregated:
        head = [("entity_group", pa.string()), ("score", pa.float32())]
    else:
        head = [("entity", pa.string()), ("score", pa.float32()), ("index", pa.int32())]
    return pa.struct([*head, ("word", pa.string()), ("start", pa.int32()), ("end", pa.int32())])


TASK = TokenClassification()
