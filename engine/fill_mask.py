"""fill-mask post-processing: pure numpy. Softmax over the vocabulary at each mask, optional target
restriction, top-k — as transformers' FillMaskPipeline computes it."""

from __future__ import annotations

import numpy as np

from .numeric import softmax

__all__ = ["mask_positions", "top_predictions"]


def mask_positions(ids: np.ndarray, mask_token_id: int) -> np.ndarray:
    """Indices of the mask token in one sequence of ids."""
    return np.flatnonzero(np.asarray(ids) == mask_token_id)


def top_predictions(mask_logits: np.ndarray, top_k: int, target_ids: np.ndarray | None = None):
    """``(scores, token_ids)`` of shape (masks, k) for logits of shape (masks, vocab).

    Probabilities are over the full vocabulary (then restricted to ``target_ids`` when given), k is capped
    by the number of targets and the vocabulary size; sorted by descending score.
    """
    probs = softmax(np.asarray(mask_logits, dtype=np.float32), axis=-1)
    candidates = np.arange(probs.shape[-1]) if target_ids is None else np.asarray(target_ids, dtype=np.int64)
    if target_ids is not None:
        probs = probs[:, candidates]
    k = min(int(top_k), probs.shape[-1])
    # argsort of the negated scores, stable: ties keep the lower index first, like torch.topk on CPU.
    order = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    scores = np.take_along_axis(probs, order, axis=-1)
    return scores, candidates[order]
