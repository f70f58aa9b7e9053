"""The backend registry: a toy backend (tests/toy_backend.py, registered here with one ``register_backend``
call) shows up in ``bertrt predict``, ``bertrt batch``, ``bertrt tune`` and ``bertrt serve`` by itself."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

import bertrt
from bertrt import backends, cli_predict, tune
from bertrt.batch import cli as batch_cli
from bertrt.cli import main
from bertrt.errors import BackendError, InputError
from tests.corpus import TRAIN_TEXT
from tests.toy_backend import ToySession

TEXTS = list(TRAIN_TEXT)[:6]


@pytest.fixture
def toy():
    backends.register_backend("toy", "tests.toy_backend")
    try:
        yield backends.get_backend("toy")
    finally:
        backends.unregister_backend("toy")
    assert "toy" not in backends.BACKENDS


def _choices(add_arguments, dest: str) -> tuple:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return tuple(next(a for a in parser._actions if a.dest == dest).choices)


def test_builtin_backends_declare_themselves():
    assert list(backends.BACKENDS) == ["onnxruntime", "openvino"]
    for backend in backends.BACKENDS.values():
        assert set(backend.precisions) <= set(backends.PRECISIONS)
    with pytest.raises(InputError, match="built-in backend"):
        backends.unregister_backend("onnxruntime")
    with pytest.raises(InputError, match="already taken"):
        backends.register_backend("openvino", "tests.toy_backend")
    with pytest.raises(InputError, match="must define BACKEND, a bertrt.backends.Backend named 'other'"):
        backends.register_backend("other", "tests.toy_backend")


def test_toy_backend_is_in_every_commands_choices(toy):
    from bertrt.serve.cli import add_arguments as serve_arguments

    for add_arguments in (cli_predict.add_arguments, batch_cli.add_arguments, serve_arguments):
        assert "toy" in _choices(add_arguments, "backend")
    assert "toy" in _choices(tune.add_arguments, "backends")
    assert "onnxruntime" in tune._versions()


def test_toy_backend_runs_the_pipeline(toy, runtime_bundle):
    folder = runtime_bundle("bert", "token-classification")
    pipe = bertrt.pipeline("ner", folder, backend="toy", precision="fp32")
    assert isinstance(pipe.session, ToySession) and isinstance(pipe.session, backends.Session)
    assert (pipe.backend, pipe.precision, pipe.bundle.model_file) == ("toy", "fp32", "model.onnx")
    reference = bertrt.pipeline("ner", folder, backend="onnxruntime", precision="fp32")
    assert isinstance(reference.session, backends.Session)  # the built-in sessions declare the same interface
    before = ToySession.runs
    assert pipe(TEXTS) == reference(TEXTS)
    assert ToySession.runs > before
    with pytest.raises(BackendError, match="backend 'toy' does not run precision 'int8'.*it runs fp32"):
        bertrt.pipeline("ner", folder, backend="toy", precision="int8")
    with pytest.raises(InputError, match="providers"):
        bertrt.pipeline("ner", folder, backend="toy", precision="fp32", providers="cpu")


def test_toy_backend_through_bertrt_predict(toy, runtime_bundle, capsys):
    folder = runtime_bundle("bert", "text-classification")
    args = ["predict", str(folder), "--precision", "fp32", *TEXTS[:2]]
    assert main([*args, "--backend", "onnxruntime"]) == 0
    expected = capsys.readouterr().out
    before = ToySession.runs
    assert main([*args, "--backend", "toy"]) == 0
    assert capsys.readouterr().out == expected and ToySession.runs > before


def test_toy_backend_through_bertrt_tune(toy, runtime_bundle, tmp_path, capsys):
    folder = runtime_bundle("bert", "text-classification")
    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    argv = ["tune", str(folder), "--texts", str(texts), "--backends", "toy", "--repeats", "1", "--no-write"]
    assert main([*argv, "--report"]) == 0
    out = capsys.readouterr().out
    assert "| toy | fp32 |" in out and "Winner: toy fp32" in out
    entry = tune.tune(folder, texts=TEXTS, backend_names=["toy"], repeats=1, write=False)
    assert [(c["backend"], c["precision"], c["passed"]) for c in entry["candidates"]] == [
        ("toy", "fp32", True)
    ]
    assert json.dumps(entry)  # tuning.json holds it as any other backend


def test_a_tuned_toy_winner_is_what_auto_runs(toy, runtime_bundle, tmp_path):
    import shutil

    folder = shutil.copytree(runtime_bundle("bert", "text-classification"), tmp_path / "cls")
    tune.tune(folder, texts=TEXTS, backend_names=["toy"], batch_sizes=(4,), repeats=1)
    pipe = bertrt.pipeline(None, folder)
    assert (pipe.backend, pipe.precision, pipe.plan.source, pipe.batch_size) == ("toy", "fp32", "tuned", 4)
    assert np.isfinite(pipe(TEXTS[0])[0]["score"])


def test_toy_backend_through_bertrt_batch(toy, runtime_bundle, tmp_path):
    pytest.importorskip("pyarrow")
    folder = runtime_bundle("bert", "text-classification")
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")
    before = ToySession.runs
    argv = [
        "batch",
        str(folder),
        str(source),
        str(tmp_path / "out"),
        "--backend",
        "toy",
        "--precision",
        "fp32",
    ]
    assert main([*argv, "--workers", "1", "--output-format", "jsonl", "--no-progress"]) == 0
    manifest = json.loads((tmp_path / "out" / "_bertrt_manifest.json").read_text())
    assert (manifest["job"]["backend"], manifest["job"]["model_file"]) == ("toy", "model.onnx")
    assert manifest["rows"]["written"] == len(TEXTS) and ToySession.runs > before
