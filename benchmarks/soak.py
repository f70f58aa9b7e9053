"""Soak test of ``bertrt serve``: a bounded run at concurrency 32 on loopback, RSS and p99 over time.

One ``bertrt serve`` subprocess (the NER bundle of :mod:`benchmarks.loadgen`, int8) takes a closed-loop
load of ``--concurrency`` keep-alive clients (loadgen's minimal HTTP/1.1 client) for ``--minutes``,
WNUT-16 tweets with ``aggregation_strategy="first"``. Alongside, a fault client opens a connection every
``--chaos-interval`` seconds, sends a request and hangs up before the answer (its work must be dropped,
not leak). Every ``--interval`` seconds a sample records the server's RSS (psutil), and the window's
throughput, p50/p99 and errors; at the end the server's /metrics give the disconnects counted, the
queue depth and the requests in flight (both must be 0).

Outputs ``benchmarks/results/soak.json`` (every sample, the verdicts) and ``soak.png`` (RSS and p99
against time). The verdict ``rss_growth_mb`` compares the median RSS of the last fifth of the run with
that of the second fifth (the first is warm-up: arenas and caches fill). Usage::

    python -m benchmarks.soak [--minutes 10] [--concurrency 32] [--interval 10] [--threads 1]
        [--max-batch-tokens 16384]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import loadgen

__all__ = ["main"]

log = logging.getLogger("bertrt.benchmarks")


async def _client(port: int, bodies: list[bytes], offset: int, stop: float, samples: list, errors: dict):
    """Closed loop until ``stop``: (finish time, latency s, status) appended per request."""
    reader = writer = None
    index = offset
    while time.perf_counter() < stop:
        payload = loadgen._request("POST", "/models/ner/predict", port, bodies[index % len(bodies)])
        index += 7
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            await writer.drain()
            status, _, close = await loadgen._read_response(reader)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)
            continue
        done = time.perf_counter()
        samples.append((done, done - started, status))
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def _chaos(port: int, body: bytes, stop: float, every: float, counts: dict):
    """Every ``every`` seconds: a request whose client hangs up before the answer."""
    while time.perf_counter() < stop:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(loadgen._request("POST", "/models/ner/predict", port, body))
            await writer.drain()
            await asyncio.sleep(0.001)
            writer.close()
            counts["hung_up"] += 1
        except OSError:
            counts["failed"] += 1
        await asyncio.sleep(every)


async def _sampler(
    proc, started: float, stop: float, interval: float, samples: list, rows: list, errors: dict
):
    import psutil

    process = psutil.Process(proc.pid)
    seen = 0
    while time.perf_counter() < stop:
        await asyncio.sleep(min(interval, max(0.0, stop - time.perf_counter())))
        now = time.perf_counter()
        window = samples[seen:]
        seen = len(samples)
        ok = np.array([lat for _, lat, status in window if status == 200]) * 1000.0
        rows.append(
            {
                "t_s": round(now - started, 1),
                "rss_mb": round(process.memory_info().rss / 2**20, 1),
                "requests": len(window),
                "ok": int(ok.size),
                "non_200": len(window) - int(ok.size),
                "throughput_rps": round(ok.size / interval, 1),
                "p50_ms": round(float(np.percentile(ok, 50)), 2) if ok.size else None,
                "p99_ms": round(float(np.percentile(ok, 99)), 2) if ok.size else None,
                "client_errors": dict(errors),
            }
        )
        log.warning(
            "t=%6.0fs rss %7.1f MB  %6.1f req/s  p99 %s ms",
            rows[-1]["t_s"],
            rows[-1]["rss_mb"],
            rows[-1]["throughput_rps"],
            rows[-1]["p99_ms"],
        )


async def _soak(server, texts, args) -> dict:
    bodies = [json.dumps({"inputs": t, "parameters": loadgen.PARAMETERS}).encode() for t in texts]
    samples: list = []
    rows: list = []
    errors: dict = {}
    counts = {"hung_up": 0, "failed": 0}
    started = time.perf_counter()
    stop = started + args.minutes * 60
    tasks = [_client(server.port, bodies, i * 97, stop, samples, errors) for i in range(args.concurrency)]
    tasks.append(_sampler(server.proc, started, stop, args.interval, samples, rows, errors))
    if args.chaos_interval > 0:
        tasks.append(_chaos(server.port, bodies[0], stop, args.chaos_interval, counts))
    await asyncio.gather(*tasks)
    latencies = np.array([lat for _, lat, status in samples if status == 200]) * 1000.0
    return {"rows": rows, "latencies": latencies, "errors": errors, "chaos": counts, "samples": len(samples)}


def _metrics(port: int) -> dict[str, float]:
    status, body = asyncio.run(loadgen._get("127.0.0.1", port, "/metrics"))
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values


def _verdicts(rows: list[dict], metrics: dict[str, float], chaos: dict) -> dict:
    rss = [r["rss_mb"] for r in rows]
    fifth = max(1, len(rss) // 5)
    early, late = rss[fifth : 2 * fifth] or rss[:1], rss[-fifth:]
    p99 = [r["p99_ms"] for r in rows if r["p99_ms"] is not None]
    gone = sum(v for k, v in metrics.items() if k.startswith("bertrt_disconnects_total"))
    return {
        "rss_growth_mb": round(float(np.median(late) - np.median(early)), 1) if rss else None,
        "rss_max_mb": max(rss) if rss else None,
        "p99_first_window_ms": p99[1] if len(p99) > 1 else (p99[0] if p99 else None),
        "p99_last_window_ms": p99[-1] if p99 else None,
        "p99_max_window_ms": max(p99) if p99 else None,
        "disconnects_counted": gone,
        "hung_up_clients": chaos["hung_up"],
        "queue_depth_at_end": metrics.get('bertrt_queue_depth{model="ner"}'),
        "in_flight_at_end": metrics.get('bertrt_requests_in_flight{model="ner"}'),
    }


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    t = [r["t_s"] / 60 for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    top.plot(t, [r["rss_mb"] for r in rows], color="tab:blue")
    top.set_ylabel("server RSS (MB)")
    top.set_title(
        f"bertrt serve soak: concurrency {report['concurrency']}, {report['minutes']:g} min, "
        f"max_batch_tokens={report['max_batch_tokens']}"
    )
    top.grid(alpha=0.3)
    bottom.plot(t, [r["p99_ms"] for r in rows], color="tab:red", label="p99")
    bottom.plot(t, [r["p50_ms"] for r in rows], color="tab:gray", label="p50")
    bottom.set_ylabel(f"latency per {report['interval_s']:g} s window (ms)")
    bottom.set_xlabel("minutes")
    bottom.legend()
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (default 32)")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds per sample (default 10)")
    parser.add_argument("--threads", type=int, default=1, help="the server's inference threads (default 1)")
    parser.add_argument(
        "--max-batch-tokens", type=int, default=16384, help="the server's token budget (default 16384)"
    )
    parser.add_argument(
        "--chaos-interval",
        type=float,
        default=1.0,
        help="seconds between clients that hang up mid-request (default 1; 0: none)",
    )
    parser.add_argument("--out", type=Path, default=loadgen.RESULTS)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.concurrency <= 0 or args.interval <= 0:
        parser.error("--minutes, --concurrency and --interval must be > 0")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    description, _, bundle = loadgen.resolve_model()
    texts = loadgen.tweets()
    server = loadgen.Server(
        loadgen.bertrt_serve_cmd(bundle, args.threads, args.max_batch_tokens), "bertrt serve"
    )
    try:
        asyncio.run(loadgen.run_level(server.port, texts[::-1], 8, 60, 30.0))  # warm-up, not measured
        result = asyncio.run(_soak(server, texts, args))
        time.sleep(0.5)  # the last hung-up requests are dropped
        metrics = _metrics(server.port)
        status, _ = asyncio.run(loadgen._get("127.0.0.1", server.port, "/health"))
    finally:
        server.stop()
    lat = result["latencies"]
    report = {
        "model": description,
        "bundle": str(bundle),
        "precision": "int8",
        "minutes": args.minutes,
        "concurrency": args.concurrency,
        "interval_s": args.interval,
        "threads": args.threads,
        "max_batch_tokens": args.max_batch_tokens,
        "chaos_interval_s": args.chaos_interval,
        "requests": result["samples"],
        "ok": int(lat.size),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "client_errors": result["errors"],
        "health_at_end": status,
        "verdicts": _verdicts(result["rows"], metrics, result["chaos"]),
        "rows": result["rows"],
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "load_average": load_at_start,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(report, args.out / "soak.png")
    print(json.dumps({k: report[k] for k in ("requests", "ok", "p50_ms", "p99_ms", "verdicts")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
