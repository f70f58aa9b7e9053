"""``bench()``: build every system once, check its answers, then time them interleaved.

Timing is in rounds: for each repeat and each batch size, every system runs one pass over the same texts,
in an order that rotates by one each repeat (A B C, B C A, ...), with a short pause between passes, so
a slow phase of the machine falls on every system alike. A pass is texts in, final results out. Batch
size 1 is timed call by call: its calls give the latency percentiles (p50/p90 over every call of every
repeat). Throughput is texts/s, the median over the repeats with the min-max spread.

GEMM op/s: the matmul ops of the texts' sequences (:mod:`bertrt.bench.ops`) times each row's texts/s, and
its share of this machine's GEMM peak for the row's precision, measured after the rounds in a few
seconds with the same threads (:mod:`bertrt.bench.peak`; ``peak=False`` skips it). Rows that ran on a GPU
get no share.

Answers: every system's results on all texts at the largest batch size are compared with the reference's
(the PyTorch pipeline; without one, bertrt onnxruntime fp32) with :func:`bertrt.tune.compare`: label /
entity / top-token agreement, entity F1 for NER, cosine for embeddings.
"""

from __future__ import annotations

import importlib.util
import logging
import statistics
import time
from pathlib import Path

from .. import __version__
from ..backends import accelerated
from ..errors import BertrtError, InputError, ModelFileNotFoundError
from . import ops as opsmod
from . import systems as sysmod

__all__ = ["DEFAULT_BATCH_SIZES", "DEFAULT_REPEATS", "bench", "timed_pass"]

log = logging.getLogger("bertrt")

DEFAULT_BATCH_SIZES = (1, 8, 32)
DEFAULT_REPEATS = 3
#: seconds between passes, so one library's spinning threads do not eat the next one's time
PAUSE_S = 0.05
#: the baseline of the answers check when there is no reference
FALLBACK_BASELINE = "bertrt onnxruntime fp32"


def _percentiles(seconds: list[float]) -> dict:
    import numpy as np

    ms = np.asarray(seconds, dtype=np.float64) * 1000.0
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p90_ms": round(float(np.percentile(ms, 90)), 4),
        "n": int(ms.size),
    }


def timed_pass(call, texts: list[str], batch_size: int) -> tuple[float, list[float]]:
    """Seconds for one pass of ``call(texts, batch_size)``; at batch size 1 also each call's seconds
    (the benchmark suite's harness times its in-process systems with it too)."""
    if batch_size == 1:
        latencies = []
        for text in texts:
            start = time.perf_counter()
            call([text], 1)
            latencies.append(time.perf_counter() - start)
        return sum(latencies), latencies
    start = time.perf_counter()
    out = call(texts, batch_size)
    elapsed = time.perf_counter() - start
    if len(out) != len(texts):
        raise BertrtError(f"a system returned {len(out)} results for {len(texts)} texts")
    return elapsed, []


def _rounds(built: list, texts: list[str], sizes: list[int], repeats: int) -> tuple[dict, dict]:
    """Interleaved passes: (seconds per system per batch size, batch-1 call seconds per system)."""
    for system in built:  # warm-up: every batch size once, on a few texts
        for bs in sizes:
            system.call(texts[:8], bs)
    seconds = {s.name: {bs: [] for bs in sizes} for s in built}
    calls = {s.name: [] for s in built}
    for rep in range(repeats):
        order = built[rep % len(built) :] + built[: rep % len(built)]
        for bs in sizes:
            for system in order:
                elapsed, latencies = timed_pass(system.call, texts, bs)
                seconds[system.name][bs].append(elapsed)
                calls[system.name] += latencies
                time.sleep(PAUSE_S)
    return seconds, calls


def _answers(task: str, built: list, texts: list[str], batch_size: int) -> tuple[str | None, dict]:
    """(baseline name, system -> agreement figures with the baseline's answers)."""
    from ..tune import compare

    names = [s.name for s in built]
    baseline = sysmod.REFERENCE if sysmod.REFERENCE in names else FALLBACK_BASELINE
    if baseline not in names:
        return None, {}
    answers = {s.name: s.call(texts, batch_size) for s in built}
    return baseline, {
        name: compare(task, answers[baseline], got) for name, got in answers.items() if name != baseline
    }


