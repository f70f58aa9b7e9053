"""The repository's benchmark suite: bertrt against PyTorch and Optimum, side by side, interleaved.

``python -m benchmarks.harness [--workloads ...] [--systems ...] [--quick] [--out DIR]`` (a source checkout
with ``bertrt[bench]``; ``make bench``). A user measuring their own bundle runs ``bertrt bench BUNDLE``
(:mod:`bertrt.bench`) instead: no Optimum, no workloads, their texts.

For each workload (:mod:`benchmarks.workloads`) every system (:mod:`benchmarks.systems`) is built once
in this process, warmed up, and then timed in rounds: for each batch size and repeat, each system runs
the same text list once, in a rotating order (A B C, B C A, ...), with a short pause between runs so
one library's spinning threads do not eat the next one's time. A run is a full pass text -> final
result. Batch size 1 is timed call by call, which gives the latency distribution (p50/p95/p99 over
every call of every repeat) and the batch-1 throughput. Figures are medians with the min-max spread.

Outside the rounds: cold start and peak RSS in fresh subprocesses (``python -m benchmarks.systems
probe``; cold start = spawn to first result, on the probe workload, PyTorch and bertrt int8 repeated,
interleaved), model sizes on disk, installed size of the runtime's and the reference's dependency
closures, and int8 GOP/s against the machine's measured int8 GEMM peak (:mod:`benchmarks.hardware`).

Output (``--out``, default ``./bertrt-results``, the folder ``bertrt eval`` writes to by default;
``make bench`` passes ``benchmarks/results``): ``report.json``, ``report.md``,
``throughput.png``, ``latency.png``. Targets are computed from the measurements, marked met/missed,
never tuned; accuracy targets come from ``eval.json`` next to the report when present. The NER target
against Optimum's int8 pipeline uses the fastest Optimum int8 system measured (``optimum-native-int8``,
Optimum's own export + quantizer, or ``optimum-int8``, bertrt's int8 graph in ORTModel), names it, and
quotes the other; both keep their rows in the tables.

Peers (:data:`benchmarks.systems.PEERS`, e.g. ``optimum-intel``) run out of process in a venv of their
own, built on demand; they time their own passes (same texts, batch sizes and rotation), and their answers
on all texts at the largest batch size are compared with the PyTorch reference (or bertrt fp32): entity
agreement, label agreement or cosine. A peer that cannot run gets a row saying why. With a GEMM peak
measurement of this CPU (``benchmarks/results/gemm_peak.json``, :mod:`benchmarks.gemm_peak`) the report
adds each system's fraction of the measured peak of its precision.

Python API: :func:`run_bench` (takes prepared :class:`~benchmarks.workloads.Workload` objects; the smoke
test feeds it a tiny model).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import gemm_peak, hardware, report
from benchmarks.optimum_intel import PeerUnavailable, compare_answers, unavailable_entry
from benchmarks.systems import ALL_SYSTEMS, PEERS, SYSTEMS, RawSession, build_system, physical_threads
from benchmarks.workloads import (
    OPTIMUM_NATIVE,
    TEXT_COUNTS,
    WORKLOADS,
    Workload,
    ensure_optimum_native,
    load_workload,
)
from bertrt.bench.measure import timed_pass
from bertrt.evaluate.report import DEFAULT_OUT

__all__ = ["BATCH_SIZES", "DEFAULT_OUT", "add_arguments", "main", "run", "run_bench"]

log = logging.getLogger("bertrt.benchmarks")

BATCH_SIZES = (1, 8, 32)
#: (full run, --quick): repeats of each timed pass, cold-start probes per repeated system
REPEATS = {"full": {"passes": 3, "cold": 3}, "quick": {"passes": 1, "cold": 1}}
COLD_SYSTEMS = ("pytorch", "bertrt-int8")  # the pair the cold-start target compares, probed repeatedly
PAUSE_S = 0.05
RUNTIME_ROOTS = ["numpy", "tokenizers", "onnxruntime"]
REFERENCE_ROOTS = ["torch", "transformers"]


# -------------------------------------------------------------------------------------- timing


def _summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def _percentiles(samples: list[float]) -> dict:
    import numpy as np

    a = np.asarray(samples, dtype=np.float64) * 1000.0
    return {
        "p50_ms": float(np.percentile(a, 50)),
        "p95_ms": float(np.percentile(a, 95)),
        "p99_ms": float(np.percentile(a, 99)),
        "mean_ms": float(a.mean()),
        "n": int(a.size),
    }


def _timed_pass(system, texts: list[str], batch_size: int, feeds=None) -> tuple[float, list[float]]:
    """Seconds for one pass; at batch size 1 also every call's latency."""
    if hasattr(system, "timed_pass"):  # an out-of-process peer times its own pass
        return system.timed_pass(texts, batch_size)
    if isinstance(system, RawSession):
        if batch_size == 1:  # feeds: one list per text (a long NER text has several windows)
            lat = []
            for text_feeds in feeds:
                start = time.perf_counter()
                system.run(text_feeds)
                lat.append(time.perf_counter() - start)
            return sum(lat), lat
        start = time.perf_counter()
        system.run(feeds)
        return time.perf_counter() - start, []
    return timed_pass(system, texts, batch_size)


