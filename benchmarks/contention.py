"""Batch-1 latency and batch-32 throughput under contention: onnxruntime's spinning thread pool on or off.

Raw sessions (the runtime's own :func:`bertrt.session.session_options`, plus the variant's config
entries) on a bundle's graph; random token ids at fixed length (default 32, a tweet) so only the
session is timed. Each condition (``quiet``; ``busy``: one ``python -c 'while True: pass'`` process,
started here and ended here) runs the variants interleaved (A B C A B C ...), ``--repeats`` times;
figures are medians with min-max: batch 1 p50 latency (ms, over ``--calls`` calls per repeat) and
batch 32 texts/s. ``uptime`` load and the CPU model are printed with the table.

    python -m benchmarks.contention --bundle DIR [--precision int8] [--repeats 5] [--calls 40]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from bertrt.cpu import cpu_model, physical_cores
from bertrt.session import DISABLED_OPTIMIZERS, session_options

__all__ = ["VARIANTS", "main"]

#: name -> session config entries added to the runtime's session options (the first is the default)
VARIANTS = {
    "spin on (default)": {},
    "spin off": {"session.intra_op.allow_spinning": "0"},
    "spin off, block base 4": {"session.intra_op.allow_spinning": "0", "session.dynamic_block_base": "4"},
    "spin on, block base 4": {"session.dynamic_block_base": "4"},
}


def _session(model: Path, entries: dict, threads: int | None):
    import onnxruntime as ort

    options = session_options(threads)
    for key, value in entries.items():
        options.add_session_config_entry(key, value)
    return ort.InferenceSession(
        str(model),
        sess_options=options,
        providers=["CPUExecutionProvider"],
        disabled_optimizers=DISABLED_OPTIMIZERS,
    )


def _feed(session, batch: int, length: int, rng) -> dict:
    names = {i.name for i in session.get_inputs()}
    feed = {"input_ids": rng.integers(1000, 20000, (batch, length)).astype(np.int64)}
    feed["input_ids"][:, 0], feed["input_ids"][:, -1] = 101, 102
    if "attention_mask" in names:
        feed["attention_mask"] = np.ones((batch, length), np.int64)
    if "token_type_ids" in names:
        feed["token_type_ids"] = np.zeros((batch, length), np.int64)
    return feed


@contextlib.contextmanager
def _busy(on: bool):
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        time.sleep(0.5 if on else 0.0)
        yield
    finally:
        if proc is not None:
            proc.kill()
            proc.wait()


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def run(model: Path, repeats: int, calls: int, length: int, threads: int | None) -> dict:
    rng = np.random.default_rng(0)
    sessions = {name: _session(model, entries, threads) for name, entries in VARIANTS.items()}
    any_session = next(iter(sessions.values()))
    one, many = _feed(any_session, 1, length, rng), _feed(any_session, 32, length, rng)
    out_name = any_session.get_outputs()[0].name
    for s in sessions.values():  # warm-up, both shapes
        s.run([out_name], one)
        s.run([out_name], many)
    result = {}
    for condition in ("quiet", "busy"):
        lat = {n: [] for n in sessions}
        tput = {n: [] for n in sessions}
        with _busy(condition == "busy"):
            load = _load()
            for rep in range(repeats):
                names = list(sessions)
                names = names[rep % len(names) :] + names[: rep % len(names)]
                for name in names:
                    s = sessions[name]
                    times = []
                    for _ in range(calls):
                        t0 = time.perf_counter()
                        s.run([out_name], one)
                        times.append(time.perf_counter() - t0)
                    lat[name].append(1000.0 * statistics.median(times))
                    t0 = time.perf_counter()
                    for _ in range(4):
                        s.run([out_name], many)
                    tput[name].append(4 * 32 / (time.perf_counter() - t0))
        result[condition] = {"load": load, "p50_ms": lat, "texts_per_s": tput}
    return result


def _fmt(values: list[float], digits: int) -> str:
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}–{max(values):.{digits}f})"


def render(result: dict, model: Path, length: int, threads: int | None) -> str:
    lines = [
        f"Graph {model}, {length} tokens, {threads or 'physical-core'} intra-op threads; "
        f"CPU {cpu_model()} ({physical_cores()} physical cores); medians (min–max) of interleaved repeats.",
        "",
        "| condition (load 1/5/15 min) | variant | batch-1 p50 ms | batch-32 texts/s |",
        "|---|---|---:|---:|",
    ]
    for condition, fig in result.items():
        for name in fig["p50_ms"]:
            lines.append(
                f"| {condition} ({fig['load']}) | {name} | {_fmt(fig['p50_ms'][name], 2)} | "
                f"{_fmt(fig['texts_per_s'][name], 0)} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.contention", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--length", type=int, default=32)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    model = args.bundle / ("model.int8.onnx" if args.precision == "int8" else "model.onnx")
    result = run(model, args.repeats, args.calls, args.length, args.threads)
    print(render(result, model, args.length, args.threads))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
