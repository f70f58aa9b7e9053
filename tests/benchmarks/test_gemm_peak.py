"""benchmarks/gemm_peak.py: the encoder op count (against a hand count and the graph's own weights), the
micro-benchmark on tiny sizes, the saved-peak loader and the report's "fraction of measured GEMM peak"."""

from __future__ import annotations

import json

import pytest

from benchmarks import gemm_peak, hardware, report

TINY = {"hidden_size": 4, "num_hidden_layers": 2, "intermediate_size": 8, "num_attention_heads": 2}


def test_encoder_ops_matches_a_hand_count():
    # L=3, H=4, I=8, 2 layers. Per layer, multiply-adds: Q, K, V projections 3*(3*4*4)=144, attention
    # output 3*4*4=48, FFN up 3*4*8=96 and down 96, scores 2 heads * 3*3*2 = 18*2 = 36, context 36.
    per_layer_macs = 144 + 48 + 96 + 96 + 36 + 36
    encoder = 2 * 2 * per_layer_macs  # 2 layers, 2 ops per multiply-add
    assert encoder == 1824
    assert gemm_peak.encoder_ops(TINY, 3) == encoder
    assert gemm_peak.encoder_ops(TINY, 3, "feature-extraction") == encoder
    labels = {**TINY, "id2label": {str(i): f"L{i}" for i in range(5)}}
    # token head: every token, 4 -> 5: 3*4*5 = 60 MACs; sequence head: pooler 4x4 + classifier 4x5
    assert gemm_peak.encoder_ops(labels, 3, "token-classification") == encoder + 2 * 60
    assert gemm_peak.encoder_ops(labels, 3, "text-classification") == encoder + 2 * (16 + 20)
    assert gemm_peak.encoder_ops({**TINY, "num_labels": 3}, 3, "text-classification") == encoder + 2 * (
        16 + 12
    )
    # the attention products (4 L^2 H per layer) grow with L^2, the rest linearly
    assert gemm_peak.encoder_ops(TINY, 6) - 2 * gemm_peak.encoder_ops(TINY, 3) == 2 * 4 * 4 * (
        6 * 6 - 2 * 3 * 3
    )


def test_encoder_ops_reads_distilbert_names_and_rejects_bad_input(tmp_path):
    distil = {"dim": 4, "n_layers": 2, "hidden_dim": 8, "n_heads": 2}
    assert gemm_peak.encoder_ops(distil, 3) == 1824
    path = tmp_path / "config.json"
    path.write_text(json.dumps(TINY))
    assert gemm_peak.encoder_ops(path, 3) == 1824
    assert gemm_peak.batches_gop(path, [(2, 3), (1, 6)]) == pytest.approx(
        (2 * 1824 + gemm_peak.encoder_ops(TINY, 6)) / 1e9
    )
    with pytest.raises(ValueError, match="hidden_size"):
        gemm_peak.encoder_ops({"vocab_size": 10}, 3)
    with pytest.raises(ValueError, match="seq_len"):
        gemm_peak.encoder_ops(TINY, -1)
    with pytest.raises(ValueError, match="task"):
        gemm_peak.encoder_ops(TINY, 3, "fill-mask")


def test_encoder_ops_agree_with_the_exported_graphs_weights(tiny_checkpoint, tiny_bundle):
    """At L=1 the projections + FFN of the config count equal the weight matrices of the bundle's graph
    (hardware.gops_per_token reads them from the ONNX initializers); attention adds 4*H per layer."""
    checkpoint = tiny_checkpoint("bert", "feature-extraction")
    config = json.loads((checkpoint / "config.json").read_text())
    weights = hardware.gops_per_token(tiny_bundle("bert", "feature-extraction") / "model.onnx") * 1e9
    attention = config["num_hidden_layers"] * 4 * config["hidden_size"]
    assert gemm_peak.encoder_ops(config, 1, "feature-extraction") - attention == pytest.approx(weights)


def test_fraction_of_peak():
    assert gemm_peak.fraction_of_peak(100.0, 0.5, 200.0) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="positive"):
        gemm_peak.fraction_of_peak(1.0, 1.0, 0.0)
    assert gemm_peak.peak_precision("bertrt-int8") == "int8"
    assert gemm_peak.peak_precision("pytorch") == "fp32"
    assert gemm_peak.peak_precision("optimum-intel", "bf16") == "bf16"
    assert gemm_peak.peak_precision("optimum-intel", "<Type: 'float32'>") == "fp32"
    assert gemm_peak.peak_precision("optimum-intel") is None


@pytest.fixture(scope="module")
def tiny_measurement():
    return gemm_peak.measure(shapes=((16, 32, 24), (8, 16, 16)), threads=1, runs=2, min_run_s=0.0)


