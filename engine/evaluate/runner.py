"""Running systems on labelled data: bertrt at each precision and, optionally, the PyTorch reference.

A *system* is a callable ``texts -> results`` (entity lists for NER, ``{label, score}`` for classifiers,
``{answer, ...}`` for questions). What a task is scored on and how is the task's
:attr:`~bertrt.tasks.base.Task.evaluation`: its data (``iob``: entities, seqeval; ``labelled``: one label
per text, among the data's labels for zero-shot; ``squad``: questions, SQuAD exact match / F1), its
headline metric and the options every system runs with; this module knows no task name.
:func:`evaluate_ner`, :func:`evaluate_classifier` and :func:`evaluate_qa` run one system on the data in
chunks and score it;
:func:`evaluate_bundle` does so for every system on one bundle and adds their pairwise agreement.

Scoring a bundle needs the runtime and seqeval only. The PyTorch column (:func:`pytorch_pipeline`) runs
``transformers.pipeline`` with the same text and the same aggregation, imported only when asked for
(it needs ``bertrt[export]``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..bundle import read_metadata
from ..errors import BertrtError, BundleError, InputError, TaskError
from ..ordering import sorted_call
from ..tasks import TASKS, get_task
from .align import entities_to_iob, token_spans
from .metrics import agreement, classifier_metrics, ner_metrics, require_seqeval, squad_metrics
from .readers import JSONL_SUFFIXES, Example, QAExample, Sentence, read_iob, read_labelled, read_squad

__all__ = [
    "PRECISIONS",
    "bertrt_pipeline",
    "bundle_task",
    "data_kind",
    "evaluate_bundle",
    "evaluate_classifier",
    "evaluate_ner",
    "evaluate_qa",
    "evaluation_of",
    "gold_labels_not_in_model",
    "headline",
    "is_iob",
    "item_texts",
    "label_options",
    "pytorch_pipeline",
    "require_metric",
    "score",
]

log = logging.getLogger("bertrt.evaluate")

PRECISIONS = ("fp32", "int8")
_TAG_PREFIXES = ("B-", "I-", "E-", "S-")


def evaluation_of(task: str):
    """The task's :class:`~bertrt.tasks.base.Evaluation`; TaskError naming the tasks that have one."""
    spec = get_task(task)
    if spec.evaluation is None:
        scored = [name for name in TASKS if get_task(name).evaluation is not None]
        raise TaskError(f"bertrt eval evaluates {' and '.join(scored)} bundles; this is a {spec.name} bundle")
    return spec.evaluation


def data_kind(task: str) -> str:
    """What ``task`` is scored on: ``iob``, ``labelled`` or ``squad`` (:class:`~bertrt.tasks.base.Evaluation`)."""
    return evaluation_of(task).data


def is_iob(task: str) -> bool:
    """Whether ``task`` is scored on IOB data (entities, seqeval) rather than one label per text."""
    return evaluation_of(task).data == "iob"


def require_metric(task: str) -> None:
    """Fail early (before any system runs) when the task's metric needs a missing extra (seqeval)."""
    if is_iob(task):
        require_seqeval()


def item_texts(task: str, items: list) -> list[str]:
    """The texts of loaded ``items`` (``tune``'s sample): IOB sentences' tokens joined, questions' contexts."""
    if data_kind(task) == "squad":
        return [e.context for e in items]
    return [token_spans(s.tokens)[0] for s in items] if is_iob(task) else [e.text for e in items]


def score(task: str, system, items: list, *, id2label: dict | None = None, desc: str = "score") -> dict:
    """Run ``system`` on ``items`` and score it with the task's metric (:func:`evaluate_ner` or
    :func:`evaluate_classifier`; ``id2label`` maps a classifier's gold ids to label names)."""
    if is_iob(task):
        return evaluate_ner(system, items, desc=desc)
    if data_kind(task) == "squad":
        return evaluate_qa(system, items, desc=desc)
    return evaluate_classifier(system, items, id2label=id2label, desc=desc)


def headline(task: str, metrics: dict) -> float:
    """The task's headline figure in points out of :func:`score`'s metrics (NER: micro F1; else the metric
    the task names: accuracy, SQuAD F1)."""
    evaluation = evaluation_of(task)
    return float(metrics["micro"]["f1"] if evaluation.data == "iob" else metrics[evaluation.metric])


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