def bench(
    bundle,
    *,
    reference="auto",
    texts=None,
    batch_sizes=DEFAULT_BATCH_SIZES,
    repeats: int = DEFAULT_REPEATS,
    threads: int | None = None,
    providers=None,
    peak: bool = True,
) -> dict:
    """Measure ``bundle`` on this machine: every bertrt backend x precision that runs here and, with
    ``reference`` (a checkpoint folder; ``"auto"``: the one bundle.json records, when it is a local
    folder that exists; None: none), the checkpoint's PyTorch pipeline. ``texts``: a list (default: the built-in
    sample). ``providers`` (a GPU: ``"cuda"``): the bertrt candidates run with them, and with a reference
    PyTorch CUDA fp32 and fp16 rows are added when torch has CUDA (the CPU PyTorch row stays the answers'
    baseline). Returns the result dict :func:`bertrt.bench.report.write` renders."""
    from ..cpu import physical_cores
    from ..pipelines import pipeline

    root = Path(bundle)
    if not root.is_dir():
        raise InputError(f"{bundle}: bertrt bench needs a local bundle folder")
    sizes = sorted({int(b) for b in batch_sizes} | {1})
    if sizes[0] <= 0 or isinstance(repeats, bool) or int(repeats) <= 0:
        raise InputError("batch sizes and repeats must be positive")
    if threads is not None and (isinstance(threads, bool) or int(threads) <= 0):
        raise InputError(f"threads must be a positive int, got {threads!r}")
    threads = threads or physical_cores()
    try:  # the task, the tokenizer and bundle.json, from whichever graph the bundle has
        probe = pipeline(None, root, precision="fp32", threads=threads, backend="onnxruntime")
    except ModelFileNotFoundError:
        probe = pipeline(None, root, precision="int8", threads=threads, backend="onnxruntime")
    task = probe.task
    texts, source = sysmod.task_texts(task, None if texts is None else list(texts), probe)
    checkpoint, reference_note = _reference(reference, probe)
    work = _work(probe, task, texts)
    del probe
    largest = max(sizes)
    built, rows = [], []
    if isinstance(providers, str):
        providers = [providers]
    for cand in sysmod.candidates(providers):
        row = {"system": cand.name, "backend": cand.backend, "precision": cand.precision}
        rows.append(row)
        if cand.reason is None:
            try:
                built.append(sysmod.build_bertrt(cand, task, root, texts, largest, threads, providers))
                continue
            except BertrtError as exc:  # e.g. the bundle lacks that precision's file
                log.warning("bench: %s cannot run: %s", cand.name, exc)
                row["reason"] = " ".join(str(exc).split())
        else:
            row["reason"] = cand.reason
        row["available"] = False
    if checkpoint is not None:
        built.append(sysmod.build_reference(task, checkpoint, texts, largest, threads))
        rows.append({"system": sysmod.REFERENCE, "backend": "pytorch", "precision": "fp32"})
        if accelerated(providers):
            for system in sysmod.build_cuda_references(task, checkpoint, texts, largest):
                built.append(system)
                rows.append({"system": system.name, "backend": "pytorch", "precision": system.precision})
    if not built:
        raise BertrtError(
            "no backend x precision can run this bundle here: "
            + "; ".join(f"{r['system']}: {r['reason']}" for r in rows if r.get("reason"))
        )
    baseline, agreement = _answers(task, built, texts, largest)
    seconds, calls = _rounds(built, texts, sizes, int(repeats))
    if work is not None and peak:
        from .peak import measure_peaks

        wanted = {_peak_precision(s, providers) for s in built} - {None}
        work.update(measure_peaks(threads, [p for p in PEAK_PRECISIONS if p in wanted]))
    by_name = {s.name: s for s in built}
    for row in rows:
        system = by_name.get(row["system"])
        if system is None:
            continue
        rates = {bs: [len(texts) / t for t in seconds[system.name][bs]] for bs in sizes}
        throughput = {
            str(bs): {
                "median": round(statistics.median(r), 3),
                "min": round(min(r), 3),
                "max": round(max(r), 3),
            }
            for bs, r in rates.items()
        }
        row.update(
            available=True,
            cold_start_s=system.cold_start_s,
            rss_delta_mb=system.rss_delta_mb,
            throughput=throughput,
            latency_bs1=_percentiles(calls[system.name]),
            agreement=agreement.get(system.name),
            gemm=_gemm(throughput, work, _peak_precision(system, providers)),
        )
    return {
        "bertrt": __version__,
        "bundle": str(root),
        "task": task,
        "machine": sysmod.machine(),
        "threads": threads,
        "providers": None if providers is None else list(providers),
        "texts": {
            "count": len(texts),
            "source": source,
            "mean_chars": round(sum(map(_chars, texts)) / len(texts), 1),
        },
        "batch_sizes": sizes,
        "repeats": int(repeats),
        "reference": {"checkpoint": None if checkpoint is None else str(checkpoint), "note": reference_note},
        "baseline": baseline,
        "interleaving": "rotating system order per repeat, each pass over the same texts",
        "gemm": work,
        "systems": rows,
    }


