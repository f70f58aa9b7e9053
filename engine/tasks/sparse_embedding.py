"""sparse-embedding (SPLADE): one sparse vocabulary-sized vector per text, as sentence-transformers'
``SparseEncoder.encode`` returns it for an ``MLMTransformer`` + ``SpladePooling`` model.

The pooling, ``log(1 + relu(logits))`` max- (or sum-) pooled over the text's tokens, is inside the
exported graph (the exporter wraps the masked-LM head: ``bertrt.export.sparse``), whose output
``sparse_embedding`` is (batch, vocabulary): per-token vocabulary logits would be far too large to hand
back. Result per text: ``{"indices": [...], "values": [...]}``, the non-zero terms sorted by index
(int64 / float32 arrays); ``top_k`` keeps the k largest values (ties: the lower index), ``return_tokens``
adds ``tokens``, the vocabulary entry of each index. The post-processing (:func:`sparse_terms`) is pure
numpy.

``bertrt batch``'s ``result``: ``struct<indices: list<int32>, values: list<float32>>`` (plus ``tokens:
list<string>``). ``bertrt tune`` and the exporter's int8 gate compare the top terms (their overlap).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from ..errors import InputError
from . import figures
from .base import Cli, Option, Task, ValidationInputs, check_top_k, positive_int_or_all

__all__ = ["OUTPUT", "TASK", "SparseEmbedding", "sparse_terms", "top_terms_overlap"]

#: the graph output: the pooled SPLADE vector of each text (batch, vocabulary)
OUTPUT = "sparse_embedding"
#: how many of the largest terms the agreement figures compare
_TOP = 10


def sparse_terms(vector: np.ndarray, top_k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(indices, values)`` of the non-zero entries of a (vocabulary,) vector, sorted by index; with
    ``top_k`` only the k largest values (ties: the lower index first) are kept."""
    vector = np.asarray(vector, dtype=np.float32)
    indices = np.flatnonzero(vector)
    if top_k is not None and len(indices) > top_k:
        order = np.argsort(-vector[indices], kind="stable")[:top_k]
        indices = np.sort(indices[order])
    return indices.astype(np.int64), vector[indices]


def _top_set(vector: np.ndarray, k: int) -> set[int]:
    vector = np.asarray(vector, dtype=np.float32)
    order = np.argsort(-vector, kind="stable")[:k]
    return {int(i) for i in order if vector[i] > 0}


def top_terms_overlap(reference: np.ndarray, candidate: np.ndarray, k: int = _TOP) -> float:
    """Mean share of each reference row's k largest (non-zero) terms among the candidate row's k largest."""
    shares = []
    for ref, cand in zip(np.atleast_2d(reference), np.atleast_2d(candidate)):
        want = _top_set(ref, k)
        if want:
            shares.append(len(want & _top_set(cand, k)) / len(want))
    return float(np.mean(shares)) if shares else 1.0


def _dense(result: Mapping, width: int) -> np.ndarray:
    out = np.zeros(width, dtype=np.float32)
    out[np.asarray(result["indices"], dtype=np.int64)] = result["values"]
    return out


@dataclass(frozen=True)
class _Options:
    top_k: int | None
    return_tokens: bool


class SparseEmbedding(Task):
    name = "sparse-embedding"
    auto_class = "AutoModelForMaskedLM"
    output = OUTPUT
    dims = ("batch", "vocabulary")
    export_head = "bertrt.export.sparse"
    reference_module = "bertrt.export.sparse"
    gates = MappingProxyType({"accuracy.top_terms_overlap": 0.8, "invariance.top_terms_overlap": 0.99})
    int8_gates = MappingProxyType({"top_terms_overlap": 0.6})
    options = (
        Option(
            "top_k",
            int | None,
            None,
            help="keep the k largest terms of each text (default: every non-zero term)",
            cli=Cli(parse=positive_int_or_all),
        ),
        Option(
            "return_tokens", bool, False, help="add the vocabulary entry of each index", cli=Cli(flag=True)
        ),
    )

    def check_options(self, pipe, options: Mapping) -> _Options:
        self.reject_unknown(options)
        top_k = check_top_k(options.get("top_k"))
        tokens = options.get("return_tokens", False)
        if not isinstance(tokens, bool):
            raise InputError(f"return_tokens must be True or False, got {tokens!r}")
        return _Options(top_k, tokens)

    def collect(self, output: np.ndarray, row: int, seq, opts: _Options):
        return sparse_terms(output[row], opts.top_k)

    def finish(self, pipe, items: list, encoded, collected: list, opts: _Options) -> list:
        results = []
        for indices, values in collected:
            result = {"indices": indices, "values": values}
            if opts.return_tokens:
                result["tokens"] = [pipe.tokenizer.id_to_token(int(i)) for i in indices]
            results.append(result)
        return results

    def agreement(self, reference, candidate) -> dict:
        width = 1 + max(
            (int(np.max(r["indices"], initial=0)) for r in [*reference, *candidate]),
            default=0,
        )
        ref = np.stack([_dense(r, width) for r in reference]) if reference else np.zeros((0, width))
        got = np.stack([_dense(r, width) for r in candidate]) if candidate else np.zeros((0, width))
        return {"top_terms_overlap": round(top_terms_overlap(ref, got), 6)}

    def validation_inputs(self, mask_token: str | None) -> ValidationInputs:
        return ValidationInputs(pairs=())

    def compare_outputs(self, reference, candidate, batches, mask_id) -> dict:
        out = super().compare_outputs(reference, candidate, batches, mask_id)
        rows = [(top_terms_overlap(ref, cand), len(ref)) for ref, cand in zip(reference, candidate)]
        total = sum(n for _, n in rows)
        if total:
            out["top_terms_overlap"] = sum(v * n for v, n in rows) / total
        out["sparse_cosine_min"] = float(
            min(np.min(figures.cosine_rows(ref, cand)) for ref, cand in zip(reference, candidate))
        )
        return out

    def result_spec(self, pipe, options: Mapping):
        import pyarrow as pa

        from ..batch.results import ResultSpec

        fields = [("indices", pa.list_(pa.int32())), ("values", pa.list_(pa.float32()))]
        if options.get("return_tokens"):
            fields.append(("tokens", pa.list_(pa.string())))
        return ResultSpec("list", pa.struct(fields))


TASK = SparseEmbedding()
