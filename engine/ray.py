"""bertrt on Ray Data: a Ray-ready :class:`Predictor` for your own pipelines, and ``bertrt batch --ray``.

Your own pipeline (any Ray Data source and sink, S3 included)::

    import ray
    import bertrt.ray

    ds = ray.data.read_parquet("s3://bucket/docs/")
    ds = ds.map_batches(
        bertrt.ray.Predictor,
        fn_constructor_kwargs={"bundle": "/shared/bundles/ner", "task_options": {"aggregation_strategy": "first"}},
        concurrency=8, num_cpus=1, batch_size=256, batch_format="pyarrow",
    )
    ds.write_parquet("s3://bucket/tagged/")

Each actor builds one pipeline (``threads``: the CPUs Ray gave the actor; ``backend=`` / ``precision=`` as
:func:`bertrt.pipeline`'s) and adds a typed ``result`` column to every batch (:mod:`bertrt.batch.results`).
The bundle reaches the actors as a path they all read (shared storage, or the same folder baked into every
node's image), or through Ray's object store: ``bundle=bertrt.ray.ship_bundle("bundles/ner")`` puts its
files (the model file, tokenizer and configs) in the object store once; each node writes them to a local
temporary folder on first use.

``bertrt batch --ray`` runs the same shards as a local run (:func:`run_shards`) on a pool of Ray
actors (``num_cpus=threads`` each, spread over the nodes), with the local run's rule: every actor loads its
pipeline (the backend, precision and batch size the driver resolved, at ``threads`` intra-op threads)
before any shard is handed out, then each gets its first shard, and then the next one whenever it finishes
(so with at least as many shards as actors, every actor runs one, whatever the timing). An actor reads its
shard from the input path and writes the shard's file atomically into OUTPUT, exactly as a local worker
does, so the output is the same file for file and a re-run skips finished shards. INPUT and OUTPUT must
therefore be paths every node sees (a shared POSIX filesystem: NFS, EFS, Lustre, a FUSE mount); for object
storage compose your own pipeline as above.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path

from .batch import predictor as _predictor
from .errors import BertrtError, InputError

__all__ = [
    "ACTOR_RESTARTS",
    "CONNECT_TIMEOUT_S",
    "BundleRef",
    "Predictor",
    "check_reachable",
    "materialize",
    "run_shards",
    "ship_bundle",
]

log = logging.getLogger("bertrt")


@dataclasses.dataclass(frozen=True)
class BundleRef:
    """A bundle in Ray's object store: its digest, {relative file name: ObjectRef of the bytes}, the model file."""

    digest: str
    files: dict
    model_file: str


def ship_bundle(
    bundle: str | os.PathLike,
    precision: str = "int8",
    model_file: str | None = None,
    backend: str = "onnxruntime",
) -> BundleRef:
    """Put the files of ``bundle`` a worker needs (the model file ``backend`` reads at ``precision``) into
    Ray's object store (call on the driver)."""
    import ray

    from .bundle import load_bundle

    loaded = load_bundle(bundle, precision, model_file, backend=backend)
    files = {name: ray.put((loaded.root / name).read_bytes()) for name in loaded.runtime_files}
    return BundleRef(loaded.content_hash, files, loaded.model_file)


_ship = ship_bundle  # run_shards' keyword of the same name hides it there

#: seconds ``bertrt batch --ray-address ADDRESS`` waits for the cluster to answer before it gives up
CONNECT_TIMEOUT_S = 10.0


def _host_port(address: str) -> tuple[str, int]:
    """``(host, port)`` of ``host:port`` / ``ray://host:port`` / ``[v6]:port``; InputError otherwise."""
    rest = address.split("://", 1)[1] if "://" in address else address
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not host or not port.isdigit():
        raise InputError(f"--ray-address {address!r}: expected HOST:PORT (or ray://HOST:PORT, auto, local)")
    return host.strip("[]"), int(port)


