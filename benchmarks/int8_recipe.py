"""int8 recipes side by side: batch determinism first, then accuracy, then speed (and size).

Every variant is built from a model's fp32 ``model.onnx`` (cached by the graph's digest and the quantizer
code's digest). Two families:

- :data:`RECIPES`, the exporter's own (export/quantize.py ``quantize_graph``): ``dynamic`` (onnxruntime
  ``quantize_dynamic``, per-channel s8 weights, u8 activations with one scale per tensor: batch
  dependent), ``per-token`` (bertrt's rewrite: per-token symmetric activations for every MatMul with a
  constant weight, each fused Attention unfused into its Q/K/V MatMuls + fp32 attention in standard ops,
  embeddings weight-only), ``per-token+fp32-attention`` (fused Attention left fp32), ``per-token+qattention``
  (Attention as onnxruntime QAttention, per-tensor input);
- :data:`SETTINGS`, onnxruntime's ``quantize_dynamic`` around ``dynamic`` with one setting changed:
  per-tensor weights, the unfused graph (optimum's export), u8 weights, fewer op types, reduce_range.

Per model (``ner``, ``sentiment``, ``embed``: the harness workloads, fine-tuned MiniLMs when present):
batch-1 vs batch-32 agreement (NER entities on all 2,394 WNUT-16 sentences, sentiment labels on the VADER
movie test split, embedding cosine), agreement with fp32 at batch 32, F1 / accuracy on the held-out test
split and the drop from fp32, texts/s at batch 1 and 32 with 1 thread and all physical cores (interleaved
passes, medians with min-max), size and quantization time. :func:`choose` applies the rule: batch
agreement first, then accuracy, then speed.

    python -m benchmarks.int8_recipe [--models ner sentiment embed] [--variants ...] [--speed-texts 192]
                                     [--repeats 3] [--out benchmarks/results]

writes ``int8_recipe.json`` and ``.md`` (a run on some models keeps the others' earlier results).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import data as bdata
from benchmarks.determinism import agreement
from bertrt.bundle import file_sha256
from bertrt.evaluate import evaluate_classifier, evaluate_ner

__all__ = ["MODELS", "RECIPES", "SETTINGS", "VARIANTS", "build_variants", "choose", "main", "render", "study"]

log = logging.getLogger("bertrt.benchmarks.int8_recipe")
RESULTS = Path(__file__).resolve().parent / "results"
_ALL_OPS = ["MatMul", "Attention", "EmbedLayerNormalization", "Gather"]
#: the exporter's recipes: variant -> ``quantize_graph`` keyword arguments
RECIPES = {
    "dynamic": {"recipe": "dynamic"},
    "per-token": {"recipe": "per-token", "attention": "per-token"},
    "per-token+fp32-attention": {"recipe": "per-token", "attention": "fp32"},
    "per-token+qattention": {"recipe": "per-token", "attention": "qattention"},
}
_DYNAMIC = {"graph": "fused", "per_channel": True, "weight": "s8", "ops": _ALL_OPS, "reduce_range": False}
#: onnxruntime ``quantize_dynamic`` settings: ``dynamic`` with one setting changed
SETTINGS = {
    "dynamic, per-tensor": {**_DYNAMIC, "per_channel": False},
    "dynamic, unfused graph": {**_DYNAMIC, "graph": "raw"},
    "dynamic, u8 weights": {**_DYNAMIC, "weight": "u8"},
    "dynamic, MatMul only": {**_DYNAMIC, "ops": ["MatMul"]},
    "dynamic, MatMul + Attention": {**_DYNAMIC, "ops": ["MatMul", "Attention"]},
    "dynamic, reduce_range": {**_DYNAMIC, "reduce_range": True},
}
VARIANTS = (*RECIPES, *SETTINGS)
#: model -> task and its held-out figure (None: no labels)
MODELS = {
    "ner": {"task": "token-classification", "figure": "micro F1"},
    "sentiment": {"task": "text-classification", "figure": "accuracy"},
    "embed": {"task": "feature-extraction", "figure": None},
}
#: the decision rule, as data (see :func:`choose`)
RULE = {"min_batch_agreement_pct": 99.5, "max_drop_points": 1.0, "speed": "geometric mean vs fp32"}


# ------------------------------------------------------------------------------------ variants


def _code_digest() -> str:
    export = Path(__file__).resolve().parents[1] / "export"
    return hashlib.sha256(
        b"".join((export / f).read_bytes() for f in ("quantize.py", "per_token.py"))
    ).hexdigest()[:8]


def _raw_graph(checkpoint: Path, task: str, folder: Path) -> Path:
    """The unfused ONNX export (optimum, via the exporter's convert stage), cached."""
    path = folder / "raw" / "model.onnx"
    if path.is_file():
        return path
    from bertrt.export import convert

    return convert.export_onnx(convert.load_model(checkpoint, task), task, folder / "raw")


def _quantize(src: Path, dst: Path, variant: str, checkpoint: Path | None, task: str) -> dict | None:
    """Build ``variant`` from ``src`` into ``dst``; the exporter's manifest record for a recipe."""
    from bertrt.export import quantize

    if variant in RECIPES:
        return quantize.quantize_graph(src, dst, per_channel=True, **RECIPES[variant])
    settings = SETTINGS[variant]
    if settings["graph"] == "raw":
        if checkpoint is None:
            raise ValueError(f"{variant} needs the checkpoint (the unfused graph is exported from it)")
        src = _raw_graph(checkpoint, task, dst.parent)
    how = quantize._quantize_dynamic(
        src,
        dst,
        list(settings["ops"]),
        settings["per_channel"],
        settings["reduce_range"],
        weight_type=settings["weight"],
    )
    return {"settings": settings, "shape_inference": how}


def build_variants(
    name: str, bundle: Path, task: str, variants=VARIANTS, checkpoint: Path | None = None
) -> dict:
    """{variant: (path, record, quantize seconds)}, "fp32" first; cached by fp32 and code digest."""
    fp32 = bundle / "model.onnx"
    folder = bdata.cache_root() / "int8_recipe" / f"{name}-{file_sha256(fp32)[:12]}-{_code_digest()}"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"fp32": (fp32, None, 0.0)}
    for variant in variants:
        key = hashlib.sha256(variant.encode()).hexdigest()[:10]
        dst, meta = folder / f"{key}.onnx", folder / f"{key}.json"
        if not (dst.is_file() and meta.is_file()):
            start = time.perf_counter()
            record = _quantize(fp32, dst, variant, checkpoint, task)
            meta.write_text(
                json.dumps({"variant": variant, "record": record, "seconds": time.perf_counter() - start})
            )
        saved = json.loads(meta.read_text())
        out[variant] = (dst, saved["record"], saved["seconds"])
    return out