def _build_systems(workload: Workload, systems: list[str], threads: int, bar):
    """Each system built once: (built, seconds, unavailable peers with the reason)."""
    built, build_s, unavailable = {}, {}, {}
    for name in systems:
        bar.set_postfix_str(f"{workload.name}: loading {name}")
        start = time.perf_counter()
        try:
            built[name] = build_system(name, workload, threads)
        except PeerUnavailable as exc:
            if name not in PEERS:
                raise
            log.warning("%s: %s is unavailable: %s", workload.name, name, exc)
            unavailable[name] = unavailable_entry(name, exc)
            continue
        build_s[name] = time.perf_counter() - start
    return built, build_s, unavailable


def _peer_answers(workload: Workload, built: dict, batch_size: int) -> dict:
    """Each peer's build info and its answers' agreement with the reference (PyTorch, else bertrt fp32)."""
    peers = [s for s in built if s in PEERS]
    if not peers:
        return {}
    reference = next((s for s in ("pytorch", "bertrt-fp32") if s in built), None)
    ref = built[reference](workload.texts, batch_size) if reference else None
    out = {}
    for name in peers:
        info = {k: v for k, v in built[name].info.items() if k not in ("ok", "ready")}
        if ref is None:
            agreement = {"reference": None, "detail": "no pytorch or bertrt-fp32 system measured to compare"}
        else:
            got = built[name](workload.texts, batch_size)
            agreement = {
                "reference": reference,
                "batch_size": batch_size,
                **compare_answers(workload.task, ref, got),
            }
        out[name] = {"info": info, "agreement": agreement}
    return out


def measure_workload(
    workload: Workload, systems: list[str], batch_sizes, repeats: int, threads: int, bar
) -> dict:
    """Build each system, warm it up, then time interleaved passes; returns the workload's figures."""
    built, build_s, unavailable = _build_systems(workload, systems, threads, bar)
    try:
        result = _measure_built(
            workload, [s for s in systems if s in built], built, build_s, batch_sizes, repeats, threads, bar
        )
        result["peers"] = _peer_answers(workload, built, max(batch_sizes))
    finally:
        for system in built.values():
            if hasattr(system, "close"):
                system.close()
    result["unavailable"] = unavailable
    return result


def _gop_per_pass(workload: Workload, shapes: dict) -> dict | None:
    """GOP of the encoder's matmuls over each batch size's padded batches (from the checkpoint's config)."""
    try:
        config = json.loads((workload.checkpoint / "config.json").read_text(encoding="utf-8"))
        return {str(bs): gemm_peak.batches_gop(config, s, workload.task) for bs, s in shapes.items()}
    except (OSError, ValueError) as exc:
        log.warning("%s: no matmul op count (%s)", workload.name, exc)
        return None


