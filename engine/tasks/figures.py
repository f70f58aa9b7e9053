"""Agreement figures between two runs of one model, pure numpy: the tasks' comparisons are built from them.

Two kinds of comparison use them: :meth:`bertrt.tasks.base.Task.agreement` (two lists of pipeline results,
``bertrt tune``'s accuracy and batch-invariance gates) and :meth:`~bertrt.tasks.base.Task.compare_outputs`
(two lists of raw graph outputs on the exporter's validation batches). :class:`CosineFigures` is the
one comparison of the tasks whose results are vectors (feature-extraction, sentence-embedding).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import MappingProxyType

import numpy as np

__all__ = [
    "CosineFigures",
    "argmax_agreement",
    "cosine_rows",
    "masked_max_abs_diff",
    "mean_pool",
    "pair_order_agreement",
    "result_cosines",
    "set_f1",
    "share_equal",
    "topk_overlap",
]


def masked_max_abs_diff(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """max |a - b|; with ``mask`` (batch, seq) only over positions where it is 1."""
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    if mask is not None:
        diff = diff[mask.astype(bool)]
    return float(diff.max()) if diff.size else 0.0


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean of (batch, seq, dim) hidden states over real tokens -> (batch, dim)."""
    m = mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(axis=1) / np.clip(m.sum(axis=1), 1e-9, None)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of matching rows of two (n, dim) arrays."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    num = (a * b).sum(axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return num / np.clip(den, 1e-12, None)


def argmax_agreement(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Fraction of positions (rows, or masked tokens) whose argmax over the last axis agrees."""
    same = a.argmax(axis=-1) == b.argmax(axis=-1)
    if mask is not None:
        same = same[mask.astype(bool)]
    return float(same.mean()) if same.size else 1.0


def topk_overlap(a: np.ndarray, b: np.ndarray, k: int = 5) -> float:
    """Mean |top-k(a) ∩ top-k(b)| / k over the rows of two (n, vocab) arrays."""
    ta = np.argsort(-a, axis=-1)[:, :k]
    tb = np.argsort(-b, axis=-1)[:, :k]
    overlaps = [len(set(x) & set(y)) / k for x, y in zip(ta.tolist(), tb.tolist())]
    return float(np.mean(overlaps)) if overlaps else 1.0


def result_cosines(reference: Sequence, candidate: Sequence) -> list[float]:
    """Cosine of each pair of results read as flat vectors (two zero vectors: 1 when equal)."""
    cos = []
    for a, b in zip(reference, candidate):
        a = np.asarray(a, dtype=np.float64).ravel()
        b = np.asarray(b, dtype=np.float64).ravel()
        denom = float(np.linalg.norm(a) * np.linalg.norm(b))
        cos.append(float(a @ b) / denom if denom else float(np.array_equal(a, b)))
    return cos


def share_equal(reference: Sequence, candidate: Sequence) -> float:
    """The share of positions where the two sequences hold equal values."""
    return float(np.mean([a == b for a, b in zip(reference, candidate)]))


def pair_order_agreement(a: Sequence[float], b: Sequence[float], tie: float = 1e-5) -> float:
    """The share of pairs (i, j) that ``b`` orders as ``a`` does, over the pairs ``a`` separates by more
    than ``tie`` (its near-ties have no order to keep); 1.0 when there are none."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    upper = np.triu_indices(len(a), k=1)
    gap = (a[:, None] - a[None, :])[upper]
    counted = np.abs(gap) > tie
    if not counted.any():
        return 1.0
    same = np.sign(gap) == np.sign((b[:, None] - b[None, :])[upper])
    return float(same[counted].mean())


def set_f1(gold: Sequence, pred: Sequence) -> float:
    """F1 of the (position, member) pairs of two sequences of collections (NER: entities per text)."""
    g = {(i, e) for i, members in enumerate(gold) for e in members}
    p = {(i, e) for i, members in enumerate(pred) for e in members}
    if not g and not p:
        return 1.0
    return 2 * len(g & p) / (len(g) + len(p))


class CosineFigures:
    """Mixin of the vector tasks (before :class:`~bertrt.tasks.base.Task` among the bases): results and
    mean-pooled graph outputs are compared by cosine, with the gates on those cosines."""

    gates = MappingProxyType({"accuracy.cosine_min": 0.98, "invariance.cosine_min": 0.9999})
    int8_gates = MappingProxyType({"cosine_min": 0.95})

    def agreement(self, reference, candidate) -> dict:
        cos = result_cosines(reference, candidate)
        return {"cosine_min": round(min(cos), 6), "cosine_mean": round(float(np.mean(cos)), 6)}

    def compare_outputs(self, reference, candidate, batches, mask_id) -> dict:
        out = super().compare_outputs(reference, candidate, batches, mask_id)
        cos = []
        for ref, cand, (_, feed) in zip(reference, candidate, batches):
            mask = feed["attention_mask"]
            cos.extend(cosine_rows(mean_pool(ref, mask), mean_pool(cand, mask)))
        if cos:
            out["cosine_min"] = float(np.min(cos))
            out["cosine_mean"] = float(np.mean(cos))
        return out
