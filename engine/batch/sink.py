"""The output folder: atomic shard files, the bad rows of each shard, the manifest, and a run lock.

::

    OUTPUT/
      part-00000-000000.parquet     one file per shard (part-<input file>-<shard>), or .jsonl
      _errors/part-00000-000000.jsonl   the bad rows of that shard (--on-error skip), written before it
      _errors.jsonl                 every bad row of the finished shards, rebuilt at the end of each run
      _bertrt_manifest.json         bundle hash, options, inputs, row counts, shards done, timings
      _bertrt.lock                  held (flock) while a run writes the folder

Every file is written under a hidden temporary name in its own folder, flushed, fsync'ed and renamed over
its final name with :func:`os.replace` (then the folder is fsync'ed), so a crash or SIGKILL at any moment
leaves either the whole file or none of it. A shard is *done* when its data file exists: the manifest is a
record (rewritten atomically after a shard, at most once a second, and at the end of every run) and is
rebuilt from the files when a run was killed before writing it. Readers of the folder (``pyarrow.dataset``, Spark, DuckDB) skip the ``_`` and ``.`` names.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..lines import dumps_line

__all__ = [
    "ERRORS",
    "ERRORS_DIR",
    "LOCK",
    "MANIFEST",
    "ShardWriter",
    "atomic_write_bytes",
    "clean_temporaries",
    "done_shards",
    "lock_output",
    "merge_errors",
    "ours",
    "read_manifest",
    "remove_ours",
    "shard_rows_written",
    "write_errors",
    "write_manifest",
]

MANIFEST = "_bertrt_manifest.json"
ERRORS = "_errors.jsonl"
ERRORS_DIR = "_errors"
LOCK = "_bertrt.lock"
_PART = re.compile(r"^part-\d{5}-\d{6}\.(parquet|jsonl)$")
_TEMP = re.compile(r"^\.(part-\d{5}-\d{6}\.(parquet|jsonl)|_bertrt_manifest\.json|_errors\.jsonl)\.tmp-")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a folder be opened (or synced)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _temp_name(final: Path) -> Path:
    return final.with_name(f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def atomic_write_bytes(final: Path, data: bytes) -> None:
    """Write ``data`` to ``final`` atomically (temporary file, fsync, rename, fsync of the folder)."""
    temp = _temp_name(final)
    try:
        with open(temp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    _fsync_dir(final.parent)


def _plain(value):
    """``value`` with what JSON has no type for (timestamps, decimals, bytes) as strings."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="backslashreplace")
    return str(value)


class ShardWriter:
    """Streams one shard's rows to a temporary file; :meth:`commit` makes it the shard's file atomically.

    Used as a context manager: leaving it without :meth:`commit` (an error, a kill) removes the temporary.
    """

    def __init__(self, folder: Path, name: str, output_format: str, schema: pa.Schema):
        self.final = Path(folder) / f"{name}.{output_format}"
        self.format, self.schema = output_format, schema
        self.temp = _temp_name(self.final)
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._fh = None
        if output_format == "parquet":
            self._parquet = pq.ParquetWriter(self.temp, schema, compression="zstd")
        else:
            self._fh = open(self.temp, "w", encoding="utf-8")

    def write(self, table: pa.Table) -> None:
        self.rows += table.num_rows
        if self._parquet is not None:
            self._parquet.write_table(table.cast(self.schema) if table.schema != self.schema else table)
        else:
            self._fh.writelines(dumps_line(_plain(row)) + "\n" for row in table.to_pylist())

    def commit(self) -> Path:
        if self._parquet is not None:
            self._parquet.close()
            self._parquet = None
            with open(self.temp, "rb+") as fh:
                os.fsync(fh.fileno())
        else:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None
        os.replace(self.temp, self.final)
        _fsync_dir(self.final.parent)
        return self.final

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._parquet is not None:
                self._parquet.close()
            if self._fh is not None:
                self._fh.close()
        with contextlib.suppress(OSError):
            self.temp.unlink()

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, *exc) -> None:
        if self.temp.exists():
            self.abort()


