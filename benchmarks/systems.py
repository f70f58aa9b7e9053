"""The systems ``benchmarks.harness`` compares, each built the way its users build it, and the subprocess probe.

Every system is a callable ``run(texts, batch_size) -> list`` that goes from texts to the task's final
results (entities, labels, pooled vectors), except ``ort-raw``, which times only ``session.run`` on
batches prepared beforehand (see :class:`RawSession`).

============== ===================================================================================
pytorch        ``transformers.pipeline`` on PyTorch fp32 (the checkpoint folder)
optimum-fp32   Optimum ``ORTModelFor*`` loading the bertrt bundle's ``model.onnx`` + transformers pipeline
optimum-int8   the same with the bundle's ``model.int8.onnx``
optimum-native-fp32
               the checkpoint as an Optimum user ships it: ``main_export`` then ``ORTOptimizer`` at
               ``AutoOptimizationConfig.O2()``, loaded with ``ORTModelFor*`` + transformers pipeline
optimum-native-int8
               ``ORTQuantizer`` + ``AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=True)`` on Optimum's
               export, loaded the same way (recipe: :data:`benchmarks.workloads.OPTIMUM_NATIVE`)
bertrt-fp32    ``bertrt.pipeline(..., precision="fp32")``
bertrt-int8    ``bertrt.pipeline(..., precision="int8")``
ort-raw        a bare ``onnxruntime.InferenceSession`` on ``model.int8.onnx`` (bertrt's session options),
               fed pre-tokenized, length-sorted, padded batches (bertrt's tokenizer and batch plan):
               the bound for the engine's own overhead
optimum-intel  (a peer, :data:`PEERS`) optimum-intel ``OVModelFor*`` (OpenVINO IR exported from the
               checkpoint) + transformers pipeline, in its own venv, out of process
               (:mod:`benchmarks.optimum_intel`)
============== ===================================================================================

:data:`SYSTEMS` run in this process; :data:`PEERS` need a stack that cannot share this venv and run in a
worker process of their own (``run_bench`` times them only when named; ``python -m benchmarks.harness``
names them by default). :data:`ALL_SYSTEMS` is both, in report order.

``optimum-fp32``/``optimum-int8`` load the very graphs bertrt runs, so they measure the pipeline
around the session, not a different graph; the ``optimum-native-*`` systems are what a user who picks
Optimum instead of bertrt runs (Optimum's export, optimizer and quantizer; artefacts cached per
checkpoint by :func:`benchmarks.workloads.ensure_optimum_native`). The transformers-based systems get
their texts sorted by length (the sort is timed, the order restored), so every system pads alike.

``python -m benchmarks.systems probe SPEC_JSON`` is the child process of the cold-start and peak-RSS
measurements: it builds one system, runs the first text, reports the monotonic clock, optionally runs
the whole text list, and prints one JSON line with its peak RSS (VmHWM). Heavy libraries are imported only
inside the builders, so a bertrt child never loads torch.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from benchmarks.optimum_intel_worker import pipeline_call
from benchmarks.workloads import OPTIMUM_NATIVE, Workload, ensure_optimum_native

__all__ = [
    "ALL_SYSTEMS",
    "PEERS",
    "SYSTEMS",
    "RawSession",
    "build_system",
    "main",
    "physical_threads",
]

#: name -> description (data table; the order is the order of the report).
SYSTEMS = {
    "pytorch": "transformers pipeline, PyTorch fp32",
    "optimum-fp32": "Optimum ORTModel (bundle model.onnx) + transformers pipeline",
    "optimum-int8": "Optimum ORTModel (bundle model.int8.onnx) + transformers pipeline",
    "optimum-native-fp32": "Optimum-native: main_export + ORTOptimizer O2 graph, ORTModel + transformers pipeline",
    "optimum-native-int8": "Optimum-native: ORTQuantizer avx512_vnni dynamic int8 of Optimum's export, "
    "ORTModel + transformers pipeline",
    "bertrt-fp32": "bertrt pipeline, model.onnx",
    "bertrt-int8": "bertrt pipeline, model.int8.onnx",
    "ort-raw": "bare onnxruntime session, model.int8.onnx, pre-tokenized padded batches",
}
#: out-of-process peers: name -> description (each in a venv of its own)
PEERS = {
    "optimum-intel": "optimum-intel OVModelFor* (OpenVINO IR of the checkpoint, CPU plugin defaults) + "
    "transformers pipeline, own venv (optimum 2.3, transformers 5)",
}
ALL_SYSTEMS = {**SYSTEMS, **PEERS}

_ORT_CLASSES = {
    "token-classification": "ORTModelForTokenClassification",
    "text-classification": "ORTModelForSequenceClassification",
    "feature-extraction": "ORTModelForFeatureExtraction",
}


def physical_threads() -> int:
    from bertrt.session import physical_cores

    return physical_cores()


def _pytorch(workload: Workload, threads: int):
    import torch
    import transformers

    torch.set_num_threads(threads)
    kwargs = {"aggregation_strategy": "first"} if workload.task == "token-classification" else {}
    pipe = transformers.pipeline(
        workload.task, model=str(workload.checkpoint), tokenizer=str(workload.checkpoint), device=-1, **kwargs
    )
    return pipeline_call(pipe, workload.task)


def _optimum(workload: Workload, threads: int, file_name: str, folder: Path | None = None):
    """ORTModelFor* on ``folder/file_name`` (default: the bertrt bundle) + transformers pipeline."""
    import onnxruntime as ort
    import optimum.onnxruntime as oort
    import transformers

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    model = getattr(oort, _ORT_CLASSES[workload.task]).from_pretrained(
        str(folder or workload.bundle),
        file_name=file_name,
        session_options=options,
        provider="CPUExecutionProvider",
    )
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(workload.checkpoint))
    kwargs = {"aggregation_strategy": "first"} if workload.task == "token-classification" else {}
    pipe = transformers.pipeline(workload.task, model=model, tokenizer=tokenizer, device=-1, **kwargs)
    return pipeline_call(pipe, workload.task)


def _optimum_native(workload: Workload, threads: int, precision: str):
    """Optimum's own artefacts of the checkpoint (exported, optimized, quantized once, then cached)."""
    folder = ensure_optimum_native(workload.checkpoint, workload.task, root=workload.optimum_root)
    return _optimum(workload, threads, OPTIMUM_NATIVE[f"{precision}_file"], folder)


