"""rerank in ``bertrt batch`` with per-row documents: rows ``{"query", "documents"}`` (JSONL, Parquet
list<string> columns) rank their own documents, ``--documents`` still serves every row, and the job is
refused up front when both or neither give the documents; the pipeline's ``{query, documents}`` inputs."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import bertrt
import bertrt.batch
from bertrt.batch import Predictor, sink
from bertrt.cli import main
from bertrt.errors import InputError, InputTypeError
from tests.corpus import PARITY_TEXTS
from tests.tasks.test_sparse_rerank import cross_encoder  # noqa: F401 (fixture)

from .data import assert_same, read_output, write_rows

pytest.importorskip("sentence_transformers")

QUERIES = ["Where does Maria work?", "Who visited Zürich?", "What about pizza?", "a", "Paris on Monday"]


def _rows():
    """Each query with its own documents (of different counts)."""
    docs = list(PARITY_TEXTS)
    return [{"id": i, "query": q, "documents": docs[i : i + 2 + i]} for i, q in enumerate(QUERIES)]


def _run(bundle, source, out, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("shard_size", 2)
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("workers", 1)
    kwargs.setdefault("text_field", "query")
    return bertrt.batch.run(bundle, source, out, **kwargs)


@pytest.fixture(scope="module")
def bundle(cross_encoder):  # noqa: F811
    return cross_encoder("bert")[1]


def test_pipeline_takes_query_documents_dicts(bundle):
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    rows = _rows()
    got = pipe([{"query": r["query"], "documents": r["documents"]} for r in rows], return_documents=True)
    for row, result in zip(rows, got):
        assert result == pipe(row["query"], documents=row["documents"], return_documents=True)
        assert {e["text"] for e in result} == set(row["documents"])
    one = pipe({"query": QUERIES[0], "documents": ["a cat", "a dog"]}, top_k=1)
    assert one == pipe(QUERIES[0], documents=["a cat", "a dog"], top_k=1)
    with pytest.raises(InputError, match="documents given twice"):
        pipe([{"query": "q", "documents": ["a"]}], documents=["b"])
    with pytest.raises(InputTypeError, match="index 1"):
        pipe([{"query": "q", "documents": ["a"]}, "plain query"])
    with pytest.raises(InputError, match="documents of input at index 0"):
        pipe([{"query": "q", "documents": []}])
    with pytest.raises(InputError, match="rerank needs documents"):
        pipe("q")


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_rows_rank_their_own_documents(bundle, tmp_path, suffix):
    rows = _rows()
    source = write_rows(rows, tmp_path / f"in{suffix}")
    out = tmp_path / "out"
    summary = _run(bundle, source, out, task_options={"return_documents": True})
    assert summary.complete and summary.rows_written == len(rows)
    pipe = bertrt.pipeline(bundle=bundle)  # the plan batch ran (auto: int8)
    got = read_output(out)
    assert [r["query"] for r in got] == QUERIES and [r["documents"] for r in got] == [
        r["documents"] for r in rows
    ]
    for i, (row, want) in enumerate(zip(got, rows)):
        expected = pipe(want["query"], documents=want["documents"], return_documents=True, batch_size=4)
        assert_same(row["result"], expected, f"row {i}")
    assert pq.read_schema(next(out.glob("part-*.parquet"))).field("result").type == pa.list_(
        pa.struct([("index", pa.int32()), ("score", pa.float32()), ("text", pa.string())])
    )


def test_shared_documents_still_serve_every_row(bundle, tmp_path, capsys):
    source = write_rows([{"text": q} for q in QUERIES], tmp_path / "in.jsonl")
    out = tmp_path / "out"
    docs = ["a cat", "a dog", "Paris"]
    argv = ["batch", str(bundle), str(source), str(out), "--no-progress", "--precision", "fp32"]
    flags = [arg for doc in docs for arg in ("--documents", doc)]  # one per flag
    assert main([*argv, *flags, "--top-k", "2"]) == 0
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    for row in read_output(out):
        assert_same(row["result"], pipe(row["text"], documents=docs, top_k=2))


def test_both_or_neither_is_refused_before_anything_is_written(bundle, tmp_path):
    source = write_rows(_rows(), tmp_path / "in.jsonl")
    out = tmp_path / "out"
    with pytest.raises(InputError, match="carry their own 'documents' field and --documents"):
        _run(bundle, source, out, task_options={"documents": ["x"]})
    plain = write_rows([{"query": q} for q in QUERIES], tmp_path / "plain.jsonl")
    with pytest.raises(InputError, match="rerank needs documents: give each row a 'documents' field"):
        _run(bundle, plain, out)
    assert not out.exists() or not any(out.iterdir())


def test_a_row_without_documents_is_a_bad_row(bundle, tmp_path):
    rows = _rows()
    rows[2] = {"id": 2, "query": QUERIES[2], "documents": None}
    rows[3] = {"id": 3, "query": QUERIES[3], "documents": []}
    source = write_rows(rows, tmp_path / "in.jsonl")
    out = tmp_path / "out"
    summary = _run(bundle, source, out, on_error="skip", id_field="id")
    assert (summary.rows_written, summary.rows_errors) == (3, 2)
    errors = [json.loads(line) for line in (out / sink.ERRORS).read_text().splitlines()]
    assert [e["id"] for e in errors] == [2, 3] and all("documents" in e["reason"] for e in errors)
    with pytest.raises(InputError, match="documents"):
        _run(bundle, source, tmp_path / "out2", id_field="id")


def test_predictor_on_a_table_with_documents(bundle):
    table = pa.Table.from_pylist([{"text": r["query"], "documents": r["documents"]} for r in _rows()])
    predictor = Predictor(bundle, precision="fp32")
    out = predictor(table)
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    for row, want in zip(out.column("result").to_pylist(), _rows()):
        assert_same(row, pipe(want["query"], documents=want["documents"]))
    with pytest.raises(InputError, match="given too"):
        Predictor(bundle, {"documents": ["a"]}, precision="fp32")(table)
