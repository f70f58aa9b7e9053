"""Tokenization stage: ``tokenizers.Tokenizer`` from tokenizer.json, batch encoding, windows, decoding.

Everything here mirrors what a transformers fast tokenizer does with the same files, so that the
engine feeds the model the same ids and reports the same offsets, words and decoded strings.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass

import numpy as np

from .errors import BundleError, InputError
from .lines import lone_surrogate

__all__ = ["TokenSequence", "TextTokenizer", "check_text", "clean_up_tokenization"]


@dataclass(frozen=True)
class TokenSequence:
    """One tokenized sequence, unpadded (a task's :class:`~bertrt.tasks.base.Encoding` holds a list of
    them). ``word_ids`` holds -1 where the tokenizer gives None."""

    ids: np.ndarray  # (n,) int64
    type_ids: np.ndarray  # (n,) int64
    offsets: np.ndarray  # (n, 2) int64, character offsets into the text
    special_tokens_mask: np.ndarray  # (n,) int64, 1 for special tokens
    word_ids: np.ndarray  # (n,) int64, -1 for None
    #: which sequence of a pair each token is from (-1 for specials); only when asked (question-answering)
    sequence_ids: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def _encoded(enc, sequence_ids: bool = False) -> TokenSequence:
    n = len(enc.ids)
    offsets = np.fromiter(itertools.chain.from_iterable(enc.offsets), dtype=np.int64, count=2 * n).reshape(
        n, 2
    )
    words = np.fromiter((-1 if w is None else w for w in enc.word_ids), dtype=np.int64, count=n)
    return TokenSequence(
        ids=np.asarray(enc.ids, dtype=np.int64),
        type_ids=np.asarray(enc.type_ids, dtype=np.int64),
        offsets=offsets,
        special_tokens_mask=np.asarray(enc.special_tokens_mask, dtype=np.int64),
        word_ids=words,
        sequence_ids=np.fromiter((-1 if s is None else s for s in enc.sequence_ids), dtype=np.int64, count=n)
        if sequence_ids
        else None,
    )


def check_text(text: str, where: str = "input") -> None:
    """InputError when ``text`` is not valid Unicode (a lone surrogate: a broken string, or an undecodable
    byte kept by ``surrogateescape``), so no tokenizer can read it. ``where`` names the item; the position
    is 0-based, as offsets are: "input at index 3 is not valid Unicode: lone surrogate U+D800 at character 5".
    """
    found = lone_surrogate(text)
    if found is not None:
        raise InputError(
            f"{where} is not valid Unicode: lone surrogate U+{found[1]:04X} at character {found[0]}"
        )


def clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: drop spaces before punctuation and English contractions."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


class TextTokenizer:
    """A fast tokenizer loaded from tokenizer.json, configured like transformers would configure it.

    ``embedding_rows``: the model's word-embedding rows (config.json ``vocab_size``). A tokenizer may hold
    added tokens past them (CamemBERT's ``<s>NOTUSED``): it loads, and a text that produces such an id is
    refused (InputError naming the token and the item, :attr:`~bertrt.errors.InputError.items`), as the
    model has no row for it; every other text runs."""

    def __init__(
        self,
        path,
        max_length: int,
        tokenizer_config: dict | None = None,
        special_tokens: dict[str, str | None] | None = None,
        pad_id_fallback: int | None = None,
        embedding_rows: int | None = None,
    ):
        from tokenizers import Tokenizer

        try:
            self._tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a bad file
            raise BundleError(path, f"cannot load tokenizer ({exc})") from exc
        # The file may carry padding/truncation settings of its own; transformers overrides them per call.
        self._tok.no_padding()
        self._tok.no_truncation()
        # Truncation is tokenizer state: one lock keeps concurrent callers from seeing each other's setting.
        self._lock = threading.Lock()
        self.max_length = int(max_length)
        self._config = dict(tokenizer_config or {})
        self.clean_up_tokenization_spaces = bool(self._config.get("clean_up_tokenization_spaces", False))
        self.special_tokens = dict(special_tokens or {})
        #: every token, added ones included (see vocab_size)
        self.tokenizer_size = self._tok.get_vocab_size(with_added_tokens=True)
        vocab = self._tok.get_vocab(with_added_tokens=True)
        self.max_token_id = max(vocab.values()) if vocab else -1
        model_vocab = self._tok.get_vocab(with_added_tokens=False)
        #: the largest id of the tokenizer model's own vocabulary (added tokens left out)
        self.max_model_token_id = max(model_vocab.values()) if model_vocab else -1
        self.embedding_rows = embedding_rows
        #: whether some id the tokenizer can emit has no embedding row (then every encoding is checked)
        self._check_rows = embedding_rows is not None and self.max_token_id >= embedding_rows
        #: the tokens the model has a row for (added tokens included): what a vocabulary-wide head scores
        self.vocab_size = (
            min(self.tokenizer_size, embedding_rows) if self._check_rows else self.tokenizer_size
        )
        self.mask_token = self.special_tokens.get("mask_token")
        self.mask_token_id = self._tok.token_to_id(self.mask_token) if self.mask_token else None
        pad = self.special_tokens.get("pad_token")
        pad_id = self._tok.token_to_id(pad) if pad else None
        self.pad_token_id = (
            pad_id if pad_id is not None else (pad_id_fallback if pad_id_fallback is not None else 0)
        )
        model = self._tok.model
        self.continuing_subword_prefix = getattr(model, "continuing_subword_prefix", None) or None
        self.num_special_tokens = self._tok.num_special_tokens_to_add(False)

    # -- encoding ---------------------------------------------------------------------------------
    def _set_truncation(
        self, max_length: int | None, stride: int = 0, strategy: str = "longest_first"
    ) -> None:
        if max_length is None:
            self._tok.no_truncation()
        else:
            self._tok.enable_truncation(max_length, stride=stride, strategy=strategy, direction="right")

    def encode_batch(
        self, texts, truncate: bool = True, max_length: int | None = None, strategy: str = "longest_first"
    ) -> list[TokenSequence]:
        """Encode texts (str, or (text, text_pair) tuples) with special tokens, truncated to max_length
        (``max_length``: a shorter cut, e.g. a sentence-transformers model's ``max_seq_length``;
        ``strategy``: the tokenizers truncation strategy, e.g. ``only_first`` for zero-shot's pairs).
        ``tokenizers``' Exception when a pair cannot be truncated so (its first text too short)."""
        with self._lock:
            self._set_truncation(
                min(max_length or self.max_length, self.max_length) if truncate else None, strategy=strategy
            )
            encodings = self._tok.encode_batch(list(texts), add_special_tokens=True)
        out = [_encoded(e) for e in encodings]
        if self._check_rows:
            self._refuse_rowless([[e] for e in out])
        return out

    def _refuse_rowless(self, items: list[list[TokenSequence]]) -> None:
        """InputError naming the first token without an embedding row and every item that has one."""
        rows = self.embedding_rows
        bad = [i for i, encs in enumerate(items) if any(int(e.ids.max(initial=-1)) >= rows for e in encs)]
        if not bad:
            return
        first = next(int(i) for e in items[bad[0]] for i in e.ids if i >= rows)
        token = self.id_to_token(first)
        problem = (
            f"token {token!r} (id {first}) has no row in the model's embedding (ids 0..{rows - 1}, "
            "config.json vocab_size): the tokenizer has it, the model does not; leave it out of the text"
        )
        where = ", ".join(map(str, bad[:20]))
        raise InputError(f"input at index(es) {where}: {problem}", items=bad, problem=problem)

    def encode_windows(self, texts: list[str], stride: int = 0) -> list[list[TokenSequence]]:
        """Each text as the windows transformers builds with ``truncation=True, max_length=model_max_length,
        return_overflowing_tokens=True, stride=stride``: the first window then the overflowing ones."""
        budget = self.max_length - self.num_special_tokens
        if not 0 <= stride < budget:
            raise InputError(
                f"stride must be >= 0 and less than max length minus special tokens ({self.max_length} - "
                f"{self.num_special_tokens} = {budget}); got {stride}"
            )
        return self.encode_pair_windows(texts, self.max_length, stride, "longest_first", sequence_ids=False)

    def encode_pair_windows(
        self, items: list, max_length: int, stride: int, strategy: str, sequence_ids: bool = True
    ) -> list[list[TokenSequence]]:
        """Each item (a str or a (text, text_pair) tuple) as the windows of ``max_length`` tokens that
        transformers builds with ``truncation=strategy, stride=stride, return_overflowing_tokens=True``
        (question-answering: ``only_second``); ``tokenizers``' Exception when it cannot truncate so."""
        with self._lock:
            self._set_truncation(max_length, stride, strategy)
            encodings = self._tok.encode_batch(list(items), add_special_tokens=True)
        out = [
            [_encoded(e, sequence_ids)] + [_encoded(o, sequence_ids) for o in e.overflowing]
            for e in encodings
        ]
        if self._check_rows:
            self._refuse_rowless(out)
        return out

    def encode_plain_specials(self) -> list[int]:
        """Ids the tokenizer adds to every text (its template's special tokens: ``[CLS]``, ``[SEP]``)."""
        with self._lock:
            self._tok.no_truncation()
            return self._tok.encode("", add_special_tokens=True).ids

    def encode_plain(self, text: str) -> list[int]:
        """Ids of ``text`` without special tokens, untruncated."""
        with self._lock:
            self._tok.no_truncation()
            return self._tok.encode(text, add_special_tokens=False).ids

    @property
    def raw(self):
        """The underlying ``tokenizers.Tokenizer`` (do not change its truncation/padding)."""
        return self._tok

    # -- vocabulary and decoding --------------------------------------------------------------------
    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def id_to_token(self, index: int) -> str | None:
        return self._tok.id_to_token(int(index))

    def get_vocab(self) -> dict[str, int]:
        return self._tok.get_vocab(with_added_tokens=True)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        """Same string as transformers' ``tokenizer.decode(ids, skip_special_tokens=...)``."""
        if isinstance(ids, (int, np.integer)):
            ids = [ids]
        text = self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return clean_up_tokenization(text) if self.clean_up_tokenization_spaces else text

    def tokens(self, ids) -> list[str]:
        return [self._tok.id_to_token(int(i)) for i in ids]
