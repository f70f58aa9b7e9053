"""Graph-level speed decisions of the exporter, measured: which kernels the fp32 and int8 graphs use.

Two parts, on this machine (named in the report):

1. **Operator micro-benchmark**: onnxruntime's fused ``SkipLayerNormalization`` vs the standard
   ``Add`` + ``Add`` (bias) + ``LayerNormalization`` it is split into (export/optimize.py), at the shapes
   of a MiniLM batch (32 x 31 x 384) and a base-size one (8 x 128 x 768); medians of 5 x 50 calls.
2. **Graph variants** of the ``ner`` workload's model, built here from its checkpoint: the ONNX export,
   onnxruntime's transformer optimizer with SkipLayerNormalization kept fused or split, and for each the
   per-token int8 rewrite (export/per_token.py); plus onnxruntime's ``MatMulNBits`` (8-bit weights, int8
   compute: activations quantized per row per block inside the kernel, ``accuracy_level=4``) at blocks
   32 and 128, a candidate one-kernel per-token recipe (needs ``onnx_ir``; reported as skipped without).
   Every variant runs the same length-sorted, padded batches of WNUT-16 sentences (raw sessions, no
   tokenization), passes interleaved, medians with min-max; batch invariance is the largest difference
   of each sentence's logits between batch 1 and its batch of 32, and accuracy is the argmax agreement
   with the fused fp32 graph.

    python -m benchmarks.kernels [--texts 600] [--repeats 5] [--no-write]

writes benchmarks/results/kernels.json and kernels.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.backends import _batches, add_arguments, publish
from benchmarks.hardware import machine_info
from benchmarks.workloads import load_workload
from bertrt.pipelines import pipeline
from bertrt.session import DISABLED_OPTIMIZERS, physical_cores

__all__ = ["layernorm_ops", "main"]

log = logging.getLogger("bertrt.kernels_bench")


def _op_model(kind: str, d: int) -> bytes:
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.uniform(0.5, 1.5, d).astype(np.float32), "gamma"),
        numpy_helper.from_array(rng.standard_normal(d).astype(np.float32), "beta"),
        numpy_helper.from_array(rng.standard_normal(d).astype(np.float32), "bias"),
    ]
    if kind == "fused":
        nodes = [
            helper.make_node(
                "SkipLayerNormalization",
                ["x", "skip", "gamma", "beta", "bias"],
                ["y"],
                domain="com.microsoft",
                epsilon=1e-12,
            )
        ]
    else:
        nodes = [
            helper.make_node("Add", ["x", "skip"], ["xs"]),
            helper.make_node("Add", ["xs", "bias"], ["sum"]),
            helper.make_node("LayerNormalization", ["sum", "gamma", "beta"], ["y"], axis=-1, epsilon=1e-12),
        ]
    graph = helper.make_graph(
        nodes,
        kind,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", "S", d]) for n in ("x", "skip")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["B", "S", d])],
        inits,
    )
    opsets = [helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets).SerializeToString()


def layernorm_ops(threads: int, shapes=((32, 31, 384), (8, 128, 768)), calls: int = 50, repeats: int = 5):
    """Rows: shape, µs per call of the fused op and of the split form (median, min, max), max |diff|."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    rows = []
    for shape in shapes:
        rng = np.random.default_rng(1)
        feeds = {n: (rng.standard_normal(shape) * 3).astype(np.float32) for n in ("x", "skip")}
        sessions = {
            kind: ort.InferenceSession(
                _op_model(kind, shape[-1]),
                options,
                ["CPUExecutionProvider"],
                disabled_optimizers=DISABLED_OPTIMIZERS,
            )
            for kind in ("fused", "split")
        }
        outs = {kind: s.run(None, feeds)[0] for kind, s in sessions.items()}
        times: dict[str, list[float]] = {kind: [] for kind in sessions}
        for _ in range(repeats):
            for kind, s in sessions.items():
                start = time.perf_counter()
                for _ in range(calls):
                    s.run(None, feeds)
                times[kind].append((time.perf_counter() - start) / calls * 1e6)
        row = {"shape": list(shape), "max_abs_diff": float(np.abs(outs["fused"] - outs["split"]).max())}
        for kind, values in times.items():
            row[kind] = {
                "us": round(statistics.median(values), 1),
                "min": round(min(values), 1),
                "max": round(max(values), 1),
            }
        row["speedup"] = round(row["fused"]["us"] / row["split"]["us"], 2)
        rows.append(row)
    return rows


def _variants(work, folder: Path) -> tuple[dict[str, Path], dict[str, str]]:
    """name -> graph path, name -> why skipped."""
    import onnx

    from bertrt.architectures import get_architecture
    from bertrt.export import convert, optimize
    from bertrt.export.quantize import quantize_graph

    config = json.loads((Path(work.checkpoint) / "config.json").read_text())
    row = get_architecture(config["model_type"])
    model = convert.load_model(Path(work.checkpoint), work.task, row.attn_implementation)
    raw = convert.export_onnx(model, work.task, folder / "raw")
    dims = optimize.model_dims(model.config)
    paths, skipped = {}, {}
    for mode in optimize.SKIP_LAYERNORM_MODES:
        fp32 = folder / f"fp32-{mode}.onnx"
        optimize.optimize_graph(raw, fp32, config["model_type"], dims, skip_layernorm=mode)
        paths[f"fp32, SkipLayerNorm {mode}"] = fp32
        int8 = folder / f"int8-{mode}.onnx"
        quantize_graph(fp32, int8)
        paths[f"int8 per-token, SkipLayerNorm {mode}"] = int8
    try:
        from onnxruntime.quantization.matmul_nbits_quantizer import (
            DefaultWeightOnlyQuantConfig,
            MatMulNBitsQuantizer,
        )

        from bertrt.export.per_token import unfuse_attention
    except ImportError as exc:
        skipped["MatMulNBits 8-bit"] = f"onnxruntime's MatMulNBits quantizer cannot be imported ({exc})"
    else:
        for block in (32, 128):
            graph = onnx.load(str(folder / "fp32-split.onnx"))
            unfuse_attention(graph)
            config_q = DefaultWeightOnlyQuantConfig(
                block_size=block, is_symmetric=True, accuracy_level=4, bits=8
            )
            quantizer = MatMulNBitsQuantizer(graph, algo_config=config_q)
            quantizer.process()
            out = folder / f"nbits8-b{block}.onnx"
            onnx.save(quantizer.model.model, str(out))
            paths[f"MatMulNBits 8-bit, block {block}, int8 compute"] = out
    return paths, skipped


