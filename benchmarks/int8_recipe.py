"""int8 recipes side by side: batch determinism first, then accuracy, then speed.

Recipes (export/quantize.py ``quantize_graph``), each built from the bundle's fused fp32 ``model.onnx``:

- ``dynamic``: onnxruntime ``quantize_dynamic``, per-channel s8 weights, u8 activations with one scale per
  tensor (whole batch) — MatMul, Attention (QAttention), EmbedLayerNormalization;
- ``per-token``: bertrt's rewrite, per-token symmetric activations for every MatMul with a constant weight,
  each fused Attention unfused into its QKV MatMul (per token too) + fp32 MultiHeadAttention, embeddings
  weight-only (onnxruntime quantize_dynamic on EmbedLayerNormalization/Gather);
- ``per-token+fp32-attention``: the same with the fused Attention nodes left fp32 (QKV weights fp32);
- ``per-token+qattention``: the same with the Attention nodes as onnxruntime QAttention (per-tensor input).

Per model: batch-1 vs batch-32 agreement (NER entities on all 2,394 WNUT-16 sentences; sentiment labels on
the VADER movie test split; embedding cosine), agreement and F1/accuracy vs fp32 on the held-out test
split, texts/s at batch 1 and 32 with 1 and 2 threads (interleaved A/B passes, medians with min–max), sizes.

    python -m benchmarks.int8_recipe [--models ner sentiment embed] [--speed-texts 192] [--repeats 3]

writes benchmarks/results/int8_recipe.json and .md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import data as bdata
from benchmarks.determinism import agreement
from bertrt.bundle import file_sha256
from bertrt.evaluate import evaluate_classifier, evaluate_ner

__all__ = ["MODELS", "RECIPES", "main"]

log = logging.getLogger("bertrt.int8_recipe")
RESULTS = Path(__file__).resolve().parent / "results"
RECIPES = {
    "dynamic": {"recipe": "dynamic"},
    "per-token": {"recipe": "per-token", "attention": "per-token"},
    "per-token+fp32-attention": {"recipe": "per-token", "attention": "fp32"},
    "per-token+qattention": {"recipe": "per-token", "attention": "qattention"},
}
MODELS = {
    "ner": {"task": "token-classification", "bundles": ["finetuned/wnut-ner-bundle", "bundles/wnut-ner"]},
    "sentiment": {
        "task": "text-classification",
        "bundles": ["bundles/movie-sentiment", "finetuned/movie-sentiment-bundle"],
    },
    "embed": {"task": "feature-extraction", "bundles": []},
}


def _bundle(name: str) -> Path:
    root = bdata.cache_root()
    for rel in MODELS[name]["bundles"]:
        if (root / rel / "model.onnx").is_file():
            return root / rel
    if name == "embed":
        from benchmarks.workloads import load_workload

        return load_workload("embed", 8).bundle
    raise SystemExit(f"no bundle for {name}: looked in {MODELS[name]['bundles']} under {root}")


def _digest(path: Path) -> str:
    return file_sha256(path)[:12]


def build_variants(name: str, bundle: Path) -> dict:
    """{recipe: (path, manifest record, seconds)}; the int8 files are cached by fp32 digest and code digest."""
    from bertrt.export.quantize import quantize_graph

    code = hashlib.sha256(
        b"".join(
            (Path(__file__).resolve().parents[1] / "export" / f).read_bytes()
            for f in ("quantize.py", "per_token.py")
        )
    ).hexdigest()[:8]
    fp32 = bundle / "model.onnx"
    folder = bdata.cache_root() / "int8_recipe" / f"{name}-{_digest(fp32)}-{code}"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"fp32": (fp32, None, 0.0)}
    for label, kwargs in RECIPES.items():
        dst = folder / f"{label}.onnx"
        meta = folder / f"{label}.json"
        if not (dst.is_file() and meta.is_file()):
            start = time.perf_counter()
            record = quantize_graph(fp32, dst, per_channel=True, **kwargs)
            meta.write_text(json.dumps({"record": record, "seconds": time.perf_counter() - start}))
        saved = json.loads(meta.read_text())
        out[label] = (dst, saved["record"], saved["seconds"])
    return out


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


def study(name: str, speed_texts: int, repeats: int) -> dict:
    import bertrt

    task = MODELS[name]["task"]
    bundle = _bundle(name)
    variants = build_variants(name, bundle)
    det_texts, test_items, speed = _texts(name)
    speed = speed[:speed_texts]
    pipes = {
        (v, t): bertrt.pipeline(task, str(bundle), model_file=str(path), threads=t)
        for v, (path, _, _) in variants.items()
        for t in (1, 2)
    }
    rows = {}
    batched = {}
    for v, (path, record, seconds) in variants.items():
        log.info("%s %s: batch 1 vs 32 on %d texts", name, v, len(det_texts))
        pipe = pipes[(v, 2)]
        b1 = _call(pipe, task, det_texts, 1)
        b32 = _call(pipe, task, det_texts, 32)
        batched[v] = b32
        rows[v] = {
            "file": path.name,
            "bytes": path.stat().st_size,
            "quantize_s": round(seconds, 1),
            "record": record,
            "b1_vs_b32": _compare(task, b1, b32),
        }
        rows[v]["vs_fp32"] = _compare(task, batched["fp32"], b32)
        if task == "token-classification":
            m = evaluate_ner(lambda xs, pipe=pipe: _call(pipe, task, xs, 32), test_items, desc=f"{name} {v}")
            rows[v]["test"] = {"f1": m["micro"]["f1"], "items": len(test_items)}
        elif task == "text-classification":
            m = evaluate_classifier(
                lambda xs, pipe=pipe: _call(pipe, task, xs, 32),
                test_items,
                id2label=pipe.id2label,
                desc=f"{name} {v}",
            )
            rows[v]["test"] = {"accuracy": m["accuracy"], "items": len(test_items)}
        log.info("%s %s: %s", name, v, {k: rows[v][k] for k in ("b1_vs_b32", "vs_fp32")})
    timings: dict = {}
    for _ in range(repeats):  # interleaved: every variant once per configuration per round
        for batch in (1, 32):
            for threads in (1, 2):
                for v in variants:
                    start = time.perf_counter()
                    _call(pipes[(v, threads)], task, speed, batch)
                    timings.setdefault((v, batch, threads), []).append(
                        len(speed) / (time.perf_counter() - start)
                    )
    for (v, batch, threads), xs in timings.items():
        rows[v][f"texts_s_b{batch}_t{threads}"] = [
            round(statistics.median(xs), 1),
            round(min(xs), 1),
            round(max(xs), 1),
        ]
    return {
        "task": task,
        "bundle": str(bundle),
        "determinism_texts": len(det_texts),
        "speed_texts": len(speed),
        "repeats": repeats,
        "variants": rows,
    }


def _metric(row: dict) -> str:
    t = row.get("test") or {}
    if "f1" in t:
        return f"{t['f1']:.2f}"
    if "accuracy" in t:
        return f"{t['accuracy']:.2f}"
    return "–"


def _cmp(c: dict) -> str:
    if "agreement_pct" in c:
        extra = (
            f" ({c['sentences_identical_pct']:.2f}% sent.)"
            if "sentences_identical_pct" in c
            else f" (Δscore ≤ {c['max_score_diff']:.1e})"
        )
        return f"{c['agreement_pct']:.2f}%{extra}"
    return f"cos min {c['cosine_min']:.5f} / mean {c['cosine_mean']:.5f}"


def _test_value(row: dict) -> float | None:
    t = row.get("test") or {}
    return t.get("f1", t.get("accuracy"))


def choose(result: dict, min_agreement: float = 99.5, max_drop: float = 1.0) -> dict:
    """The export default by the issues' rule: batch-1 vs batch-32 agreement ≥ ``min_agreement`` % on every
    model with labels (issue 5), then a drop vs fp32 ≤ ``max_drop`` points (issue 4), then the fastest
    (geometric mean over models and batch/thread settings of texts/s relative to fp32)."""
    verdicts = {}
    recipes = [r for r in RECIPES if all(r in m["variants"] for m in result["models"].values())]
    for recipe in recipes:
        why, ratios = [], []
        for name, study_ in result["models"].items():
            row, fp32 = study_["variants"][recipe], study_["variants"]["fp32"]
            agree = row["b1_vs_b32"].get("agreement_pct")
            if agree is not None and agree < min_agreement:
                why.append(f"{name}: batch-1 vs batch-32 agreement {agree:.2f}% < {min_agreement}%")
            value, ref = _test_value(row), _test_value(fp32)
            if value is not None and ref is not None and ref - value > max_drop:
                why.append(f"{name}: {ref - value:.2f} points below fp32")
            ratios += [row[k][0] / fp32[k][0] for k in row if k.startswith("texts_s_") and fp32.get(k)]
        speed = float(np.exp(np.mean(np.log(ratios)))) if ratios else None
        verdicts[recipe] = {"passes": not why, "why_not": why, "speed_vs_fp32": speed and round(speed, 3)}
    passing = [r for r in recipes if verdicts[r]["passes"]]
    best = max(passing, key=lambda r: verdicts[r]["speed_vs_fp32"] or 0) if passing else None
    return {
        "rule": f"b1 vs b32 agreement >= {min_agreement}%, drop vs fp32 <= {max_drop} point, then speed",
        "chosen": best,
        "verdicts": verdicts,
    }


def render(result: dict) -> str:
    lines = [
        "# int8 recipe: batch determinism, accuracy, speed",
        "",
        (
            f"Machine: {os.cpu_count()} logical CPUs (shared; timings noisy: medians of interleaved passes, "
            "min–max in brackets). Rule: batch-1 vs batch-32 agreement ≥ 99.5% (issue 5) first, then "
            "F1/accuracy within 1.0 point of fp32 (issue 4), then speed."
        ),
        "",
    ]
    for name, study_ in result["models"].items():
        lines += [
            f"## {name}: `{study_['bundle']}` ({study_['task']})",
            "",
            (
                f"Determinism on {study_['determinism_texts']} texts; speed on {study_['speed_texts']} texts "
                f"× {study_['repeats']} interleaved passes."
            ),
            "",
            "| recipe | b1 vs b32 | vs fp32 (b32) | test F1/acc | b1 t1 | b1 t2 | b32 t1 | b32 t2 | MB | % fp32 |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        fp32_bytes = study_["variants"]["fp32"]["bytes"]
        for v, row in study_["variants"].items():
            speeds = [row.get(f"texts_s_b{b}_t{t}") for b in (1, 32) for t in (1, 2)]
            cells = [f"{s[0]:.1f} ({s[1]:.0f}–{s[2]:.0f})" if s else "–" for s in speeds]
            lines.append(
                f"| {v} | {_cmp(row['b1_vs_b32'])} | {_cmp(row['vs_fp32'])} | {_metric(row)} | "
                + " | ".join(cells)
                + f" | {row['bytes'] / 1e6:.1f} | {100 * row['bytes'] / fp32_bytes:.0f}% |"
            )
        lines.append("")
    decision = result.get("decision")
    if decision:
        lines += [
            "## Decision",
            "",
            f"Rule: {decision['rule']}. Chosen: **{decision['chosen']}**.",
            "",
            "| recipe | passes | speed vs fp32 (geo. mean) | why not |",
            "|---|---|---:|---|",
        ]
        for recipe, v in decision["verdicts"].items():
            lines.append(
                f"| {recipe} | {'yes' if v['passes'] else 'no'} | {v['speed_vs_fp32']}× | "
                f"{'; '.join(v['why_not']) or '–'} |"
            )
        lines.append("")
    lines += [f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    parser.add_argument("--speed-texts", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    command = "python -m benchmarks.int8_recipe " + " ".join(argv if argv is not None else sys.argv[1:])
    result = {"command": command, "models": {}}
    previous = args.out / "int8_recipe.json"
    if previous.is_file():  # a run on some models keeps the others' results (the commands are listed)
        old = json.loads(previous.read_text())
        result["models"] = {k: v for k, v in old.get("models", {}).items() if k not in args.models}
        commands = [*old.get("command", "").split("; "), command]
        result["command"] = "; ".join(c for c in dict.fromkeys(commands) if c)
    for name in args.models:
        result["models"][name] = study(name, args.speed_texts, args.repeats)
        result["decision"] = choose(result)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "int8_recipe.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (args.out / "int8_recipe.md").write_text(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
