"""``bertrt bench BUNDLE``: the user's bundle, every installed backend x precision, against PyTorch.

A tiny exported bundle and its tiny checkpoint, a few texts, one repeat: the report files exist and hold
a row per backend x precision and the reference, and bertrt's answers were compared with the reference's.
Nothing here asserts a speed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from bertrt.bench import FILES, bench
from bertrt.bench.systems import REFERENCE, candidates, load_texts, task_texts
from bertrt.cli import main
from bertrt.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
TEXTS = ["Maria moved to Groningen.", "ok", "The museum in Amsterdam has paintings.", "Great food."]


def _runnable() -> set[str]:
    return {c.name for c in candidates() if c.reason is None}


@pytest.fixture(scope="module")
def cls_run(tiny_checkpoint, tiny_bundle, tmp_path_factory):
    """``bertrt bench`` on a text-classification bundle with its checkpoint as the reference."""
    task = "text-classification"
    out = tmp_path_factory.mktemp("bench-cli")
    texts = out / "texts.txt"
    texts.write_text("\n".join(TEXTS) + "\n\n", encoding="utf-8")
    argv = ["bench", str(tiny_bundle("bert", task)), "--reference", str(tiny_checkpoint("bert", task))]
    argv += ["--texts", str(texts), "--out", str(out / "results"), "--batch-sizes", "2", "--repeats", "1"]
    code = main([*argv, "--threads", "1"])
    return code, out / "results"


def test_bench_writes_markdown_json_and_png(cls_run):
    code, out = cls_run
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert (out / "bench.png").read_bytes()[:8] == PNG_MAGIC
    md = (out / "bench.md").read_text(encoding="utf-8")
    for name in [*_runnable(), REFERENCE]:
        assert f"| {name} |" in md
    assert "agreement" in md and "p50 / p90 ms" in md


def test_bench_rows_cover_every_runnable_backend_precision_and_the_reference(cls_run):
    _, out = cls_run
    result = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    assert result["task"] == "text-classification" and result["texts"]["count"] == len(TEXTS)
    assert result["batch_sizes"] == [1, 2] and result["repeats"] == 1 and result["baseline"] == REFERENCE
    rows = {r["system"]: r for r in result["systems"]}
    assert {c.name for c in candidates()} | {REFERENCE} == set(rows)
    available = {name for name, r in rows.items() if r["available"]}
    assert available >= _runnable() | {REFERENCE}
    for name in available:
        row = rows[name]
        assert set(row["throughput"]) == {"1", "2"}
        for figures in row["throughput"].values():
            assert 0 < figures["min"] <= figures["median"] <= figures["max"]
        assert row["latency_bs1"]["n"] == len(TEXTS)
        assert 0 < row["latency_bs1"]["p50_ms"] <= row["latency_bs1"]["p90_ms"]
        assert row["cold_start_s"] > 0 and isinstance(row["rss_delta_mb"], float)
        if name == REFERENCE:
            assert row["agreement"] is None  # the baseline itself
        else:  # bertrt's labels were checked against PyTorch's (fp32 graphs of the same weights agree)
            assert 0.0 <= row["agreement"]["agreement"] <= 1.0
            if row["precision"] == "fp32":
                assert row["agreement"]["agreement"] == 1.0
    for row in rows.values():
        if not row["available"]:
            assert row["reason"]


def test_bench_without_reference_compares_with_onnxruntime_fp32(tiny_bundle):
    result = bench(
        tiny_bundle("bert", "feature-extraction"),
        reference=None,
        texts=TEXTS,
        batch_sizes=[2],
        repeats=1,
        threads=1,
    )
    assert result["baseline"] == "bertrt onnxruntime fp32" and result["reference"]["checkpoint"] is None
    rows = {r["system"]: r for r in result["systems"]}
    assert REFERENCE not in rows
    assert rows["bertrt onnxruntime int8"]["agreement"]["cosine_min"] > 0.9


def test_bench_without_the_extra_names_it(tiny_bundle, monkeypatch, capsys):
    bundle = str(tiny_bundle("bert", "text-classification"))
    capsys.readouterr()  # what building the bundle printed
    monkeypatch.setitem(sys.modules, "psutil", None)  # import psutil -> ImportError
    assert main(["bench", bundle]) == 1
    err = capsys.readouterr().err
    assert err.startswith("bertrt bench: error:") and "pip install 'bertrt[bench]'" in err


def test_bench_refuses_a_reference_that_is_no_checkpoint(tiny_bundle, tmp_path, capsys):
    bundle = str(tiny_bundle("bert", "text-classification"))
    capsys.readouterr()
    assert main(["bench", bundle, "--reference", str(tmp_path), "--out", str(tmp_path / "o")]) == 1
    assert "--reference must be a checkpoint folder" in capsys.readouterr().err


def test_bench_default_out_is_bertrt_results_in_the_working_directory():
    import argparse

    from bertrt.bench.cli import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["b"])
    assert args.out == Path("bertrt-results") and not args.out.is_absolute()
    assert args.reference == "auto" and not args.no_reference


def test_texts_files_txt_and_jsonl(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("one\n\n two \r\nthree", encoding="utf-8")
    assert load_texts(txt) == ["one", " two ", "three"]
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text('{"text": "a b"}\n\n{"text": "c", "id": 3}\n', encoding="utf-8")
    assert load_texts(jsonl) == ["a b", "c"]
    jsonl.write_text('{"text": "a"}\n{"label": 1}\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2"):
        load_texts(jsonl)
    (tmp_path / "empty.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="no texts"):
        load_texts(tmp_path / "empty.txt")


def test_fill_mask_texts_get_a_mask_when_they_have_none():
    class Pipe:
        class tokenizer:  # stands in for the pipeline's tokenizer
            mask_token = "[MASK]"

    masked, _ = task_texts("fill-mask", ["the cat sat down", "a b c"], Pipe)
    assert all(t.count("[MASK]") == 1 for t in masked)
    kept, _ = task_texts("fill-mask", ["the [MASK] sat", "no mask here"], Pipe)
    assert kept == ["the [MASK] sat", "no [MASK] here"]
    sample, source = task_texts("text-classification", None, Pipe)
    assert sample and "built-in" in source


def test_bench_runs_from_an_installed_copy(tmp_path):
    """The package copied as site-packages (no checkout next to it) has ``bertrt bench``."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "engine", site / "bertrt", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        f"import sys; sys.path[:0] = [{str(site)!r}, {sysconfig.get_paths()['purelib']!r}]; "
        "from bertrt.cli import main; sys.exit(main(['bench', '--help']))"
    )
    # -S: no site processing, so the editable install's finder does not map bertrt back to engine/
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--reference" in proc.stdout and "source checkout" not in proc.stdout + proc.stderr


def test_bench_rows_have_gemm_gops_and_their_share_of_the_measured_peak(cls_run):
    _, out = cls_run
    result = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    work = result["gemm"]
    assert work["ops_source"] == "bundle.json" and work["gop_per_text"] > 0
    assert {"int8", "fp32"} <= set(work["peaks"])
    for row in result["systems"]:
        if not row["available"]:
            continue
        gemm = row["gemm"]
        assert gemm["best_gops"] == max(gemm["gops"].values()) > 0
        precision = "fp32" if row["system"] == REFERENCE else row["precision"]
        if precision in work["peaks"]:
            assert gemm["peak_precision"] == precision and gemm["fraction_of_peak"] > 0
    md = (out / "bench.md").read_text(encoding="utf-8")
    assert "| GEMM GOP/s (% of int8/" in md and "fp32 peak) |" in md and "% fp32) |" in md
