"""``bertrt batch`` / ``bertrt.batch.run``: every format in, results equal to direct pipeline calls row for
row, resume (also after SIGKILL), bad rows in both --on-error modes, --workers 2, the Predictor."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

import bertrt
import bertrt.batch
from bertrt.batch import Predictor, sink
from bertrt.cli import main
from bertrt.errors import InputError

from .data import assert_same, make_texts, read_output, write_rows

ROOT = Path(__file__).resolve().parents[2]
NER = "token-classification"
CLS = "text-classification"
FE = "feature-extraction"


@pytest.fixture(scope="module")
def texts():
    return make_texts(90)


def _run(bundle, source, out, **kwargs):
    kwargs.setdefault("progress", False)
    kwargs.setdefault("shard_size", 25)
    kwargs.setdefault("batch_size", 8)
    kwargs.setdefault("workers", 1)
    return bertrt.batch.run(bundle, source, out, **kwargs)


def _check(out, bundle, texts, options, output_format="parquet", batch_size=8):
    rows = read_output(out, output_format)
    assert [r["text"] for r in rows] == texts  # every row once, in input order
    expected = bertrt.pipeline(None, bundle)(texts, batch_size=batch_size, **options)
    for i, (row, want) in enumerate(zip(rows, expected)):
        assert_same(row["result"], want, f"row {i}")
    return rows


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_every_input_format_gives_the_pipeline_results(tiny_bundle, tmp_path, texts, suffix):
    bundle = tiny_bundle("bert", NER)
    source = write_rows([{"id": i, "text": t} for i, t in enumerate(texts)], tmp_path / f"in{suffix}")
    options = {"aggregation_strategy": "first"}
    summary = _run(bundle, source, tmp_path / "out", task_options=options)
    assert summary.complete and summary.rows_written == len(texts) and summary.shards_run == 4
    rows = _check(tmp_path / "out", bundle, texts, options)
    assert [r["id"] for r in rows] == list(range(len(texts)))  # input columns are kept
    manifest = json.loads((tmp_path / "out" / sink.MANIFEST).read_text())
    assert manifest["complete"] and manifest["rows"]["written"] == len(texts)
    assert manifest["inputs"][0]["rows"] == len(texts) and manifest["job"]["task_options"] == options
    assert len(manifest["shards"]["done"]) == 4 and manifest["runs"][-1]["status"] == "complete"


@pytest.mark.parametrize(
    ("task", "options", "arrow_type"),
    [
        (NER, {}, "list<item: struct<entity: string, score: float, index: int32, word: string"),
        (CLS, {}, "struct<label: string, score: float>"),
        (CLS, {"top_k": None}, "list<item: struct<label: string, score: float>>"),
        (FE, {"pooling": "mean", "normalize": True}, "fixed_size_list<item: float>["),
        (FE, {}, "list<item: fixed_size_list<item: float>["),
    ],
)
def test_tasks_give_typed_results_equal_to_the_pipeline(
    tiny_bundle, tmp_path, texts, task, options, arrow_type
):
    bundle = tiny_bundle("bert", task)
    source = write_rows([{"text": t} for t in texts[:40]], tmp_path / "in.parquet")
    _run(bundle, source, tmp_path / "out", task_options=options)
    part = pa.parquet.read_schema(next((tmp_path / "out").glob("part-*.parquet")))
    # Parquet names list items "element", Arrow "item": the same type
    assert str(part.field("result").type).replace("<element:", "<item:").startswith(arrow_type)
    _check(tmp_path / "out", bundle, texts[:40], options)


def test_jsonl_output_and_text_pairs(tiny_bundle, tmp_path, texts):
    bundle = tiny_bundle("bert", CLS)
    rows = [{"q": t, "p": texts[-i - 1] if i % 2 else None} for i, t in enumerate(texts[:30])]
    source = write_rows(rows, tmp_path / "in.jsonl")
    _run(bundle, source, tmp_path / "out", text_field="q", text_pair_field="p", output_format="jsonl")
    got = read_output(tmp_path / "out", "jsonl")
    items = [r["q"] if r["p"] is None else {"text": r["q"], "text_pair": r["p"]} for r in rows]
    expected = bertrt.pipeline(None, bundle)(items, batch_size=8)
    assert [g["q"] for g in got] == [r["q"] for r in rows]
    for row, want in zip(got, expected):
        assert_same(row["result"], want)


def test_resume_skips_done_shards_and_a_changed_job_is_refused(tiny_bundle, tmp_path, texts):
    bundle = tiny_bundle("bert", NER)
    source = write_rows([{"text": t} for t in texts], tmp_path / "in.jsonl")
    out = tmp_path / "out"
    _run(bundle, source, out)
    kept = out / "part-00000-000000.parquet"
    stamp = kept.stat().st_mtime_ns
    (out / "part-00000-000002.parquet").unlink()
    summary = _run(bundle, source, out, workers=2, batch_size=4)  # workers and batch size may change
    assert (summary.shards_run, summary.shards_skipped) == (1, 3) and kept.stat().st_mtime_ns == stamp
    _check(out, bundle, texts, {})
    assert _run(bundle, source, out).shards_run == 0
    with pytest.raises(InputError, match=r"different job.*aggregation_strategy.*--overwrite"):
        _run(bundle, source, out, task_options={"aggregation_strategy": "first"})
    with pytest.raises(InputError, match="shard_size"):
        _run(bundle, source, out, shard_size=10)
    summary = _run(bundle, source, out, task_options={"aggregation_strategy": "first"}, overwrite=True)
    assert summary.shards_run == 4
    _check(out, bundle, texts, {"aggregation_strategy": "first"})
    write_rows([{"text": t} for t in texts[:10]], source)  # the input changed
    with pytest.raises(InputError, match="input files"):
        _run(bundle, source, out, task_options={"aggregation_strategy": "first"})


def _bad_jsonl(path: Path, texts: list[str]) -> Path:
    lines = [json.dumps({"id": i, "text": t}) for i, t in enumerate(texts[:30])]
    lines[3] = json.dumps({"id": 3, "text": 42})
    lines[17] = json.dumps({"id": 17})
    lines[26] = "{broken"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_on_error_fail_names_file_and_line_and_writes_no_part_of_that_shard(tiny_bundle, tmp_path, texts):
    bundle = tiny_bundle("bert", NER)
    source = _bad_jsonl(tmp_path / "in.jsonl", texts)
    out = tmp_path / "out"
    with pytest.raises(
        InputError, match=r"in\.jsonl line 4 \(row 3\), id 3: 'text' is a number, not a string"
    ):
        _run(bundle, source, out, shard_size=10, id_field="id")
    assert not list(out.glob("part-*")) and not list(out.glob(".*tmp*"))
    manifest = json.loads((out / sink.MANIFEST).read_text())
    assert manifest["runs"][-1]["status"].startswith("failed") and not manifest["complete"]


def test_on_error_skip_writes_every_bad_row_to_errors_jsonl(tiny_bundle, tmp_path, texts):
    bundle = tiny_bundle("bert", NER)
    source = _bad_jsonl(tmp_path / "in.jsonl", texts)
    out = tmp_path / "out"
    summary = _run(bundle, source, out, shard_size=10, on_error="skip", id_field="id")
    assert (summary.rows_written, summary.rows_errors) == (27, 3)
    rows = read_output(out)
    assert [r["id"] for r in rows] == [i for i in range(30) if i not in (3, 17, 26)]
    errors = [json.loads(line) for line in (out / sink.ERRORS).read_text().splitlines()]
    assert [(e["row"], e["line"]) for e in errors] == [(3, 4), (17, 18), (26, 27)]
    assert errors[0]["reason"] == "'text' is a number, not a string" and errors[0]["id"] == 3
    assert errors[1]["reason"] == "no 'text' field" and errors[2]["raw"] == "{broken"
    assert errors[0]["raw"] == json.dumps({"id": 3, "text": 42})
    # a resumed run keeps the errors of the shards it skips, and never duplicates them
    (out / "part-00000-000001.parquet").unlink()
    _run(bundle, source, out, shard_size=10, on_error="skip", id_field="id")
    assert [json.loads(line) for line in (out / sink.ERRORS).read_text().splitlines()] == errors


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_on_error_skip_null_texts_in_columnar_files(tiny_bundle, tmp_path, texts, suffix):
    bundle = tiny_bundle("bert", CLS)
    rows = [{"id": i, "text": None if i in (2, 9) else t} for i, t in enumerate(texts[:12])]
    source = write_rows(rows, tmp_path / f"in{suffix}")
    summary = _run(bundle, source, tmp_path / "out", on_error="skip", shard_size=5)
    assert (summary.rows_written, summary.rows_errors) == (10, 2)
    errors = [json.loads(line) for line in (tmp_path / "out" / sink.ERRORS).read_text().splitlines()]
    assert [e["record"]["id"] for e in errors] == [2, 9]
    assert all(e["reason"] == "'text' is missing or null" for e in errors)


def test_two_workers_write_the_same_output_as_one(tiny_bundle, tmp_path, texts):
    bundle = tiny_bundle("bert", NER)
    source = write_rows([{"text": t} for t in texts], tmp_path / "in.parquet")
    options = {"aggregation_strategy": "simple"}
    one = _run(bundle, source, tmp_path / "one", task_options=options, shard_size=10)
    two = _run(bundle, source, tmp_path / "two", task_options=options, workers=2, shard_size=10)
    assert (one.workers, one.threads, two.workers) == (1, os.cpu_count() and one.threads, 2)
    assert read_output(tmp_path / "one") == read_output(tmp_path / "two")
    manifest = json.loads((tmp_path / "two" / sink.MANIFEST).read_text())
    assert len({r["worker"] for r in manifest["shards"]["done"].values()}) == 2


def test_default_split_is_one_single_threaded_worker_per_core():
    assert bertrt.batch.default_split(2, None, None, 10) == (2, 1)
    assert bertrt.batch.default_split(2, None, None, 1) == (1, 2)  # one shard: one worker, every core
    assert bertrt.batch.default_split(8, None, 2, 10) == (4, 2)
    assert bertrt.batch.default_split(8, 3, None, 10) == (3, 2)


def test_killed_run_resumes_without_losing_or_duplicating_rows(tiny_bundle, tmp_path):
    bundle = tiny_bundle("bert", NER)
    texts = make_texts(4000)
    source = write_rows([{"id": i, "text": t} for i, t in enumerate(texts)], tmp_path / "in.jsonl")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "bertrt.cli", "batch", str(bundle), str(source), str(out)]
    cmd += ["--shard-size", "100", "--workers", "1", "--threads", "1", "--no-progress"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(out.glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(out.glob("part-*.parquet")))
    assert 1 <= done_at_kill < 40, f"{done_at_kill} shards at the kill: the run was not killed mid-way"
    rerun = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "already done" in rerun.stderr
    manifest = json.loads((out / sink.MANIFEST).read_text())
    assert manifest["complete"] and manifest["runs"][-1]["shards"] == 40 - done_at_kill
    rows = read_output(out)
    assert [r["id"] for r in rows] == list(range(len(texts)))  # nothing lost, nothing twice
    expected = bertrt.pipeline(None, bundle)(texts, batch_size=32)
    for i, (row, want) in enumerate(zip(rows, expected)):
        assert_same(row["result"], want, f"row {i}")
    assert not [p for p in out.iterdir() if ".tmp-" in p.name]


def test_cli_batch_usage_and_summary(tiny_bundle, tmp_path, texts, capsys):
    bundle = tiny_bundle("bert", FE)
    source = write_rows([{"text": t} for t in texts[:20]], tmp_path / "in.csv")
    out = tmp_path / "out"
    assert main(["batch", str(bundle), str(source), str(out), "--pooling", "cls", "--no-progress"]) == 0
    assert "20 written, 0 bad" in capsys.readouterr().err
    code = main(["batch", str(bundle), str(source), str(tmp_path / "o2"), "--aggregation-strategy", "first"])
    assert code == 2 and "--aggregation-strategy" in capsys.readouterr().err
    assert main(["batch", str(bundle), str(tmp_path / "none.jsonl"), str(tmp_path / "o3")]) == 1
    assert "no such file" in capsys.readouterr().err


def test_predictor_on_ray_batch_formats(tiny_bundle, texts):
    bundle = tiny_bundle("bert", CLS)
    predictor = Predictor(bundle, {"top_k": 2}, batch_size=4)
    table = pa.table({"id": [1, 2, 3], "text": [texts[0], None, texts[2]]})
    with pytest.raises(InputError, match="row 1 of the batch: 'text' is null"):
        predictor(table)
    skipping = Predictor(bundle, {"top_k": 2}, on_error="skip")
    out = skipping(table)
    assert out.column_names == ["id", "text", "result", "error"]
    assert out.column("error").to_pylist() == [None, "'text' is null", None]
    expected = bertrt.pipeline(None, bundle)([texts[0], texts[2]], top_k=2)
    assert_same([out.column("result")[i].as_py() for i in (0, 2)], expected)
    assert out.column("result")[1].as_py() is None
    numpy_out = predictor({"text": pa.array([texts[0]]).to_numpy(zero_copy_only=False)})
    assert_same(list(numpy_out["result"]), expected[:1])
    pandas = pytest.importorskip("pandas")
    frame = predictor(pandas.DataFrame({"text": [texts[0], texts[2]]}))
    assert_same(list(frame["result"]), expected)


def test_output_folder_guards(tiny_bundle, tmp_path, texts):
    bundle = tiny_bundle("bert", CLS)
    source = write_rows([{"text": t} for t in texts[:10]], tmp_path / "in.jsonl")
    out = tmp_path / "out"
    out.mkdir()
    with sink.lock_output(out):
        with pytest.raises(InputError, match="another bertrt batch run"):
            _run(bundle, source, out)
    (out / "part-00000-000000.parquet").write_bytes(b"stale")
    (out / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="no _bertrt_manifest.json; pass --overwrite"):
        _run(bundle, source, out)
    assert _run(bundle, source, out, overwrite=True).complete
    assert (out / "notes.txt").read_text() == "mine"  # --overwrite removes bertrt's files only
    with pytest.raises(InputError, match="needs ray"):
        _run(bundle, source, out, ship_bundle=True)


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing", r"missing\.jsonl"),
        ("unreadable-csv", r"bad\.csv: line 3 .*never"),
        ("no-text-field", r"bad\.jsonl.*no text field 'text'"),
    ],
)
@pytest.mark.parametrize("existing", [False, True], ids=["new-output", "empty-output"])
def test_an_input_error_writes_nothing(tiny_bundle, tmp_path, texts, case, match, existing):
    """Every input check (files, CSV, the text field; a good file first) passes before OUTPUT is touched."""
    bundle = tiny_bundle("bert", CLS)
    folder = tmp_path / "in"
    write_rows([{"text": t} for t in texts[:10]], folder / "a-good.jsonl")
    if case == "missing":
        source = tmp_path / "missing.jsonl"
    else:
        source = folder
        if case == "unreadable-csv":
            (folder / "bad.csv").write_text('id,text\n1,fine\n2,"opens and never closes\n3,x\n')
        else:
            write_rows([{"body": "a"}], folder / "bad.jsonl")
    out = tmp_path / "out"
    if existing:
        out.mkdir()
    with pytest.raises(InputError, match=match):
        _run(bundle, source, out)
    assert (sorted(out.iterdir()) == []) if existing else not out.exists()


def test_cli_ray_flag_never_takes_input_for_an_address(capsys):
    import argparse

    from bertrt.batch import cli

    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    args = parser.parse_args(["B", "--ray", "in.jsonl", "out"])
    assert (args.input, args.output, cli.ray_target(args)) == ("in.jsonl", "out", True)
    args = parser.parse_args(["B", "in.jsonl", "out", "--ray-address", "ray://head:10001"])
    assert cli.ray_target(args) == "ray://head:10001"
    assert cli.ray_target(parser.parse_args(["B", "in.jsonl", "out"])) is None
    with pytest.raises(SystemExit):  # the address needs its own option: no silent reading as a path
        parser.parse_args(["B", "in.jsonl", "out", "--ray", "auto"])
    assert "unrecognized arguments: auto" in capsys.readouterr().err
