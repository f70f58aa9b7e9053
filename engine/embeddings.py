"""feature-extraction post-processing: pure numpy pooling of token vectors.

- ``pool``: one vector per text from its token vectors, mask-aware (mean / cls / max).
- ``l2_normalize``: unit-length vectors (cosine similarity becomes a dot product).
- ``word_vectors``: one vector per word, pooled from the word's sub-tokens using the tokenizer's
  word ids ("enchanting" -> "en", "##chan", "##ting" -> one vector); special tokens are left out.
"""

from __future__ import annotations

import numpy as np

__all__ = ["POOLINGS", "WORD_POOLINGS", "l2_normalize", "pool", "word_vectors"]

POOLINGS = ("mean", "cls", "max")
WORD_POOLINGS = ("mean", "max", "first")


def pool(hidden: np.ndarray, mask: np.ndarray, mode: str = "mean") -> np.ndarray:
    """(batch, tokens, dim) with a (batch, tokens) 0/1 mask -> (batch, dim). Masked positions are ignored."""
    hidden = np.asarray(hidden, dtype=np.float32)
    mask = np.asarray(mask, dtype=np.float32)[..., None]
    if mode == "cls":
        return hidden[:, 0, :].copy()
    if mode == "mean":
        total = (hidden * mask).sum(axis=1)
        return total / np.clip(mask.sum(axis=1), 1e-9, None)
    if mode == "max":
        return np.where(mask > 0, hidden, -np.inf).max(axis=1)
    raise ValueError(f"unknown pooling {mode!r}; expected one of {', '.join(POOLINGS)}")


def l2_normalize(x: np.ndarray, axis: int = -1) -> np.ndarray:
    norm = np.linalg.norm(x, axis=axis, keepdims=True)
    return x / np.clip(norm, 1e-12, None)


def word_vectors(
    hidden: np.ndarray, word_ids: np.ndarray, mode: str = "mean"
) -> tuple[np.ndarray, np.ndarray]:
    """Token vectors (tokens, dim) and word ids (tokens,), -1 for special tokens -> (words (W,) ids in
    order of first appearance, vectors (W, dim))."""
    hidden = np.asarray(hidden, dtype=np.float32)
    word_ids = np.asarray(word_ids)
    keep = word_ids >= 0
    words, first, inverse = np.unique(word_ids[keep], return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # words in reading order
    tokens = hidden[keep]
    out = np.zeros((len(words), hidden.shape[-1]), dtype=np.float32)
    if mode == "mean":
        np.add.at(out, inverse, tokens)
        out /= np.bincount(inverse, minlength=len(words))[:, None]
    elif mode == "max":
        out.fill(-np.inf)
        np.maximum.at(out, inverse, tokens)
    elif mode == "first":
        out = tokens[first]
    else:
        raise ValueError(f"unknown word pooling {mode!r}; expected one of {', '.join(WORD_POOLINGS)}")
    return words[order], out[order]
