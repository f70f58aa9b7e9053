"""This machine's GEMM peak per precision, measured in a few seconds for ``bertrt bench``'s "% of peak".

One single-operator graph per precision, a BERT-base FFN shape (:data:`SHAPE`, M x K x N) with a constant
weight, timed with the bench's threads in interleaved rounds (rotating order), the median round kept:

========= ===================================================================================
int8      onnxruntime ``MatMulIntegerToFloat`` (uint8 x int8 constant weight, scaled to float in
          the kernel: the op bertrt's per-token int8 graphs run)
fp32      onnxruntime ``MatMul`` (MLAS sgemm)
bf16      OpenVINO ``MatMul`` compiled with ``INFERENCE_PRECISION_HINT=bf16`` (only when a bf16
          row runs: the bertrt openvino bf16 backend is installed and the CPU has bf16)
========= ===================================================================================

The runtime does not depend on the ``onnx`` package, so the two ONNX graphs are written here as protobuf
bytes by hand (:func:`gemm_model`: the handful of ModelProto fields a one-node graph needs) and handed
to ``onnxruntime.InferenceSession`` as bytes. GOP/s = 2·M·K·N / seconds / 1e9. The repository's
``python -m benchmarks.gemm_peak`` is the long form (several shapes and libraries).
"""

from __future__ import annotations

import logging
import statistics
import time

__all__ = ["SHAPE", "gemm_model", "measure_peaks"]

log = logging.getLogger("bertrt")

#: (M, K, N): 1024 tokens through a BERT-base FFN up-projection
SHAPE = (1024, 768, 3072)
#: onnx TensorProto data types used here
_FLOAT, _UINT8, _INT8 = 1, 2, 3


# -- protobuf wire format: varints and length-delimited fields, enough for a one-node ModelProto ----------
def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes | str) -> bytes:
    data = payload.encode() if isinstance(payload, str) else payload
    return _varint((field << 3) | 2) + _varint(len(data)) + data


def _tensor(name: str, dtype: int, dims: tuple[int, ...], raw: bytes) -> bytes:
    """TensorProto: dims (1), data_type (2), name (8), raw_data (9)."""
    return b"".join(_int(1, d) for d in dims) + _int(2, dtype) + _bytes(8, name) + _bytes(9, raw)


def _value_info(name: str, dtype: int, dims: tuple[int, ...]) -> bytes:
    """ValueInfoProto name (1), type (2) = TypeProto.tensor_type (1) {elem_type (1), shape (2)}."""
    shape = b"".join(_bytes(1, _int(1, d)) for d in dims)  # TensorShapeProto.dim {dim_value}
    return _bytes(1, name) + _bytes(2, _bytes(1, _int(1, dtype) + _bytes(2, shape)))


def _node(op: str, inputs: list[str], outputs: list[str], domain: str = "") -> bytes:
    """NodeProto: input (1), output (2), op_type (4), domain (7)."""
    body = b"".join(_bytes(1, i) for i in inputs) + b"".join(_bytes(2, o) for o in outputs)
    return body + _bytes(4, op) + (_bytes(7, domain) if domain else b"")


