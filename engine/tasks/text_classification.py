"""text-classification: one label (or the k best) per text or text pair, as transformers' pipeline.

``top_k`` absent gives the best label as a dict (transformers' legacy output, a one-element list for a
str); an int the k best sorted; None every label sorted. ``function_to_apply`` (softmax/sigmoid/none)
defaults from the model's ``problem_type`` and number of labels. A text pair is a dict
``{"text": ..., "text_pair": ...}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import classification
from ..errors import InputError
from .base import UNSET, Cli, Encoding, Option, Task, positive_int_or_all

__all__ = ["TASK", "TextClassification"]


@dataclass(frozen=True)
class _Options:
    top_k: int | None
    legacy: bool  # no top_k given: transformers' single-dict output
    function: str


class TextClassification(Task):
    name = "text-classification"
    auto_class = "AutoModelForSequenceClassification"
    output = "logits"
    dims = ("batch", "labels")
    pairs = True
    labels = True
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
            classification.FUNCTIONS,
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
        top_k = 1 if legacy else classification.check_top_k(options["top_k"])
        if legacy and options.get("return_all_scores"):  # transformers: every label, the legacy shape
            top_k = None
        function = classification.check_function(options.get("function_to_apply"))
        if function is None:
            function = classification.default_function(pipe.bundle.problem_type, pipe.num_labels)
        return _Options(top_k, legacy, function)

    def finish(self, pipe, items: list, encoded: Encoding, collected: list, opts: _Options) -> list:
        logits = np.stack(collected) if collected else np.zeros((0, pipe.num_labels), dtype=np.float32)
        return classification.classify(logits, pipe.id2label, opts.function, opts.top_k, opts.legacy)

    def shape(self, results: list, single: bool, inputs, options: Mapping):
        if single:
            # transformers: a str with no top_k gives [dict]; a text-pair dict gives the dict itself.
            return [results[0]] if "top_k" not in options and isinstance(inputs, str) else results[0]
        return results


def _check_truncation(value) -> None:
    """bertrt truncates every text to the model's max length (transformers' ``truncation=True``)."""
    if value is True or value == "longest_first":
        return
    raise InputError(
        f"truncation={value!r} is not supported: bertrt always truncates to the model's max length "
        "(truncation=True, the default)"
    )


TASK = TextClassification()
