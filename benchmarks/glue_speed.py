"""bert-base at 128 tokens: bertrt's per-token int8 graph before / after the glue work vs Optimum's int8.

    python -m benchmarks.glue_speed [--batches 8,32] [--repeats 5] [--profile-runs 6] [--variants]
                                    [--openvino] [--cpu-time]

A bert-base-sized random sequence classifier (12 x 768, 12 heads, FFN 3072; LayerNorm weights and biases
drawn at random too, so that the exporter's weight deduplication does not make every LayerNorm share one
gamma as the default initialisation would) is built once under ``<cache>/glue-speed`` and exported once
with the exporter of this checkout (int8 gates off: a random head). The systems, raw onnxruntime sessions
with 2 intra-op threads on random ids of 128 tokens:

- ``per-token before``: the fp32 graph quantized as before issue 20 item 5 (packed QKV MatMul + Split +
  ``MultiHeadAttention``: ``unfuse_attention(form="mha")``; Abs + ReduceMax: ``row_max="abs"``);
- ``per-token after``: the bundle's ``model.int8.onnx`` (Q/K/V MatMuls, attention in standard ops, the
  row's max|x| from ReduceMax and ReduceMin);
- ``optimum int8``: Optimum's own ``ORTQuantizer`` avx512_vnni dynamic int8 (per-tensor activations) of
  Optimum's export (:func:`benchmarks.workloads.ensure_optimum_native`), default session options;
- with ``--variants``, graphs that lost (docs/speed.md section 6), rebuilt from the after graph by
  :mod:`benchmarks.glue_variants`;
- with ``--openvino``, ``openvino per-token``: the same per-token rewrite applied to the fp32 graph
  without onnxruntime's embedding quantization (OpenVINO has no QEmbedLayerNormalization) and read by
  OpenVINO's ONNX frontend, CPU plugin, ``INFERENCE_PRECISION_HINT=f32``, 2 threads.

Throughput: ``--repeats`` interleaved rounds (rotating order), texts/s median (min-max) per batch size.
Profile: onnxruntime's profiler over ``--profile-runs`` runs of one batch of 8; each node's time is its
minimum over the runs (the cores are shared: the minimum filters the runs where a thread was
descheduled), summed by op type. Parity: max |logit difference| against ``per-token before`` and a padded
row alone vs in its batch of 4 (batch invariance).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks import data as bdata

__all__ = ["build_checkpoint", "build_graphs", "main", "node_profile"]

THREADS = 2
LENGTH = 128
VOCAB = 30522


def cache() -> Path:
    return bdata.cache_root() / "glue-speed"


def build_checkpoint(out: Path) -> Path:
    """The random bert-base classifier (seeded; LayerNorm gamma ~ 1 + N(0, 0.1), biases ~ N(0, 0.02))."""
    if (out / "model.safetensors").is_file():
        return out
    import torch
    import transformers

    from benchmarks.workloads import minilm_dir

    torch.manual_seed(0)
    config = transformers.BertConfig(
        num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1}
    )
    model = transformers.BertForSequenceClassification(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn_like(p))
    model.save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(minilm_dir(), model_max_length=LENGTH).save_pretrained(out)
    return out


def _before(bundle: Path, out: Path) -> Path:
    """The per-token graph as the exporter wrote it before: packed QKV + Split + MultiHeadAttention."""
    import onnx

    from bertrt.export import quantize
    from bertrt.export.per_token import rewrite_matmuls, unfuse_attention

    if out.is_file():
        return out
    with tempfile.TemporaryDirectory(prefix="bertrt-glue-") as tmp:
        stage = Path(tmp) / "stage.onnx"
        # the per-token recipe's own first step (embeddings weight-only), as quantize_graph runs it
        quantize._quantize_dynamic(
            bundle / "model.onnx", stage, ["EmbedLayerNormalization", "Gather"], True, False
        )
        model = onnx.load(str(stage))
        unfuse_attention(model, form="mha")
        rewrite_matmuls(model, row_max="abs")
        onnx.save(model, str(out))
    return out


def _openvino_graph(bundle: Path, out: Path) -> Path:
    import onnx

    from bertrt.export.per_token import rewrite_matmuls, unfuse_attention

    if not out.is_file():
        model = onnx.load(str(bundle / "model.onnx"))
        unfuse_attention(model)
        rewrite_matmuls(model)
        onnx.save(model, str(out))
    return out


def build_graphs(variants: bool = False, openvino: bool = False) -> dict[str, Path]:
    from benchmarks.workloads import _exporter_digest, ensure_optimum_native
    from bertrt.export import export_model

    root = cache()
    checkpoint = build_checkpoint(root / "bert-base-random")
    bundle = root / f"bundle-{_exporter_digest()}"
    if not (bundle / "bundle.json").is_file():
        export_model(
            str(checkpoint),
            str(bundle),
            task="text-classification",
            quantize="int8",
            force=True,
            int8_gates={},
        )
    graphs = {
        "per-token before": _before(bundle, bundle / "model.int8.before.onnx"),
        "per-token after": bundle / "model.int8.onnx",
    }
    if variants:
        from benchmarks import glue_variants

        graphs.update(glue_variants.build(bundle / "model.int8.onnx", bundle))
    if openvino:
        graphs["openvino per-token"] = _openvino_graph(bundle, bundle / "model.int8.openvino.onnx")
    optimum = ensure_optimum_native(checkpoint, "text-classification", root=root / "optimum")
    graphs["optimum int8"] = optimum / "model_quantized.onnx"
    return graphs


def _options(label: str, spinning: bool | None = None):
    import onnxruntime as ort

    from bertrt.session import session_options

    if label.startswith("optimum"):  # what ORTModel gives it: onnxruntime's defaults, all optimizations
        options = ort.SessionOptions()
        options.intra_op_num_threads = THREADS
        if spinning is not None:
            options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        return options, []
    from bertrt.session import DISABLED_OPTIMIZERS

    return session_options(THREADS, spinning=spinning), DISABLED_OPTIMIZERS


def _session(label: str, path: Path, profile_dir: str | None = None, spinning: bool | None = None):
    import onnxruntime as ort

    if label.startswith("openvino"):
        import openvino

        compiled = openvino.Core().compile_model(
            str(path), "CPU", {"INFERENCE_NUM_THREADS": THREADS, "INFERENCE_PRECISION_HINT": "f32"}
        )
        names = {i.get_any_name() for i in compiled.inputs}
        return None, lambda feed: compiled({k: v for k, v in feed.items() if k in names})[compiled.outputs[0]]

    options, disabled = _options(label, spinning)
    if profile_dir:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / "profile")
    session = ort.InferenceSession(
        str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=disabled
    )
    names = {i.name for i in session.get_inputs()}
    return session, lambda feed: session.run(None, {k: v for k, v in feed.items() if k in names})[0]


def _feed(batch: int, seed: int = 0, pad: bool = False) -> dict:
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, VOCAB, (batch, LENGTH)).astype(np.int64)
    mask = np.ones_like(ids)
    if pad:
        mask[1, LENGTH // 2 :] = 0
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}


def node_profile(label: str, path: Path, feed: dict, runs: int) -> dict:
    """{"run_ms", "node_ms", "ops": [(op, ms, share, nodes)]}: per-node minimum over ``runs`` runs."""
    with tempfile.TemporaryDirectory(prefix="bertrt-glue-profile-") as tmp:
        session, run = _session(label, path, tmp)
        for _ in range(runs + 1):
            run(feed)
        events = json.loads(Path(session.end_profiling()).read_text(encoding="utf-8"))
    spans = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"][1:]
    times: dict[str, list] = defaultdict(list)
    op_of = {}
    for span in spans:
        lo, hi = span["ts"], span["ts"] + span["dur"]
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and lo <= e["ts"] <= hi:
                times[e["name"]].append(e["dur"])
                op_of[e["name"]] = e["args"]["op_name"]
    by_op: dict[str, float] = defaultdict(float)
    count: dict[str, int] = defaultdict(int)
    for name, durations in times.items():
        by_op[op_of[name]] += min(durations) / 1000.0
        count[op_of[name]] += 1
    total = sum(by_op.values())
    ops = [(op, ms, ms / total, count[op]) for op, ms in sorted(by_op.items(), key=lambda kv: -kv[1])]
    return {"run_ms": statistics.median(s["dur"] for s in spans) / 1000.0, "node_ms": total, "ops": ops}


def _cpu_time(graphs: dict, args) -> None:
    """CPU ms per text (``time.process_time``; spinning off, so idle pool threads burn nothing): the
    work each graph costs, which a busy machine inflates far less than the wall time."""
    runs = {
        label: _session(label, path, spinning=False)[1]
        for label, path in graphs.items()
        if not label.startswith("openvino")
    }
    labels = list(runs)
    for batch in (int(b) for b in args.batches.split(",")):
        feed = _feed(batch)
        for run in runs.values():
            run(feed)
        cpu: dict[str, list] = {label: [] for label in labels}
        for rep in range(args.repeats):
            for label in labels[rep % len(labels) :] + labels[: rep % len(labels)]:
                t0 = time.process_time()
                runs[label](feed)
                cpu[label].append(1000.0 * (time.process_time() - t0) / batch)
        base = statistics.median(cpu["optimum int8"])
        print(f"\nCPU ms per text, spinning off, batch {batch} x {LENGTH} (load {os.getloadavg()[0]:.2f})")
        print("| system | CPU ms / text | optimum / system |\n|---|---:|---:|")
        for label in labels:
            print(f"| {label} | {_fmt(cpu[label])} | {base / statistics.median(cpu[label]):.3f}x |")


def _fmt(values) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.glue_speed", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--batches", default="8,32")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile-runs", type=int, default=6, help="0: no profile")
    parser.add_argument("--variants", action="store_true", help="also the variants that lost")
    parser.add_argument("--openvino", action="store_true", help="also OpenVINO on the per-token graph")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="also the process CPU time per text with intra-op spinning off (robust to other processes)",
    )
    args = parser.parse_args(argv)
    graphs = build_graphs(args.variants, args.openvino)
    runs = {label: _session(label, path)[1] for label, path in graphs.items()}
    print(f"load {os.getloadavg()}, {THREADS} threads, {LENGTH} tokens, {args.repeats} interleaved rounds")
    padded = _feed(4, seed=7, pad=True)
    n = int(padded["attention_mask"][1].sum())
    reference = runs["per-token before"](padded)
    print("\n| system | max abs logit diff vs before | padded row alone vs in batch of 4 |\n|---|---:|---:|")
    for label, run in runs.items():
        got = run(padded)
        alone = run({k: v[1:2, :n] for k, v in padded.items()})[0]
        print(f"| {label} | {np.abs(got - reference).max():.2e} | {np.abs(alone - got[1]).max():.2e} |")
    labels = list(runs)
    for batch in (int(b) for b in args.batches.split(",")):
        feed = _feed(batch)
        for run in runs.values():
            run(feed)
        tput: dict[str, list] = {label: [] for label in labels}
        for rep in range(args.repeats):
            for label in labels[rep % len(labels) :] + labels[: rep % len(labels)]:
                t0 = time.perf_counter()
                runs[label](feed)
                tput[label].append(batch / (time.perf_counter() - t0))
        base = statistics.median(tput["optimum int8"])
        print(f"\nbatch {batch} x {LENGTH} (load {' '.join(f'{x:.2f}' for x in os.getloadavg())})")
        print("| system | texts/s | vs optimum int8 |\n|---|---:|---:|")
        for label in labels:
            print(f"| {label} | {_fmt(tput[label])} | {statistics.median(tput[label]) / base:.3f}x |")
    if args.cpu_time:
        _cpu_time(graphs, args)
    if args.profile_runs:
        feed = _feed(8)
        print(f"\nprofile, batch 8 x {LENGTH}: per-node minimum over {args.profile_runs} runs, by op type")
        for label, path in graphs.items():
            if label.startswith("openvino"):
                continue
            prof = node_profile(label, path, feed, args.profile_runs)
            top = ", ".join(
                f"{op} {share:.1%} ({ms:.1f} ms, {k})" for op, ms, share, k in prof["ops"] if share >= 0.005
            )
            print(
                f"\n{label}: run {prof['run_ms']:.0f} ms (median), node sum {prof['node_ms']:.0f} ms; {top}"
            )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