# ------------------------------------------------------------------------------------ measuring


def _texts(name: str) -> tuple[list[str], list, list[str]]:
    """(determinism texts, labelled test items, speed texts)."""
    if name == "ner":
        test = bdata.load_wnut16("test")
        return [" ".join(s.tokens) for s in bdata.load_wnut16()], test, [" ".join(s.tokens) for s in test]
    movies = bdata.load_vader("movies", "test")
    texts = [e.text for e in movies]
    if name == "embed":
        wnut = [" ".join(s.tokens) for s in bdata.load_wnut16()][:1024]
        return wnut, [], texts
    return texts, movies, texts


def _call(pipe, task: str, texts: list[str], batch_size: int):
    kwargs = {
        "token-classification": {"aggregation_strategy": "first"},
        "feature-extraction": {"pooling": "mean", "normalize": True},
    }.get(task, {})
    if batch_size == 1 and task == "feature-extraction":
        return np.stack([np.asarray(pipe(t, **kwargs), dtype=np.float32).reshape(-1) for t in texts])
    if batch_size == 1:
        return [pipe(t, **kwargs) for t in texts]
    out = pipe(texts, batch_size=batch_size, **kwargs)
    return np.asarray(out) if task == "feature-extraction" else out


def _cosines(a, b) -> np.ndarray:
    a, b = (
        np.asarray(a, dtype=np.float64).reshape(len(a), -1),
        np.asarray(b, dtype=np.float64).reshape(len(b), -1),
    )
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def _top(result) -> dict:
    """A classifier result as one {label, score}: a single dict, or the best of a list."""
    while isinstance(result, list) and len(result) == 1 and isinstance(result[0], list):
        result = result[0]
    return max(result, key=lambda d: d["score"]) if isinstance(result, list) else result


