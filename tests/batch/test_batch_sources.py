"""Input planning and reading (no model): files, rows, schema, shards, bad-row reasons."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from bertrt.batch import sources
from bertrt.errors import InputError

from .data import write_rows


def _scan(path, shard_size=4, text="text", pair=None, id_field=None, on_error="fail"):
    return sources.scan_file(path, text, pair, id_field, shard_size, on_error)


def _all_rows(info, shard_size, chunk_rows, text="text"):
    rows, reasons = [], {}
    for shard in sources.plan_shards([info], shard_size):
        for chunk in sources.iter_shard(info, shard, chunk_rows, text, None):
            for i, why in chunk.reasons.items():
                reasons[chunk.first_row + i] = why
            rows.extend(chunk.table.to_pylist())
    return rows, reasons


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
@pytest.mark.parametrize(("shard_size", "chunk_rows"), [(4, 3), (10, 4), (100, 7)])
def test_shards_cover_every_row_once_in_order(tmp_path, suffix, shard_size, chunk_rows):
    rows = [{"id": i, "text": f"text {i}\nsecond line" if i % 5 == 0 else f"text {i}"} for i in range(45)]
    info = _scan(write_rows(rows, tmp_path / f"in{suffix}"), shard_size)
    assert info.rows == 45
    shards = sources.plan_shards([info], shard_size)
    assert [s.rows for s in shards][:-1] == [shard_size] * (len(shards) - 1)
    got, reasons = _all_rows(info, shard_size, chunk_rows)
    assert got == rows and reasons == {}


def test_jsonl_bad_rows_keep_their_position_and_reason(tmp_path):
    path = tmp_path / "in.jsonl"
    lines = [
        json.dumps({"id": 0, "text": "good"}),
        json.dumps({"id": 1, "text": 5}),
        "",  # blank: not a row
        json.dumps({"id": 2}),
        json.dumps({"id": 3, "text": None}),
        "{not json",
        json.dumps(["a list"]),
        json.dumps({"id": 6, "text": ["a"]}),
        json.dumps({"id": 7, "text": "fine", "extra": 1.5}),
        '{"id": 8, "text": NaN}',
    ]
    path.write_text("\n".join(lines) + "\n")
    info = _scan(path, shard_size=3)
    assert info.rows == 9
    assert info.schema.field("text").type == pa.string()
    assert info.schema.names == ["id", "text", "extra"]
    rows, reasons = _all_rows(info, 3, 2)
    assert len(rows) == 9 and rows[0] == {"id": 0, "text": "good", "extra": None}
    assert rows[7]["extra"] == 1.5
    assert reasons[1] == "'text' is a number, not a string"
    assert reasons[2] == "no 'text' field"
    assert reasons[3] == "'text' is null"
    assert reasons[4].startswith("not valid JSON")
    assert reasons[5] == "expected a JSON object, got a list"
    assert reasons[6] == "'text' is a list, not a string"
    assert "NaN" in reasons[8]
    assert set(reasons) == {1, 2, 3, 4, 5, 6, 8}
    # line numbers count the blank line; the raw text of a bad line is kept
    chunk = next(sources.iter_shard(info, sources.plan_shards([info], 3)[1], 10, "text", None))
    assert chunk.lines == [5, 6, 7] and chunk.raw[1] == "{not json"


def test_jsonl_schema_unifies_nulls_and_late_fields(tmp_path):
    rows = [{"text": "a", "tag": None}] * 5000 + [{"text": "b", "tag": "x", "late": 3}]
    info = _scan(write_rows(rows, tmp_path / "in.jsonl"))
    assert info.schema.field("tag").type == pa.string()
    assert info.schema.field("late").type == pa.int64()


def test_jsonl_field_changing_type_is_a_file_error(tmp_path):
    path = write_rows([{"text": "a", "n": 1}, {"text": "b", "n": "one"}], tmp_path / "in.jsonl")
    with pytest.raises(InputError, match="changes JSON type"):
        _scan(path)


def test_csv_empty_cell_is_missing_but_quoted_empty_is_text(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text('id,text\n1,hello\n2,\n3,""\n4,NA\n')
    info = _scan(path)
    rows, reasons = _all_rows(info, 10, 10)
    assert [r["text"] for r in rows] == ["hello", None, "", "NA"]
    assert reasons == {1: "'text' is missing or null"}


def test_parquet_nulls_are_bad_rows(tmp_path):
    info = _scan(write_rows([{"text": "a"}, {"text": None}, {"text": "c"}], tmp_path / "in.parquet"))
    assert _all_rows(info, 2, 2)[1] == {1: "'text' is missing or null"}


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_file_level_problems_name_the_file(tmp_path, suffix):
    path = write_rows([{"body": "a", "n": 1}], tmp_path / f"in{suffix}")
    with pytest.raises(InputError, match=r"no text field 'text'.*--text-field"):
        _scan(path)
    with pytest.raises(InputError, match="no id field 'key'"):
        _scan(path, text="body", id_field="key")
    clash = write_rows([{"text": "a", "result": 1}], tmp_path / f"clash{suffix}")
    with pytest.raises(InputError, match="'result'"):
        _scan(clash)


def test_parquet_text_column_must_be_strings(tmp_path):
    path = write_rows([{"text": 1}], tmp_path / "in.parquet")
    with pytest.raises(InputError, match="expected a string column"):
        _scan(path)


def test_resolve_inputs_file_folder_glob_and_output_excluded(tmp_path):
    for name in ("a.jsonl", "sub/b.csv", "sub/c.parquet", "_skip/d.jsonl", ".hidden.jsonl", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "part-00000-000000.jsonl").write_text("")
    found = sources.resolve_inputs(tmp_path, exclude=tmp_path / "out")
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a.jsonl", "sub/b.csv", "sub/c.parquet"]
    assert sources.resolve_inputs(str(tmp_path / "**" / "*.csv")) == [(tmp_path / "sub/b.csv").resolve()]
    with pytest.raises(InputError, match="unknown input format"):
        sources.resolve_inputs(tmp_path / "notes.txt")
    with pytest.raises(InputError, match="no such file or folder"):
        sources.resolve_inputs(tmp_path / "missing.jsonl")
    with pytest.raises(InputError, match="match"):
        sources.resolve_inputs(str(tmp_path / "*.xyz"))


def test_csv_with_a_stray_quote_keeps_every_row(tmp_path):
    path = tmp_path / "in.csv"
    body = ['1,"quoted, with\nnewline"', '2,a 5" screen', "3,plain", "", "4,last"]
    path.write_text("id,text\n" + "\n".join(body) + "\n")
    info = _scan(path, shard_size=2)
    assert info.rows == 4 and len(info.shard_offsets) == 2  # a quote inside a field opens nothing
    rows, _ = _all_rows(info, 2, 1)
    assert [r["id"] for r in rows] == [1, 2, 3, 4] and rows[1]["text"] == 'a 5" screen'
    clean = write_rows([{"id": i, "text": f'say ""{i}""\nok'} for i in range(5)], tmp_path / "clean.csv")
    info = _scan(clean, shard_size=2)
    assert len(info.shard_offsets) == 3
    assert [r["id"] for r in _all_rows(info, 2, 1)[0]] == list(range(5))


@pytest.mark.parametrize("shard_size", [4, 1000])
def test_csv_unclosed_quote_is_a_file_error_naming_its_line_not_a_merged_row(tmp_path, shard_size):
    path = tmp_path / "in.csv"
    rows = [f"{i},row {i}" for i in range(30)]
    rows[9] = '9,"opens here and never closes'
    path.write_text("id,text\n" + "\n".join(rows) + "\n")
    with pytest.raises(
        InputError, match=r"in\.csv: line 11 \(row 10\): a quoted field opens there and is never"
    ):
        _scan(path, shard_size=shard_size)
    # a quote that does not open a field is text, and "" inside a quoted field is a quote: no error
    path.write_text('id,text\n1,"a ""b"",\nc"\n2,5" screen\n3,"x"\n')
    assert [r["text"] for r in _all_rows(_scan(path, shard_size=1), 1, 1)[0]] == [
        'a "b",\nc',
        '5" screen',
        "x",
    ]


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("empty.jsonl", b""),
        ("blank.jsonl", b"\n \n"),
        ("bom.jsonl", b"\xef\xbb\xbf\n"),
        ("empty.csv", b""),
        ("bom.csv", b"\xef\xbb\xbf\r\n"),
    ],
)
def test_an_empty_file_has_zero_rows(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data)
    info = _scan(path, pair="pair", id_field="key")
    assert info.rows == 0 and sources.plan_shards([info], 4) == []
    assert {"text", "pair", "key"} <= set(info.schema.names)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv"])
def test_a_leading_byte_order_mark_is_dropped(tmp_path, suffix):
    path = write_rows([{"text": f"t{i}"} for i in range(5)], tmp_path / f"in{suffix}")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    info = _scan(path, shard_size=2)
    assert info.rows == 5 and info.schema.names == ["text"]
    rows, reasons = _all_rows(info, 2, 2)
    assert [r["text"] for r in rows] == [f"t{i}" for i in range(5)] and reasons == {}


@pytest.mark.parametrize(("shard_size", "chunk_rows"), [(4, 3), (1000, 7)])
def test_csv_unclosed_quote_with_skip_is_one_bad_row_and_absorbs_nothing(tmp_path, shard_size, chunk_rows):
    path = tmp_path / "in.csv"
    rows = [f"{i},row {i}" for i in range(30)]
    rows[9] = '9,"opens here and never closes'
    path.write_text("id,text\n" + "\n".join(rows) + "\n")
    info = _scan(path, shard_size=shard_size, on_error="skip")
    assert info.rows == 30 and [b[2:] for b in info.bad_records] == [(11, 9)]
    assert len(info.shard_offsets) == len(sources.plan_shards([info], shard_size))  # read from offsets
    for kept in (info, info.light()):  # (without offsets: by skipping rows) kept in the manifest
        kept = sources.InputFile.from_json(kept.to_json())
        got, reasons = _all_rows(kept, shard_size, chunk_rows)
        assert [r["id"] for r in got] == [None if i == 9 else i for i in range(30)]
        assert [r["text"] for r in got][10] == "row 10"  # the next line is a row of its own again
        assert reasons == {9: "line 11: a quoted field opens there and is never closed"}
