"""``bertrt predict BUNDLE [TEXT ...]``: run a bundle's pipeline and print one JSON result per line.

Texts come from the TEXT arguments, else from stdin. Stdin is read as bytes and decoded as UTF-8 strictly,
whatever the locale (under ``LC_ALL=C`` Python would otherwise smuggle bad bytes through as lone
surrogates): an invalid byte sequence is an error naming its line and byte column, and a TEXT argument
that is not valid UTF-8 is one naming the argument's position. Lines end at ``"\\n"`` only (a ``"\\r"``
before it is dropped), as everywhere bertrt reads lines (:mod:`bertrt.lines`): a form feed, ``\\x85`` or
U+2028 inside a line stays in that text.

**One output line per input line, in order**, in both modes, so output line *k* answers input line *k*:

* plain: each stdin line is one text, a blank line included (an empty text); printed as
  ``{"text": ..., "result": ...}``.
* ``--jsonl``: each line is one JSON object (strict JSON: no ``NaN``/``Infinity``/``1e999``, at most
  :data:`bertrt.lines.MAX_JSON_DEPTH` levels deep) with a ``text`` string (and ``text_pair`` for
  text-classification pairs). Its other fields are copied to the output line beside ``result``. A blank
  line is malformed (it holds no object, and skipping it would shift every later output line against its
  input), and so is a field named ``result``: bertrt writes the prediction there and refuses to overwrite
  the user's field (rename it).

Every input line is read and checked before the model loads, so a malformed line (named by its number;
the first five are listed) leaves stdout empty and exits 1. The output is strict JSON, one value per
line (:func:`bertrt.lines.dumps_line`).

Task flags are generated from the task modules; a list-valued one (``--ignore-labels``, ``--targets``)
takes one value per flag and is repeated for more, so a TEXT after it is never taken for a value and
stdin is read only when no TEXT is given. A text the task refuses (fill-mask without a mask) is named by
its stdin line or TEXT argument (:attr:`bertrt.errors.InputError.items`). Only the flags of the bundle's
task may be given. Another
task's flag, or a value the bundle's task does not take, is a usage error (exit 2) naming the flag and the
task. fill-mask's ``--top-k`` takes a number, not ``all``: transformers' fill-mask ``top_k`` is an int, and
"every vocabulary entry per mask" (tens of thousands of rows) is never a useful answer; with ``--targets``
any ``--top-k`` at least the number of targets returns them all.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field

from . import tasks
from .backends import add_backend_arguments, plan_from_args
from .errors import BundleError, InputError, TaskError, UsageError
from .lines import (
    MAX_JSON_DEPTH,
    decode_utf8,
    drop_bom,
    dumps_line,
    parse_json_line,
    split_lines,
    valid_text,
)
from .results import to_jsonable as _jsonable
from .tasks.base import Option, positive_int

__all__ = ["add_arguments", "add_batch_size_argument", "add_task_flags", "run", "task_options"]

#: options may be mixed with the TEXT arguments (bertrt.cli uses parse_intermixed_args)
INTERMIXED_ARGS = True

#: namespace attribute holding the strings given to each task flag, re-parsed by the bundle's task
_GIVEN = "_task_flag_strings"

#: fields of a --jsonl line that bertrt reads (not copied to the output) and the one it writes
_INPUT_FIELDS = ("text", "text_pair")
_RESULT_FIELD = "result"


@dataclass
class _Flag:
    """One command-line flag shared by every task that has the option: its Option per task."""

    option: Option  # the first task's: the flag's spelling, nargs and choices
    by_task: dict[str, Option] = field(default_factory=dict)
    helps: list[str] = field(default_factory=list)

    @property
    def parsers(self) -> tuple:
        """The distinct value parsers of the tasks sharing the flag, in registry order."""
        found = []
        for option in self.by_task.values():
            if option.cli.parse is not None and option.cli.parse not in found:
                found.append(option.cli.parse)
        return tuple(found)


def add_batch_size_argument(parser) -> None:
    """``--batch-size``, the same for bertrt predict and bertrt batch (default: tuned, else 32)."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="sequences per session run (default: the bundle's tuned one for this CPU with --backend auto, "
        "see bertrt tune; else 32)",
    )


def _task_flags() -> dict[str, _Flag]:
    """option name -> its :class:`_Flag`, for every command-line option of a registered task. An option two
    tasks share (``top_k``) is one flag: they must agree on nargs, switch-ness and choices; each task
    parses the value with its own parser once the bundle's task is known."""
    flags: dict[str, _Flag] = {}
    for name in tasks.TASKS:
        for option in tasks.get_task(name).options:
            if option.cli is None:
                continue
            seen = flags.setdefault(option.name, _Flag(option))
            first = seen.option
            if (first.cli.nargs, first.cli.flag, first.choices) != (
                option.cli.nargs,
                option.cli.flag,
                option.choices,
            ):
                raise TaskError(
                    f"option {option.name!r} is spelled differently on the command line by two "
                    f"tasks; give it one nargs, flag and set of choices"
                )
            seen.by_task[name] = option
            seen.helps.append(f"{name}: {option.help}" if option.help else name)
    return flags


