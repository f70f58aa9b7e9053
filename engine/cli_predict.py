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

from .errors import InputError
from .results import to_jsonable as _jsonable

__all__ = ["add_arguments", "run"]

#: options may be mixed with the TEXT arguments (bertrt.cli uses parse_intermixed_args)
INTERMIXED_ARGS = True


def _top_k(value: str):
    if value.lower() in ("all", "none"):
        return None
    return _positive_int(value, what="a positive int or 'all'")


def _positive_int(value: str, what: str = "a positive int"):
    """argparse type: a usage error (exit 2) unless ``value`` is an int > 0."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def _non_negative_int(value: str):
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {value!r}")
    return number


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle folder (bertrt, Optimum or transformers.js onnx/ layout)")
    parser.add_argument("texts", nargs="*", metavar="TEXT", help="texts to run; none: read stdin")
    parser.add_argument("--task", default=None, help="task (default: from bundle.json / config.json)")
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--model-file", default=None, help="ONNX file inside the bundle to load explicitly")
    parser.add_argument("--threads", type=_positive_int, default=None, help="intra-op threads (default: physical cores)")
    parser.add_argument("--batch-size", type=_positive_int, default=32)
    parser.add_argument("--max-tokens-per-batch", type=_positive_int, default=None)
    parser.add_argument("--jsonl", action="store_true", help="stdin holds JSON objects with a 'text' field")
    options = parser.add_argument_group("task options (only those of the bundle's task are used)")
    options.add_argument("--top-k", type=_top_k, default=argparse.SUPPRESS,
                         help="text-classification / fill-mask: number of results ('all' for every label)")
    options.add_argument("--function-to-apply", choices=("softmax", "sigmoid", "none"), default=argparse.SUPPRESS)
    options.add_argument("--targets", nargs="+", default=argparse.SUPPRESS, help="fill-mask: candidate tokens")
    options.add_argument("--aggregation-strategy", choices=("none", "simple", "first", "average", "max"),
                         default=argparse.SUPPRESS)
    options.add_argument("--ignore-labels", nargs="*", default=argparse.SUPPRESS)
    options.add_argument("--stride", type=_non_negative_int, default=argparse.SUPPRESS)
    options.add_argument("--word-grouping", choices=("offsets", "tokenizer"), default=argparse.SUPPRESS)
    options.add_argument("--pooling", choices=("mean", "cls", "max", "words"), default=argparse.SUPPRESS)
    options.add_argument("--normalize", action="store_true", default=argparse.SUPPRESS)
    options.add_argument("--word-pooling", choices=("mean", "max", "first"), default=argparse.SUPPRESS)


_TASK_OPTIONS = ("top_k", "function_to_apply", "targets", "aggregation_strategy", "ignore_labels", "stride",
                 "word_grouping", "pooling", "normalize", "word_pooling")


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
            problems.append(f"line {number}: 'text' must be a string, got "
                            f"{'nothing' if text is None else type(text).__name__}")
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
    options = {name: getattr(args, name) for name in _TASK_OPTIONS if hasattr(args, name)}
    pipe = pipeline(args.task, args.bundle, precision=args.precision, threads=args.threads,
                    model_file=args.model_file)
    results = pipe(items, batch_size=args.batch_size, max_tokens_per_batch=args.max_tokens_per_batch, **options)
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
