"""``bertrt batch BUNDLE INPUT OUTPUT``: run a bundle's pipeline over files, resumably (see bertrt.batch).

The task options are the flags of ``bertrt predict``, generated from the task modules and parsed for
the bundle's task by ``bertrt.cli_predict`` (a flag the bundle's task does not take is a usage error).
"""

from __future__ import annotations

import argparse

from .. import cli_predict
from ..backends import add_backend_arguments, plan_from_args
from ..tasks.base import positive_int
from . import DEFAULT_SHARD_SIZE, OUTPUT_FORMATS, print_summary
from . import run as run_batch

__all__ = ["add_arguments", "ray_target", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder (bertrt, Optimum or transformers.js onnx/ layout)")
    parser.add_argument("input", help="a .jsonl, .csv or .parquet file, or a folder / glob of them")
    parser.add_argument("output", help="output folder: part-*.parquet (or .jsonl) and _bertrt_manifest.json")
    parser.add_argument("--text-field", default="text", help="the column holding the text (default text)")
    parser.add_argument("--text-pair-field", default=None, help="text-classification: the second text column")
    parser.add_argument("--id-field", default=None, help="a column naming each row in errors (optional)")
    parser.add_argument("--task", default=None, help="task (default: from bundle.json / config.json)")
    add_backend_arguments(parser)  # --backend, --precision: as bertrt predict and serve
    parser.add_argument("--model-file", default=None, help="ONNX file inside the bundle to load explicitly")
    cli_predict.add_batch_size_argument(parser)
    parser.add_argument(
        "--shard-size",
        type=positive_int,
        default=DEFAULT_SHARD_SIZE,
        help=f"rows per output file, the unit of resumption (default {DEFAULT_SHARD_SIZE})",
    )
    parser.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="local processes (default: one per physical core), or Ray actors with --ray",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="intra-op threads per worker (default: cores / workers; 1 per Ray actor)",
    )
    # a flag and a separate address option: an optional value after --ray would take INPUT for an address
    parser.add_argument(
        "--ray",
        action="store_true",
        help="run on Ray actors: a local Ray (or the cluster RAY_ADDRESS names)",
    )
    parser.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDRESS",
        help="run on the Ray cluster at ADDRESS (auto, HOST:PORT, ray://HOST:10001); implies --ray",
    )
    parser.add_argument(
        "--ship-bundle",
        action="store_true",
        help="--ray: send the bundle through Ray's object store (default: actors read the BUNDLE path)",
    )
    parser.add_argument("--output-format", choices=OUTPUT_FORMATS, default="parquet")
    parser.add_argument(
        "--on-error",
        choices=("fail", "skip"),
        default="fail",
        help="a bad row: stop naming it (fail), or write it to _errors.jsonl and go on (skip)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the output of a different job")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    cli_predict.add_task_flags(parser)  # the same flags, actions and parsers as bertrt predict's


def _task_of(args) -> str:
    """The bundle's task (reads its JSON files only: :func:`bertrt.bundle.read_metadata`), to parse the
    task flags for it."""
    from ..bundle import read_metadata
    from ..errors import TaskError
    from ..tasks import normalize_task

    if args.task is not None:
        return normalize_task(args.task)
    task = read_metadata(args.bundle).task
    if task is None:
        raise TaskError(f"{args.bundle}: cannot infer the task from bundle.json or config.json; pass --task")
    return task


#: flags passed to :func:`bertrt.batch.run` under their own name
_RUN_FLAGS = ("task", "text_field", "text_pair_field", "id_field", "model_file", "batch_size", "shard_size")
_RUN_FLAGS += ("workers", "threads", "ship_bundle", "output_format", "on_error", "overwrite")


def ray_target(args) -> bool | str | None:
    """:func:`bertrt.batch.run`'s ``ray``: the ``--ray-address`` (a cluster), True (``--ray``: a local Ray
    or ``RAY_ADDRESS``) or None (no Ray: local processes)."""
    return args.ray_address or (True if args.ray else None)


def run(args) -> int:
    # The plan first, once: a backend or precision that cannot run here is its error before anything else.
    the_plan = plan_from_args(args)
    options = cli_predict.task_options(_task_of(args), args)
    summary = run_batch(
        args.bundle,
        args.input,
        args.output,
        task_options=options,
        plan=the_plan,
        ray=ray_target(args),
        progress=not args.no_progress,
        **{name: getattr(args, name) for name in _RUN_FLAGS},
    )
    print_summary(summary)
    return 0
