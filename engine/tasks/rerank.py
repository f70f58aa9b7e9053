"""rerank (cross-encoder): documents ranked by their relevance to a query, as sentence-transformers'
``CrossEncoder.rank`` / ``predict`` score them.

``pipe(query, documents=[...], top_k=None, return_documents=False)`` gives ``[{"index", "score",
"text"?}]``, best first (ties: the earlier document); a list of queries gives one such list per query.
Queries that bring their own documents come as ``{"query", "documents"}`` dicts (one, or a list of them;
``documents=`` is then not given: :meth:`Rerank.parse_inputs`); ``bertrt batch`` reads them from rows with a
``documents`` field (:attr:`~bertrt.tasks.base.Task.row_option`).
Every (query, document) pair of a call is one sequence of one length-sorted batched run. The score is
the one-label model's logit through the checkpoint's activation, as ``CrossEncoder`` reads it
(config.json ``sentence_transformers.activation_fn``, which the exporter records from
``config_sentence_transformers.json``; none: sigmoid); ``raw_scores=True`` gives the logit itself (TEI).
The post-processing (:func:`rank`) is pure numpy.

``bertrt batch``'s ``result``: ``list<struct<index: int32, score: float32>>`` (plus ``text: string``).
``bertrt tune`` ranks :data:`TUNE_DOCUMENTS` for every sample text and compares the rankings per query
(:meth:`Rerank.agreement`: the best document, the order of every document pair, the scores that moved).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InputError, InputTypeError, TaskError
from ..numeric import sigmoid
from ..tokenize import check_text
from . import figures
from .base import Cli, Encoding, Evaluation, Option, Task, check_top_k, positive_int_or_all

__all__ = [
    "ACTIVATIONS",
    "BENCH_DOCUMENTS",
    "SCORE_TOLERANCE",
    "TASK",
    "TUNE_DOCUMENTS",
    "Rerank",
    "activation_of",
    "rank",
]

_SUBJECTS = (
    "Maria",
    "The city council",
    "A small bakery",
    "The river",
    "Our team",
    "The museum",
    "A new study",
    "The old bridge",
    "This phone",
    "The festival",
)
_PREDICATES = (
    "opened in Groningen last spring.",
    "was praised by critics.",
    "closes early on Sundays.",
    "attracts many visitors.",
    "costs less than expected.",
    "moved to a larger building.",
    "won a regional award.",
    "needs urgent repairs.",
    "is popular with students.",
    "started a recycling programme.",
)
#: ``bertrt bench``'s documents: 100 short ones, every text of the bench ranks them (issue 19's row)
BENCH_DOCUMENTS = tuple(f"{s} {p}" for s in _SUBJECTS for p in _PREDICATES)
#: the documents ``bertrt tune`` (and the server's warm-up) ranks for every text: ten of them, no subject
#: or predicate twice
TUNE_DOCUMENTS = BENCH_DOCUMENTS[::11]

#: ``bertrt tune``'s ``score_agreement``: a document's score may move this much and still agree
SCORE_TOLERANCE = 0.01

#: ``torch.nn`` activation class -> what :func:`rank` applies
ACTIVATIONS = {"Sigmoid": "sigmoid", "Identity": "none", "Tanh": "tanh"}


def activation_of(config: Mapping) -> str:
    """The activation ``CrossEncoder`` applies for this config.json: its ``sentence_transformers``
    record's ``activation_fn`` (or the pre-4.0 ``sbert_ce_default_activation_function``); none: sigmoid."""
    record = config.get("sentence_transformers")
    path = record.get("activation_fn") if isinstance(record, Mapping) else None
    path = path or config.get("sbert_ce_default_activation_function")
    if not path:
        return "sigmoid"
    name = str(path).rsplit(".", 1)[-1]
    if name not in ACTIVATIONS:
        raise TaskError(
            f"the cross-encoder's activation {path!r} is not one bertrt applies "
            f"({', '.join('torch.nn.' + k for k in ACTIVATIONS)})"
        )
    return ACTIVATIONS[name]


