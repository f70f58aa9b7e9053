"""Running systems on labelled data: bertrt at each precision and, optionally, the PyTorch reference.

A *system* is a callable ``texts -> results`` (entity lists for NER, ``{label, score}`` for classifiers).
:func:`evaluate_ner` and :func:`evaluate_classifier` run one system on the data in chunks and score it;
:func:`evaluate_bundle` does so for every system on one bundle and adds their pairwise agreement.

Scoring a bundle needs the runtime and seqeval only. The PyTorch column (:func:`pytorch_pipeline`) runs
``transformers.pipeline`` with the same text and the same aggregation, imported only when asked for
(it needs ``bertrt[export]``).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..errors import BertrtError, BundleError, InputError, TaskError
from .align import entities_to_iob, token_spans
from .metrics import agreement, classifier_metrics, ner_metrics, require_seqeval
from .readers import Example, Sentence, read_iob, read_labelled

__all__ = [
    "CLS",
    "NER",
    "PRECISIONS",
    "bertrt_pipeline",
    "bundle_task",
    "evaluate_bundle",
    "evaluate_classifier",
    "evaluate_ner",
    "pytorch_pipeline",
]

log = logging.getLogger("bertrt.evaluate")

NER = "token-classification"
CLS = "text-classification"
PRECISIONS = ("fp32", "int8")


class _NoBar:
    """Stands in for a tqdm bar when tqdm is not installed (it is not part of ``bertrt[eval]``)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n: int) -> None:
        pass


def _bar(total: int, desc: str):
    disable = not sys.stderr.isatty() and not log.isEnabledFor(logging.INFO)
    try:
        from tqdm import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc=desc, unit="text", mininterval=2, file=sys.stderr, disable=disable)


def _run_batched(pipe_fn, texts: list[str], chunk: int, desc: str) -> list:
    results: list = []
    with _bar(len(texts), desc) as bar:
        for i in range(0, len(texts), chunk):
            part = texts[i : i + chunk]
            out = pipe_fn(part)
            if not isinstance(out, list) or len(out) != len(part):
                size = len(out) if hasattr(out, "__len__") else "?"
                raise InputError(
                    f"{desc}: the pipeline returned {type(out).__name__} of {size} items "
                    f"for {len(part)} texts"
                )
            results += out
            bar.update(len(part))
    return results


def evaluate_ner(pipe_fn, sentences: list[Sentence], *, chunk: int = 256, desc: str = "ner") -> dict:
    """Run ``pipe_fn(list_of_texts) -> list of entity lists`` on the space-joined sentences and score it.

    Returns :func:`~bertrt.evaluate.metrics.ner_metrics` plus ``tags`` (the predicted per-token tags)
    and ``wall_s``.
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
        raise InputError(
            f"gold labels {unknown[:10]} are neither label names {sorted(names)} nor label ids "
            f"{sorted(by_id)} of the model"
        )
    return lambda x: x if x in names else by_id[x]


def evaluate_classifier(
    pipe_fn,
    examples: list[Example],
    *,
    id2label: dict | None = None,
    chunk: int = 256,
    desc: str = "classify",
) -> dict:
    """Run ``pipe_fn(list_of_texts) -> list of {label, score}`` on the examples and score it.

    Gold labels may be label names or integer ids of ``id2label``. Returns
    :func:`~bertrt.evaluate.metrics.classifier_metrics` plus ``labels`` (the predictions) and ``wall_s``.
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


# ------------------------------------------------------------------------------------- systems