def check_reachable(address: str | None, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout_s`` (BertrtError naming the address) when nothing listens at the Ray cluster
    ``address`` (None: ``RAY_ADDRESS``, if set): ``ray.init`` would retry "Failed to connect to GCS" for
    minutes. Call it before anything is written. ``auto``, ``local``, no address, or a Ray already
    started in this process: nothing to check (Ray answers those at once)."""
    import ray

    address = address or os.environ.get("RAY_ADDRESS")
    if ray.is_initialized() or address in (None, "", "auto", "local"):
        return
    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise BertrtError(
            f"no Ray cluster answers at {address} ({reason}, waited at most {timeout_s:g} s): start one "
            "there (ray start --head) or pass the address of a running cluster to --ray-address"
        ) from None


def materialize(ref: BundleRef, root: str | os.PathLike | None = None) -> Path:
    """The folder holding ``ref``'s files on this node, written once per node (atomically renamed)."""
    import ray

    folder = Path(root or tempfile.gettempdir()) / "bertrt-bundles" / ref.digest[:16]
    if (folder / ".complete").is_file():
        return folder
    work = folder.with_name(f".{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    work.mkdir(parents=True)
    try:
        for name, obj in ref.files.items():
            target = work / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(ray.get(obj))
        (work / ".complete").write_text(ref.digest)
        try:
            os.rename(work, folder)
        except OSError:  # another actor on this node was first: its copy is complete
            if not (folder / ".complete").is_file():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _assigned_cpus() -> int | None:
    """CPUs Ray assigned to this worker (None outside Ray)."""
    with contextlib.suppress(Exception):
        import ray

        if ray.is_initialized():
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU")
            if cpus:
                return max(1, int(cpus))
    return None


class Predictor(_predictor.Predictor):
    """:class:`bertrt.batch.Predictor` for ``map_batches``: ``bundle`` may be a :class:`BundleRef`, and
    ``threads`` defaults to the CPUs Ray assigned to the actor (``num_cpus``)."""

    def __init__(self, bundle, task_options: dict | None = None, **kwargs):
        if isinstance(bundle, BundleRef):
            kwargs.setdefault("model_file", bundle.model_file)
            bundle = materialize(bundle)
        if kwargs.get("threads") is None:
            kwargs["threads"] = _assigned_cpus()
        super().__init__(bundle, task_options, **kwargs)


#: restarts of a ``bertrt batch --ray`` actor whose process died, and retries of its shard (a shard
#: written twice is the same file renamed over itself); an error raised by bertrt is not retried
ACTOR_RESTARTS = 3


class _ShardPredictor:
    """The actor of ``bertrt batch --ray``: one ShardRunner; a shard in, its record out. Its failures come
    back as text (``ready()``, a ``crash`` record), as a local worker's do: an exception raised in an
    actor may not even reach the driver (bertrt's errors do not unpickle there) and a failed constructor
    is retried by Ray."""

    def __init__(self, job, threads: int, bundle_ref: BundleRef | None = None):
        from .batch.runner import ShardRunner

        self.runner, self.problem = None, None
        try:
            if bundle_ref is not None:
                job = dataclasses.replace(
                    job, bundle=str(materialize(bundle_ref)), model_file=bundle_ref.model_file
                )
            self.runner = ShardRunner(job, threads)
        except Exception as exc:
            self.problem = f"{type(exc).__name__}: {exc}"

    def ready(self) -> str | None:
        """None once the pipeline is loaded, else why it could not be."""
        return self.problem

    def run(self, shard) -> dict:
        try:
            return self.runner.run(shard)
        except Exception as exc:
            return {"crash": f"{type(exc).__name__}: {exc}"}


def _result(ray, ref):
    """What an actor answered; its death as a BertrtError."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as exc:
        raise BertrtError(f"a Ray actor died: {' '.join(str(exc).split())[:500]}") from exc


def run_shards(
    job,
    shards: list,
    *,
    address: str | None = None,
    actors: int | None = None,
    threads: int = 1,
    on_done: Callable[[dict], None],
    ship_bundle: bool = False,
) -> tuple[int, int]:
    """Run ``shards`` of ``job`` on a pool of Ray actors; (actors, threads) used. Joins the Ray that
    ``ray.init`` started in this process, else starts one (``address``: a cluster, ``auto``; None: local
    or ``RAY_ADDRESS``) and shuts it down at the end."""
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING)
        started = True
    pool = []
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if actors is None:
            actors = max(1, cpus // threads)
        if actors * threads > cpus:
            raise InputError(
                f"{actors} actors x {threads} CPUs need {actors * threads} CPUs; the Ray cluster has {cpus}"
            )
        if not shards:
            return actors, threads
        actors = min(actors, len(shards))
        bundle_ref = None
        if ship_bundle:
            from .backends import plan

            the_plan = job.plan or plan(job.bundle)
            bundle_ref = _ship(job.bundle, the_plan.precision, job.model_file, the_plan.backend)
        actor_class = ray.remote(_ShardPredictor).options(
            num_cpus=threads,
            scheduling_strategy="SPREAD",
            max_restarts=ACTOR_RESTARTS,
            max_task_retries=ACTOR_RESTARTS,
        )
        pool = [actor_class.remote(job, threads, bundle_ref) for _ in range(actors)]
        for ref in [a.ready.remote() for a in pool]:  # every actor loaded before any shard runs
            problem = _result(ray, ref)
            if problem:
                raise BertrtError(f"a Ray actor could not load the pipeline: {problem}")
        todo = list(reversed(shards))
        running = {a.run.remote(todo.pop()): a for a in pool}  # one first shard each
        while running:
            (ref,), _ = ray.wait(list(running), num_returns=1)
            actor = running.pop(ref)
            meta = _result(ray, ref)
            if "crash" in meta:
                raise BertrtError(f"a Ray actor failed: {meta['crash']}")
            if "error" in meta:
                raise InputError(meta["error"])
            on_done(meta)
            if todo:
                running[actor.run.remote(todo.pop())] = actor
        return actors, threads
    finally:
        for actor in pool:
            with contextlib.suppress(Exception):
                ray.kill(actor)
        if started:
            ray.shutdown()
