"""Token-classification options: the aggregation strategies and word groupings, and their checks."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass

import numpy as np

from ...errors import InputError

__all__ = [
    "AGGREGATION_STRATEGIES",
    "WORD_GROUPINGS",
    "WORD_STRATEGIES",
    "NerOptions",
    "check_options",
    "validate_options",
]

#: aggregation strategies, as in transformers' ``AggregationStrategy``.
AGGREGATION_STRATEGIES = ("none", "simple", "first", "average", "max")
#: how first/average/max find words: transformers' offset heuristic, or the tokenizer's word ids.
WORD_GROUPINGS = ("offsets", "tokenizer")
#: the strategies that fuse tokens into words before grouping.
WORD_STRATEGIES = frozenset({"first", "average", "max"})


def _strategy_name(value) -> str | None:
    """Lower-case name of a strategy given as str, transformers' AggregationStrategy, or None."""
    if value is None:
        return "none"
    value = getattr(value, "value", value)  # transformers' AggregationStrategy is a str Enum
    return value.lower() if isinstance(value, str) else None


@dataclass(frozen=True)
class NerOptions:
    """Checked token-classification options, as :func:`check_options` builds them (the only way to get
    one): a strategy of :data:`AGGREGATION_STRATEGIES`, label strings, None or a stride that fits, a
    grouping of :data:`WORD_GROUPINGS`."""

    aggregation_strategy: str = "none"
    ignore_labels: tuple[str, ...] = ("O",)
    stride: int | None = None
    word_grouping: str = "offsets"


def validate_options(*args, **kwargs) -> dict:
    """:func:`check_options` as a dict ``{"aggregation_strategy", "ignore_labels", "stride",
    "word_grouping"}`` (same arguments)."""
    return asdict(check_options(*args, **kwargs))


def check_options(
    aggregation_strategy="none",
    ignore_labels=None,
    stride=None,
    word_grouping="offsets",
    *,
    max_length: int | None = None,
    num_special_tokens: int = 0,
    grouped_entities: bool | None = None,
    ignore_subwords: bool | None = None,
) -> NerOptions:
    """Check and normalize the token-classification options; one :class:`InputError` lists every problem.

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
    return NerOptions(strategy, labels, stride, grouping)