def _parse_any(parsers: tuple, value: str):
    """``value`` parsed by the first parser that accepts it; the last parser's error when none does."""
    error: Exception | None = None
    for parse in parsers:
        try:
            return parse(value)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            error = exc
    if error is None:
        return value
    if isinstance(error, argparse.ArgumentTypeError):
        raise error
    raise argparse.ArgumentTypeError(f"invalid value {value!r}")


class _TaskValue(argparse.Action):
    """A task flag's action: stores the value as the first of its tasks' parsers accepting it reads it
    (so a value no task takes is a usage error at once), and the strings as given in ``_GIVEN``.

    A list-valued option (``--ignore-labels``, ``--targets``; ``repeat``) takes **one value per flag**, and
    the flag is repeated for more (``--targets A --targets B``), so a TEXT after it is never read as one of
    its values; where the list may be empty (``--ignore-labels``) the bare flag gives the empty list."""

    def __init__(self, option_strings, dest, parsers: tuple = (), repeat: bool = False, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.parsers, self.repeat = parsers, repeat

    def __call__(self, parser, namespace, values, option_string=None):
        if self.repeat:  # one value (None: the bare flag) added to the values of the earlier flags
            values = list(getattr(namespace, _GIVEN, {}).get(self.dest, [])) + (
                [] if values is None else [values]
            )
        try:
            if isinstance(values, list):
                parsed = [_parse_any(self.parsers, v) for v in values]
            else:
                parsed = _parse_any(self.parsers, values)
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentError(self, str(exc)) from None
        setattr(namespace, self.dest, parsed)
        given = dict(getattr(namespace, _GIVEN, {}))
        given[self.dest] = values
        setattr(namespace, _GIVEN, given)


_EPILOG = (
    "Input lines end at \\n only (\\r\\n too); stdin and TEXT arguments must be UTF-8. One output line per "
    "input line, in order: in plain mode a blank line is an empty text; with --jsonl a blank line, a field "
    f"named 'result', NaN/Infinity/1e999 or JSON nested over {MAX_JSON_DEPTH} levels is an error naming the "
    "line, and nothing is printed. The output is strict JSON. Exit codes: 0 success, 1 runtime error, "
    "2 usage error (also a task flag the bundle's task does not take)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = _EPILOG
    parser.add_argument("bundle", help="bundle folder (bertrt, Optimum or transformers.js onnx/ layout)")
    parser.add_argument(
        "texts",
        nargs="*",
        metavar="TEXT",
        help="texts to run; none: read stdin. List flags (--ignore-labels, --targets) take one value each "
        "and repeat (--targets a --targets b), so a TEXT after them stays a text",
    )
    parser.add_argument("--task", default=None, help="task (default: from bundle.json / config.json)")
    add_backend_arguments(parser)
    parser.add_argument("--model-file", default=None, help="ONNX file inside the bundle to load explicitly")
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="intra-op threads (default: physical cores)"
    )
    add_batch_size_argument(parser)
    parser.add_argument("--max-tokens-per-batch", type=positive_int, default=None)
    parser.add_argument(
        "--jsonl",
        action="store_true",
        help="stdin holds one JSON object per line with a 'text' field; other fields are copied to the "
        "output (a blank line or a field named 'result' is malformed)",
    )
    add_task_flags(parser)


def add_task_flags(parser: argparse.ArgumentParser) -> None:
    """Every task's options as flags, in one group (shared by ``bertrt predict`` and ``bertrt batch``)."""
    options = parser.add_argument_group("task options (only those of the bundle's task may be given)")
    for flag in _task_flags().values():
        kwargs = flag.option.argparse_kwargs()
        helps = "; ".join(flag.helps)
        if not flag.option.cli.flag:
            kwargs.pop("type", None)
            kwargs.update(action=_TaskValue, parsers=flag.parsers)
        if kwargs.get("nargs") in ("*", "+"):  # a list: one value per flag, repeated (see _TaskValue)
            empty = kwargs.pop("nargs") == "*"
            kwargs.update(repeat=True, metavar=flag.option.name.upper().removesuffix("S"))
            if empty:
                kwargs.update(nargs="?", const=None)
            helps += "; one value per flag, repeat the flag for more" + (
                " (the bare flag: none)" if empty else ""
            )
        options.add_argument(flag.option.flag, help=helps, **kwargs)


def task_options(task: str, args) -> dict:
    """The task options given on the command line, each value parsed by ``task``'s own Option; UsageError
    naming the flag and the task for a flag ``task`` does not take or a value it refuses."""
    spec = tasks.get_task(task)
    flags = _task_flags()
    given = [name for name in flags if hasattr(args, name)]
    # by_task holds the tasks whose options (spec.option_names) have the flag on the command line
    foreign = [flags[name].option.flag for name in given if spec.name not in flags[name].by_task]
    if foreign:
        takes = ", ".join(f.option.flag for f in flags.values() if spec.name in f.by_task) or "none"
        verb = "is not an option" if len(foreign) == 1 else "are not options"
        raise UsageError(f"{', '.join(foreign)} {verb} of {spec.name}; {spec.name} takes: {takes}")
    strings = getattr(args, _GIVEN, {})
    options = {}
    for name in given:
        option, value = flags[name].by_task[spec.name], getattr(args, name)
        if name in strings and option.cli.parse is not None:
            raw = strings[name]
            try:
                value = [option.cli.parse(v) for v in raw] if isinstance(raw, list) else option.cli.parse(raw)
            except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
                reason = exc if isinstance(exc, argparse.ArgumentTypeError) else f"invalid value {raw!r}"
                raise UsageError(f"argument {option.flag}: {reason} (for {spec.name})") from None
        options[name] = value
    return options


def _read_stdin(stream) -> str:
    """All of stdin as text: its bytes decoded as UTF-8 strictly (a text stream without a byte buffer, as
    in tests, is checked the same way), a leading byte-order mark dropped."""
    buffer = getattr(stream, "buffer", None)
    if buffer is not None:
        return decode_utf8(drop_bom(buffer.read()), "stdin")
    return drop_bom(valid_text(stream.read(), "stdin"))


def _read_inputs(args, stream) -> tuple[list, list[dict]]:
    """(pipeline inputs, extra fields per input), one per input line. InputError names the bad lines."""
    if args.texts:
        if args.jsonl:
            raise UsageError("--jsonl reads stdin; do not also pass TEXT arguments")
        texts = [valid_text(t, f"TEXT argument {i}", lines=False) for i, t in enumerate(args.texts, 1)]
        return texts, [{} for _ in texts]
    lines = split_lines(_read_stdin(stream))
    if not args.jsonl:
        return lines, [{} for _ in lines]
    items, extras, problems = [], [], []
    for number, line in enumerate(lines, start=1):
        problem, item, extra = _jsonl_record(line, number)
        if problem is not None:
            problems.append(problem)
            continue
        items.append(item)
        extras.append(extra)
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise InputError("malformed JSONL input: " + "; ".join(problems[:5]) + more)
    return items, extras


def _jsonl_record(line: str, number: int) -> tuple[str | None, object, dict]:
    """(problem or None, pipeline input, fields to copy) of one --jsonl line."""
    if not line.strip(" \t"):
        return f"line {number}: blank line (--jsonl needs one JSON object per line)", None, {}
    try:
        record = parse_json_line(line, number)
    except InputError as exc:
        return str(exc), None, {}
    if not isinstance(record, dict):
        return f"line {number}: expected a JSON object, got {type(record).__name__}", None, {}
    text, pair = record.get("text"), record.get("text_pair")
    if not isinstance(text, str):
        got = "nothing" if text is None else type(text).__name__
        return f"line {number}: 'text' must be a string, got {got}", None, {}
    if pair is not None and not isinstance(pair, str):
        return f"line {number}: 'text_pair' must be a string, got {type(pair).__name__}", None, {}
    if _RESULT_FIELD in record:
        return (
            f"line {number}: has a field named {_RESULT_FIELD!r}, where bertrt writes the prediction; "
            "rename it",
            None,
            {},
        )
    item = text if pair is None else {"text": text, "text_pair": pair}
    return None, item, {k: v for k, v in record.items() if k not in _INPUT_FIELDS}


def _where(args, indexes) -> str:
    """The input items ``indexes`` named as the user gave them: TEXT arguments or stdin lines."""
    what = "TEXT argument" if args.texts else "line"
    shown = ", ".join(str(i + 1) for i in indexes[:20]) + (" ..." if len(indexes) > 20 else "")
    return f"{what}{'s' if len(indexes) > 1 else ''} {shown}"


def run(args, stdin=None, stdout=None) -> int:
    from .pipelines import pipeline

    stdin = sys.stdin if stdin is None else stdin
    stdout = sys.stdout if stdout is None else stdout
    items, extras = _read_inputs(args, stdin)  # all input checked before the model loads
    if args.task is not None:
        task_options(args.task, args)  # flags that do not fit the task given: before the model loads
    pipe = pipeline(args.task, args.bundle, model_file=args.model_file, plan=plan_from_args(args))
    options = task_options(pipe.task, args)
    try:
        results = pipe(
            items, batch_size=args.batch_size, max_tokens_per_batch=args.max_tokens_per_batch, **options
        )
    except InputError as exc:
        if not exc.items:
            raise
        raise InputError(f"{_where(args, exc.items)}: {exc.problem}") from None
    lines = []
    for number, (item, extra, result) in enumerate(zip(items, extras, results), start=1):
        if args.jsonl:
            record = {**extra, _RESULT_FIELD: _jsonable(result)}
        else:
            record = {"text": item, _RESULT_FIELD: _jsonable(result)}
        try:
            lines.append(dumps_line(record))
        except ValueError:  # input values are strict JSON (read so), so a non-finite score of the model
            where = f"TEXT argument {number}" if args.texts else f"line {number}"
            raise BundleError(
                pipe.bundle.root, f"the model gave a non-finite score (NaN or Infinity) for {where}"
            ) from None
    if lines:
        stdout.write("\n".join(lines) + "\n")
    stdout.flush()
    return 0
