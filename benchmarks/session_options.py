"""Which onnxruntime session options help a pre-optimized bertrt graph with varying shapes?

Runs the same NER bundle on the same WNUT-16 sentences with each variant of the runtime's session
options, interleaved (A B C ... A B C ...), and reports median texts/s with the min-max spread.

    python -m benchmarks.session_options [--bundle DIR] [--texts 600] [--repeats 5] [--batch-size 32]

Writes benchmarks/results/session_options.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import bertrt
from bertrt import session as session_stage

from .determinism import default_bundle, wnut_texts

RESULTS = Path(__file__).parent / "results"


def _variant(level: str, mem_pattern: bool, spinning: bool):
    def options(threads=None):
        import onnxruntime as ort

        opts = _base_options(threads)
        opts.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        opts.enable_mem_pattern = mem_pattern
        opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        return opts

    return options


_base_options = session_stage.session_options

#: name -> (graph optimization level, memory pattern, intra-op spinning); the first is the runtime default.
VARIANTS = {
    "default (ALL, mem pattern off, spin)": ("ORT_ENABLE_ALL", False, True),
    "ALL, mem pattern on": ("ORT_ENABLE_ALL", True, True),
    "ALL, no spinning": ("ORT_ENABLE_ALL", False, False),
    "BASIC": ("ORT_ENABLE_BASIC", False, True),
    "DISABLE_ALL": ("ORT_DISABLE_ALL", False, True),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.session_options", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--precision", default="int8", choices=("int8", "fp32"))
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    bundle, label = (args.bundle, str(args.bundle)) if args.bundle else default_bundle()
    texts = wnut_texts(args.texts)
    pipes = {}
    for name, spec in VARIANTS.items():
        session_stage.session_options = _variant(*spec)
        try:
            pipes[name] = bertrt.pipeline("ner", bundle, precision=args.precision, threads=args.threads)
        finally:
            session_stage.session_options = _base_options
        pipes[name](texts[:32], batch_size=args.batch_size)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in pipes}
    for _ in range(args.repeats):
        for name, pipe in pipes.items():
            t0 = time.perf_counter()
            pipe(texts, batch_size=args.batch_size, aggregation_strategy="first")
            times[name].append(time.perf_counter() - t0)
    rows = {
        name: {
            "median_texts_per_s": len(texts) / statistics.median(t),
            "min_texts_per_s": len(texts) / max(t),
            "max_texts_per_s": len(texts) / min(t),
        }
        for name, t in times.items()
    }
    result = {
        "bundle": label,
        "precision": args.precision,
        "texts": len(texts),
        "repeats": args.repeats,
        "batch_size": args.batch_size,
        "threads": args.threads or session_stage.physical_cores(),
        "variants": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "session_options.json").write_text(json.dumps(result, indent=2) + "\n")
    title = (
        f"# Session options: {label} ({args.precision}), {len(texts)} WNUT-16 sentences, batch "
        f"{args.batch_size}, {result['threads']} intra-op threads, {args.repeats} interleaved repeats"
    )
    lines = [title, "", "| variant | texts/s (median) | min–max |", "|---|---:|---:|"]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['median_texts_per_s']:.1f} | "
            f"{row['min_texts_per_s']:.1f}–{row['max_texts_per_s']:.1f} |"
        )
    (args.out / "session_options.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
