"""GPU benchmark: bertrt on CUDA (fp16 and fp32 bundles, IO binding) against the transformers pipeline on
PyTorch CUDA (fp16 and fp32), text in and final result out. Run by ``benchmarks/gpu_check.sh`` on a
machine with a CUDA GPU, onnxruntime-gpu and torch with CUDA; ``python -m benchmarks.gpu_bench --help``.

Workloads (weights are random, built from a config, since the device machine reaches no hub; speed
depends on the shapes, not the weights):

========== ======================= ======================================================================
name       task                    model and texts
========== ======================= ======================================================================
minilm-ner token-classification    all-MiniLM-L6-v2's shape (6 layers, 384 hidden) with a 13-label head,
                                   MiniLM's tokenizer; WNUT-16 test sentences (their own lengths)
bert-base  text-classification     bert-base's shape (12 layers, 768 hidden, 3072 FFN), MiniLM's
                                   vocabulary; texts of at least 128 tokens, cut at 128
========== ======================= ======================================================================

Timing as ``bertrt bench`` times (:func:`bertrt.bench.measure.timed_pass`): every system built and
warmed up once, then interleaved passes per batch size (the order rotates every repeat), medians with
min-max; batch-1 latency p50/p90 over single-text calls (``--latency-texts`` per repeat). Answers are compared with PyTorch CUDA fp32
(:func:`bertrt.tune.compare`). Writes ``gpu_bench.json`` and ``gpu_bench.md`` into ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import time
from pathlib import Path

log = logging.getLogger("benchmarks.gpu_bench")

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
NER_LABELS = ["O"] + [f"{p}-{t}" for t in ("PER", "LOC", "ORG", "PRODUCT", "EVENT", "OTHER") for p in "BI"]
WORKLOADS = {
    "minilm-ner": {"task": "token-classification", "max_length": None},
    "bert-base": {"task": "text-classification", "max_length": 128},
}
#: the config keys taken from MiniLM's config.json (its shape and vocabulary)
SHAPE_KEYS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "hidden_act",
    "max_position_embeddings",
    "type_vocab_size",
    "layer_norm_eps",
    "pad_token_id",
)
#: the systems measured, in report order
CANONICAL = ("bertrt cuda fp16", "bertrt cuda fp32", "pytorch cuda fp16", "pytorch cuda fp32")
#: the issue's target: bertrt fp16 / PyTorch fp16 throughput, best batch size each
TARGET = 1.5


def build_checkpoint(name: str, assets: Path, out: Path, seed: int = 0) -> Path:
    """A random-weight checkpoint of the workload's shape with MiniLM's tokenizer files, in ``out``."""
    import torch
    import transformers

    torch.manual_seed(seed)
    minilm = json.loads((assets / "config.json").read_text(encoding="utf-8"))
    if name == "minilm-ner":
        config = transformers.BertConfig(
            **{k: v for k, v in minilm.items() if k in SHAPE_KEYS},
            id2label=dict(enumerate(NER_LABELS)),
            label2id={label: i for i, label in enumerate(NER_LABELS)},
        )
        model = transformers.BertForTokenClassification(config)
    else:
        config = transformers.BertConfig(vocab_size=minilm["vocab_size"], num_labels=2)
        model = transformers.BertForSequenceClassification(config)
    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(str(out))
    for file in TOKENIZER_FILES:
        if (assets / file).is_file():
            shutil.copy(assets / file, out / file)
    return out


def workload_texts(name: str, texts: list[str], count: int, tokenizer) -> list[str]:
    """minilm-ner: the sentences as they are; bert-base: sentences joined until 128 tokens or more."""
    if name != "bert-base":
        return (texts * (count // max(len(texts), 1) + 1))[:count]
    out, i = [], 0
    while len(out) < count:
        parts = []
        while len(tokenizer.encode(" ".join(parts)).ids) < 130:
            parts.append(texts[i % len(texts)])
            i += 1
        out.append(" ".join(parts))
    return out


def build_systems(task: str, checkpoint: Path, bundle: Path) -> dict:
    """name -> ``call(texts, batch_size)``: bertrt CUDA fp16 / fp32, PyTorch CUDA fp16 / fp32."""
    import bertrt
    from bertrt.export.bench_reference import reference_call
    from bertrt.tasks import get_task

    options = dict(get_task(task).reference_options)  # as bertrt bench calls it: the reference's answers
    systems = {}
    for precision in ("fp16", "fp32"):
        pipe = bertrt.pipeline(task, bundle, providers="cuda", precision=precision)
        if pipe.session.device != "cuda":
            raise RuntimeError(f"bertrt {precision}: the session is not IO-bound on CUDA")
        systems[f"bertrt cuda {precision}"] = lambda t, bs, pipe=pipe: pipe(t, batch_size=bs, **options)
    for dtype in ("fp16", "fp32"):
        systems[f"pytorch cuda {dtype}"] = reference_call(task, checkpoint, device=0, dtype=dtype)
    return systems


def measure(systems: dict, texts: list[str], sizes: list[int], repeats: int, latency_texts: int) -> dict:
    """Interleaved throughput per batch size and batch-1 latency, per system."""
    import numpy as np

    from bertrt.bench.measure import timed_pass

    names = list(systems)
    for name in names:  # warm-up: CUDA kernels, cuBLAS handles, the allocators
        for bs in sizes:
            systems[name](texts[: max(bs, 8)], bs)
    rates = {n: {bs: [] for bs in sizes} for n in names}
    calls = {n: [] for n in names}
    for rep in range(repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for bs in sizes:
            for name in order:
                elapsed, _ = timed_pass(systems[name], texts, bs)
                rates[name][bs].append(len(texts) / elapsed)
        for name in order:
            calls[name] += timed_pass(systems[name], texts[:latency_texts], 1)[1]
    result = {}
    for name in names:
        through = {
            str(bs): {
                "median": round(statistics.median(r), 1),
                "min": round(min(r), 1),
                "max": round(max(r), 1),
            }
            for bs, r in rates[name].items()
        }
        best = max(through, key=lambda bs: through[bs]["median"])
        ms = np.asarray(calls[name]) * 1000.0
        result[name] = {
            "throughput": through,
            "best_batch_size": int(best),
            "best_texts_per_s": through[best]["median"],
            "latency_bs1": {
                "p50_ms": round(float(np.percentile(ms, 50)), 3),
                "p90_ms": round(float(np.percentile(ms, 90)), 3),
                "n": int(ms.size),
            },
        }
    return result


def run_workload(name: str, args, texts: list[str]) -> dict:
    import tokenizers

    from bertrt.export import export_model
    from bertrt.tune import compare

    spec = WORKLOADS[name]
    work = Path(args.work) / name
    checkpoint = build_checkpoint(name, Path(args.assets), work / "checkpoint")
    start = time.perf_counter()
    manifest = export_model(
        checkpoint,
        work / "bundle",
        task=spec["task"],
        quantize="none",
        fp16=True,
        max_length=spec["max_length"],
        force=True,
    )
    export_s = time.perf_counter() - start
    tokenizer = tokenizers.Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    tokenizer.no_padding()  # MiniLM's tokenizer.json pads and cuts at 128: count the texts' own tokens
    tokenizer.no_truncation()
    sample = workload_texts(name, texts, args.texts, tokenizer)
    lengths = [min(len(tokenizer.encode(t).ids), spec["max_length"] or 512) for t in sample]
    systems = build_systems(spec["task"], checkpoint, work / "bundle")
    largest = max(args.batch_sizes)
    answers = {n: call(sample, largest) for n, call in systems.items()}
    baseline = "pytorch cuda fp32"
    agreement = {n: compare(spec["task"], answers[baseline], a) for n, a in answers.items() if n != baseline}
    timings = measure(systems, sample, sorted(set(args.batch_sizes)), args.repeats, args.latency_texts)
    ratio = timings["bertrt cuda fp16"]["best_texts_per_s"] / timings["pytorch cuda fp16"]["best_texts_per_s"]
    return {
        "task": spec["task"],
        "texts": len(sample),
        "tokens_mean": round(sum(lengths) / len(lengths), 1),
        "tokens_max": max(lengths),
        "export_s": round(export_s, 1),
        "fp16_validation": manifest["fp16"]["validation"],
        "systems": timings,
        "agreement_with": baseline,
        "agreement": agreement,
        "bertrt_fp16_over_pytorch_fp16": round(ratio, 2),
        "target": TARGET,
        "meets_target": ratio >= TARGET,
    }


def render(result: dict) -> str:
    lines = [f"# bertrt on CUDA vs PyTorch CUDA ({result['device']})", "", result["versions_line"], ""]
    for name, w in result["workloads"].items():
        if "error" in w:
            lines += [f"## {name}: FAILED", "", f"    {w['error']}", ""]
            continue
        sizes = list(next(iter(w["systems"].values()))["throughput"])
        lines += [
            f"## {name} ({w['task']}; {w['texts']} texts, {w['tokens_mean']} tokens on average, "
            f"max {w['tokens_max']})",
            "",
            "| system | " + " | ".join(f"bs {s} texts/s" for s in sizes) + " | best | bs-1 p50 / p90 ms |",
            "|---|" + "---:|" * (len(sizes) + 2),
        ]
        for system, t in w["systems"].items():
            cells = [
                f"{t['throughput'][s]['median']:.0f} ({t['throughput'][s]['min']:.0f}-"
                f"{t['throughput'][s]['max']:.0f})"
                for s in sizes
            ]
            lat = t["latency_bs1"]
            lines.append(
                f"| {system} | {' | '.join(cells)} | {t['best_texts_per_s']:.0f} @ bs {t['best_batch_size']} "
                f"| {lat['p50_ms']:.2f} / {lat['p90_ms']:.2f} |"
            )
        lines += [
            "",
            f"bertrt fp16 / PyTorch fp16 (best batch size each): **{w['bertrt_fp16_over_pytorch_fp16']}x** "
            f"(target {w['target']}x: {'met' if w['meets_target'] else 'NOT met'}).",
            f"Answers vs {w['agreement_with']}: "
            + "; ".join(f"{k}: {json.dumps(v)}" for k, v in w["agreement"].items()),
            f"fp16 export validation: {json.dumps(w['fp16_validation']['figures'])} on "
            f"{w['fp16_validation']['provider']}",
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--assets", required=True, help="folder with MiniLM's config.json and tokenizer files"
    )
    parser.add_argument("--texts-file", required=True, help="sentences, one a line (UTF-8)")
    parser.add_argument("--out", required=True, help="folder for gpu_bench.json and gpu_bench.md")
    parser.add_argument("--work", default="/tmp/bertrt-gpu-bench", help="checkpoints and bundles")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--texts", type=int, default=512, help="texts per pass (default 512)")
    parser.add_argument(
        "--batch-sizes", nargs="+", type=int, default=[8, 32, 64, 128], help="throughput batch sizes"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--latency-texts", type=int, default=100, help="single-text calls per repeat")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    import onnxruntime
    import torch
    import transformers

    texts = [t for t in Path(args.texts_file).read_text(encoding="utf-8").splitlines() if t.strip()]
    result = {
        "device": torch.cuda.get_device_name(0),
        "versions": {
            "onnxruntime": onnxruntime.__version__,
            "onnxruntime_providers": onnxruntime.get_available_providers(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
        },
        "workloads": {},
    }
    result["versions_line"] = ", ".join(
        f"{k} {v}" for k, v in result["versions"].items() if k != "onnxruntime_providers"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in args.workloads:
        try:
            result["workloads"][name] = run_workload(name, args, texts)
        except Exception as exc:  # one workload failing still reports the other
            log.exception("workload %s failed", name)
            result["workloads"][name] = {"error": f"{type(exc).__name__}: {exc}"}
        (out / "gpu_bench.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        (out / "gpu_bench.md").write_text(render(result) + "\n", encoding="utf-8")
    print(render(result))
    return 0 if all("error" not in w for w in result["workloads"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