def test_micro_bench_on_tiny_sizes_gives_positive_figures(tiny_measurement):
    result = tiny_measurement
    assert {"machine", "threads", "runs", "shapes", "rows", "peaks", "skipped", "total_s"} <= set(result)
    assert result["shapes"] == [[16, 32, 24], [8, 16, 16]] and result["threads"] == 1
    measured = {r["backend"] for r in result["rows"]}
    assert measured | set(result["skipped"]) == set(gemm_peak.BACKENDS)
    # onnxruntime and OpenVINO are runtime dependencies here: their rows must exist
    assert {"ort MatMulInteger u8s8", "ort MatMulIntegerToFloat u8s8", "ort MatMul fp32"} <= measured
    assert "openvino MatMul fp32" in measured
    for row in result["rows"]:
        assert row["precision"] == gemm_peak.BACKENDS[row["backend"]]
        assert len(row["runs_gops"]) == 2
        assert 0 < row["min_gops"] <= row["median_gops"] <= row["max_gops"]
    assert {"int8", "fp32"} <= set(result["peaks"])
    for precision, peak in result["peaks"].items():
        best = max(r["median_gops"] for r in result["rows"] if r["precision"] == precision)
        assert peak["gops"] == best > 0
        assert peak["best_run_gops"] == max(
            r["max_gops"] for r in result["rows"] if r["precision"] == precision
        )
        assert peak["best_run_gops"] >= peak["gops"]
    md = gemm_peak.render_markdown(result)
    assert "| ort MatMulInteger u8s8 | int8 |" in md and "16×32×24" in md and "- int8: **" in md


def test_measure_rejects_unknown_backend_and_bad_runs():
    with pytest.raises(ValueError, match="unknown backend"):
        gemm_peak.measure(shapes=((4, 4, 4),), backends=["nope"])
    with pytest.raises(ValueError, match="runs"):
        gemm_peak.measure(shapes=((4, 4, 4),), runs=0)


def test_main_no_write_prints_the_table(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(gemm_peak, "RESULTS", tmp_path / "results")
    code = gemm_peak.main(["--shapes", "8x8x8", "--runs", "1", "--backends", "ort MatMul fp32", "--no-write"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| ort MatMul fp32 | fp32 |" in out and "8×8×8" in out
    assert not (tmp_path / "results").exists()
    with pytest.raises(SystemExit):
        gemm_peak.main(["--shapes", "8x8", "--no-write"])


def test_load_peaks_only_for_the_same_cpu(tmp_path):
    path = tmp_path / "gemm_peak.json"
    assert gemm_peak.load_peaks(path) is None  # absent
    path.write_text(json.dumps({"machine": {"cpu": "CPU A"}, "peaks": {"int8": {"gops": 400.0}}}))
    assert gemm_peak.load_peaks(path, cpu="CPU A")["peaks"]["int8"]["gops"] == 400.0
    assert gemm_peak.load_peaks(path, cpu="CPU B") is None
    path.write_text("{not json")
    assert gemm_peak.load_peaks(path) is None


def _tp(v: float) -> dict:
    return {"1": {"median": v / 2, "min": v / 2, "max": v / 2}, "8": {"median": v, "min": v, "max": v}}


def _result(peaks: dict | None) -> dict:
    tp = _tp
    result = {
        "systems": {"pytorch": "", "bertrt-int8": "", "optimum-intel": ""},
        "workloads": {},
    }
    wl = {
        "n_texts": 10,
        "throughput": {"pytorch": tp(20.0), "bertrt-int8": tp(100.0), "optimum-intel": tp(50.0)},
        "gop_per_pass": {"1": 1.0, "8": 2.0},  # 0.2 GOP per text at bs 8
        "peers": {"optimum-intel": {"info": {"inference_precision": "bf16"}}},
    }
    result["workloads"]["ner"] = wl
    if peaks is not None:
        result["gemm_peak"] = {"path": "gemm_peak.json", "peaks": peaks}
    return result


def test_report_fractions_of_the_peak_of_each_systems_precision():
    peaks = {"int8": {"gops": 400.0}, "bf16": {"gops": 200.0}, "fp32": {"gops": 100.0}}
    result = _result(peaks)
    rows = {r["system"]: r for r in report.gemm_fractions(result, result["workloads"]["ner"])}
    assert rows["bertrt-int8"]["batch_size"] == "8" and rows["bertrt-int8"]["gop_per_text"] == pytest.approx(
        0.2
    )
    assert rows["bertrt-int8"]["fraction"] == pytest.approx(100 * 0.2 / 400)
    assert rows["pytorch"]["precision"] == "fp32" and rows["pytorch"]["fraction"] == pytest.approx(
        20 * 0.2 / 100
    )
    assert rows["optimum-intel"]["precision"] == "bf16"
    assert rows["optimum-intel"]["fraction"] == pytest.approx(50 * 0.2 / 200)
    # optional: no peak measurement, or no op count, gives no table
    assert report.gemm_fractions(_result(None), _result(None)["workloads"]["ner"]) == []
    no_ops = _result(peaks)
    no_ops["workloads"]["ner"]["gop_per_pass"] = None
    assert report.gemm_fractions(no_ops, no_ops["workloads"]["ner"]) == []
