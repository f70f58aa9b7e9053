"""This repository's accuracy report: PyTorch vs bertrt fp32 vs bertrt int8 on the fine-tuned models.

``python -m benchmarks.eval_report report`` evaluates the fine-tuned NER and sentiment models of
:mod:`benchmarks.finetune` (exported once to bundles) on the held-out WNUT-16 split and on the VADER
sets, in and out of domain, with :func:`bertrt.evaluate.evaluate_bundle`, and writes
``benchmarks/results/eval.{json,md}``; ``render`` re-renders ``eval.md`` from an existing ``eval.json``.
The scoring itself (readers, alignment, metrics, Markdown) is :mod:`bertrt.evaluate`, what
``bertrt eval`` runs on any bundle.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from benchmarks import data as bdata
from bertrt.errors import InputError
from bertrt.evaluate import (
    CLS,
    NER,
    evaluate_bundle,
    int8_targets,
    machine_info,
    render_markdown,
    write_results,
)

__all__ = ["RESULTS", "build_report", "main", "render_report"]

log = logging.getLogger("bertrt.benchmarks.eval_report")

RESULTS = Path(__file__).resolve().parent / "results"


def _ensure_bundle(checkpoint: Path, bundle: Path, task: str) -> Path:
    if (bundle / "bundle.json").is_file():
        return bundle
    from bertrt.export import export_model  # the exporter; only the report needs it

    log.warning("exporting %s -> %s", checkpoint, bundle)
    export_model(str(checkpoint), str(bundle), task=task, quantize="int8", force=True)
    return bundle


def build_report(
    out_dir: Path,
    *,
    cache: Path | None = None,
    batch_size: int = 32,
    threads: int = 1,
    limit: int | None = None,
    only: str | None = None,
) -> dict:
    """Evaluate the fine-tuned NER and sentiment models (PyTorch, fp32, int8) and write eval.{json,md}.

    ``only="ner"``/``"sentiment"`` re-evaluates that model alone and keeps the other model's
    evaluations from an existing ``out_dir/eval.json``.
    """
    from benchmarks import finetune

    cache = cache or bdata.cache_root()
    evals, recipes = [], {}
    specs = [
        ("ner", NER, lambda: [("WNUT-16 test", bdata.load_wnut16("test"))]),
        (
            "sentiment",
            CLS,
            lambda: [
                ("VADER movies test (in domain)", bdata.load_vader("movies", "test")),
                ("VADER Amazon (out of domain)", bdata.load_vader("amazon")),
                ("VADER tweets (out of domain)", bdata.load_vader("tweets")),
            ],
        ),
    ]
    if only is not None:
        if only not in ("ner", "sentiment"):
            raise InputError(f"only must be ner or sentiment, got {only!r}")
        previous = out_dir / "eval.json"
        if previous.is_file():
            old = json.loads(previous.read_text())
            keep = {w for w, _, _ in specs if w != only}
            recipes = {w: r for w, r in old.get("recipes", {}).items() if w in keep}
            keep_tasks = {t for w, t, _ in specs if w in keep}
            evals = [e for e in old.get("evaluations", []) if e["task"] in keep_tasks]
        specs = [spec for spec in specs if spec[0] == only]
    for which, task, sets in specs:
        ckpt = finetune.output_dir(which, cache / "finetuned")
        manifest = ckpt / "recipe.json"
        if not manifest.is_file():
            raise InputError(
                f"no fine-tuned {which} model in {ckpt}: run python -m benchmarks.finetune {which}"
            )
        recipes[which] = {k: v for k, v in json.loads(manifest.read_text()).items() if k != "labels"}
        bundle = _ensure_bundle(ckpt, cache / "bundles" / ckpt.name, task)
        for name, items in sets():
            evals.append(
                evaluate_bundle(
                    bundle,
                    items,
                    checkpoint=ckpt,
                    batch_size=batch_size,
                    limit=limit,
                    name=name,
                    threads=threads,
                )
            )
    evals.sort(key=lambda e: e["task"] != NER)  # NER first, then the classifier sets in their order
    for ev in evals:  # committed artifact: no user-specific home folder in it
        for key in ("bundle", "checkpoint"):
            ev[key] = _tilde(ev[key])
    for r in recipes.values():
        r["base_model"] = _tilde(r.get("base_model"))
    recipes = {w: recipes[w] for w in ("ner", "sentiment") if w in recipes}
    result = {
        "evaluations": evals,
        "int8_targets": int8_targets(evals),
        "recipes": recipes,
        "machine": machine_info(),
        "data": {
            "wnut16_split": "seeded 70/10/20 (seed 13): 1676/239/479 sentences",
            "vader": "sign of the mean rating, exact zeros dropped; movies seeded 80/10/10 (seed 13)",
        },
    }
    write_results(result, render_report(result), out_dir)
    return result


def _tilde(path: str | None) -> str | None:
    home = str(Path.home())
    return "~" + path[len(home) :] if path and path.startswith(home + os.sep) else path


def render_report(result: dict) -> str:
    """The Markdown of a :func:`build_report` result (also ``python -m benchmarks.eval_report render``)."""
    return render_markdown(
        result["evaluations"],
        title="Accuracy: PyTorch vs bertrt fp32 vs bertrt int8",
        preamble=_report_preamble(result),
    )


def _report_preamble(result: dict) -> str:
    machine = result.get("machine", {})
    lines = [
        (
            "Fine-tuned all-MiniLM-L6-v2 (`python -m benchmarks.finetune all`), exported with "
            "`bertrt export` (default int8 recipe), evaluated with `python -m benchmarks.eval_report report` "
            "on the held-out splits. Every system sees the same texts; NER runs the space-joined "
            'tokens with `aggregation_strategy="first"` (transformers and bertrt alike) and maps the '
            "entities back to the gold tokens by character offsets."
        ),
        "",
        "Data: " + "; ".join(f"{k}: {v}" for k, v in result.get("data", {}).items()) + ".",
        "",
    ]
    for which, r in result.get("recipes", {}).items():
        rec = r["recipe"]
        dev = r.get("dev") or {}
        dev_txt = (
            f"dev F1 {100 * dev['f1']:.1f}"
            if "f1" in dev
            else f"dev accuracy {100 * dev['accuracy']:.1f}"
            if "accuracy" in dev
            else ""
        )
        lines.append(
            f"- {which}: {r['train_examples']} training examples, {rec['epochs']} epoch(s), batch "
            f"{rec['batch_size']}, lr {rec['learning_rate']}, max_length {rec['max_length']}, seed "
            f"{rec['seed']}; {dev_txt}; fine-tuning wall time {r['train_wall_s']:.0f} s on "
            f"{r['threads']} torch thread(s) (shared machine: as measured in that run); "
            f"recipe {r['recipe_hash']}"
        )
    if machine:
        lines += [
            "",
            (
                f"Machine: {machine.get('cpus')} CPUs, {machine.get('platform')}; onnxruntime "
                f"{machine.get('onnxruntime')}, torch {machine.get('torch')}, transformers "
                f"{machine.get('transformers')}."
            ),
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eval_report")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="evaluate the fine-tuned models and write benchmarks/results/eval.*")
    rep.add_argument("--out", type=Path, default=RESULTS)
    rep.add_argument("--batch-size", type=int, default=32)
    rep.add_argument("--threads", type=int, default=1)
    rep.add_argument("--limit", type=int, default=None)
    rep.add_argument(
        "--only",
        choices=["ner", "sentiment"],
        default=None,
        help="re-evaluate one model, keep the other's rows from the existing eval.json",
    )
    ren = sub.add_parser("render", help="re-render eval.md from an existing eval.json (no evaluation)")
    ren.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.command == "render":
        result = json.loads((args.out / "eval.json").read_text())
        (args.out / "eval.md").write_text(render_report(result) + "\n")
        print(f"wrote {args.out / 'eval.md'}")
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    build_report(args.out, batch_size=args.batch_size, threads=args.threads, limit=args.limit, only=args.only)
    print(f"wrote {args.out / 'eval.json'} and {args.out / 'eval.md'}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
