"""Token-classification post-processing: logits of a text's windows in, entities out.

Pure numpy and Python; no model, no tokenizer object. The result matches
``transformers.TokenClassificationPipeline`` (4.57) for the same logits and tokenization: same keys in
the same order, same decisions, same order of entities, same merge of overlapping windows; numbers are
plain Python ``float``/``int``. ``word_grouping="tokenizer"`` groups by the tokenizer's word ids instead
and merges windows without loss. docs/ner.md describes both behaviours.

Modules: :mod:`.options` (strategies and their checks), :mod:`.windows` (window checks and the
token-level merge), :mod:`.aggregate` (words, groups, :func:`entities_for_text`), :mod:`.hooks` (the
tokenizer callables).
"""

from __future__ import annotations

from ..numeric import softmax
from .aggregate import entities_for_text, merge_overlapping
from .hooks import tokenizer_hooks
from .options import AGGREGATION_STRATEGIES, WORD_GROUPINGS, validate_options

__all__ = [
    "AGGREGATION_STRATEGIES",
    "WORD_GROUPINGS",
    "entities_for_text",
    "merge_overlapping",
    "softmax",
    "tokenizer_hooks",
    "validate_options",
]