#: the precisions whose GEMM peak a row can be compared with, in the report's order
PEAK_PRECISIONS = ("int8", "bf16", "fp32")


def _work(probe, task: str, texts: list[str]) -> dict | None:
    """The matmul ops of one pass over ``texts``: the sequences the task feeds the graph (its bench
    options), each costing the bundle's :class:`~bertrt.bench.ops.OpCount`; None (logged) without one."""
    from ..tasks import get_task

    count = opsmod.op_count(probe.bundle.manifest, probe.bundle.config, task)
    if count is None:
        return None
    try:
        prepared = probe.prepare(texts, **dict(get_task(task).reference_options))
    except BertrtError as exc:
        log.warning("bench: no GEMM op count for these texts (%s)", exc)
        return None
    lengths = [len(seq) for seq in prepared.encoded.sequences]
    total = opsmod.sequence_ops(count, lengths)
    return {
        "ops_source": count.source,
        "coefficients": list(count.coefficients),
        "sequences": len(lengths),
        "mean_tokens": round(sum(lengths) / max(len(lengths), 1), 1),
        "gop_per_text": total / len(texts) / 1e9,
    }


def _peak_precision(system, providers) -> str | None:
    """The precision whose CPU GEMM peak ``system`` is compared with (None: it ran on a GPU)."""
    if system.name == sysmod.REFERENCE:  # the PyTorch CPU row
        return "fp32"
    on_cpu = system.name.startswith("bertrt ") and not accelerated(providers)
    return system.precision if on_cpu and system.precision in PEAK_PRECISIONS else None


def _gemm(throughput: dict, work: dict | None, precision: str | None) -> dict | None:
    """A row's GEMM GOP/s at each batch size and at its best, and the best's share of its peak."""
    if work is None:
        return None
    gops = {bs: round(v["median"] * work["gop_per_text"], 2) for bs, v in throughput.items()}
    best = max(gops.values())
    peak = (work.get("peaks") or {}).get(precision) if precision else None
    return {
        "gops": gops,
        "best_gops": best,
        "peak_precision": precision if peak else None,
        "fraction_of_peak": round(best / peak["gops"], 4) if peak and peak["gops"] > 0 else None,
    }


def _chars(item) -> int:
    """Characters of one bench input: a text, or the strings of a dict input (QA's question + context)."""
    if isinstance(item, dict):
        return sum(len(v) for v in item.values() if isinstance(v, str))
    return len(item)


def _reference(reference, probe) -> tuple[Path | None, str]:
    """(checkpoint folder or None, a note on where it comes from)."""
    if reference is None:
        return None, "no reference asked for"
    if reference == "auto":
        recorded = sysmod.recorded_checkpoint(probe)
        if recorded is None:
            return None, "bundle.json records no local checkpoint folder that exists: no reference row"
        missing = [m for m in ("torch", "transformers") if importlib.util.find_spec(m) is None]
        if missing:
            log.warning("bench: no PyTorch reference row (%s not installed)", ", ".join(missing))
            return None, f"{', '.join(missing)} not installed: no reference row (pip install 'bertrt[bench]')"
        return recorded, "the checkpoint bundle.json records"
    path = Path(reference)
    if not (path / "config.json").is_file():
        raise InputError(f"{reference}: --reference must be a checkpoint folder (with config.json)")
    return path, "given with --reference"
