"""Smoke run of benchmarks/mpnet_speed.py at arch_bench's --tiny size: the ``before`` bundle really runs the
unfused attention and the ``after`` one MultiHeadAttention, and the CPU-time A/B runs. No speed asserted."""

from __future__ import annotations

import json

import pytest

from benchmarks import mpnet_speed


def test_before_and_after_bundles_differ_in_attention_only(tmp_path, monkeypatch, capsys):
    pytest.importorskip("transformers")
    monkeypatch.setenv("BERTRT_CACHE", str(tmp_path))
    checkpoint, folders = mpnet_speed.prepare(tiny=True)
    fusion = {k: json.loads((f / "bundle.json").read_text())["fusion"] for k, f in folders.items()}
    assert fusion["before"]["attention_bias_fused"] == fusion["before"]["counts"]["MultiHeadAttention"] == 0
    assert fusion["after"]["attention_bias_fused"] == fusion["after"]["attention_fused"] == 2
    assert fusion["before"]["counts"]["BiasGelu"] == fusion["after"]["counts"]["BiasGelu"]
    vocab = json.loads((checkpoint / "config.json").read_text())["vocab_size"]
    mpnet_speed.cpu_time(folders, [8], 1, vocab)
    table = capsys.readouterr().out
    assert "| 8 | 8 |" in table and "| 8 | 1 |" in table
    mpnet_speed.run_tables(checkpoint, folders, "8", 1, 1, vocab)
    mpnet_speed.print_profiles(folders, "8", vocab)
    out = capsys.readouterr().out
    assert "| int8 before |" in out and "| int8 after |" in out and "| pytorch fp32 |" in out
    assert "profile int8 before" in out and "profile int8 after" in out
