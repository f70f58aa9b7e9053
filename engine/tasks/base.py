"""The task protocol: what one task module tells the generic :class:`bertrt.Pipeline`, the CLI, the server
and the exporter.

A task is a :class:`Task` subclass with one instance, ``TASK``, in its module. The pipeline calls, in order::

    check_head(pipe) -> int              once, when the pipeline is built: the graph has the task's head
                                         (:attr:`Task.head`); returns the number of labels / output width
    select_head(pipe)                    then: the session returns that head (its own output, or the
                                         :attr:`Task.stacked_outputs` a graph keeps apart, stacked)
    setup(pipe) -> state                 once, after it; kept as ``pipe.task_state``
    check_options(pipe, options) -> opts every call, before any work: one frozen object the steps read
    encode(pipe, items, opts) -> Encoding
    batch_output(output) -> array        per padded batch (e.g. a softmax over the whole batch)
    collect(output, row, seq, opts)      per sequence, keeps what finish needs
    finish(pipe, items, encoded, collected, opts) -> list   one result per item
    shape(results, single, inputs, options)                 the call's return value

Everything else that differs by task is asked of the task too, so the other commands are loops that know
no task name::

    gates, agreement(reference, candidate)       ``bertrt tune``: figures between two runs' results, and
    tune_sample(pipe, texts)                     their minimums; the texts it runs (fill-mask: masked)
    evaluation                                   ``bertrt eval`` / ``tune --labelled``: data and metric
    validation_inputs(mask_token),               the exporter: its validation texts (and pairs), the
    compare_outputs(reference, candidate, ...),  figures of a graph's outputs against PyTorch's and
    int8_gates                                   the minimums an int8 graph must reach
    result_spec(pipe, options)                   ``bertrt batch``: the Arrow type of the ``result`` column;
    row_option, row_item(text, value)            rows that carry an option of their own (rerank: documents)
    warm_up_text(tokenizer)                      the server's (and result_spec's) probe text

Shapes the protocol takes: a text pair per item (``pairs``: rerank's query and document, zero-shot's text
and hypothesis), several sequences per item (an :class:`Encoding` subclass that records how many each item
has, as NER's windows; :meth:`Task.finish` regroups them), per-call data as options (``candidate_labels``,
``documents``: checked once by :meth:`Task.check_options` into the task's frozen options object).

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
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import tasks as _registry
from ..errors import BundleError, InputError, InputTypeError, TaskError
from . import figures

if TYPE_CHECKING:
    from ..batch.results import ResultSpec
    from ..pipelines import Pipeline
    from ..tokenize import TextTokenizer, TokenSequence

__all__ = [
    "UNSET",
    "VALIDATION_PAIRS",
    "VALIDATION_TEXTS",
    "WARM_UP_TEXT",
    "Cli",
    "Encoding",
    "Evaluation",
    "Head",
    "Identity",
    "Option",
    "Task",
    "ValidationInputs",
    "check_top_k",
    "describe_bundle",
    "identify",
    "label_head",
    "non_negative_int",
    "positive_int",
    "positive_int_or_all",
    "require_head",
]

#: The text the server runs once per model before it reports ready.
WARM_UP_TEXT = "Warm-up: Maria flew from Groningen to New York on Monday."

#: The exporter's validation sentences (of different lengths, one padded batch) ...
VALIDATION_TEXTS = (
    "The quick brown fox jumps over the lazy dog.",
    "Maria works at Acme Corp. in Groningen.",
    "Élodie visited São Paulo and Zürich last year!",
    "Short one.",
    "A somewhat longer sentence, with punctuation; numbers like 42 and 3.14, and then a question?",
)
#: ... and sentence pairs (one padded pair batch, ``token_type_ids`` 1 on the second segment).
VALIDATION_PAIRS = (
    ("How old are you?", "I am six years old."),
    ("Where is Paris?", "Paris is the capital of France, a country in Europe."),
)


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


def check_top_k(value, name: str = "top_k") -> int | None:
    """A positive int (or None: every result) as a pipeline option; InputError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InputError(f"{name} must be a positive int (or None for all), got {value!r}")
    return int(value)


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

    sequences: list[TokenSequence]