def _model_names(iob: bool, id2label: dict) -> set[str]:
    """What the model can predict: its entity types (labels without B-/I-/E-/S-, ``O`` left out) for NER,
    its label names for classifiers."""
    names = {str(v) for v in id2label.values()}
    if not iob:
        return names
    return {n[2:] if n[:2] in _TAG_PREFIXES else n for n in names} - {"O"}


def gold_labels_not_in_model(task: str, items: list, id2label: dict | None) -> dict[str, int]:
    """The gold entity types (NER) or gold labels (classifiers) that the model's labels do not contain,
    each with its support (gold entities, seqeval's chunking; examples), sorted by name.

    Such a type or label can never be predicted, so it scores 0 F1 and drags the averages down; the
    callers warn and report it. A classifier's gold label may be a label name or an id of ``id2label``.
    Raises InputError when *no* gold type or label is one of the model's (nothing could score: the data
    and the model name their labels differently). ``{}`` when ``id2label`` is empty (nothing to compare).
    """
    return _gold_not_in_model(is_iob(task), items, id2label)


def _gold_not_in_model(iob: bool, items: list, id2label: dict | None) -> dict[str, int]:
    if not id2label:
        return {}
    known = _model_names(iob, id2label)
    if iob:
        require_seqeval()
        from seqeval.metrics.sequence_labeling import get_entities

        support = Counter(etype for etype, _, _ in get_entities([list(s.tags) for s in items]))
        ids: set[str] = set()
    else:
        support = Counter(e.label for e in items)
        ids = {str(k) for k in id2label}
    unknown = {g: n for g, n in sorted(support.items()) if g not in known and g not in ids}
    if unknown and len(unknown) == len(support):
        if iob:
            raise InputError(
                f"none of the gold entity types {sorted(unknown)[:10]} is an entity type of the model "
                f"{sorted(known)}: every entity would score 0; the data and the model name their types "
                "differently"
            )
        raise InputError(
            f"gold labels {sorted(unknown)[:10]} are neither label names {sorted(known)} nor label ids "
            f"{sorted(ids)} of the model"
        )
    return unknown


def _warn_unknown(iob: bool, unknown: dict[str, int], id2label: dict, desc: str) -> None:
    what = "entity types" if iob else "labels"
    log.warning(
        "%s: gold %s that the model does not have, so they score 0 F1 (support in brackets): %s; "
        "the model's %s: %s",
        desc,
        what,
        ", ".join(f"{g} ({n})" for g, n in unknown.items()),
        what,
        ", ".join(sorted(_model_names(iob, id2label))),
    )


def evaluate_ner(
    pipe_fn,
    sentences: list[Sentence],
    *,
    chunk: int = 256,
    desc: str = "ner",
    id2label: dict | None = None,
) -> dict:
    """Run ``pipe_fn(list_of_texts) -> list of entity lists`` on the space-joined sentences and score it.

    Returns :func:`~bertrt.evaluate.metrics.ner_metrics` plus ``tags`` (the predicted per-token tags)
    and ``wall_s``. With ``id2label`` (the model's labels), gold entity types the model does not have
    are logged as a warning and listed in ``gold_labels_not_in_model`` (see
    :func:`gold_labels_not_in_model`).
    """
    if not sentences:
        raise InputError("no sentences to evaluate")
    unknown = _gold_not_in_model(True, sentences, id2label)
    if unknown:
        _warn_unknown(True, unknown, id2label, desc)
    texts, spans = zip(*(token_spans(s.tokens) for s in sentences))
    results, wall = _timed_run(pipe_fn, list(texts), chunk, desc)
    pred = [entities_to_iob(ents, sp) for ents, sp in zip(results, spans)]
    gold = [list(s.tags) for s in sentences]
    return _with_run(ner_metrics(gold, pred), wall, id2label, unknown, "tags", pred)


def _timed_run(pipe_fn, inputs: list, chunk: int, desc: str) -> tuple[list, float]:
    """(results, wall seconds) of the chunked run."""
    start = time.perf_counter()
    results = _run_batched(pipe_fn, inputs, chunk, desc)
    return results, time.perf_counter() - start


def _with_run(metrics: dict, wall: float, id2label, unknown, key: str, pred: list) -> dict:
    """``metrics`` plus the run's wall time, the gold labels the model lacks (with ``id2label``) and the
    predictions under ``key``."""
    metrics["wall_s"] = round(wall, 2)
    if id2label:
        metrics["gold_labels_not_in_model"] = unknown
    metrics[key] = pred
    return metrics