def _measure_built(
    workload: Workload, systems: list[str], built: dict, build_s: dict, batch_sizes, repeats, threads, bar
) -> dict:
    texts = workload.texts
    feeds = {}
    raw = built.get("ort-raw")
    tokens, shapes = {}, {}
    if raw is None:  # the padded-token count for GOP/s comes from bertrt's batch plan
        raw_probe = RawSession(workload, threads)
    else:
        raw_probe = raw
    for bs in batch_sizes:
        planned = [raw_probe.prepare([t], 1) for t in texts] if bs == 1 else raw_probe.prepare(texts, bs)
        flat = [f for group in planned for f in group] if bs == 1 else planned
        tokens[bs] = int(sum(f["input_ids"].size for f in flat))
        shapes[bs] = [f["input_ids"].shape for f in flat]
        if raw is not None:
            feeds[bs] = planned
    # warm-up: every system, every batch size, a few texts
    warm = texts[: min(len(texts), 8)]
    for name, system in built.items():
        bar.set_postfix_str(f"{workload.name}: warm-up {name}")
        for bs in batch_sizes:
            if isinstance(system, RawSession):
                system.run(system.prepare(warm, bs))
            else:
                system(warm, bs)
    seconds: dict[str, dict[int, list[float]]] = {s: {bs: [] for bs in batch_sizes} for s in systems}
    latency: dict[str, list[float]] = {s: [] for s in systems}
    p50_per_repeat: dict[str, list[float]] = {s: [] for s in systems}
    for bs in batch_sizes:
        for rep in range(repeats):
            order = systems[rep % len(systems) :] + systems[: rep % len(systems)]
            for name in order:
                bar.set_postfix_str(f"{workload.name}: {name} bs={bs} #{rep + 1}")
                elapsed, lat = _timed_pass(built[name], texts, bs, feeds.get(bs))
                seconds[name][bs].append(elapsed)
                if lat:
                    latency[name] += lat
                    p50_per_repeat[name].append(statistics.median(lat) * 1000.0)
                bar.update(1)
                time.sleep(PAUSE_S)
    throughput = {
        s: {str(bs): _summary([len(texts) / t for t in seconds[s][bs]]) for bs in batch_sizes}
        for s in systems
    }
    lat = {}
    for s in systems:
        if latency[s]:
            lat[s] = _percentiles(latency[s])
            lat[s]["p50_per_repeat_ms"] = p50_per_repeat[s]
            lat[s]["samples_ms"] = [round(x * 1000.0, 4) for x in latency[s]]
    return {
        "workload": {k: v for k, v in workload.spec().items() if k != "texts"},
        "n_texts": len(texts),
        "mean_chars": sum(map(len, texts)) / max(len(texts), 1),
        "padded_tokens": {str(bs): n for bs, n in tokens.items()},
        "build_s": build_s,
        "throughput": throughput,
        "latency_bs1": lat,
        "sizes": _sizes(workload, systems),
        "gops_per_token": hardware.gops_per_token(workload.bundle / "model.int8.onnx"),
        "gop_per_pass": _gop_per_pass(workload, shapes),
    }


def _sizes(workload: Workload, systems: list[str]) -> dict:
    def size(path: Path) -> int | None:
        return path.stat().st_size if path.is_file() else None

    weights = workload.checkpoint / "model.safetensors"
    if not weights.is_file():
        weights = workload.checkpoint / "pytorch_model.bin"
    sizes = {
        "pytorch_weights_bytes": size(weights),
        "onnx_fp32_bytes": size(workload.bundle / "model.onnx"),
        "onnx_int8_bytes": size(workload.bundle / "model.int8.onnx"),
        "pytorch_weights_file": weights.name,
    }
    if any(s.startswith("optimum-native") for s in systems):  # built by then: this only reads the cache
        folder = ensure_optimum_native(workload.checkpoint, workload.task, root=workload.optimum_root)
        sizes["optimum_native_fp32_bytes"] = size(folder / OPTIMUM_NATIVE["fp32_file"])
        sizes["optimum_native_int8_bytes"] = size(folder / OPTIMUM_NATIVE["int8_file"])
    return sizes


# ------------------------------------------------------------------------------ subprocess probes


def _probe(system: str, workload: Workload, threads: int, full: bool, batch_size: int) -> dict:
    spec = {
        "system": system,
        "workload": workload.spec(),
        "threads": threads,
        "full": full,
        "batch_size": batch_size,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", prefix="bertrt-probe-", delete=False) as fh:
        json.dump(spec, fh)
        path = fh.name
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        start = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.systems", "probe", path],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=False,
        )
    finally:
        os.unlink(path)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BERTRT-PROBE ")), None)
    if proc.returncode != 0 or line is None:
        tail = " | ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"probe of {system} failed (exit {proc.returncode}): {tail}")
    result = json.loads(line.split(" ", 1)[1])
    result["cold_start_s"] = result.pop("first_result_monotonic") - start
    return result


