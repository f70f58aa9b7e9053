"""``bertrt eval``: entity-level and accuracy evaluation, PyTorch vs bertrt fp32 vs bertrt int8.

``bertrt eval BUNDLE DATA [--format iob|tsv|jsonl] [--precision fp32 int8] [--pytorch CHECKPOINT]``

* A token-classification bundle on an IOB file (token TAB tag, CoNLL or WNUT format): seqeval's
  entity-level report (precision/recall/F1 per type, micro and macro averages; seqeval's default,
  conlleval-compatible chunking).
* A text-classification bundle on a labelled TSV/JSONL: accuracy, macro-F1 and per-label F1.

Each system runs on the same texts; the report also gives the agreement of every system with the first
one (token tags for NER, labels for classification). Output: ``eval.json`` and ``eval.md`` in ``--out``.

Alignment of NER predictions with pre-split tokens
--------------------------------------------------
The gold data are tokens; the pipelines take text. Each sentence is run as ``" ".join(tokens)`` with
``aggregation_strategy="first"``: a word's label is the label of its first sub-token. For WordPiece a
pipeline "word" is a token plus its ``##`` pieces, so a gold token split at punctuation (``@user``,
``#tag``, URLs) may give several words; the fine-tuning recipe labels every sub-token (continuations
``I-type``) so those words group into one entity. The entities returned (``entity_group``, ``start``,
``end`` in characters) are mapped back with :func:`entities_to_iob`: every token whose character span
overlaps an entity belongs to it, the first such token gets ``B-type`` and the rest ``I-type``; a token
already claimed by an earlier entity keeps it; tokens covered by no entity are ``O``. A token that the tokenizer drops entirely (e.g. a lone
control character) therefore counts as ``O``. The PyTorch reference uses the transformers pipeline with
the same text and the same aggregation, so the three systems are compared on identical terms.

Python API: :func:`evaluate_ner`, :func:`evaluate_classifier` (a callable ``texts -> results`` plus the
labelled data), :func:`ner_metrics`, :func:`classifier_metrics`, :func:`build_report`,
:func:`render_markdown`. ``python -m benchmarks.evaluate report`` regenerates
``benchmarks/results/eval.{json,md}`` from the fine-tuned models (:mod:`benchmarks.finetune`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks import data as bdata
from bertrt.errors import BundleError, InputError, TaskError

__all__ = [
    "add_arguments",
    "bertrt_pipeline",
    "build_report",
    "classifier_metrics",
    "entities_to_iob",
    "evaluate_bundle",
    "evaluate_classifier",
    "evaluate_ner",
    "int8_targets",
    "ner_metrics",
    "pytorch_pipeline",
    "render_markdown",
    "render_report",
    "run",
    "token_spans",
]

log = logging.getLogger("bertrt.benchmarks.evaluate")

NER = "token-classification"
CLS = "text-classification"
PRECISIONS = ("fp32", "int8")


# ------------------------------------------------------------------------------------ alignment


def token_spans(tokens) -> tuple[str, list[tuple[int, int]]]:
    """The text ``" ".join(tokens)`` and each token's ``(start, end)`` character span in it."""
    spans, pos = [], 0
    for tok in tokens:
        spans.append((pos, pos + len(tok)))
        pos += len(tok) + 1
    return " ".join(tokens), spans


def _entity_type(entity: dict) -> str:
    label = entity.get("entity_group") or entity.get("entity")
    if not isinstance(label, str) or not label:
        raise InputError(f"pipeline returned an entity without 'entity_group'/'entity': {entity!r}")
    return label[2:] if label[:2] in ("B-", "I-", "E-", "S-") else label


def entities_to_iob(entities, spans) -> list[str]:
    """Per-token IOB2 tags from character-offset entities (see the module docstring for the rules).

    ``entities``: dicts with ``start``, ``end`` and ``entity_group`` (or ``entity``, whose ``B-``/``I-``
    prefix is dropped); ``spans``: the tokens' ``(start, end)`` spans from :func:`token_spans`.
    """
    tags = ["O"] * len(spans)
    for ent in sorted(entities, key=lambda e: (e["start"], e["end"])):
        start, end = int(ent["start"]), int(ent["end"])
        etype = _entity_type(ent)
        first = True
        for i, (s, e) in enumerate(spans):
            if s < end and start < e and tags[i] == "O":
                tags[i] = ("B-" if first else "I-") + etype
                first = False
    return tags


