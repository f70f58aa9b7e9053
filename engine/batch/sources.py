"""The inputs of a batch job: which files, their rows and schema, the shard plan, and one shard's rows.

A shard is a fixed range of rows of one input file (``rows [k * shard_size, (k + 1) * shard_size)``), so
the plan is the same on every run over the same files and a re-run can skip the shards already written.
Rows are never all in memory: a file is scanned once to count its rows (a Parquet file's footer says it
at once), and a shard is streamed in chunks of a few hundred rows.

========== ==================================================================================================
format     how it is read
========== ==================================================================================================
``.jsonl`` line by line with :mod:`json` (pyarrow's JSON reader rejects a whole file when one field changes
           type, and a non-string text is exactly the bad row to report): one object per non-blank line.
           The scan records where each shard starts (byte offset and line) and the Arrow schema of the
           other fields, unified over every line; a shard is read from its offset.
``.csv``   :mod:`pyarrow.csv`, streaming; column types are inferred once by the scan and fixed for every
           shard read. An empty unquoted text cell is a missing text (``""`` is the empty string). The
           scan also finds where each shard starts (record boundaries by the quoting rule, checked
           against pyarrow's row count); a shard is read from there. Should the two counts differ,
           shards are read by skipping the rows before them instead. A quoted field that never closes
           is a file error naming its line (pyarrow would read the rest of the file as its text); with
           ``on_error="skip"`` its line alone is a bad row and the next line a record again.
``.parquet`` :mod:`pyarrow.dataset` / :mod:`pyarrow.parquet`: rows from the footer, a shard from the row groups
           it overlaps.
========== ==================================================================================================

A bad row (no text field, a null or a non-string text, a JSONL line that is not a JSON object) is kept in
the chunk with its reason (:attr:`Chunk.reasons`), so the runner can stop on it or write it to the errors.
Problems of a whole file (no such column anywhere, a column whose type changes, malformed CSV) are
:class:`~bertrt.errors.InputError` at planning time, naming the file.
"""

from __future__ import annotations

import base64
import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ..errors import InputError
from ..lines import decode_utf8, drop_bom, parse_json_line
from .csvfile import csv_batches, scan_csv

__all__ = [
    "FORMATS",
    "Chunk",
    "InputFile",
    "Shard",
    "iter_shard",
    "plan_shards",
    "resolve_inputs",
    "scan_file",
]

#: file suffix -> format
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_STRING_TYPES = (pa.string(), pa.large_string())
#: rows per block when the JSONL scan infers the schema of the other fields
_SCHEMA_BLOCK = 4096


@dataclass
class InputFile:
    """One input file: its fingerprint (path, size, mtime), rows, Arrow schema and where its shards start."""

    path: str
    format: str
    bytes: int
    mtime_ns: int
    rows: int = 0
    schema: pa.Schema | None = None
    #: JSONL: (byte offset, 1-based line) of each shard's first row
    shard_offsets: list[tuple[int, int]] = field(default_factory=list)
    #: CSV read with on_error="skip": (start, end byte, line, row) of each record whose quote never
    #: closes; it is that one line, read as a bad row (see :class:`CsvView`)
    bad_records: list[tuple[int, int, int, int]] = field(default_factory=list)

    def fingerprint(self) -> dict:
        return {"path": self.path, "format": self.format, "bytes": self.bytes, "mtime_ns": self.mtime_ns}

    def to_json(self) -> dict:
        return {
            **self.fingerprint(),
            "rows": self.rows,
            "schema": base64.b64encode(self.schema.serialize().to_pybytes()).decode("ascii"),
            "shard_offsets": [list(o) for o in self.shard_offsets],
            "bad_records": [list(b) for b in self.bad_records],
        }

    @classmethod
    def from_json(cls, d: dict) -> InputFile:
        schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(d["schema"])))
        return cls(
            d["path"],
            d["format"],
            d["bytes"],
            d["mtime_ns"],
            d["rows"],
            schema,
            [tuple(o) for o in d.get("shard_offsets", [])],
            [tuple(b) for b in d.get("bad_records", [])],
        )

    def light(self) -> InputFile:
        """This file without its shard offsets (what a worker needs: each shard carries its own)."""
        return InputFile(
            self.path, self.format, self.bytes, self.mtime_ns, self.rows, self.schema, [], self.bad_records
        )


@dataclass(frozen=True)
class Shard:
    """Rows ``[start, stop)`` of input file number ``file``; ``offset``/``line``: where a JSONL shard starts."""

    file: int
    index: int
    start: int
    stop: int
    offset: int | None = None
    line: int | None = None

    @property
    def name(self) -> str:
        return f"part-{self.file:05d}-{self.index:06d}"

    @property
    def rows(self) -> int:
        return self.stop - self.start


