"""MPNet attention on MultiHeadAttention, measured: int8 (and fp32) before / after vs PyTorch fp32, interleaved.

One command: builds arch_bench's random MPNet-base token classifier (``benchmarks.arch_bench.FAMILIES["mpnet"]``)
once, exports it twice with this exporter (int8 gates off: a random head), ``before`` with the architecture
row's ``attention_bias_fusion`` switched off (the graph onnxruntime's optimizer leaves: unfused attention)
and ``after`` as the exporter writes it, both cached under ``<cache>/arch-bench/bundles``; then times the
raw sessions and PyTorch's forward with :mod:`benchmarks.deberta_speed`'s harness (random ids, batch 8
texts/s and batch-1 p50, ``--repeats`` interleaved rounds, medians with min-max), and optionally the
onnxruntime profile of each int8 graph at batch 8. ``--cpu-time``: the int8 graphs also on ONE intra-op
thread (spinning off), timed by the calling thread's CPU time (the work runs on it): other processes' load
then costs wall time but hardly this figure, the A/B to read on a shared machine.

    python -m benchmarks.mpnet_speed [--lengths 48,128] [--repeats 5] [--calls 5] [--fp32] [--profile] [--cpu-time]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.arch_bench import TASK, arch_cache, build_checkpoint
from benchmarks.deberta_speed import BATCH, _fmt, print_profiles, run_tables
from benchmarks.workloads import ensure_bundle

__all__ = ["main", "prepare"]

FAMILY = "mpnet"


def prepare(tiny: bool = False) -> tuple[Path, dict[str, Path]]:
    """The checkpoint and the ``before`` / ``after`` bundles (exported once, cached); ``tiny``: arch_bench's
    2 x 64 size (a check of the code)."""
    from bertrt import architectures

    checkpoint = build_checkpoint(FAMILY, tiny)
    root = arch_cache() / "bundles"
    name = f"{FAMILY}-tiny" if tiny else FAMILY
    after = ensure_bundle(checkpoint, TASK, name, root=root, gates=False)
    row = architectures.ARCHITECTURES[FAMILY]
    architectures.ARCHITECTURES[FAMILY] = dataclasses.replace(row, attention_bias_fusion=False)
    try:
        before = ensure_bundle(checkpoint, TASK, f"{name}-unfused", root=root, gates=False)
    finally:
        architectures.ARCHITECTURES[FAMILY] = row
    return checkpoint, {"before": before, "after": after}


def cpu_time(folders: dict[str, Path], lengths: list[int], rounds: int, vocab: int) -> None:
    """Print the int8 graphs' CPU ms per call (1 thread), batch 8 and batch 1, ``rounds`` interleaved."""
    import onnxruntime as ort

    from bertrt.session import DISABLED_OPTIMIZERS, session_options

    def session(path: Path):
        options = session_options(1, spinning=False)
        s = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
        )
        return lambda ids: s.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})

    runs = {label: session(folder / "model.int8.onnx") for label, folder in folders.items()}
    names = list(runs)
    print("\n| tokens | batch | " + " | ".join(f"int8 {n} CPU ms" for n in names) + " | after / before |")
    print("|---:|---:|" + "---:|" * (len(names) + 1))
    for length in lengths:
        for batch, calls in ((BATCH, 1), (1, 4)):
            ids = np.random.default_rng(length).integers(1000, vocab, (batch, length)).astype(np.int64)
            cpu = {n: [] for n in names}
            for run in runs.values():
                run(ids)
            for r in range(rounds):
                for n in names[r % len(names) :] + names[: r % len(names)]:
                    start = time.thread_time()
                    for _ in range(calls):
                        runs[n](ids)
                    cpu[n].append(1000.0 * (time.thread_time() - start) / calls)
            ratio = statistics.median(cpu[names[0]]) / statistics.median(cpu[names[-1]])
            cells = " | ".join(_fmt(cpu[n]) for n in names)
            print(f"| {length} | {batch} | {cells} | {ratio:.2f}x faster |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.mpnet_speed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--lengths", default="48,128")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also the int8 profiles' top ops")
    parser.add_argument("--fp32", action="store_true", help="also the fp32 graphs")
    parser.add_argument(
        "--cpu-time", action="store_true", help="also the 1-thread CPU-time A/B of the int8 graphs"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    checkpoint, folders = prepare()
    for label, folder in folders.items():
        fusion = json.loads((folder / "bundle.json").read_text())["fusion"]
        print(
            f"{label}: {folder}\n  fusion {fusion['counts']}, attention_bias_fused {fusion.get('attention_bias_fused')}"
        )
    vocab = json.loads((checkpoint / "config.json").read_text())["vocab_size"]
    run_tables(checkpoint, folders, args.lengths, args.repeats, args.calls, vocab, fp32=args.fp32)
    if args.cpu_time:
        print(f"\nCPU time, 1 thread (load {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        cpu_time(folders, [int(x) for x in args.lengths.split(",")], 2 * args.repeats + 1, vocab)
    if args.profile:
        print_profiles(folders, args.lengths, vocab)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
