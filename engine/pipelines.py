"""The pipeline: bundle -> tokenizer -> batched session -> the task's post-processing.

``pipeline(task, bundle, ...)`` returns a :class:`Pipeline`; calling it with a str gives one result,
with a list a list of results, each shaped exactly as the matching ``transformers.pipeline`` returns it.
The Pipeline knows no task: it runs the steps of the task's module (bertrt.tasks, one module per task,
where each task's options are documented) in order::

    inputs -> task.check_options -> task.encode -> batches (session.run, task.batch_output, task.collect)
           -> task.finish -> task.shape

A call is :meth:`Pipeline.prepare` (check and encode) then :meth:`Pipeline.run_prepared` (run and finish)
then the shape; the server prepares each request once and runs many prepared requests as one batch.

Common call options: ``batch_size`` and ``max_tokens_per_batch`` (padded tokens per batch). A call that
gives no ``batch_size`` uses :attr:`Pipeline.batch_size`: the bundle's tuned one (``bertrt tune``) when
``backend="auto"`` follows tuning.json on this CPU, else 32 (:meth:`bertrt.backends.Plan.default_batch_size`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

from . import backends, tasks
from .batching import run_batched, validate_batching
from .bundle import Bundle, check_graph
from .errors import BundleError, InputError, InputTypeError, TaskError
from .tasks.base import UNSET, Encoding
from .tokenize import TextTokenizer, check_text

__all__ = ["Pipeline", "Prepared", "pipeline"]

log = logging.getLogger("bertrt")


# -- inputs -------------------------------------------------------------------------------------------
def _as_items(inputs, allow_pairs: bool) -> tuple[bool, list]:
    """(single, items). Items are str, or (text, text_pair) tuples when pairs are allowed.

    Every text is checked here, before any work, for every task: its type (InputTypeError) and that it
    is valid Unicode (:func:`bertrt.tokenize.check_text`). An empty ``text_pair`` is no pair, as
    transformers' tokenizer treats it (``[(text, text_pair)] if text_pair else [text]``).
    """

    def one(item, index):
        where = "input" if index is None else f"input at index {index}"
        if isinstance(item, str):
            check_text(item, where)
            return item
        if allow_pairs and isinstance(item, dict):
            text, pair = item.get("text"), item.get("text_pair")
            unknown = set(item) - {"text", "text_pair"}
            if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)) or unknown:
                at = "" if index is None else f" at index {index}"
                raise InputTypeError(
                    f"text pair{at} must be {{'text': str, 'text_pair': str}}, got keys {sorted(item)}"
                )
            check_text(text, f"{where} (text)")
            if pair is not None:
                check_text(pair, f"{where} (text_pair)")
            return (text, pair) if pair else text
        expected = "a str or a {'text', 'text_pair'} dict" if allow_pairs else "a str"
        raise InputTypeError(f"{where} must be {expected}, got {type(item).__name__}")

    if _is_single(inputs, allow_pairs):
        return True, [one(inputs, None)]
    if isinstance(inputs, (list, tuple)):
        return False, [one(item, i) for i, item in enumerate(inputs)]
    raise InputTypeError(f"inputs must be a str or a list of str, got {type(inputs).__name__}")


def _is_stream(inputs) -> bool:
    """Whether ``inputs`` is a generator: transformers answers one with an iterator of results, and so
    does bertrt (other iterables, a set or a bare iterator, are refused as transformers refuses them)."""
    return isinstance(inputs, Generator)


#: transformers' ``device=`` values bertrt maps to onnxruntime providers (None: the CPU default)
_DEVICES = {-1: None, "cpu": None, 0: "cuda", "cuda": "cuda", "cuda:0": "cuda"}


def _device_providers(device, providers):
    """``providers`` for transformers' ``device=`` (-1/"cpu": CPU; 0/"cuda"/"cuda:0": CUDA)."""
    if device is None:
        return providers
    if providers is not None:
        raise InputError("pass device= or providers=, not both")
    key = device.lower() if isinstance(device, str) else device
    if isinstance(key, bool) or key not in _DEVICES:
        raise InputError(
            f"device={device!r} is not one bertrt can run on: -1 or 'cpu' (CPU), 0 or 'cuda' (the first "
            "CUDA GPU, with onnxruntime-gpu)"
        )
    return _DEVICES[key]


def _is_single(inputs, allow_pairs: bool) -> bool:
    """Whether ``inputs`` is one input (a str, or a pair dict when the task takes pairs), not a list."""
    return isinstance(inputs, str) or (allow_pairs and isinstance(inputs, dict))