@dataclass
class Chunk:
    """Consecutive rows of a shard: the input columns, the file position of row 0, the reasons of the rows
    already known to be bad (chunk index -> reason), JSONL line numbers and the raw text of bad lines."""

    table: pa.Table
    first_row: int
    reasons: dict[int, str] = field(default_factory=dict)
    lines: list[int] | None = None
    raw: dict[int, str] = field(default_factory=dict)


# -- which files ------------------------------------------------------------------------------------------
def _format_of(path: Path) -> str | None:
    return FORMATS.get(path.suffix.lower())


def _inside(path: Path, folder: Path | None) -> bool:
    return folder is not None and (path == folder or folder in path.parents)


def resolve_inputs(spec: str | os.PathLike, exclude: str | os.PathLike | None = None) -> list[Path]:
    """The input files of ``spec``: a file, a folder (every ``.jsonl``/``.csv``/``.parquet`` under it, not
    hidden or ``_``-prefixed) or a glob, sorted; never a file under ``exclude`` (the job's OUTPUT)."""
    text = os.fspath(spec)
    skip = Path(exclude).resolve() if exclude is not None else None
    path = Path(text).expanduser()
    if path.is_file():
        if _format_of(path) is None:
            raise InputError(
                f"{path}: unknown input format {path.suffix or '(no suffix)'!r}; expected one of "
                f"{', '.join(FORMATS)}"
            )
        return [path.resolve()]
    if path.is_dir():
        found = []
        for candidate in sorted(path.rglob("*")):
            relative = candidate.relative_to(path).parts
            if any(part.startswith((".", "_")) for part in relative):
                continue
            if candidate.is_file() and _format_of(candidate) and not _inside(candidate.resolve(), skip):
                found.append(candidate.resolve())
        if not found:
            raise InputError(f"{path}: folder has no {', '.join(FORMATS)} files")
        return found
    if glob.has_magic(text):
        found = sorted(
            {
                Path(p).resolve()
                for p in glob.glob(os.path.expanduser(text), recursive=True)
                if Path(p).is_file() and _format_of(Path(p))
            }
        )
        found = [p for p in found if not _inside(p, skip)]
        if not found:
            raise InputError(f"no {', '.join(FORMATS)} files match {text!r}")
        return found
    raise InputError(f"{text}: no such file or folder")


# -- scanning: rows, schema, shard offsets ------------------------------------------------------------------
def scan_file(
    path: Path,
    text_field: str,
    pair_field: str | None,
    id_field: str | None,
    shard_size: int,
    on_error: str = "fail",
) -> InputFile:
    """Count the rows of one file, fix its Arrow schema and (JSONL) where each shard starts.
    ``on_error="skip"``: a CSV record whose quote never closes is a bad row, not a file error."""
    stat = path.stat()
    info = InputFile(str(path), _format_of(path), stat.st_size, stat.st_mtime_ns)
    if info.format == "jsonl":
        _scan_jsonl(info, text_field, pair_field, shard_size)
    elif info.format == "csv":
        scan_csv(info, text_field, pair_field, shard_size, lenient=on_error == "skip")
    else:
        _scan_parquet(info, text_field, pair_field)
    if info.rows == 0 and not info.schema.names:  # an empty file: 0 rows, no fields to check
        info.schema = pa.schema([pa.field(n, pa.string()) for n in (text_field, pair_field, id_field) if n])
    names = info.schema.names
    needed = [("text field", text_field)] + [
        (what, name) for what, name in (("text pair field", pair_field), ("id field", id_field)) if name
    ]
    for what, name in needed:
        if name not in names:
            shown = ", ".join(repr(n) for n in names[:12]) or "none"
            raise InputError(
                f"{path}: no {what} {name!r} in this file (its fields: {shown}); pass the right "
                f"--{what.replace(' ', '-')}"
            )
    if "result" in names:
        raise InputError(f"{path}: has a field named 'result', the column bertrt batch adds; rename it")
    for name in (text_field, pair_field):
        if name and name in names and info.format == "parquet":
            kind = info.schema.field(name).type
            if kind not in _STRING_TYPES and kind != pa.null():
                raise InputError(f"{path}: column {name!r} is {kind}, expected a string column")
    return info