def rank(
    logits: np.ndarray, activation: str, top_k: int | None = None, documents: list[str] | None = None
) -> list[dict]:
    """``[{"index", "score", "text"?}]`` for one query's (documents,) logits, best first."""
    logits = np.asarray(logits, dtype=np.float32).reshape(-1)
    if activation == "sigmoid":
        scores = sigmoid(logits)
    elif activation == "tanh":
        scores = np.tanh(logits)
    else:
        scores = logits
    order = np.argsort(-scores, kind="stable")[: top_k if top_k is not None else None]
    out = []
    for i in order.tolist():
        entry = {"index": i, "score": float(scores[i])}
        if documents is not None:
            entry["text"] = documents[i]
        out.append(entry)
    return out


class _PerQuery(tuple):
    """Each query's own documents, in the order of the queries: the ``documents`` option as
    :meth:`Rerank.parse_inputs` hands on the documents of ``{"query", "documents"}`` inputs."""


def _check_documents(documents, what: str) -> tuple[str, ...]:
    if isinstance(documents, str) or not isinstance(documents, (list, tuple)) or not documents:
        raise InputError(f"{what} must be a non-empty list of str, got {documents!r}")
    for i, doc in enumerate(documents):
        if not isinstance(doc, str):
            raise InputError(f"document at index {i} must be a str, got {type(doc).__name__}")
        check_text(doc, f"document at index {i}")
    return tuple(documents)


@dataclass(frozen=True)
class _Options:
    documents: tuple[str, ...] | None  # None: not given (an error when the call runs)
    top_k: int | None
    return_documents: bool
    activation: str
    #: each query's own documents (``{"query", "documents"}`` inputs), in place of ``documents``
    per_query: tuple[tuple[str, ...], ...] | None = None


@dataclass(frozen=True)
class _Pairs(Encoding):
    counts: list[int]  # pairs (documents) per query
    documents: tuple[tuple[str, ...], ...] = ()  # each query's documents


