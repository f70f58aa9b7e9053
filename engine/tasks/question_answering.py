"""question-answering: extractive answers as transformers' QuestionAnsweringPipeline (4.57, fast tokenizer).

Inputs: ``pipe(question=..., context=...)`` (str or lists), a ``{"question", "context"}`` dict or a list of
them (:meth:`QuestionAnswering.parse_inputs`). The question and context are encoded as one pair, the
context cut ``only_second`` into windows of ``max_seq_len`` tokens overlapping by ``doc_stride`` (the
tokenizer's overflow); every window of the call runs in one batched run. Per window the start and end
logits outside the context (the CLS token aside) are masked, softmaxed, and the best spans (at most
``max_answer_len`` tokens) kept (:func:`best_spans`); spans are mapped to characters of the context (whole
words with ``align_to_words``), answers with the same text (case-insensitive) add their scores, and
``handle_impossible_answer`` adds the empty answer with the lowest CLS score of any window.

Result: ``{"score", "start", "end", "answer"}``, a list of the ``top_k`` best when there are several;
one input gives its result, a list of inputs a list of results. (transformers answers a list of one
input with that input's result alone; bertrt keeps list in, list out, as its CLI, batch and server
rely on.)

The graph's head: ``span_logits`` (batch, sequence, 2), the model's ``start_logits`` and ``end_logits``
stacked by the exporter (:attr:`~bertrt.tasks.base.Task.stacked_outputs`); a graph with the two apart
(Optimum's or ``torch.onnx``'s export of a ``*ForQuestionAnswering`` model) is read as well, its outputs
stacked by the session (:meth:`~bertrt.tasks.base.Task.select_head`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InputError, InputTypeError
from .base import UNSET, WARM_UP_TEXT, Cli, Encoding, Evaluation, Option, Task, non_negative_int, positive_int

__all__ = ["TASK", "QuestionAnswering", "best_spans", "parse_qa_inputs"]


def parse_qa_inputs(inputs, options: dict):
    """(inputs, options): the call's question/context pairs as ``{"text", "text_pair"}`` dicts (one dict
    for one pair, else a list), from the forms transformers takes."""
    options = dict(options)
    if inputs is UNSET:
        if "question" not in options or "context" not in options:
            raise InputTypeError(
                "question-answering needs question= and context= (or {question, context} dicts)"
            )
        question, context = options.pop("question"), options.pop("context")
        if isinstance(question, list) and isinstance(context, str):
            inputs = [{"question": q, "context": context} for q in question]
        elif isinstance(question, list) and isinstance(context, list):
            if len(question) != len(context):
                raise InputError(
                    f"{len(question)} questions and {len(context)} contexts: give one context each"
                )
            inputs = [{"question": q, "context": c} for q, c in zip(question, context)]
        elif isinstance(question, str) and isinstance(context, str):
            inputs = {"question": question, "context": context}
        else:
            raise InputTypeError("question= and context= must be str or lists of str")
    if isinstance(inputs, dict):
        return _pair(inputs, None), options
    if isinstance(inputs, (list, tuple)):
        return [_pair(item, i) for i, item in enumerate(inputs)], options
    raise InputTypeError(
        f"question-answering inputs must be a {{'question', 'context'}} dict or a list of them, got "
        f"{type(inputs).__name__}"
    )


def _pair(item, index) -> dict:
    where = "input" if index is None else f"input at index {index}"
    if not isinstance(item, dict):
        raise InputTypeError(f"{where} must be a {{'question', 'context'}} dict, got {type(item).__name__}")
    if "text" in item and "text_pair" in item and set(item) == {"text", "text_pair"}:
        return item  # already parsed (Pipeline.shape re-reads a call's inputs)
    for key in ("question", "context"):
        value = item.get(key)
        if not isinstance(value, str) or not value:
            raise InputTypeError(f"{where} needs {key!r}, a non-empty str; got {value!r}")
    return {"text": item["question"], "text_pair": item["context"]}


def best_spans(start, end, allowed, top_k: int, max_answer_len: int, null_score: float):
    """The ``top_k`` best (start, end) token spans of one window, their scores, and the lowest null (CLS)
    score so far; ``allowed`` (1, n) is 1 where a token may be in an answer. The same float32 steps as
    transformers' ``select_starts_ends`` / ``decode_spans``, so that ties fall the same way."""
    masked = allowed == 0.0
    start = np.where(masked, -10000.0, start)
    end = np.where(masked, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    null_score = min(null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    spans = np.tril(np.triu(np.matmul(start[..., None], end[:, None, :])), max_answer_len - 1)
    flat = spans.flatten()
    if top_k == 1:
        order = [np.argmax(flat)]
    elif len(flat) < top_k:
        order = np.argsort(-flat)
    else:
        part = np.argpartition(-flat, top_k)[:top_k]
        order = part[np.argsort(-flat[part])]
    starts, ends = np.unravel_index(order, spans.shape)[1:]
    # transformers tests membership in the (row, column) tuple of nonzero(): row 0 counts as allowed too
    where = allowed.nonzero()
    keep = np.isin(starts, where) & np.isin(ends, where)
    starts, ends = starts[keep], ends[keep]
    return starts, ends, spans[0, starts, ends], null_score


def _char_span(seq, s: int, e: int, context_index: int, align: bool) -> tuple[int, int]:
    """Character start and end of token span s..e in the context (whole words when ``align``)."""
    if align:
        words = seq.word_ids
        first, last = int(words[s]), int(words[e])
        if first >= 0 and last >= 0:
            in_context = seq.sequence_ids == context_index
            a = np.nonzero(in_context & (words == first))[0]
            b = np.nonzero(in_context & (words == last))[0]
            if len(a) and len(b):
                return int(seq.offsets[a[0], 0]), int(seq.offsets[b[-1], 1])
    return int(seq.offsets[s, 0]), int(seq.offsets[e, 1])


def _bool_flag(value: str) -> bool:
    """``true`` / ``false`` on the command line (argparse ``type=``)."""
    if value.lower() in ("true", "1", "yes"):
        return True
    if value.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


@dataclass(frozen=True)
class _Options:
    top_k: int
    doc_stride: int | None
    max_answer_len: int
    max_seq_len: int | None
    handle_impossible_answer: bool
    align_to_words: bool


@dataclass(frozen=True)
class QAEncoding(Encoding):
    """The windows of every item, in order, and how many each item has."""

    windows: tuple[int, ...] = ()


def _positive(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{name} must be an int >= 1, got {value!r}")
    return int(value)


class QuestionAnswering(Task):
    name = "question-answering"
    auto_class = "AutoModelForQuestionAnswering"
    output = "span_logits"
    dims = ("batch", "sequence", "span")
    stacked_outputs = ("start_logits", "end_logits")
    pairs = True
    gates = MappingProxyType({"accuracy.agreement": 0.95, "invariance.agreement": 0.999})
    #: ``bertrt eval``: SQuAD JSONL, exact match and F1 (the headline) of the best answer
    evaluation = Evaluation("squad", "f1")
    options = (
        Option("top_k", int, 1, help="number of answers, best first", cli=Cli(parse=positive_int)),
        Option(
            "doc_stride",
            int,
            None,
            help="tokens of overlap between a long context's windows (default min(max_seq_len // 2, 128))",
            cli=Cli(parse=non_negative_int),
        ),
        Option("max_answer_len", int, 15, help="longest answer, in tokens", cli=Cli(parse=positive_int)),
        Option(
            "max_seq_len",
            int,
            None,
            help="tokens per window, question included (default min(model max length, 384))",
            cli=Cli(parse=positive_int),
        ),
        Option(
            "max_question_len", int, 64, help="unused with a fast tokenizer (transformers' too)", cli=None
        ),
        Option("handle_impossible_answer", bool, False, help="the empty answer may win", cli=Cli(flag=True)),
        Option("align_to_words", bool, True, help="answers are whole words", cli=Cli(parse=_bool_flag)),
    )

    def parse_inputs(self, inputs, options: dict):
        return parse_qa_inputs(inputs, options)

    def check_head(self, pipe) -> int:
        """``span_logits`` (batch, sequence, 2), or ``start_logits`` and ``end_logits`` (batch, sequence)."""
        return 2 if self.split_head(pipe) else super().check_head(pipe)

    def check_options(self, pipe, options: Mapping) -> _Options:
        self.reject_unknown(options)
        top_k = _positive(options.get("top_k", 1), "top_k")
        max_answer_len = _positive(options.get("max_answer_len", 15), "max_answer_len")
        max_seq_len = options.get("max_seq_len")
        if max_seq_len is not None:
            max_seq_len = _positive(max_seq_len, "max_seq_len")
            if max_seq_len > pipe.max_length:
                raise InputError(
                    f"max_seq_len {max_seq_len} is more than the model's max length {pipe.max_length}"
                )
        stride = options.get("doc_stride")
        if stride is not None and (
            isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 0
        ):
            raise InputError(f"doc_stride must be an int >= 0, got {stride!r}")
        return _Options(
            top_k,
            None if stride is None else int(stride),
            max_answer_len,
            max_seq_len,
            bool(options.get("handle_impossible_answer", False)),
            bool(options.get("align_to_words", True)),
        )

    def setup(self, pipe) -> dict:
        left = pipe.bundle.tokenizer_config.get("padding_side") == "left"
        cls = pipe.bundle.special_token("cls_token")
        return {"question_first": not left, "cls_id": pipe.tokenizer.token_to_id(cls) if cls else None}

    def encode(self, pipe, items: list, opts: _Options) -> QAEncoding:
        state = pipe.task_state
        max_seq_len = opts.max_seq_len or min(pipe.max_length, 384)
        stride = opts.doc_stride if opts.doc_stride is not None else min(max_seq_len // 2, 128)
        if stride > max_seq_len:
            raise InputError(f"doc_stride ({stride}) is larger than max_seq_len ({max_seq_len})")
        pairs = [(q, c) if state["question_first"] else (c, q) for q, c in items]
        strategy = "only_second" if state["question_first"] else "only_first"
        try:
            windows = pipe.tokenizer.encode_pair_windows(pairs, max_seq_len, stride, strategy)
        except InputError:
            raise
        except Exception as exc:  # tokenizers: the question leaves no room for the context, or the stride
            raise InputError(f"cannot cut the context into windows of {max_seq_len} tokens: {exc}") from exc
        return QAEncoding([w for item in windows for w in item], tuple(len(item) for item in windows))

    def collect(self, output: np.ndarray, row: int, seq, opts) -> np.ndarray:
        return np.array(output[row, : len(seq)], dtype=np.float32)

    def finish(self, pipe, items: list, encoded: QAEncoding, collected: list, opts: _Options) -> list:
        state = pipe.task_state
        context_index = 1 if state["question_first"] else 0
        results, at = [], 0
        for (_question, context), count in zip(items, encoded.windows):
            windows = list(zip(encoded.sequences[at : at + count], collected[at : at + count]))
            at += count
            results.append(self._answers(windows, context, context_index, state["cls_id"], opts))
        return results

    def _answers(self, windows, context: str, context_index: int, cls_id, opts: _Options):
        pre_k = opts.top_k * 2 + 10 if opts.align_to_words else opts.top_k
        null_score = 1000000.0
        answers: list[dict] = []
        for seq, logits in windows:
            # transformers: only the context (and CLS) when the question comes first, else every token
            allowed = seq.sequence_ids == context_index if context_index == 1 else np.ones(len(seq), bool)
            if cls_id is not None:
                allowed |= seq.ids == cls_id
            allowed = allowed.astype(np.int64)[None]
            starts, ends, scores, null_score = best_spans(
                logits[None, :, 0], logits[None, :, 1], allowed, pre_k, opts.max_answer_len, null_score
            )
            for s, e, score in zip(starts, ends, scores):
                first, last = _char_span(seq, int(s), int(e), context_index, opts.align_to_words)
                text = context[first:last]
                same = next((a for a in answers if a["answer"].lower() == text.lower()), None)
                if same is not None:
                    same["score"] += score.item()
                else:
                    answers.append({"score": score.item(), "start": first, "end": last, "answer": text})
        if opts.handle_impossible_answer:
            answers.append({"score": null_score, "start": 0, "end": 0, "answer": ""})
        answers = sorted(answers, key=lambda a: a["score"], reverse=True)[: opts.top_k]
        return answers[0] if len(answers) == 1 else answers

    def warm_up_text(self, tokenizer) -> dict:
        return {"question": "Where did Maria fly from?", "context": WARM_UP_TEXT}

    def signature(self, result) -> tuple:
        best = result if isinstance(result, dict) else (result[0] if result else {})
        return (best.get("start"), best.get("end"))

    def tune_sample(self, pipe, texts: list[str]) -> list:
        return [{"question": "What is this about?", "context": text} for text in texts if text.strip()]

    def compare_outputs(self, reference, candidate, batches, mask_id) -> dict:
        out = super().compare_outputs(reference, candidate, batches, mask_id)
        # the best start and end token of each sequence, over real tokens
        agree, rows = 0.0, 0
        for ref, cand, (_, feed) in zip(reference, candidate, batches):
            mask = feed["attention_mask"][..., None] == 0
            r = np.where(mask, -np.inf, ref).argmax(axis=1)
            c = np.where(mask, -np.inf, cand).argmax(axis=1)
            agree += float((r == c).all(axis=1).sum())
            rows += len(ref)
        if rows:
            out["span_agreement"] = agree / rows
        return out

    def result_spec(self, pipe, options: Mapping):
        import pyarrow as pa

        from ..batch.results import ResultSpec, json_spec

        if options.get("top_k", 1) != 1:
            return json_spec()
        return ResultSpec(
            "list",
            pa.struct(
                [("score", pa.float64()), ("start", pa.int64()), ("end", pa.int64()), ("answer", pa.string())]
            ),
        )


TASK = QuestionAnswering()
