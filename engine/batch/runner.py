"""One shard from input to output: what every worker runs (the driver itself, a local process, a Ray actor).

:class:`Job` is everything a worker needs, small and picklable (the plan's shard offsets travel with each
:class:`~bertrt.batch.sources.Shard`); its backend, precision and batch size are the ones the driver
resolved (its :class:`~bertrt.backends.Plan`, at the worker's own thread count), so every worker runs what
the driver checked.
:meth:`ShardRunner.run` reads the shard in chunks, checks the texts, runs the pipeline on the good rows,
streams them with their ``result`` to a temporary file, writes the bad rows' file (``--on-error skip``)
and then renames the shard's file into place. With ``--on-error fail`` the
first bad row stops the shard before anything of it is written, and the returned record names it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa

from ..backends import Plan
from . import sink, sources
from .predictor import Predictor

__all__ = ["Job", "ShardRunner"]


#: Job fields a Predictor takes under the same name
_PREDICTOR_FIELDS = ("task", "text_field", "text_pair_field", "model_file", "batch_size")


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to run shards; ``plan``: what the driver resolved (None: ``backend="auto"``
    resolved by each worker)."""

    bundle: str
    task: str | None
    task_options: dict
    output: str
    inputs: list  # InputFile (without shard offsets), by file number
    text_field: str = "text"
    text_pair_field: str | None = None
    id_field: str | None = None
    plan: Plan | None = None
    model_file: str | None = None
    output_format: str = "parquet"
    on_error: str = "fail"
    batch_size: int = 32
    chunk_rows: int = 512
    extra: dict = field(default_factory=dict)

    def predictor(self, threads: int | None = None) -> Predictor:
        """The job's :class:`Predictor` at ``threads`` intra-op threads (rows' errors returned, not raised)."""
        the_plan = None if self.plan is None else dataclasses.replace(self.plan, threads=threads)
        same = {name: getattr(self, name) for name in _PREDICTOR_FIELDS}
        return Predictor(
            self.bundle, self.task_options, threads=threads, on_error="skip", plan=the_plan, **same
        )


def _row_position(info, chunk: sources.Chunk, i: int) -> dict:
    where = {"file": info.path, "row": chunk.first_row + i}
    if chunk.lines is not None:
        where["line"] = chunk.lines[i]
    return where


def _describe(where: dict, id_value) -> str:
    text = f"{where['file']}"
    text += f" line {where['line']} (row {where['row']})" if "line" in where else f" row {where['row']}"
    if id_value is not None:
        text += f", id {id_value!r}"
    return text


class ShardRunner:
    """Owns one :class:`Predictor`; runs shards of ``job`` one after the other."""

    def __init__(self, job: Job, threads: int | None = None, predictor: Predictor | None = None):
        self.job = job
        self.predictor = predictor or job.predictor(threads)
        self.worker = f"{os.uname().nodename}:{os.getpid()}" if hasattr(os, "uname") else str(os.getpid())

    def run(
        self,
        shard: sources.Shard,
        progress: Callable[[int], None] | None = None,
        alive: Callable[[], bool] | None = None,
    ) -> dict:
        """Process ``shard``; a record with its counts and seconds, or with ``error`` (on_error=fail)."""
        job = self.job
        info = job.inputs[shard.file]
        started = time.perf_counter()
        schema = info.schema.append(pa.field("result", self.predictor.result_type))
        errors: list[dict] = []
        with sink.ShardWriter(job.output, shard.name, job.output_format, schema) as writer:
            for chunk in sources.iter_shard(info, shard, job.chunk_rows, job.text_field, job.text_pair_field):
                if alive is not None and not alive():
                    raise SystemExit(0)  # the driver is gone: leave nothing half-written
                if chunk.reasons and job.on_error == "fail":  # before the model: nothing of it is written
                    return self._failure(info, chunk, min(chunk.reasons), chunk.reasons)
                table, reasons = self.predictor.predict_table(chunk.table, chunk.reasons)
                if reasons:
                    if job.on_error == "fail":
                        return self._failure(info, chunk, min(reasons), reasons)
                    keep = [i for i in range(table.num_rows) if i not in reasons]
                    errors.extend(
                        self._error_record(info, chunk, i, reasons[i], shard) for i in sorted(reasons)
                    )
                    table = table.take(pa.array(keep, pa.int64()))
                writer.write(table)
                if progress is not None:
                    progress(chunk.table.num_rows)
            sink.write_errors(job.output, shard.name, errors)
            writer.commit()
        return {
            "shard": shard.name,
            "file": shard.file,
            "index": shard.index,
            "rows": shard.rows,
            "written": writer.rows,
            "errors": len(errors),
            "seconds": round(time.perf_counter() - started, 3),
            "worker": self.worker,
            # what this worker ran: the same for every worker of a run, at the worker's own thread count
            "backend": self.predictor.pipe.backend,
            "precision": self.predictor.pipe.precision,
            "threads": self.predictor.pipe.session.threads,
        }

    def _id_of(self, chunk: sources.Chunk, i: int):
        name = self.job.id_field
        if not name or name not in chunk.table.column_names:
            return None
        value = chunk.table.column(name)[i].as_py()
        return value

    def _failure(self, info, chunk: sources.Chunk, i: int, reasons: dict) -> dict:
        where = _row_position(info, chunk, i)
        more = len(reasons) - 1
        tail = f" ({more} more bad rows in the same chunk)" if more > 0 else ""
        return {
            "error": f"bad row at {_describe(where, self._id_of(chunk, i))}: {reasons[i]}{tail}",
            **where,
        }

    def _error_record(self, info, chunk: sources.Chunk, i: int, reason: str, shard) -> dict:
        record = {**_row_position(info, chunk, i), "shard": shard.name, "reason": reason}
        id_value = self._id_of(chunk, i)
        if id_value is not None:
            record["id"] = id_value
        if i in chunk.raw:
            record["raw"] = chunk.raw[i]  # the JSONL line as it was (it may not even be JSON)
        else:
            record["record"] = chunk.table.slice(i, 1).to_pylist()[0]
        return record
