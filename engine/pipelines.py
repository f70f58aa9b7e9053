"""The pipeline: bundle -> tokenizer -> batched session -> per-task post-processing.

``pipeline(task, bundle, ...)`` returns a :class:`Pipeline`; calling it with a str gives one result,
with a list a list of results, each shaped exactly as the matching ``transformers.pipeline`` returns it.
Each task is one small pair of functions (check options, run), composed by the Pipeline.

Options per task (all validated before any work):

- text-classification: ``top_k`` (absent: the best label as a dict, as transformers' legacy output;
  an int: the k best sorted; None: all labels sorted), ``function_to_apply`` (softmax/sigmoid/none,
  default from the model's ``problem_type``/number of labels). A text pair is a dict
  ``{"text": ..., "text_pair": ...}``.
- fill-mask: ``top_k`` (default 5), ``targets`` (a token or a list of tokens). One list of predictions per
  text; a text with several masks gives one list per mask (nested), as transformers does.
- feature-extraction: no option gives transformers' output as numpy: an array (1, tokens, dim) per text.
  ``pooling="mean"|"cls"|"max"`` gives one vector (dim,) per text (mask-aware); ``normalize=True`` scales
  the vectors (pooled or per token) to unit length; ``pooling="words"`` gives
  ``{"words", "offsets", "vectors"}`` per text with one vector per word pooled from its sub-tokens
  (``word_pooling="mean"|"max"|"first"``). ``truncation`` (default True) cuts at the model's max length.
- token-classification: ``aggregation_strategy``, ``ignore_labels``, ``stride``, ``word_grouping``
  (see engine/ner.py). Long texts are never cut: they run as windows over the whole text.

Common call options: ``batch_size`` (default 32) and ``max_tokens_per_batch`` (padded tokens per batch).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from . import classification, embeddings, fill_mask
from .batching import run_batched, validate_batching
from .bundle import Bundle, load_bundle
from .errors import BundleError, InputError, InputTypeError, TaskError
from .session import OnnxSession
from .tasks import normalize_task
from .tokenize import Encoded, TextTokenizer

__all__ = ["Pipeline", "pipeline"]

log = logging.getLogger("bertrt")

_MISSING = object()  # "option not given" (top_k=None means something else in text-classification)


# -- inputs -------------------------------------------------------------------------------------------
def _as_items(inputs, allow_pairs: bool) -> tuple[bool, list]:
    """(single, items). Items are str, or (text, text_pair) tuples when pairs are allowed."""

    def one(item, index):
        if isinstance(item, str):
            return item
        if allow_pairs and isinstance(item, dict):
            text, pair = item.get("text"), item.get("text_pair")
            unknown = set(item) - {"text", "text_pair"}
            if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)) or unknown:
                where = "" if index is None else f" at index {index}"
                raise InputTypeError(f"text pair{where} must be {{'text': str, 'text_pair': str}}, got keys "
                                     f"{sorted(item)}")
            return text if pair is None else (text, pair)
        where = "input" if index is None else f"input at index {index}"
        expected = "a str or a {'text', 'text_pair'} dict" if allow_pairs else "a str"
        raise InputTypeError(f"{where} must be {expected}, got {type(item).__name__}")

    if isinstance(inputs, str) or (allow_pairs and isinstance(inputs, dict)):
        return True, [one(inputs, None)]
    if isinstance(inputs, (list, tuple)):
        return False, [one(item, i) for i, item in enumerate(inputs)]
    raise InputTypeError(f"inputs must be a str or a list of str, got {type(inputs).__name__}")


def _check_unknown(task: str, options: dict, allowed: tuple[str, ...]) -> None:
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(f"unknown option(s) for {task}: {', '.join(unknown)}; "
                         f"accepted: {', '.join(allowed) or 'none'}")


@dataclass(frozen=True)
class _Batching:
    batch_size: int
    max_tokens_per_batch: int | None


# -- text-classification ----------------------------------------------------------------------------
_CLS_OPTIONS = ("top_k", "function_to_apply")


def _check_text_classification(pipe: Pipeline, options: dict) -> dict:
    _check_unknown(pipe.task, options, _CLS_OPTIONS)
    legacy = "top_k" not in options
    top_k = 1 if legacy else classification.check_top_k(options["top_k"])
    function = classification.check_function(options.get("function_to_apply"))
    if function is None:
        function = classification.default_function(pipe.bundle.problem_type, pipe.num_labels)
    return {"top_k": top_k, "legacy": legacy, "function": function}


def _run_text_classification(pipe: Pipeline, items: list, batching: _Batching, opts: dict) -> list:
    encodings = pipe.tokenizer.encode_batch(items)
    rows = pipe._forward_all(encodings, batching, lambda out, row, enc: out[row])
    logits = np.stack(rows) if rows else np.zeros((0, pipe.num_labels), dtype=np.float32)
    return classification.classify(logits, pipe.id2label, opts["function"], opts["top_k"], opts["legacy"])


def _shape_text_classification(results: list, single: bool, inputs, opts: dict):
    if single:
        # transformers: a str with no top_k gives [dict]; a text-pair dict gives the dict itself.
        return [results[0]] if opts["legacy"] and isinstance(inputs, str) else results[0]
    return results


# -- fill-mask ----------------------------------------------------------------------------------------
_FILL_OPTIONS = ("top_k", "targets")


def _check_fill_mask(pipe: Pipeline, options: dict) -> dict:
    _check_unknown(pipe.task, options, _FILL_OPTIONS)
    top_k = options.get("top_k")
    top_k = 5 if top_k is None else classification.check_top_k(top_k)
    targets = options.get("targets")
    target_ids = None
    if targets is not None:
        if isinstance(targets, str):
            targets = [targets]
        if not isinstance(targets, (list, tuple)) or not all(isinstance(t, str) for t in targets):
            raise InputError(f"targets must be a str or a list of str, got {targets!r}")
        vocab = pipe.tokenizer.get_vocab()
        ids = []
        for target in targets:
            index = vocab.get(target)
            if index is None:  # transformers: the first token of the target, with a warning
                pieces = pipe.tokenizer.encode_plain(target)
                if not pieces:
                    log.warning("target %r is not in the vocabulary and tokenizes to nothing; ignored", target)
                    continue
                index = pieces[0]
                log.warning("target %r is not in the vocabulary; using %r", target, pipe.tokenizer.id_to_token(index))
            ids.append(index)
        if not ids:
            raise InputError("at least one target must be provided when targets= is passed")
        target_ids = np.array(sorted(set(ids)), dtype=np.int64)
    return {"top_k": top_k, "target_ids": target_ids}


def _run_fill_mask(pipe: Pipeline, items: list, batching: _Batching, opts: dict) -> list:
    tok = pipe.tokenizer
    encodings = tok.encode_batch(items)
    masks = [fill_mask.mask_positions(enc.ids, tok.mask_token_id) for enc in encodings]
    missing = [i for i, m in enumerate(masks) if m.size == 0]
    if missing:
        raise InputError(f"no mask token ({tok.mask_token}) in the input at index(es) "
                         f"{', '.join(map(str, missing[:20]))} (after truncation to {tok.max_length} tokens)")
    mask_logits = pipe._forward_all(
        encodings, batching, lambda out, row, enc: out[row, fill_mask.mask_positions(enc.ids, tok.mask_token_id)])
    results = []
    for enc, positions, logits in zip(encodings, masks, mask_logits):
        scores, token_ids = fill_mask.top_predictions(logits, opts["top_k"], opts["target_ids"])
        single_mask = len(positions) == 1
        base = enc.ids
        per_mask = []
        for m, position in enumerate(positions):
            row = []
            for score, token in zip(scores[m].tolist(), token_ids[m].tolist()):
                filled = base.copy()
                filled[position] = token
                filled = filled[filled != tok.pad_token_id]
                row.append({
                    "score": float(score),
                    "token": int(token),
                    "token_str": tok.decode([token]),
                    "sequence": tok.decode(filled, skip_special_tokens=single_mask),
                })
            per_mask.append(row)
        results.append(per_mask[0] if single_mask else per_mask)
    return results


# -- feature-extraction -------------------------------------------------------------------------------
_FE_OPTIONS = ("pooling", "normalize", "word_pooling", "truncation")


def _check_feature_extraction(pipe: Pipeline, options: dict) -> dict:
    _check_unknown(pipe.task, options, _FE_OPTIONS)
    pooling = options.get("pooling")
    if pooling is not None and pooling not in embeddings.POOLINGS + ("words",):
        raise InputError(f"pooling must be None or one of {', '.join(embeddings.POOLINGS + ('words',))}, "
                         f"got {pooling!r}")
    word_pooling = options.get("word_pooling", "mean")
    if word_pooling not in embeddings.WORD_POOLINGS:
        raise InputError(f"word_pooling must be one of {', '.join(embeddings.WORD_POOLINGS)}, got {word_pooling!r}")
    if "word_pooling" in options and pooling != "words":
        raise InputError("word_pooling applies only with pooling='words'")
    normalize = options.get("normalize", False)
    truncation = options.get("truncation", True)
    for name, value in (("normalize", normalize), ("truncation", truncation)):
        if not isinstance(value, bool):
            raise InputError(f"{name} must be True or False, got {value!r}")
    return {"pooling": pooling, "normalize": normalize, "word_pooling": word_pooling, "truncation": truncation}


def _run_feature_extraction(pipe: Pipeline, items: list, batching: _Batching, opts: dict) -> list:
    encodings = pipe.tokenizer.encode_batch(items, truncate=opts["truncation"])
    if not opts["truncation"]:
        too_long = [i for i, e in enumerate(encodings) if len(e) > pipe.max_length]
        if too_long:
            raise InputError(f"input(s) at index {', '.join(map(str, too_long[:20]))} exceed the model's max "
                             f"length of {pipe.max_length} tokens and truncation=False")
    pooling, normalize = opts["pooling"], opts["normalize"]

    def collect(out, row, enc):
        tokens = out[row, : len(enc)].astype(np.float32, copy=True)
        if pooling in embeddings.POOLINGS:
            return embeddings.pool(tokens[None], np.ones((1, len(enc))), pooling)[0]
        return tokens

    vectors = pipe._forward_all(encodings, batching, collect)
    results = []
    for item, enc, vec in zip(items, encodings, vectors):
        if pooling == "words":
            words, pooled = embeddings.word_vectors(vec, enc.word_ids, opts["word_pooling"])
            text = item if isinstance(item, str) else item[0]
            spans = [(int(enc.offsets[enc.word_ids == w, 0].min()), int(enc.offsets[enc.word_ids == w, 1].max()))
                     for w in words]
            if normalize:
                pooled = embeddings.l2_normalize(pooled)
            results.append({"words": [text[s:e] for s, e in spans], "offsets": spans, "vectors": pooled})
        elif pooling is None:
            results.append((embeddings.l2_normalize(vec) if normalize else vec)[None])
        else:
            results.append(embeddings.l2_normalize(vec) if normalize else vec)
    return results


# -- token-classification -----------------------------------------------------------------------------
_NER_OPTIONS = ("aggregation_strategy", "ignore_labels", "stride", "word_grouping", "grouped_entities",
                "ignore_subwords")


def _check_token_classification(pipe: Pipeline, options: dict) -> dict:
    from . import ner

    _check_unknown(pipe.task, options, _NER_OPTIONS)
    opts = ner.validate_options(**options, max_length=pipe.max_length,
                                num_special_tokens=pipe.tokenizer.num_special_tokens)
    return {"stride": opts["stride"] or 0,
            "post": {k: opts[k] for k in ("aggregation_strategy", "ignore_labels", "word_grouping")}}


def _run_token_classification(pipe: Pipeline, items: list, batching: _Batching, opts: dict) -> list:
    from . import ner

    per_text = pipe.tokenizer.encode_windows(items, stride=opts["stride"])
    flat: list[Encoded] = [w for windows in per_text for w in windows]
    # The softmax of a whole padded batch at once (per token, so each window's rows are the same as its own).
    scores = run_batched(flat, lambda batch: ner.softmax(pipe.session.run(batch).astype(np.float32, copy=False)),
                         lambda out, row, enc: out[row, : len(enc)], pipe.tokenizer.pad_token_id,
                         batching.batch_size, batching.max_tokens_per_batch)
    hooks = pipe._ner_hooks
    results, cursor = [], 0
    for text, windows in zip(items, per_text):
        records = []
        for enc in windows:
            records.append({"input_ids": enc.ids, "offsets": enc.offsets, "special_tokens_mask": enc.special_tokens_mask,
                            "word_ids": enc.word_ids, "scores": scores[cursor]})
            cursor += 1
        results.append(ner.entities_for_text(text, records, pipe.id2label, **opts["post"], **hooks,
                                             stride=opts["stride"], trusted=True))
    return results


@dataclass(frozen=True)
class _TaskSpec:
    check: Callable
    run: Callable
    output: str  # preferred graph output
    pairs: bool = False
    shape: Callable | None = None


_TASKS = {
    "text-classification": _TaskSpec(_check_text_classification, _run_text_classification, "logits", True,
                                      _shape_text_classification),
    "fill-mask": _TaskSpec(_check_fill_mask, _run_fill_mask, "logits"),
    "feature-extraction": _TaskSpec(_check_feature_extraction, _run_feature_extraction, "last_hidden_state"),
    "token-classification": _TaskSpec(_check_token_classification, _run_token_classification, "logits"),
}


class Pipeline:
    """A task on one bundle: tokenizer, one onnxruntime session and the task's post-processing.

    Built completely here; calls are thread-safe (onnxruntime's ``run`` is, the tokenizer locks).
    """

    def __init__(self, task: str | None, bundle: str | os.PathLike | Bundle, precision: str = "int8",
                 threads: int | None = None, providers=None, model_file: str | os.PathLike | None = None,
                 verify: bool = True):
        self.bundle = bundle if isinstance(bundle, Bundle) else load_bundle(bundle, precision, model_file, verify)
        if task is None:
            if self.bundle.task is None:
                raise TaskError(f"{self.bundle.root}: cannot infer the task from bundle.json or config.json; "
                                f"pass task= (one of {', '.join(_TASKS)})")
            task = self.bundle.task
        self.task = normalize_task(task)
        self._spec = _TASKS[self.task]
        self.precision = precision
        self.max_length = self.bundle.max_length
        special = {name: self.bundle.special_token(name) for name in ("mask_token", "pad_token", "cls_token",
                                                                         "sep_token", "unk_token")}
        self.tokenizer = TextTokenizer(self.bundle.tokenizer_path, self.max_length, self.bundle.tokenizer_config,
                                       special, pad_id_fallback=self.bundle.config.get("pad_token_id"))
        self._check_vocabulary()
        self.session = OnnxSession(self.bundle.model_path, threads, providers, output_name=self._spec.output)
        self.id2label = dict(self.bundle.id2label)
        self.num_labels = self._check_head()
        if not self.id2label and self.task in ("text-classification", "token-classification"):
            self.id2label = {i: f"LABEL_{i}" for i in range(self.num_labels)}
        # NER's tokenizer callables, built once: id_to_token remembers the strings it has looked up.
        self._ner_hooks = {}
        if self.task == "token-classification":
            from . import ner

            self._ner_hooks = ner.tokenizer_hooks(self.tokenizer.raw,
                                                  unk_token=self.tokenizer.special_tokens.get("unk_token"))
        if self.task == "fill-mask" and self.tokenizer.mask_token_id is None:
            raise TaskError(f"{self.bundle.root}: fill-mask needs a mask token, and the tokenizer defines none")

    def _check_vocabulary(self) -> None:
        """BundleError when the tokenizer can emit an id past the model's word-embedding rows.

        The rows are config.json's ``vocab_size``: the checkpoint's embedding matrix is built with exactly
        that many rows and the exporter writes it unchanged, so it is the graph's row count without parsing
        the ONNX protobuf (the runtime does not depend on ``onnx``) or running the model. The largest id
        the tokenizer can produce (added tokens included) must be below it; otherwise such a token makes
        onnxruntime fail mid-batch on CPU, or read out of bounds on GPU.
        """
        rows = self.bundle.config.get("vocab_size")
        if isinstance(rows, bool) or not isinstance(rows, int) or rows <= 0:
            return  # a foreign config without vocab_size: nothing to compare against
        top = self.tokenizer.max_token_id
        if top >= rows:
            raise BundleError(self.bundle.tokenizer_path,
                              f"tokenizer vocabulary is larger than the model's embedding: it can emit id {top} "
                              f"({self.tokenizer.vocab_size} tokens), but config.json vocab_size is {rows} "
                              f"(ids 0..{rows - 1})")

    def _check_head(self) -> int:
        """Number of classes (or vocabulary rows) the graph's output declares; BundleError on mismatch."""
        width = self.session.output_shape[-1] if self.session.output_shape else None
        width = width if isinstance(width, int) else None
        path = self.bundle.model_path
        if self.task in ("text-classification", "token-classification"):
            rank = 2 if self.task == "text-classification" else 3
            if len(self.session.output_shape) != rank:
                raise TaskError(f"{path}: output {self.session.output_name!r} has shape {self.session.output_shape}, "
                                f"not a {self.task} head (expected rank {rank})")
            if self.id2label and width is not None and width != len(self.id2label):
                raise BundleError(path, f"the graph outputs {width} labels but config.json id2label has "
                                        f"{len(self.id2label)}")
            return width if width is not None else len(self.id2label)
        if self.task == "fill-mask" and width is not None and self.tokenizer.vocab_size > width:
            raise BundleError(path, f"tokenizer vocabulary ({self.tokenizer.vocab_size}) is larger than the model's "
                                    f"output vocabulary ({width})")
        return width or 0

    def __repr__(self) -> str:
        return (f"Pipeline(task={self.task!r}, bundle={str(self.bundle.root)!r}, "
                f"model_file={self.bundle.model_path.name!r}, threads={self.session.threads})")

    def _forward_all(self, encodings: list[Encoded], batching: _Batching, collect: Callable) -> list:
        return run_batched(encodings, self.session.run, collect, self.tokenizer.pad_token_id,
                           batching.batch_size, batching.max_tokens_per_batch)

    def __call__(self, inputs, batch_size: int = 32, max_tokens_per_batch: int | None = None, **task_options):
        """Run the task: a str gives one result, a list a list of results (transformers' structure)."""
        validate_batching(batch_size, max_tokens_per_batch)
        if max_tokens_per_batch is not None and max_tokens_per_batch < self.max_length:
            # One full-length sequence (or NER window) must fit the budget, else the bound cannot hold.
            raise InputError(f"max_tokens_per_batch={max_tokens_per_batch} is too small: a single sequence can "
                             f"hold {self.max_length} tokens (the model's max length); use at least that")
        single, items = _as_items(inputs, allow_pairs=self._spec.pairs)
        opts = self._spec.check(self, task_options)  # every option checked before any work
        if not items:
            return []
        results = self._spec.run(self, items, _Batching(int(batch_size), max_tokens_per_batch), opts)
        if self._spec.shape is not None:
            return self._spec.shape(results, single, inputs, opts)
        return results[0] if single else results

    def tokenize(self, text: str, truncation: bool = True) -> dict:
        """The model's view of ``text``: ids, tokens, character offsets and word ids (None for specials)."""
        if not isinstance(text, str):
            raise InputTypeError(f"text must be a str, got {type(text).__name__}")
        enc = self.tokenizer.encode_batch([text], truncate=truncation)[0]
        return {
            "ids": enc.ids.tolist(),
            "tokens": self.tokenizer.tokens(enc.ids),
            "offsets": [tuple(pair) for pair in enc.offsets.tolist()],
            "word_ids": [None if w < 0 else int(w) for w in enc.word_ids.tolist()],
        }


def pipeline(task: str | None = None, bundle: str | os.PathLike | None = None, precision: str = "int8",
             threads: int | None = None, providers=None, model_file: str | os.PathLike | None = None,
             verify: bool = True) -> Pipeline:
    """Build a :class:`Pipeline` for ``task`` (None: read from bundle.json or config.json) on ``bundle``.

    ``precision``: "int8" (model.int8.onnx, or the quantized file of a foreign layout) or "fp32"
    (model.onnx); ``model_file`` names a file explicitly. ``threads``: intra-op threads (default: physical
    cores). ``providers``: onnxruntime providers (default CPU; "cuda" needs onnxruntime-gpu).
    ``verify``: check bundle.json's sha256 of the files loaded.
    """
    if bundle is None:
        raise TaskError("pipeline() needs a bundle folder (or hub id)")
    return Pipeline(task, bundle, precision=precision, threads=threads, providers=providers,
                    model_file=model_file, verify=verify)
