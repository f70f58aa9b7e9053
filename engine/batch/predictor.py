"""One pipeline as a table function: a batch of rows in, the same rows plus a typed ``result`` column out.

:class:`Predictor` is what every batch worker runs (a local process, a Ray actor) and what a user hands to
``ray.data.Dataset.map_batches`` (see :mod:`bertrt.ray`). It accepts a pyarrow Table or RecordBatch, a
pandas DataFrame or a dict of numpy arrays (Ray's batch formats) and returns the same kind.
"""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

from .. import backends
from ..backends import DEFAULT_BATCH_SIZE
from ..errors import InputError
from . import results as _results

__all__ = ["Predictor", "row_items", "row_option_field"]

ON_ERROR = ("fail", "skip")


def row_items(
    table: pa.Table,
    text_field: str,
    pair_field: str | None,
    rows: list[int] | None = None,
    spec=None,
    option_field: str | None = None,
):
    """The pipeline inputs of ``table``'s rows: the text, or ``{"text", "text_pair"}`` when a pair is set,
    or the task ``spec``'s :meth:`~bertrt.tasks.base.Task.row_item` of the text and the row's
    ``option_field`` (rerank: ``{"query", "documents"}``)."""
    texts = table.column(text_field).to_pylist()
    pairs = table.column(pair_field).to_pylist() if pair_field else None
    indices = range(len(texts)) if rows is None else rows
    if option_field is not None:
        values = table.column(option_field).to_pylist()
        return [spec.row_item(texts[i], values[i]) for i in indices]
    if pairs is None:
        return [texts[i] for i in indices]
    return [texts[i] if pairs[i] is None else {"text": texts[i], "text_pair": pairs[i]} for i in indices]


def row_option_field(spec, task_options: dict, fields, where: str) -> str | None:
    """The field that gives each row its own value of the task's :attr:`~bertrt.tasks.base.Task.row_option`
    (rerank: ``documents``), None when the rows do not carry it. InputError when the rows carry it and the
    option is given too, or when neither gives it."""
    name = getattr(spec, "row_option", None)
    if name is None:
        return None
    flag = "--" + name.replace("_", "-")
    if name in fields:
        if task_options.get(name) is not None:
            raise InputError(
                f"{where}: the rows carry their own {name!r} field and {flag} ({name}=) is given too; "
                f"leave out {flag} or the field"
            )
        return name
    if task_options.get(name) is None:
        raise InputError(
            f"{where}: {spec.name} needs {name}: give each row a {name!r} field, or pass {flag} ({name}=) "
            "for every row"
        )
    return None


