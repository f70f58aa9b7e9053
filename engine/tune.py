"""``bertrt tune BUNDLE``: measure every backend x precision x threads x batch size on this machine, keep
the fastest candidate that passes the accuracy and batch-invariance gates, write it into the bundle.

For each candidate (a pipeline at backend, precision, threads) on the sample texts (``--texts FILE``, one
text a line, else :data:`SAMPLE_TEXTS`):

1. **accuracy** against the reference, onnxruntime fp32 at batch 32: the task's figures
   (:meth:`bertrt.tasks.base.Task.agreement`; NER entity F1 with the reference's entities as gold and
   the share of texts with identical entities, labels / fill-mask top tokens ``agreement``, embeddings
   ``cosine_min`` / ``cosine_mean``);
2. **batch invariance**: the same figures between the candidate at batch 1 and at batch 32;
3. **speed**: texts/s of the whole pipeline (text in, result out) at each batch size, ``repeats`` runs,
   median with min-max. A candidate's speed is that of its best batch size; its **latency** is the p50
   of single-text calls (:data:`LATENCY_CALLS` of the sample's texts, after one warm-up call).

With ``--labelled FILE`` (the data ``bertrt eval`` reads for the task: IOB for NER, TSV/JSONL for
classifiers; ``bertrt[eval]`` for NER) the labelled texts are the sample (unless ``--texts`` is given too)
and every candidate is also scored against the gold labels at batch 32 with the task's evaluation metric
(:attr:`bertrt.tasks.base.Task.evaluation`: ``labelled.f1``, seqeval micro F1 with
``aggregation_strategy="first"``, or ``labelled.accuracy``), in points, and its difference from the fp32
reference's score, ``labelled.f1_delta`` / ``labelled.accuracy_delta``, gated at :data:`LABELLED_LOSS`
(lose at most 0.5 points).

A candidate passes when every figure meets the task's gates (:attr:`bertrt.tasks.base.Task.gates`;
``--gate NAME=MIN`` overrides one: ``accuracy.entity_f1=0.9``). ``--goal`` says what "fastest" means:
``throughput`` (default: the most texts/s at the candidate's best batch size, for batch jobs) or
``latency`` (the lowest batch-1 p50, for a server answering one text at a time; backends differ most
there: OpenVINO's batch-1 calls can beat onnxruntime's int8 while its batches lose). The winner is the
fastest passing candidate by the goal; both goals' winners are recorded (``throughput_winner``,
``latency_winner``), and the fastest passing one per precision by the goal (``by_precision``), for
``pipeline(precision=...)``.

``tuning.json`` (``{"schema_version": 1, "format": "bertrt-tuning", "machines": {cpu key: entry}}``): one
entry per CPU key (:func:`bertrt.backends.cpu_key`: model name, instruction-set flags, cores), so a bundle
tuned on several machine kinds keeps each result; an entry holds the CPU, versions, task, sample, gates,
settings, every candidate with its figures and the reasons it failed, ``winner`` and ``by_precision``.
``pipeline(..., backend="auto")`` reads it (see :mod:`bertrt.backends`): the backend, precision and threads,
and the batch size as the default of every call, ``bertrt predict`` / ``batch`` and ``serve``'s
``--pipeline-batch-size`` that gives none (an explicit value always wins).

Defaults are quick (well under a minute on a small model): 64 texts, batch sizes 8 and 32, the physical
core count, 3 repeats.

On a GPU (``--providers cuda``): the candidates are the backends that take execution providers
(onnxruntime) at each precision they run there (fp16, fp32, int8), run with those providers; the
accuracy reference stays onnxruntime fp32 on the CPU, and the entry is written under
:func:`bertrt.backends.tuning_key` (``"cuda on <cpu key>"``), which ``pipeline(..., providers="cuda")``
reads. The PyTorch CUDA reference row is ``bertrt bench --providers cuda``'s (the runtime never imports
torch).
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

from . import __version__, backends
from .bundle import read_metadata
from .errors import BackendError, BertrtError, InputError, ModelFileNotFoundError, UsageError
from .tasks import get_task

__all__ = [
    "GOALS",
    "LABELLED_LOSS",
    "LATENCY_CALLS",
    "SAMPLE_TEXTS",
    "add_arguments",
    "compare",
    "format_report",
    "gates_of",
    "run",
    "tune",
]

log = logging.getLogger("bertrt")

SCHEMA_VERSION = 1
#: what the winner is chosen by (``bertrt tune --goal``)
GOALS = ("throughput", "latency")
#: single-text calls timed per candidate for its batch-1 p50
LATENCY_CALLS = 16
FORMAT = "bertrt-tuning"

#: with labelled data: the largest loss against the fp32 reference's gold score, in points (a minimum)
LABELLED_LOSS = -0.5


def gates_of(task: str, labelled: bool = False) -> dict[str, float]:
    """The default gates of ``task`` (its :attr:`~bertrt.tasks.base.Task.gates`), with the labelled-data
    gate when ``labelled``; InputError when the task has none."""
    spec = get_task(task)
    if not spec.gates:
        raise InputError(f"bertrt tune does not gate {spec.name} results (the task declares no gates)")
    gates = dict(spec.gates)
    if labelled:
        gates[f"labelled.{_evaluation(spec).metric}_delta"] = LABELLED_LOSS
    return gates


def _evaluation(spec):
    if spec.evaluation is None:
        from . import tasks

        scored = [name for name in tasks.TASKS if get_task(name).evaluation is not None]
        raise InputError(f"labelled data is scored for {', '.join(scored)} bundles; this one is {spec.name}")
    return spec.evaluation


#: the built-in sample: short and long sentences with names, places and organisations
SAMPLE_TEXTS = (
    "Maria Schmidt moved from Hamburg to Groningen in 2019 to work for Philips.",
    "The new stadium in Manchester opens next week.",
    "i cant believe the game last night lol",
    "Apple and Google both reported strong earnings on Thursday.",
    "Barack Obama visited Nairobi, where his father was born.",
    "Great food, terrible service.",
    "The European Central Bank raised interest rates by a quarter point.",
    "Has anyone seen my keys? I left them at the cafe on Elm Street.",
    "Tokyo is the capital of Japan and one of the largest cities in the world.",
    "This movie was a complete waste of two hours.",
    "Dr. Aisha Patel from Johns Hopkins University presented the results in Boston.",
    "We flew Lufthansa from Frankfurt to Toronto and lost a bag.",
    "ok",
    "The Amazon river flows through Brazil, Peru and Colombia before reaching the Atlantic Ocean.",
    "Shares of Tesla fell after Elon Musk announced a new factory in Mexico.",
    "My grandmother still makes the best apple pie in Ohio.",
    "The United Nations Security Council met in New York on Monday to discuss the crisis.",
    "Loved every minute of it, the actors were brilliant and the music was beautiful.",
    "Real Madrid beat Bayern Munich 2-1 in the semi-final at the Santiago Bernabeu.",
    "Please call me back when you get this message.",
    "Microsoft released a new version of Windows with features borrowed from Linux.",
    "The museum in Amsterdam has paintings by Rembrandt and Vermeer.",
    "It rained all day in Seattle, as usual.",
    "Prime Minister Jacinda Ardern spoke to reporters in Wellington about the budget.",
    "who is playing at the festival in austin this year",
    "The book by Chimamanda Ngozi Adichie won the Orange Prize for Fiction.",
    "NASA and SpaceX launched four astronauts to the International Space Station from Florida.",
    "The package was supposed to arrive on Tuesday but it never came.",
    "Samsung opened a research center in Bangalore with two thousand engineers.",
    "The quick brown fox jumps over the lazy dog.",
    "After the concert at Madison Square Garden, Taylor Swift thanked her fans on Instagram.",
    "The hotel near Lake Geneva was quiet, clean and far too expensive for what it offered.",
)


def compare(task: str, reference: list, candidate: list) -> dict:
    """Agreement figures of ``candidate`` results with ``reference`` ones (same texts, same order)."""
    return get_task(task).agreement(reference, candidate)


def _sample(task: str, texts, pipe) -> tuple[list, str]:
    if texts is None:
        texts, source = list(SAMPLE_TEXTS) * 2, f"built-in sample ({len(SAMPLE_TEXTS)} sentences x 2)"
    else:
        texts, source = list(texts), "given texts"
    if not texts:
        raise InputError("bertrt tune needs at least one text")
    return get_task(task).tune_sample(pipe, texts), source


def _load_labelled(task: str, labelled) -> tuple[list, list[str]]:
    """(items, their texts) of the labelled data (a path, or bertrt.evaluate items)."""
    from .evaluate import runner

    _evaluation(get_task(task))
    if runner.data_kind(task) == "rerank":  # queries with documents, not labelled texts
        raise InputError(
            f"bertrt tune --labelled scores labelled texts; {task} data (queries, documents, relevant) is "
            "scored by bertrt eval (MRR@10, nDCG@10), and tune gates the rankings against fp32 without it"
        )
    runner.require_metric(task)  # before any candidate runs
    items, _ = runner._load_items(labelled, task, None, None)
    if not items:
        raise InputError("the labelled data has no items")
    return items, runner.item_texts(task, items)


def _labelled_score(task: str, pipe, items: list) -> float:
    """Gold score of ``pipe`` at batch 32, in points (the task's evaluation metric)."""
    from .evaluate import runner

    _evaluation(get_task(task))
    chosen, label_set = runner.label_options(task, items)  # zero-shot: the data's labels
    options = {**get_task(task).reference_options, **chosen}

    def system(texts):
        return pipe(texts, batch_size=32, **options)

    id2label = label_set or getattr(pipe, "id2label", None)  # a test factory may give a bare callable
    return runner.headline(task, runner.score(task, system, items, id2label=id2label, desc="tune"))


def _default_factory(task, bundle, backend, precision, threads, providers=None):
    from .pipelines import pipeline

    # the options a call needs to run at all (zero-shot: candidate labels) as the pipeline's defaults
    named = task or read_metadata(bundle).task  # None: pipeline() says why
    needed = dict(get_task(named).warm_up_options) if named else {}
    return pipeline(
        task, bundle, precision=precision, threads=threads, backend=backend, providers=providers, **needed
    )


def _gate(figures: dict, gates: dict) -> list[str]:
    reasons = []
    for name, minimum in gates.items():
        value = figures.get(name)
        if value is None:
            reasons.append(f"{name} not measured")
        elif value < minimum:
            reasons.append(f"{name} {value:.4f} < {minimum}")
    return reasons


def _speed(pipe, texts, batch_size: int, repeats: int) -> dict:
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        pipe(texts, batch_size=batch_size)
        rates.append(len(texts) / (time.perf_counter() - start))
    return {
        "batch_size": batch_size,
        "texts_per_s": round(statistics.median(rates), 2),
        "min": round(min(rates), 2),
        "max": round(max(rates), 2),
    }


def _latency(pipe, texts, calls: int = LATENCY_CALLS) -> dict:
    """p50 (and max) milliseconds of single-text calls over the first ``calls`` texts (one warm-up)."""
    pipe(texts[:1], batch_size=1)
    ms = []
    for text in (texts * calls)[:calls]:
        start = time.perf_counter()
        pipe([text], batch_size=1)
        ms.append((time.perf_counter() - start) * 1000.0)
    return {"p50_ms": round(statistics.median(ms), 3), "max_ms": round(max(ms), 3), "calls": len(ms)}


def _versions() -> dict:
    """bertrt's version and those of every registered backend's distributions (None: not installed)."""
    from .cpu import installed_versions

    distributions = dict.fromkeys(d for b in backends.BACKENDS.values() for d in b.distributions)
    return {"bertrt": __version__, **installed_versions(distributions)}


def tune(
    bundle,
    texts=None,
    backend_names=None,
    precisions=None,
    threads=None,
    batch_sizes=(8, 32),
    repeats: int = 3,
    gates: dict | None = None,
    factory=None,
    write: bool = True,
    labelled=None,
    providers=None,
    goal: str = "throughput",
) -> dict:
    """Measure, gate, pick; write ``tuning.json`` into ``bundle`` (``write=False``: only return the entry).

    ``factory(task, bundle, backend, precision, threads)`` builds a candidate (default: bertrt.pipeline);
    tests pass one that sabotages a candidate (with ``providers``, it is called with ``providers=`` too).
    ``labelled``: a labelled data file (or bertrt.evaluate items) to gate on gold scores. ``providers``:
    onnxruntime execution providers every candidate runs with (a GPU: see the module docstring). ``goal``:
    what the winner is chosen by, one of :data:`GOALS`. Returns
    this machine's entry (see the module docstring).
    """
    root = Path(bundle)
    if not root.is_dir():
        raise InputError(f"{bundle}: bertrt tune needs a local bundle folder")
    factory = factory or _default_factory
    if goal not in GOALS:
        raise InputError(f"goal must be one of {', '.join(GOALS)}, got {goal!r}")
    batch_sizes = sorted({int(b) for b in batch_sizes})
    if not batch_sizes or batch_sizes[0] <= 0 or repeats <= 0:
        raise InputError("batch sizes and repeats must be positive")
    reference = _default_factory(None, root, "onnxruntime", "fp32", None)
    task = reference.task
    task_gates = gates_of(task, labelled=labelled is not None)
    items, labelled_record, metric = None, None, None
    if labelled is not None:
        items, labelled_texts = _load_labelled(task, labelled)
        if texts is None:
            texts = labelled_texts
    sample, source = _sample(task, texts, reference)
    if items is not None and texts is labelled_texts:
        source = f"the labelled data ({len(items)} items)"
    expected = reference(sample, batch_size=32)
    if items is not None:
        metric = _evaluation(reference.spec).metric
        reference_score = _labelled_score(task, reference, items)
        labelled_record = {"items": len(items), f"reference_{metric}": reference_score}
    for name, minimum in (gates or {}).items():
        if name not in task_gates:
            raise InputError(f"unknown gate {name!r} for {task}; gates: {', '.join(task_gates)}")
        task_gates[name] = float(minimum)
    from .cpu import physical_cores

    thread_counts = sorted({int(t) for t in (threads or [physical_cores()])})
    extra = {} if providers is None else {"providers": providers}
    installed = [b for b in backends.BACKENDS if backends.available(b)]
    if providers is not None:  # only the backends execution providers apply to
        installed = [b for b in installed if backends.BACKENDS[b].takes_providers]
    names = list(backend_names or installed)
    candidates = []
    for backend in names:
        declared = backends.BACKENDS[backend].precisions if backend in backends.BACKENDS else ()
        for precision in precisions or declared:
            for n_threads in thread_counts:
                cand = {"backend": backend, "precision": precision, "threads": n_threads}
                try:
                    backends.check_available(backend, precision, providers)
                    pipe = factory(task, root, backend, precision, n_threads, **extra)
                except (BackendError, ModelFileNotFoundError, InputError) as exc:
                    cand.update(available=False, passed=False, reasons=[str(exc)])
                    candidates.append(cand)
                    log.info("tune: %s %s unavailable (%s)", backend, precision, exc)
                    continue
                at1, at32 = pipe(sample, batch_size=1), pipe(sample, batch_size=32)
                figures = {f"accuracy.{k}": v for k, v in compare(task, expected, at32).items()}
                figures.update({f"invariance.{k}": v for k, v in compare(task, at1, at32).items()})
                if items is not None:
                    score = _labelled_score(task, pipe, items)
                    figures[f"labelled.{metric}"] = round(score, 2)
                    figures[f"labelled.{metric}_delta"] = round(score - reference_score, 2)
                speeds = [_speed(pipe, sample, bs, repeats) for bs in batch_sizes]
                best = max(speeds, key=lambda s: s["texts_per_s"])
                latency = _latency(pipe, sample)
                reasons = _gate(figures, task_gates)
                cand.update(
                    available=True,
                    figures=figures,
                    speeds=speeds,
                    batch_size=best["batch_size"],
                    texts_per_s=best["texts_per_s"],
                    latency=latency,
                    p50_ms=latency["p50_ms"],
                    passed=not reasons,
                    reasons=reasons,
                )
                candidates.append(cand)
                log.info("tune: %s", cand)
    _require_one_ran(candidates)
    passed = [c for c in candidates if c["passed"]]
    ranks = {"throughput": lambda c: -c["texts_per_s"], "latency": lambda c: c["p50_ms"]}
    winners = {g: min(passed, key=rank, default=None) for g, rank in ranks.items()}

    def choice(c):
        return (
            None
            if c is None
            else {k: c[k] for k in ("backend", "precision", "threads", "batch_size", "texts_per_s", "p50_ms")}
        )

    by_precision = {}
    for c in sorted(passed, key=ranks[goal]):
        by_precision.setdefault(c["precision"], choice(c))
    info = backends.cpu_info()
    entry = {
        "cpu": info,
        "key": backends.tuning_key(providers) if providers is not None else backends.cpu_key(info),
        "providers": None if providers is None else list(providers),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": _versions(),
        "task": task,
        "sample": {"texts": len(sample), "source": source},
        "gates": task_gates,
        "settings": {"batch_sizes": batch_sizes, "threads": thread_counts, "repeats": repeats},
        "reference": "onnxruntime fp32, batch 32",
        "labelled": labelled_record,
        "candidates": candidates,
        "goal": goal,
        "winner": choice(winners[goal]),
        "throughput_winner": choice(winners["throughput"]),
        "latency_winner": choice(winners["latency"]),
        "by_precision": by_precision,
    }
    if write:
        _write(root, entry)
    return entry


def _require_one_ran(candidates: list[dict]) -> None:
    """BackendError (nothing written) when no candidate could run: "none passed the gates" would be a
    false answer, and a tuning entry measuring nothing is no tuning."""
    if any(c["available"] for c in candidates):
        return
    reasons = "; ".join(f"{c['backend']} {c['precision']}: {c['reasons'][0]}" for c in candidates)
    raise BackendError(
        "bertrt tune: no candidate could run on this machine"
        + (f" ({reasons})" if reasons else " (no backend/precision pair to try)")
        + "; nothing was measured or written"
    )


def _write(root: Path, entry: dict) -> Path:
    path = root / backends.TUNING_FILE
    try:
        data = backends.read_tuning(root) or {}
    except BertrtError:
        log.warning("%s is unreadable: replaced", path)
        data = {}
    data.update(schema_version=SCHEMA_VERSION, format=FORMAT)
    data.setdefault("machines", {})[entry["key"]] = entry
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def format_report(entry: dict) -> str:
    """The candidates as a Markdown table, the machine and the winner."""
    cpu = entry["cpu"]
    lines = [
        f"Machine: {cpu['model']}, {cpu['cores']} cores ({', '.join(cpu['flags']) or 'no listed flags'})"
        + (f", providers {', '.join(entry['providers'])}" if entry.get("providers") else "")
        + "; "
        f"task {entry['task']}; {entry['sample']['texts']} texts ({entry['sample']['source']}); "
        f"reference {entry['reference']}; gates {entry['gates']}",
        *(
            [
                f"Labelled data: {lab['items']} items; fp32 reference gold score "
                + ", ".join(f"{k[10:]} {v:.2f}" for k, v in lab.items() if k.startswith("reference_"))
            ]
            if (lab := entry.get("labelled"))
            else []
        ),
        "",
        "| backend | precision | threads | texts/s by batch size (median, min-max) | batch-1 p50 ms | accuracy "
        "| batch 1 vs 32 | result |",
        "|---|---|---:|---|---:|---|---|---|",
    ]
    for c in entry["candidates"]:
        if not c.get("available"):
            lines.append(
                f"| {c['backend']} | {c['precision']} | {c['threads']} | - | - | - | - | unavailable: "
                f"{'; '.join(c['reasons'])} |"
            )
            continue
        speeds = ", ".join(
            f"bs {s['batch_size']}: {s['texts_per_s']:.0f} ({s['min']:.0f}-{s['max']:.0f})"
            for s in c["speeds"]
        )
        acc = ", ".join(
            [f"{k[9:]} {v:.4f}" for k, v in c["figures"].items() if k.startswith("accuracy.")]
            + [
                f"gold {k[9:]} {v:+.2f}" if k.endswith("_delta") else f"gold {k[9:]} {v:.2f}"
                for k, v in c["figures"].items()
                if k.startswith("labelled.")
            ]
        )
        inv = ", ".join(f"{k[11:]} {v:.4f}" for k, v in c["figures"].items() if k.startswith("invariance."))
        result = "pass" if c["passed"] else "fail: " + "; ".join(c["reasons"])
        lines.append(
            f"| {c['backend']} | {c['precision']} | {c['threads']} | {speeds} | {c['p50_ms']:.1f} | {acc} | {inv} "
            f"| {result} |"
        )
    w = entry["winner"]
    lines += [
        "",
        (
            f"Winner: {_choice_text(w)} (goal {entry.get('goal', 'throughput')})"
            if w
            else "Winner: none passed the gates; backend='auto' keeps the static rule (onnxruntime int8)"
        ),
    ]
    for goal in GOALS:
        other = entry.get(f"{goal}_winner")
        if w and other and goal != entry.get("goal", "throughput"):
            lines.append(f"Best by {goal}: {_choice_text(other)}")
    return "\n".join(lines)


def _choice_text(w: dict) -> str:
    p50 = f", batch-1 p50 {w['p50_ms']:.1f} ms" if w.get("p50_ms") is not None else ""
    return (
        f"{w['backend']} {w['precision']}, {w['threads']} threads, batch {w['batch_size']}: "
        f"{w['texts_per_s']:.0f} texts/s{p50}"
    )


# -- command line -------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    parser.add_argument("bundle", help="bundle folder (tuning.json is written into it)")
    parser.add_argument("--texts", help="file of sample texts, one a line (UTF-8); default: built-in sample")
    parser.add_argument("--backends", nargs="+", choices=backends.BACKENDS, help="default: those installed")
    parser.add_argument("--precisions", nargs="+", choices=backends.PRECISIONS, help="default: all of each")
    parser.add_argument(
        "--threads", nargs="+", type=int, help="thread counts to try (default: physical cores)"
    )
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[8, 32], help="default: 8 32")
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs per batch size (median; default 3)"
    )
    parser.add_argument(
        "--gate",
        action="append",
        default=[],
        metavar="NAME=MIN",
        help="override a gate, e.g. accuracy.entity_f1=0.9",
    )
    parser.add_argument(
        "--labelled",
        help="labelled data (IOB for NER, TSV/JSONL for classifiers): the sample, and each candidate's gold "
        "score must stay within 0.5 points of fp32's (needs bertrt[eval] for NER)",
    )
    backends.add_providers_argument(
        parser,
        "onnxruntime execution providers to tune for, e.g. cuda (needs onnxruntime-gpu): the "
        "candidates run there and the result is this machine's entry for them",
    )
    parser.add_argument(
        "--goal",
        choices=GOALS,
        default="throughput",
        help="what the winner is chosen by: throughput (texts/s at the best batch size; default) or latency "
        "(batch-1 p50, for a server answering one text at a time)",
    )
    parser.add_argument("--report", action="store_true", help="print the table of every candidate")
    parser.add_argument(
        "--no-write", action="store_true", help="measure and report; leave the bundle as it is"
    )