def measure_probes(workload: Workload, systems: list[str], threads: int, cold_repeats: int, bar) -> dict:
    """Cold start (spawn -> first result) and peak RSS (after all texts at batch 32), one process each.

    The systems in :data:`COLD_SYSTEMS` are probed ``cold_repeats`` times, interleaved; peak RSS is taken
    from each system's first probe, which also runs the whole text list."""
    cold: dict[str, list[float]] = {s: [] for s in systems}
    rss: dict[str, float] = {}
    torch_loaded: dict[str, bool] = {}
    repeated = [s for s in COLD_SYSTEMS if s in systems]
    for rep in range(max(cold_repeats, 1)):
        for name in systems if rep == 0 else repeated:
            bar.set_postfix_str(f"probe {name} #{rep + 1}")
            result = _probe(name, workload, threads, full=rep == 0, batch_size=32)
            cold[name].append(result["cold_start_s"])
            if rep == 0:
                rss[name] = result["peak_rss_mb"]
                torch_loaded[name] = result["torch_loaded"]
            bar.update(1)
    return {
        "workload": workload.name,
        "cold_start_s": {s: _summary(v) for s, v in cold.items() if v},
        "peak_rss_mb": rss,
        "torch_loaded": torch_loaded,
        "rss_run": f"all {len(workload.texts)} texts at batch size 32 after the first result",
    }


# --------------------------------------------------------------------------------------- targets

#: the peer pipelines the NER "best peer" target compares against (data; the fastest measured wins)
PEER_PIPELINES = {
    "optimum-native-int8": "Optimum's own export + ORTQuantizer",
    "optimum-int8": "bertrt's model.int8.onnx in ORTModel",
    "optimum-intel": "optimum-intel OVModel, OpenVINO's default precision",
}
#: issue 11: bertrt at least this many times the best peer pipeline
PEER_RATIO = 2.5


def _best_optimum_target(result: dict, checks: list[dict]) -> list[dict]:
    """Rewrite the report's "bertrt int8 / Optimum int8" check against the fastest peer pipeline measured
    (:data:`PEER_PIPELINES`, each system at its own best batch size), naming it and quoting the others."""
    wl = result["workloads"].get(report.TARGET_WORKLOAD) or next(iter(result["workloads"].values()), None)
    if wl is None:
        return checks
    tp = wl["throughput"]
    best = {s: max((float(v["median"]), bs) for bs, v in tp[s].items()) for s in PEER_PIPELINES if tp.get(s)}
    mine = (
        max((float(v["median"]), bs) for bs, v in tp["bertrt-int8"].items())
        if tp.get("bertrt-int8")
        else None
    )
    out = []
    for check in checks:
        if "Optimum int8 pipeline" not in check["target"]:
            out.append(check)
            continue
        name = f"{wl['workload']['name']}: bertrt int8 / best peer pipeline (texts/s, best batch each)"
        if not best or mine is None:
            out.append({**check, "target": name, "limit": PEER_RATIO})
            continue
        winner = max(best, key=lambda s: best[s][0])
        quoted = "; ".join(
            f"`{s}` ({PEER_PIPELINES[s]}) {v[0]:.1f}/s at bs {v[1]}"
            for s, v in sorted(best.items(), key=lambda kv: -kv[1][0])
        )
        ratio = mine[0] / best[winner][0]
        out.append(
            {
                "target": name,
                "value": round(ratio, 4),
                "limit": PEER_RATIO,
                "op": ">=",
                "met": bool(ratio >= PEER_RATIO),
                "against": winner,
                "detail": f"against `{winner}`, the fastest peer pipeline measured: {quoted}; "
                f"bertrt int8 {mine[0]:.1f}/s at bs {mine[1]}",
            }
        )
    return out


# ---------------------------------------------------------------------------------------- driver