def _jsonl_lines(path: str, offset: int = 0, line: int = 1) -> Iterator[tuple[int, int, bytes]]:
    """(byte offset, 1-based line number, raw bytes) of every non-blank line from ``offset``."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        position = offset
        for raw in fh:
            start = position
            position += len(raw)
            if start == 0:
                raw = drop_bom(raw)
                start = position - len(raw)
            if raw.strip():
                yield start, line, raw
            line += 1


def strip_line_end_bytes(raw: bytes) -> bytes:
    """``raw`` without its ``\\n`` and one ``\\r`` before it."""
    return raw.removesuffix(b"\n").removesuffix(b"\r")


_JSON_TYPES = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}


def _parse_line(
    raw: bytes, text_field: str, pair_field: str | None, line: int = 0
) -> tuple[dict, str | None]:
    """(record, reason): the record with a bad text or pair set to None, and why it is bad (None: good).
    Lines are read by bertrt's one rule (:mod:`bertrt.lines`): strict UTF-8, strict JSON."""
    try:
        text = decode_utf8(strip_line_end_bytes(raw), source="the line", lines=False)
        record = parse_json_line(text, line)
    except InputError as exc:
        return {}, str(exc).removeprefix(f"line {line}: ")
    if not isinstance(record, dict):
        return {}, f"expected a JSON object, got {_JSON_TYPES.get(type(record), type(record).__name__)}"
    reason = None
    for name, required in ((text_field, True), (pair_field, False)):
        if name is None:
            continue
        value = record.get(name)
        if isinstance(value, str):
            continue
        if value is None and not required:
            continue
        if reason is None:
            if name not in record:
                reason = f"no {name!r} field"
            elif value is None:
                reason = f"{name!r} is null"
            else:
                reason = f"{name!r} is {_JSON_TYPES.get(type(value), type(value).__name__)}, not a string"
        if name in record:
            record[name] = None
    return record, reason


def _block_schema(path: str, records: list[dict], first_line: int, last_line: int) -> pa.Schema:
    keys = dict.fromkeys(k for r in records for k in r)  # every row's fields, not only the first row's
    try:
        return pa.Table.from_pydict({k: [r.get(k) for r in records] for k in keys}).schema
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(
            f"{path}: lines {first_line}-{last_line}: a field changes JSON type between rows ({exc}); every "
            "field other than the text keeps one type (or null)"
        ) from exc


def _scan_jsonl(info: InputFile, text_field: str, pair_field: str | None, shard_size: int) -> None:
    order: dict[str, None] = {}  # every field in order of first appearance
    schemas: list[pa.Schema] = []
    block: list[dict] = []
    block_line = 1
    skip = {text_field, pair_field}
    rows = 0
    line = 0
    for offset, line, raw in _jsonl_lines(info.path):
        if rows % shard_size == 0:
            info.shard_offsets.append((offset, line))
        rows += 1
        record, _ = _parse_line(raw, text_field, pair_field, line)
        order.update(dict.fromkeys(record))
        if not block:
            block_line = line
        block.append({k: v for k, v in record.items() if k not in skip})
        if len(block) == _SCHEMA_BLOCK:
            schemas.append(_block_schema(info.path, block, block_line, line))
            block = []
    if block:
        schemas.append(_block_schema(info.path, block, block_line, line))
    try:
        others = pa.unify_schemas(schemas, promote_options="permissive") if schemas else pa.schema([])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InputError(
            f"{info.path}: a field changes JSON type between rows ({exc}); every field other than the "
            "text keeps one type (or null)"
        ) from exc
    fields = []
    for name in order:
        if name in skip:
            fields.append(pa.field(name, pa.string()))
        elif name in others.names:
            fields.append(others.field(name))
    info.rows = rows
    info.schema = pa.schema(fields)


def _scan_parquet(info: InputFile, text_field: str, pair_field: str | None) -> None:
    try:
        dataset = pads.dataset(info.path, format="parquet")
        info.rows = dataset.count_rows()
        info.schema = dataset.schema
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{info.path}: cannot read this Parquet file ({exc})") from exc


def plan_shards(files: list[InputFile], shard_size: int) -> list[Shard]:
    """Every shard of every file, in order."""
    shards = []
    for number, info in enumerate(files):
        for index, start in enumerate(range(0, info.rows, shard_size)):
            offset, line = info.shard_offsets[index] if info.shard_offsets else (None, None)
            shards.append(Shard(number, index, start, min(start + shard_size, info.rows), offset, line))
    return shards