@dataclass(frozen=True)
class ValidationInputs:
    """What the exporter feeds PyTorch and the graph: ``texts`` as one padded batch and the first alone,
    ``pairs`` as one padded pair batch (none: no pair batch)."""

    texts: tuple[str, ...] = VALIDATION_TEXTS
    pairs: tuple[tuple[str, str], ...] = VALIDATION_PAIRS


@dataclass(frozen=True)
class Evaluation:
    """How labelled data scores a task (``bertrt eval``, ``bertrt tune --labelled``).

    ``data``: ``"iob"`` (token TAB tag sentences, scored with seqeval's entity F1) or ``"labelled"``
    (TSV/JSONL text and label, accuracy and macro-F1) or ``"squad"`` (JSONL question, context and answers,
    SQuAD exact match and F1) or ``"rerank"`` (JSONL query, documents, relevant: MRR@10 and nDCG@10,
    :mod:`bertrt.evaluate.rerank`); ``metric``: the headline figure, in points, that
    the report compares and ``tune --labelled`` gates (``f1``: seqeval micro F1 or SQuAD F1, or ``accuracy``). Every
    system runs with the task's :attr:`Task.reference_options` (the PyTorch one as :attr:`Task.reference_pipeline`
    and :attr:`Task.reference_call` say).
    """

    data: str
    metric: str
    #: the call option that takes the label set to choose from (zero-shot: ``candidate_labels``): the
    #: data's labels, or those ``bertrt eval --candidate-labels`` names; None: the model's own labels
    labels_option: str | None = None

    def __post_init__(self) -> None:
        if self.data not in ("iob", "labelled", "squad", "rerank"):
            raise TaskError(
                f"Evaluation.data must be 'iob', 'labelled', 'squad' or 'rerank', got {self.data!r}"
            )


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
    #: the task name optimum exports the graph for ("": this task's own name)
    export_as: str = ""
    #: the graph output the task reads (it must be there, by this name: there is no fallback) ...
    output: str = "logits"
    #: ... and what its dimensions are (:class:`Head`); the last is the width
    dims: tuple[str, ...] = ("batch", "labels")
    #: accepts ``{"text", "text_pair"}`` dicts
    pairs: bool = False
    #: the head's outputs are labels: a bundle without id2label gets LABEL_0, LABEL_1, ...
    labels: bool = False
    options: tuple[Option, ...] = ()
    #: ``bertrt tune``'s gates, figure -> minimum: ``accuracy.*`` (:meth:`agreement` with onnxruntime fp32
    #: at batch 32), ``invariance.*`` (batch 1 against batch 32); empty: tune refuses the task
    gates: Mapping[str, float] = MappingProxyType({})
    #: how labelled data scores it (None: ``bertrt eval`` and ``tune --labelled`` refuse the task)
    evaluation: Evaluation | None = None
    #: bertrt's call options under which its answers are what the transformers reference's final results
    #: are compared with (``bertrt eval``, ``tune --labelled``, ``bertrt bench``; NER: "first" grouping)
    reference_options: Mapping[str, Any] = MappingProxyType({})
    #: the transformers reference (``bertrt eval --pytorch``, ``bertrt bench --reference``): keyword
    #: arguments of ``transformers.pipeline(task, ...)`` (NER: "first" grouping) and of its calls
    #: (classifiers: ``truncation=True``)
    reference_pipeline: Mapping[str, Any] = MappingProxyType({})
    reference_call: Mapping[str, Any] = MappingProxyType({})
    #: the library whose answers are the reference: "transformers" (its pipeline, as above) or
    #: "sentence-transformers" (``SentenceTransformer.encode`` with :attr:`reference_call`'s arguments)
    reference_library: str = "transformers"
    #: the exporter's int8 gates, figure of :meth:`compare_outputs` -> minimum (gross breakage, not quality)
    int8_gates: Mapping[str, float] = MappingProxyType({})
    #: the PyTorch model's outputs the exporter stacks on a new last axis into one graph output named
    #: :attr:`output` (question-answering: start_logits and end_logits), and that a graph exported by
    #: others may have apart (:meth:`select_head` stacks them); empty: the model's own output
    stacked_outputs: tuple[str, ...] = ()
    #: options of the server's warm-up calls (zero-shot: candidate labels; a call needs them)
    warm_up_options: Mapping[str, Any] = MappingProxyType({})
    #: a ``bertrt.export`` module whose ``reference_call(checkpoint, threads, options)`` returns the PyTorch
    #: reference's ``call(texts, batch_size) -> results`` (``bertrt bench``; sentence-transformers' own
    #: classes other than SentenceTransformer); empty: as :attr:`reference_library` says
    reference_module: str = ""
    #: a ``bertrt.export`` module whose ``wrap(model, folder)`` puts the task's own head on the loaded
    #: model (the validation reference), the wrapper's ``finish_graph(path)`` the same on the graph
    #: (sparse-embedding: SPLADE pooling); empty: the auto class's model as it is
    export_head: str = ""
    #: ``bertrt batch``: a needed option the input rows may carry themselves, in a field of that name
    #: (rerank: ``documents``): such rows run as :meth:`row_item` inputs, and the option is then not given
    row_option: str | None = None

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    @property
    def head(self) -> Head:
        """The graph output this task needs, and its shape."""
        return Head(self.output, tuple(self.dims))

    @property
    def token_level(self) -> bool:
        """Whether the head gives one row per token (its outputs are compared on real tokens only)."""
        return "sequence" in self.dims

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

    def parse_inputs(self, inputs: Any, options: dict) -> tuple[Any, dict]:
        """A call's inputs and options as the other steps take them (a str, a pair dict or a list), before
        anything else: tasks whose inputs may come as keywords (question-answering's ``question=`` and
        ``context=``) move them here. ``inputs`` is :data:`UNSET` when the call gave none positionally.
        Default: as given (an InputTypeError when there are none)."""
        if inputs is UNSET:
            raise InputTypeError(f"{self.name} takes its inputs as the first argument")
        return inputs, options

    def check_options(self, pipe: Pipeline, options: Mapping) -> Any:
        """Every option checked once, before any work; returns the one frozen object the other steps read
        (a frozen dataclass of the task's). Default: the names are checked, the values taken as given (or
        the option's default), as a read-only mapping."""
        self.reject_unknown(options)
        return MappingProxyType({o.name: options.get(o.name, o.default) for o in self.options})

    def check_head(self, pipe: Pipeline) -> int:
        """The width of :attr:`head` in the graph (number of labels; 0 when not declared). TaskError when
        the graph lacks the head (naming what the bundle is), BundleError when it contradicts the bundle."""
        return require_head(pipe, self.head)

    def split_head(self, pipe: Pipeline) -> bool:
        """Whether the graph keeps :attr:`stacked_outputs` apart (as Optimum and ``torch.onnx`` export
        them) where a bertrt bundle has the one :attr:`output`: each of them there, one rank lower."""
        outputs = pipe.session.outputs
        return (
            bool(self.stacked_outputs)
            and self.output not in outputs
            and all(len(outputs.get(name, ())) == len(self.dims) - 1 for name in self.stacked_outputs)
        )

    def select_head(self, pipe: Pipeline) -> None:
        """Make the session's ``run`` return :attr:`output`: the graph's own, or (:meth:`split_head`) the
        :attr:`stacked_outputs` stacked on a new last axis, as the exporter stacks them."""
        if self.split_head(pipe):
            pipe.session.select_output(self.output, stacked=self.stacked_outputs)
        else:
            pipe.session.select_output(self.output)

    def setup(self, pipe: Pipeline) -> Any:
        """Per-pipeline state, built once (``pipe.task_state``); TaskError when the bundle cannot serve."""
        return None

    def encode(self, pipe: Pipeline, items: list, opts: Any) -> Encoding:
        """Tokenize the items (str, or (text, text_pair) tuples when :attr:`pairs`)."""
        return Encoding(pipe.tokenizer.encode_batch(items))

    def batch_output(self, output: np.ndarray) -> np.ndarray:
        """Transform one padded batch's output before :meth:`collect` reads it."""
        return output

    def collect(self, output: np.ndarray, row: int, seq: TokenSequence, opts: Any) -> Any:
        """What to keep of one sequence's output; the padded batch is dropped once read."""
        return output[row]

    def finish(self, pipe: Pipeline, items: list, encoded: Encoding, collected: list, opts: Any) -> list:
        """One result per item, from the collected outputs (in the order of ``encoded.sequences``)."""
        return list(collected)

    def shape(self, results: list, single: bool, inputs, options: Mapping) -> Any:
        """The call's return value: the one result for a single input, else the list. ``options`` are the
        call's options as given."""
        return results[0] if single else results

    def max_input_length(self, pipe: Pipeline) -> int:
        """The longest input, in tokens, this task runs on the pipeline (the server's ``/info`` and its
        too-long check): the bundle's max length unless the task cuts shorter."""
        return pipe.max_length

    def warm_up_text(self, tokenizer: TextTokenizer) -> Any:
        """An input this task accepts (a text; question-answering: a question/context dict), run once
        before serving, with :attr:`warm_up_options`."""
        return WARM_UP_TEXT

    # -- comparing two runs (bertrt tune, benchmarks) ------------------------------------------------------
    def signature(self, result) -> Hashable:
        """What must be equal for two results to agree (the best label, the entities, ...)."""
        raise TaskError(f"{self.name} results have no signature to compare")

    def agreement(self, reference: Sequence, candidate: Sequence) -> dict[str, float]:
        """Figures of ``candidate`` results against ``reference`` ones (same inputs, same order), the names
        :attr:`gates` uses without their prefix. Default: the share of equal :meth:`signature`."""
        ref = [self.signature(r) for r in reference]
        got = [self.signature(r) for r in candidate]
        return {"agreement": round(figures.share_equal(ref, got), 6)}

    def tune_sample(self, pipe: Pipeline, texts: list[str]) -> list:
        """The inputs ``bertrt tune`` runs, from sample texts (default: the texts themselves)."""
        return texts

    # -- export validation --------------------------------------------------------------------------------
    def validation_inputs(self, mask_token: str | None) -> ValidationInputs:
        """The texts (and pairs) the exporter compares PyTorch and the graph on."""
        return ValidationInputs()

    def compare_outputs(
        self, reference: list[np.ndarray], candidate: list[np.ndarray], batches, mask_id: int | None
    ) -> dict[str, float]:
        """Figures of a graph's outputs against PyTorch's on the validation ``batches`` ((name, feed)
        pairs; feeds hold ``input_ids`` and ``attention_mask``). Default: ``max_abs_diff``, over real
        tokens when :attr:`token_level`; tasks add their agreement figures."""
        diffs = [
            figures.masked_max_abs_diff(ref, cand, feed["attention_mask"] if self.token_level else None)
            for ref, cand, (_, feed) in zip(reference, candidate, batches)
        ]
        return {"max_abs_diff": max(diffs)}

    # -- bertrt batch -------------------------------------------------------------------------------------
    def result_spec(self, pipe: Pipeline, options: Mapping) -> ResultSpec:
        """The Arrow type of this task's results (``bertrt batch``'s ``result`` column; needs pyarrow).
        Default: the result as a JSON string."""
        from ..batch.results import json_spec

        return json_spec()

    def row_item(self, text: str, value) -> Any:
        """The input of a ``bertrt batch`` row that carries its own :attr:`row_option` ``value``."""
        raise TaskError(f"{self.name} rows carry no option of their own")


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
    that task's head; else the first registered task whose head the graph's outputs and widths fit. A head
    a graph keeps apart (:meth:`Task.split_head`) counts, shaped as its parts plus their count."""
    outputs = pipe.session.outputs

    def found(name: str) -> tuple[Head, tuple] | None:
        """The task's head and its shape in this graph (None: no task of that name, or no such output)."""
        try:
            spec = _registry.get_task(name)
            head = spec.head
        except (TaskError, ImportError, AttributeError):
            return None
        if head.output in outputs:
            return head, tuple(outputs[head.output])
        if spec.split_head(pipe):
            return head, (*outputs[spec.stacked_outputs[0]], len(spec.stacked_outputs))
        return None

    own = pipe.bundle.task
    mine = found(own) if own is not None else None
    if mine is not None and len(mine[1]) == mine[0].rank:
        return Identity(own, *mine)
    for name in _registry.TASKS:
        other = found(name)
        if other is not None and len(other[1]) == other[0].rank and _fits(pipe, *other):
            return Identity(name, *other)
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


def label_head(pipe: Pipeline, rank: int) -> int:
    """Number of labels of a classification head of output rank 2 (per text) or 3 (per token), checked
    as :func:`require_head` checks it."""
    if rank not in _LABEL_DIMS:
        raise TaskError(f"a label head has rank 2 or 3, not {rank}")
    return require_head(pipe, Head(pipe.spec.output, _LABEL_DIMS[rank]))
