"""``bertrt bench BUNDLE``: the user's bundle on this machine, every backend x precision, against PyTorch.

Installed with ``pip install 'bertrt[bench]'`` (psutil, matplotlib; the PyTorch reference needs the
exporter's torch and transformers, which the extra brings). For the bundle it measures every bertrt
backend x precision that can run here (:mod:`bertrt.backends`), and the checkpoint's transformers pipeline
on PyTorch when there is a reference (``--reference CHECKPOINT``; default: the checkpoint bundle.json
records, when it is a local folder that exists), on the user's texts (``--texts``: .txt one a line or
.jsonl with "text"; default: a built-in sample): throughput at several batch sizes, batch-1 latency
(p50/p90), cold start, resident-memory growth, whether the answers agree with the reference's, and
the GEMM op/s each row achieved with its share of this machine's GEMM peak for its precision
(:mod:`bertrt.bench.ops`, :mod:`bertrt.bench.peak`; ``--no-peak`` skips the few-second peak step).
Systems are timed interleaved (:mod:`bertrt.bench.measure`); the report (:mod:`bertrt.bench.report`) is
``bench.md``, ``bench.json`` and ``bench.png`` in ``--out`` (default ``./bertrt-results``).

The repository's own benchmark suite (Optimum, optimum-intel, raw sessions, several workloads) is not
part of the package: ``python -m benchmarks.harness`` in a source checkout.
"""

from __future__ import annotations

from .measure import DEFAULT_BATCH_SIZES, DEFAULT_REPEATS, bench
from .report import FILES, write

__all__ = ["DEFAULT_BATCH_SIZES", "DEFAULT_REPEATS", "FILES", "bench", "write"]
