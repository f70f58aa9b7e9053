"""``bertrt predict``: texts from arguments, stdin lines or JSONL; one JSON result per line."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bertrt.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _run(argv, stdin_text="", monkeypatch=None, capsys=None):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin_text))
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_predict_texts_from_arguments(runtime_bundle, monkeypatch, capsys):
    import bertrt

    folder = runtime_bundle("bert", "text-classification")
    code, out, _ = _run(
        ["predict", str(folder), "--precision", "fp32", "Maria loves Groningen.", "Paris"],
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    expected = bertrt.pipeline(None, folder, precision="fp32")(["Maria loves Groningen.", "Paris"])
    assert [line["text"] for line in lines] == ["Maria loves Groningen.", "Paris"]
    assert [line["result"]["label"] for line in lines] == [e["label"] for e in expected]
    assert all(abs(line["result"]["score"] - e["score"]) < 1e-6 for line, e in zip(lines, expected))


def test_predict_stdin_lines_with_task_options(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "token-classification")
    code, out, _ = _run(
        [
            "predict",
            str(folder),
            "--precision",
            "fp32",
            "--aggregation-strategy",
            "first",
            "--stride",
            "4",
            "--ignore-labels",
        ],
        "Maria loves Groningen.\nJohn Smith\n",
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["text"] for line in lines] == ["Maria loves Groningen.", "John Smith"]
    assert lines[1]["result"] and all("entity_group" in e for e in lines[1]["result"])  # nothing ignored


def test_predict_jsonl_passes_fields_through(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "fill-mask")
    # (a blank line between them is malformed since issue 14: tests/cli/test_reliability_cli.py)
    stdin = '{"id": 7, "text": "Maria [MASK] Groningen."}\n{"text": "a [MASK]", "tag": ["x"]}\n'
    code, out, _ = _run(
        ["predict", str(folder), "--precision", "fp32", "--jsonl", "--top-k", "2"],
        stdin,
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines[0]["id"] == 7 and lines[1]["tag"] == ["x"] and "text" not in lines[0]
    assert [len(line["result"]) for line in lines] == [2, 2]


def test_predict_feature_extraction_vectors(runtime_bundle, monkeypatch, capsys):
    folder = runtime_bundle("bert", "feature-extraction")
    code, out, _ = _run(
        ["predict", str(folder), "--precision", "fp32", "--pooling", "mean", "--normalize", "hi"],
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 0
    vector = json.loads(out)["result"]
    assert len(vector) == 32 and abs(sum(v * v for v in vector) - 1) < 1e-4


@pytest.mark.parametrize(
    "stdin, line",
    [
        ('{"text": "ok"}\n{"text": "ok"\n', 2),
        ('{"text": "ok"}\n\n[1, 2]\n', 3),
        ('{"txt": "missing"}\n', 1),
    ],
)
def test_malformed_jsonl_names_the_line(runtime_bundle, stdin, line, monkeypatch, capsys):
    folder = runtime_bundle("bert", "text-classification")
    code, out, err = _run(
        ["predict", str(folder), "--precision", "fp32", "--jsonl"],
        stdin,
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert code == 1
    assert out == ""  # nothing partial on stdout
    assert f"line {line}" in err and len(err.strip().splitlines()) == 1


def test_predict_errors_exit_codes(optimum_folder, monkeypatch, capsys):
    folder = optimum_folder("bert", "text-classification")
    code, out, err = _run(
        ["predict", str(folder), "x"], monkeypatch=monkeypatch, capsys=capsys
    )  # no int8 file
    assert code == 1 and out == "" and "ONNX files present: model.onnx" in err
    with pytest.raises(SystemExit) as info:
        main(["predict", str(folder), "--precision", "fp16", "x"])
    assert info.value.code == 2


def test_console_script_subprocess(runtime_bundle):
    folder = runtime_bundle("bert", "text-classification")
    proc = subprocess.run(
        [sys.executable, "-m", "bertrt.cli", "predict", str(folder), "--precision", "fp32", "--top-k", "all"],
        check=False,
        input="hello\n",
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["result"]) == 3
