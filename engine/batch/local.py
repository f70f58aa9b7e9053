"""``--workers N``: N local processes (spawn), each with its own pipeline of ``threads`` intra-op threads.

The driver puts every pending shard on a queue. Each worker loads its pipeline, takes its first shard
and reports ready; none runs until every one has (so with at least as many shards as workers, every
worker gets one, and a worker that cannot load fails the run before any shard is written). Then each
runs its shard and takes the next: it reads the shard from the input file itself, runs it and writes
its file (:class:`~bertrt.batch.runner.ShardRunner`), and reports rows done and the finished shard on a
result queue. The driver only records (manifest, progress). A worker whose driver has died (SIGKILL)
notices at its next chunk and exits without finishing the shard; a worker that dies makes the driver
stop with an error (the finished shards stay: run the command again).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import traceback
from collections.abc import Callable

from ..errors import BertrtError, InputError
from .runner import Job, ShardRunner

__all__ = ["run_local"]


def _worker(job: Job, threads: int, tasks, results, start, parent: int) -> None:
    def alive() -> bool:
        return os.getppid() == parent

    try:
        runner = ShardRunner(job, threads)
    except BaseException as exc:
        results.put(("crash", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
        return
    shard = tasks.get()  # held before anyone starts: every worker gets a first shard (None: no work left)
    results.put(("ready", os.getpid(), None))
    while not start.wait(0.5):
        if not alive():
            return
    while shard is not None:
        if not alive():
            return
        try:
            meta = runner.run(shard, progress=lambda n: results.put(("progress", n, None)), alive=alive)
        except SystemExit:
            return
        except BaseException as exc:
            results.put(("crash", f"{type(exc).__name__}: {exc}", traceback.format_exc()))
            return
        if "error" in meta:
            results.put(("error", meta["error"], None))
            return
        results.put(("done", meta, None))
        shard = tasks.get()


def run_local(
    job: Job,
    shards: list,
    workers: int,
    threads: int,
    on_done: Callable[[dict], None],
    on_progress: Callable[[int], None],
    runner: ShardRunner | None = None,
) -> None:
    """Run ``shards`` on ``workers`` processes (1: in this process, reusing ``runner`` when given)."""
    if not shards:
        return
    if workers <= 1:
        runner = runner or ShardRunner(job, threads)
        for shard in shards:
            meta = runner.run(shard, progress=on_progress)
            if "error" in meta:
                raise InputError(meta["error"])
            on_done(meta)
        return
    ctx = mp.get_context("spawn")
    tasks, results, start = ctx.Queue(), ctx.Queue(), ctx.Event()
    for shard in shards:
        tasks.put(shard)
    for _ in range(workers):
        tasks.put(None)
    procs = [
        ctx.Process(target=_worker, args=(job, threads, tasks, results, start, os.getpid()), daemon=True)
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    remaining, ready = len(shards), 0
    try:
        while remaining:
            try:
                kind, payload, detail = results.get(timeout=0.5)
            except queue.Empty:
                dead = [p for p in procs if p.exitcode not in (None, 0)]
                if dead:
                    raise BertrtError(
                        f"worker process {dead[0].pid} died (exit code {dead[0].exitcode}); the shards "
                        "finished so far are kept: run the same command again to go on"
                    ) from None
                if all(p.exitcode == 0 for p in procs):
                    raise BertrtError("every worker exited with shards left; run the command again") from None
                continue
            if kind == "ready":
                ready += 1
                if ready == workers:
                    start.set()
            elif kind == "progress":
                on_progress(payload)
            elif kind == "done":
                on_done(payload)
                remaining -= 1
            elif kind == "error":
                raise InputError(payload)
            elif kind == "crash":
                if detail:
                    import logging

                    logging.getLogger("bertrt").info("worker failed:\n%s", detail)
                raise BertrtError(f"a worker failed: {payload}")
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
        for p in procs:
            p.join(10)
        for q in (tasks, results):
            q.cancel_join_thread()
            with contextlib.suppress(Exception):
                q.close()
