"""Line-oriented input, read by one rule everywhere bertrt reads it (``bertrt predict``'s stdin, JSONL).

* **Lines end at** ``"\\n"`` **and nowhere else**; one ``"\\r"`` right before it is dropped (``\\r\\n``
  files). Form feeds (common in text extracted from PDFs), vertical tabs, ``\\x1c``-``\\x1e``, ``\\x85``,
  U+2028 and U+2029 stay inside their line, unlike :meth:`str.splitlines`, so output row *k* answers input
  line *k*. A final ``"\\n"`` ends the last line; it does not start an empty one.
* **A leading UTF-8 byte-order mark is dropped** (:func:`drop_bom`) from every file and stream bertrt
  reads text from: it marks the encoding, it is no text (left in, it shifts every entity offset by one).
* **Text is UTF-8**, decoded strictly: :func:`decode_utf8` names the line and byte column of the first
  invalid sequence, :func:`valid_text` does the same for a ``str`` that came through ``surrogateescape``
  (stdin or argv under the C locale) and refuses lone surrogates.
* **JSON lines** are strict JSON (RFC 8259), parsed by :func:`parse_json_line`: ``NaN``, ``Infinity`` and
  numbers beyond a double (``1e999``) are refused (they cannot be written back as JSON), as are strings
  holding a lone surrogate (``"\\ud800"``: not Unicode text) and values nested deeper than
  :data:`MAX_JSON_DEPTH` (so no later walk over the value can exhaust Python's recursion limit). Every
  failure is an :class:`~bertrt.errors.InputError` ``"line N: ..."``.
* **Written JSON lines** (:func:`dumps_line`) are strict JSON whose only line break is the final one:
  ``\x85``, U+2028 and U+2029 inside strings are written as ``\\u`` escapes, so even a reader that splits
  on every Unicode line break gets one value per line.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from .errors import InputError

__all__ = [
    "MAX_JSON_DEPTH",
    "UTF8_BOM",
    "valid_text",
    "decode_utf8",
    "drop_bom",
    "dumps_line",
    "lone_surrogate",
    "parse_json",
    "parse_json_line",
    "split_lines",
    "strip_line_end",
]

#: characters json.dumps(ensure_ascii=False) writes raw that str.splitlines() breaks on (the others are
#: control characters, always escaped)
_LINE_BREAKS_IN_STRINGS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}

#: Deepest nesting of arrays/objects a JSON line may have (serde_json's default limit).
MAX_JSON_DEPTH = 128


#: the UTF-8 byte-order mark, as bytes (U+FEFF encoded)
UTF8_BOM = b"\xef\xbb\xbf"


def drop_bom(data):
    """``data`` (the start of a file or stream, bytes or str) without a leading byte-order mark."""
    return data.removeprefix(UTF8_BOM if isinstance(data, bytes) else "\ufeff")


def strip_line_end(raw: str) -> str:
    """``raw`` without its ``"\\n"`` and one ``"\\r"`` before it (a line as a file iterator yields it)."""
    return raw.removesuffix("\n").removesuffix("\r")


def split_lines(text: str) -> list[str]:
    """The lines of ``text``: split on ``"\\n"`` only, one ``"\\r"`` before each ``"\\n"`` dropped."""
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":  # the final "\n" ends the last line
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def lone_surrogate(text: str) -> tuple[int, int] | None:
    """``(index, code point)`` of the first lone surrogate in ``text`` (a ``str`` UTF-8 cannot encode, so
    no tokenizer can read it), None when ``text`` is valid Unicode. The one check every reader uses."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start, ord(text[exc.start])
    return None


def _where(data, offset: int, lines: bool) -> str:
    """Where ``offset`` is in ``data``: ``line N`` (1-based) and ``byte column C`` (1-based, as editors and
    JSON errors count) for bytes, ``character C`` (0-based, as entity offsets count) for a str;
    ``lines=False``: the column alone, counted from the start of ``data``."""
    is_bytes = isinstance(data, bytes)
    newline = b"\n" if is_bytes else "\n"
    unit, base = ("byte column", 1) if is_bytes else ("character", 0)
    if not lines:  # counted from the start of data
        return f"{unit} {offset + base}"
    column = offset - (data.rfind(newline, 0, offset) + 1) + base
    return f"line {data.count(newline, 0, offset) + 1}, {unit} {column}"


