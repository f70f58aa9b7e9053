"""ModernBERT's RotaryEmbedding + MultiHeadAttention rewrite, measured in one command.

Builds arch_bench's random-weight ModernBERT-base token classifier (22 x 768, 12 heads, GLU FFN 1152,
local window 128 / global every 3rd), exports it twice with this exporter: ``before`` with the row's
``rotary_attention`` switched off (the graph main wrote before export/modernbert.py), ``rotary`` as the
exporter writes it now (int8 gates off: a random head); then runs :mod:`benchmarks.deberta_speed` on the
two bundles and PyTorch fp32 (sdpa), interleaved. The bundles are kept under ``--work`` (reused when present).

    python -m benchmarks.modernbert_speed [--work DIR] [--lengths 48,128] [--repeats 5] [--fp32]
    python -m benchmarks.modernbert_speed --pairs 24    # the two int8 graphs only, paired rounds

``--pairs N``: N rounds alternating which int8 session goes first, each timing one batch of 8 and one
text; medians and bests of the two graphs only (no PyTorch), steadier than the full table on busy cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import data as bdata

__all__ = ["main"]


def export_pair(checkpoint: Path, work: Path) -> tuple[Path, Path]:
    """(before, rotary) bundles of ``checkpoint`` under ``work``, exported when missing."""
    from bertrt import architectures
    from bertrt.export import export_model

    before, after = work / "before", work / "rotary"
    row = architectures.ARCHITECTURES["modernbert"]
    if not (before / "bundle.json").is_file():
        architectures.ARCHITECTURES["modernbert"] = dataclasses.replace(row, rotary_attention=False)
        try:
            export_model(checkpoint, before, task="token-classification", int8_gates={}, force=True)
        finally:
            architectures.ARCHITECTURES["modernbert"] = row
    if not (after / "bundle.json").is_file():
        export_model(checkpoint, after, task="token-classification", int8_gates={}, force=True)
    return before, after


def paired(folders: dict[str, Path], length: int, rounds: int) -> None:
    """Print batch-8 texts/s and batch-1 ms (median, best) of each folder's int8 graph, paired rounds."""
    from benchmarks.deberta_speed import BATCH, _onnx

    runs = {name: _onnx(folder / "model.int8.onnx") for name, folder in folders.items()}
    ids = np.random.default_rng(length).integers(1000, 30000, (BATCH, length)).astype(np.int64)
    mask = np.ones_like(ids)
    for run in runs.values():
        run(ids, mask)
        run(ids[:1], mask[:1])
    batch: dict[str, list[float]] = {n: [] for n in runs}
    single: dict[str, list[float]] = {n: [] for n in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 else names[::-1]:
            start = time.perf_counter()
            runs[name](ids, mask)
            batch[name].append(BATCH / (time.perf_counter() - start))
            start = time.perf_counter()
            runs[name](ids[r % BATCH : r % BATCH + 1], mask[:1])
            single[name].append(1000.0 * (time.perf_counter() - start))
    print(f"\n{length} tokens, {rounds} paired rounds (load {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
    print("| int8 graph | batch-8 texts/s median (best) | batch-1 ms median (best) |\n|---|---:|---:|")
    for name in names:
        b, s = batch[name], single[name]
        print(
            f"| {name} | {statistics.median(b):.1f} ({max(b):.1f}) | {statistics.median(s):.1f} ({min(s):.1f}) |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.modernbert_speed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--work", type=Path, default=None, help="bundles' folder (default: the cache)")
    parser.add_argument("--lengths", default="48,128")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=5)
    parser.add_argument("--fp32", action="store_true", help="also the fp32 graphs")
    parser.add_argument("--pairs", type=int, default=0, help="paired int8-only rounds instead of the table")
    args = parser.parse_args(argv)
    from benchmarks import deberta_speed
    from benchmarks.arch_bench import build_checkpoint

    checkpoint = build_checkpoint("modernbert")
    work = args.work or bdata.cache_root() / "modernbert-speed" / checkpoint.name
    before, after = export_pair(checkpoint, work)
    if args.pairs:
        for length in (int(x) for x in args.lengths.split(",")):
            paired({"before": before, "rotary": after}, length, args.pairs)
        return 0
    rest = [
        "--lengths",
        args.lengths,
        "--repeats",
        str(args.repeats),
        "--calls",
        str(args.calls),
        "--profile",
    ]
    rest += ["--fp32"] if args.fp32 else []
    return deberta_speed.main(
        ["--checkpoint", str(checkpoint), "--before", str(before), "--after", str(after), *rest]
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
