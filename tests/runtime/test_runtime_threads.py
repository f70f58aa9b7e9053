"""One pipeline shared by threads, and the small CI version of benchmarks/determinism.py.

fp32 batch-size/order invariance (<= 1e-5) for every task is tests/runtime/test_runtime_batching.py; the
CLI's exit codes are tests/cli/test_cli_predict.py.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

import bertrt
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
