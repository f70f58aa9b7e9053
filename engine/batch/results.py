"""Pipeline results as typed Arrow arrays: one ``result`` column whose type is fixed before the first row.

==================== ======================================================================================
task (options)       Arrow type of ``result``
==================== ======================================================================================
token-classification ``list<struct<entity: string, score: float32, index: int32, word: string, start: int32,
(no aggregation)     end: int32>>`` (one entry per token, as the pipeline returns them)
token-classification ``list<struct<entity_group: string, score: float32, word: string, start: int32,
(aggregated)         end: int32>>``
text-classification  ``struct<label: string, score: float32>`` (no ``top_k``: the best label);
                     ``list<struct<label: string, score: float32>>`` with ``top_k`` (a number or all)
feature-extraction   pooled (``pooling`` mean/cls/max): ``fixed_size_list<float32>[dim]``; no pooling:
                     ``list<fixed_size_list<float32>[dim]>`` (one vector per token: the pipeline's
                     (1, tokens, dim) array without its leading 1); ``pooling=words``:
                     ``struct<words: list<string>, offsets: list<fixed_size_list<int32>[2]>,
                     vectors: list<fixed_size_list<float32>[dim]>>``
fill-mask            ``list<list<struct<score: float32, token: int32, token_str: string,
                     sequence: string>>>``: one list per mask, also when a text has a single mask
any other task       ``string``: the result as JSON
==================== ======================================================================================

Scores and vectors are float32 (the model's precision); a score read back is the pipeline's float rounded
to float32. The type is found by running the pipeline once on its warm-up text (:func:`infer_spec`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..results import to_jsonable

__all__ = ["ResultSpec", "infer_spec", "to_arrow"]

_LABEL = pa.struct([("label", pa.string()), ("score", pa.float32())])
_TOKEN_ENTITY = pa.struct(
    [
        ("entity", pa.string()),
        ("score", pa.float32()),
        ("index", pa.int32()),
        ("word", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
    ]
)
_GROUP_ENTITY = pa.struct(
    [
        ("entity_group", pa.string()),
        ("score", pa.float32()),
        ("word", pa.string()),
        ("start", pa.int32()),
        ("end", pa.int32()),
    ]
)
_FILL = pa.struct(
    [("score", pa.float32()), ("token", pa.int32()), ("token_str", pa.string()), ("sequence", pa.string())]
)


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


def infer_spec(pipe, options: dict) -> ResultSpec:
    """The result type of ``pipe`` called with ``options``, from one call on its warm-up text."""
    task = pipe.task
    text = pipe.warm_up_text
    if task == "token-classification":
        # Keep every label, so the probe has entities to read the layout from.
        probe = pipe([text], **{**options, "ignore_labels": []})[0]
        aggregated = bool(probe) and "entity_group" in probe[0]
        return ResultSpec("list", pa.list_(_GROUP_ENTITY if aggregated else _TOKEN_ENTITY))
    probe = pipe([text], **options)[0]
    if task == "text-classification":
        return ResultSpec("list", pa.list_(_LABEL)) if isinstance(probe, list) else ResultSpec("list", _LABEL)
    if task == "feature-extraction":
        if isinstance(probe, dict):
            return ResultSpec("words", _words(int(np.asarray(probe["vectors"]).shape[-1])))
        array = np.asarray(probe)
        if array.ndim == 1:
            return ResultSpec("pooled", pa.list_(pa.float32(), int(array.shape[0])))
        return ResultSpec("tokens", _vectors(int(array.shape[-1])))
    if task == "fill-mask":
        return ResultSpec("fill", pa.list_(pa.list_(_FILL)))
    return ResultSpec("json", pa.string())


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
    if spec.kind == "fill":
        return pa.array([r if r and isinstance(r[0], list) else [r] for r in results], type=spec.type)
    return pa.array([json.dumps(to_jsonable(r), ensure_ascii=False) for r in results], pa.string())
