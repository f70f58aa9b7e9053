"""Batch inference over files: ``bertrt batch`` and :func:`run`; resumable, on local processes or Ray Data.

::

    import bertrt.batch
    summary = bertrt.batch.run("bundles/wnut-ner", "corpus/", "tagged/",
                               task_options={"aggregation_strategy": "first"}, on_error="skip")

The input (a ``.jsonl``/``.csv``/``.parquet`` file, a folder or a glob of them) is planned into shards,
fixed row ranges of one file (:mod:`bertrt.batch.sources`); each shard becomes one output file holding
every input column plus ``result``, typed per task (:mod:`bertrt.batch.results`), written atomically
(:mod:`bertrt.batch.sink`). A second run of the same job skips the shards already written; a changed bundle,
option or input is an error unless ``overwrite=True``. Shards run in this process (``workers=1``), on
local processes (:mod:`bertrt.batch.local`) or on Ray Data actors (``ray=``, :mod:`bertrt.ray`), with the
same code per shard (:mod:`bertrt.batch.runner`), so every mode writes the same files.

Needs ``pip install 'bertrt[batch]'`` (pyarrow; tqdm for the progress bar) and ``bertrt[ray]`` for Ray.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__, backends
from ..cpu import physical_cores
from ..errors import BertrtError, InputError
from ..results import to_jsonable
from . import sink, sources
from .local import run_local
from .predictor import ON_ERROR, Predictor, row_option_field
from .progress import Progress, format_seconds
from .runner import Job, ShardRunner

__all__ = [
    "DEFAULT_SHARD_SIZE",
    "OUTPUT_FORMATS",
    "Predictor",
    "Summary",
    "bundle_files",
    "default_split",
    "print_summary",
    "run",
]

DEFAULT_SHARD_SIZE = 10_000
OUTPUT_FORMATS = ("parquet", "jsonl")
MANIFEST_FORMAT = "bertrt-batch"
MANIFEST_VERSION = 1
#: rows per pipeline call inside a shard, in batches of batch_size (sorted by length within it)
CHUNK_BATCHES = 16
#: the manifest is rewritten after a shard at most this often (and always at the end of a run)
MANIFEST_EVERY_S = 1.0

log = logging.getLogger("bertrt")


@dataclass
class Summary:
    """What a run did."""

    output: str
    mode: str
    workers: int
    threads: int
    rows_total: int
    rows_run: int
    rows_written: int
    rows_errors: int
    shards_total: int
    shards_skipped: int
    shards_run: int
    seconds: float
    complete: bool
    backend: str = ""
    precision: str = ""
    batch_size: int = 0
    #: "explicit" (given), "tuned" (tuning.json, this CPU) or "static" (the default, 32)
    batch_size_source: str = ""

    @property
    def rows_per_s(self) -> float:
        return self.rows_run / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        head = (
            f"bertrt batch: {self.rows_run:,} rows in {format_seconds(self.seconds)} "
            f"({self.rows_per_s:,.0f} rows/s, {self.mode}, {self.workers} x {self.threads} threads"
            + (f", {self.backend} {self.precision}" if self.backend else "")
            + (f", batch {self.batch_size} ({self.batch_size_source})" if self.batch_size else "")
            + ")"
        )
        if not self.shards_run and self.complete:
            head = "bertrt batch: nothing to run, every shard was done already"
        return [
            head,
            f"  shards: {self.shards_run} written, {self.shards_skipped} already done, {self.shards_total} in all",
            f"  rows:   {self.rows_written:,} written, {self.rows_errors:,} bad (in {sink.ERRORS}), "
            f"{self.rows_total:,} in all",
            f"  output: {self.output}" + ("" if self.complete else "  (incomplete: run again to go on)"),
        ]


def default_split(cores: int, workers: int | None, threads: int | None, shards: int) -> tuple[int, int]:
    """(workers, threads per worker). Default: one single-threaded worker per physical core, never more
    workers than shards to run (measured on the 2-core machine: 2 x 1 beats 1 x 2, see the README)."""
    if workers is None:
        workers = max(1, cores // (threads or 1))
    workers = max(1, min(workers, max(shards, 1)))
    if threads is None:
        threads = max(1, cores // workers)
    return workers, threads


def bundle_files(bundle) -> list[str]:
    """Files of a loaded bundle a worker needs (relative names): :attr:`bertrt.bundle.Bundle.runtime_files`."""
    return bundle.runtime_files


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_args(batch_size, shard_size, workers, threads, output_format, on_error) -> None:
    if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size <= 0:
        raise InputError(f"shard_size must be a positive int, got {shard_size!r}")
    for name, value in (("batch_size", batch_size), ("workers", workers), ("threads", threads)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise InputError(f"{name} must be a positive int or None, got {value!r}")
    if output_format not in OUTPUT_FORMATS:
        raise InputError(f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}")
    if on_error not in ON_ERROR:
        raise InputError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")


#: job keys added after manifest version 1 was fixed, and what a manifest without them ran
_LEGACY_JOB = {"backend": "onnxruntime"}


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def _existing(out: Path, overwrite: bool) -> dict | None:
    """OUTPUT's manifest (None: none yet); OUTPUT holding what is not a resumable bertrt job is an
    InputError unless ``overwrite``. Reads only."""
    existing = sink.read_manifest(out)
    if existing is None and sink.done_shards(out, "parquet") | sink.done_shards(out, "jsonl"):
        if not overwrite:
            raise InputError(f"{out}: holds part files but no {sink.MANIFEST}; pass --overwrite")
    if not overwrite and existing is not None and existing.get("format") != MANIFEST_FORMAT:
        raise InputError(f"{out / sink.MANIFEST}: not a bertrt batch manifest; pass --overwrite")
    return existing


def _inputs(out: Path, existing: dict | None, input, job_key: dict, on_error: str, overwrite: bool) -> list:
    """The inputs' scanned :class:`~bertrt.batch.sources.InputFile` list: every input checked, and
    resuming ``existing`` checked to be the same job on the same files (before any scan, whose results it
    reuses). Reads only."""
    paths = sources.resolve_inputs(input, exclude=out)
    fingerprints = [
        {
            "path": str(p),
            "format": sources.FORMATS[p.suffix.lower()],
            "bytes": p.stat().st_size,
            "mtime_ns": p.stat().st_mtime_ns,
        }
        for p in paths
    ]
    known = {}
    if existing is not None and not overwrite:
        old_job = {**_LEGACY_JOB, "precision": job_key["precision"], **existing.get("job", {})}
        problems = _differences(old_job, job_key)
        old_inputs = [
            {k: e.get(k) for k in ("path", "format", "bytes", "mtime_ns")} for e in existing.get("inputs", [])
        ]
        if old_inputs != fingerprints:
            problems.append("inputs: the input files (or their sizes / modification times) changed")
        if problems:
            raise InputError(
                f"{out} holds the output of a different job ({'; '.join(problems[:6])}); pass "
                "--overwrite to replace it, or choose another OUTPUT"
            )
        known = {e["path"]: e for e in existing.get("inputs", [])}
    text_field, pair_field, id_field = (job_key[k] for k in ("text_field", "text_pair_field", "id_field"))
    return [
        sources.InputFile.from_json(known[str(p)])
        if str(p) in known
        else sources.scan_file(p, text_field, pair_field, id_field, job_key["shard_size"], on_error)
        for p in paths
    ]


def run(
    bundle: str | os.PathLike,
    input: str | os.PathLike,
    output: str | os.PathLike,
    *,
    task: str | None = None,
    task_options: dict | None = None,
    text_field: str = "text",
    text_pair_field: str | None = None,
    id_field: str | None = None,
    precision: str | None = None,
    model_file: str | None = None,
    batch_size: int | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
    workers: int | None = None,
    threads: int | None = None,
    ray: bool | str | None = None,
    ship_bundle: bool = False,
    output_format: str = "parquet",
    on_error: str = "fail",
    overwrite: bool = False,
    progress: bool = True,
    backend: str = "auto",
    plan: backends.Plan | None = None,
) -> Summary:
    """Run (or resume) the batch job ``bundle`` x ``input`` -> ``output``; see the module docstring.

    ``workers``/``threads``: local processes and intra-op threads each (default :func:`default_split`);
    with ``ray`` (True: a local Ray or the one ``ray.init`` already started / ``RAY_ADDRESS``; a string:
    that cluster address) ``workers`` is the number of actors and ``threads`` their CPUs (default 1).
    ``ship_bundle``: send the bundle's files to the actors through Ray's object store instead of letting
    them read ``bundle`` from a path they share.
    ``backend`` / ``precision``: as :func:`bertrt.pipeline`'s, resolved once here (a backend or precision
    that cannot run is its BackendError / InputError before OUTPUT is touched) and run by every worker.
    ``plan``: a :class:`bertrt.backends.Plan` already computed (``bertrt batch`` computes it once), in place
    of ``backend`` and ``precision``.
    ``batch_size`` None: the tuned one (``bertrt tune``, auto backend on this CPU), else 32.
    """
    _check_args(batch_size, shard_size, workers, threads, output_format, on_error)
    # What runs (backend, precision) and at which batch size, before anything is written.
    the_plan = plan or backends.plan(bundle, backend, precision)
    if batch_size is None:
        batch_size, batch_source = the_plan.default_batch_size()
    else:
        batch_source = "explicit"
    log.info(
        "bertrt batch: %s %s (%s), batch size %d (%s)",
        the_plan.backend,
        the_plan.precision,
        the_plan.source,
        batch_size,
        batch_source,
    )
    use_ray = ray not in (None, False)
    if ship_bundle and not use_ray:
        raise InputError("ship_bundle (--ship-bundle) sends the bundle to Ray actors: it needs ray (--ray)")
    if use_ray:
        try:
            importlib.import_module("ray.data")  # (``import ray`` here would rebind the argument)
        except ImportError as exc:
            raise BertrtError(f"--ray needs Ray Data ({exc}): pip install 'bertrt[ray]'") from exc
        from .. import ray as bertrt_ray

        bertrt_ray.check_reachable(ray if isinstance(ray, str) else None)  # before anything is written
    started = time.perf_counter()
    task_options = dict(task_options or {})
    out = Path(output).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: OUTPUT exists and is not a folder")
    cores = physical_cores()
    # The model first: a bad bundle or option fails before OUTPUT is touched or any input is scanned.
    local_threads = None
    if not use_ray and (workers or 1) == 1:
        local_threads = threads or cores
    columns = {"text_field": text_field, "text_pair_field": text_pair_field, "id_field": id_field}
    writing = {"output_format": output_format, "on_error": on_error, "chunk_rows": batch_size * CHUNK_BATCHES}
    job = Job(
        str(bundle),
        task,
        task_options,
        str(out),
        [],  # the inputs, once scanned (and the bundle's folder and model file once loaded)
        plan=the_plan,
        model_file=model_file,
        batch_size=batch_size,
        **columns,
        **writing,
    )
    predictor = job.predictor(local_threads or 1)
    loaded = predictor.pipe.bundle
    job_key = {
        "bundle_hash": loaded.content_hash,
        "backend": the_plan.backend,
        "precision": the_plan.precision,
        "model_file": loaded.model_file,
        "task": predictor.pipe.task,
        "task_options": to_jsonable(task_options),
        "result_type": str(predictor.result_type),
        "text_field": text_field,
        "text_pair_field": text_pair_field,
        "id_field": id_field,
        "shard_size": shard_size,
        "output_format": output_format,
    }
    # Every input check (files, scans, the text field) and the resume check read OUTPUT only: nothing is
    # written before they all passed. Under the lock they are redone only if OUTPUT changed meanwhile.
    reading = {"input": input, "job_key": job_key, "on_error": on_error, "overwrite": overwrite}
    seen = _existing(out, overwrite)
    infos = _inputs(out, seen, **reading)
    for info in infos:  # rerank: the rows' own documents, or --documents for every row (not both)
        row_option_field(predictor.pipe.spec, task_options, info.schema.names, info.path)
    out.mkdir(parents=True, exist_ok=True)
    with sink.lock_output(out):
        sink.clean_temporaries(out)
        existing = _existing(out, overwrite)
        if existing != seen:  # another run wrote OUTPUT since
            infos = _inputs(out, existing, **reading)
        if overwrite:  # only now: the new job's model and inputs are fine
            sink.remove_ours(out)
            existing = None
        shards = sources.plan_shards(infos, shard_size)
        names = {s.name for s in shards}
        done = sink.done_shards(out, output_format) & names
        pending = [s for s in shards if s.name not in done]

        records = dict((existing or {}).get("shards", {}).get("done", {}))
        records = {k: v for k, v in records.items() if k in done}
        for shard in shards:  # finished by a run killed before its manifest write
            if shard.name in done and shard.name not in records:
                records[shard.name] = {
                    "rows": shard.rows,
                    "written": sink.shard_rows_written(out, shard.name, output_format),
                    "errors": sink.error_count(out, shard.name),
                    "recovered": True,
                }

        if use_ray:
            mode = "ray"
            n_workers, n_threads = workers, threads or 1
        else:
            mode = "local"
            n_workers, n_threads = default_split(cores, workers, threads, len(pending))
        run_record = {
            "started": _now(),
            "mode": mode,
            "ray_address": ray if isinstance(ray, str) else None,
            "workers": n_workers,
            "threads": n_threads,
            "batch_size": batch_size,
            "batch_size_source": batch_source,
            "on_error": on_error,
            "bertrt": __version__,
            "status": "running",
        }
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "created": (existing or {}).get("created", _now()),
            "updated": _now(),
            "job": job_key,
            "bundle_path": str(loaded.root),
            "inputs": [i.to_json() for i in infos],
            "rows": {},
            "shards": {"total": len(shards), "done": records},
            "runs": [*(existing or {}).get("runs", []), run_record],
            "complete": False,
        }

        def refresh_counts() -> None:
            done_records = manifest["shards"]["done"]
            manifest["rows"] = {
                "total": sum(i.rows for i in infos),
                "per_input": [i.rows for i in infos],
                "done": sum(r["rows"] for r in done_records.values()),
                "written": sum(r["written"] for r in done_records.values()),
                "errors": sum(r["errors"] for r in done_records.values()),
            }
            manifest["shards"]["finished"] = len(done_records)
            manifest["updated"] = _now()

        refresh_counts()
        sink.write_manifest(out, manifest)
        total_rows = manifest["rows"]["total"]
        bar = Progress(total_rows, manifest["rows"]["done"], enabled=progress)
        last_write = [time.perf_counter()]
        ran = {"shards": 0, "rows": 0}
        run_started = time.perf_counter()

        def on_done(meta: dict) -> None:
            name = meta["shard"]
            manifest["shards"]["done"][name] = {
                k: meta[k]
                for k in ("rows", "written", "errors", "seconds", "worker", "backend", "precision", "threads")
                if k in meta
            }
            ran["shards"] += 1
            ran["rows"] += meta["rows"]
            now = time.perf_counter()
            if now - last_write[0] >= MANIFEST_EVERY_S:
                refresh_counts()
                sink.write_manifest(out, manifest)
                last_write[0] = now

        on_progress = bar.update
        if use_ray:
            # the Ray actors report whole shards: the bar moves when one is written
            def on_done_ray(meta: dict) -> None:
                on_done(meta)
                bar.update(meta["rows"])

        # What every worker runs: the loaded bundle's folder and file, the task it has
        job = dataclasses.replace(
            job,
            bundle=str(loaded.root),
            task=predictor.pipe.task,
            inputs=[i.light() for i in infos],
            model_file=job_key["model_file"],
        )
        status = "failed"
        try:
            if not pending:
                pass
            elif use_ray:
                del predictor  # the driver holds no model while the actors run
                n_workers, n_threads = bertrt_ray.run_shards(
                    job,
                    pending,
                    address=ray if isinstance(ray, str) else None,
                    actors=workers,
                    threads=n_threads,
                    on_done=on_done_ray,
                    ship_bundle=ship_bundle,
                )
                run_record["workers"], run_record["threads"] = n_workers, n_threads
            elif n_workers == 1:
                run_local(
                    job, pending, 1, n_threads, on_done, on_progress, ShardRunner(job, predictor=predictor)
                )
            else:
                del predictor  # each worker loads its own; the driver keeps none
                run_local(job, pending, n_workers, n_threads, on_done, on_progress)
            status = "complete"
        except KeyboardInterrupt:
            status = "interrupted"
            raise
        except BaseException as exc:
            status = f"failed: {' '.join(str(exc).split())[:500]}"
            raise
        finally:
            bar.close()
            done_now = set(manifest["shards"]["done"])
            errors = sink.merge_errors(out, done_now)
            refresh_counts()
            manifest["complete"] = len(done_now) == len(shards)
            seconds = time.perf_counter() - run_started
            run_record.update(
                status=status,
                finished=_now(),
                shards=ran["shards"],
                rows=ran["rows"],
                seconds=round(seconds, 3),
                rows_per_s=round(ran["rows"] / seconds, 1) if seconds > 0 else None,
                startup_seconds=round(run_started - started, 3),
                errors_file_lines=errors,
            )
            sink.write_manifest(out, manifest)
    rows = manifest["rows"]
    return Summary(
        output=str(out),
        mode=mode,
        workers=run_record["workers"] or 0,
        threads=run_record["threads"],
        rows_total=rows["total"],
        rows_run=ran["rows"],
        rows_written=rows["written"],
        rows_errors=rows["errors"],
        shards_total=len(shards),
        shards_skipped=len(shards) - len(pending),
        shards_run=ran["shards"],
        seconds=round(time.perf_counter() - run_started, 3),
        complete=manifest["complete"],
        backend=the_plan.backend,
        precision=the_plan.precision,
        batch_size=batch_size,
        batch_size_source=batch_source,
    )


def print_summary(summary: Summary, stream=None) -> None:
    stream = stream or sys.stderr
    for line in summary.lines():
        print(line, file=stream)