class Rerank(Task):
    name = "rerank"
    auto_class = "AutoModelForSequenceClassification"
    export_as = "text-classification"
    export_head = "bertrt.export.rerank"
    output = "logits"
    dims = ("batch", "labels")
    evaluation = Evaluation("rerank", "mrr@10")
    reference_module = "bertrt.export.rerank"
    reference_options = MappingProxyType({"documents": BENCH_DOCUMENTS})
    warm_up_options = MappingProxyType({"documents": TUNE_DOCUMENTS})
    #: the best document of each query, the order of each document pair, the scores (mean over the queries)
    gates = MappingProxyType(
        {
            "accuracy.top1_agreement": 0.9,
            "accuracy.order_agreement": 0.9,
            "accuracy.score_agreement": 0.9,
            "invariance.top1_agreement": 0.999,
            "invariance.order_agreement": 0.999,
            "invariance.score_agreement": 0.999,
        }
    )
    row_option = "documents"  # bertrt batch: rows with a documents field rank their own
    options = (
        Option(
            "documents",
            list[str],
            None,
            help="the documents to rank, the same for every query (one per flag)",
            cli=Cli(nargs="+"),
        ),
        Option(
            "top_k",
            int | None,
            None,
            help="number of documents to return, best first (default: all)",
            cli=Cli(parse=positive_int_or_all),
        ),
        Option("return_documents", bool, False, help="add each document's text", cli=Cli(flag=True)),
        Option("raw_scores", bool, False, help="the logits, without the activation", cli=Cli(flag=True)),
    )

    def setup(self, pipe) -> str:
        if pipe.num_labels != 1:
            raise TaskError(
                f"{pipe.bundle.root}: rerank needs a one-score cross-encoder, this model has "
                f"{pipe.num_labels} labels"
            )
        return activation_of(pipe.bundle.config)

    def parse_inputs(self, inputs, options: dict):
        """``{"query", "documents"}`` dicts (one, or a list of them) as their queries, their documents
        handed on as the ``documents`` option (:class:`_PerQuery`); InputError when ``documents=`` is given
        too, InputTypeError for a list that mixes them with plain queries."""
        inputs, options = super().parse_inputs(inputs, options)
        single = isinstance(inputs, dict)
        items = [inputs] if single else inputs
        if not isinstance(items, (list, tuple)) or not any(isinstance(item, dict) for item in items):
            return inputs, options
        if options.get("documents") is not None:
            raise InputError(
                "documents given twice: the {query, documents} inputs carry their own, and documents= "
                "is given too; give one of them"
            )
        queries, documents = [], []
        for i, item in enumerate(items):
            if not isinstance(item, dict) or set(item) != {"query", "documents"}:
                where = "input" if single else f"input at index {i}"
                got = sorted(item) if isinstance(item, dict) else type(item).__name__
                raise InputTypeError(
                    f"{where} must be a {{'query': str, 'documents': [str, ...]}} dict, as the others; got {got}"
                )
            queries.append(item["query"])
            documents.append(item["documents"])
        return (queries[0] if single else queries), {**options, "documents": _PerQuery(documents)}

    def check_options(self, pipe, options: Mapping) -> _Options:
        self.reject_unknown(options)
        documents = options.get("documents")
        if documents is None:  # a pipeline's defaults may leave them to the call; a call needs them
            return _Options(None, None, False, "none")
        per_query = None
        if isinstance(documents, _PerQuery):
            per_query = tuple(
                _check_documents(docs, f"the documents of input at index {i}")
                for i, docs in enumerate(documents)
            )
            documents = None
        else:
            documents = _check_documents(documents, "documents")
        flags = {k: options.get(k, False) for k in ("return_documents", "raw_scores")}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise InputError(f"{key} must be True or False, got {value!r}")
        activation = "none" if flags["raw_scores"] else pipe.task_state
        top_k = check_top_k(options.get("top_k"))
        return _Options(documents, top_k, flags["return_documents"], activation, per_query)

    def encode(self, pipe, items: list, opts: _Options) -> _Pairs:
        if opts.per_query is not None:
            if len(opts.per_query) != len(items):
                raise InputError(f"{len(opts.per_query)} document lists for {len(items)} queries")
            documents = opts.per_query
        elif opts.documents is not None:
            documents = (opts.documents,) * len(items)
        else:
            raise InputError(
                "rerank needs documents: documents=[...], ranked against every query, or "
                "{query, documents} inputs"
            )
        pairs = [(query, doc) for query, docs in zip(items, documents) for doc in docs]
        return _Pairs(pipe.tokenizer.encode_batch(pairs), [len(d) for d in documents], documents)

    def collect(self, output: np.ndarray, row: int, seq, opts: _Options) -> float:
        return float(output[row, 0])

    def finish(self, pipe, items: list, encoded: _Pairs, collected: list, opts: _Options) -> list:
        results, start = [], 0
        for count, documents in zip(encoded.counts, encoded.documents):
            docs = list(documents) if opts.return_documents else None
            results.append(
                rank(np.array(collected[start : start + count]), opts.activation, opts.top_k, docs)
            )
            start += count
        return results

    def row_item(self, text: str, value) -> dict:
        """A ``bertrt batch`` row with its own documents: the ``{"query", "documents"}`` input."""
        return {"query": text, "documents": value}

    def signature(self, result) -> int:
        return result[0]["index"]

    def agreement(self, reference, candidate) -> dict:
        """Per query (the same documents ranked twice), meaned over the queries: whether the best document
        is the same (``top1_agreement``), the share of document pairs in the same order
        (``order_agreement``) and of documents whose score moved by at most :data:`SCORE_TOLERANCE`
        (``score_agreement``)."""
        top1, order, close = [], [], []
        for ref, cand in zip(reference, candidate):
            ref_scores = {e["index"]: e["score"] for e in ref}
            cand_scores = {e["index"]: e["score"] for e in cand}
            common = sorted(ref_scores.keys() & cand_scores.keys())
            top1.append(bool(ref) and bool(cand) and ref[0]["index"] == cand[0]["index"])
            a = np.array([ref_scores[i] for i in common], dtype=np.float64)
            b = np.array([cand_scores[i] for i in common], dtype=np.float64)
            order.append(figures.pair_order_agreement(a, b))
            close.append(float(np.mean(np.abs(a - b) <= SCORE_TOLERANCE)) if len(a) else 1.0)
        return {
            name: round(float(np.mean(values)), 6) if values else 1.0
            for name, values in (
                ("top1_agreement", top1),
                ("order_agreement", order),
                ("score_agreement", close),
            )
        }

    def result_spec(self, pipe, options: Mapping):
        import pyarrow as pa

        from ..batch.results import ResultSpec

        fields = [("index", pa.int32()), ("score", pa.float32())]
        if options.get("return_documents"):
            fields.append(("text", pa.string()))
        return ResultSpec("list", pa.list_(pa.struct(fields)))


TASK = Rerank()
