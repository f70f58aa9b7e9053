"""zero-shot-classification: an NLI model scores candidate labels, as transformers'
ZeroShotClassificationPipeline (4.57) does.

Each text is paired with one hypothesis per label (``hypothesis_template.format(label)``); every pair of
the call runs in one batched run on the text-classification graph (a ``*ForSequenceClassification`` head,
the pair truncated ``only_first`` so the hypothesis stays whole). The entailment label is the first
``config.json`` label2id entry whose name starts with "entail" (case-insensitive; none: index -1, as
transformers). Scores: a softmax of the entailment logits over the labels, or with ``multi_label`` (or
one label) per label a softmax of (contradiction, entailment). Result: ``{"sequence", "labels",
"scores"}`` best first; a list for a list of texts.

``bertrt batch``'s ``result``: ``struct<sequence: string, labels: list<string>, scores: list<float32>>``;
``bertrt tune`` compares the best label; ``bertrt eval`` scores accuracy and macro-F1 on labelled data
(the candidate labels: every label of the data, or ``candidate_labels``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InputError
from .base import Cli, Encoding, Evaluation, Option
from .text_classification import SequenceLabelHead

__all__ = [
    "DEFAULT_TEMPLATE",
    "TASK",
    "ZeroShotClassification",
    "entailment_id",
    "parse_labels",
    "zero_shot_scores",
]

DEFAULT_TEMPLATE = "This example is {}."


def parse_labels(labels) -> tuple[str, ...]:
    """``candidate_labels`` as a tuple: a list of str, or one comma-separated str (blank parts dropped)."""
    if isinstance(labels, str):
        labels = [part.strip() for part in labels.split(",") if part.strip()]
    if not isinstance(labels, (list, tuple)) or not all(isinstance(label, str) for label in labels):
        raise InputError(f"candidate_labels must be a list of str or a comma-separated str, got {labels!r}")
    if not labels:
        raise InputError("zero-shot-classification needs at least one candidate label (candidate_labels)")
    return tuple(labels)


def entailment_id(label2id: Mapping) -> int:
    """The entailment label's id as transformers finds it: the first label2id name starting with "entail"
    (case-insensitive); -1 (the last logit) when there is none."""
    for label, index in label2id.items():
        if label.lower().startswith("entail"):
            return int(index)
    return -1


def zero_shot_scores(logits: np.ndarray, entail: int, multi_label: bool) -> np.ndarray:
    """Scores (texts, labels) from NLI logits (texts, labels, classes), float32 as transformers has them."""
    logits = np.asarray(logits, dtype=np.float32)
    if multi_label or logits.shape[1] == 1:
        contradiction = -1 if entail == 0 else 0
        pair = np.exp(logits[..., [contradiction, entail]])
        return (pair / pair.sum(-1, keepdims=True))[..., 1]
    entailed = np.exp(logits[..., entail])
    return entailed / entailed.sum(-1, keepdims=True)


@dataclass(frozen=True)
class _Options:
    labels: tuple[str, ...]
    hypotheses: tuple[str, ...]
    multi_label: bool


class ZeroShotClassification(SequenceLabelHead):
    name = "zero-shot-classification"
    evaluation = Evaluation("labelled", "accuracy", labels_option="candidate_labels")
    #: ``bertrt tune`` / ``bench`` / ``eval`` runs (eval replaces them with its data's labels)
    reference_options = MappingProxyType({"candidate_labels": ("positive", "negative", "neutral")})
    reference_call = reference_options  # the transformers reference's calls (bench, eval --pytorch)
    warm_up_options = reference_options
    options = (
        Option(
            "candidate_labels",
            list[str] | str,
            None,
            help="the labels to score (a list, or one comma-separated str)",
            cli=Cli(nargs="+"),
        ),
        Option(
            "hypothesis_template", str, DEFAULT_TEMPLATE, help="the hypothesis, '{}' where the label goes"
        ),
        Option(
            "multi_label",
            bool,
            False,
            help="score each label on its own (entailment against contradiction)",
            cli=Cli(flag=True),
        ),
        Option("multi_class", bool, None, help="deprecated spelling of multi_label", cli=None),
    )

    def check_options(self, pipe, options: Mapping) -> _Options:
        self.reject_unknown(options)
        template = options.get("hypothesis_template", DEFAULT_TEMPLATE)
        if options.get("candidate_labels") is None:  # checked when the call runs (encode): a pipeline's
            labels = ()  # build-time defaults need not name them
        else:
            labels = parse_labels(options["candidate_labels"])
        if not isinstance(template, str) or (labels and template.format(labels[0]) == template):
            raise InputError(
                f"hypothesis_template {template!r} cannot be formatted with the labels: it needs '{{}}' "
                "where the label goes"
            )
        multi = options.get("multi_label", False)
        if options.get("multi_class") is not None:
            multi = options["multi_class"]
        if not isinstance(multi, (bool, np.bool_)):
            raise InputError(f"multi_label must be a bool, got {multi!r}")
        return _Options(labels, tuple(template.format(label) for label in labels), bool(multi))

    def setup(self, pipe) -> int:
        label2id = pipe.bundle.config.get("label2id") or {v: k for k, v in pipe.id2label.items()}
        return entailment_id(label2id)

    def encode(self, pipe, items: list, opts: _Options) -> Encoding:
        if not opts.labels:
            parse_labels(())  # the error: no candidate labels
        pairs = [(text, hypothesis) for text in items for hypothesis in opts.hypotheses]
        try:
            return Encoding(pipe.tokenizer.encode_batch(pairs, strategy="only_first"))
        except InputError:
            raise
        except Exception:  # tokenizers: a text too short to truncate only_first; transformers then does not
            return Encoding([_one_pair(pipe, pair) for pair in pairs])

    def finish(self, pipe, items: list, encoded: Encoding, collected: list, opts: _Options) -> list:
        n = len(opts.labels)
        logits = np.stack(collected).reshape(len(items), n, -1)
        scores = zero_shot_scores(logits, pipe.task_state, opts.multi_label)
        results = []
        for text, row in zip(items, scores):
            order = list(reversed(row.argsort()))
            results.append(
                {"sequence": text, "labels": [opts.labels[i] for i in order], "scores": row[order].tolist()}
            )
        return results

    def signature(self, result) -> str:
        return result["labels"][0]

    def result_spec(self, pipe, options: Mapping):
        import pyarrow as pa

        from ..batch.results import ResultSpec

        return ResultSpec(
            "list",
            pa.struct(
                [
                    ("sequence", pa.string()),
                    ("labels", pa.list_(pa.string())),
                    ("scores", pa.list_(pa.float32())),
                ]
            ),
        )


def _one_pair(pipe, pair):
    try:
        return pipe.tokenizer.encode_batch([pair], strategy="only_first")[0]
    except InputError:
        raise
    except Exception:
        return pipe.tokenizer.encode_batch([pair], truncate=False)[0]


TASK = ZeroShotClassification()
