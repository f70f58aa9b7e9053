"""Results as plain JSON values: what the CLI prints and the server sends."""

from __future__ import annotations

import numpy as np

from .errors import InputError

__all__ = ["to_jsonable"]


def to_jsonable(value):
    """``value`` with numpy arrays and scalars turned into lists, floats and ints (recursively).

    InputError (never RecursionError) for a value nested deeper than Python's recursion limit allows;
    values read by :func:`bertrt.lines.parse_json_line` are at most ``MAX_JSON_DEPTH`` deep, far below it.
    """
    try:
        return _convert(value)
    except RecursionError:
        raise InputError("value is nested too deeply to convert to JSON") from None


def _convert(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _convert(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_convert(v) for v in value]
    return value
