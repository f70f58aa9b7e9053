"""The runtime's activation functions: one softmax and one sigmoid, shared by every task.

Both compute in float32 unless given float64 (any other dtype, float16 or int, is cast to float32), which
is what transformers' pipelines do with a model's logits; so results are the same bit for bit whichever
task calls them.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sigmoid", "softmax"]


def _floating(x) -> np.ndarray:
    """``x`` as an array of float64 when it is one, else float32 (no copy when it already is)."""
    x = np.asarray(x)
    return x if x.dtype == np.float64 else x.astype(np.float32, copy=False)


def softmax(x, axis: int = -1) -> np.ndarray:
    """Softmax over ``axis`` as transformers computes it: shift by the max, exp, normalize."""
    x = _floating(x)
    shifted = np.exp(x - x.max(axis=axis, keepdims=True))
    return shifted / shifted.sum(axis=axis, keepdims=True)


def sigmoid(x) -> np.ndarray:
    """Element-wise logistic function ``1 / (1 + exp(-x))``."""
    x = _floating(x)
    return 1.0 / (1.0 + np.exp(-x))
