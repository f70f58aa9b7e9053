"""token-classification (NER): the Task (:mod:`.task`) and its post-processing, logits of a text's windows
in, entities out.

The post-processing is pure numpy and Python; no model, no tokenizer object. The result matches
``transformers.TokenClassificationPipeline`` (4.57) for the same logits and tokenization: same keys in
the same order, same decisions, same order of entities, same merge of overlapping windows; numbers are
plain Python ``float``/``int``. ``word_grouping="tokenizer"`` groups by the tokenizer's word ids instead
and merges windows without loss. docs/ner.md describes both behaviours.

Modules: :mod:`.options` (strategies, their checks, the frozen :class:`NerOptions`), :mod:`.windows`
(window checks and the token-level merge), :mod:`.aggregate` (words, groups, :func:`entities_for_text`
for a caller's windows, :func:`entities_of_windows` for checked ones), :mod:`.hooks` (the tokenizer
callables), :mod:`.task` (the Task, ``TASK``).
"""

from __future__ import annotations

from ...numeric import softmax
from .aggregate import entities_for_text, entities_of_windows, merge_overlapping
from .hooks import tokenizer_hooks
from .options import AGGREGATION_STRATEGIES, WORD_GROUPINGS, NerOptions, check_options, validate_options
from .task import TASK, TokenClassification
from .windows import Window, check_window

__all__ = [
    "AGGREGATION_STRATEGIES",
    "TASK",
    "WORD_GROUPINGS",
    "NerOptions",
    "TokenClassification",
    "Window",
    "check_options",
    "check_window",
    "entities_for_text",
    "entities_of_windows",
    "merge_overlapping",
    "softmax",
    "tokenizer_hooks",
    "validate_options",
]
