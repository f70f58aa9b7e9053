"""Smoke run of ``python -m benchmarks.harness`` on a tiny model, so the harness cannot rot.

Runs every system in-process (PyTorch, Optimum fp32/int8 on the bundle's graphs, Optimum-native
fp32/int8 from Optimum's own export/optimizer/quantizer, bertrt fp32/int8, the raw session) on a
handful of WNUT-16 sentences with --quick counts, plus the cold-start / RSS subprocess probe of PyTorch
and bertrt, and checks that the report files are written with sane, self-consistent fields. Nothing
here asserts a speed: timings on a shared machine are not test material.
"""

from __future__ import annotations

import json

import pytest

from benchmarks import data as bdata
from benchmarks import harness
from benchmarks.systems import SYSTEMS, build_system
from benchmarks.workloads import OPTIMUM_NATIVE, Workload, ensure_optimum_native

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# The whole harness on a tiny model (minutes on 2 cores): the slow run; tests/cli/test_bench_cli.py is
# the default run's bench smoke.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smoke_report(tiny_checkpoint, tiny_bundle, tmp_path_factory):
    task = "token-classification"
    texts = [" ".join(s.tokens) for s in bdata.load_wnut16()[:6]]
    out = tmp_path_factory.mktemp("bench-smoke")
    workload = Workload(
        name="ner",
        task=task,
        checkpoint=tiny_checkpoint("bert", task),
        bundle=tiny_bundle("bert", task),
        texts=texts,
        model="tiny random bert",
        data="WNUT-16, 6",
        optimum_root=out / "optimum",
    )
    result = harness.run_bench(
        [workload],
        out,
        batch_sizes=(1, 4),
        quick=True,
        threads=1,
        progress=False,
        eval_json=out / "absent.json",
        probe_systems=["pytorch", "bertrt-int8"],
    )
    return out, result, workload


