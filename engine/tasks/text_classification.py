"""text-classification: one label (or the k best) per text or text pair, as transformers' pipeline.

``top_k`` absent gives the best label as a dict (transformers' legacy output, a one-element list for a
str); an int the k best sorted; None every label sorted. ``function_to_apply`` (softmax/sigmoid/none)
defaults from the model's ``problem_type`` and number of labels. A text pair is a dict
``{"text": ..., "text_pair": ...}``. The post-processing (:func:`classify`) is pure numpy, vectorized
over the batch, as transformers' TextClassificationPipeline (4.57) computes it.

``bertrt batch``'s ``result``: ``struct<label: string, score: float32>`` without ``top_k`` (the best
label), ``list<struct<label: string, score: float32>>`` with it. ``bertrt tune`` compares the best
labels; ``bertrt eval`` scores accuracy and macro-F1 on TSV/JSONL data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InputError
from ..numeric import sigmoid, softmax
from . import figures
from .base import UNSET, Cli, Encoding, Evaluation, Option, Task, check_top_k, positive_int_or_all

__all__ = [
    "FUNCTIONS",
    "TASK",
    "SequenceLabelHead",
    "TextClassification",
    "check_function",
    "check_top_k",
    "classify",
    "default_function",
    "label_type",
    "sigmoid",
    "softmax",
]

FUNCTIONS = ("softmax", "sigmoid", "none")


def default_function(problem_type: str | None, num_labels: int) -> str:
    """The function transformers applies when ``function_to_apply`` is not given."""
    if problem_type == "regression":
        return "none"
    if problem_type == "multi_label_classification" or num_labels == 1:
        return "sigmoid"
    return "softmax"


def check_function(value) -> str | None:
    """Normalize ``function_to_apply`` (case-insensitive; None = model default); InputError otherwise."""
    if value is None:
        return None
    name = getattr(value, "value", value)  # accept transformers' ClassificationFunction enum too
    if isinstance(name, str) and name.lower() in FUNCTIONS:
        return name.lower()
    raise InputError(f"function_to_apply must be one of {', '.join(FUNCTIONS)}, got {value!r}")


def classify(
    logits: np.ndarray, id2label: dict[int, str], function: str, top_k: int | None = 1, legacy: bool = True
) -> list:
    """Per row of ``logits`` (N, L): ``{"label", "score"}`` (legacy) or a list of them sorted by score."""
    logits = np.asarray(logits, dtype=np.float32)
    if function == "softmax":
        scores = softmax(logits)
    elif function == "sigmoid":
        scores = sigmoid(logits)
    else:
        scores = logits
    labels = [id2label.get(i, f"LABEL_{i}") for i in range(scores.shape[-1])]
    results = []
    for row in scores:
        if legacy and top_k == 1:
            best = int(row.argmax())
            results.append({"label": labels[best], "score": float(row[best])})
            continue
        entries = [{"label": labels[i], "score": float(s)} for i, s in enumerate(row)]
        if not legacy:
            entries.sort(key=lambda e: e["score"], reverse=True)
            if top_k is not None:
                entries = entries[:top_k]
        results.append(entries)
    return results


@dataclass(frozen=True)
class _Options:
    top_k: int | None
    legacy: bool  # no top_k given: transformers' single-dict output
    function: str


class SequenceLabelHead(Task):
    """The head of a ``*ForSequenceClassification`` model: one logit per id2label entry per sequence, read
    by the tasks that answer with labels (text-classification, zero-shot), compared by their top labels."""

    auto_class = "AutoModelForSequenceClassification"
    output = "logits"
    dims = ("batch", "labels")
    labels = True
    gates = MappingProxyType({"accuracy.agreement": 0.98, "invariance.agreement": 0.999})

    def compare_outputs(self, reference, candidate, batches, mask_id) -> dict:
        """The base figures plus ``label_agreement``: the share of rows whose top label is PyTorch's."""
        out = super().compare_outputs(reference, candidate, batches, mask_id)
        rows = sum(len(ref) for ref in reference)
        agree = sum(figures.argmax_agreement(ref, cand) * len(ref) for ref, cand in zip(reference, candidate))
        if rows:
            out["label_agreement"] = agree / rows
        return out


class TextClassification(SequenceLabelHead):
    name = "text-classification"
    pairs = True
    evaluation = Evaluation("labelled", "accuracy")
    reference_call = MappingProxyType({"truncation": True})
    options = (
        Option(
            "top_k",
            int | None,
            UNSET,
            help="number of labels to return, best first ('all' / None: every label; absent: the best "
            "label alone, as a dict)",
            cli=Cli(parse=positive_int_or_all),
        ),
        Option(
            "function_to_apply",
            str,
            None,
            FUNCTIONS,
            help="scores from logits (default: from the model's problem_type and number of labels)",
        ),
        # transformers' spellings, accepted for a drop-in swap (not command-line flags)
        Option("truncation", bool | str, True, help="True (always: to the model's max length)", cli=None),
        Option(
            "return_all_scores", bool, None, help="deprecated: True is top_k=None, False top_k=1", cli=None
        ),
    )

    def check_options(self, pipe, options: Mapping) -> _Options:
        self.reject_unknown(options)
        _check_truncation(options.get("truncation", True))
        legacy = "top_k" not in options
        top_k = 1 if legacy else check_top_k(options["top_k"])
        if legacy and options.get("return_all_scores"):  # transformers: every label, the legacy shape
            top_k = None
        function = check_function(options.get("function_to_apply"))
        if function is None:
            function = default_function(pipe.bundle.problem_type, pipe.num_labels)
        return _Options(top_k, legacy, function)

    def finish(self, pipe, items: list, encoded: Encoding, collected: list, opts: _Options) -> list:
        logits = np.stack(collected) if collected else np.zeros((0, pipe.num_labels), dtype=np.float32)
        return classify(logits, pipe.id2label, opts.function, opts.top_k, opts.legacy)

    def shape(self, results: list, single: bool, inputs, options: Mapping):
        if single:
            # transformers: a str with no top_k gives [dict]; a text-pair dict gives the dict itself.
            return [results[0]] if "top_k" not in options and isinstance(inputs, str) else results[0]
        return results

    def signature(self, result) -> str:
        return (result if isinstance(result, dict) else result[0])["label"]

    def result_spec(self, pipe, options: Mapping):
        import pyarrow as pa

        from ..batch.results import ResultSpec

        probe = pipe([pipe.warm_up_text], **options)[0]
        return ResultSpec("list", pa.list_(label_type()) if isinstance(probe, list) else label_type())


def label_type():
    """``struct<label: string, score: float32>`` (built on demand: pyarrow comes with bertrt[batch])."""
    import pyarrow as pa

    return pa.struct([("label", pa.string()), ("score", pa.float32())])


def _check_truncation(value) -> None:
    """bertrt truncates every text to the model's max length (transformers' ``truncation=True``)."""
    if value is True or value == "longest_first":
        return
    raise InputError(
        f"truncation={value!r} is not supported: bertrt always truncates to the model's max length "
        "(truncation=True, the default)"
    )


TASK = TextClassification()