# -- reading a shard ----------------------------------------------------------------------------------------
def iter_shard(
    info: InputFile, shard: Shard, chunk_rows: int, text_field: str, pair_field: str | None
) -> Iterator[Chunk]:
    """The rows of ``shard`` in chunks of ``chunk_rows`` (the last may be shorter), with bad-row reasons."""
    if info.format == "jsonl":
        chunks = _jsonl_chunks(info, shard, chunk_rows, text_field, pair_field)
    elif info.format == "csv":
        skip = 0 if shard.offset is not None else shard.start
        chunks = _rechunk(csv_batches(info, shard, text_field, pair_field), shard, chunk_rows, skip=skip)
    else:
        chunks = _parquet_chunks(info, shard, chunk_rows)
    unclosed = {row: line for _, _, line, row in info.bad_records}
    for chunk in chunks:
        _check_texts(chunk, text_field, pair_field)
        for i in range(chunk.table.num_rows) if unclosed else ():
            if chunk.first_row + i in unclosed:
                chunk.reasons[i] = (
                    f"line {unclosed[chunk.first_row + i]}: a quoted field opens there and is never closed"
                )
        yield chunk


def _check_texts(chunk: Chunk, text_field: str, pair_field: str | None) -> None:
    """Add the reason of every row whose text is missing (null) to ``chunk.reasons``."""
    column = chunk.table.column(text_field)
    if column.null_count:
        for i in pc.is_null(column).to_numpy(zero_copy_only=False).nonzero()[0].tolist():
            chunk.reasons.setdefault(int(i), f"{text_field!r} is missing or null")
    del pair_field  # a null pair means no pair: nothing to check


def _jsonl_chunks(
    info: InputFile, shard: Shard, chunk_rows: int, text_field: str, pair_field: str | None
) -> Iterator[Chunk]:
    records: list[dict] = []
    lines: list[int] = []
    reasons: dict[int, str] = {}
    raw_bad: dict[int, str] = {}
    first = shard.start
    row = shard.start

    def flush() -> Chunk:
        try:
            table = pa.Table.from_pylist(records, schema=info.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise InputError(
                f"{info.path}: lines {lines[0]}-{lines[-1]} do not fit the schema found by the scan "
                f"({exc}); has the file changed during the run?"
            ) from exc
        return Chunk(table, first, dict(reasons), list(lines), dict(raw_bad))

    for _, line, raw in _jsonl_lines(info.path, shard.offset or 0, shard.line or 1):
        if row >= shard.stop:
            break
        record, reason = _parse_line(raw, text_field, pair_field, line)
        if reason is not None:
            reasons[len(records)] = reason
            raw_bad[len(records)] = strip_line_end_bytes(raw).decode("utf-8", errors="replace")
        records.append(record)
        lines.append(line)
        row += 1
        if len(records) == chunk_rows:
            yield flush()
            records, lines, reasons, raw_bad = [], [], {}, {}
            first = row
    if row < shard.stop:
        raise InputError(f"{info.path}: ended at row {row}, the scan found {info.rows}: has it changed?")
    if records:
        yield flush()


def _parquet_chunks(info: InputFile, shard: Shard, chunk_rows: int) -> Iterator[Chunk]:
    parquet = pq.ParquetFile(info.path)
    groups, skip, position = [], 0, 0
    for g in range(parquet.metadata.num_row_groups):
        size = parquet.metadata.row_group(g).num_rows
        if position + size > shard.start and position < shard.stop:
            if not groups:
                skip = shard.start - position
            groups.append(g)
        position += size
    batches = parquet.iter_batches(batch_size=max(chunk_rows, 1024), row_groups=groups) if groups else []
    yield from _rechunk(batches, shard, chunk_rows, skip=skip)


def _rechunk(batches, shard: Shard, chunk_rows: int, skip: int) -> Iterator[Chunk]:
    """Record batches -> chunks of exactly ``chunk_rows`` rows of ``shard`` (dropping ``skip`` rows first)."""
    pending: list[pa.RecordBatch] = []
    held = 0
    wanted = shard.rows
    first = shard.start
    for batch in batches:
        if skip:
            cut = min(skip, batch.num_rows)
            batch, skip = batch.slice(cut), skip - cut
        if wanted <= 0:
            break
        batch = batch.slice(0, wanted)
        wanted -= batch.num_rows
        pending.append(batch)
        held += batch.num_rows
        while held >= chunk_rows:
            table = pa.Table.from_batches(pending).combine_chunks()
            yield Chunk(table.slice(0, chunk_rows), first)
            first += chunk_rows
            rest = table.slice(chunk_rows)
            pending, held = rest.to_batches(), rest.num_rows
    if held:
        yield Chunk(pa.Table.from_batches(pending), first)
    if wanted > 0:
        raise InputError(f"shard {shard.name}: the input ended {wanted} rows early: has it changed?")
