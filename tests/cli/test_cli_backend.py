"""``--backend`` / ``--precision`` on ``bertrt predict`` and ``bertrt serve``: the same choices as the API."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import bertrt
from bertrt.backends import BACKENDS, PRECISIONS, has_bf16
from bertrt.cli import main
from bertrt.serve.cli import add_arguments as serve_arguments


def _predict(argv, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", None)
    code = main(["predict", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_predict_openvino_fp32_equals_onnxruntime_fp32(runtime_bundle, monkeypatch, capsys):
    folder = str(runtime_bundle("bert", "feature-extraction"))
    texts = ["Maria loves Groningen.", "Paris"]
    rows = {}
    for backend in ("onnxruntime", "openvino"):
        code, out, err = _predict(
            [folder, *texts, "--backend", backend, "--precision", "fp32", "--pooling", "mean"],
            monkeypatch,
            capsys,
        )
        assert code == 0, err
        rows[backend] = [json.loads(line)["result"] for line in out.splitlines()]
    assert len(rows["openvino"]) == 2
    np.testing.assert_allclose(np.array(rows["openvino"]), np.array(rows["onnxruntime"]), atol=1e-4)
    direct = bertrt.pipeline(None, folder, precision="fp32", backend="onnxruntime")(texts, pooling="mean")
    np.testing.assert_allclose(np.array(rows["onnxruntime"]), np.array(direct), atol=1e-6)


def test_predict_bf16_on_onnxruntime_is_a_typed_error(runtime_bundle, monkeypatch, capsys):
    folder = str(runtime_bundle("bert", "text-classification"))
    code, out, err = _predict(
        [folder, "hello", "--backend", "onnxruntime", "--precision", "bf16"], monkeypatch, capsys
    )
    assert code == 1 and out == ""
    last = err.strip().splitlines()[-1]  # the CLI's one error line
    assert last.startswith("bertrt predict: error:") and "bf16" in last and "onnxruntime" in last


def test_predict_bf16_on_openvino_follows_the_cpu(runtime_bundle, monkeypatch, capsys):
    folder = str(runtime_bundle("bert", "text-classification"))
    code, out, err = _predict(
        [folder, "hello", "--backend", "openvino", "--precision", "bf16"], monkeypatch, capsys
    )
    if has_bf16():
        assert code == 0, err
        assert json.loads(out)["result"]["label"] in {"negative", "neutral", "positive"}
    else:
        assert code == 1 and "bf16" in err


def test_unknown_backend_is_a_usage_error(runtime_bundle, monkeypatch, capsys):
    with pytest.raises(SystemExit) as info:
        main(["predict", str(runtime_bundle("bert", "text-classification")), "x", "--backend", "tensorflow"])
    assert info.value.code == 2
    assert "--backend" in capsys.readouterr().err


def test_serve_takes_the_same_backend_choices():
    import argparse

    parser = argparse.ArgumentParser()
    serve_arguments(parser)
    args = parser.parse_args(["b", "--backend", "openvino", "--precision", "bf16"])
    assert (args.backend, args.precision) == ("openvino", "bf16")
    defaults = parser.parse_args(["b"])
    assert (defaults.backend, defaults.precision) == ("auto", None)  # auto: the tuned winner, else int8
    choices = {a.dest: a.choices for a in parser._actions if a.dest in ("backend", "precision")}
    assert tuple(choices["backend"]) == ("auto", *BACKENDS) and tuple(choices["precision"]) == PRECISIONS
