"""``bertrt batch --backend / --precision``: the rows equal ``pipeline(..., backend="openvino")``'s, every
worker (driver, local process, Ray actor) runs the driver's backend at its own threads, and a backend or
precision that cannot run fails with its typed error before OUTPUT is touched."""

from __future__ import annotations

import argparse
import json
import shutil
import sys

import pytest

import bertrt
import bertrt.batch
from bertrt import backends, cpu
from bertrt.batch import cli as batch_cli
from bertrt.batch import sink
from bertrt.batch.runner import Job, ShardRunner
from bertrt.bundle import load_bundle
from bertrt.cli import main
from bertrt.cli_predict import add_arguments as predict_arguments
from bertrt.errors import BackendError, InputError

from .data import assert_same, make_texts, read_output, write_rows

NER = "token-classification"
FE = "feature-extraction"
#: openvino fp32, batch run vs one direct call at the same batch size: chunks (16 batches) are sorted by
#: length on their own, so batches pad differently, and workers may run other thread counts; measured on the
#: tiny bundles (60 texts, scores and mean-pooled vectors): max |difference| 1.2e-7
ATOL = 1e-5
CASES = [
    (NER, {"aggregation_strategy": "first"}, ["--aggregation-strategy", "first"]),
    (FE, {"pooling": "mean"}, ["--pooling", "mean"]),
]


@pytest.fixture(scope="module")
def texts():
    return make_texts(60)


def _source(tmp_path, texts):
    return write_rows([{"id": i, "text": t} for i, t in enumerate(texts)], tmp_path / "in.jsonl")


def _check_rows(out, bundle, texts, options, atol=ATOL):
    rows = read_output(out)
    assert [r["text"] for r in rows] == texts
    expected = bertrt.pipeline(None, bundle, precision="fp32", backend="openvino")(
        texts, batch_size=8, **options
    )
    for i, (row, want) in enumerate(zip(rows, expected)):
        assert_same(row["result"], want, f"row {i}", atol=atol)


@pytest.mark.parametrize(("task", "options", "flags"), CASES, ids=["ner", "embeddings"])
def test_cli_openvino_gives_the_openvino_pipeline_rows(
    tiny_bundle, tmp_path, texts, capsys, task, options, flags
):
    bundle = tiny_bundle("bert", task)
    out = tmp_path / "out"
    argv = ["batch", str(bundle), str(_source(tmp_path, texts)), str(out), "--backend", "openvino",
            "--precision", "fp32", "--batch-size", "8", "--shard-size", "25", "--workers", "1",
            "--no-progress", *flags]  # fmt: skip
    assert main(argv) == 0
    assert "openvino fp32, batch 8 (explicit)" in capsys.readouterr().err  # the summary line
    _check_rows(out, bundle, texts, options)
    manifest = json.loads((out / sink.MANIFEST).read_text())
    job = manifest["job"]
    read = bertrt.pipeline(None, bundle, precision="fp32", backend="openvino").bundle.model_path.name
    assert (job["backend"], job["precision"], job["model_file"]) == ("openvino", "fp32", read)
    records = manifest["shards"]["done"].values()
    assert len(records) == 3 and all(r["backend"] == "openvino" for r in records)
    # the same output folder with another backend is a different job
    with pytest.raises(InputError, match="backend: 'openvino' -> 'onnxruntime'"):
        bertrt.batch.run(bundle, out.parent / "in.jsonl", out, backend="onnxruntime", precision="fp32",
                         task_options=options, shard_size=25, progress=False)  # fmt: skip


def test_workers_run_the_drivers_backend_at_their_own_threads(tiny_bundle, tmp_path, texts):
    """Two spawned workers, one thread each, although tuning.json's openvino winner says 2 threads."""
    bundle = shutil.copytree(tiny_bundle("bert", NER), tmp_path / "ner")
    winner = {"backend": "openvino", "precision": "fp32", "threads": 2, "batch_size": 8, "texts_per_s": 1.0}
    entry = {"key": backends.cpu_key(), "winner": winner, "by_precision": {"fp32": winner}}
    (bundle / backends.TUNING_FILE).write_text(json.dumps({"machines": {backends.cpu_key(): entry}}))
    options = {"aggregation_strategy": "first"}
    out = tmp_path / "out"
    summary = bertrt.batch.run(bundle, _source(tmp_path, texts), out, precision="fp32", workers=2, threads=1,
                               shard_size=15, task_options=options, progress=False)  # fmt: skip
    assert summary.complete and (summary.workers, summary.threads) == (2, 1)
    assert (summary.backend, summary.precision, summary.batch_size) == ("openvino", "fp32", 8)
    manifest = json.loads((out / sink.MANIFEST).read_text())
    records = list(manifest["shards"]["done"].values())
    assert len(records) == 4 and len({r["worker"] for r in records}) == 2
    assert {(r["backend"], r["precision"], r["threads"]) for r in records} == {("openvino", "fp32", 1)}
    _check_rows(out, bundle, texts, options)