# -------------------------------------------------------------------------------------- metrics


def _pct(x) -> float:
    return round(100.0 * float(x), 2)


def ner_metrics(gold: list[list[str]], pred: list[list[str]]) -> dict:
    """seqeval entity-level report: per type, micro and macro (percent, 2 decimals), with supports."""
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.metrics.sequence_labeling import get_entities

    if len(gold) != len(pred) or any(len(g) != len(p) for g, p in zip(gold, pred)):
        raise InputError("gold and predicted tag sequences differ in number or length")
    report = classification_report(gold, pred, output_dict=True, zero_division=0)

    def row(d):
        return {"precision": _pct(d["precision"]), "recall": _pct(d["recall"]), "f1": _pct(d["f1-score"]),
                "support": int(d["support"])}

    per_type = {k: row(v) for k, v in report.items() if not k.endswith(" avg")}
    return {
        "per_type": dict(sorted(per_type.items())),
        "micro": row(report["micro avg"]),
        "macro": row(report["macro avg"]),
        "token_accuracy": _pct(accuracy_score(gold, pred)),
        "predicted_entities": len(get_entities(pred)),
        "sentences": len(gold),
        "tokens": sum(len(g) for g in gold),
    }


def classifier_metrics(gold: list[str], pred: list[str]) -> dict:
    """Accuracy, macro-F1 and per-label F1 (percent), plus the positive-class F1 when there is one."""
    from sklearn.metrics import accuracy_score, f1_score

    if len(gold) != len(pred):
        raise InputError(f"{len(gold)} gold labels but {len(pred)} predictions")
    labels = sorted(set(gold) | set(pred))
    per_label = f1_score(gold, pred, labels=labels, average=None, zero_division=0)
    out = {
        "accuracy": _pct(accuracy_score(gold, pred)),
        "macro_f1": _pct(f1_score(gold, pred, labels=labels, average="macro", zero_division=0)),
        "f1_per_label": {lab: _pct(f) for lab, f in zip(labels, per_label)},
        "examples": len(gold),
    }
    if "positive" in labels:
        out["f1_positive"] = out["f1_per_label"]["positive"]
    return out


def _agreement(a: list, b: list) -> float:
    flat_a = [x for s in a for x in (s if isinstance(s, list) else [s])]
    flat_b = [x for s in b for x in (s if isinstance(s, list) else [s])]
    return _pct(sum(x == y for x, y in zip(flat_a, flat_b)) / max(len(flat_a), 1))


# ------------------------------------------------------------------------------------ evaluation


def _run_batched(pipe_fn, texts: list[str], chunk: int, desc: str) -> list:
    from tqdm import tqdm

    results: list = []
    with tqdm(total=len(texts), desc=desc, unit="text", mininterval=2, file=sys.stderr,
              disable=not sys.stderr.isatty() and not log.isEnabledFor(logging.INFO)) as bar:
        for i in range(0, len(texts), chunk):
            part = texts[i:i + chunk]
            out = pipe_fn(part)
            if not isinstance(out, list) or len(out) != len(part):
                raise InputError(f"{desc}: the pipeline returned {type(out).__name__} of "
                                 f"{len(out) if hasattr(out, '__len__') else '?'} items for {len(part)} texts")
            results += out
            bar.update(len(part))
    return results


