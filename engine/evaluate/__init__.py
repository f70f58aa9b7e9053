"""Evaluation of bundles on labelled data: what ``bertrt eval`` runs (needs ``bertrt[eval]``: seqeval).

::

    from bertrt.evaluate import evaluate_bundle, render_markdown
    ev = evaluate_bundle("path/to/ner-bundle", "test.iob")      # bertrt fp32 and int8
    print(render_markdown([ev]))

Modules: :mod:`.readers` (IOB, TSV, JSONL, SQuAD JSONL), :mod:`.align` (entities -> gold-token IOB tags),
:mod:`.metrics` (seqeval entity scores, classifier accuracy/F1, SQuAD EM/F1), :mod:`.runner` (systems on data),
:mod:`.report` (Markdown, eval.json/eval.md), :mod:`.cli` (``bertrt eval``). Importing the package
loads none of seqeval, onnxruntime, torch or transformers.
"""

from __future__ import annotations

from .align import entities_to_iob, token_spans
from .metrics import agreement, classifier_metrics, ner_metrics
from .readers import (
    Example,
    QAExample,
    Sentence,
    entity_types,
    read_iob,
    read_labelled,
    read_squad,
    write_iob,
    write_labelled,
)
from .report import (
    DEFAULT_OUT,
    INT8_TOLERANCE,
    RESULT_FILES,
    check_writable,
    int8_targets,
    machine_info,
    render_markdown,
    write_results,
)
from .runner import (
    PRECISIONS,
    bertrt_pipeline,
    bundle_task,
    evaluate_bundle,
    evaluate_classifier,
    evaluate_ner,
    evaluate_qa,
    gold_labels_not_in_model,
    pytorch_pipeline,
)

__all__ = [
    "DEFAULT_OUT",
    "INT8_TOLERANCE",
    "PRECISIONS",
    "RESULT_FILES",
    "Example",
    "QAExample",
    "Sentence",
    "agreement",
    "bertrt_pipeline",
    "bundle_task",
    "check_writable",
    "classifier_metrics",
    "entities_to_iob",
    "entity_types",
    "evaluate_bundle",
    "evaluate_classifier",
    "evaluate_ner",
    "evaluate_qa",
    "gold_labels_not_in_model",
    "int8_targets",
    "machine_info",
    "ner_metrics",
    "pytorch_pipeline",
    "read_iob",
    "read_labelled",
    "read_squad",
    "render_markdown",
    "token_spans",
    "write_iob",
    "write_labelled",
    "write_results",
]
