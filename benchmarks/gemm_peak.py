"""Measured GEMM peaks of this machine (int8, bf16, fp32) and a model's share of them.

``python -m benchmarks.gemm_peak`` times single-operator GEMMs on large square-ish matrices (M x K x N,
default :data:`SHAPES`) at ``threads`` = physical cores; each case is warmed up, then timed in ``runs``
interleaved rounds (rotating order), so a burst of load on a shared machine does not sink one backend:

=================================== ====== ===================================================================
backend                             prec.  what runs
=================================== ====== ===================================================================
ort MatMulInteger u8s8              int8   onnxruntime ``MatMulInteger``, uint8 activations x int8 weights
                                           (initializer), int32 out: MLAS's u8s8 kernel (VNNI, AMX)
ort MatMulIntegerToFloat u8s8       int8   com.microsoft ``MatMulIntegerToFloat``: the same product, scaled
                                           to float in the kernel (the op bertrt's per-token int8 runs)
openvino MatMul bf16                bf16   an OpenVINO fp32 MatMul with a constant weight compiled with
                                           ``INFERENCE_PRECISION_HINT=bf16`` (avx512_bf16 / AMX-BF16)
torch matmul bf16                   bf16   ``torch.matmul`` on bfloat16 tensors (oneDNN)
ort MatMul fp32                     fp32   onnxruntime ``MatMul`` (MLAS sgemm)
openvino MatMul fp32                fp32   the OpenVINO graph at ``INFERENCE_PRECISION_HINT=f32``
torch matmul fp32                   fp32   ``torch.matmul`` on float32 tensors
=================================== ====== ===================================================================

GOP/s = 2 M K N / seconds / 1e9 (1 multiply-add = 2 ops), median of the runs with min-max. The peak of a
precision is the best median over its backends and shapes (the fastest single run is kept beside it: on
shared cores the median sits well below it). A backend this machine lacks (no torch, an OpenVINO that
cannot compile bf16) is listed as skipped with the reason. Results: ``benchmarks/results/
gemm_peak.json`` and ``.md`` (unless ``--no-write``), which ``benchmarks.harness`` reads, when present and
measured on the same CPU, for its "fraction of measured GEMM peak" table.

:func:`encoder_ops`: the matmul op count of a BERT-like encoder on one sequence of length L, from its
``config.json``: per layer ``2 L (4 H^2 + 2 H I)`` for the Q/K/V/output projections and the FFN, plus
``4 L^2 H`` for the attention scores and context products, plus the task head (token classification
``2 L H C``; sequence classification ``2 H^2 + 2 H C``: pooler or pre-classifier dense + classifier).
Embedding lookups, layer norms, softmax and GELU are not counted. :func:`fraction_of_peak` turns a
measured texts/s and GOP per text into a share of a measured peak.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

__all__ = [
    "BACKENDS",
    "RESULTS",
    "SHAPES",
    "batches_gop",
    "encoder_ops",
    "fraction_of_peak",
    "load_peaks",
    "main",
    "measure",
    "peak_precision",
    "render_markdown",
]

log = logging.getLogger("bertrt.benchmarks")
RESULTS = Path(__file__).resolve().parent / "results"
PAUSE_S = 0.05
#: (M, K, N) of the default run: a BERT-base-like FFN shape at 1024 tokens, and two large squares
SHAPES = ((1024, 768, 3072), (2048, 2048, 2048), (4096, 4096, 4096))
#: backend -> precision (data; the order of the tables)
BACKENDS = {
    "ort MatMulInteger u8s8": "int8",
    "ort MatMulIntegerToFloat u8s8": "int8",
    "openvino MatMul bf16": "bf16",
    "torch matmul bf16": "bf16",
    "ort MatMul fp32": "fp32",
    "openvino MatMul fp32": "fp32",
    "torch matmul fp32": "fp32",
}


# ----------------------------------------------------------------------------------- op counting


#: the heads :func:`encoder_ops` counts (its callers' workloads); the formula is bertrt.bench.ops'
_HEADS = (None, "feature-extraction", "token-classification", "text-classification")


def encoder_ops(config: dict | str | Path, seq_len: int, task: str | None = None) -> int:
    """Ops (2 per multiply-add) of the matmuls of one sequence of ``seq_len`` tokens through a BERT-like
    encoder (``config``: a config.json dict or its path), plus the ``task``'s head (None: no head): the
    runtime's config estimate, :func:`bertrt.bench.ops.config_coefficients`."""
    from bertrt.bench.ops import config_coefficients

    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text(encoding="utf-8"))
    if seq_len < 0:
        raise ValueError(f"seq_len must be >= 0, got {seq_len}")
    if task not in _HEADS:
        raise ValueError(f"unknown task {task!r} for the head's op count")
    a, b, c = config_coefficients(config, task)
    length = int(seq_len)
    return a + b * length + c * length * length


