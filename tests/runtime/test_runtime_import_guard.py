"""The runtime runs every task with torch, transformers, optimum and the exporter made unimportable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib.abc, json, sys

BLOCKED = ("torch", "transformers", "optimum", "onnx", "bertrt.export")

def blocked(name):
    return any(name == b or name.startswith(b + ".") for b in BLOCKED)

class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if blocked(name):
            raise ImportError(f"blocked by the import guard: {name}")
        return None

sys.meta_path.insert(0, Blocker())
for name in list(sys.modules):
    if blocked(name):
        del sys.modules[name]

import bertrt
folders = json.loads(sys.argv[1])
out = {}
out["fe"] = bertrt.pipeline(None, folders["feature-extraction"], precision="fp32")(
    ["Maria loves Groningen.", "x"], pooling="mean", normalize=True)[0].shape[0]
out["cls"] = bertrt.pipeline(None, folders["text-classification"], precision="fp32")("Maria loves Groningen.")
out["fill"] = len(bertrt.pipeline(None, folders["fill-mask"], precision="fp32")("Maria [MASK] Groningen."))
import bertrt.bench.peak as peak
out["peak"] = sorted(peak.measure_peaks(1, ("int8", "fp32"), rounds=1, run_s=0.0)["peaks"])
out["ner"] = bertrt.pipeline("ner", folders["token-classification"], precision="fp32")(
    "Maria loves Groningen. " * 20, aggregation_strategy="first", stride=4)
from bertrt.cli import main
assert main(["predict", folders["text-classification"], "--precision", "fp32", "hello"]) == 0
leaked = sorted(n for n in sys.modules if blocked(n))
print(json.dumps({"leaked": leaked, "results": out}))
"""


def test_every_task_runs_without_torch_transformers_optimum_export(runtime_bundle):
    tasks = ("feature-extraction", "text-classification", "fill-mask", "token-classification")
    folders = {task: str(runtime_bundle("bert", task)) for task in tasks}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(folders)],
        check=False,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["leaked"] == []
    results = report["results"]
    assert results["fe"] == 32  # hidden size of the tiny model
    assert isinstance(results["cls"], list) and set(results["cls"][0]) == {"label", "score"}
    assert results["fill"] == 5
    assert isinstance(results["ner"], list)


def test_import_engine_is_light():
    code = (
        "import sys, engine; heavy = [m for m in ('onnxruntime', 'tokenizers', 'torch', 'transformers') "
        "if m in sys.modules]; print(heavy)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
