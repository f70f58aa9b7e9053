"""``bertrt batch`` throughput: local workers vs Ray Data actors on WNUT-like rows, peak RSS, Ray's overhead.

    python -m benchmarks.batch_bench [--rows 20000] [--repeats 3] [--shard-size 2500] [--batch-size 32]
                                     [--configs local-1x1 local-1x2 local-2x1 ray-1x1 ray-2x1]

The rows are the 2,394 WNUT-16 sentences (space-joined tokens) repeated to ``--rows``, in one Parquet file
with an ``id`` column; the model is the ``ner`` workload's MiniLM bundle (benchmarks/workloads.py: the
fine-tuned WNUT model when present, else all-MiniLM-L6-v2 with a seeded random head, same speed) with
``--aggregation-strategy first``. Each configuration (``local-WxT``: W processes of T threads;
``ray-AxT``: A actors of T CPUs on a local ``ray.init``) runs the real command line in a fresh process
into a fresh OUTPUT, interleaved (A B C ... A B C ...), ``--repeats`` times. Reported per configuration,
median with min-max:

* **end-to-end rows/s**: rows / wall time of the whole command (model load, input scan, workers or Ray
  starting, the run, the manifest);
* **steady rows/s**: the sum over workers of rows / seconds spent in their shards (from the manifest's
  shard records): the rate once everything is up, what a long job sees;
* **peak RSS**: the largest sum of RSS over the command's process tree (workers, and with Ray its raylet,
  GCS and actor processes), sampled every 0.1 s;
* Ray's overhead: wall seconds over the local run with the same number of workers x threads.

Every configuration's output is checked identical to the first one's (same rows, same results).
Writes benchmarks/results/batch.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import bertrt

RESULTS = Path(__file__).parent / "results"
CONFIGS = ("local-1x1", "local-1x2", "local-2x1", "ray-1x1", "ray-2x1")
OPTIONS = ["--aggregation-strategy", "first"]


def _texts(rows: int) -> list[str]:
    from benchmarks import data

    sentences = [" ".join(s.tokens) for s in data.load_wnut16()]
    return [sentences[i % len(sentences)] for i in range(rows)]


def _write_input(texts: list[str], folder: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = folder / "wnut.parquet"
    pq.write_table(pa.table({"id": list(range(len(texts))), "text": texts}), path, row_group_size=4096)
    return path


def _tree_rss(proc) -> int:
    import psutil

    total = 0
    try:
        members = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in members:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def _command(config: str, bundle: Path, source: Path, out: Path, args) -> list[str]:
    kind, shape = config.split("-")
    workers, threads = (int(x) for x in shape.split("x"))
    cmd = [
        sys.executable,
        "-m",
        "bertrt.cli",
        "batch",
        str(bundle),
        str(source),
        str(out),
        "--shard-size",
        str(args.shard_size),
        "--batch-size",
        str(args.batch_size),
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--no-progress",
        *OPTIONS,
    ]
    if kind == "ray":
        cmd.append("--ray")
    return cmd


def _run_once(config: str, bundle: Path, source: Path, work: Path, args) -> dict:
    import psutil

    out = work / f"out-{config}-{time.monotonic_ns()}"
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)  # a local Ray, never a cluster the environment points at
    started = time.perf_counter()
    proc = subprocess.Popen(
        _command(config, bundle, source, out, args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    watched = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _tree_rss(watched))
        time.sleep(0.1)
    wall = time.perf_counter() - started
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{config} failed ({proc.returncode}):\n{stderr[-3000:]}")
    manifest = json.loads((out / "_bertrt_manifest.json").read_text())
    per_worker: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for record in manifest["shards"]["done"].values():
        entry = per_worker[record.get("worker", "?")]
        entry[0] += record["rows"]
        entry[1] += record["seconds"]
    steady = sum(rows / seconds for rows, seconds in per_worker.values() if seconds > 0)
    rows = manifest["rows"]["done"]
    return {
        "config": config,
        "rows": rows,
        "wall_s": round(wall, 3),
        "rows_per_s": round(rows / wall, 1),
        "steady_rows_per_s": round(steady, 1),
        "peak_rss_mib": round(peak / 2**20, 1),
        "workers_seen": len(per_worker),
        "output": str(out),
    }


def _table(folder: str):
    import pyarrow.dataset as ds

    return ds.dataset(folder, format="parquet").to_table().sort_by("id")


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _fmt(s: dict, digits: int = 0) -> str:
    return f"{s['median']:,.{digits}f} ({s['min']:,.{digits}f}-{s['max']:,.{digits}f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.batch_bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shard-size", type=int, default=2500)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=CONFIGS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    import shutil

    from benchmarks.hardware import machine_info
    from benchmarks.workloads import load_workload

    workload = load_workload("ner", 16)
    texts = _texts(args.rows)
    tokenizer = bertrt.pipeline(None, workload.bundle)
    unique = list(dict.fromkeys(texts))
    tokens_per_row = statistics.mean(len(tokenizer.tokenize(t)["ids"]) for t in unique)
    del tokenizer
    runs: dict[str, list[dict]] = defaultdict(list)
    work = Path(tempfile.mkdtemp(prefix="bertrt-batch-bench-"))
    try:
        source = _write_input(texts, work)
        reference = None
        for repeat in range(args.repeats):
            for config in args.configs:  # interleaved: A B C ... A B C ...
                result = _run_once(config, workload.bundle, source, work, args)
                output = result.pop("output")
                table = _table(output)
                if reference is None:
                    reference = table
                result["identical_to_first"] = table.equals(reference)
                if not result["identical_to_first"]:
                    raise RuntimeError(f"{config}: output differs from {args.configs[0]}'s")
                runs[config].append(result)
                print(
                    f"[{repeat + 1}/{args.repeats}] {config}: {result['rows_per_s']:,.0f} rows/s end-to-end, "
                    f"{result['steady_rows_per_s']:,.0f} steady, peak RSS {result['peak_rss_mib']:,.0f} MiB",
                    file=sys.stderr,
                )
                shutil.rmtree(output, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    info = machine_info()
    summary = {}
    for config, items in runs.items():
        summary[config] = {
            key: _summary([r[key] for r in items])
            for key in ("rows_per_s", "steady_rows_per_s", "wall_s", "peak_rss_mib")
        }
    overhead = {}
    for config in summary:
        if config.startswith("ray-") and f"local-{config[4:]}" in summary:
            local = summary[f"local-{config[4:]}"]
            ray = summary[config]
            overhead[config] = {
                "wall_s_over_local": round(ray["wall_s"]["median"] - local["wall_s"]["median"], 2),
                "steady_ratio_to_local": round(
                    ray["steady_rows_per_s"]["median"] / local["steady_rows_per_s"]["median"], 3
                ),
                "extra_peak_rss_mib": round(
                    ray["peak_rss_mib"]["median"] - local["peak_rss_mib"]["median"], 1
                ),
            }
    scaling = {}
    for kind in ("local", "ray"):
        one, two = summary.get(f"{kind}-1x1"), summary.get(f"{kind}-2x1")
        if one and two:
            scaling[kind] = {
                "end_to_end": round(two["rows_per_s"]["median"] / one["rows_per_s"]["median"], 2),
                "steady": round(two["steady_rows_per_s"]["median"] / one["steady_rows_per_s"]["median"], 2),
            }
    per_core = summary.get("local-1x1", {}).get("steady_rows_per_s", {}).get("median")
    report = {
        "machine": info,
        "cpu": info.get("cpu"),
        "rows": args.rows,
        "repeats": args.repeats,
        "shard_size": args.shard_size,
        "batch_size": args.batch_size,
        "options": OPTIONS,
        "model": workload.model,
        "bundle": str(workload.bundle),
        "data": f"WNUT-16 sentences (2,394) repeated to {args.rows:,} rows, one Parquet file",
        "summary": summary,
        "ray_overhead": overhead,
        "scaling_1_to_2": scaling,
        "per_core_rows_per_s": per_core,
        "tokens_per_row": round(tokens_per_row, 1),
        "per_core_tokens_per_s": round(per_core * tokens_per_row) if per_core else None,
        "runs": runs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "batch.md").write_text(_markdown(report))
    print((args.out / "batch.md").read_text())
    return 0


def _markdown(report: dict) -> str:
    lines = [
        "# bertrt batch: local workers vs Ray Data actors",
        "",
        f"CPU: **{report['cpu']}** ({report['machine'].get('physical_cores')} physical cores, "
        f"{report['machine'].get('logical_cpus')} logical). Model: {report['model']}. "
        f"Data: {report['data']}; NER with {' '.join(report['options'])}, batch size {report['batch_size']}, "
        f"shards of {report['shard_size']:,} rows. Median of {report['repeats']} interleaved runs (min-max); "
        "every run's output identical to the first.",
        "",
        "| configuration | end-to-end rows/s | steady rows/s | wall s | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for config, s in report["summary"].items():
        lines.append(
            f"| {config} | {_fmt(s['rows_per_s'])} | {_fmt(s['steady_rows_per_s'])} | {_fmt(s['wall_s'], 1)} "
            f"| {_fmt(s['peak_rss_mib'])} |"
        )
    lines += [
        "",
        "`local-WxT`: W processes of T intra-op threads; `ray-AxT`: A actors of T CPUs on a local Ray. "
        "End-to-end includes model load, input scan and worker / Ray start-up; steady is the sum over workers "
        "of rows / seconds inside shards.",
        "",
    ]
    if report["scaling_1_to_2"]:
        lines.append("Scaling from 1 to 2 workers / actors (x1 thread each), median ratios:")
        lines.append("")
        for kind, s in report["scaling_1_to_2"].items():
            lines.append(f"- {kind}: end-to-end x{s['end_to_end']}, steady x{s['steady']}")
        lines.append("")
    if report["ray_overhead"]:
        lines.append("Ray's overhead over the local run of the same shape:")
        lines.append("")
        for config, o in report["ray_overhead"].items():
            lines.append(
                f"- {config}: +{o['wall_s_over_local']} s wall, steady rate x{o['steady_ratio_to_local']} of "
                f"local, +{o['extra_peak_rss_mib']} MiB peak RSS"
            )
        lines.append("")
    if report["per_core_rows_per_s"]:
        lines.append(
            f"Per-core rate (local-1x1 steady): **{report['per_core_rows_per_s']:,.0f} rows/s** of "
            f"{report['tokens_per_row']} tokens on average (special tokens included), i.e. "
            f"**{report['per_core_tokens_per_s']:,} tokens/s per core**."
        )
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