def batches_gop(config: dict | str | Path, shapes, task: str | None = None) -> float:
    """GOP of running padded batches of ``shapes`` ((rows, width) each): rows x one sequence of width."""
    if not isinstance(config, dict):
        config = json.loads(Path(config).read_text(encoding="utf-8"))
    return sum(int(rows) * encoder_ops(config, int(width), task) for rows, width in shapes) / 1e9


def fraction_of_peak(texts_per_s: float, gop_per_text: float, peak_gops: float) -> float:
    """The share of ``peak_gops`` a system doing ``gop_per_text`` at ``texts_per_s`` sustains."""
    if peak_gops <= 0:
        raise ValueError(f"peak must be positive, got {peak_gops} GOP/s")
    return texts_per_s * gop_per_text / peak_gops


#: bench system -> the precision its GEMMs run at (the peer's comes from its compiled model)
SYSTEM_PRECISION = {
    "pytorch": "fp32",
    "optimum-fp32": "fp32",
    "optimum-native-fp32": "fp32",
    "bertrt-fp32": "fp32",
    "optimum-int8": "int8",
    "optimum-native-int8": "int8",
    "bertrt-int8": "int8",
    "ort-raw": "int8",
}


def peak_precision(system: str, reported: str | None = None) -> str | None:
    """The precision whose peak ``system`` is compared with; ``reported`` (an inference precision a
    system states, e.g. OpenVINO's ``bf16`` / ``f32``) wins over the table."""
    if reported:
        text = str(reported).lower()
        if "bf16" in text or "bfloat16" in text:
            return "bf16"
        if "f32" in text or "float32" in text:
            return "fp32"
    return SYSTEM_PRECISION.get(system)


def load_peaks(path: Path | None = None, cpu: str | None = None) -> dict | None:
    """The saved peak measurement (None when absent, unreadable, or measured on another CPU than ``cpu``)."""
    path = Path(path) if path is not None else RESULTS / "gemm_peak.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    measured_on = saved.get("machine", {}).get("cpu")
    if cpu is not None and measured_on != cpu:
        log.warning("ignoring %s: measured on %r, this CPU is %r", path, measured_on, cpu)
        return None
    if not saved.get("peaks"):
        return None
    return {"path": str(path), "machine": saved.get("machine", {}), "peaks": saved["peaks"]}


# ------------------------------------------------------------------------------------ measuring


def _ort_graph(kind: str, m: int, k: int, n: int, folder: Path):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    if kind == "fp32":
        w = numpy_helper.from_array(rng.standard_normal((k, n), dtype=np.float32), "w")
        node = helper.make_node("MatMul", ["a", "w"], ["y"])
        a_type, y_type, inits = TensorProto.FLOAT, TensorProto.FLOAT, [w]
        feed = rng.standard_normal((m, k), dtype=np.float32)
    else:
        inits = [
            numpy_helper.from_array(rng.integers(-127, 128, size=(k, n), dtype=np.int8), "w"),
            numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
            numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
        ]
        a_type = TensorProto.UINT8
        feed = rng.integers(0, 256, size=(m, k), dtype=np.uint8)
        if kind == "MatMulInteger":
            node = helper.make_node("MatMulInteger", ["a", "w", "a_zp", "w_zp"], ["y"])
            y_type = TensorProto.INT32
        else:
            inits += [
                numpy_helper.from_array(np.array(0.02, np.float32), "a_scale"),
                numpy_helper.from_array(np.full((n,), 0.01, np.float32), "w_scale"),
            ]
            node = helper.make_node(
                "MatMulIntegerToFloat",
                ["a", "w", "a_scale", "w_scale", "a_zp", "w_zp"],
                ["y"],
                domain="com.microsoft",
            )
            y_type = TensorProto.FLOAT
    graph = helper.make_graph(
        [node],
        f"gemm_{kind}",
        [helper.make_tensor_value_info("a", a_type, [m, k])],
        [helper.make_tensor_value_info("y", y_type, [m, n])],
        inits,
    )
    path = folder / f"{kind}-{m}x{k}x{n}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=opsets), str(path))
    return path, {"a": feed}


def _ort_runner(kind: str, threads: int, folder: Path):
    def make(m, k, n):
        import onnxruntime as ort

        from bertrt.session import session_options

        path, feed = _ort_graph(kind, m, k, n, folder)
        session = ort.InferenceSession(
            str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
        )
        return lambda: session.run(None, feed), None

    return make


