"""Batching stage: sort by token length, cut batches, pad right, run, and restore the caller's order.

Sorting keeps padding small (similar lengths share a batch); results are written back by index, so
the caller sees its own order. Padding is on the right with attention_mask 0, which leaves the real
positions' fp32 outputs unchanged (up to float rounding, well under 1e-5).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .errors import InputError
from .tokenize import TokenSequence

__all__ = ["pad_batch", "plan_batches", "run_batched", "validate_batching"]


def validate_batching(batch_size, max_tokens_per_batch) -> None:
    """InputError for a batch_size or max_tokens_per_batch that is not a positive int."""
    problems = []
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        problems.append(f"batch_size must be a positive int, got {batch_size!r}")
    if max_tokens_per_batch is not None and (
        isinstance(max_tokens_per_batch, bool)
        or not isinstance(max_tokens_per_batch, (int, np.integer))
        or max_tokens_per_batch <= 0
    ):
        problems.append(f"max_tokens_per_batch must be a positive int or None, got {max_tokens_per_batch!r}")
    if problems:
        raise InputError("; ".join(problems))


def plan_batches(
    lengths: Sequence[int], batch_size: int, max_tokens_per_batch: int | None = None
) -> list[np.ndarray]:
    """Indices of each batch: sorted by length (stable), at most ``batch_size`` sequences and, when set,
    at most ``max_tokens_per_batch`` padded tokens (rows x longest). A sequence longer than the token
    budget still gets a batch of its own."""
    validate_batching(batch_size, max_tokens_per_batch)
    lengths = np.asarray(lengths, dtype=np.int64)
    order = np.argsort(lengths, kind="stable")
    batches: list[np.ndarray] = []
    start = 0
    for pos in range(len(order)):
        rows = pos - start + 1
        longest = int(lengths[order[pos]])  # sorted ascending: the newest is the longest
        too_many = rows > batch_size
        too_big = max_tokens_per_batch is not None and rows > 1 and rows * longest > max_tokens_per_batch
        if too_many or too_big:
            batches.append(order[start:pos])
            start = pos
    if start < len(order):
        batches.append(order[start:])
    return batches


def pad_batch(items: Sequence[TokenSequence], pad_id: int) -> dict[str, np.ndarray]:
    """Right-padded int64 arrays input_ids, attention_mask, token_type_ids of shape (rows, longest)."""
    if len(items) == 1:  # batch 1: nothing to pad (the latency path; the same arrays, fewer steps)
        (item,) = items
        return {
            "input_ids": item.ids.astype(np.int64, copy=False).reshape(1, -1),
            "attention_mask": np.ones((1, len(item)), dtype=np.int64),
            "token_type_ids": item.type_ids.astype(np.int64, copy=False).reshape(1, -1),
        }
    lengths = np.fromiter((len(e) for e in items), dtype=np.int64, count=len(items))
    real = np.arange(int(lengths.max())) < lengths[:, None]  # (rows, longest), row-major like the items
    ids = np.full(real.shape, pad_id, dtype=np.int64)
    types = np.zeros(real.shape, dtype=np.int64)
    ids[real] = np.concatenate([e.ids for e in items])
    types[real] = np.concatenate([e.type_ids for e in items])
    return {"input_ids": ids, "attention_mask": real.astype(np.int64), "token_type_ids": types}


def run_batched(
    items: Sequence[TokenSequence],
    forward: Callable[[dict[str, np.ndarray]], np.ndarray],
    collect: Callable[[np.ndarray, int, TokenSequence], object],
    pad_id: int,
    batch_size: int,
    max_tokens_per_batch: int | None = None,
) -> list:
    """Run ``forward`` over batches of ``items`` and return ``collect(output, row, item)`` per item, in
    the items' order. ``collect`` keeps what the task needs (e.g. ``output[row, :len(item)]``), so a
    batch's padded output is dropped as soon as it is read."""
    results: list = [None] * len(items)
    for index in plan_batches([len(e) for e in items], batch_size, max_tokens_per_batch):
        batch = [items[i] for i in index]
        output = forward(pad_batch(batch, pad_id))
        for row, i in enumerate(index):
            results[i] = collect(output, row, items[i])
    return results
