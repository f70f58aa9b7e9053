"""``bertrt predict BUNDLE [TEXT ...]``: run a bundle's pipeline and print one JSON result per line.

Texts come from the arguments, else one per line on stdin; with ``--jsonl`` each stdin line is a JSON
object with a ``text`` field (and ``text_pair`` for text-classification pairs) whose other fields are
copied to the output line next to ``result``. Every input line is read and checked before anything is
printed, so a malformed line (named by its number) leaves stdout empty and exits 1.
"""

from __future__ import annotations

import argparse
import json
import sys

from . import tasks
from .errors import InputError, TaskError
from .results import to_jsonable as _jsonable
from .tasks.base import Option, positive_int

__all__ = ["add_arguments", "run"]

#: options may be mixed with the TEXT arguments (bertrt.cli uses parse_intermixed_args)
INTERMIXED_ARGS = True


def _task_flags() -> dict[str, tuple[Option, list[str]]]:
    """option name -> (its Option, "task: help" per task) for every command-line option of a registered
    task. An option two tasks share (``top_k``) is one flag; they must spell it the same way."""
    flags: dict[str, tuple[Option, list[str]]] = {}
    for name in tasks.TASKS:
        for option in tasks.get_task(name).options:
            if option.cli is None:
                continue
            seen = flags.get(option.name)
            if seen is None:
                flags[option.name] = (option, [])
            elif (seen[0].cli, seen[0].choices) != (option.cli, option.choices):
                raise TaskError(
                    f"option {option.name!r} is spelled differently on the command line by two "
                    f"tasks; give it one Cli and one set of choices"
                )
            flags[option.name][1].append(f"{name}: {option.help}" if option.help else name)
    return flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder (bertrt, Optimum or transformers.js onnx/ layout)")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to run; none: read stdin")
    parser.add_argument("--task", default=None, help="task (default: from bundle.json / config.json)")
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--model-file", default=None, help="ONNX file inside the bundle to load explicitly")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="intra-op threads (default: physical cores)"
    )
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--max-tokens-per-batch", type=positive_int, default=None)
    parser.add_argument("--jsonl", action="store_true", help="stdin holds JSON objects with a 'text' field")
    options = parser.add_argument_group("task options (only those of the bundle's task are used)")
    for option, helps in _task_flags().values():
        options.add_argument(option.flag, help="; ".join(helps), **option.argparse_kwargs())


def _read_inputs(args, stream) -> tuple[list, list[dict]]:
    """(pipeline inputs, extra fields per input). InputError names the first bad line."""
    if args.texts:
        if args.jsonl:
            raise InputError("--jsonl reads stdin; do not also pass TEXT arguments")
        return list(args.texts), [{} for _ in args.texts]
    try:
        lines = stream.read().splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"stdin is not valid UTF-8 text ({exc})") from exc
    if not args.jsonl:
        return lines, [{} for _ in lines]
    items, extras, problems = [], [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        if not isinstance(record, dict):
            problems.append(f"line {number}: expected a JSON object, got {type(record).__name__}")
            continue
        text, pair = record.get("text"), record.get("text_pair")
        if not isinstance(text, str):
            problems.append(
                f"line {number}: 'text' must be a string, got "
                f"{'nothing' if text is None else type(text).__name__}"
            )
            continue
        if pair is not None and not isinstance(pair, str):
            problems.append(f"line {number}: 'text_pair' must be a string, got {type(pair).__name__}")
            continue
        items.append(text if pair is None else {"text": text, "text_pair": pair})
        extras.append({k: v for k, v in record.items() if k not in ("text", "text_pair", "result")})
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InputError("malformed JSONL input: " + "; ".join(problems[:5]) + more)
    return items, extras


def run(args, stdin=None, stdout=None) -> int:
    from .pipelines import pipeline

    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    items, extras = _read_inputs(args, stdin)  # all input checked before the model loads
    options = {name: getattr(args, name) for name in _task_flags() if hasattr(args, name)}
    pipe = pipeline(
        args.task, args.bundle, precision=args.precision, threads=args.threads, model_file=args.model_file
    )
    results = pipe(
        items, batch_size=args.batch_size, max_tokens_per_batch=args.max_tokens_per_batch, **options
    )
    lines = []
    for item, extra, result in zip(items, extras, results):
        if args.jsonl:
            record = {**extra, "result": _jsonable(result)}
        else:
            record = {"text": item, "result": _jsonable(result)}
        lines.append(json.dumps(record, ensure_ascii=False))
    if lines:
        stdout.write("\n".join(lines) + "\n")
    stdout.flush()
    return 0
