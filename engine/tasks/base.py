"""The task protocol: what one task module tells the generic :class:`bertrt.Pipeline`, the CLI, the server
and the exporter.

A task is a :class:`Task` subclass with one instance, ``TASK``, in its module. The pipeline calls, in order::

    check_head(pipe) -> int              once, when the pipeline is built: the graph has the task's head
                                         (:attr:`Task.head`); returns the number of labels / output width
    setup(pipe) -> state                 once, after it; kept as ``pipe.task_state``
    check_options(pipe, options) -> opts every call, before any work
    encode(pipe, items, opts) -> Encoding
    batch_output(output) -> array        per padded batch (e.g. a softmax over the whole batch)
    collect(output, row, seq, opts)      per sequence, keeps what finish needs
    finish(pipe, items, encoded, collected, opts) -> list   one result per item
    shape(results, single, inputs, options)                 the call's return value

:class:`Option` describes one keyword option (name, type, default, choices, help) and how ``bertrt
predict`` spells it (:class:`Cli`), so the command line's flags and the accepted names come from here.

:class:`Head` is the graph output a task reads (its name, and what each dimension is). A bundle whose graph
does not have it is refused when the pipeline is built, with a TaskError that says what the bundle is
(:func:`describe_bundle`: its own task and head, or what its outputs and widths look like), e.g.
"this bundle is a token-classification model (35 labels); feature-extraction needs last_hidden_state
(batch, sequence, hidden)".
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .. import tasks as _registry
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
    "Head",
    "Identity",
    "Option",
    "Task",
    "describe_bundle",
    "identify",
    "label_head",
    "non_negative_int",
    "output_width",
    "positive_int",
    "positive_int_or_all",
    "require_head",
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
class Head:
    """The graph output a task reads: its ``output`` name and what each dimension is (``dims``).

    The last dimension is the width, one of ``hidden`` (the encoder's hidden size), ``labels`` (one per
    id2label entry) or ``vocabulary`` (one per token: at least the tokenizer's vocabulary).
    """

    output: str
    dims: tuple[str, ...]

    @property
    def rank(self) -> int:
        return len(self.dims)

    @property
    def width(self) -> str:
        """What the last dimension counts: ``hidden``, ``labels`` or ``vocabulary``."""
        return self.dims[-1]

    def __str__(self) -> str:
        return f"{self.output} ({', '.join(self.dims)})"


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
    #: the graph output the task reads (it must be there, by this name: there is no fallback) ...
    output: str = "logits"
    #: ... and what its dimensions are (:class:`Head`); the last is the width
    dims: tuple[str, ...] = ("batch", "labels")
    #: accepts ``{"text", "text_pair"}`` dicts
    pairs: bool = False
    #: the head's outputs are labels: a bundle without id2label gets LABEL_0, LABEL_1, ...
    labels: bool = False
    options: tuple[Option, ...] = ()

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    @property
    def head(self) -> Head:
        """The graph output this task needs, and its shape."""
        return Head(self.output, tuple(self.dims))

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
        """The width of :attr:`head` in the graph (number of labels; 0 when not declared). TaskError when
        the graph lacks the head (naming what the bundle is), BundleError when it contradicts the bundle."""
        return require_head(pipe, self.head)

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


# -- the head check -------------------------------------------------------------------------------------
_LABEL_DIMS = {2: ("batch", "labels"), 3: ("batch", "sequence", "labels")}


@dataclass(frozen=True)
class Identity:
    """What a bundle is: the task its graph serves and that task's head (None when nothing fits), and the
    declared shape of that output."""

    task: str | None
    head: Head | None
    shape: tuple


def _width(shape) -> int | None:
    width = shape[-1] if shape else None
    return width if isinstance(width, int) and not isinstance(width, bool) else None


def _fits(pipe: Pipeline, head: Head, shape) -> bool:
    """Whether the graph's output ``shape`` can be ``head`` of this bundle, judged by its width alone."""
    width, labels = _width(shape), len(pipe.bundle.id2label)
    if width is None:
        return head.width not in ("labels", "vocabulary")
    if head.width == "labels":  # one per id2label entry; without id2label, fewer than the tokens
        return width == labels if labels else width < pipe.tokenizer.vocab_size
    if head.width == "vocabulary":  # every token has a score, and it is not one score per label
        return width >= pipe.tokenizer.vocab_size and width != labels
    return True


def identify(pipe: Pipeline) -> Identity:
    """What the bundle is: its own task (bundle.json, or config.json's architectures) when its graph has
    that task's head; else the first registered task whose head the graph's outputs and widths fit."""
    outputs = pipe.session.outputs

    def head_of(name: str) -> Head | None:
        try:
            return _registry.get_task(name).head
        except (TaskError, ImportError, AttributeError):
            return None

    own = pipe.bundle.task
    head = head_of(own) if own is not None else None
    if head is not None and len(outputs.get(head.output, ())) == head.rank:
        return Identity(own, head, tuple(outputs[head.output]))
    for name in _registry.TASKS:
        head = head_of(name)
        if head is None or head.output not in outputs:
            continue
        shape = tuple(outputs[head.output])
        if len(shape) == head.rank and _fits(pipe, head, shape):
            return Identity(name, head, shape)
    return Identity(None, None, ())


def _outputs_text(outputs: Mapping) -> str:
    return ", ".join(f"{name} {list(shape)}" for name, shape in outputs.items()) or "none"


def describe_bundle(pipe: Pipeline) -> str:
    """What the bundle is, in words: "a token-classification model (35 labels)", "a feature-extraction
    model (hidden size 32)", or its outputs when no task's head fits them."""
    found = identify(pipe)
    if found.task is None:
        return f"a model with output(s) {_outputs_text(pipe.session.outputs)}, the head of no known task"
    width = _width(found.shape)
    if width is None:
        return f"a {found.task} model"
    size = {
        "labels": f"{width} label{'s' if width != 1 else ''}",
        "vocabulary": f"a vocabulary of {width}",
        "hidden": f"hidden size {width}",
    }.get(found.head.width, f"{found.head.width} {width}")
    return f"a {found.task} model ({size})"


def require_head(pipe: Pipeline, head: Head) -> int:
    """The width of ``head`` in the pipeline's graph (the number of labels for a label head; 0 when the
    dimension is not a fixed int).

    TaskError, naming what the bundle is (:func:`describe_bundle`), when the graph has no output named
    ``head.output``, when its rank differs, or when the bundle's own head reads that output as another
    kind of width (NER on a masked-LM bundle: the vocabulary is not labels). BundleError when the widths
    contradict the bundle's files (id2label, the tokenizer's vocabulary).
    """
    outputs = pipe.session.outputs
    shape = outputs.get(head.output)
    found = identify(pipe)
    misread = found.head is not None and found.head.output == head.output and found.head.width != head.width
    if shape is None or len(shape) != head.rank or misread:
        raise TaskError(
            f"{pipe.bundle.root}: this bundle is {describe_bundle(pipe)}; {pipe.task} needs {head}, "
            f"and the graph's outputs are {_outputs_text(outputs)}"
        )
    width = _width(shape)
    path = pipe.bundle.model_path
    if head.width == "labels":
        labels = len(pipe.id2label)
        if labels and width is not None and width != labels:
            raise BundleError(path, f"the graph outputs {width} labels but config.json id2label has {labels}")
        return width if width is not None else labels
    if head.width == "vocabulary" and width is not None and pipe.tokenizer.vocab_size > width:
        raise BundleError(
            path,
            f"tokenizer vocabulary ({pipe.tokenizer.vocab_size}) is "
            f"larger than the model's output vocabulary ({width})",
        )
    return width or 0


def output_width(pipe: Pipeline) -> int | None:
    """The last dimension of the task's graph output, None when it is not a fixed int (or absent)."""
    return _width(pipe.session.outputs.get(pipe.spec.output, ()))


def label_head(pipe: Pipeline, rank: int) -> int:
    """Number of labels of a classification head of output rank 2 (per text) or 3 (per token), checked
    as :func:`require_head` checks it."""
    if rank not in _LABEL_DIMS:
        raise TaskError(f"a label head has rank 2 or 3, not {rank}")
    return require_head(pipe, Head(pipe.spec.output, _LABEL_DIMS[rank]))
