"""Alignment of a pipeline's character-offset entities with pre-split gold tokens.

The gold data are tokens; the pipelines take text. Each sentence is run as ``" ".join(tokens)``
(:func:`token_spans`) with ``aggregation_strategy="first"``: a word's label is the label of its first
sub-token. For WordPiece a pipeline "word" is a token plus its ``##`` pieces, so a gold token split at
punctuation (``@user``, ``#tag``, URLs) may give several words; a model trained with every sub-token
labelled (continuations ``I-type``) groups those words into one entity.

:func:`entities_to_iob` maps the entities back: every token whose character span overlaps an entity
belongs to it, the first such token gets ``B-type`` and the rest ``I-type``; a token already claimed by
an earlier entity (by start, then end) keeps it; tokens covered by no entity are ``O``. A token that the
tokenizer drops entirely (e.g. a lone control character) therefore counts as ``O``.
"""

from __future__ import annotations

from ..errors import InputError

__all__ = ["entities_to_iob", "token_spans"]


def token_spans(tokens) -> tuple[str, list[tuple[int, int]]]:
    """The text ``" ".join(tokens)`` and each token's ``(start, end)`` character span in it."""
    spans, pos = [], 0
    for tok in tokens:
        spans.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return " ".join(tokens), spans


def _entity_type(entity: dict) -> str:
    label = entity.get("entity_group") or entity.get("entity")
    if not isinstance(label, str) or not label:
        raise InputError(f"pipeline returned an entity without 'entity_group'/'entity': {entity!r}")
    return label[2:] if label[:2] in ("B-", "I-", "E-", "S-") else label


def entities_to_iob(entities, spans) -> list[str]:
    """Per-token IOB2 tags from character-offset entities (the rules are in the module docstring).

    ``entities``: dicts with ``start``, ``end`` and ``entity_group`` (or ``entity``, whose ``B-``/``I-``
    prefix is dropped); ``spans``: the tokens' ``(start, end)`` spans from :func:`token_spans`.
    """
    tags = ["O"] * len(spans)
    for ent in sorted(entities, key=lambda e: (e["start"], e["end"])):
        start, end = int(ent["start"]), int(ent["end"])
        etype = _entity_type(ent)
        first = True
        for i, (s, e) in enumerate(spans):
            if s < end and start < e and tags[i] == "O":
                tags[i] = ("B-" if first else "I-") + etype
                first = False
    return tags
