"""The evaluation report: Markdown tables, the int8-vs-fp32 check, and writing ``eval.json`` / ``eval.md``.

Results go to an output folder the caller names (``bertrt eval --out``, by default
:data:`DEFAULT_OUT`, relative to the working directory), never into the installed package.
:func:`check_writable` is called before any work, so an output folder that cannot be written fails at
once rather than after the evaluation.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

from ..errors import InputError
from .rerank import markdown_section as rerank_section
from .runner import data_kind, evaluation_of, headline, is_iob

__all__ = [
    "DEFAULT_OUT",
    "INT8_TOLERANCE",
    "RESULT_FILES",
    "check_writable",
    "int8_targets",
    "machine_info",
    "render_markdown",
    "write_results",
]

#: the default output folder of ``bertrt eval`` and ``bertrt bench`` (relative: the working directory)
DEFAULT_OUT = Path("bertrt-results")

#: the files :func:`write_results` writes into the output folder
RESULT_FILES = ("eval.json", "eval.md")

#: the int8 accuracy target per evaluation metric (:attr:`bertrt.tasks.base.Evaluation.metric`): int8
#: within this many points of fp32 (NER micro-F1, classifier accuracy)
INT8_TOLERANCE = {"f1": ("micro F1", 1.0), "accuracy": ("accuracy", 1.0), "mrr@10": ("MRR@10", 1.0)}


def int8_targets(evals: list[dict]) -> list[dict]:
    """int8 vs fp32 per evaluation: the figure, both values, the difference and whether it is within
    :data:`INT8_TOLERANCE` (absolute difference). Evaluations without both precisions are left out."""
    rows = []
    for ev in evals:
        systems = ev["systems"]
        if "bertrt-fp32" not in systems or "bertrt-int8" not in systems:
            continue
        evaluation = evaluation_of(ev["task"])
        figure, tol = INT8_TOLERANCE[evaluation.metric]
        if evaluation.data == "squad":
            figure = "SQuAD F1"
        fp32, int8 = (headline(ev["task"], systems[k]) for k in ("bertrt-fp32", "bertrt-int8"))
        delta = round(int8 - fp32, 2)
        rows.append(
            {
                "dataset": ev["dataset"],
                "figure": figure,
                "fp32": fp32,
                "int8": int8,
                "delta": delta,
                "tolerance": tol,
                "met": abs(delta) <= tol,
            }
        )
    return rows


# -------------------------------------------------------------------------------------- markdown


def _prf(m: dict) -> str:
    return f"{m['precision']:.1f} / {m['recall']:.1f} / **{m['f1']:.1f}**"


def _ner_table(ev: dict) -> list[str]:
    keys = list(ev["systems"])
    lines = [
        "| type | support | " + " | ".join(f"{k} P / R / F1" for k in keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
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


def _unknown_labels_line(ev: dict) -> list[str]:
    """A warning line for the gold types / labels the model does not have (empty list when none)."""
    unknown = ev.get("gold_labels_not_in_model") or {}
    if not unknown:
        return []
    what = "entity types" if is_iob(ev["task"]) else "labels"
    listed = ", ".join(f"{g} ({n})" for g, n in unknown.items())
    return [
        f"**Warning:** gold {what} of {ev['dataset']} that the model does not have, so they score 0 F1 "
        f"(support in brackets): {listed}.",
        "",
    ]


def _cls_table(evals: list[dict], reference: str | None = None) -> list[str]:
    keys = list(evals[0]["systems"])
    ref = evals[0] if reference is None else next(e for e in evals if e["dataset"] == reference)
    delta = " (Δacc)" if len(evals) > 1 else ""
    lines = [
        "| data set | n | " + " | ".join(f"{k} acc / macro-F1{delta}" for k in keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
    for ev in evals:
        cells = []
        for k in keys:
            m = ev["systems"][k]
            delta = m["accuracy"] - ref["systems"][k]["accuracy"]
            d = "" if ev is ref else f" ({delta:+.1f})"
            cells.append(f"{m['accuracy']:.1f} / {m['macro_f1']:.1f}{d}")
        lines.append(f"| {ev['dataset']} | {ev['size']} | " + " | ".join(cells) + " |")
    return lines


def _qa_section(evals: list[dict]) -> list[str]:
    """The question-answering table: SQuAD exact match / F1 per data set and system, answer agreement."""
    keys = list(evals[0]["systems"])
    out = [
        "## Question answering",
        "",
        "SQuAD exact match / **F1** in percent (each the best over a question's gold answers).",
        "",
        "| data set | n | " + " | ".join(f"{k} EM / F1" for k in keys) + " |",
        "|---|---:|" + "---:|" * len(keys),
    ]
    for ev in evals:
        cells = [f"{ev['systems'][k]['exact_match']:.1f} / **{ev['systems'][k]['f1']:.1f}**" for k in keys]
        out.append(f"| {ev['dataset']} | {ev['size']} | " + " | ".join(cells) + " |")
    out += [""]
    for ev in evals:
        if ev["agreement"]:
            agree = ", ".join(f"{k} {v:.2f}%" for k, v in ev["agreement"].items())
            out.append(f"- answer agreement on {ev['dataset']}: {agree}")
    return out + [""]


def render_markdown(evals: list[dict], title: str = "bertrt eval", preamble: str = "") -> str:
    """Markdown for a list of :func:`~bertrt.evaluate.runner.evaluate_bundle` results (NER tables, one
    classifier table, the int8-vs-fp32 check)."""
    out = [f"# {title}", ""]
    if preamble:
        out += [preamble, ""]
    ranked = [e for e in evals if evaluation_of(e["task"]).data == "rerank"]
    evals = [e for e in evals if e not in ranked]
    ner = [e for e in evals if is_iob(e["task"])]
    cls = [e for e in evals if data_kind(e["task"]) == "labelled"]
    qa = [e for e in evals if data_kind(e["task"]) == "squad"]
    for ev in ranked:
        out += rerank_section(ev)
    for ev in ner:
        out += [
            f"## NER: {ev['dataset']} ({ev['size']} sentences)",
            "",
            (
                "Entity-level (seqeval, default mode), percent: precision / recall / **F1**; macro averages "
                "over the types in gold or predictions."
            ),
            "",
        ]
        out += _unknown_labels_line(ev)
        out += _ner_table(ev)
        out += [
            "",
            "Token-tag agreement: " + ", ".join(f"{k} {v:.2f}%" for k, v in ev["agreement"].items()),
            "",
        ]
    if cls:
        note = (
            f"; (Δacc): accuracy change from the first row, {cls[0]['dataset']}, i.e. what moving to "
            "that data costs"
            if len(cls) > 1
            else ""
        )
        out += ["## Classification", "", f"Accuracy / macro-F1 in percent{note}.", ""]
        for ev in cls:
            out += _unknown_labels_line(ev)
        out += _cls_table(cls)
        out += [""]
        for ev in cls:
            if ev["agreement"]:
                out.append(
                    f"- label agreement on {ev['dataset']}: "
                    + ", ".join(f"{k} {v:.2f}%" for k, v in ev["agreement"].items())
                )
        out += [""]
    if qa:
        out += _qa_section(qa)
    targets = int8_targets(evals)
    if targets:
        out += [
            "## int8 vs fp32 (target: within 1.0 point)",
            "",
            "| data set | figure | fp32 | int8 | Δ | target |",
            "|---|---|---:|---:|---:|---|",
        ]
        out += [
            f"| {t['dataset']} | {t['figure']} | {t['fp32']:.2f} | {t['int8']:.2f} | {t['delta']:+.2f} | "
            f"{'met' if t['met'] else 'MISSED'} (±{t['tolerance']}) |"
            for t in targets
        ]
        out += [""]
    return "\n".join(out)


# ----------------------------------------------------------------------------------------- files


def check_writable(out_dir: Path) -> Path:
    """Make sure the results can be written into ``out_dir`` before any work: create it if needed, write
    and remove a probe file, and check that :data:`RESULT_FILES` there are not folders. Raises InputError
    naming the folder and the reason; returns the folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"output folder {out_dir}: exists and is not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".bertrt-write-check-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise InputError(f"output folder {out_dir}: cannot write there ({exc.strerror or exc})") from exc
    for name in RESULT_FILES:
        if (out_dir / name).is_dir():
            raise InputError(f"output folder {out_dir}: {name} there is a folder, not a file")
    return out_dir


def write_results(result: dict, markdown: str, out_dir: Path) -> tuple[Path, Path]:
    """Write ``eval.json`` and ``eval.md`` (UTF-8) into ``out_dir`` (created if needed); returns both paths.

    Raises InputError naming the file when it cannot be written."""
    out_dir = Path(out_dir)
    json_path, md_path = (out_dir / name for name in RESULT_FILES)
    payload = {json_path: json.dumps(result, indent=2, ensure_ascii=False) + "\n", md_path: markdown + "\n"}
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        for path, text in payload.items():
            path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise InputError(
            f"{exc.filename or out_dir}: cannot write the results ({exc.strerror or exc})"
        ) from exc
    return json_path, md_path


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """Python, platform, CPU count and library versions, read from the installed distributions' metadata
    (so the report names torch/transformers when installed without importing them)."""
    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "onnxruntime": _version("onnxruntime") or _version("onnxruntime-gpu"),
    }
    torch, transformers = _version("torch"), _version("transformers")
    if torch and transformers:
        info.update(torch=torch, transformers=transformers)
    return info
