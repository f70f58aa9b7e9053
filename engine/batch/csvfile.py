"""The CSV side of a batch job's inputs (:mod:`bertrt.batch.sources`): the quoting rule, shard starts,
and what pyarrow reads.

Record boundaries follow the quoting rule pyarrow and RFC 4180 use (a quote opens a field only as its
first byte; ``""`` inside one is a quote), so the scan finds where each shard starts. A quoted field that
never closes would make pyarrow (like any lenient reader) read the rest of the file as that one row's
text: it is a file error naming its line, or with ``on_error="skip"`` its line alone is a bad record that
:class:`CsvView` shows pyarrow as a row of empty cells, so it absorbs nothing.
"""

from __future__ import annotations

import csv
import io
import re

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import InputError
from ..lines import UTF8_BOM, drop_bom

__all__ = ["CSV_PARSE", "CsvView", "csv_batches", "csv_convert", "scan_csv"]


def csv_convert(text_field: str, pair_field: str | None, schema: pa.Schema | None = None):
    """pyarrow's conversion: the text columns as strings (``schema``: every column as the scan fixed it)."""
    types = {name: pa.string() for name in (text_field, pair_field) if name}
    if schema is not None:
        types = {f.name: f.type for f in schema}
    # An empty unquoted cell is missing (null); a quoted "" is the empty string.
    return pacsv.ConvertOptions(
        column_types=types, strings_can_be_null=True, null_values=[""], quoted_strings_can_be_null=False
    )


CSV_PARSE = pacsv.ParseOptions(newlines_in_values=True)


def _blank_file(path: str) -> bool:
    """Whether ``path`` holds nothing but a byte-order mark and whitespace (an empty CSV: 0 rows)."""
    with open(path, "rb") as fh:
        head = drop_bom(fh.read(len(UTF8_BOM)))
        while head is not None:
            if head.strip():
                return False
            head = fh.read(1 << 16) or None
    return True


def scan_csv(info, text_field: str, pair_field: str | None, shard_size: int, lenient: bool = False) -> None:
    """Fill ``info`` (an :class:`~bertrt.batch.sources.InputFile`): rows, schema, shard starts and, with
    ``lenient`` (on_error="skip"), the bad records of quotes that never close."""
    if _blank_file(info.path):
        info.rows, info.schema = 0, pa.schema([])
        return
    counted, offsets, info.bad_records = _csv_record_starts(info.path, shard_size, lenient)
    source = _csv_source(info, 0) if info.bad_records else info.path
    try:
        reader = pacsv.open_csv(
            source, parse_options=CSV_PARSE, convert_options=csv_convert(text_field, pair_field)
        )
        rows = sum(batch.num_rows for batch in reader)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(f"{info.path}: cannot read this CSV file ({' '.join(str(exc).split())})") from exc
    finally:
        if source is not info.path:
            source.close()
    info.rows = rows
    info.schema = reader.schema
    info.shard_offsets = offsets if counted == rows else []  # [] : read shards by skipping rows


_QUOTE_OR_COMMA = re.compile(rb'[",]')


def _csv_line_quotes(raw: bytes, quoted: bool) -> bool:
    """Whether a quoted field is still open at the end of ``raw`` (``quoted``: one was open at its start).
    A quote opens a field only as the field's first byte (pyarrow's and RFC 4180's rule: ``a 5" screen`` is
    text); inside one, ``""`` is a quote and ``"`` closes it."""
    if not quoted and b'"' not in raw:
        return False
    field_start, skip = (None if quoted else 0), -1
    for match in _QUOTE_OR_COMMA.finditer(raw):
        at = match.start()
        if at <= skip:
            continue
        if quoted:
            if raw[at] == 0x22:  # '"'
                if raw[at + 1 : at + 2] == b'"':
                    skip = at + 1
                else:
                    quoted, field_start = False, None
        elif raw[at] == 0x2C:  # ','
            field_start = at + 1
        elif at == field_start:
            quoted = True
    return quoted


def _unclosed(path: str, line: int, what: str) -> str:
    return (
        f"{path}: line {line} ({what}): a quoted field opens there and is never closed, so every later "
        'line would become its text; close the quote (a quote inside one is written "")'
    )


