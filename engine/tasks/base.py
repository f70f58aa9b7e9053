"""The task protocol: what one task module tells the generic :class:`bertrt.Pipeline`, the CLI, the server
and the exporter.

A task is a :class:`Task` subclass with one instance, ``TASK``, in its module. The pipeline calls, in order::

    check_head(pipe) -> int              once, when the pipeline is built (number of labels / output width)
    setup(pipe) -> state                 once, after it; kept as ``pipe.task_state``
    check_options(pipe, options) -> opts every call, before any work
    encode(pipe, items, opts) -> Encoding
    batch_output(output) -> array        per padded batch (e.g. a softmax over the whole batch)
    collect(output, row, seq, opts)      per sequence, keeps what finish needs
    finish(pipe, items, encoded, collected, opts) -> list   one result per item
    shape(results, single, inputs, options)                 the call's return value

:class:`Option` describes one keyword option (name, type, default, choices, help) and how ``bertrt
predict`` spells it (:class:`Cli`), so the command line's flags and the accepted names come from here.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import BundleError, InputError, TaskError

if TYPE_CHECKING:
    import numpy as np

    from ..pipelines import Pipeline
    from ..tokenize import Encoded, TextTokenizer

__all__ = [
    "UNSET",
    "WARM_UP_TEXT",
    "Cli",
    "Encoding",
    "Option",
    "Task",
    "label_head",
    "non_negative_int",
    "output_width",
    "positive_int",
    "positive_int_or_all",
]

#: The text the server runs once per model before it reports ready.
WARM_UP_TEXT = "Warm-up: Maria flew from Groningen to New York on Monday."


class _Unset:
    """The default of an option whose absence itself means something (text-classification's ``top_k``)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


# -- command-line value parsers (argparse ``type=``: a usage error, exit 2, names the bad value) -------------
def positive_int(value: str, what: str = "a positive int") -> int:
    """An int > 0."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}")
    return number


def positive_int_or_all(value: str) -> int | None:
    """An int > 0, or ``all`` / ``none`` for None (every result)."""
    if value.lower() in ("all", "none"):
        return None
    return positive_int(value, what="a positive int or 'all'")


def non_negative_int(value: str) -> int:
    """An int >= 0."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise argparse.ArgumentTypeError(f"expected an int >= 0, got {value!r}")
    return number


@dataclass(frozen=True)
class Cli:
    """How ``bertrt predict`` spells an option: ``--name-with-dashes``, given only when passed.

    ``parse``: argparse ``type=`` (None: the string itself); ``nargs``: ``"+"`` or ``"*"`` for a list;
    ``flag``: a bare switch that sets True.
    """

    parse: Callable[[str], Any] | None = None
    nargs: str | None = None
    flag: bool = False


@dataclass(frozen=True)
class Option:
    """One keyword option of a task call. ``cli=None``: accepted by the pipeline, not a command-line flag."""

    name: str
    type: Any
    default: Any = None
    choices: tuple | None = None
    help: str = ""
    cli: Cli | None = field(default_factory=Cli)

    @property
    def flag(self) -> str:
        """The command-line flag, e.g. ``--top-k``."""
        return "--" + self.name.replace("_", "-")

    def argparse_kwargs(self) -> dict:
        """Keyword arguments of ``parser.add_argument(self.flag, ...)``; the default is SUPPRESS, so the
        namespace holds only the flags actually given."""
        if self.cli is None:
            raise TaskError(f"option {self.name!r} is not a command-line flag")
        kwargs: dict = {"default": argparse.SUPPRESS, "dest": self.name}
        if self.cli.flag:
            kwargs["action"] = "store_true"
            return kwargs
        if self.cli.parse is not None:
            kwargs["type"] = self.cli.parse
        if self.cli.nargs is not None:
            kwargs["nargs"] = self.cli.nargs
        if self.choices is not None:
            kwargs["choices"] = self.choices
        return kwargs


@dataclass(frozen=True)
class Encoding:
    """What :meth:`Task.encode` hands on: the sequences to run, in the order :meth:`Task.collect` results
    come back. Tasks subclass it to carry more (NER: how many windows each text has)."""

    sequences: list[Encoded]


class Task:
    """Base of every task; subclasses set the class attributes and override what differs.

    The defaults make a simple sequence task: encode each item, keep each sequence's first output row,
    return those rows. One instance is shared by every pipeline of the task, so per-pipeline state goes
    in :meth:`setup`'s return value (``pipe.task_state``), never on the instance.
    """

    #: canonical name, as in the registry (bertrt.tasks)
    name: str = ""
    #: transformers auto class that loads the matching head (the exporter's, and the test builders')
    auto_class: str = "AutoModel"
    #: preferred graph output
    output: str = "logits"
    #: accepts ``{"text", "text_pair"}`` dicts
    pairs: bool = False
    #: the head's outputs are labels: a bundle without id2label gets LABEL_0, LABEL_1, ...
    labels: bool = False
    options: tuple[Option, ...] = ()

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    @property
    def option_names(self) -> tuple[str, ...]:
        return tuple(o.name for o in self.options)

    def reject_unknown(self, options: Mapping) -> None:
        """InputError naming every option this task does not accept, and those it does."""
        allowed = self.option_names
        unknown = sorted(set(options) - set(allowed))
        if unknown:
            raise InputError(
                f"unknown option(s) for {self.name}: {', '.join(unknown)}; "
                f"accepted: {', '.join(allowed) or 'none'}"
            )

    def check_options(self, pipe: Pipeline, options: Mapping) -> Any:
        """Every option checked before any work; returns what the other steps read. Default: the names
        are checked, the values taken as given (or the option's default)."""
        self.reject_unknown(options)
        return {o.name: options.get(o.name, o.default) for o in self.options}

    def check_head(self, pipe: Pipeline) -> int:
        """The graph output's last dimension (0 when not declared); TaskError/BundleError on a wrong head."""
        return output_width(pipe) or 0

    def setup(self, pipe: Pipeline) -> Any:
        """Per-pipeline state, built once (``pipe.task_state``); TaskError when the bundle cannot serve."""
        return None

    def encode(self, pipe: Pipeline, items: list, opts: Any) -> Encoding:
        """Tokenize the items (str, or (text, text_pair) tuples when :attr:`pairs`)."""
        return Encoding(pipe.tokenizer.encode_batch(items))

    def batch_output(self, output: np.ndarray) -> np.ndarray:
        """Transform one padded batch's output before :meth:`collect` reads it."""
        return output

    def collect(self, output: np.ndarray, row: int, seq: Encoded, opts: Any) -> Any:
        """What to keep of one sequence's output; the padded batch is dropped once read."""
        return output[row]

    def finish(self, pipe: Pipeline, items: list, encoded: Encoding, collected: list, opts: Any) -> list:
        """One result per item, from the collected outputs (in the order of ``encoded.sequences``)."""
        return list(collected)

    def shape(self, results: list, single: bool, inputs, options: Mapping) -> Any:
        """The call's return value: the one result for a single input, else the list. ``options`` are the
        call's options as given."""
        return results[0] if single else results

    def warm_up_text(self, tokenizer: TextTokenizer) -> str:
        """A text this task accepts, run once before serving."""
        return WARM_UP_TEXT


def output_width(pipe: Pipeline) -> int | None:
    """The last dimension of the graph output, None when it is not a fixed int."""
    width = pipe.session.output_shape[-1] if pipe.session.output_shape else None
    return width if isinstance(width, int) else None


def label_head(pipe: Pipeline, rank: int) -> int:
    """Number of labels of a classification head of output ``rank``; checked against id2label."""
    width = output_width(pipe)
    path = pipe.bundle.model_path
    if len(pipe.session.output_shape) != rank:
        raise TaskError(
            f"{path}: output {pipe.session.output_name!r} has shape {pipe.session.output_shape}, "
            f"not a {pipe.task} head (expected rank {rank})"
        )
    if pipe.id2label and width is not None and width != len(pipe.id2label):
        raise BundleError(
            path, f"the graph outputs {width} labels but config.json id2label has {len(pipe.id2label)}"
        )
    return width if width is not None else len(pipe.id2label)