def test_shard_runner_and_ray_actor_compile_openvino_at_the_given_threads(tiny_bundle, tmp_path):
    import bertrt.ray

    bundle = tiny_bundle("bert", NER)
    job = Job(bundle=str(bundle), task=None, task_options={}, output=str(tmp_path), inputs=[],
              plan=backends.plan(bundle, "openvino", "fp32"), model_file="model.onnx")  # fmt: skip
    for runner in (ShardRunner(job, threads=1), bertrt.ray._ShardPredictor(job, threads=1).runner):
        pipe = runner.predictor.pipe
        assert (pipe.backend, pipe.precision, pipe.session.threads) == ("openvino", "fp32", 1)
        assert int(pipe.session._compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    # the file ship_bundle loads is the one the job's backend reads (openvino int8: not model.int8.onnx)
    for backend, precision, name in (
        ("openvino", "fp32", "model.onnx"),
        ("openvino", "int8", "model.onnx"),
        ("onnxruntime", "int8", "model.int8.onnx"),
    ):
        the_plan = backends.plan(bundle, backend, precision)
        assert the_plan.load_bundle(bundle).model_file == name
        assert load_bundle(bundle, precision, backend=backend).model_file == name


@pytest.mark.slow  # starts Ray: the slow run (test_batch_ray.py keeps one Ray run in the default run)
def test_ray_actors_run_openvino_from_the_object_store(tiny_bundle, tmp_path, texts):
    import ray

    bundle = tiny_bundle("bert", NER)
    options = {"aggregation_strategy": "first"}
    out = tmp_path / "ray"
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        ray.data.DataContext.get_current().enable_progress_bars = False
        summary = bertrt.batch.run(bundle, _source(tmp_path, texts), out, backend="openvino",
                                   precision="fp32", batch_size=8, shard_size=30, ray=True, workers=2,
                                   ship_bundle=True, task_options=options, progress=False)  # fmt: skip
    finally:
        ray.shutdown()
    assert summary.complete and (summary.mode, summary.backend) == ("ray", "openvino")
    records = json.loads((out / sink.MANIFEST).read_text())["shards"]["done"].values()
    assert {(r["backend"], r["threads"]) for r in records} == {("openvino", 1)}
    _check_rows(out, bundle, texts, options)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"backend": "onnxruntime", "precision": "bf16"}, BackendError, "does not run precision 'bf16'"),
        ({"backend": "tensorflow"}, InputError, "unknown backend 'tensorflow'"),
        (
            {"backend": "openvino", "precision": "fp32", "workers": 2},
            BackendError,
            "needs the openvino package",
        ),
        ({"backend": "openvino", "precision": "bf16"}, BackendError, "bf16 instructions"),
    ],
    ids=["bf16-onnxruntime", "unknown-backend", "openvino-missing", "cpu-without-bf16"],
)
def test_a_backend_that_cannot_run_fails_before_any_output(
    tiny_bundle, tmp_path, texts, monkeypatch, kwargs, error, match
):
    if "openvino package" in match:
        monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: import fails
    if "instructions" in match:
        monkeypatch.setattr(cpu, "_cpuinfo", lambda: ("Test CPU", {"avx2", "avx512f", "avx512_vnni"}))
    source = _source(tmp_path, texts)
    out = tmp_path / "out"
    with pytest.raises(error, match=match):
        bertrt.batch.run(tiny_bundle("bert", NER), source, out, progress=False, **kwargs)
    assert not out.exists()


def test_cli_bad_precision_is_one_error_line_and_no_output(tiny_bundle, tmp_path, texts, capsys):
    out = tmp_path / "out"
    argv = ["batch", str(tiny_bundle("bert", NER)), str(_source(tmp_path, texts)), str(out),
            "--backend", "onnxruntime", "--precision", "bf16", "--workers", "2"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("bertrt batch: error:") and "bf16" in err[-1] and "onnxruntime" in err[-1]
    assert not out.exists()


def test_cli_flags_parse_as_predicts():
    parser = argparse.ArgumentParser()
    batch_cli.add_arguments(parser)
    args = parser.parse_args(["b", "in.jsonl", "out", "--backend", "openvino", "--precision", "bf16"])
    assert (args.backend, args.precision) == ("openvino", "bf16")
    defaults = parser.parse_args(["b", "in.jsonl", "out"])
    assert (defaults.backend, defaults.precision, defaults.batch_size) == ("auto", None, None)
    predict = argparse.ArgumentParser()
    predict_arguments(predict)

    def choices(p):
        return {a.dest: tuple(a.choices) for a in p._actions if a.dest in ("backend", "precision")}

    assert (
        choices(parser)
        == choices(predict)
        == {
            "backend": ("auto", *backends.BACKENDS),
            "precision": backends.PRECISIONS,
        }
    )
    for bad in (["--backend", "tensorflow"], ["--precision", "fp8"], ["--batch-size", "0"]):
        with pytest.raises(SystemExit) as info:
            parser.parse_args(["b", "in.jsonl", "out", *bad])
        assert info.value.code == 2