def _openvino_runner(precision: str, threads: int):
    def make(m, k, n):
        import numpy as np
        import openvino as ov
        import openvino.opset13 as ops

        rng = np.random.default_rng(0)
        a = ops.parameter([m, k], ov.Type.f32, name="a")
        w = ops.constant(rng.standard_normal((k, n), dtype=np.float32))
        model = ov.Model([ops.matmul(a, w, False, False)], [a], f"gemm_{precision}")
        config = {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads,
            "PERFORMANCE_HINT": "LATENCY",
        }
        compiled = ov.Core().compile_model(model, "CPU", config)
        got = compiled.get_property("INFERENCE_PRECISION_HINT")
        got = got.to_string() if hasattr(got, "to_string") else str(got)
        request = compiled.create_infer_request()
        feed = {0: rng.standard_normal((m, k), dtype=np.float32)}
        return lambda: request.infer(feed), f"compiled INFERENCE_PRECISION_HINT={got}"

    return make


def _torch_runner(precision: str, threads: int):
    def make(m, k, n):
        import torch

        torch.set_num_threads(threads)
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(m, k, generator=gen).to(dtype)
        w = torch.randn(k, n, generator=gen).to(dtype)

        def run():
            with torch.inference_mode():
                torch.matmul(a, w)

        return run, f"torch {torch.__version__}"

    return make


def _runners(threads: int, folder: Path) -> dict:
    return {
        "ort MatMulInteger u8s8": _ort_runner("MatMulInteger", threads, folder),
        "ort MatMulIntegerToFloat u8s8": _ort_runner("MatMulIntegerToFloat", threads, folder),
        "openvino MatMul bf16": _openvino_runner("bf16", threads),
        "torch matmul bf16": _torch_runner("bf16", threads),
        "ort MatMul fp32": _ort_runner("fp32", threads, folder),
        "openvino MatMul fp32": _openvino_runner("f32", threads),
        "torch matmul fp32": _torch_runner("fp32", threads),
    }