# -- the bad rows -------------------------------------------------------------------------------------------
def write_errors(folder: Path, name: str, records: list[dict]) -> None:
    """The bad rows of shard ``name`` (atomically; before its data file, so a done shard has its errors).
    No records: an older try's file is removed."""
    path = Path(folder) / ERRORS_DIR / f"{name}.jsonl"
    if not records:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    path.parent.mkdir(exist_ok=True)
    lines = "".join(dumps_line(_plain(r)) + "\n" for r in records)
    atomic_write_bytes(path, lines.encode("utf-8"))


def merge_errors(folder: Path, done: set[str]) -> int:
    """Rebuild ``_errors.jsonl`` from the error files of the done shards, in shard order; the line count.
    Nothing to report: no ``_errors.jsonl`` (an old one is removed)."""
    folder = Path(folder)
    parts = sorted((folder / ERRORS_DIR).glob("part-*.jsonl")) if (folder / ERRORS_DIR).is_dir() else []
    chunks, count = [], 0
    for part in parts:
        if part.stem in done:
            data = part.read_bytes()
            chunks.append(data)
            count += data.count(b"\n")
    target = folder / ERRORS
    if count:
        atomic_write_bytes(target, b"".join(chunks))
    else:
        with contextlib.suppress(FileNotFoundError):
            target.unlink()
    return count


def error_count(folder: Path, name: str) -> int:
    path = Path(folder) / ERRORS_DIR / f"{name}.jsonl"
    return path.read_bytes().count(b"\n") if path.is_file() else 0


# -- shards done ---------------------------------------------------------------------------------------------
def done_shards(folder: Path, output_format: str) -> set[str]:
    """Names of the shards whose data file exists (``part-00000-000000``)."""
    if not Path(folder).is_dir():
        return set()
    return {
        p.name.rsplit(".", 1)[0]
        for p in Path(folder).iterdir()
        if _PART.match(p.name) and p.name.endswith("." + output_format)
    }


def shard_rows_written(folder: Path, name: str, output_format: str) -> int:
    path = Path(folder) / f"{name}.{output_format}"
    if output_format == "parquet":
        return pq.ParquetFile(path).metadata.num_rows
    with open(path, "rb") as fh:
        return sum(1 for _ in fh)


def clean_temporaries(folder: Path) -> None:
    """Remove the temporary files a killed run left behind."""
    for sub in (Path(folder), Path(folder) / ERRORS_DIR):
        if sub.is_dir():
            for p in sub.iterdir():
                if p.name.startswith(".") and ".tmp-" in p.name and p.is_file():
                    with contextlib.suppress(OSError):
                        p.unlink()


def ours(path: Path) -> bool:
    """Whether a top-level entry of OUTPUT is one bertrt batch writes."""
    name = path.name
    return bool(_PART.match(name) or _TEMP.match(name) or name in (MANIFEST, ERRORS, ERRORS_DIR, LOCK)) or (
        name.startswith(".") and ".tmp-" in name
    )


def remove_ours(folder: Path) -> None:
    """--overwrite: remove every file of an earlier run (and nothing else) from OUTPUT."""
    for p in Path(folder).iterdir():
        if p.name == LOCK or not ours(p):
            continue
        if p.is_dir():
            for child in p.iterdir():
                child.unlink()
            p.rmdir()
        else:
            p.unlink()


# -- the manifest ----------------------------------------------------------------------------------------------
def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: unreadable manifest ({exc}); pass --overwrite to start again") from exc


def write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write_bytes(Path(folder) / MANIFEST, (json.dumps(manifest, indent=1) + "\n").encode("utf-8"))


@contextlib.contextmanager
def lock_output(folder: Path):
    """Hold an exclusive lock on OUTPUT for the run: a second run on the same folder fails at once."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    path = Path(folder) / LOCK
    fh = open(path, "a+")
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise InputError(f"{folder}: another bertrt batch run is writing this folder") from exc
        yield
    finally:
        fh.close()
