"""benchmarks.int8_recipe (the exporter's recipes and onnxruntime's settings, one study) without its data:
variants built from a tiny bundle's graph run in bertrt, and the decision rule applied to figures."""

from __future__ import annotations

import pytest

from benchmarks import int8_recipe

TEXTS = ["Maria moved to Groningen.", "ok", "The museum in Amsterdam has paintings."]


def test_variants_of_both_families_build_and_run(tiny_bundle, tmp_path, monkeypatch):
    import bertrt

    monkeypatch.setenv("BERTRT_CACHE", str(tmp_path))
    bundle = tiny_bundle("bert", "text-classification")
    chosen = ("per-token", "dynamic, u8 weights", "dynamic, MatMul only")
    built = int8_recipe.build_variants("tiny", bundle, "text-classification", chosen)
    assert list(built) == ["fp32", *chosen]
    assert built["per-token"][1]["recipe"] == "per-token"
    assert built["dynamic, u8 weights"][1]["settings"]["weight"] == "u8"
    for path, _, _ in built.values():
        pipe = bertrt.pipeline(
            "text-classification", str(bundle), model_file=str(path), threads=1, verify=False
        )
        assert len(pipe(TEXTS, batch_size=2)) == len(TEXTS)
    again = int8_recipe.build_variants("tiny", bundle, "text-classification", chosen)
    assert {k: v[0] for k, v in again.items()} == {k: v[0] for k, v in built.items()}  # cached


def _row(agreement: float, figure: float, speed: float) -> dict:
    compared = {"agreement_pct": agreement, "max_score_diff": 0.0}
    return {
        "b1_vs_b32": compared,
        "vs_fp32": compared,
        "bytes": 1000,
        "test": {"figure": figure},
        "texts_s_b32_t1": [speed, speed * 0.95, speed * 1.05],
    }


def test_choose_gates_on_batch_agreement_then_accuracy_then_speed():
    variants = {
        "fp32": _row(100.0, 50.0, 100.0),
        "per-token": _row(100.0, 49.5, 150.0),
        "dynamic": _row(93.0, 49.9, 200.0),  # fastest, but batch dependent
        "dynamic, MatMul only": _row(100.0, 47.0, 180.0),  # 3 points below fp32
        "per-token+fp32-attention": _row(100.0, 50.0, 160.0),
    }
    decision = int8_recipe.choose({"models": {"ner": {"variants": variants}}})
    verdicts = decision["verdicts"]
    assert decision["chosen"] == "per-token+fp32-attention"
    assert not verdicts["dynamic"]["passes"] and "agreement" in verdicts["dynamic"]["why_not"][0]
    assert (
        not verdicts["dynamic, MatMul only"]["passes"]
        and "below fp32" in verdicts["dynamic, MatMul only"]["why_not"][0]
    )
    assert verdicts["per-token+fp32-attention"]["speed_vs_fp32"] == pytest.approx(1.6)
    assert verdicts["dynamic"]["beyond_spread"] and not verdicts["per-token"]["beyond_spread"]
    assert "## Decision" in int8_recipe.render(
        {
            "command": "x",
            "models": {
                "ner": {
                    "variants": variants,
                    "task": "t",
                    "bundle": "b",
                    "determinism_texts": 1,
                    "speed_texts": 1,
                    "repeats": 1,
                    "threads": [1],
                }
            },
            "decision": decision,
        }
    )