@dataclass(frozen=True)
class Prepared:
    """A call checked and encoded, not yet run (:meth:`Pipeline.prepare`)."""

    inputs: Any  # as given: a str, a pair dict or a list
    single: bool  # one input (one result), not a list
    items: list  # str, or (text, text_pair) tuples
    options: dict  # the task options as given
    opts: Any  # the task's checked options
    encoded: Encoding  # the sequences to run

    @property
    def tokens(self) -> int:
        """Tokens of every sequence to run (special tokens included, each cut at the max length)."""
        return sum(len(seq) for seq in self.encoded.sequences)


class Pipeline:
    """A task on one bundle: tokenizer, one session of the plan's backend and the task's post-processing.

    ``plan``: what runs (:class:`bertrt.backends.Plan`, from :func:`bertrt.backends.plan`; :func:`pipeline`
    builds it from its arguments). Built completely here; calls are thread-safe (every backend's ``run``
    is, the tokenizer locks).
    """

    def __init__(
        self,
        task: str | None,
        bundle: str | os.PathLike | Bundle,
        plan: backends.Plan,
        model_file: str | os.PathLike | None = None,
        verify: bool = True,
        **task_defaults,
    ):
        #: backend, precision and threads this pipeline runs (bertrt.backends: tuning.json or the rule)
        self.plan = plan
        self.backend = plan.backend
        self.bundle = bundle if isinstance(bundle, Bundle) else plan.load_bundle(bundle, model_file, verify)
        if task is None:
            if self.bundle.task is None:
                raise TaskError(
                    f"{self.bundle.root}: cannot infer the task from bundle.json or config.json; "
                    f"pass task= (one of {', '.join(tasks.TASKS)})"
                )
            task = self.bundle.task
        self.task = tasks.normalize_task(task)
        #: the task's module object (bertrt.tasks.base.Task): options, head check, steps, shaping
        self.spec = tasks.get_task(self.task)
        self.precision = plan.precision
        self.max_length = self.bundle.max_length
        special = {
            name: self.bundle.special_token(name)
            for name in ("mask_token", "pad_token", "cls_token", "sep_token", "unk_token")
        }
        self.tokenizer = TextTokenizer(
            self.bundle.tokenizer_path,
            self.max_length,
            self.bundle.tokenizer_config,
            special,
            pad_id_fallback=self.bundle.config.get("pad_token_id"),
            embedding_rows=self._embedding_rows(),
        )
        self._check_vocabulary()
        #: the plan's backend's session (bertrt.backends.Session)
        self.session = plan.open_session(self.bundle.model_path)
        check_graph(self.bundle, self.session.inputs, self.session.output_names)
        self.id2label = dict(self.bundle.id2label)
        # The graph must have the task's head (TaskError naming what the bundle is), read by its name.
        self.num_labels = self.spec.check_head(self)
        self.spec.select_head(self)
        if not self.id2label and self.spec.labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        #: what the task built once for this pipeline (NER: its tokenizer callables)
        self.task_state = self.spec.setup(self)
        #: a call's batch size when it gives none, and why: "tuned" (tuning.json) or "static" (32)
        self.batch_size, self.batch_size_source = self.plan.default_batch_size()
        #: task options given at build (``pipeline("ner", B, aggregation_strategy="simple")``), the
        #: defaults of every call, as transformers' pipeline keeps them; checked here
        self.task_defaults = self._build_defaults(task_defaults)
        log.info(
            "pipeline %s on %s: %s %s, %d threads (%s); default batch size %d (%s)",
            self.task,
            self.bundle.root,
            self.backend,
            self.precision,
            self.session.threads,
            self.plan.source,
            self.batch_size,
            self.batch_size_source,
        )

    def _embedding_rows(self) -> int | None:
        """The model's word-embedding rows: config.json's ``vocab_size`` (None: a foreign config without).

        The checkpoint's embedding matrix is built with exactly that many rows and the exporter writes it
        unchanged, so it is the graph's row count without parsing the ONNX protobuf (the runtime does not
        depend on ``onnx``) or running the model."""
        rows = self.bundle.config.get("vocab_size")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
            return None
        return rows

    def _check_vocabulary(self) -> None:
        """BundleError when the tokenizer's own vocabulary, its padding or the special tokens it adds to
        every text reach past the model's word-embedding rows (an id past them makes onnxruntime fail
        mid-batch on CPU, or read out of bounds on GPU). Added tokens past them (CamemBERT's
        ``<s>NOTUSED``) are no reason to refuse the bundle: the tokenizer refuses a text that produces one.
        """
        rows = self.tokenizer.embedding_rows
        if rows is None:
            return  # a foreign config without vocab_size: nothing to compare against
        always = [*self.tokenizer.encode_plain_specials(), self.tokenizer.pad_token_id]
        top = max(self.tokenizer.max_model_token_id, *always)
        if top >= rows:
            raise BundleError(
                self.bundle.tokenizer_path,
                f"tokenizer vocabulary is larger than the model's embedding: it can emit id {top} "
                f"({self.tokenizer.tokenizer_size} tokens), but config.json vocab_size is {rows} "
                f"(ids 0..{rows - 1})",
            )

    def _build_defaults(self, given: dict) -> dict:
        given = dict(given)
        if "batch_size" in given:  # transformers: pipeline(..., batch_size=8) is every call's
            size = given.pop("batch_size")
            validate_batching(size, None)
            self.batch_size, self.batch_size_source = int(size), "given"
        self.spec.check_options(self, given)  # an option the task does not take: an error now
        return given

    def __repr__(self) -> str:
        return (
            f"Pipeline(task={self.task!r}, bundle={str(self.bundle.root)!r}, "
            f"model_file={self.bundle.model_path.name!r}, threads={self.session.threads})"
        )

    @property
    def warm_up_text(self) -> str:
        """A text this pipeline's task accepts (fill-mask: it holds the mask token), for warming up."""
        return self.spec.warm_up_text(self.tokenizer)

    def __call__(
        self,
        inputs=UNSET,
        batch_size: int | None = None,
        max_tokens_per_batch: int | None = None,
        **task_options,
    ):
        """Run the task: a str gives one result, a list a list of results (transformers' structure).
        ``batch_size=None``: :attr:`batch_size` (tuned on this CPU, else 32). Tasks that take keyword
        inputs (question-answering) read them from the options (:meth:`~bertrt.tasks.base.Task.parse_inputs`)."""
        task_options = {**self.task_defaults, **task_options}
        inputs, task_options = self.spec.parse_inputs(inputs, task_options)
        if _is_stream(inputs):  # read whole, checked as a list; results given back as an iterator
            return iter(self(list(inputs), batch_size, max_tokens_per_batch, **task_options))
        self._batching(batch_size, max_tokens_per_batch)
        prepared = self.prepare(inputs, **task_options)
        if not prepared.items:
            return []
        (results,) = self.run_prepared([prepared], batch_size, max_tokens_per_batch)
        return self.spec.shape(results, prepared.single, prepared.inputs, task_options)

    def _batching(self, batch_size: int | None, max_tokens_per_batch: int | None) -> int:
        """The call's batch size (None: :attr:`batch_size`); InputError for unusable batching options."""
        if batch_size is None:
            batch_size = self.batch_size
        validate_batching(batch_size, max_tokens_per_batch)
        if max_tokens_per_batch is not None and max_tokens_per_batch < self.max_length:
            # One full-length sequence (or NER window) must fit the budget, else the bound cannot hold.
            raise InputError(
                f"max_tokens_per_batch={max_tokens_per_batch} is too small: a single sequence can "
                f"hold {self.max_length} tokens (the model's max length); use at least that"
            )
        return int(batch_size)

    def prepare(self, inputs, **task_options) -> Prepared:
        """A call's first half: ``inputs`` and options checked, the texts encoded (nothing run). The
        server prepares each request once, counts its tokens from the encodings and runs many prepared
        requests as one batch (:meth:`run_prepared`)."""
        task_options = {**self.task_defaults, **task_options}  # the defaults given at build
        spec = self.spec
        inputs, task_options = spec.parse_inputs(inputs, task_options)
        single, items = _as_items(inputs, allow_pairs=spec.pairs)
        opts = spec.check_options(self, task_options)  # every option checked before any work
        encoded = spec.encode(self, items, opts) if items else Encoding([])
        return Prepared(inputs, single, items, dict(task_options), opts, encoded)

    def run_prepared(
        self, prepared: list[Prepared], batch_size: int | None = None, max_tokens_per_batch: int | None = None
    ) -> list[list]:
        """A call's second half for several prepared calls with equal options, batched together: each
        one's results (one per item, unshaped: :meth:`shape` makes them a call's return value)."""
        batch_size = self._batching(batch_size, max_tokens_per_batch)
        spec = self.spec
        opts = prepared[0].opts if prepared else None
        sequences = [seq for p in prepared for seq in p.encoded.sequences]
        collected = (
            run_batched(
                sequences,
                lambda batch: spec.batch_output(self.session.run(batch)),
                lambda out, row, seq: spec.collect(out, row, seq, opts),
                self.tokenizer.pad_token_id,
                batch_size,
                max_tokens_per_batch,
            )
            if sequences
            else []
        )
        out, start = [], 0
        for p in prepared:
            stop = start + len(p.encoded.sequences)
            out.append(
                spec.finish(self, p.items, p.encoded, collected[start:stop], p.opts) if p.items else []
            )
            start = stop
        return out

    def check_inputs(self, inputs) -> None:
        """The checks a call makes on ``inputs`` before any work (types, valid Unicode), without running
        anything: InputError / InputTypeError naming the item by its index in ``inputs``."""
        inputs, _ = self.spec.parse_inputs(inputs, {})
        _as_items(inputs, allow_pairs=self.spec.pairs)

    def shape(self, results: list, inputs, **options):
        """``results`` of a call on a list, shaped as a call on ``inputs`` (a str, a pair dict or a list)
        with ``options`` would have returned them: e.g. the server runs many requests as one list and
        gives each caller its own part in the shape of its own request."""
        options = {**self.task_defaults, **options}
        inputs, options = self.spec.parse_inputs(inputs, options)
        return self.spec.shape(list(results), _is_single(inputs, self.spec.pairs), inputs, options)

    def tokenize(self, text: str, truncation: bool = True) -> dict:
        """The model's view of ``text``: ids, tokens, character offsets and word ids (None for specials)."""
        if not isinstance(text, str):
            raise InputTypeError(f"text must be a str, got {type(text).__name__}")
        check_text(text, "text")
        enc = self.tokenizer.encode_batch([text], truncate=truncation)[0]
        return {
            "ids": enc.ids.tolist(),
            "tokens": self.tokenizer.tokens(enc.ids),
            "offsets": [tuple(pair) for pair in enc.offsets.tolist()],
            "word_ids": [None if w < 0 else int(w) for w in enc.word_ids.tolist()],
        }