def run_bench(
    workloads: list[Workload],
    out_dir: Path,
    *,
    systems: list[str] | None = None,
    batch_sizes=BATCH_SIZES,
    quick: bool = False,
    threads: int | None = None,
    probe_workload: str | None = None,
    eval_json: Path | None = None,
    progress: bool = True,
    probe_systems: list[str] | None = None,
    gemm_peak_json: Path | None = None,
) -> dict:
    """Measure ``workloads`` and write report.json / report.md / throughput.png / latency.png to ``out_dir``.

    ``systems``: default the in-process :data:`SYSTEMS`; peers (:data:`PEERS`) run only when named.
    ``probe_systems``: the systems given a cold-start / peak-RSS subprocess (default: all in-process ones;
    [] for none; peers are never probed: their worker is not the probe's process).
    ``gemm_peak_json``: the GEMM peak measurement (default ``benchmarks/results/gemm_peak.json``; used
    only when it exists and was measured on this CPU)."""
    from tqdm import tqdm

    started = time.perf_counter()
    systems = list(systems or SYSTEMS)
    unknown = [s for s in systems if s not in ALL_SYSTEMS]
    if unknown:
        raise ValueError(f"unknown system(s) {unknown}; expected {', '.join(ALL_SYSTEMS)}")
    threads = threads or physical_threads()
    counts = REPEATS["quick" if quick else "full"]
    probe_on = next((w for w in workloads if w.name == probe_workload), workloads[0]) if workloads else None
    probe_systems = [s for s in systems if s not in PEERS and (probe_systems is None or s in probe_systems)]
    if not probe_systems:
        probe_on = None
    n_cold = len(probe_systems) + (counts["cold"] - 1) * len([s for s in COLD_SYSTEMS if s in probe_systems])
    total = (
        len(workloads) * len(systems) * len(batch_sizes) * counts["passes"] + (n_cold if probe_on else 0) + 1
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    result: dict = {
        "machine": hardware.machine_info(),
        "threads": threads,
        "systems": {s: ALL_SYSTEMS[s] for s in systems},
        "batch_sizes": list(batch_sizes),
        "repeats": counts["passes"],
        "quick": quick,
        "interleaving": "rotating system order per repeat, each pass over the same texts",
        "workloads": {},
    }
    with tqdm(
        total=total, desc="benchmarks.harness", unit="run", file=sys.stderr, disable=not progress
    ) as bar:
        bar.set_postfix_str("int8 peak")
        result["int8_peak"] = hardware.measure_int8_peak(threads, **({"m": 256, "runs": 2} if quick else {}))
        bar.update(1)
        for workload in workloads:
            result["workloads"][workload.name] = measure_workload(
                workload, systems, batch_sizes, counts["passes"], threads, bar
            )
        if probe_on is not None:
            result["probes"] = measure_probes(probe_on, probe_systems, threads, counts["cold"], bar)
    result["installed"] = {
        "runtime": hardware.installed_size(RUNTIME_ROOTS),
        "reference": hardware.installed_size(REFERENCE_ROOTS),
    }
    eval_path = eval_json if eval_json is not None else out_dir / "eval.json"
    if eval_path.is_file():
        try:
            result["eval"] = json.loads(eval_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            log.warning("ignoring unreadable %s: %s", eval_path, exc)
    peaks = gemm_peak.load_peaks(gemm_peak_json, cpu=result["machine"].get("cpu"))
    if peaks is not None:
        result["gemm_peak"] = peaks
    result["targets"] = _best_optimum_target(result, report.targets(result))
    result["total_s"] = time.perf_counter() - started
    report.write(result, out_dir)
    return result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument(
        "--systems",
        default=",".join(ALL_SYSTEMS),
        help=f"comma-separated subset of {', '.join(ALL_SYSTEMS)} (default: all; peers such as "
        "optimum-intel run in a venv of their own, built on first use under the benchmark cache)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny text counts and one repeat (a smoke run)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"results folder (default ./{DEFAULT_OUT})"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads for every system (default: physical cores)",
    )
    parser.add_argument(
        "--texts",
        type=int,
        default=None,
        help="texts per workload (default: the per-workload counts of benchmarks/workloads.py)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    bad = [n for n in names if n not in WORKLOADS] + [s for s in systems if s not in ALL_SYSTEMS]
    if bad or not names or not systems:
        print(
            f"benchmarks.harness: unknown or empty workload/system: {', '.join(bad) or '(none given)'}; workloads: "
            f"{', '.join(WORKLOADS)}; systems: {', '.join(ALL_SYSTEMS)}",
            file=sys.stderr,
        )
        return 2
    if (args.threads is not None and args.threads <= 0) or (args.texts is not None and args.texts <= 0):
        print("benchmarks.harness: --threads and --texts must be positive ints", file=sys.stderr)
        return 2
    workloads = []
    for name in names:
        n = TEXT_COUNTS[name][1 if args.quick else 0]
        n = args.texts or n
        workloads.append(load_workload(name, n))
    result = run_bench(
        workloads,
        args.out,
        systems=systems,
        quick=args.quick,
        threads=args.threads,
        progress=not args.no_progress,
    )
    print(report.render_markdown(result))
    print(
        f"wrote {args.out}/report.json, report.md, throughput.png, latency.png in {result['total_s']:.0f} s",
        file=sys.stderr,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.harness``: parse, run, exit code (2: a usage error)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=__doc__.split("\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress at INFO level")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s"
    )
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
