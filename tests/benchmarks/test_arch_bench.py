"""Smoke run of benchmarks/arch_bench.py at the --tiny size (one family), so the benchmark cannot rot.

Checks the texts (one window of <= 128 tokens each, cut at a word boundary), the report files and the
profile's bookkeeping; no speed is asserted (timings on a shared machine are not test material).
"""

from __future__ import annotations

import json

import pytest

from benchmarks import arch_bench


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    cache = tmp_path_factory.mktemp("arch-cache")
    out = tmp_path_factory.mktemp("arch-out")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BERTRT_CACHE", str(cache))
        result = arch_bench.run_arch_bench(
            ["deberta-v2"], out, passes=1, n_texts=4, latency_calls=2, tiny=True, threads=1
        )
    return out, result


def test_texts_fit_one_window_and_end_on_a_word():
    import transformers

    from benchmarks.workloads import _long_texts, minilm_dir

    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    texts, lengths = arch_bench.bench_texts(4, tok)
    originals = _long_texts(4)
    for text, n, original in zip(texts, lengths, originals):
        assert original.startswith(text) and len(text) < len(original)
        assert n == len(tok(text)["input_ids"]) and arch_bench.MAX_TOKENS - 8 <= n <= arch_bench.MAX_TOKENS
        # the cut falls between words: the prefix's pieces are the original's first pieces
        full = tok(original, add_special_tokens=False)["input_ids"]
        assert tok(text, add_special_tokens=False)["input_ids"] == full[: n - 2]


def test_short_texts_cut_at_max_tokens():
    import transformers

    from benchmarks.workloads import minilm_dir

    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir())
    texts, lengths = arch_bench.bench_texts(4, tok, 48)
    assert all(40 <= n <= 48 and n == len(tok(t)["input_ids"]) for t, n in zip(texts, lengths))


@pytest.mark.slow  # exports and times two tiny models
def test_short_run_other_families_and_systems(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTRT_CACHE", str(tmp_path / "cache"))
    systems = ("bertrt-int8", "openvino-bf16", "pytorch")
    arch_bench.run_arch_bench(
        ["mpnet", "bert"],
        tmp_path,
        passes=1,
        n_texts=2,
        latency_calls=1,
        tiny=True,
        threads=1,
        max_tokens=48,
        systems=systems,
    )
    saved = json.loads((tmp_path / "architectures-48.json").read_text(encoding="utf-8"))
    assert saved["texts"]["tokens_max"] <= 48 and saved["systems"] == list(systems)
    for family in ("mpnet", "bert"):
        assert set(saved["families"][family]["systems"]) == set(systems)
    md = (tmp_path / "architectures-48.md").read_text(encoding="utf-8")
    assert "openvino-bf16 / PyTorch" in md and "| mpnet (" in md and "| bert (" in md


@pytest.mark.slow  # exports and times a model: the slow run
def test_report_files_and_profile(tiny_run):
    out, result = tiny_run
    saved = json.loads((out / "architectures.json").read_text(encoding="utf-8"))
    assert saved["tiny"] is True and set(saved["families"]) == {"deberta-v2"}
    entry = saved["families"]["deberta-v2"]
    assert (
        set(entry["systems"]) == set(arch_bench.SYSTEMS) and not entry["unavailable"]
    )  # OpenVINO compiles DeBERTa
    for figures in entry["systems"].values():
        assert figures["texts_per_s"]["median"] > 0 and len(figures["latency_ms"]) == 2
    assert entry["pytorch_attn_implementation"] == "eager"  # DeBERTa-v2 has no sdpa in transformers 4.57
    assert entry["fusion"]["counts"]["Attention"] == 0
    for precision in ("int8", "fp32"):
        prof = entry["profile"][precision]
        assert prof["shape"] == [4, prof["shape"][1]] and prof["node_ms"] <= prof["run_ms"] * 1.05
        assert sum(op["share"] for op in prof["ops"]) == pytest.approx(1.0)
    assert any(
        op["op"].startswith("MatMulInteger") or op["op"] == "DynamicQuantizeMatMul"
        for op in entry["profile"]["int8"]["ops"]
    )
    md = (out / "architectures.md").read_text(encoding="utf-8")
    assert "TINY run" in md and "deberta-v2 int8" in md and "amx_int8" in md
