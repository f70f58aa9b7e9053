"""Machine-side figures for the benchmark report: int8 peak, model GOPs, installed sizes, machine info.

* :func:`measure_int8_peak`: GOP/s of onnxruntime's int8 GEMM kernels on this machine, from two large
  single-operator ONNX graphs: ``MatMulInteger`` (uint8 x int8 -> int32) and ``DynamicQuantizeMatMul``
  (float activations quantized at run time, int8 weights: the operator a dynamic-int8 model runs). The
  peak is the best run of the faster graph. 1 MAC = 2 ops.
* :func:`gops_per_token`: 2 x K x N of every weight matrix a token passes through (MatMul-family and
  Attention-family nodes whose weight is a 2-D initializer). Attention's score and context products
  (which grow with sequence length and run in fp32) are not counted; the embedding lookups neither.
* :func:`installed_size`: bytes of the files each installed distribution lists in its RECORD, summed over
  the dependency closure of the given roots (declared ``Requires-Dist``, markers evaluated, extras not
  followed) in this environment.
"""

from __future__ import annotations

import logging
import os
import platform
import re
import tempfile
import time
from pathlib import Path

__all__ = ["gops_per_token", "installed_size", "machine_info", "measure_int8_peak"]

_WEIGHT_OPS = {
    "MatMul": 1,
    "MatMulInteger": 1,
    "DynamicQuantizeMatMul": 1,
    "MatMulIntegerToFloat": 1,
    "FusedMatMul": 1,
    "Gemm": 1,
    "Attention": 1,
    "QAttention": 1,
    "QLinearMatMul": 3,
}


def gops_per_token(onnx_path: str | os.PathLike) -> float:
    """GOPs (1e9 ops, 2 per multiply-add) of the weight matrices one token runs through."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    ops = 0
    for node in model.graph.node:
        index = _WEIGHT_OPS.get(node.op_type)
        if index is None or len(node.input) <= index:
            continue
        dims = shapes.get(node.input[index])
        if dims is None or len(dims) != 2:
            continue
        ops += 2 * dims[0] * dims[1]
    return ops / 1e9


def _peak_graphs(m: int, k: int, n: int, folder: Path) -> dict[str, tuple[Path, dict]]:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    weight = rng.integers(-127, 128, size=(k, n), dtype=np.int8)
    graphs = {}

    a = helper.make_tensor_value_info("a", TensorProto.UINT8, [m, k])
    y = helper.make_tensor_value_info("y", TensorProto.INT32, [m, n])
    node = helper.make_node("MatMulInteger", ["a", "w", "a_zp", "w_zp"], ["y"])
    g = helper.make_graph(
        [node],
        "mmi",
        [a],
        [y],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(128, np.uint8), "a_zp"),
            numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
        ],
    )
    path = folder / "matmulinteger.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    graphs["MatMulInteger"] = (path, {"a": rng.integers(0, 256, size=(m, k), dtype=np.uint8)})

    af = helper.make_tensor_value_info("a", TensorProto.FLOAT, [m, k])
    yf = helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, n])
    node = helper.make_node(
        "DynamicQuantizeMatMul", ["a", "w", "w_scale", "w_zp"], ["y"], domain="com.microsoft"
    )
    g = helper.make_graph(
        [node],
        "dqmm",
        [af],
        [yf],
        [
            numpy_helper.from_array(weight, "w"),
            numpy_helper.from_array(np.array(0.01, np.float32), "w_scale"),
            numpy_helper.from_array(np.array(0, np.int8), "w_zp"),
        ],
    )
    path = folder / "dynamicquantizematmul.onnx"
    onnx.save(
        helper.make_model(
            g, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
        ),
        str(path),
    )
    graphs["DynamicQuantizeMatMul"] = (path, {"a": rng.standard_normal((m, k), dtype=np.float32)})
    return graphs


def measure_int8_peak(threads: int, m: int = 1024, k: int = 1024, n: int = 4096, runs: int = 5) -> dict:
    """Best GOP/s of each int8 GEMM graph (``runs`` timed runs after one warm-up) and the peak."""
    import onnxruntime as ort

    from bertrt.session import session_options

    ops = 2.0 * m * k * n
    result: dict = {"shape": [m, k, n], "threads": threads, "runs": runs, "graphs": {}}
    with tempfile.TemporaryDirectory(prefix="bertrt-peak-") as tmp:
        for name, (path, feed) in _peak_graphs(m, k, n, Path(tmp)).items():
            session = ort.InferenceSession(
                str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
            )
            session.run(None, feed)
            times = []
            for _ in range(runs):
                start = time.perf_counter()
                session.run(None, feed)
                times.append(time.perf_counter() - start)
            result["graphs"][name] = {
                "best_gops": ops / min(times) / 1e9,
                "median_gops": ops / sorted(times)[len(times) // 2] / 1e9,
            }
    best = max(result["graphs"].items(), key=lambda kv: kv[1]["best_gops"])
    result["peak_gops"] = best[1]["best_gops"]
    result["peak_graph"] = best[0]
    return result


# ------------------------------------------------------------------------------------- install size


def _requirement_names(dist) -> list[str]:
    from packaging.requirements import Requirement

    names = []
    for line in dist.requires or []:
        try:
            req = Requirement(line)
        except Exception as exc:  # an unparsable requirement line is skipped, not fatal
            logging.getLogger("bertrt.benchmarks").warning(
                "%s: skipping requirement %r (%s)", dist.name, line, exc
            )
            continue
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        names.append(req.name)
    return names


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_size(roots: list[str]) -> dict:
    """Bytes on disk of the roots' dependency closure: ``{"total_bytes", "packages": {name: bytes},
    "missing": [...]}`` (a requirement not installed here is listed in ``missing``)."""
    from importlib import metadata

    seen: dict[str, int] = {}
    missing: list[str] = []
    todo = list(roots)
    while todo:
        name = _norm(todo.pop())
        if name in seen or name in missing:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
            continue
        size = 0
        for f in dist.files or []:
            try:
                size += Path(dist.locate_file(f)).stat().st_size
            except OSError:
                pass
        seen[name] = size
        todo.extend(_requirement_names(dist))
    return {
        "roots": list(roots),
        "total_bytes": sum(seen.values()),
        "packages": dict(sorted(seen.items(), key=lambda kv: -kv[1])),
        "missing": sorted(missing),
    }


def machine_info() -> dict:
    """CPU model, cores, flags that matter for int8, memory, library versions."""
    from importlib import metadata

    info: dict = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "logical_cpus": os.cpu_count(),
    }
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
        model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
        flags = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
        info["cpu"] = model.group(1).strip() if model else platform.processor()
        wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_int8")
        info["cpu_flags"] = [f for f in wanted if flags and f in flags.group(1).split()]
        mem = re.search(r"^MemTotal:\s*(\d+)", Path("/proc/meminfo").read_text(), re.MULTILINE)
        info["memory_gib"] = round(int(mem.group(1)) / 2**20, 1) if mem else None
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        info["cpu"] = platform.processor()
    from bertrt.session import physical_cores

    info["physical_cores"] = physical_cores()
    info["versions"] = {}
    for dist in ("onnxruntime", "tokenizers", "numpy", "torch", "transformers", "optimum", "optimum-onnx"):
        try:
            info["versions"][dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            info["versions"][dist] = None
    return info