def measure(
    shapes=SHAPES,
    threads: int | None = None,
    runs: int = 5,
    backends: list[str] | None = None,
    min_run_s: float = 0.2,
) -> dict:
    """GOP/s of every backend on every shape (median, min, max of ``runs`` runs) and each precision's peak.

    Every case (backend x shape) is built and warmed up first, then timed in ``runs`` interleaved rounds
    (rotating order, a short pause between cases). A run repeats the GEMM enough times (from the warm-up's
    time) to last about ``min_run_s``, so small shapes are not timed on one call of a few milliseconds."""
    from benchmarks.hardware import machine_info

    if runs < 1:
        raise ValueError(f"runs must be >= 1, got {runs}")
    if threads is None:
        from bertrt.session import physical_cores

        threads = physical_cores()
    names = list(backends or BACKENDS)
    unknown = [b for b in names if b not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend(s) {unknown}; expected {', '.join(BACKENDS)}")
    started = time.perf_counter()
    info = machine_info()
    rows, skipped = [], {}
    with tempfile.TemporaryDirectory(prefix="bertrt-gemm-") as tmp:
        runners = _runners(threads, Path(tmp))
        cases = []  # (backend, shape, run, calls per run, note), all built and warmed up first
        for name in names:
            for m, k, n in shapes:
                try:
                    run, note = runners[name](m, k, n)
                    run()  # warm-up: packs weights, compiles, fills caches
                    start = time.perf_counter()
                    run()
                    reps = max(1, min(1000, round(min_run_s / max(time.perf_counter() - start, 1e-6))))
                except Exception as exc:  # a backend this machine lacks is listed, not fatal
                    skipped[name] = f"{type(exc).__name__}: {exc}"[:300]
                    break
                cases.append((name, (m, k, n), run, reps, note))
        seconds: list[list[float]] = [[] for _ in cases]
        for r in range(runs):  # interleaved rounds: a burst of load on a shared machine hits every case
            for i in [(j + r) % len(cases) for j in range(len(cases))]:
                _, _, run, reps, _ = cases[i]
                start = time.perf_counter()
                for _ in range(reps):
                    run()
                seconds[i].append((time.perf_counter() - start) / reps)
                time.sleep(PAUSE_S)  # let one library's spinning threads settle before the next
        for (name, (m, k, n), _, reps, note), secs in zip(cases, seconds):
            gops = [2.0 * m * k * n / t / 1e9 for t in secs]
            rows.append(
                {
                    "backend": name,
                    "precision": BACKENDS[name],
                    "shape": [m, k, n],
                    "median_gops": statistics.median(gops),
                    "min_gops": min(gops),
                    "max_gops": max(gops),
                    "runs_gops": [round(g, 2) for g in gops],
                    "calls_per_run": reps,
                    "note": note,
                }
            )
        del cases
    peaks = {}
    for row in rows:
        best = peaks.get(row["precision"])
        if best is None or row["median_gops"] > best["gops"]:
            peaks[row["precision"]] = {
                "gops": row["median_gops"],
                "min_gops": row["min_gops"],
                "max_gops": row["max_gops"],
                "backend": row["backend"],
                "shape": row["shape"],
            }
    for precision, peak in peaks.items():  # the fastest single run: what an unloaded machine reaches
        peak["best_run_gops"] = max(r["max_gops"] for r in rows if r["precision"] == precision)
    return {
        "machine": {
            k: info.get(k)
            for k in ("cpu", "cpu_flags", "physical_cores", "logical_cpus", "load_average", "versions")
        },
        "threads": threads,
        "runs": runs,
        "min_run_s": min_run_s,
        "shapes": [list(s) for s in shapes],
        "rows": rows,
        "peaks": peaks,
        "skipped": skipped,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "total_s": round(time.perf_counter() - started, 1),
    }


def render_markdown(result: dict) -> str:
    m = result["machine"]
    lines = [
        "# Measured GEMM peaks",
        "",
        f"Machine: {m.get('cpu')}, {m.get('physical_cores')} physical cores ({m.get('logical_cpus')} logical), "
        f"flags {', '.join(m.get('cpu_flags') or []) or '?'}; load average at start {m.get('load_average')}, "
        f"at end {result.get('load_average_end')}. "
        f"{result['threads']} threads; single-operator GEMMs, M×K×N, 2 ops per multiply-add; median of "
        f"{result['runs']} interleaved rounds after one warm-up (a run repeats the GEMM for about "
        f"{result.get('min_run_s', 0):g} s), min–max in parentheses. "
        "Command: `python -m benchmarks.gemm_peak`.",
        "",
        "| backend | precision | " + " | ".join("×".join(map(str, s)) for s in result["shapes"]) + " |",
        "|---|---|" + "---:|" * len(result["shapes"]),
    ]
    for name in BACKENDS:
        cells = {tuple(r["shape"]): r for r in result["rows"] if r["backend"] == name}
        if not cells and name not in result["skipped"]:
            continue
        if name in result["skipped"] and not cells:
            lines.append(f"| {name} | {BACKENDS[name]} | skipped: {result['skipped'][name]} |")
            continue
        row = [
            f"{cells[tuple(s)]['median_gops']:.0f} ({cells[tuple(s)]['min_gops']:.0f}–"
            f"{cells[tuple(s)]['max_gops']:.0f})"
            if tuple(s) in cells
            else "–"
            for s in result["shapes"]
        ]
        lines.append(f"| {name} | {BACKENDS[name]} | " + " | ".join(row) + " |")
    lines += [
        "",
        "Peaks (best median per precision, GOP/s; the fastest single run of any backend and shape after it: "
        "a median well below it means the cores were shared during the run):",
        "",
    ]
    for precision, p in result["peaks"].items():
        lines.append(
            f"- {precision}: **{p['gops']:.0f}** ({p['min_gops']:.0f}–{p['max_gops']:.0f}), "
            f"{p['backend']} at {'×'.join(map(str, p['shape']))}; fastest run {p.get('best_run_gops', 0):.0f}"
        )
    notes = sorted({r["note"] for r in result["rows"] if r.get("note")})
    if notes:
        lines += ["", "Notes: " + "; ".join(notes) + "."]
    lines += ["", f"Run time {result['total_s']:.0f} s."]
    return "\n".join(lines) + "\n"


def _shape(text: str) -> tuple[int, int, int]:
    try:
        m, k, n = (int(x) for x in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"shape must be MxKxN (e.g. 1024x1024x4096), got {text!r}") from exc
    if min(m, k, n) <= 0:
        raise argparse.ArgumentTypeError(f"shape dimensions must be positive, got {text!r}")
    return m, k, n


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shapes",
        type=_shape,
        nargs="+",
        default=list(SHAPES),
        help="MxKxN shapes (default: " + " ".join("x".join(map(str, s)) for s in SHAPES) + ")",
    )
    parser.add_argument("--runs", type=int, default=5, help="timed runs per backend and shape (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="default: physical cores")
    parser.add_argument("--backends", default=None, help=f"comma-separated subset of: {', '.join(BACKENDS)}")
    parser.add_argument("--no-write", action="store_true", help="print only; leave results/ as it is")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.runs < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--runs and --threads must be positive")
    backends = [b.strip() for b in args.backends.split(",")] if args.backends else None
    try:
        result = measure(args.shapes, args.threads, args.runs, backends)
    except ValueError as exc:
        parser.error(str(exc))
    text = render_markdown(result)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "gemm_peak.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        (RESULTS / "gemm_peak.md").write_text(text, encoding="utf-8")
        print(f"wrote {RESULTS / 'gemm_peak.json'} and gemm_peak.md", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
