"""``bertrt eval``: entity-level and accuracy evaluation of a bundle on labelled data.

``bertrt eval BUNDLE DATA [--format iob|tsv|jsonl] [--precision fp32 int8] [--pytorch CHECKPOINT]
[--out DIR]``

* A token-classification bundle on an IOB file (token TAB tag, CoNLL or WNUT format): seqeval's
  entity-level report (precision/recall/F1 per type, micro and macro averages).
* A text-classification bundle on a labelled TSV/JSONL: accuracy, macro-F1 and per-label F1.
* A zero-shot-classification bundle on a labelled TSV/JSONL: the same figures, the candidate labels being
  the data's labels (or those given with ``--candidate-labels``, once per label; gold ids index them).
* A question-answering bundle on SQuAD JSONL (``question``, ``context``, ``answers`` as SQuAD has it or a
  list of str): SQuAD exact match and F1, each the best over a question's gold answers.

Each system runs on the same texts; the report gives the agreement of every pair of systems (token tags
for NER, labels for classification). Output: ``eval.json`` and ``eval.md`` in ``--out`` (default
``./bertrt-results``), and the Markdown on stdout. Needs ``bertrt[eval]``; ``--pytorch`` also needs
``bertrt[export]``.

``--out`` is checked (created, a probe file written and removed) before any work, so a folder that cannot
be written fails at once. Data files are UTF-8 (an error names the file, line and byte offset otherwise).
Gold entity types / labels that the model does not have are a warning on stderr, a line in ``eval.md``
and ``gold_labels_not_in_model`` (with their support) in ``eval.json``; none of them being the model's
is an error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import InputError
from .report import DEFAULT_OUT, check_writable, machine_info, render_markdown, write_results
from .runner import PRECISIONS, evaluate_bundle

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", type=Path, help="bertrt bundle folder (a task bertrt eval scores)")
    parser.add_argument(
        "data",
        type=Path,
        help=(
            "labelled data: IOB file (NER), TSV/JSONL (classifier, zero-shot; a JSONL text_pair field "
            "makes a pair) or SQuAD JSONL (question answering)"
        ),
    )
    parser.add_argument(
        "--format",
        choices=["iob", "tsv", "jsonl"],
        default=None,
        help="data format (default: from the suffix and the bundle's task)",
    )
    parser.add_argument(
        "--precision",
        nargs="+",
        choices=PRECISIONS,
        default=list(PRECISIONS),
        help="bertrt precisions to evaluate (default: fp32 int8)",
    )
    parser.add_argument(
        "--pytorch",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="also evaluate this Hugging Face checkpoint with transformers.pipeline (rerank: "
        "sentence-transformers' CrossEncoder; needs bertrt[export])",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help=f"folder for eval.json and eval.md (default ./{DEFAULT_OUT})",
    )
    parser.add_argument(
        "--candidate-labels",
        action="append",
        default=None,
        metavar="LABEL",
        help="zero-shot: a label to choose among, once per label (default: the data's labels)",
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N items")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="intra-op threads for every system (default: each library's own)",
    )


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit must be >= 1, got {args.limit}")
    if args.pytorch is not None and not args.pytorch.is_dir():
        raise InputError(f"--pytorch {args.pytorch}: not a checkpoint folder")
    check_writable(args.out)  # before any work: a read-only --out fails now, not after the evaluation
    ev = evaluate_bundle(
        args.bundle,
        args.data,
        fmt=args.format,
        precisions=args.precision,
        checkpoint=args.pytorch,
        batch_size=args.batch_size,
        limit=args.limit,
        threads=args.threads,
        candidate_labels=args.candidate_labels,
    )
    markdown = render_markdown([ev], title=f"bertrt eval: {args.bundle.name} on {ev['dataset']}")
    json_path, md_path = write_results({"evaluations": [ev], "machine": machine_info()}, markdown, args.out)
    print(markdown)
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0
