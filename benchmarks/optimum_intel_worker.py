"""The worker of the ``optimum-intel`` peer (runs in the peer venv, see :mod:`benchmarks.optimum_intel`).

``python optimum_intel_worker.py SPEC_JSON``, SPEC = ``{"task", "checkpoint", "threads", "ir_dir"}``.
Stand-alone on purpose: the peer venv has optimum-intel, OpenVINO and transformers 5, not bertrt, so this
file imports nothing from the project but the one dependency-free file ``engine/ordering.py`` (the
length-sorted call every pipeline system of the bench uses), loaded by its path in the checkout
(:func:`_load_sorted_call`; where bertrt is importable, as in the tests, from ``bertrt.ordering``). It exports the checkpoint to OpenVINO IR once (``OVModelFor*
.from_pretrained(checkpoint, export=True)`` + ``save_pretrained`` into ``ir_dir``, written to a temporary
folder and renamed), loads the IR with the CPU plugin's defaults and the thread count, builds
``transformers.pipeline`` and answers one JSON line per request on stdin:

* ``{"op": "run", "texts": [...], "batch_size": n, "outputs": bool}`` -> ``{"ok", "n", "seconds",
  "latencies", "outputs"}``: one pass, timed here (batch size 1: call by call, each call's seconds in
  ``latencies``); ``outputs`` (entities / labels / mean-pooled vectors as lists) only when asked;
* ``{"op": "quit"}`` ends it.

Replies are printed as ``BERTRT-PEER {json}`` (other stdout lines are library chatter). The first reply,
after loading, carries the versions, the load and export seconds and the compiled model's inference
precision.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

PREFIX = "BERTRT-PEER "
CLASSES = {
    "token-classification": "OVModelForTokenClassification",
    "text-classification": "OVModelForSequenceClassification",
    "feature-extraction": "OVModelForFeatureExtraction",
}
MARKER = "bertrt-ir.json"


def say(reply: dict) -> None:
    sys.stdout.write(PREFIX + json.dumps(reply) + "\n")
    sys.stdout.flush()


def _load_sorted_call():
    """:func:`bertrt.ordering.sorted_call`: imported where bertrt is installed, else loaded from the
    checkout's ``engine/ordering.py`` (this file's folder's sibling), which imports nothing."""
    try:
        from bertrt.ordering import sorted_call as found
    except ImportError:
        import importlib.util

        path = Path(__file__).resolve().parents[1] / "engine" / "ordering.py"
        spec = importlib.util.spec_from_file_location("_bertrt_ordering", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        found = module.sorted_call
    return found


#: texts run length-sorted, results in the input order (as every pipeline system of the bench runs them)
sorted_call = _load_sorted_call()


def pipeline_call(pipe, task: str):
    """The pipeline's call with the task's options, its result made final; feature extraction mean-pools
    the token vectors (to numpy). The in-process transformers systems of :mod:`benchmarks.systems` use it
    too, so every transformers-based system calls its pipeline alike."""
    if task == "token-classification":
        return lambda texts, bs: sorted_call(lambda t: pipe(t, batch_size=bs), texts)
    if task == "text-classification":
        return lambda texts, bs: sorted_call(lambda t: pipe(t, batch_size=bs, truncation=True), texts)

    def embed(texts, bs):
        tensors = sorted_call(lambda t: pipe(t, batch_size=bs, return_tensors=True, truncation=True), texts)
        return [t[0].mean(dim=0).numpy() for t in tensors]

    return embed


def plain(value):
    """Pipeline answers as JSON-able data (numpy / torch scalars and tensors to Python lists and floats)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if hasattr(value, "detach"):  # torch tensor
        value = value.detach().cpu().numpy()
    if hasattr(value, "tolist"):  # numpy array or scalar
        return value.tolist()
    return value


def run_pass(call, texts: list, batch_size: int) -> tuple[list, float, list]:
    if batch_size == 1:
        out, latencies = [], []
        for text in texts:
            start = time.perf_counter()
            out += call([text], 1)
            latencies.append(time.perf_counter() - start)
        return out, sum(latencies), latencies
    start = time.perf_counter()
    out = call(texts, batch_size)
    return out, time.perf_counter() - start, []


def _export(cls, checkpoint: str, ir_dir: Path) -> float:
    """The checkpoint as OpenVINO IR in ``ir_dir`` (once); seconds spent exporting (0 when cached)."""
    if (ir_dir / MARKER).is_file():
        return 0.0
    import transformers

    start = time.perf_counter()
    ir_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{ir_dir.name}-", dir=ir_dir.parent))
    try:
        model = cls.from_pretrained(checkpoint, export=True, compile=False)
        model.save_pretrained(work)
        transformers.AutoTokenizer.from_pretrained(checkpoint).save_pretrained(work)
        (work / MARKER).write_text(json.dumps({"checkpoint": checkpoint, "class": cls.__name__}) + "\n")
        work.chmod(0o755)
        shutil.rmtree(ir_dir, ignore_errors=True)
        work.rename(ir_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return time.perf_counter() - start


def _precision(model) -> str | None:
    for attr in ("compiled_model", "request"):
        compiled = getattr(model, attr, None)
        if compiled is not None and hasattr(compiled, "get_property"):
            try:
                value = compiled.get_property("INFERENCE_PRECISION_HINT")
                return value.to_string() if hasattr(value, "to_string") else str(value)
            except Exception:  # a property this OpenVINO build lacks is reported as unknown
                return None
    return None


def load(spec: dict):
    from importlib import metadata

    import optimum.intel as oi
    import torch
    import transformers

    threads = int(spec["threads"])
    torch.set_num_threads(threads)
    cls = getattr(oi, CLASSES[spec["task"]])
    ir_dir = Path(spec["ir_dir"])
    export_s = _export(cls, spec["checkpoint"], ir_dir)
    start = time.perf_counter()
    ov_config = {"INFERENCE_NUM_THREADS": str(threads)}
    model = cls.from_pretrained(str(ir_dir), ov_config=ov_config)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(ir_dir))
    kwargs = {"aggregation_strategy": "first"} if spec["task"] == "token-classification" else {}
    pipe = transformers.pipeline(spec["task"], model=model, tokenizer=tokenizer, **kwargs)
    info = {
        "ok": True,
        "ready": True,
        "class": cls.__name__,
        "export_s": round(export_s, 2),
        "load_s": round(time.perf_counter() - start, 2),
        "inference_precision": _precision(model),
        "ov_config": getattr(model, "ov_config", ov_config),
        "versions": {
            d: metadata.version(d) for d in ("optimum-intel", "optimum", "transformers", "openvino", "torch")
        },
    }
    return pipeline_call(pipe, spec["task"]), info


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 1:
        print("usage: optimum_intel_worker.py SPEC_JSON", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        call, info = load(json.loads(argv[0]))
    except Exception as exc:  # the parent turns this into an "unavailable" row
        traceback.print_exc()
        say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    say(info)
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if request.get("op") == "quit":
                break
            if request.get("op") != "run":
                raise ValueError(f"unknown op {request.get('op')!r}")
            out, seconds, latencies = run_pass(call, request["texts"], int(request["batch_size"]))
            say(
                {
                    "ok": True,
                    "n": len(out),
                    "seconds": seconds,
                    "latencies": latencies,
                    "outputs": plain(out) if request.get("outputs") else None,
                }
            )
        except Exception as exc:  # one failed request is reported; the worker keeps serving
            traceback.print_exc()
            say({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    return 0


if __name__ == "__main__":
    sys.exit(main())
