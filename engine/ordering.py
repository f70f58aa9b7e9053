"""Length-sorted calls: run a callable on texts sorted by length, results back in the caller's order.

Sorting puts texts of similar length in the same batch, so a batching pipeline pads little. The one home
of this helper for bertrt's evaluation reference, the bench's PyTorch reference and the benchmark systems.
It imports nothing on purpose: the optimum-intel benchmark worker, which runs in a venv without bertrt,
loads this file by its path.
"""

from __future__ import annotations

__all__ = ["sorted_call"]


def _length(item) -> int:
    """Characters of an input: a text, or a ``{"text", "text_pair"}`` pair (both texts)."""
    return len(item) if isinstance(item, str) else sum(len(v or "") for v in item.values())


def sorted_call(call, texts: list) -> list:
    """``call`` on ``texts`` (str or text-pair dicts) sorted by length (stable); its results restored to
    the input order."""
    order = sorted(range(len(texts)), key=lambda i: _length(texts[i]))
    out = call([texts[i] for i in order])
    restored: list = [None] * len(texts)
    for pos, i in enumerate(order):
        restored[i] = out[pos]
    return restored
