"""The tokenizer callables :func:`~bertrt.tasks.token_classification.entities_for_text` needs, and the ids-decoder fallback."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

__all__ = ["ids_decoder", "tokenizer_hooks"]

#: token-string tuples whose decoded string a pipeline remembers (the decoder is a pure function; a
#: call decodes each word's tokens and then each entity's words, and common words recur across texts)
_DECODED = 4096


def ids_decoder(id_to_token: Callable[[int], str], decode: Callable[[list[int]], str], ids: Iterable[int]):
    """Fallback token-string joiner over an ids decoder, for the tokens of ``ids``.

    Each string that is a token of ``ids`` decodes through its id; any other string (the surface of an
    unknown token, a word that no token spells) cannot go through an ids decoder and is joined as is,
    with a space, so such groups may differ from transformers (pass ``decode_tokens`` to avoid it).
    """
    table = {id_to_token(i): i for i in set(ids)}

    def decode_tokens(tokens: list[str]) -> str:
        parts: list[str] = []
        run: list[int] = []
        for token in tokens:
            token_id = table.get(token)
            if token_id is None:
                if run:
                    parts.append(decode(run))
                    run = []
                parts.append(token)
            else:
                run.append(token_id)
        if run:
            parts.append(decode(run))
        return " ".join(parts)

    return decode_tokens


class _TokenStrings(dict):
    """id -> token string, asked of the tokenizer once per id (a dict hit is much cheaper than the call)."""

    def __init__(self, id_to_token: Callable[[int], str | None]):
        super().__init__()
        self._id_to_token = id_to_token

    def __missing__(self, index: int) -> str | None:
        token = self[index] = self._id_to_token(index)
        return token


def tokenizer_hooks(tokenizer, unk_token: str | None = None) -> dict:
    """Keyword arguments of :func:`entities_for_text` drawn from a ``tokenizers.Tokenizer``.

    ``id_to_token`` (remembering each id's string: build the hooks once per tokenizer and reuse them),
    ``decode`` (ids, special tokens kept), ``decode_tokens`` (the tokenizer's decoder
    over token strings, or a space join when it has none, as transformers' ``convert_tokens_to_string``;
    the last :data:`_DECODED` distinct token lists remembered),
    ``word_aware`` (its model has a ``continuing_subword_prefix``) and ``unk_token_id`` (of ``unk_token``,
    default the model's own unknown token).
    """
    decoder = tokenizer.decoder

    @functools.lru_cache(maxsize=_DECODED)
    def decoded(tokens: tuple[str, ...]) -> str:
        return decoder.decode(list(tokens)) if decoder is not None else " ".join(tokens)

    def decode_tokens(tokens: list[str]) -> str:  # a word's or a group's tokens: the same ones recur
        return decoded(tuple(tokens))

    model = tokenizer.model
    unk = unk_token if unk_token is not None else getattr(model, "unk_token", None)
    return {
        "id_to_token": _TokenStrings(tokenizer.id_to_token).__getitem__,
        "decode": lambda ids: tokenizer.decode(list(ids), skip_special_tokens=False),
        "decode_tokens": decode_tokens,
        "word_aware": bool(getattr(model, "continuing_subword_prefix", None)),
        "unk_token_id": tokenizer.token_to_id(unk) if unk else None,
    }