def pipeline(
    task: str | None = None,
    bundle: str | os.PathLike | None = None,
    precision: str | None = None,
    threads: int | None = None,
    providers=None,
    model_file: str | os.PathLike | None = None,
    verify: bool = True,
    backend: str = "auto",
    plan: backends.Plan | None = None,
    *,
    model: str | os.PathLike | None = None,
    device=None,
    **task_defaults,
) -> Pipeline:
    """Build a :class:`Pipeline` for ``task`` (None: read from bundle.json or config.json) on ``bundle``.

    ``precision``: "int8" (model.int8.onnx, or the quantized file of a foreign layout) or "fp32"
    (model.onnx); ``model_file`` names a file explicitly. ``threads``: intra-op threads (default: physical
    cores). ``providers``: onnxruntime providers (default CPU; "cuda" needs onnxruntime-gpu).
    ``verify``: check bundle.json's sha256 of the files loaded.
    ``backend``: "onnxruntime", "openvino" (``pip install 'bertrt[openvino]'``; precisions fp32, bf16 on a
    CPU with bf16, int8), another registered one, or "auto": the bundle's ``tuning.json`` (``bertrt tune``)
    on a matching CPU, else onnxruntime (bf16: openvino). ``precision=None``: the tuned winner's, else
    "int8"; a call without ``batch_size``: the tuned candidate's, else 32 (:attr:`Pipeline.batch_size`).
    ``plan``: a :class:`bertrt.backends.Plan` already computed (then backend, precision, threads and
    providers are its own). See bertrt.backends.

    As a drop-in for ``transformers.pipeline``: ``model=`` names the bundle, ``device=`` picks the
    providers (-1/"cpu", 0/"cuda"), and any other keyword is a task option every call uses unless it
    gives its own (``pipeline("ner", B, aggregation_strategy="simple")``; ``batch_size=`` too), checked
    here; a generator as input gives an iterator of results.
    """
    if model is not None:
        if bundle is not None:
            raise InputError("pass the bundle once: as bundle or as model=, not both")
        bundle = model
    providers = _device_providers(device, providers)
    if bundle is None:
        raise TaskError("pipeline() needs a bundle folder (or hf://owner/name)")
    if plan is None:
        plan = backends.plan(bundle, backend, precision, threads, providers)
    return Pipeline(task, bundle, plan, model_file, verify, **task_defaults)