def _compare(task: str, a, b) -> dict:
    """How far results ``b`` are from ``a`` (same texts)."""
    if task == "token-classification":
        r = agreement(a, b)
        return {
            "agreement_pct": round(100 * r["entity_agreement"], 3),
            "sentences_identical_pct": round(100 * r["sentences_identical"], 2),
            "entities": [r["entities_batch1"], r["entities_batched"]],
        }
    if task == "text-classification":
        a, b = [_top(x) for x in a], [_top(x) for x in b]
        la, lb = [x["label"] for x in a], [x["label"] for x in b]
        diff = max(abs(x["score"] - y["score"]) for x, y in zip(a, b))
        return {
            "agreement_pct": round(100 * sum(x == y for x, y in zip(la, lb)) / len(la), 3),
            "max_score_diff": float(diff),
        }
    cos = _cosines(a, b)
    return {
        "cosine_min": round(float(cos.min()), 6),
        "cosine_mean": round(float(cos.mean()), 6),
        "max_abs_diff": float(np.abs(np.asarray(a) - np.asarray(b)).max()),
    }


def _test_figure(task: str, pipe, items, desc: str) -> float | None:
    """Held-out NER micro F1 / classification accuracy (points) at batch 32; None without labels."""
    if task == "token-classification":
        return evaluate_ner(lambda xs: _call(pipe, task, xs, 32), items, desc=desc)["micro"]["f1"]
    if task == "text-classification":
        run = lambda xs: _call(pipe, task, xs, 32)  # noqa: E731
        return evaluate_classifier(run, items, id2label=pipe.id2label, desc=desc)["accuracy"]
    return None


def study(name: str, speed_texts: int, repeats: int, variants=VARIANTS, threads: int | None = None) -> dict:
    import bertrt
    from benchmarks.workloads import load_workload
    from bertrt.session import physical_cores

    task = MODELS[name]["task"]
    workload = load_workload(name, 8)
    bundle = workload.bundle
    built = build_variants(name, bundle, task, variants, workload.checkpoint)
    det_texts, test_items, speed = _texts(name)
    speed = speed[:speed_texts]
    thread_counts = sorted({1, threads or physical_cores()})
    pipes = {
        (v, t): bertrt.pipeline(task, str(bundle), model_file=str(path), threads=t, verify=False)
        for v, (path, _, _) in built.items()
        for t in thread_counts
    }
    rows, batched = {}, {}
    for v, (path, record, seconds) in built.items():
        log.info("%s %s: batch 1 vs 32 on %d texts", name, v, len(det_texts))
        pipe = pipes[(v, thread_counts[-1])]
        b1, b32 = _call(pipe, task, det_texts, 1), _call(pipe, task, det_texts, 32)
        batched[v] = b32
        figure = _test_figure(task, pipe, test_items, f"{name} {v}")
        rows[v] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "quantize_s": round(seconds, 1),
            "record": record,
            "b1_vs_b32": _compare(task, b1, b32),
            "vs_fp32": _compare(task, batched["fp32"], b32),
            "test": None if figure is None else {"figure": figure, "items": len(test_items)},
        }
    timings: dict = {}
    for _ in range(repeats):  # interleaved: every variant once per configuration per round
        for batch in (1, 32):
            for n in thread_counts:
                for v in built:
                    start = time.perf_counter()
                    _call(pipes[(v, n)], task, speed, batch)
                    timings.setdefault((v, batch, n), []).append(len(speed) / (time.perf_counter() - start))
                    time.sleep(0.05)
    for (v, batch, n), xs in timings.items():
        rows[v][f"texts_s_b{batch}_t{n}"] = [
            round(statistics.median(xs), 1),
            round(min(xs), 1),
            round(max(xs), 1),
        ]
    return {
        "task": task,
        "model": workload.model,
        "figure": MODELS[name]["figure"],
        "bundle": str(bundle),
        "determinism_texts": len(det_texts),
        "speed_texts": len(speed),
        "threads": thread_counts,
        "repeats": repeats,
        "variants": rows,
    }


