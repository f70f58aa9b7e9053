"""Pipeline results as typed Arrow arrays: one ``result`` column whose type is fixed before the first row.

Each task says the type of its results (:meth:`bertrt.tasks.base.Task.result_spec`, documented in the
task's module; any task that says nothing: ``string``, the result as JSON) as a :class:`ResultSpec`: one
of the converters below and the column's Arrow type. Scores and vectors are float32 (the model's
precision); a score read back is the pipeline's float rounded to float32.

====== =============================================================================================
kind   what the results are, and the type
====== =============================================================================================
list   JSON-like values (dicts, lists) that ``pa.array`` converts to ``type`` as they are
nested a list of lists; a result that is a flat list (one inner list) is wrapped in one
pooled one vector (dim,) per result: ``fixed_size_list<float32>[dim]`` (:func:`pooled_spec`)
tokens (1, n, dim) or (n, dim) per result: ``list<fixed_size_list<float32>[dim]>`` (:func:`tokens_spec`)
words  ``{"words", "offsets", "vectors"}`` per result (:func:`words_spec`)
json   anything: ``string``, the result as JSON (:func:`json_spec`)
====== =============================================================================================
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..results import to_jsonable

__all__ = [
    "ResultSpec",
    "infer_spec",
    "json_spec",
    "pooled_spec",
    "to_arrow",
    "tokens_spec",
    "words_spec",
]


def _vectors(dim: int) -> pa.DataType:
    return pa.list_(pa.list_(pa.float32(), dim))


def _words(dim: int) -> pa.DataType:
    return pa.struct(
        [
            ("words", pa.list_(pa.string())),
            ("offsets", pa.list_(pa.list_(pa.int32(), 2))),
            ("vectors", _vectors(dim)),
        ]
    )


@dataclass(frozen=True)
class ResultSpec:
    """How one task's results become Arrow: ``kind`` (the converter) and the column ``type``."""

    kind: str
    type: pa.DataType

    def __str__(self) -> str:
        return str(self.type)


def json_spec() -> ResultSpec:
    """Any result, as a JSON string."""
    return ResultSpec("json", pa.string())


def pooled_spec(dim: int) -> ResultSpec:
    """One float32 vector of ``dim`` per result."""
    return ResultSpec("pooled", pa.list_(pa.float32(), int(dim)))


def tokens_spec(dim: int) -> ResultSpec:
    """A (tokens, dim) float32 matrix per result (a leading 1 is dropped)."""
    return ResultSpec("tokens", _vectors(int(dim)))


def words_spec(dim: int) -> ResultSpec:
    """``{"words", "offsets", "vectors"}`` per result: strings, (start, end) spans, (words, dim) vectors."""
    return ResultSpec("words", _words(int(dim)))


def infer_spec(pipe, options: dict) -> ResultSpec:
    """The result type of ``pipe`` called with ``options``: its task's :meth:`~bertrt.tasks.base.Task.result_spec`
    (which may probe the pipeline once on its warm-up text)."""
    return pipe.spec.result_spec(pipe, options)


def _fixed(matrix: np.ndarray, dim: int) -> pa.FixedSizeListArray:
    flat = pa.array(np.ascontiguousarray(matrix, dtype=np.float32).reshape(-1))
    return pa.FixedSizeListArray.from_arrays(flat, dim)


def _ragged(matrices: list[np.ndarray], dim: int) -> pa.ListArray:
    """A list of (n_i, dim) matrices -> list<fixed_size_list<float32>[dim]>."""
    lengths = [len(m) for m in matrices]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    stacked = np.concatenate(matrices) if matrices else np.zeros((0, dim), dtype=np.float32)
    return pa.ListArray.from_arrays(pa.array(offsets), _fixed(stacked.reshape(-1, dim), dim))


def to_arrow(spec: ResultSpec, results: list) -> pa.Array:
    """One Arrow array of ``spec.type`` holding ``results`` (the pipeline's results, in order)."""
    if spec.kind == "list":
        return pa.array(results, type=spec.type)
    if spec.kind == "pooled":
        dim = spec.type.list_size
        matrix = np.stack(results) if results else np.zeros((0, dim), dtype=np.float32)
        return _fixed(matrix, dim)
    if spec.kind == "tokens":
        dim = spec.type.value_type.list_size
        return _ragged([np.asarray(r, dtype=np.float32).reshape(-1, dim) for r in results], dim)
    if spec.kind == "words":
        dim = spec.type.field("vectors").type.value_type.list_size
        words = pa.array([r["words"] for r in results], type=pa.list_(pa.string()))
        offsets = pa.array([[list(span) for span in r["offsets"]] for r in results], spec.type[1].type)
        vectors = _ragged([np.asarray(r["vectors"], dtype=np.float32).reshape(-1, dim) for r in results], dim)
        return pa.StructArray.from_arrays([words, offsets, vectors], fields=list(spec.type))
    if spec.kind == "nested":
        return pa.array([r if r and isinstance(r[0], list) else [r] for r in results], type=spec.type)
    return pa.array([json.dumps(to_jsonable(r), ensure_ascii=False) for r in results], pa.string())