def graph_variants(work, batch_size: int, repeats: int, threads: int) -> tuple[list[dict], dict]:
    import onnxruntime as ort

    pipe = pipeline(work.task, work.bundle, precision="fp32", backend="onnxruntime")
    batches = _batches(pipe, work.texts, batch_size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_mem_pattern = False
    with tempfile.TemporaryDirectory(prefix="bertrt-kernels-") as tmp:
        paths, skipped = _variants(work, Path(tmp))
        sessions = {
            name: ort.InferenceSession(
                str(p), options, ["CPUExecutionProvider"], disabled_optimizers=DISABLED_OPTIMIZERS
            )
            for name, p in paths.items()
        }
    names = {name: {i.name for i in s.get_inputs()} for name, s in sessions.items()}

    def run(name, batch):
        return sessions[name].run(None, {k: v for k, v in batch.items() if k in names[name]})[0]

    outputs = {name: [run(name, b) for b in batches] for name in sessions}  # also the warm-up pass
    reference = outputs["fp32, SkipLayerNorm fused"]
    rates: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(repeats):
        for name in sessions:
            start = time.perf_counter()
            for batch in batches:
                run(name, batch)
            rates[name].append(len(work.texts) / (time.perf_counter() - start))
    rows = []
    for name in sessions:
        agree, total, invariance = 0, 0, 0.0
        for batch, out, ref in zip(batches, outputs[name], reference):
            mask = batch["attention_mask"].astype(bool)
            agree += int((out.argmax(-1) == ref.argmax(-1))[mask].sum())
            total += int(mask.sum())
        for batch, out in list(zip(batches, outputs[name]))[:: max(1, len(batches) // 4)]:
            width = int(batch["attention_mask"][0].sum())
            one = run(name, {k: v[:1, :width] for k, v in batch.items()})
            invariance = max(invariance, float(np.abs(one[0] - out[0, :width]).max()))
        values = rates[name]
        rows.append(
            {
                "graph": name,
                "sents_per_s": round(statistics.median(values), 1),
                "min": round(min(values), 1),
                "max": round(max(values), 1),
                "token_argmax_agreement_vs_fp32": round(100 * agree / total, 2),
                "batch1_vs_batch_max_abs_diff": invariance,
            }
        )
    return rows, skipped


def render(result: dict) -> str:
    m = result["machine"]
    lines = [
        f"Machine: {m.get('cpu')}, {m.get('physical_cores')} cores ({', '.join(m.get('cpu_flags') or [])}); "
        f"onnxruntime {result['onnxruntime']}; {result['threads']} threads.",
        "",
        "SkipLayerNormalization (fused contrib op) vs Add + Add + LayerNormalization, µs per call, median of "
        f"{result['repeats']} x 50 calls (min-max):",
        "",
        "| shape | fused | split | speed-up | max abs diff |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {' x '.join(map(str, r['shape']))} | {r['fused']['us']:.0f} ({r['fused']['min']:.0f}-"
            f"{r['fused']['max']:.0f}) | {r['split']['us']:.0f} ({r['split']['min']:.0f}-{r['split']['max']:.0f})"
            f" | {r['speedup']:.2f}x | {r['max_abs_diff']:.1e} |"
            for r in result["ops"]
        ),
        "",
        f"Graph variants of {result['model']}; {result['data']}; {result['texts']} sentences, "
        f"length-sorted batches of {result['batch_size']}, raw sessions, median of {result['repeats']} "
        "interleaved passes:",
        "",
        "| graph | sents/s (min-max) | token argmax agreement vs fp32 fused | batch 1 vs batch max abs diff |",
        "|---|---:|---:|---:|",
        *(
            f"| {r['graph']} | {r['sents_per_s']:.0f} ({r['min']:.0f}-{r['max']:.0f}) | "
            f"{r['token_argmax_agreement_vs_fp32']:.2f}% | {r['batch1_vs_batch_max_abs_diff']:.1e} |"
            for r in result["graphs"]
        ),
        *(f"| {name} | skipped: {why} | | |" for name, why in result["skipped"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import onnxruntime as ort

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    threads = args.threads or physical_cores()
    work = load_workload("ner", args.texts)
    info = machine_info()
    graphs, skipped = graph_variants(work, args.batch_size, args.repeats, threads)
    result = {
        "machine": {k: info.get(k) for k in ("cpu", "cpu_flags", "physical_cores", "logical_cpus")},
        "onnxruntime": ort.__version__,
        "threads": threads,
        "repeats": args.repeats,
        "ops": layernorm_ops(threads, repeats=args.repeats),
        "model": work.model,
        "data": work.data,
        "texts": len(work.texts),
        "batch_size": args.batch_size,
        "graphs": graphs,
        "skipped": skipped,
    }
    publish("kernels", result, render(result), write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