def gemm_model(precision: str, m: int, k: int, n: int, seed: int = 0) -> tuple[bytes, dict]:
    """(serialized ModelProto, feeds) of ``y = a @ w`` with a constant random ``w``: ``precision``
    "fp32" (MatMul) or "int8" (com.microsoft MatMulIntegerToFloat, uint8 a x int8 w)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    if precision == "fp32":
        inits = [_tensor("w", _FLOAT, (k, n), rng.standard_normal((k, n), dtype=np.float32).tobytes())]
        node = _node("MatMul", ["a", "w"], ["y"])
        a_type, feed = _FLOAT, rng.standard_normal((m, k), dtype=np.float32)
    elif precision == "int8":
        weight = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
        inits = [
            _tensor("w", _INT8, (k, n), weight.tobytes()),
            _tensor("a_scale", _FLOAT, (), np.float32(0.02).tobytes()),
            _tensor("w_scale", _FLOAT, (n,), np.full(n, 0.01, np.float32).tobytes()),
            _tensor("a_zp", _UINT8, (), np.uint8(128).tobytes()),
            _tensor("w_zp", _INT8, (), np.int8(0).tobytes()),
        ]
        args = ["a", "w", "a_scale", "w_scale", "a_zp", "w_zp"]
        node = _node("MatMulIntegerToFloat", args, ["y"], "com.microsoft")
        a_type, feed = _UINT8, rng.integers(0, 256, size=(m, k), dtype=np.uint8)
    else:
        raise ValueError(f"no ONNX GEMM graph for precision {precision!r}")
    graph = (
        _bytes(1, node)
        + _bytes(2, f"gemm_{precision}")
        + b"".join(_bytes(5, t) for t in inits)
        + _bytes(11, _value_info("a", a_type, (m, k)))
        + _bytes(12, _value_info("y", _FLOAT, (m, n)))
    )
    opsets = _bytes(8, _bytes(1, "") + _int(2, 17)) + _bytes(8, _bytes(1, "com.microsoft") + _int(2, 1))
    return _int(1, 8) + _bytes(7, graph) + opsets, {"a": feed}  # ir_version 8, graph, opset_import


def _onnxruntime_case(precision: str, threads: int):
    import onnxruntime as ort

    from ..session import session_options

    model, feeds = gemm_model(precision, *SHAPE)
    session = ort.InferenceSession(
        model, sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )
    return lambda: session.run(None, feeds)


def _openvino_bf16_case(threads: int):
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    m, k, n = SHAPE
    rng = np.random.default_rng(0)
    a = ops.parameter([m, k], ov.Type.f32, name="a")
    weight = ops.constant(rng.standard_normal((k, n), dtype=np.float32))
    model = ov.Model([ops.matmul(a, weight, False, False)], [a], "gemm_bf16")
    config = {"INFERENCE_PRECISION_HINT": "bf16", "INFERENCE_NUM_THREADS": threads}
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()
    feeds = {0: rng.standard_normal((m, k), dtype=np.float32)}
    return lambda: request.infer(feeds)


def measure_peaks(threads: int, precisions=("int8", "fp32"), rounds: int = 5, run_s: float = 0.2) -> dict:
    """``{"peaks": {precision: {"gops", "min_gops", "max_gops", "library", "shape"}}, "threads", "rounds",
    "seconds"}``: GOP/s per precision (median of the rounds, min-max) and what the step took. Each case is warmed up, then timed in ``rounds`` interleaved
    rounds of about ``run_s`` each; a precision whose library cannot run here is left out (logged)."""
    started = time.perf_counter()
    builders = {
        "int8": ("onnxruntime MatMulIntegerToFloat", lambda: _onnxruntime_case("int8", threads)),
        "fp32": ("onnxruntime MatMul", lambda: _onnxruntime_case("fp32", threads)),
        "bf16": ("openvino MatMul bf16", lambda: _openvino_bf16_case(threads)),
    }
    cases = []  # (precision, library, run, calls per round)
    for precision in precisions:
        library, build = builders[precision]
        try:
            run = build()
            run()  # warm-up: packs the weight
            start = time.perf_counter()
            run()
            calls = max(1, round(run_s / max(time.perf_counter() - start, 1e-6)))
        except Exception as exc:  # a library or instruction set this machine lacks: no peak for it
            log.warning("bench: no %s GEMM peak (%s: %s)", precision, type(exc).__name__, exc)
            continue
        cases.append((precision, library, run, calls))
    seconds: list[list[float]] = [[] for _ in cases]
    for r in range(rounds):
        for i in [(j + r) % len(cases) for j in range(len(cases))]:
            _, _, run, calls = cases[i]
            start = time.perf_counter()
            for _ in range(calls):
                run()
            seconds[i].append((time.perf_counter() - start) / calls)
    m, k, n = SHAPE
    peaks: dict = {}
    for (precision, library, _, _), secs in zip(cases, seconds):
        gops = [2.0 * m * k * n / s / 1e9 for s in secs]
        peaks[precision] = {
            "gops": round(statistics.median(gops), 1),
            "min_gops": round(min(gops), 1),
            "max_gops": round(max(gops), 1),
            "library": library,
            "shape": list(SHAPE),
        }
    return {
        "peaks": peaks,
        "threads": threads,
        "rounds": rounds,
        "seconds": round(time.perf_counter() - started, 2),
    }
