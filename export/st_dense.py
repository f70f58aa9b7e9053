"""The sentence-embedding head of a checkpoint with Dense modules: Pooling -> Dense... in the graph.

sentence-transformers applies its Dense modules after the pooling, so their weights can only go in a graph
that pools. :func:`wrap` returns the loaded encoder unchanged for a checkpoint without Dense modules (the
runtime pools the token vectors in numpy); with them, :class:`DenseHead`: the PyTorch reference (the
encoder's ``last_hidden_state`` and the pooled, projected ``sentence_embedding``), whose
:meth:`finish_graph` appends the same pooling and each Dense (``linear`` + its activation) to optimum's
feature-extraction graph as a second output :data:`~bertrt.tasks.sentence_embedding.DENSE_OUTPUT`
(batch, out_features). Normalize and ``truncate_dim`` stay in the runtime's numpy.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

from bertrt.errors import ExportError
from bertrt.tasks.sentence_embedding import DENSE_OUTPUT

from .sentence_transformers import read_settings

__all__ = ["GRAPH_POOLING", "ACTIVATIONS", "read_dense", "wrap"]

log = logging.getLogger("bertrt.export")

#: the pooling modes the graph computes (each the Pooling module's, without a prompt left out)
GRAPH_POOLING = ("cls", "mean", "max", "mean_sqrt_len_tokens")
#: the Dense activation class names the graph computes -> its ONNX operator (None: identity)
ACTIVATIONS = {"Tanh": "Tanh", "Identity": None, "ReLU": "Relu", "Sigmoid": "Sigmoid"}


def _weights(folder: Path):
    """``(weight (out, in), bias (out,) or None)`` float32 numpy arrays of a saved Dense module."""
    import numpy as np

    if (folder / "model.safetensors").is_file():
        from safetensors.numpy import load_file

        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        import torch

        state = {
            k: v.float().numpy()
            for k, v in torch.load(
                folder / "pytorch_model.bin", map_location="cpu", weights_only=True
            ).items()
        }
    else:
        raise ExportError(f"{folder}: no Dense weights (model.safetensors or pytorch_model.bin)")
    if "linear.weight" not in state:
        raise ExportError(f"{folder}: the Dense weights have no linear.weight")
    bias = state.get("linear.bias")
    return np.asarray(state["linear.weight"], np.float32), None if bias is None else np.asarray(
        bias, np.float32
    )


def read_dense(folder: Path) -> tuple[tuple[str, ...], list[tuple]]:
    """The checkpoint's pooling modes and its Dense layers ``(weight, bias, activation)`` in order;
    ExportError for what the graph cannot compute."""
    info = read_settings(folder) or {}
    modes = info.get("pooling") or "mean"
    modes = (modes,) if isinstance(modes, str) else tuple(modes)
    bad = [m for m in modes if m not in GRAPH_POOLING]
    if bad:
        raise ExportError(
            f"{folder}: pooling {', '.join(bad)} before Dense modules is not exported "
            f"(supported: {', '.join(GRAPH_POOLING)})"
        )
    if not info.get("include_prompt", True):
        raise ExportError(f"{folder}: include_prompt=False before Dense modules is not exported")
    layers = []
    modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    for module in modules:
        if not str(module.get("type", "")).endswith("Dense"):
            continue
        path = folder / module.get("path", "")
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        name = str(config.get("activation_function") or "torch.nn.modules.activation.Tanh").rsplit(".", 1)[-1]
        if name not in ACTIVATIONS:
            raise ExportError(
                f"{path}: Dense activation {name} is not exported (supported: {', '.join(ACTIVATIONS)})"
            )
        weight, bias = _weights(path)
        layers.append((weight, bias, name))
    return modes, layers


def wrap(model, folder: Path):
    """The loaded encoder, with the Pooling and Dense modules on top when the checkpoint has Dense ones."""
    info = read_settings(folder)
    if not info or not info.get("dense"):
        return model
    modes, layers = read_dense(folder)
    log.info(
        "sentence-embedding: pooling %s and %d Dense module(s) in the graph", "+".join(modes), len(layers)
    )
    return DenseHead(model, modes, layers)


def _module():
    import torch

    class _DenseHead(torch.nn.Module):
        """The encoder's token vectors, and their pooling through the Dense layers (the reference)."""

        def __init__(self, inner, modes, layers):
            super().__init__()
            self.inner = inner
            self.config = inner.config
            self.modes = modes
            self.layers = layers
            #: optimum's task for the inner model's graph, which :meth:`finish_graph` completes
            self.onnx_task = "feature-extraction"

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = []
            for mode in self.modes:
                if mode == "cls":
                    pooled.append(hidden[:, 0])
                elif mode == "max":
                    pooled.append(hidden.masked_fill(mask == 0, float("-inf")).amax(dim=1))
                else:
                    count = mask.sum(dim=1).clamp(min=1e-9)
                    total = (hidden * mask).sum(dim=1)
                    pooled.append(total / (count if mode == "mean" else count.sqrt()))
            x = torch.cat(pooled, dim=-1)
            for weight, bias, activation in self.layers:
                x = x @ torch.from_numpy(weight).T
                if bias is not None:
                    x = x + torch.from_numpy(bias)
                op = ACTIVATIONS[activation]
                x = {"Tanh": torch.tanh, "Relu": torch.relu, "Sigmoid": torch.sigmoid}[op](x) if op else x
            return SimpleNamespace(last_hidden_state=hidden, **{DENSE_OUTPUT: x})

        def finish_graph(self, path: Path) -> None:
            _append_head(path, self.modes, self.layers)
            _check_head(self, path)

    return _DenseHead


