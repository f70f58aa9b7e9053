"""The tuned batch size (``bertrt tune``'s candidate, in tuning.json) as the default of pipeline calls,
``bertrt predict``, ``bertrt batch`` and ``bertrt serve``'s settings: only on a matching CPU key with the
auto backend; an explicit value always wins; otherwise the static default."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys

import pytest

import bertrt
import bertrt.batch
from bertrt import backends, cpu
from bertrt import pipelines as pipelines_module
from bertrt.batching import run_batched
from bertrt.cli import main
from bertrt.serve import cli as serve_cli
from bertrt.serve.settings import ServeSettings
from tests.corpus import TRAIN_TEXT

from .test_tune import _write_tuning

TEXTS = [f"{text} ({i})" for i, text in enumerate(list(TRAIN_TEXT) * 3)][:40]
TUNED = 4  # below every static default (32; serve's pipeline batch size 8), above 1
assert len(TEXTS) > backends.DEFAULT_BATCH_SIZE
STATIC = backends.DEFAULT_BATCH_SIZE
OTHER_CPU = "Other CPU | avx2 | 2 cores"


def _choice(batch_size: int) -> dict:
    return {"backend": "onnxruntime", "precision": "int8", "threads": 1, "batch_size": batch_size,
            "texts_per_s": 1.0}  # fmt: skip


@pytest.fixture
def tuned_folder(runtime_bundle, tmp_path):
    """A private copy of the tiny NER bundle with a tuning.json entry for this CPU: batch size TUNED."""
    folder = shutil.copytree(runtime_bundle("bert", "token-classification"), tmp_path / "ner")
    _write_tuning(folder, backends.cpu_key(), _choice(TUNED), {"int8": _choice(TUNED)})
    return folder


@pytest.fixture
def session_batches(monkeypatch):
    """Rows of every session run the pipelines make (the batch sizes that reach the model)."""
    rows: list[int] = []

    def spy(items, forward, *args, **kwargs):
        def counted(batch):
            rows.append(len(batch["input_ids"]))
            return forward(batch)

        return run_batched(items, counted, *args, **kwargs)

    monkeypatch.setattr(pipelines_module, "run_batched", spy)
    return rows


def test_pipeline_default_follows_the_tuning_entry(tuned_folder, session_batches, monkeypatch, caplog):
    with caplog.at_level(logging.INFO, logger="bertrt"):
        pipe = bertrt.pipeline("ner", tuned_folder)
    assert (pipe.plan.source, pipe.plan.batch_size) == ("tuned", TUNED)
    assert (pipe.batch_size, pipe.batch_size_source) == (TUNED, "tuned")
    assert f"default batch size {TUNED} (tuned)" in caplog.text
    pipe(TEXTS)
    assert max(session_batches) == TUNED and sum(session_batches) >= len(TEXTS)
    session_batches.clear()
    pipe(TEXTS, batch_size=16)  # an explicit value wins
    assert max(session_batches) == 16
    # by_precision's candidate at a given precision; an explicit backend never reads tuning.json
    assert bertrt.pipeline("ner", tuned_folder, precision="int8").batch_size == TUNED
    explicit = bertrt.pipeline("ner", tuned_folder, backend="onnxruntime")
    assert (explicit.batch_size, explicit.batch_size_source) == (STATIC, "static")
    # a tuned entry without a usable batch size: the static default
    _write_tuning(tuned_folder, backends.cpu_key(), _choice(0))
    assert bertrt.pipeline("ner", tuned_folder).batch_size_source == "static"
    # another CPU key: the static default
    _write_tuning(tuned_folder, backends.cpu_key(), _choice(TUNED))
    monkeypatch.setattr(cpu, "cpu_key", lambda info=None: OTHER_CPU)
    static = bertrt.pipeline("ner", tuned_folder)
    assert (static.plan.source, static.batch_size, static.batch_size_source) == ("static", STATIC, "static")
    session_batches.clear()
    static(TEXTS)
    assert max(session_batches) == STATIC


def _predict(argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", None)
    code = main(["predict", *argv])
    out = capsys.readouterr()
    assert code == 0, out.err
    return [json.loads(line) for line in out.out.splitlines()]


def test_predict_default_batch_size(tuned_folder, session_batches, monkeypatch, capsys):
    rows = _predict([str(tuned_folder), *TEXTS], monkeypatch, capsys)
    assert len(rows) == len(TEXTS) and max(session_batches) == TUNED
    session_batches.clear()
    _predict([str(tuned_folder), *TEXTS, "--batch-size", "16"], monkeypatch, capsys)
    assert max(session_batches) == 16
    session_batches.clear()
    monkeypatch.setattr(cpu, "cpu_key", lambda info=None: OTHER_CPU)
    _predict([str(tuned_folder), *TEXTS], monkeypatch, capsys)
    assert max(session_batches) == STATIC


def test_batch_default_batch_size(tuned_folder, session_batches, tmp_path, monkeypatch):
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS), encoding="utf-8")

    def run(out, **kwargs):
        return bertrt.batch.run(tuned_folder, source, tmp_path / out, workers=1, progress=False, **kwargs)

    def recorded(out):
        return json.loads((tmp_path / out / bertrt.batch.sink.MANIFEST).read_text())["runs"][-1]

    summary = run("tuned")
    assert (summary.batch_size, summary.batch_size_source) == (TUNED, "tuned")
    assert (recorded("tuned")["batch_size"], recorded("tuned")["batch_size_source"]) == (TUNED, "tuned")
    assert max(session_batches) == TUNED
    session_batches.clear()
    assert run("explicit", batch_size=16).batch_size_source == "explicit" and max(session_batches) == 16
    session_batches.clear()
    monkeypatch.setattr(cpu, "cpu_key", lambda info=None: OTHER_CPU)
    static = run("static")
    assert (static.batch_size, static.batch_size_source) == (STATIC, "static")
    assert max(session_batches) == STATIC


def _serve_args(*argv, bundle="model"):
    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    return parser.parse_args([str(bundle), *argv])


def test_serve_settings_default_batch_size(tuned_folder, tmp_path, monkeypatch):
    defaults = ServeSettings()
    models = {"ner": bertrt.pipeline(None, tuned_folder, precision="int8")}
    tuned = serve_cli.settings_from_args(_serve_args(), models)
    assert (tuned.pipeline_batch_size, tuned.max_batch_size) == (TUNED, defaults.max_batch_size)
    given = serve_cli.settings_from_args(_serve_args("--pipeline-batch-size", "5"), models)
    assert given.pipeline_batch_size == 5  # an explicit value wins
    # a tuned size above max_batch_size raises it, unless --max-batch-size was given
    _write_tuning(tuned_folder, backends.cpu_key(), _choice(64), {"int8": _choice(64)})
    models = {"ner": bertrt.pipeline(None, tuned_folder, precision="int8")}
    assert serve_cli.settings_from_args(_serve_args(), models).max_batch_size == 64
    capped = serve_cli.settings_from_args(_serve_args("--max-batch-size", "16"), models)
    assert (capped.pipeline_batch_size, capped.max_batch_size) == (64, 16)
    # models whose tuned sizes differ (one set of settings for all): the defaults
    plain = shutil.copytree(tuned_folder, tmp_path / "plain")
    (plain / backends.TUNING_FILE).unlink()
    mixed = {**models, "plain": bertrt.pipeline(None, plain, precision="int8")}
    assert serve_cli.settings_from_args(_serve_args(), mixed) == defaults
    # another CPU key: the defaults
    monkeypatch.setattr(cpu, "cpu_key", lambda info=None: OTHER_CPU)
    models = {"ner": bertrt.pipeline(None, tuned_folder, precision="int8")}
    assert serve_cli.settings_from_args(_serve_args(), models) == defaults


def test_serve_command_hands_the_tuned_settings_to_the_app(tuned_folder, monkeypatch):
    seen = {}

    class Stop(Exception):
        pass

    def create_app(pipelines, settings, api_key=None):
        seen["settings"] = settings
        raise Stop

    monkeypatch.setattr(serve_cli, "create_app", create_app)
    with pytest.raises(Stop):
        serve_cli.run(_serve_args(bundle=tuned_folder))
    assert seen["settings"].pipeline_batch_size == TUNED
