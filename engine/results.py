"""Results as plain JSON values: what the CLI prints and the server sends."""

from __future__ import annotations

import numpy as np

__all__ = ["to_jsonable"]


def to_jsonable(value):
    """``value`` with numpy arrays and scalars turned into lists, floats and ints (recursively)."""
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    return value