def DenseHead(inner, modes, layers):
    """The wrapper module (torch is imported when it is built)."""
    return _module()(inner, modes, layers)


def _check_head(module, path: Path, atol: float = 1e-4) -> None:
    """ExportError unless the graph's :data:`DENSE_OUTPUT` equals ``module``'s on a padded random batch
    (the validation step compares ``last_hidden_state`` only)."""
    import numpy as np
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    ids = rng.integers(5, max(6, min(int(module.config.vocab_size), 1000)), size=(2, 9), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 5:] = 0
    feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    feed = {i.name: feed[i.name] for i in session.get_inputs() if i.name in feed}
    got = session.run([DENSE_OUTPUT], feed)[0]
    with torch.inference_mode():
        want = getattr(module(**{k: torch.from_numpy(v) for k, v in feed.items()}), DENSE_OUTPUT).numpy()
    diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
    if not diff <= atol:
        raise ExportError(f"{path}: the graph's {DENSE_OUTPUT} differs from PyTorch's (max|Δ| {diff:.3g})")


def _append_head(path: Path, modes: tuple[str, ...], layers: list[tuple]) -> None:
    """Add the output :data:`DENSE_OUTPUT` (batch, out_features): ``last_hidden_state`` pooled (the
    attention mask's tokens) and passed through each Dense layer."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 14)
    hidden = next((o for o in graph.output if o.name == "last_hidden_state"), None)
    if hidden is None:
        raise ExportError(f"{path}: the feature-extraction graph has no 'last_hidden_state' output to pool")
    p = "st_dense_"
    init = [
        numpy_helper.from_array(np.array([-1], dtype=np.int64), p + "last_axis"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), p + "token_axis"),
        numpy_helper.from_array(np.array(0, dtype=np.int64), p + "zero"),
        numpy_helper.from_array(np.array(1e-9, dtype=np.float32), p + "eps"),
        numpy_helper.from_array(np.array(-np.inf, dtype=np.float32), p + "ninf"),
    ]
    nodes = [
        helper.make_node("Cast", ["attention_mask"], [p + "mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", [p + "mask", p + "last_axis"], [p + "mask3"]),
    ]

    def reduce(op: str, x: str, out: str) -> None:
        if op == "ReduceSum" and opset >= 13 or opset >= 18:  # axes as an input
            nodes.append(helper.make_node(op, [x, p + "token_axis"], [out], keepdims=0))
        else:
            nodes.append(helper.make_node(op, [x], [out], axes=[1], keepdims=0))

    pooled = []
    for i, mode in enumerate(modes):
        out = f"{p}pool{i}"
        if mode == "cls":
            nodes.append(helper.make_node("Gather", ["last_hidden_state", p + "zero"], [out], axis=1))
        elif mode == "max":
            nodes.append(helper.make_node("Cast", [p + "mask3"], [f"{out}_keep"], to=TensorProto.BOOL))
            nodes.append(
                helper.make_node("Where", [f"{out}_keep", "last_hidden_state", p + "ninf"], [f"{out}_x"])
            )
            reduce("ReduceMax", f"{out}_x", out)
        else:
            nodes.append(helper.make_node("Mul", ["last_hidden_state", p + "mask3"], [f"{out}_masked"]))
            reduce("ReduceSum", f"{out}_masked", f"{out}_total")
            reduce("ReduceSum", p + "mask3", f"{out}_count0")
            nodes.append(helper.make_node("Max", [f"{out}_count0", p + "eps"], [f"{out}_count"]))
            count = f"{out}_count"
            if mode == "mean_sqrt_len_tokens":
                nodes.append(helper.make_node("Sqrt", [count], [f"{out}_sqrt"]))
                count = f"{out}_sqrt"
            nodes.append(helper.make_node("Div", [f"{out}_total", count], [out]))
        pooled.append(out)
    x = pooled[0]
    if len(pooled) > 1:
        nodes.append(helper.make_node("Concat", pooled, [p + "pooled"], axis=-1))
        x = p + "pooled"
    for i, (weight, bias, activation) in enumerate(layers):
        init.append(numpy_helper.from_array(np.ascontiguousarray(weight.T), f"{p}w{i}"))
        nodes.append(helper.make_node("MatMul", [x, f"{p}w{i}"], [f"{p}mm{i}"]))
        x = f"{p}mm{i}"
        if bias is not None:
            init.append(numpy_helper.from_array(bias, f"{p}b{i}"))
            nodes.append(helper.make_node("Add", [x, f"{p}b{i}"], [f"{p}lin{i}"]))
            x = f"{p}lin{i}"
        op = ACTIVATIONS[activation]
        if op:
            nodes.append(helper.make_node(op, [x], [f"{p}act{i}"]))
            x = f"{p}act{i}"
    nodes.append(helper.make_node("Identity", [x], [DENSE_OUTPUT]))
    used = {name for node in nodes for name in node.input}
    graph.initializer.extend(t for t in init if t.name in used)
    graph.node.extend(nodes)
    out = helper.make_tensor_value_info(DENSE_OUTPUT, TensorProto.FLOAT, [None, layers[-1][0].shape[0]])
    out.type.tensor_type.shape.dim[0].CopyFrom(hidden.type.tensor_type.shape.dim[0])
    graph.output.append(out)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
