"""Bundle step: the fast tokenizer (tokenizer.json) and the settings files the runtime reads.

A checkpoint that only ships a slow tokenizer (vocab.txt / merges) is converted by transformers
(``AutoTokenizer(use_fast=True)``). ``tokenizer_config.json`` and ``special_tokens_map.json`` are kept
for settings such as ``clean_up_tokenization_spaces`` and ``do_lower_case``.
"""

from __future__ import annotations

from pathlib import Path

from bertrt.bundle import MIN_MAX_LENGTH, TOKENIZER_FILES
from bertrt.errors import ExportError

__all__ = [
    "SPECIAL_TOKEN_NAMES",
    "TOKENIZER_FILES",
    "default_max_length",
    "load_tokenizer",
    "save_tokenizer",
    "special_tokens",
]

SPECIAL_TOKEN_NAMES = (
    "cls_token",
    "sep_token",
    "pad_token",
    "unk_token",
    "mask_token",
    "bos_token",
    "eos_token",
)
_HUGE = 10**6  # transformers' "no limit" model_max_length is ~1e30


def load_tokenizer(folder: Path):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=True)
    except (OSError, ValueError, TypeError) as exc:
        raise ExportError(f"cannot load a tokenizer from {folder}: {exc}") from exc
    if not getattr(tokenizer, "is_fast", False):
        raise ExportError(f"{folder}: the tokenizer could not be converted to a fast (tokenizers) one")
    return tokenizer


def default_max_length(tokenizer, config, position_offset: int, requested: int | None) -> int:
    """The bundle's max length: ``requested`` or the tokenizer's, never beyond the position table."""
    positions = int(config.max_position_embeddings) - position_offset
    if requested is not None:
        if isinstance(requested, bool) or not isinstance(requested, int) or requested < MIN_MAX_LENGTH:
            raise ExportError(f"max_length must be an int >= {MIN_MAX_LENGTH}, got {requested!r}")
        if requested > positions:
            raise ExportError(f"max_length {requested} exceeds the model's {positions} positions")
        return requested
    own = tokenizer.model_max_length
    return int(own) if own and own < _HUGE and own <= positions else positions


def save_tokenizer(tokenizer, out_dir: Path, max_length: int) -> list[str]:
    tokenizer.model_max_length = max_length
    tokenizer.save_pretrained(str(out_dir), legacy_format=False)
    missing = [name for name in TOKENIZER_FILES if not (out_dir / name).is_file()]
    if missing:
        raise ExportError(f"saving the tokenizer wrote no {', '.join(missing)}")
    # Only the fast tokenizer travels: drop slow vocabularies transformers may add.
    for extra in ("vocab.txt", "vocab.json", "merges.txt", "added_tokens.json"):
        (out_dir / extra).unlink(missing_ok=True)
    return list(TOKENIZER_FILES)


def special_tokens(tokenizer) -> dict:
    """{name: {"token": str, "id": int}} for the special tokens the tokenizer defines."""
    out = {}
    for name in SPECIAL_TOKEN_NAMES:
        token = getattr(tokenizer, name, None)
        if token is not None:
            out[name.removesuffix("_token")] = {
                "token": str(token),
                "id": int(tokenizer.convert_tokens_to_ids(token)),
            }
    return out