# ------------------------------------------------------------------------------------ deciding


def _figure(row: dict) -> float | None:
    """The held-out figure of a variant's row (runs before the merge stored it as f1 / accuracy)."""
    test = row.get("test") or {}
    return test.get("figure", test.get("f1", test.get("accuracy")))


def _drop(row: dict, fp32: dict) -> float | None:
    """Points below fp32 on the held-out figure (None without labels)."""
    value, ref = _figure(row), _figure(fp32)
    return None if value is None or ref is None else ref - value


def _speeds(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith("texts_s_")}


def choose(result: dict, rule: dict = RULE) -> dict:
    """The export default by ``rule``: batch-1 vs batch-32 agreement ≥ the minimum on every model with
    labels, then a drop from fp32 ≤ the maximum, then the fastest (geometric mean over models and
    batch/thread settings of texts/s relative to fp32). ``beyond_spread``: the variant's speed at every
    setting lies outside the exporter default's min-max range (else a speed difference is noise)."""
    from bertrt.export.quantize import DEFAULT_RECIPE

    models = result["models"].values()
    verdicts = {}
    variants = [v for v in VARIANTS if all(v in m["variants"] for m in models)]
    for variant in variants:
        why, ratios, clear = [], [], True
        for name, model in result["models"].items():
            row, fp32 = model["variants"][variant], model["variants"]["fp32"]
            agree = row["b1_vs_b32"].get("agreement_pct")
            if agree is not None and agree < rule["min_batch_agreement_pct"]:
                why.append(
                    f"{name}: batch-1 vs batch-32 agreement {agree:.2f}% < {rule['min_batch_agreement_pct']}%"
                )
            drop = _drop(row, fp32)
            if drop is not None and drop > rule["max_drop_points"]:
                why.append(f"{name}: {drop:.2f} points below fp32")
            ratios += [s[0] / fp32[k][0] for k, s in _speeds(row).items() if fp32.get(k)]
            default = model["variants"].get(DEFAULT_RECIPE, {})
            clear = clear and all(
                s[1] > default[k][2] or s[2] < default[k][1]
                for k, s in _speeds(row).items()
                if default.get(k)
            )
        speed = float(np.exp(np.mean(np.log(ratios)))) if ratios else None
        verdicts[variant] = {
            "passes": not why,
            "why_not": why,
            "speed_vs_fp32": speed and round(speed, 3),
            "beyond_spread": bool(clear and variant != DEFAULT_RECIPE),
        }
    passing = [v for v in variants if verdicts[v]["passes"]]
    best = max(passing, key=lambda v: verdicts[v]["speed_vs_fp32"] or 0) if passing else None
    return {"rule": rule, "default": DEFAULT_RECIPE, "chosen": best, "verdicts": verdicts}


# ------------------------------------------------------------------------------------ report


def _cmp(c: dict) -> str:
    if "agreement_pct" in c:
        extra = (
            f" ({c['sentences_identical_pct']:.2f}% sent.)"
            if "sentences_identical_pct" in c
            else f" (Δscore ≤ {c['max_score_diff']:.1e})"
        )
        return f"{c['agreement_pct']:.2f}%{extra}"
    return f"cos min {c['cosine_min']:.5f} / mean {c['cosine_mean']:.5f}"