def evaluate_ner(pipe_fn, sentences: list[bdata.Sentence], *, chunk: int = 256, desc: str = "ner") -> dict:
    """Run ``pipe_fn(list_of_texts) -> list of entity lists`` on the space-joined sentences and score it.

    Returns :func:`ner_metrics` plus ``tags`` (the predicted per-token tags) and ``wall_s``.
    """
    if not sentences:
        raise InputError("no sentences to evaluate")
    texts, spans = zip(*(token_spans(s.tokens) for s in sentences))
    start = time.perf_counter()
    results = _run_batched(pipe_fn, list(texts), chunk, desc)
    wall = time.perf_counter() - start
    pred = [entities_to_iob(ents, sp) for ents, sp in zip(results, spans)]
    gold = [list(s.tags) for s in sentences]
    metrics = ner_metrics(gold, pred)
    metrics["wall_s"] = round(wall, 2)
    metrics["tags"] = pred
    return metrics


def _top_label(result) -> str:
    if isinstance(result, list):  # top_k style: a list of {label, score}, best first
        result = max(result, key=lambda d: d["score"])
    return result["label"]


def _gold_mapper(gold_labels: set[str], id2label: dict | None):
    """Map gold labels onto the model's label names: names as they are, integer ids through id2label."""
    if not id2label:
        return lambda x: x
    names = {str(v) for v in id2label.values()}
    by_id = {str(k): str(v) for k, v in id2label.items()}
    unknown = sorted(g for g in gold_labels if g not in names and g not in by_id)
    if unknown:
        raise InputError(f"gold labels {unknown[:10]} are neither label names {sorted(names)} nor label ids "
                         f"{sorted(by_id)} of the model")
    return lambda x: x if x in names else by_id[x]


def evaluate_classifier(pipe_fn, examples: list[bdata.Example], *, id2label: dict | None = None,
                        chunk: int = 256, desc: str = "classify") -> dict:
    """Run ``pipe_fn(list_of_texts) -> list of {label, score}`` on the examples and score it.

    Gold labels may be label names or integer ids of ``id2label``. Returns :func:`classifier_metrics`
    plus ``labels`` (the predictions) and ``wall_s``.
    """
    if not examples:
        raise InputError("no examples to evaluate")
    to_name = _gold_mapper({e.label for e in examples}, id2label)
    gold = [to_name(e.label) for e in examples]
    start = time.perf_counter()
    results = _run_batched(pipe_fn, [e.text for e in examples], chunk, desc)
    wall = time.perf_counter() - start
    pred = [str(_top_label(r)) for r in results]
    metrics = classifier_metrics(gold, pred)
    metrics["wall_s"] = round(wall, 2)
    metrics["labels"] = pred
    return metrics


# ------------------------------------------------------------------------------------- pipelines


def _sorted_call(call, texts: list[str]) -> list:
    """Run ``call`` on texts sorted by length (less padding), then restore the input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = call([texts[i] for i in order])
    restored = [None] * len(texts)
    for pos, i in enumerate(order):
        restored[i] = out[pos]
    return restored


def pytorch_pipeline(task: str, checkpoint: str | Path, *, batch_size: int = 32, threads: int | None = None):
    """The reference: ``transformers.pipeline`` on PyTorch (CPU), NER with ``aggregation_strategy="first"``."""
    import torch
    import transformers

    if threads:
        torch.set_num_threads(threads)
    kwargs = {"aggregation_strategy": "first"} if task == NER else {}
    pipe = transformers.pipeline(task, model=str(checkpoint), tokenizer=str(checkpoint), device=-1, **kwargs)
    call_kwargs = {"truncation": True} if task == CLS else {}
    return lambda texts: _sorted_call(lambda t: pipe(t, batch_size=batch_size, **call_kwargs), texts)


def bertrt_pipeline(task: str, bundle: str | Path, precision: str, *, batch_size: int = 32,
                    threads: int | None = None):
    """bertrt's pipeline for ``bundle`` at ``precision`` (NER with ``aggregation_strategy="first"``)."""
    import bertrt

    kwargs = {"aggregation_strategy": "first"} if task == NER else {}
    pipe = bertrt.pipeline(task, str(bundle), precision=precision, threads=threads)
    return lambda texts: pipe(texts, batch_size=batch_size, **kwargs)