def run(args) -> int:
    from .lines import decode_utf8, drop_bom, split_lines

    gates = {}
    for item in args.gate:
        name, sep, value = item.partition("=")
        try:
            gates[name.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep:
            raise UsageError(f"--gate takes NAME=MIN (a number), got {item!r}")
    texts = None
    if args.texts:
        try:
            data = Path(args.texts).read_bytes()
        except OSError as exc:
            raise InputError(f"{args.texts}: cannot read ({exc.strerror or exc})") from exc
        texts = [t for t in split_lines(decode_utf8(drop_bom(data), args.texts)) if t.strip()]
    settings = {name: getattr(args, name) for name in ("precisions", "threads", "batch_sizes", "repeats")}
    entry = tune(
        args.bundle,
        texts=texts,
        backend_names=args.backends,
        gates=gates,
        write=not args.no_write,
        labelled=args.labelled,
        providers=getattr(args, "providers", None),
        goal=getattr(args, "goal", "throughput"),
        **settings,
    )
    if args.report:
        print(format_report(entry))
    else:
        w = entry["winner"]
        print(
            f"{entry['key']}: "
            + (f"{_choice_text(w)} (goal {entry['goal']})" if w else "no candidate passed the gates")
            + ("" if args.no_write else f" (written to {Path(args.bundle) / backends.TUNING_FILE})")
        )
    return 0
