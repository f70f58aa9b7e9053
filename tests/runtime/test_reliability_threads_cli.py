"""Threads, batch determinism and the CLI's exit codes (issue 5).

fp32 batch-size/order invariance (<= 1e-5) for every task is tests/runtime/test_runtime_batching.py; the CLI's
malformed-JSONL line numbers are tests/cli/test_cli_predict.py. Here: one pipeline shared by 8 threads, the
small CI version of benchmarks/determinism.py, and exit codes 2 (usage) / 1 (runtime) with one line.
"""

from __future__ import annotations

import io
import json
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

import bertrt
from bertrt.cli import main
from tests.corpus import PARITY_TEXTS

TEXTS = PARITY_TEXTS + ["", "Paris", "東京 🍕 Zürich"]


@pytest.mark.parametrize(
    "task, options",
    [
        ("token-classification", {"aggregation_strategy": "first", "stride": 8, "ignore_labels": []}),
        ("text-classification", {"top_k": None}),
    ],
)
def test_one_pipeline_shared_by_8_threads_gives_sequential_results(runtime_bundle, task, options):
    pipe = bertrt.pipeline(task, runtime_bundle("bert", task), precision="fp32", threads=1)
    expected = [pipe(t, **options) for t in TEXTS]
    # each job: a rotated slice with its own batch size, so threads interleave tokenizer and session calls
    jobs = [(k, [TEXTS[(k + i) % len(TEXTS)] for i in range(len(TEXTS))], 1 + k % 4) for k in range(32)]

    def work(job):
        k, texts, batch_size = job
        return k, pipe(texts, batch_size=batch_size, **options)

    with ThreadPoolExecutor(max_workers=8) as pool:
        done = list(pool.map(work, jobs))
    assert len(done) == 32
    for k, results in done:
        for i, result in enumerate(results):
            want = expected[(k + i) % len(TEXTS)]
            assert json.dumps(result, sort_keys=True) == json.dumps(want, sort_keys=True) or _close(
                result, want
            )


def _close(a, b) -> bool:  # batch composition changes float rounding only (<= 1e-5)
    if isinstance(a, dict):
        return list(a) == list(b) and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float):
        return abs(a - b) <= 1e-5
    return a == b


def test_determinism_benchmark_small(runtime_bundle, tmp_path):
    from benchmarks import determinism

    folder = runtime_bundle("bert", "token-classification")
    code = determinism.main(
        [
            "--bundle",
            str(folder),
            "--limit",
            "60",
            "--batch-size",
            "16",
            "--threads",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "determinism.json").read_text())
    assert report["sentences"] == 60 and report["int8"]["model_file"] == "model.int8.onnx"
    for fill in determinism.FILLS:
        fp32 = report["fp32"][fill]
        assert fp32["entity_agreement"] == 1.0 and fp32["sentences_identical"] == 1.0  # masked padding
        assert fp32["entities_batch1"] > 0
        assert 0.9 <= report["int8"][fill]["entity_agreement"] <= 1.0  # tiny random model: near ties
    assert "entity agreement" in (tmp_path / "determinism.md").read_text()


def test_agreement_is_computed_over_entities():
    from benchmarks.determinism import agreement

    a = [[{"start": 0, "end": 5, "entity_group": "PER"}], [{"start": 2, "end": 4, "entity_group": "LOC"}]]
    b = [[{"start": 0, "end": 5, "entity_group": "PER"}], [{"start": 2, "end": 4, "entity_group": "ORG"}]]
    result = agreement(a, b)
    assert result["entity_agreement"] == 0.5 and result["sentences_identical"] == 0.5


# -- CLI exit codes ------------------------------------------------------------------------------------
def _cli(argv, monkeypatch, capsys, stdin=""):
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args",
    [
        ["--batch-size", "0"],
        ["--batch-size", "x"],
        ["--max-tokens-per-batch", "-5"],
        ["--threads", "0"],
        ["--top-k", "0"],
        ["--stride", "-1"],
        ["--aggregation-strategy", "median"],
        ["--no-such-flag"],
        ["--precision", "fp16"],
    ],
)
def test_usage_errors_exit_2_with_one_line(runtime_bundle, monkeypatch, capsys, args):
    folder = runtime_bundle("bert", "token-classification")
    code, out, err = _cli(["predict", str(folder), *args, "Maria"], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert "error:" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["{folder}-missing", "x"], "", "no such folder"),
        (["{folder}", "--stride", "200", "--aggregation-strategy", "first", "x"], "", "stride"),
        (["{folder}", "--max-tokens-per-batch", "8", "x"], "", "too small"),
        (["{folder}", "--jsonl"], '{"text": "ok"}\n{"text": 5}\n', "line 2"),
        (["{folder}"], None, "not valid UTF-8"),
    ],
)
def test_runtime_errors_exit_1_with_one_line_and_no_output(
    runtime_bundle, monkeypatch, capsys, args, stdin, message
):
    folder = str(runtime_bundle("bert", "token-classification"))
    argv = ["predict", *[a.format(folder=folder) for a in args], "--precision", "fp32"]
    if stdin is None:  # bytes that are not UTF-8 on stdin
        monkeypatch.setattr(
            sys, "stdin", io.TextIOWrapper(io.BytesIO(b"ok\n\xff\xfe bad\n"), encoding="utf-8")
        )
        code = main(argv)
        captured = capsys.readouterr()
        out, err = captured.out, captured.err
    else:
        code, out, err = _cli(argv, monkeypatch, capsys, stdin)
    assert code == 1 and out == ""  # no partial JSON line
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_unexpected_errors_exit_1_with_one_line(runtime_bundle, monkeypatch, capsys):
    folder = str(runtime_bundle("bert", "token-classification"))

    def boom(self, batch):
        raise RuntimeError("onnxruntime failed\nwith a second line")

    monkeypatch.setattr(bertrt.pipelines.OnnxSession, "run", boom)
    code, out, err = _cli(["predict", folder, "--precision", "fp32", "a", "b"], monkeypatch, capsys)
    assert code == 1 and out == "" and "Traceback" not in err
    assert err.strip() == "bertrt predict: error: RuntimeError: onnxruntime failed with a second line"