def _bundle_task(bundle: Path) -> tuple[str, dict]:
    """The bundle's task (bundle.json, else config.json's architectures) and its id2label."""
    from bertrt.tasks import infer_task, normalize_task

    if not bundle.is_dir():
        raise BundleError(bundle, "not a folder")
    config_path = bundle / "config.json"
    config = json.loads(config_path.read_text()) if config_path.is_file() else {}
    manifest_path = bundle / "bundle.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    task = manifest.get("task") or (infer_task(config) if config else None)
    if task is None:
        raise BundleError(bundle, "neither bundle.json nor config.json names the task")
    id2label = manifest.get("id2label") or config.get("id2label") or {}
    return normalize_task(task), {str(k): v for k, v in id2label.items()}


def evaluate_bundle(bundle, data, *, fmt: str | None = None, precisions=PRECISIONS, checkpoint=None,
                    batch_size: int = 32, limit: int | None = None, name: str | None = None,
                    threads: int | None = None) -> dict:
    """Evaluate PyTorch (when ``checkpoint``) and bertrt at each precision on one labelled data set.

    ``data``: a path (IOB for NER, TSV/JSONL for classifiers) or an already loaded list of
    :class:`benchmarks.data.Sentence` / :class:`benchmarks.data.Example`.
    """
    bundle = Path(bundle)
    task, id2label = _bundle_task(bundle)
    if task not in (NER, CLS):
        raise TaskError(f"bertrt eval evaluates token-classification and text-classification bundles; "
                        f"{bundle} is a {task} bundle")
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise InputError(f"unknown precision(s) {bad}; expected any of {', '.join(PRECISIONS)}")
    if isinstance(data, (str, Path)):
        path = Path(data)
        fmt = fmt or ("jsonl" if path.suffix.lower() in (".jsonl", ".json") else
                      "tsv" if path.suffix.lower() == ".tsv" or task == CLS else "iob")
        if (task == NER) != (fmt == "iob"):
            raise InputError(f"a {task} bundle needs {'an IOB' if task == NER else 'a TSV/JSONL'} file, "
                             f"got format {fmt!r} for {path}")
        items = bdata.read_iob(path) if fmt == "iob" else bdata.read_labelled(path, fmt)
        name = name or path.name
    else:
        items = list(data)
        name = name or "data"
    if limit is not None:
        items = items[:limit]

    systems: dict[str, tuple[str, callable]] = {}
    if checkpoint is not None:
        systems["pytorch"] = ("transformers pipeline (PyTorch fp32)",
                              pytorch_pipeline(task, checkpoint, batch_size=batch_size, threads=threads))
    for p in precisions:
        systems[f"bertrt-{p}"] = (f"bertrt {p}", bertrt_pipeline(task, bundle, p, batch_size=batch_size,
                                                                      threads=threads))

    results: dict[str, dict] = {}
    for key, (_, fn) in systems.items():
        log.info("evaluating %s on %s (%d items)", key, name, len(items))
        if task == NER:
            results[key] = evaluate_ner(fn, items, desc=f"{key} {name}")
        else:
            results[key] = evaluate_classifier(fn, items, id2label=id2label, desc=f"{key} {name}")

    field = "tags" if task == NER else "labels"
    keys = list(results)
    agreement = {f"{b} vs {a}": _agreement(results[a][field], results[b][field])
                 for i, a in enumerate(keys) for b in keys[i + 1:]}
    for r in results.values():
        r.pop(field)
    return {
        "task": task,
        "dataset": name,
        "size": len(items),
        "bundle": str(bundle),
        "checkpoint": str(checkpoint) if checkpoint else None,
        "systems": results,
        "system_names": {k: v[0] for k, v in systems.items()},
        "agreement": agreement,
    }


# ----------------------------------------------------------------------------------- int8 targets

#: issue 4's accuracy targets: int8 within this many points of fp32 (NER micro-F1, classifier accuracy)
INT8_TOLERANCE = {NER: ("micro F1", 1.0), CLS: ("accuracy", 1.0)}