def _sorted_call(call, texts: list[str]) -> list:
    """Run ``call`` on texts sorted by length (less padding), then restore the input order."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    out = call([texts[i] for i in order])
    restored = [None] * len(texts)
    for pos, i in enumerate(order):
        restored[i] = out[pos]
    return restored


def pytorch_pipeline(task: str, checkpoint: str | Path, *, batch_size: int = 32, threads: int | None = None):
    """The reference: ``transformers.pipeline`` on PyTorch (CPU), NER with ``aggregation_strategy="first"``.

    Needs ``bertrt[export]`` (torch, transformers); without it a :class:`~bertrt.errors.BertrtError` says so.
    """
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise BertrtError(
            f"the PyTorch reference (--pytorch) needs torch and transformers ({exc}): "
            "pip install 'bertrt[export]'"
        ) from exc

    if threads:
        torch.set_num_threads(threads)
    kwargs = {"aggregation_strategy": "first"} if task == NER else {}
    pipe = transformers.pipeline(task, model=str(checkpoint), tokenizer=str(checkpoint), device=-1, **kwargs)
    call_kwargs = {"truncation": True} if task == CLS else {}
    return lambda texts: _sorted_call(lambda t: pipe(t, batch_size=batch_size, **call_kwargs), texts)


def bertrt_pipeline(
    task: str, bundle: str | Path, precision: str, *, batch_size: int = 32, threads: int | None = None
):
    """bertrt's pipeline for ``bundle`` at ``precision`` (NER with ``aggregation_strategy="first"``)."""
    from .. import pipeline

    kwargs = {"aggregation_strategy": "first"} if task == NER else {}
    pipe = pipeline(task, str(bundle), precision=precision, threads=threads)
    return lambda texts: pipe(texts, batch_size=batch_size, **kwargs)


def bundle_task(bundle: Path) -> tuple[str, dict]:
    """The bundle's task (bundle.json, else config.json's architectures) and its id2label."""
    from ..tasks import infer_task, normalize_task

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


def _load_items(data, task: str, fmt: str | None, name: str | None) -> tuple[list, str]:
    """The labelled items of ``data`` (a path, or items already loaded) and the data set's name."""
    if not isinstance(data, (str, Path)):
        return list(data), name or "data"
    path = Path(data)
    suffix = path.suffix.lower()
    if not fmt:
        fmt = (
            "jsonl" if suffix in (".jsonl", ".json") else "tsv" if suffix == ".tsv" or task == CLS else "iob"
        )
    if (task == NER) != (fmt == "iob"):
        raise InputError(
            f"a {task} bundle needs {'an IOB' if task == NER else 'a TSV/JSONL'} file, "
            f"got format {fmt!r} for {path}"
        )
    items = read_iob(path) if fmt == "iob" else read_labelled(path, fmt)
    return items, name or path.name


def evaluate_bundle(
    bundle,
    data,
    *,
    fmt: str | None = None,
    precisions=PRECISIONS,
    checkpoint=None,
    batch_size: int = 32,
    limit: int | None = None,
    name: str | None = None,
    threads: int | None = None,
) -> dict:
    """Evaluate PyTorch (when ``checkpoint``) and bertrt at each precision on one labelled data set.

    ``data``: a path (IOB for NER, TSV/JSONL for classifiers) or an already loaded list of
    :class:`~bertrt.evaluate.readers.Sentence` / :class:`~bertrt.evaluate.readers.Example`.
    """
    bundle = Path(bundle)
    task, id2label = bundle_task(bundle)
    if task not in (NER, CLS):
        raise TaskError(
            f"bertrt eval evaluates token-classification and text-classification bundles; "
            f"{bundle} is a {task} bundle"
        )
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise InputError(f"unknown precision(s) {bad}; expected any of {', '.join(PRECISIONS)}")
    if task == NER:
        require_seqeval()  # before any system runs
    items, name = _load_items(data, task, fmt, name)
    if limit is not None:
        items = items[:limit]

    systems: dict[str, tuple[str, Callable]] = {}
    if checkpoint is not None:
        systems["pytorch"] = (
            "transformers pipeline (PyTorch fp32)",
            pytorch_pipeline(task, checkpoint, batch_size=batch_size, threads=threads),
        )
    for p in precisions:
        systems[f"bertrt-{p}"] = (
            f"bertrt {p}",
            bertrt_pipeline(task, bundle, p, batch_size=batch_size, threads=threads),
        )
    results: dict[str, dict] = {}
    for key, (_, fn) in systems.items():
        log.info("evaluating %s on %s (%d items)", key, name, len(items))
        if task == NER:
            results[key] = evaluate_ner(fn, items, desc=f"{key} {name}")
        else:
            results[key] = evaluate_classifier(fn, items, id2label=id2label, desc=f"{key} {name}")

    field = "tags" if task == NER else "labels"
    keys = list(results)
    agree = {
        f"{b} vs {a}": agreement(results[a][field], results[b][field])
        for i, a in enumerate(keys)
        for b in keys[i + 1 :]
    }
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
        "agreement": agree,
    }