def test_bench_writes_report_files(smoke_report):
    out, _, _ = smoke_report
    for name in ("throughput.png", "latency.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    saved = json.loads((out / "report.json").read_text())
    assert set(saved["workloads"]) == {"ner"}
    assert "samples_ms" not in json.dumps(saved)  # per-call samples stay out of the JSON
    md = (out / "report.md").read_text()
    assert "## Targets" in md and "## ner: token-classification" in md
    for system in SYSTEMS:
        assert f"| {system} |" in md


def test_bench_throughput_and_latency_fields_are_sane(smoke_report):
    _, result, _ = smoke_report
    wl = result["workloads"]["ner"]
    assert wl["n_texts"] == 6
    assert set(wl["throughput"]) == set(SYSTEMS)
    for system, per_bs in wl["throughput"].items():
        assert set(per_bs) == {"1", "4"}
        for summary in per_bs.values():
            assert len(summary["runs"]) == result["repeats"] == 1
            assert 0 < summary["min"] <= summary["median"] <= summary["max"]
        lat = wl["latency_bs1"][system]
        assert lat["n"] == 6  # one sample per text (all its windows) per batch-1 pass
        assert 0 < lat["p50_ms"] <= lat["p95_ms"] <= lat["p99_ms"]
    # padded tokens come from bertrt's plan: batching pads, so bs 4 never has fewer than bs 1
    assert wl["padded_tokens"]["4"] >= wl["padded_tokens"]["1"] > 6
    assert wl["gops_per_token"] > 0
    sizes = wl["sizes"]
    assert sizes["onnx_int8_bytes"] < sizes["onnx_fp32_bytes"]
    assert sizes["optimum_native_int8_bytes"] < sizes["optimum_native_fp32_bytes"]


def test_bench_probes_installed_sizes_and_targets(smoke_report):
    _, result, _ = smoke_report
    probes = result["probes"]
    assert set(probes["cold_start_s"]) == {"pytorch", "bertrt-int8"}
    assert all(s["median"] > 0 for s in probes["cold_start_s"].values())
    assert all(v > 10 for v in probes["peak_rss_mb"].values())  # a Python process is never under 10 MB
    # the runtime never imports torch; the reference does
    assert probes["torch_loaded"] == {"pytorch": True, "bertrt-int8": False}
    inst = result["installed"]
    assert "onnxruntime" in inst["runtime"]["packages"] and "torch" not in inst["runtime"]["packages"]
    assert 0 < inst["runtime"]["total_bytes"] < inst["reference"]["total_bytes"]
    assert result["int8_peak"]["peak_gops"] > 0
    checks = {c["target"]: c for c in result["targets"]}
    ratio = next(c for name, c in checks.items() if "PyTorch pipeline" in name)
    tp = result["workloads"]["ner"]["throughput"]
    best = max(s["median"] for s in tp["bertrt-int8"].values()) / max(
        s["median"] for s in tp["pytorch"].values()
    )
    assert ratio["value"] == pytest.approx(best, rel=1e-3)
    assert ratio["met"] is (best >= 6.0) and ratio["limit"] == 6.0
    # the peer target is against the fastest peer pipeline measured (here the two Optimum int8 ones)
    vs_optimum = next(c for name, c in checks.items() if "best peer pipeline" in name)
    assert vs_optimum["limit"] == 2.5
    best_optimum = {
        s: max(v["median"] for v in tp[s].values()) for s in ("optimum-int8", "optimum-native-int8")
    }
    winner = max(best_optimum, key=best_optimum.get)
    assert vs_optimum["against"] == winner
    assert vs_optimum["value"] == pytest.approx(
        max(s["median"] for s in tp["bertrt-int8"].values()) / best_optimum[winner], rel=1e-3
    )
    assert "`optimum-int8`" in vs_optimum["detail"] and "`optimum-native-int8`" in vs_optimum["detail"]
    accuracy = next(c for name, c in checks.items() if "accuracy" in name)
    assert accuracy["met"] is None and "eval.json" in accuracy["detail"]


def test_optimum_native_artefacts_are_optimums_own_and_cached(smoke_report):
    _, _, workload = smoke_report
    folder = ensure_optimum_native(workload.checkpoint, workload.task, root=workload.optimum_root)
    assert [p.name for p in workload.optimum_root.iterdir()] == [folder.name]  # one folder, reused
    recipe = json.loads((folder / "optimum_native.json").read_text())
    assert recipe["optimization_level"] == "O2" and recipe["quantization_preset"] == "avx512_vnni"
    import onnx

    ops = {
        f: {n.op_type for n in onnx.load(str(folder / OPTIMUM_NATIVE[f])).graph.node}
        for f in ("fp32_file", "int8_file")
    }
    assert {"Attention", "SkipLayerNormalization"} <= ops["fp32_file"]  # ORTOptimizer O2 fusions
    assert "MatMulInteger" in ops["int8_file"] and "DynamicQuantizeLinear" in ops["int8_file"]
    assert "MatMulInteger" not in ops["fp32_file"]


def test_optimum_native_fp32_matches_pytorch_entities(smoke_report):
    _, _, workload = smoke_report
    torch_pipe = build_system("pytorch", workload, 1)
    native = build_system("optimum-native-fp32", workload, 1)
    ref, got = torch_pipe(workload.texts, 4), native(workload.texts, 4)
    assert [[(e["entity_group"], e["start"], e["end"]) for e in ents] for ents in got] == [
        [(e["entity_group"], e["start"], e["end"]) for e in ents] for ents in ref
    ]
    scores = [(a["score"], b["score"]) for x, y in zip(ref, got) for a, b in zip(x, y)]
    assert scores and all(abs(a - b) < 1e-4 for a, b in scores)


def test_harness_rejects_unknown_workload(capsys):
    assert harness.main(["--workloads", "nope", "--no-progress"]) == 2
    assert "unknown" in capsys.readouterr().err