def int8_targets(evals: list[dict]) -> list[dict]:
    """int8 vs fp32 per evaluation: the figure, both values, the difference and whether it is within
    :data:`INT8_TOLERANCE` (absolute difference). Evaluations without both precisions are left out."""
    rows = []
    for ev in evals:
        systems = ev["systems"]
        if "bertrt-fp32" not in systems or "bertrt-int8" not in systems:
            continue
        figure, tol = INT8_TOLERANCE[ev["task"]]
        pick = (lambda m: m["micro"]["f1"]) if ev["task"] == NER else (lambda m: m["accuracy"])
        fp32, int8 = pick(systems["bertrt-fp32"]), pick(systems["bertrt-int8"])
        delta = round(int8 - fp32, 2)
        rows.append({"dataset": ev["dataset"], "figure": figure, "fp32": fp32, "int8": int8, "delta": delta,
                     "tolerance": tol, "met": abs(delta) <= tol})
    return rows


# -------------------------------------------------------------------------------------- markdown


def _prf(m: dict) -> str:
    return f"{m['precision']:.1f} / {m['recall']:.1f} / **{m['f1']:.1f}**"


def _ner_table(ev: dict) -> list[str]:
    keys = list(ev["systems"])
    lines = ["| type | support | " + " | ".join(f"{k} P / R / F1" for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    first = ev["systems"][keys[0]]
    types = sorted({t for k in keys for t in ev["systems"][k]["per_type"]})
    for etype in types:
        rows = [ev["systems"][k]["per_type"].get(etype) for k in keys]
        support = next(r["support"] for r in rows if r is not None)
        cells = [_prf(r or {"precision": 0, "recall": 0, "f1": 0}) for r in rows]
        lines.append(f"| {etype} | {support} | " + " | ".join(cells) + " |")
    for avg in ("micro", "macro"):
        cells = [_prf(ev["systems"][k][avg]) for k in keys]
        lines.append(f"| **{avg} avg** | {first[avg]['support']} | " + " | ".join(cells) + " |")
    return lines


def _cls_table(evals: list[dict], reference: str | None = None) -> list[str]:
    keys = list(evals[0]["systems"])
    ref = evals[0] if reference is None else next(e for e in evals if e["dataset"] == reference)
    delta = " (Δacc)" if len(evals) > 1 else ""
    lines = ["| data set | n | " + " | ".join(f"{k} acc / macro-F1{delta}" for k in keys) + " |",
             "|---|---:|" + "---:|" * len(keys)]
    for ev in evals:
        cells = []
        for k in keys:
            m = ev["systems"][k]
            delta = m["accuracy"] - ref["systems"][k]["accuracy"]
            d = "" if ev is ref else f" ({delta:+.1f})"
            cells.append(f"{m['accuracy']:.1f} / {m['macro_f1']:.1f}{d}")
        lines.append(f"| {ev['dataset']} | {ev['size']} | " + " | ".join(cells) + " |")
    return lines


def render_markdown(evals: list[dict], title: str = "bertrt eval", preamble: str = "") -> str:
    """Markdown for a list of :func:`evaluate_bundle` results (NER tables, one classifier table)."""
    out = [f"# {title}", ""]
    if preamble:
        out += [preamble, ""]
    ner = [e for e in evals if e["task"] == NER]
    cls = [e for e in evals if e["task"] == CLS]
    for ev in ner:
        out += [f"## NER: {ev['dataset']} ({ev['size']} sentences)", "",
                ("Entity-level (seqeval, default mode), percent: precision / recall / **F1**; macro averages "
                 "over the types in gold or predictions."), ""]
        out += _ner_table(ev)
        out += ["", "Token-tag agreement: " + ", ".join(f"{k} {v:.2f}%" for k, v in ev["agreement"].items()),
                ""]
    if cls:
        note = (f"; (Δacc): accuracy change from the first row, {cls[0]['dataset']}, i.e. what moving to "
                "that data costs" if len(cls) > 1 else "")
        out += ["## Classification", "", f"Accuracy / macro-F1 in percent{note}.", ""]
        out += _cls_table(cls)
        out += [""]
        for ev in cls:
            if ev["agreement"]:
                out.append(f"- label agreement on {ev['dataset']}: "
                           + ", ".join(f"{k} {v:.2f}%" for k, v in ev["agreement"].items()))
        out += [""]
    targets = int8_targets(evals)
    if targets:
        out += ["## int8 vs fp32 (target: within 1.0 point)", "",
                "| data set | figure | fp32 | int8 | Δ | target |", "|---|---|---:|---:|---:|---|"]
        out += [f"| {t['dataset']} | {t['figure']} | {t['fp32']:.2f} | {t['int8']:.2f} | {t['delta']:+.2f} | "
                f"{'met' if t['met'] else 'MISSED'} (±{t['tolerance']}) |" for t in targets]
        out += [""]
    return "\n".join(out)


def _write(result: dict, markdown: str, out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "eval.json", out_dir / "eval.md"
    json_path.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    md_path.write_text(markdown + "\n")
    return json_path, md_path


def _machine() -> dict:
    import onnxruntime

    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count(),
            "onnxruntime": onnxruntime.__version__}
    try:
        import torch
        import transformers

        info.update(torch=torch.__version__, transformers=transformers.__version__)
    except ImportError:
        pass
    return info


# ------------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bertrt bundle folder (token- or text-classification)")
    parser.add_argument("data", type=Path, help="labelled data: IOB file (NER) or TSV/JSONL (classifier)")
    parser.add_argument("--format", choices=["iob", "tsv", "jsonl"], default=None,
                        help="data format (default: from the suffix and the bundle's task)")
    parser.add_argument("--precision", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="bertrt precisions to evaluate (default: fp32 int8)")
    parser.add_argument("--pytorch", type=Path, default=None, metavar="CHECKPOINT",
                        help="also evaluate this Hugging Face checkpoint with transformers.pipeline")
    parser.add_argument("--out", type=Path, default=Path("eval-results"),
                        help="folder for eval.json and eval.md (default ./eval-results)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    parser.add_argument("--threads", type=int, default=None, help="intra-op threads for every system (default: each library's own)")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    if args.pytorch is not None and not args.pytorch.is_dir():
        raise InputError(f"--pytorch {args.pytorch}: not a checkpoint folder")
    ev = evaluate_bundle(args.bundle, args.data, fmt=args.format, precisions=args.precision,
                         checkpoint=args.pytorch, batch_size=args.batch_size, limit=args.limit,
                         threads=args.threads)
    markdown = render_markdown([ev], title=f"bertrt eval: {args.bundle.name} on {ev['dataset']}")
    json_path, md_path = _write({"evaluations": [ev], "machine": _machine()}, markdown, args.out)
    print(markdown)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0


# ------------------------------------------------------------------------------- full report


def _ensure_bundle(checkpoint: Path, bundle: Path, task: str) -> Path:
    if (bundle / "bundle.json").is_file():
        return bundle
    from bertrt.export import export_model  # the exporter; only the report needs it

    log.warning("exporting %s -> %s", checkpoint, bundle)
    export_model(str(checkpoint), str(bundle), task=task, quantize="int8", force=True)
    return bundle


def build_report(out_dir: Path, *, cache: Path | None = None, batch_size: int = 32, threads: int = 1,
                 limit: int | None = None, only: str | None = None) -> dict:
    """Evaluate the fine-tuned NER and sentiment models (PyTorch, fp32, int8) and write eval.{json,md}.

    ``only="ner"``/``"sentiment"`` re-evaluates that model alone and keeps the other model's
    evaluations from an existing ``out_dir/eval.json``.
    """
    from benchmarks import finetune

    cache = cache or bdata.cache_root()
    evals, recipes = [], {}
    specs = [("ner", NER, lambda: [("WNUT-16 test", bdata.load_wnut16("test"))]),
             ("sentiment", CLS, lambda: [("VADER movies test (in domain)", bdata.load_vader("movies", "test")),
                                         ("VADER Amazon (out of domain)", bdata.load_vader("amazon")),
                                         ("VADER tweets (out of domain)", bdata.load_vader("tweets"))])]
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
            raise InputError(f"no fine-tuned {which} model in {ckpt}: run python -m benchmarks.finetune {which}")
        recipes[which] = {k: v for k, v in json.loads(manifest.read_text()).items() if k != "labels"}
        bundle = _ensure_bundle(ckpt, cache / "bundles" / ckpt.name, task)
        for name, items in sets():
            evals.append(evaluate_bundle(bundle, items, checkpoint=ckpt, batch_size=batch_size, limit=limit,
                                         name=name, threads=threads))
    evals.sort(key=lambda e: e["task"] != NER)  # NER first, then the classifier sets in their order
    for ev in evals:  # committed artifact: no user-specific home folder in it
        for key in ("bundle", "checkpoint"):
            ev[key] = _tilde(ev[key])
    for r in recipes.values():
        r["base_model"] = _tilde(r.get("base_model"))
    recipes = {w: recipes[w] for w in ("ner", "sentiment") if w in recipes}
    result = {"evaluations": evals, "int8_targets": int8_targets(evals), "recipes": recipes, "machine": _machine(),
              "data": {"wnut16_split": "seeded 70/10/20 (seed 13): 1676/239/479 sentences",
                       "vader": "sign of the mean rating, exact zeros dropped; movies seeded 80/10/10 (seed 13)"}}
    _write(result, render_report(result), out_dir)
    return result


def _tilde(path: str | None) -> str | None:
    home = str(Path.home())
    return "~" + path[len(home):] if path and path.startswith(home + os.sep) else path


def render_report(result: dict) -> str:
    """The Markdown of a :func:`build_report` result (also ``python -m benchmarks.evaluate render``)."""
    return render_markdown(result["evaluations"], title="Accuracy: PyTorch vs bertrt fp32 vs bertrt int8",
                           preamble=_report_preamble(result))


def _report_preamble(result: dict) -> str:
    machine = result.get("machine", {})
    lines = [("Fine-tuned all-MiniLM-L6-v2 (`python -m benchmarks.finetune all`), exported with "
              "`bertrt export` (default int8 recipe), evaluated with `python -m benchmarks.evaluate report` "
              "on the held-out splits. Every system sees the same texts; NER runs the space-joined "
              "tokens with `aggregation_strategy=\"first\"` (transformers and bertrt alike) and maps the "
              "entities back to the gold tokens by character offsets."), "",
             "Data: " + "; ".join(f"{k}: {v}" for k, v in result.get("data", {}).items()) + ".", ""]
    for which, r in result.get("recipes", {}).items():
        rec = r["recipe"]
        dev = r.get("dev") or {}
        dev_txt = (f"dev F1 {100 * dev['f1']:.1f}" if "f1" in dev else
                   f"dev accuracy {100 * dev['accuracy']:.1f}" if "accuracy" in dev else "")
        lines.append(f"- {which}: {r['train_examples']} training examples, {rec['epochs']} epoch(s), batch "
                     f"{rec['batch_size']}, lr {rec['learning_rate']}, max_length {rec['max_length']}, seed "
                     f"{rec['seed']}; {dev_txt}; fine-tuning wall time {r['train_wall_s']:.0f} s on "
                     f"{r['threads']} torch thread(s) (shared machine: as measured in that run); "
                     f"recipe {r['recipe_hash']}")
    if machine:
        lines += ["", (f"Machine: {machine.get('cpus')} CPUs, {machine.get('platform')}; onnxruntime "
                      f"{machine.get('onnxruntime')}, torch {machine.get('torch')}, transformers "
                      f"{machine.get('transformers')}.")]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluate")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="evaluate the fine-tuned models and write benchmarks/results/eval.*")
    rep.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    rep.add_argument("--batch-size", type=int, default=32)
    rep.add_argument("--threads", type=int, default=1)
    rep.add_argument("--limit", type=int, default=None)
    rep.add_argument("--only", choices=["ner", "sentiment"], default=None,
                     help="re-evaluate one model, keep the other's rows from the existing eval.json")
    ren = sub.add_parser("render", help="re-render eval.md from an existing eval.json (no evaluation)")
    ren.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
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
