"""What ``bertrt bench`` measures: the texts, every bertrt backend x precision, the PyTorch reference.

A system is a callable ``call(texts, batch_size) -> results`` (text in, the task's final result out),
built once; its cold start (build + first call) and its RSS delta (psutil: resident set after the build,
the first call and one pass at the largest batch size, minus before the build) are taken as it is built.
Systems share this process, so the libraries they import are loaded once: a cold start here is the
pipeline's own, not the interpreter's or the imports'.

The knowledge of which backend runs which precision is :mod:`bertrt.backends`' (:func:`candidates` is the
one place that asks it); the PyTorch reference lives in the exporter (``bertrt.export.bench_reference``),
imported only when a reference checkpoint is given, so the runtime never imports torch. On a GPU
(``providers``), the bertrt candidates run with those providers and the reference checkpoint also runs
on PyTorch CUDA in fp32 and fp16 (:func:`build_cuda_references`) when torch has CUDA.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BertrtError, InputError

__all__ = [
    "REFERENCE",
    "Candidate",
    "System",
    "build_bertrt",
    "build_cuda_references",
    "build_reference",
    "candidates",
    "load_texts",
    "machine",
    "recorded_checkpoint",
    "task_texts",
]

log = logging.getLogger("bertrt")

#: the reference system's name in the report
REFERENCE = "pytorch"


@dataclass(frozen=True)
class Candidate:
    """A backend x precision bertrt knows; ``reason`` says why it cannot run here (None: it can)."""

    backend: str
    precision: str
    reason: str | None = None

    @property
    def name(self) -> str:
        return f"bertrt {self.backend} {self.precision}"


@dataclass(frozen=True)
class System:
    """A built system: its call, what it is, and what building it cost."""

    name: str
    call: Callable[[list, int], list]
    backend: str | None
    precision: str | None
    cold_start_s: float
    rss_delta_mb: float | None


def candidates(providers=None) -> list[Candidate]:
    """Every backend x precision of :mod:`bertrt.backends`, with why it cannot run here when it cannot;
    with ``providers``, only the backends that take execution providers."""
    from .. import backends

    out = []
    for backend, declared in backends.BACKENDS.items():
        if providers is not None and not declared.takes_providers:
            continue
        for precision in declared.precisions:
            reason = None
            if not backends.available(backend):
                reason = f"{backend} is not installed"
            else:
                try:
                    backends.check_available(backend, precision, providers)
                except BertrtError as exc:
                    reason = " ".join(str(exc).split())
            out.append(Candidate(backend, precision, reason))
    return out


def machine() -> dict:
    """This machine as :func:`bertrt.backends.cpu_info` describes it (CPU model, flags, cores)."""
    from .. import backends

    return backends.cpu_info()


def load_texts(path) -> list[str]:
    """The texts of ``path``: a ``.jsonl`` file (one object a line with a "text" string) or any other
    file as UTF-8 text, one text a line; blank lines are skipped."""
    from ..lines import decode_utf8, parse_json_line, split_lines

    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    lines = split_lines(decode_utf8(data, str(path)))
    texts = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        if path.suffix.lower() != ".jsonl":
            texts.append(line)
            continue
        record = parse_json_line(line, number)
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise InputError(f"{path}: line {number}: expected an object with a 'text' string")
        texts.append(record["text"])
    if not texts:
        raise InputError(f"{path}: no texts (one a line, or JSONL objects with 'text')")
    return texts


def task_texts(task: str, texts, pipe) -> tuple[list[str], str]:
    """(texts the task can run, where they come from): the given ones or the built-in sample, as the task
    prepares them (:meth:`bertrt.tasks.base.Task.tune_sample`; fill-mask: each text that holds no mask
    token gets its middle word masked), shared with bertrt tune."""
    from ..tune import _sample

    return _sample(task, texts, pipe)


def recorded_checkpoint(pipe) -> Path | None:
    """The checkpoint the bundle was exported from, when bundle.json records a local folder that exists."""
    source = pipe.bundle.manifest.get("source") or {}
    path = source.get("path") if isinstance(source, dict) and source.get("kind") == "local" else None
    return Path(path) if path and Path(path).is_dir() else None


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / (1 << 20)


def _built(name, build, texts, batch_size, backend=None, precision=None) -> System:
    """Build a system with ``build() -> call``; time build + first call; RSS delta after a full pass."""
    gc.collect()
    before = _rss_mb()
    start = time.perf_counter()
    call = build()
    call(texts[:1], 1)
    cold = time.perf_counter() - start
    call(texts, batch_size)
    delta = _rss_mb() - before
    log.info("bench: built %s in %.2f s (RSS %+.1f MiB)", name, cold, delta)
    return System(name, call, backend, precision, round(cold, 4), round(delta, 2))


def build_bertrt(
    candidate: Candidate, task: str, bundle, texts: list[str], batch_size: int, threads, providers=None
) -> System:
    """A bertrt pipeline at ``candidate``'s backend and precision (and ``providers``), called with the
    task's :attr:`~bertrt.tasks.base.Task.reference_options` (its answers are then the reference's:
    transformers' NER "first" grouping, mean-pooled embeddings as the reference pools them)."""
    from ..pipelines import pipeline
    from ..tasks import get_task

    options = dict(get_task(task).reference_options)

    def build():
        pipe = pipeline(
            task,
            bundle,
            precision=candidate.precision,
            threads=threads,
            backend=candidate.backend,
            providers=providers,
        )
        return lambda batch, bs: pipe(batch, batch_size=bs, **options)

    return _built(
        candidate.name, build, texts, batch_size, backend=candidate.backend, precision=candidate.precision
    )


def build_reference(task: str, checkpoint, texts: list[str], batch_size: int, threads) -> System:
    """The checkpoint's transformers pipeline on PyTorch (``bertrt.export.bench_reference``); a
    BertrtError naming the extra when torch / transformers are not installed."""
    try:
        from ..export.bench_reference import reference_call

        return _built(REFERENCE, lambda: reference_call(task, checkpoint, threads), texts, batch_size)
    except ImportError as exc:
        raise BertrtError(
            f"the PyTorch reference needs torch and transformers ({exc}): pip install 'bertrt[bench]', "
            "or run without a reference (--no-reference)"
        ) from exc


def build_cuda_references(task: str, checkpoint, texts: list[str], batch_size: int) -> list[System]:
    """The checkpoint's transformers pipeline on PyTorch CUDA, fp32 and fp16 (``pytorch cuda fp32`` /
    ``pytorch cuda fp16``); none when torch has no CUDA here (logged)."""
    try:
        from ..export import bench_reference
    except ImportError as exc:
        log.warning("bench: no PyTorch CUDA rows (%s)", exc)
        return []
    from ..tasks import get_task

    if get_task(task).reference_module:  # sentence-transformers' reference: CPU fp32 only
        log.warning("bench: no PyTorch CUDA rows for %s (its reference runs on the CPU)", task)
        return []
    if not bench_reference.cuda_available():
        log.warning("bench: no PyTorch CUDA rows (torch.cuda is not available here)")
        return []
    return [
        _built(
            f"{REFERENCE} cuda {dtype}",
            lambda dtype=dtype: bench_reference.reference_call(task, checkpoint, device=0, dtype=dtype),
            texts,
            batch_size,
            backend="pytorch",
            precision=dtype,
        )
        for dtype in ("fp32", "fp16")
    ]