def _top_label(result) -> str:
    if isinstance(result, dict) and "labels" in result:  # zero-shot: {"sequence", "labels", "scores"}
        return result["labels"][0]
    if isinstance(result, list):  # top_k style: a list of {label, score}, best first
        result = max(result, key=lambda d: d["score"])
    return result["label"]


def _gold_mapper(id2label: dict | None):
    """Map gold labels onto the model's label names: names as they are, integer ids through id2label;
    anything else (see :func:`gold_labels_not_in_model`) stays as it is."""
    if not id2label:
        return lambda x: x
    names = {str(v) for v in id2label.values()}
    by_id = {str(k): str(v) for k, v in id2label.items()}
    return lambda x: by_id[x] if x not in names and x in by_id else x


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
    With ``id2label``, gold labels the model does not have are logged as a warning and listed in
    ``gold_labels_not_in_model``; none of them being the model's raises InputError.
    """
    if not examples:
        raise InputError("no examples to evaluate")
    unknown = _gold_not_in_model(False, examples, id2label)
    if unknown:
        _warn_unknown(False, unknown, id2label, desc)
    to_name = _gold_mapper(id2label)
    gold = [to_name(e.label) for e in examples]
    results, wall = _timed_run(pipe_fn, [e.input for e in examples], chunk, desc)
    pred = [str(_top_label(r)) for r in results]
    return _with_run(classifier_metrics(gold, pred), wall, id2label, unknown, "labels", pred)


def _best_answer(result) -> str:
    if isinstance(result, list):  # top_k > 1: best first
        result = result[0] if result else {"answer": ""}
    return result["answer"]


def evaluate_qa(pipe_fn, examples: list[QAExample], *, chunk: int = 256, desc: str = "qa") -> dict:
    """Run ``pipe_fn(list of {"question", "context"}) -> list of {"answer", ...}`` on the questions and
    score the best answers: :func:`~bertrt.evaluate.metrics.squad_metrics` (exact match and F1, each the
    best over a question's gold answers) plus ``answers`` (the predictions) and ``wall_s``."""
    if not examples:
        raise InputError("no questions to evaluate")
    results, wall = _timed_run(pipe_fn, [e.input for e in examples], chunk, desc)
    pred = [_best_answer(r) for r in results]
    return _with_run(
        squad_metrics([list(e.answers) for e in examples], pred), wall, None, (), "answers", pred
    )


# ------------------------------------------------------------------------------------- systems


def check_reference(task: str, id2label: dict, config: dict, checkpoint) -> None:
    """InputError when ``checkpoint`` (its ``config``) is no reference for a ``task`` bundle with labels
    ``id2label``: another head's task, or other labels, would be scored as if they were the bundle's."""
    from ..tasks import compatible_tasks, task_of_architecture

    archs = config.get("architectures") or []
    theirs = {t for t in (task_of_architecture(a) for a in archs) if t}
    # a head serves every task that claims it (an NLI head: text-classification and zero-shot)
    if theirs and task not in {t for a in archs for t in compatible_tasks(a)}:
        raise InputError(
            f"--pytorch {checkpoint}: a {', '.join(sorted(theirs))} checkpoint ({', '.join(archs)}), no "
            f"reference for this {task} bundle"
        )
    labels = sorted({str(v) for v in (config.get("id2label") or {}).values()})
    ours = sorted({str(v) for v in id2label.values()})
    if labels and ours and labels != ours:
        raise InputError(
            f"--pytorch {checkpoint}: its labels ({', '.join(labels[:12])}) are not the bundle's "
            f"({', '.join(ours[:12])}); pass the checkpoint the bundle was exported from"
        )


def pytorch_pipeline(
    task: str,
    checkpoint: str | Path,
    *,
    batch_size: int = 32,
    threads: int | None = None,
    id2label: dict | None = None,
    options: dict | None = None,
):
    """The reference: ``transformers.pipeline`` on PyTorch (CPU) with the task's ``reference_pipeline``
    arguments (NER: ``aggregation_strategy="first"``), called with its ``reference_call`` ones (classifiers:
    ``truncation=True``).
    With ``id2label`` (the bundle's labels), a checkpoint of another task or other labels is refused
    (:func:`check_reference`). ``options`` are added to the call's (zero-shot: ``candidate_labels``).

    Needs ``bertrt[export]`` (torch, transformers); without it a :class:`~bertrt.errors.BertrtError` says so.
    """
    evaluation_of(task)  # a task bertrt eval scores
    spec = get_task(task)
    kwargs = dict(spec.reference_pipeline)
    try:
        from ..export.reference import reference_pipeline

        pipe = reference_pipeline(task, checkpoint, threads, **kwargs)
    except ImportError as exc:
        raise BertrtError(
            f"the PyTorch reference (--pytorch) needs torch and transformers ({exc}): "
            "pip install 'bertrt[export]'"
        ) from exc
    if id2label is not None:
        check_reference(task, id2label, pipe.model.config.to_dict(), checkpoint)
    call_kwargs = {**spec.reference_call, **(options or {})}

    squad = data_kind(task) == "squad"

    def call(items: list) -> list:
        if squad:  # question= / context= lists: the form transformers keeps (a list of dicts is deprecated)
            questions, contexts = [i["question"] for i in items], [i["context"] for i in items]
            out = pipe(question=questions, context=contexts, batch_size=batch_size, **call_kwargs)
        else:
            out = pipe(items, batch_size=batch_size, **call_kwargs)
        return [out] if len(items) == 1 and isinstance(out, dict) else out  # transformers: one in, one out

    return lambda texts: sorted_call(call, texts)


class _PipelineSystem:
    """A bertrt pipeline as a system (``texts -> results``); ``id2label``: the labels it can give."""

    def __init__(self, pipe, batch_size: int, kwargs: dict):
        self.pipe, self.batch_size, self.kwargs = pipe, batch_size, kwargs

    @property
    def id2label(self) -> dict:
        return dict(self.pipe.id2label)

    def __call__(self, texts: list[str]) -> list:
        return self.pipe(texts, batch_size=self.batch_size, **self.kwargs)


def bertrt_pipeline(
    task: str,
    bundle: str | Path,
    precision: str,
    *,
    batch_size: int = 32,
    threads: int | None = None,
    options: dict | None = None,
):
    """bertrt's pipeline for ``bundle`` at ``precision`` (with the task's reference options, NER:
    ``aggregation_strategy="first"``, and ``options`` over them), as a callable ``texts -> results`` whose
    ``id2label`` is the pipeline's labels."""
    from .. import pipeline

    evaluation_of(task)
    kwargs = {**get_task(task).reference_options, **(options or {})}
    pipe = pipeline(task, str(bundle), precision=precision, threads=threads)
    return _PipelineSystem(pipe, batch_size, kwargs)


def bundle_task(bundle: Path) -> tuple[str, dict]:
    """The bundle's task (bundle.json, else config.json's architectures) and its id2label (ids as strings),
    from its JSON alone (:func:`bertrt.bundle.read_metadata`)."""
    metadata = read_metadata(bundle)
    if metadata.task is None:
        raise BundleError(metadata.root, "neither bundle.json nor config.json names the task")
    return metadata.task, metadata.id2label


def _load_items(data, task: str, fmt: str | None, name: str | None) -> tuple[list, str]:
    """The labelled items of ``data`` (a path, or items already loaded) and the data set's name."""
    iob = is_iob(task)
    if data_kind(task) == "squad":
        return _load_questions(data, task, fmt, name)
    if not isinstance(data, (str, Path)):
        items, kind = list(data), Sentence if iob else Example
        bad = next((i for i, item in enumerate(items) if not isinstance(item, kind)), None)
        if bad is not None:
            raise InputError(
                f"data item {bad} is {type(items[bad]).__name__}, not {kind.__name__}: a {task} bundle is "
                f"evaluated on bertrt.evaluate.{kind.__name__} items"
            )
        return items, name or "data"
    path = Path(data)
    suffix = path.suffix.lower()
    if not fmt:
        fmt = "jsonl" if suffix in JSONL_SUFFIXES else "tsv" if suffix == ".tsv" or not iob else "iob"
    if iob != (fmt == "iob"):
        raise InputError(
            f"a {task} bundle needs {'an IOB' if iob else 'a TSV/JSONL'} file, got format {fmt!r} for {path}"
        )
    items = read_iob(path) if fmt == "iob" else read_labelled(path, fmt)
    return items, name or path.name


def _load_questions(data, task: str, fmt: str | None, name: str | None) -> tuple[list, str]:
    """The questions of ``data`` (a SQuAD JSONL path, or QAExample items) and the data set's name."""
    if not isinstance(data, (str, Path)):
        items = list(data)
        bad = next((i for i, item in enumerate(items) if not isinstance(item, QAExample)), None)
        if bad is not None:
            raise InputError(
                f"data item {bad} is {type(items[bad]).__name__}, not QAExample: a {task} bundle is "
                "evaluated on bertrt.evaluate.QAExample items"
            )
        return items, name or "data"
    path = Path(data)
    if fmt not in (None, "jsonl"):
        raise InputError(f"a {task} bundle needs a JSONL file of questions, got format {fmt!r} for {path}")
    return read_squad(path), name or path.name


def label_options(task: str, items: list, candidate_labels=None) -> tuple[dict, dict | None]:
    """(call options, labels as an id2label) for a task that chooses among given labels (zero-shot's
    ``candidate_labels``): ``candidate_labels``, else the data's gold labels (sorted); ``({}, None)`` for
    the others, which score their own labels (``candidate_labels`` for them: InputError)."""
    option = evaluation_of(task).labels_option
    if option is None:
        if candidate_labels:
            raise InputError(f"--candidate-labels: a {task} bundle scores its own labels")
        return {}, None
    labels = list(dict.fromkeys(candidate_labels or sorted({e.label for e in items})))
    return {option: labels}, {str(i): label for i, label in enumerate(labels)}


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
    candidate_labels: list[str] | None = None,
) -> dict:
    """Evaluate PyTorch (when ``checkpoint``) and bertrt at each precision on one labelled data set.

    ``data``: a path (IOB for NER, TSV/JSONL for classifiers, SQuAD JSONL for question answering) or an
    already loaded list of :class:`~bertrt.evaluate.readers.Sentence` /
    :class:`~bertrt.evaluate.readers.Example` / :class:`~bertrt.evaluate.readers.QAExample`.
    A zero-shot bundle chooses among ``candidate_labels``, by default the data's labels (gold ids are
    indexes into ``candidate_labels``).
    Gold entity types / labels that the model's labels do not contain are logged as a warning and listed,
    with their support, in ``gold_labels_not_in_model`` (see :func:`gold_labels_not_in_model`).
    """
    bundle = Path(bundle)
    task, id2label = bundle_task(bundle)
    try:
        iob = is_iob(task)
    except TaskError as exc:
        raise TaskError(f"{bundle}: {exc}") from None
    bad = [p for p in precisions if p not in PRECISIONS]
    if bad or not precisions:
        raise InputError(f"unknown precision(s) {bad}; expected any of {', '.join(PRECISIONS)}")
    if evaluation_of(task).data == "rerank":  # queries and their documents: MRR@10, nDCG@10
        from .rerank import evaluate_rerank

        return evaluate_rerank(
            bundle,
            data,
            precisions,
            batch_size=batch_size,
            threads=threads,
            limit=limit,
            name=name,
            checkpoint=checkpoint,
        )
    require_metric(task)  # before any system runs
    items, name = _load_items(data, task, fmt, name)
    if limit is not None:
        items = items[:limit]
    squad = data_kind(task) == "squad"
    options, label_set = label_options(task, items, candidate_labels)

    ours = {
        f"bertrt-{p}": (
            f"bertrt {p}",
            bertrt_pipeline(task, bundle, p, batch_size=batch_size, threads=threads, options=options),
        )
        for p in precisions
    }
    # the labels the pipelines give (LABEL_i for a bundle without id2label), checked once before any run
    id2label = next(iter(ours.values()))[1].id2label or id2label
    model_labels = id2label  # what --pytorch must have; the labels scored are the label set's, if any
    id2label = {} if squad else label_set or id2label
    unknown = _gold_not_in_model(iob, items, id2label)
    if unknown:
        _warn_unknown(iob, unknown, id2label, name)
    if not iob and not squad:  # gold ids -> label names, once
        to_name = _gold_mapper(id2label)
        items = [replace(e, label=to_name(e.label)) for e in items]

    systems: dict[str, tuple[str, Callable]] = {}
    if checkpoint is not None:
        systems["pytorch"] = (
            "transformers pipeline (PyTorch fp32)",
            pytorch_pipeline(
                task,
                checkpoint,
                batch_size=batch_size,
                threads=threads,
                id2label=model_labels,
                options=options,
            ),
        )
    systems.update(ours)
    results: dict[str, dict] = {}
    for key, (_, fn) in systems.items():
        log.info("evaluating %s on %s (%d items)", key, name, len(items))
        results[key] = score(task, fn, items, desc=f"{key} {name}")

    field = "tags" if iob else "answers" if squad else "labels"
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
        "gold_labels_not_in_model": unknown,
        **({"candidate_labels": list(label_set.values())} if label_set else {}),
    }