def _bertrt(workload: Workload, threads: int, precision: str):
    import bertrt

    pipe = bertrt.pipeline(workload.task, str(workload.bundle), precision=precision, threads=threads)
    options = {
        "token-classification": {"aggregation_strategy": "first"},
        "feature-extraction": {"pooling": "mean"},
    }.get(workload.task, {})
    return lambda texts, bs: pipe(texts, batch_size=bs, **options)


class RawSession:
    """A bare onnxruntime session; ``prepare`` builds the feeds (untimed), ``run`` only runs them.

    Feeds come from bertrt's own tokenizer and batch plan (same windows, same sort, same padding), cast
    once to the graph's declared input dtypes, so the timed loop is ``session.run`` and nothing else.
    """

    def __init__(self, workload: Workload, threads: int, precision: str = "int8"):
        import onnxruntime as ort

        import bertrt
        from bertrt.session import session_options

        self._pipe = bertrt.pipeline(
            workload.task, str(workload.bundle), precision=precision, threads=threads
        )
        self.task = workload.task
        self.session = ort.InferenceSession(
            str(self._pipe.bundle.model_path),
            sess_options=session_options(threads),
            providers=["CPUExecutionProvider"],
        )
        self.output = self._pipe.session.output_name
        types = {"tensor(int64)": "int64", "tensor(int32)": "int32"}
        self.inputs = {i.name: types.get(i.type, "int64") for i in self.session.get_inputs()}

    def encode(self, texts: list[str]):
        tok = self._pipe.tokenizer
        if self.task == "token-classification":
            return [w for windows in tok.encode_windows(texts) for w in windows]
        return tok.encode_batch(texts)

    def prepare(self, texts: list[str], batch_size: int) -> list[dict]:
        import numpy as np

        from bertrt.batching import pad_batch, plan_batches

        items = self.encode(texts)
        feeds = []
        for index in plan_batches([len(e) for e in items], batch_size):
            batch = pad_batch([items[i] for i in index], self._pipe.tokenizer.pad_token_id)
            feeds.append({k: np.ascontiguousarray(batch[k], dtype=v) for k, v in self.inputs.items()})
        return feeds

    def run(self, feeds: list[dict]) -> int:
        for feed in feeds:
            self.session.run([self.output], feed)
        return len(feeds)


def _optimum_intel(workload: Workload, threads: int):
    """The optimum-intel worker in its venv (built on demand); PeerUnavailable when it cannot run."""
    from benchmarks import optimum_intel

    return optimum_intel.build(workload.task, workload.checkpoint, threads)


#: system -> how to build it: (builder, its last argument). Keys match :data:`SYSTEMS`.
_BUILDERS = {
    "pytorch": (lambda w, t, _: _pytorch(w, t), None),
    "optimum-fp32": (_optimum, "model.onnx"),
    "optimum-int8": (_optimum, "model.int8.onnx"),
    "optimum-native-fp32": (_optimum_native, "fp32"),
    "optimum-native-int8": (_optimum_native, "int8"),
    "bertrt-fp32": (_bertrt, "fp32"),
    "bertrt-int8": (_bertrt, "int8"),
    "ort-raw": (lambda w, t, _: RawSession(w, t), None),
    "optimum-intel": (lambda w, t, _: _optimum_intel(w, t), None),
}


def build_system(name: str, workload: Workload, threads: int):
    """The callable ``run(texts, batch_size)`` of system ``name`` (a :class:`RawSession` for ``ort-raw``, a
    :class:`benchmarks.optimum_intel.PeerSystem` for a peer: close it when done)."""
    if name in _BUILDERS:
        build, arg = _BUILDERS[name]
        return build(workload, threads, arg)
    raise ValueError(f"unknown system {name!r}; expected one of {', '.join(ALL_SYSTEMS)}")


# ------------------------------------------------------------------------------------ child process


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). ``ru_maxrss`` would do, but Linux carries it over from
    the parent across fork and exec, so a small child of a big parent would report the parent's peak."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux, bytes on macOS


def probe(spec: dict) -> dict:
    """Build one system, run the first text (cold start ends there), then optionally all texts at
    ``batch_size``; report the monotonic clock at the first result and the process's peak RSS."""
    workload = Workload.from_spec(spec["workload"])
    system = build_system(spec["system"], workload, spec["threads"])
    texts = workload.texts
    if isinstance(system, RawSession):
        system.run(system.prepare(texts[:1], 1))
    else:
        system(texts[:1], 1)
    first = time.monotonic()
    if spec.get("full"):
        if isinstance(system, RawSession):
            system.run(system.prepare(texts, spec["batch_size"]))
        else:
            system(texts, spec["batch_size"])
    return {
        "first_result_monotonic": first,
        "peak_rss_mb": peak_rss_mb(),
        "torch_loaded": "torch" in sys.modules,
    }


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] != "probe":
        print("usage: python -m benchmarks.systems probe SPEC_JSON_FILE", file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    print("BERTRT-PROBE " + json.dumps(probe(spec)), flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