class Predictor:
    """A pipeline on ``bundle`` called with ``task_options``; ``predictor(batch)`` adds ``result_field``.

    Rows whose text is missing, null or not a string, and rows the pipeline rejects, raise InputError
    naming the row (``on_error="fail"``), or get a null result and the reason in an ``error`` column
    (``on_error="skip"``). ``threads``: the session's intra-op threads (None: physical cores; with
    ``backend="auto"`` and a tuning.json entry for this CPU, the tuned count). ``backend`` / ``precision``:
    as :func:`bertrt.pipeline`'s, or ``plan``, a :class:`bertrt.backends.Plan` already computed. ``batch_size``
    None: the pipeline's default (tuned on this CPU, else 32).
    """

    def __init__(
        self,
        bundle: str | os.PathLike,
        task_options: dict | None = None,
        *,
        task: str | None = None,
        text_field: str = "text",
        text_pair_field: str | None = None,
        result_field: str = "result",
        precision: str | None = None,
        model_file: str | os.PathLike | None = None,
        threads: int | None = None,
        batch_size: int | None = None,
        on_error: str = "fail",
        pipe=None,
        backend: str = "auto",
        plan=None,
    ):
        from ..pipelines import pipeline

        if on_error not in ON_ERROR:
            raise InputError(f"on_error must be one of {', '.join(ON_ERROR)}, got {on_error!r}")
        self.task_options = dict(task_options or {})
        self.text_field, self.text_pair_field, self.result_field = text_field, text_pair_field, result_field
        self.on_error = on_error
        self.pipe = (
            pipe
            if pipe is not None
            else pipeline(
                task,
                bundle,
                model_file=model_file,
                plan=plan or backends.plan(bundle, backend, precision, threads),
            )
        )
        #: sequences per session run, and why: "explicit" (given), "tuned" (tuning.json) or "static"
        if batch_size is not None:
            self.batch_size, self.batch_size_source = batch_size, "explicit"
        else:
            self.batch_size = getattr(self.pipe, "batch_size", None) or DEFAULT_BATCH_SIZE
            self.batch_size_source = getattr(self.pipe, "batch_size_source", "static")
        # Options are checked (and the result type fixed) here, before any row is read.
        self.spec = _results.infer_spec(self.pipe, self.task_options)

    @property
    def result_type(self) -> pa.DataType:
        return self.spec.type

    def __repr__(self) -> str:
        return f"Predictor({self.pipe!r}, options={self.task_options}, result={self.spec.type})"

    # -- the core: items -> Arrow ------------------------------------------------------------------------
    def predict(self, items: list) -> tuple[pa.Array, dict[int, str]]:
        """(results of ``items`` as one Arrow array, {index: reason} of items the pipeline rejected); a
        rejected item gets a null result. One pipeline call for all items; when the pipeline rejects the
        call, each item is run alone to find the ones at fault."""
        try:
            values = self.pipe(items, batch_size=self.batch_size, **self.task_options)
            return _results.to_arrow(self.spec, values), {}
        except InputError:
            pass  # find the items at fault below
        values, failed = [], {}
        for i, item in enumerate(items):
            try:
                values.append(self.pipe([item], batch_size=1, **self.task_options)[0])
            except InputError as exc:
                failed[i] = " ".join(str(exc).split())
                values.append(None)
        good = [v for v in values if v is not None]
        array = _results.to_arrow(self.spec, good)
        if failed:  # put the nulls back where the rejected items were
            positions = np.cumsum([v is not None for v in values]) - 1
            indices = pa.array([None if v is None else int(p) for v, p in zip(values, positions)], pa.int64())
            array = array.take(indices)
        return array, failed

    def predict_table(
        self, table: pa.Table, known: dict[int, str] | None = None
    ) -> tuple[pa.Table, dict[int, str]]:
        """``table`` plus the result column; {row: reason} of the bad rows (their result is null).
        ``known``: reasons already found by the reader (they take precedence)."""
        option_field = row_option_field(self.pipe.spec, self.task_options, table.column_names, "the input")
        reasons = {**_text_problems(table, self.text_field, self.text_pair_field), **(known or {})}
        good = [i for i in range(table.num_rows) if i not in reasons]
        items = row_items(table, self.text_field, self.text_pair_field, good, self.pipe.spec, option_field)
        array, failed = self.predict(items)
        reasons.update({good[i]: why for i, why in failed.items()})
        if len(good) != table.num_rows:
            where = np.full(table.num_rows, -1, dtype=np.int64)
            where[good] = np.arange(len(good))
            array = array.take(pa.array(where, mask=where < 0))
        return table.append_column(pa.field(self.result_field, self.spec.type), array), reasons

    # -- Ray / user batches --------------------------------------------------------------------------------
    def __call__(self, batch):
        kind = _batch_kind(batch)
        table = _to_table(batch, kind)
        out, reasons = self.predict_table(table)
        if reasons:
            if self.on_error == "fail":
                first = min(reasons)
                more = f" (and {len(reasons) - 1} more in this batch)" if len(reasons) > 1 else ""
                raise InputError(f"row {first} of the batch: {reasons[first]}{more}")
            errors = [reasons.get(i) for i in range(out.num_rows)]
            out = out.append_column("error", pa.array(errors, pa.string()))
        elif self.on_error == "skip":
            out = out.append_column("error", pa.nulls(out.num_rows, pa.string()))
        return _from_table(out, kind)


def _text_problems(table: pa.Table, text_field: str, pair_field: str | None) -> dict[int, str]:
    """{row: reason} for rows whose text is missing, null or not a string (and a non-string pair)."""
    if text_field not in table.column_names:
        return dict.fromkeys(range(table.num_rows), f"no {text_field!r} field")
    reasons: dict[int, str] = {}
    for name, required in ((text_field, True), (pair_field, False)):
        if not name or name not in table.column_names:
            continue
        for i, value in enumerate(table.column(name).to_pylist()):
            if isinstance(value, str) or (value is None and not required) or i in reasons:
                continue
            reasons[i] = f"{name!r} is null" if value is None else f"{name!r} is {type(value).__name__}"
    return reasons


def _batch_kind(batch) -> str:
    if isinstance(batch, pa.Table):
        return "table"
    if isinstance(batch, pa.RecordBatch):
        return "record_batch"
    if isinstance(batch, dict):
        return "numpy"
    if type(batch).__name__ == "DataFrame":
        return "pandas"
    raise InputError(
        f"a batch must be a pyarrow Table, pandas DataFrame or dict of arrays, got {type(batch)}"
    )


def _to_table(batch, kind: str) -> pa.Table:
    if kind == "table":
        return batch
    if kind == "record_batch":
        return pa.Table.from_batches([batch])
    if kind == "pandas":
        return pa.Table.from_pandas(batch, preserve_index=False)
    return pa.table({k: pa.array(list(v) if isinstance(v, np.ndarray) else v) for k, v in batch.items()})


def _from_table(table: pa.Table, kind: str):
    if kind == "table":
        return table
    if kind == "record_batch":
        batches = table.combine_chunks().to_batches()
        return batches[0] if batches else pa.RecordBatch.from_pylist([], schema=table.schema)
    if kind == "pandas":
        return table.to_pandas()
    # numpy dicts: input columns as numpy, results as an object array of Python values
    out = {name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names}
    for name in table.column_names:
        if pa.types.is_nested(table.schema.field(name).type):
            values = table.column(name).to_pylist()
            array = np.empty(len(values), dtype=object)
            array[:] = values
            out[name] = array
    return out