def render(result: dict) -> str:
    rule = RULE
    lines = [
        "# int8 recipes: batch determinism, accuracy, speed",
        "",
        f"Machine: {result.get('machine', {}).get('cpu', '?')} (timings noisy on a shared machine: medians of "
        f"interleaved passes, min–max in brackets). Rule: batch-1 vs batch-32 agreement ≥ "
        f"{rule['min_batch_agreement_pct']}% first, then F1/accuracy within {rule['max_drop_points']} point of "
        "fp32, then speed.",
        "",
    ]
    for name, model in result["models"].items():
        n = model.get("threads", [1, 2])[-1]
        settings = [(1, 1), (1, n), (32, 1), (32, n)] if n != 1 else [(1, 1), (32, 1)]
        lines += [
            f"## {name}: {model.get('model', model['bundle'])} ({model['task']})",
            "",
            f"Determinism on {model['determinism_texts']} texts; speed on {model['speed_texts']} texts × "
            f"{model['repeats']} interleaved passes; texts/s at batch b with t threads.",
            "",
            "| variant | b1 vs b32 | vs fp32 (b32) | test | drop | "
            + " | ".join(f"b{b} t{t}" for b, t in settings)
            + " | MB | % fp32 |",
            "|---|---|---|---:|---:|" + "---:|" * len(settings) + "---:|---:|",
        ]
        fp32_bytes = model["variants"]["fp32"]["bytes"]
        for v, row in model["variants"].items():
            figure, drop = _figure(row), _drop(row, model["variants"]["fp32"])
            cells = [row.get(f"texts_s_b{b}_t{t}") for b, t in settings]
            lines.append(
                f"| {v} | {_cmp(row['b1_vs_b32'])} | {_cmp(row['vs_fp32'])} | "
                + (f"{figure:.2f} | {drop:+.2f}" if figure is not None else "– | –")
                + " | "
                + " | ".join(f"{s[0]:.1f} ({s[1]:.0f}–{s[2]:.0f})" if s else "–" for s in cells)
                + f" | {row['bytes'] / 1e6:.1f} | {100 * row['bytes'] / fp32_bytes:.0f}% |"
            )
        lines.append("")
    decision = result.get("decision")
    if decision:
        lines += [
            "## Decision",
            "",
            f"Chosen: **{decision['chosen']}** (the exporter's default today: {decision['default']}).",
            "",
            "| variant | passes | speed vs fp32 (geo. mean) | outside the default's min–max | why not |",
            "|---|---|---:|---|---|",
        ]
        for variant, v in decision["verdicts"].items():
            lines.append(
                f"| {variant} | {'yes' if v['passes'] else 'no'} | {v['speed_vs_fp32']}× | "
                f"{'yes' if v['beyond_spread'] else 'no'} | {'; '.join(v['why_not']) or '–'} |"
            )
        lines.append("")
    if any("FALLBACK" in str(m.get("model")) for m in result["models"].values()):
        lines += ["**A model here is the random-head fallback: its accuracy figures mean nothing.**", ""]
    lines += [f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from benchmarks import hardware

    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.int8_recipe", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--speed-texts", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads", type=int, default=None, help="the larger thread count (default: physical cores)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.speed_texts <= 0 or args.repeats <= 0:
        parser.error("--speed-texts and --repeats must be positive")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = "python -m benchmarks.int8_recipe " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command, "machine": hardware.machine_info(), "models": {}}
    previous = args.out / "int8_recipe.json"
    if previous.is_file():  # a run on some models keeps the others' results (the commands are listed)
        old = json.loads(previous.read_text())
        result["models"] = {k: v for k, v in old.get("models", {}).items() if k not in args.models}
        commands = [*old.get("command", "").split("; "), command]
        result["command"] = "; ".join(c for c in dict.fromkeys(commands) if c)
    for name in args.models:
        result["models"][name] = study(name, args.speed_texts, args.repeats, args.variants, args.threads)
        result["decision"] = choose(result)
        args.out.mkdir(parents=True, exist_ok=True)
        previous.write_text(json.dumps(result, indent=2, default=str) + "\n")
        (args.out / "int8_recipe.md").write_text(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