def _csv_record_starts(
    path: str, shard_size: int, lenient: bool = False
) -> tuple[int, list[tuple[int, int]], list[tuple[int, int, int, int]]]:
    """(data rows, (byte offset, line) of each shard's first row, bad records); blank lines are no rows.
    A quoted field that never closes is an InputError naming its line (pyarrow, like any lenient reader,
    would make the rest of the file that one row's text, silently); ``lenient``: its first line is a bad
    record ``(start, end byte, line, row)`` and the next line starts a record again."""
    offsets: list[tuple[int, int]] = []
    bad: list[tuple[int, int, int, int]] = []
    rows, header, resume = 0, True, (0, 1)
    while resume is not None:
        quoted, start, first_end = False, resume, resume[0]
        position, first = resume
        with open(path, "rb") as fh:
            fh.seek(position)
            for line, raw in enumerate(fh, start=first):
                begin = position
                position += len(raw)
                if begin == 0:
                    raw = drop_bom(raw)
                if not quoted:
                    if not raw.strip(b"\r\n"):
                        continue
                    start, first_end = (begin, line), position
                quoted = _csv_line_quotes(raw, quoted)
                if quoted:
                    continue
                if header:
                    header = False
                else:
                    if rows % shard_size == 0:
                        offsets.append(start)
                    rows += 1
        resume = None
        if quoted:
            if header or not lenient:
                raise InputError(_unclosed(path, start[1], "the header" if header else f"row {rows + 1}"))
            bad.append((start[0], first_end, start[1], rows))  # its first line alone: one bad row
            if rows % shard_size == 0:
                offsets.append(start)
            rows += 1
            resume = (first_end, start[1] + 1)
    return rows, offsets, bad


class CsvView(io.RawIOBase):
    """A CSV file from byte ``start`` as pyarrow should read it: each bad record (a line whose quote never
    closes) replaced by a row of empty cells, so it stays one row (a bad one) and absorbs nothing."""

    def __init__(self, path: str, start: int, bad: list[tuple[int, int, int, int]], columns: int):
        self._fh = open(path, "rb")  # closed in close()
        self._fh.seek(start)
        self._position = start
        self._bad = [(b, e) for b, e, _, _ in bad if b >= start]
        self._row = b"," * (columns - 1) + b"\n"
        self._pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if not self._pending:
            if self._bad and self._position == self._bad[0][0]:
                begin, end = self._bad.pop(0)
                self._fh.seek(end)
                self._position, self._pending = end, self._row
            else:
                limit = self._bad[0][0] - self._position if self._bad else 1 << 20
                self._pending = self._fh.read(min(limit, 1 << 20))
                self._position += len(self._pending)
        n = min(len(buffer), len(self._pending))
        buffer[:n] = self._pending[:n]
        self._pending = self._pending[n:]
        return n

    def close(self) -> None:
        self._fh.close()
        super().close()


def _csv_columns(path: str) -> int:
    """Columns of the CSV header (its first record)."""
    with open(path, encoding="utf-8-sig", newline="") as fh:
        return len(next(csv.reader(fh), [])) or 1


def _csv_source(info, start: int):
    """What pyarrow reads for ``info`` from byte ``start``: the file, or its :class:`CsvView`."""
    if not info.bad_records:
        fh = open(info.path, "rb")  # closed by the caller (with)
        fh.seek(start)
        return fh
    return io.BufferedReader(CsvView(info.path, start, info.bad_records, _csv_columns(info.path)))


def csv_batches(info, shard, text_field: str, pair_field: str | None):
    """Record batches from the shard's first row (its byte offset; else from the top, see _rechunk)."""
    convert = csv_convert(text_field, pair_field, info.schema)
    try:
        with _csv_source(info, shard.offset or 0) as fh:
            if shard.offset is not None:
                read = pacsv.ReadOptions(column_names=info.schema.names)
            else:
                read = pacsv.ReadOptions()
            yield from pacsv.open_csv(fh, read_options=read, parse_options=CSV_PARSE, convert_options=convert)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(f"{info.path}: cannot read this CSV file ({' '.join(str(exc).split())})") from exc
