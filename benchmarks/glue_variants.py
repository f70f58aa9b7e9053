"""The glue variants that lost (docs/speed.md section 6), rebuilt from a per-token int8 graph for
:mod:`benchmarks.glue_speed`. Each applies one change to the exporter's graph:

- ``a_scale``: the row-scale ``Div`` after each GEMM dropped, the per-row scale ``max|x|/127`` passed as
  ``MatMulIntegerToFloat``'s ``a_scale`` [B, S, 1] (onnxruntime then scales its output in place);
- ``per-axis``: ``Mul`` + ``QuantizeLinear`` (scale 1) replaced by one per-axis ``QuantizeLinear`` on the
  [rows, K] view with the per-row scale (and ``a_scale`` as above);
- ``skip-layernorm``: residual ``Add`` + bias ``Add`` + ``LayerNormalization`` fused back into
  ``SkipLayerNormalization``.

(``minmax``, the row's max|x| from ReduceMax and ReduceMin, was a variant here and is now the exporter's
form: ``rewrite_matmuls(row_max="minmax")``.)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["VARIANTS", "build"]


def _index(model):
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    return producers, consumers


def _const(model, name: str, value) -> str:
    from onnx import numpy_helper

    if not any(i.name == name for i in model.graph.initializer):
        model.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
    return name


def _replace(model, replacements: dict) -> None:
    """Each node named in ``replacements`` is replaced by its list of nodes (empty: removed)."""
    nodes = []
    for n in model.graph.node:
        nodes.extend(replacements.get(n.name, [n]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)


def _chains(model) -> list[dict]:
    """The per-token quantization chains: the row max (``safe``), Div (inv), Mul, QuantizeLinear, and the
    GEMMs (with their row-scale Div) that read the quantized tensor."""
    producers, consumers = _index(model)
    out = []
    for q in model.graph.node:
        if q.op_type != "QuantizeLinear" or not q.name.endswith("/Quantize"):
            continue
        mul = producers[q.input[0]]
        inv = producers[mul.input[1]]
        safe = producers[inv.input[1]]
        gemms = [c for c in consumers[q.output[0]] if c.op_type == "MatMulIntegerToFloat"]
        out.append(
            {
                "x": mul.input[0],
                "prefix": q.name.rsplit("/", 1)[0],
                "q": q,
                "mul": mul,
                "inv": inv,
                "safe": safe,
                "gemms": [(g, consumers[g.output[0]][0]) for g in gemms],
            }
        )
    return out


def _a_scale(model, rep: dict, c: dict) -> str:
    from onnx import helper

    s = f"{c['prefix']}_s"
    for gemm, div in c["gemms"]:
        rep[gemm.name] = [
            helper.make_node(
                "MatMulIntegerToFloat",
                [gemm.input[0], gemm.input[1], s, *gemm.input[3:]],
                list(div.output),
                name=gemm.name,
                domain="com.microsoft",
            )
        ]
        rep[div.name] = []
    return s


def a_scale(model):
    from onnx import helper

    q127 = _const(model, "glue_q127", np.array(127.0, np.float32))
    rep = {}
    for c in _chains(model):
        s = _a_scale(model, rep, c)
        rep[c["inv"].name] = [c["inv"], helper.make_node("Div", [c["safe"].output[0], q127], [s], name=s)]
    _replace(model, rep)
    return model


def per_axis(model):
    from onnx import helper

    q127 = _const(model, "glue_q127", np.array(127.0, np.float32))
    flat = _const(model, "glue_flat", np.array([-1], np.int64))
    zp = _const(model, "glue_zp", np.array([128], np.uint8))
    rep = {}
    for c in _chains(model):
        p, x = c["prefix"], c["x"]
        s = _a_scale(model, rep, c)
        rep[c["inv"].name] = [helper.make_node("Div", [c["safe"].output[0], q127], [s], name=s)]
        rep[c["mul"].name] = [
            helper.make_node("Shape", [x], [f"{p}_shape"], name=f"{p}/Shape"),
            helper.make_node("Shape", [x], [f"{p}_k"], name=f"{p}/K", start=-1),
            helper.make_node("Concat", [flat, f"{p}_k"], [f"{p}_2d"], name=f"{p}/Rows2d", axis=0),
            helper.make_node("Reshape", [x, f"{p}_2d"], [f"{p}_x2"], name=f"{p}/X2d"),
            helper.make_node("Reshape", [s, flat], [f"{p}_s1"], name=f"{p}/S1d"),
            helper.make_node("Shape", [f"{p}_s1"], [f"{p}_rows"], name=f"{p}/Rows"),
            helper.make_node("Expand", [zp, f"{p}_rows"], [f"{p}_zp"], name=f"{p}/Zp"),
        ]
        rep[c["q"].name] = [
            helper.make_node(
                "QuantizeLinear", [f"{p}_x2", f"{p}_s1", f"{p}_zp"], [f"{p}_q2"], name=c["q"].name, axis=0
            ),
            helper.make_node("Reshape", [f"{p}_q2", f"{p}_shape"], list(c["q"].output), name=f"{p}/Back"),
        ]
    _replace(model, rep)
    return model


def skip_layernorm(model):
    from onnx import helper

    producers, _ = _index(model)
    rep = {}
    for n in model.graph.node:
        if n.op_type != "LayerNormalization" or not n.name.endswith("_split/LayerNormalization"):
            continue
        bias_add = producers[n.input[0]]
        residual = producers[bias_add.input[0]]
        eps = next((helper.get_attribute_value(a) for a in n.attribute if a.name == "epsilon"), 1e-12)
        rep[residual.name], rep[bias_add.name] = [], []
        rep[n.name] = [
            helper.make_node(
                "SkipLayerNormalization",
                [residual.input[0], residual.input[1], n.input[1], n.input[2], bias_add.input[1]],
                list(n.output),
                name=n.name,
                domain="com.microsoft",
                epsilon=eps,
            )
        ]
    _replace(model, rep)
    return model


VARIANTS = {
    "a_scale": a_scale,
    "per-axis": per_axis,
    "skip-layernorm": skip_layernorm,
}


def build(src: Path, folder: Path) -> dict[str, Path]:
    """{"variant NAME": path}: each variant of ``src`` written once into ``folder``."""
    import onnx

    out = {}
    for name, rewrite in VARIANTS.items():
        path = Path(folder) / f"model.int8.{name}.onnx"
        if not path.is_file():
            onnx.save(rewrite(onnx.load(str(src))), str(path))
        out[f"variant {name}"] = path
    return out
