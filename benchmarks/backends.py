"""Raw sessions side by side: onnxruntime int8 / fp32 vs OpenVINO fp32 / bf16 / int8 (no tokenization).

The ``ner`` workload's bundle (fine-tuned MiniLM-L6 NER when present, else MiniLM with a random WNUT head:
the same shapes), WNUT-16 sentences tokenized once, sorted by length, cut into batches of ``--batch-size``
and padded; every session runs all batches once per pass, passes interleaved across sessions, medians of
``--repeats`` passes with min-max. The machine (CPU model and flags) is named in every table.

    python -m benchmarks.backends                       # full run: 600 sentences, 5 passes
    python -m benchmarks.backends --texts 96 --repeats 2 --no-write   # a quick check

writes benchmarks/results/backends.json and backends.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

from benchmarks.hardware import machine_info
from benchmarks.workloads import load_workload
from bertrt import backends
from bertrt.batching import pad_batch
from bertrt.pipelines import pipeline
from bertrt.session import OnnxSession, physical_cores

__all__ = ["SESSIONS", "add_arguments", "main", "publish"]

log = logging.getLogger("bertrt.backends_bench")
RESULTS = Path(__file__).resolve().parent / "results"
#: name -> (backend, precision)
SESSIONS = {
    "onnxruntime int8 (per-token)": ("onnxruntime", "int8"),
    "onnxruntime fp32": ("onnxruntime", "fp32"),
    "openvino fp32": ("openvino", "fp32"),
    "openvino bf16": ("openvino", "bf16"),
    "openvino int8 (nncf weights + dynamic activations)": ("openvino", "int8"),
}


def _batches(pipe, texts: list[str], batch_size: int) -> list[dict]:
    """Length-sorted, right-padded batches of ``texts`` as the runtime builds them (no feed casting)."""
    encs = sorted(pipe.tokenizer.encode_batch(texts, truncate=True), key=len)
    pad = pipe.tokenizer.pad_token_id
    return [pad_batch(encs[start : start + batch_size], pad) for start in range(0, len(encs), batch_size)]


def _session(bundle: Path, backend: str, precision: str, threads: int, output: str):
    if backend == "onnxruntime":
        name = "model.int8.onnx" if precision == "int8" else "model.onnx"
        return OnnxSession(bundle / name, threads, output_name=output)
    the_plan = backends.Plan(backend, precision, threads, "explicit")
    return backends.create_session(the_plan, bundle / "model.onnx", output_name=output)


def publish(stem: str, result: dict, text: str, write: bool) -> None:
    """Print the table; unless ``write`` is false, save results/<stem>.json and .md."""
    print(text)
    if write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2) + "\n")
        (RESULTS / f"{stem}.md").write_text(text + "\n")


def add_arguments(parser) -> None:
    """The raw-session benchmarks' flags (this module and benchmarks.kernels)."""
    parser.add_argument("--texts", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--no-write", action="store_true", help="print only; leave results/ as it is")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    threads = args.threads or physical_cores()
    work = load_workload("ner", args.texts)
    pipe = pipeline(work.task, work.bundle, precision="fp32", backend="onnxruntime")
    batches = _batches(pipe, work.texts, args.batch_size)
    tokens = sum(int(b["attention_mask"].sum()) for b in batches)
    sessions, skipped = {}, {}
    for name, (backend, precision) in SESSIONS.items():
        try:
            backends.check_available(backend, precision)
            sessions[name] = _session(Path(work.bundle), backend, precision, threads, pipe.spec.output)
        except Exception as exc:  # a backend this machine lacks is reported, not fatal
            skipped[name] = str(exc)
    for sess in sessions.values():  # warm-up: one pass each (compiles shapes, fills caches)
        for batch in batches:
            sess.run(batch)
    rates: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(args.repeats):
        for name, sess in sessions.items():
            start = time.perf_counter()
            for batch in batches:
                sess.run(batch)
            rates[name].append(len(work.texts) / (time.perf_counter() - start))
    info = machine_info()
    rows = []
    for name, values in rates.items():
        rows.append(
            {
                "session": name,
                "sents_per_s": round(statistics.median(values), 1),
                "min": round(min(values), 1),
                "max": round(max(values), 1),
                "runs": [round(v, 1) for v in values],
            }
        )
    result = {
        "machine": {k: info.get(k) for k in ("cpu", "cpu_flags", "physical_cores", "logical_cpus")},
        "cpu_key": backends.cpu_key(),
        "model": work.model,
        "data": work.data,
        "texts": len(work.texts),
        "mean_tokens": round(tokens / len(work.texts), 1),
        "batch_size": args.batch_size,
        "threads": threads,
        "repeats": args.repeats,
        "rows": rows,
        "skipped": skipped,
    }
    lines = [
        f"Machine: {info.get('cpu')}, {info.get('physical_cores')} cores "
        f"({', '.join(info.get('cpu_flags') or [])}); {threads} threads per session. {work.model}; "
        f"{work.data}; {result['mean_tokens']} tokens per sentence; length-sorted batches of "
        f"{args.batch_size}; raw sessions (no tokenization); median of {args.repeats} interleaved passes.",
        "",
        "| session | sents/s (min-max) |",
        "|---|---:|",
        *(f"| {r['session']} | {r['sents_per_s']:.0f} ({r['min']:.0f}-{r['max']:.0f}) |" for r in rows),
        *(f"| {name} | skipped: {why} |" for name, why in skipped.items()),
    ]
    publish("backends", result, "\n".join(lines), write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