def decode_utf8(data: bytes, source: str = "stdin", lines: bool = True) -> str:
    """``data`` decoded as UTF-8; InputError naming ``source``, the line and the byte column of the first
    invalid byte sequence (``lines=False``: the byte column from the start, for a source such as an
    argument that is not read as lines)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad = data[exc.start : exc.end]
        raise InputError(
            f"{source} is not valid UTF-8 ({_where(data, exc.start, lines)}: "
            f"{' '.join(f'0x{b:02x}' for b in bad)}, {exc.reason})"
        ) from None


def valid_text(text: str, source: str = "stdin", lines: bool = True) -> str:
    """``text`` as valid Unicode text. A ``str`` read with ``surrogateescape`` (stdin, argv under the C
    locale) holds each undecodable byte as U+DC80..U+DCFF: those bytes are recovered and decoded strictly,
    so the error is :func:`decode_utf8`'s (line, byte column); any other lone surrogate is refused naming
    its line and character."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        data = text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError as exc:
        raise InputError(
            f"{source} holds a lone surrogate U+{ord(text[exc.start]):04X} "
            f"({_where(text, exc.start, lines)}); text must be valid Unicode"
        ) from None
    return decode_utf8(data, source, lines)


class _NotStrictJSON(ValueError):
    """A value json.loads accepts but strict JSON has not (NaN, Infinity, 1e999)."""


def _refuse_constant(name: str):
    raise _NotStrictJSON(f"{name} is not valid JSON (numbers must be finite)")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _NotStrictJSON(f"number {text} is out of range (beyond a double)")
    return value


def _surrogate_name(text: str) -> str | None:
    found = lone_surrogate(text)
    return None if found is None else f"U+{found[1]:04X}"


def _too_deep(max_depth: int) -> str:
    return f"JSON nested too deeply (more than {max_depth} levels of arrays/objects)"


_MAX_DIGITS = sys.get_int_max_str_digits() if hasattr(sys, "get_int_max_str_digits") else 4300


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > _MAX_DIGITS:
        raise _NotStrictJSON(f"an integer of {digits} digits is too large (at most {_MAX_DIGITS})")
    return int(text)


def _check_value(value: Any, max_depth: int, strings: bool) -> str | None:
    """The first problem of a parsed JSON value (nested too deeply; with ``strings``, a lone surrogate in
    a string or a field name), found without recursion. A top-level array or object is nesting level 1."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            bad = _surrogate_name(item) if strings else None
            if bad is not None:
                where = f" in {path!r}" if path else ""
                return f"string{where} holds a lone surrogate {bad}, not valid Unicode"
            continue
        if not isinstance(item, (dict, list)):
            continue
        if depth + 1 > max_depth:
            return _too_deep(max_depth)
        if isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
            continue
        for key, child in item.items():
            where = f"{path}.{key}" if path else key
            bad = _surrogate_name(key) if strings else None
            if bad is not None:
                return f"field name {where!r} holds a lone surrogate {bad}, not valid Unicode"
            stack.append((child, where, depth + 1))
    return None


def parse_json(data: str | bytes, max_depth: int = MAX_JSON_DEPTH, strings: bool = True) -> Any:
    """The strict JSON value of ``data`` (see the module docstring): the one JSON reader of bertrt's
    inputs (JSONL lines, eval files, server request bodies). InputError naming what is wrong, never a
    RecursionError. ``strings=False`` leaves lone surrogates in strings to the caller (the server names
    the text's index instead)."""
    try:
        value = json.loads(
            data, parse_constant=_refuse_constant, parse_float=_finite_float, parse_int=_bounded_int
        )
    except json.JSONDecodeError as exc:
        at = f"column {exc.colno}" if exc.lineno == 1 else f"line {exc.lineno} column {exc.colno}"
        raise InputError(f"not valid JSON ({exc.msg} at {at})") from None
    except RecursionError:
        raise InputError(_too_deep(max_depth)) from None
    except _NotStrictJSON as exc:
        raise InputError(str(exc)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    except ValueError as exc:  # anything else the decoder refuses
        raise InputError(f"a value cannot be read ({str(exc).split(':')[0]})") from None
    problem = _check_value(value, max_depth, strings)
    if problem is not None:
        raise InputError(problem)
    return value


def parse_json_line(line: str, number: int) -> Any:
    """:func:`parse_json` of input line ``number``; InputError ``"line N: ..."``."""
    try:
        return parse_json(line)
    except InputError as exc:
        raise InputError(f"line {number}: {exc}") from None


def dumps_line(value: Any) -> str:
    """``value`` as one line of strict JSON (ValueError for NaN/Infinity), UTF-8 text kept as is except
    the line breaks :func:`split_lines` keeps inside a line, written as escapes (they can only occur in
    strings, where the escape means the same)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).translate(_LINE_BREAKS_IN_STRINGS)
