"""The sparse-embedding (SPLADE) head: sentence-transformers' ``SpladePooling`` on a masked-LM model,
inside the exported graph.

:func:`wrap` reads the pooling config of the checkpoint (``modules.json``'s ``SpladePooling`` module:
``pooling_strategy`` max or sum, ``activation_function`` relu or log1p_relu; without one, max and relu
as a ``SparseEncoder`` built on a plain masked-LM checkpoint has them) and returns :class:`SpladeHead`:
the PyTorch reference the validation step compares with, whose :meth:`SpladeHead.finish_graph` appends
the same pooling to optimum's fill-mask graph. The graph's output ``sparse_embedding`` (batch,
vocabulary) replaces the per-token logits, which would be far too large to hand back.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

from bertrt.errors import ExportError
from bertrt.tasks.sparse_embedding import OUTPUT

__all__ = ["POOLING_STRATEGIES", "SpladeHead", "read_pooling", "wrap"]

log = logging.getLogger("bertrt.export")

POOLING_STRATEGIES = ("max", "sum")
_ACTIVATIONS = ("relu", "log1p_relu")


def read_pooling(folder: Path) -> tuple[str, str]:
    """``(pooling_strategy, activation_function)`` of the checkpoint's SpladePooling module."""
    modules_path = folder / "modules.json"
    strategy, activation = "max", "relu"
    if modules_path.is_file():
        try:
            modules = json.loads(modules_path.read_text(encoding="utf-8"))
            for module in modules:
                if str(module.get("type", "")).endswith("SpladePooling"):
                    path = folder / module.get("path", "") / "config.json"
                    config = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
                    strategy = config.get("pooling_strategy", strategy)
                    activation = config.get("activation_function", activation)
        except (OSError, json.JSONDecodeError, AttributeError, TypeError) as exc:
            raise ExportError(f"{modules_path}: cannot read the SpladePooling settings ({exc})") from exc
    if strategy not in POOLING_STRATEGIES or activation not in _ACTIVATIONS:
        raise ExportError(
            f"{folder}: SpladePooling pooling_strategy {strategy!r} / activation_function {activation!r} "
            f"not supported (expected {' or '.join(POOLING_STRATEGIES)} / {' or '.join(_ACTIVATIONS)})"
        )
    return strategy, activation


def wrap(model, folder: Path):
    """The loaded masked-LM ``model`` with the checkpoint's SPLADE pooling on top."""
    strategy, activation = read_pooling(folder)
    log.info("sparse-embedding: SPLADE pooling %s, activation %s", strategy, activation)
    return SpladeHead(model, strategy, activation)


def _module():
    import torch

    class _SpladeHead(torch.nn.Module):
        """``log1p(relu(logits))`` (twice log1p for log1p_relu), attention-masked, pooled over tokens."""

        def __init__(self, inner, strategy: str, activation: str):
            super().__init__()
            self.inner = inner
            self.config = inner.config
            self.strategy = strategy
            self.activation = activation
            #: optimum's task for the inner model's graph, which :meth:`finish_graph` completes
            self.onnx_task = "fill-mask"

        def forward(self, input_ids, attention_mask, token_type_ids=None):
            extra = {} if token_type_ids is None else {"token_type_ids": token_type_ids}
            logits = self.inner(input_ids=input_ids, attention_mask=attention_mask, **extra).logits
            x = torch.log1p(torch.relu(logits * attention_mask.unsqueeze(-1).to(logits.dtype)))
            if self.activation == "log1p_relu":
                x = torch.log1p(x)
            pooled = x.amax(dim=1) if self.strategy == "max" else x.sum(dim=1)
            return SimpleNamespace(**{OUTPUT: pooled})

        def finish_graph(self, path: Path) -> None:
            _append_pooling(path, self.strategy, self.activation)

    return _SpladeHead


def SpladeHead(inner, strategy: str, activation: str):
    """The wrapper module (torch is imported when it is built)."""
    return _module()(inner, strategy, activation)


def _append_pooling(path: Path, strategy: str, activation: str) -> None:
    """Replace the graph's ``logits`` (batch, sequence, vocab) output by the pooled (batch, vocab) one."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 14)
    logits = next((o for o in graph.output if o.name == "logits"), None)
    if logits is None:
        raise ExportError(f"{path}: the fill-mask graph has no 'logits' output to pool")
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(1.0, dtype=np.float32), "splade_one"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "splade_last_axis"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "splade_token_axis"),
        ]
    )
    nodes = [
        helper.make_node("Cast", ["attention_mask"], ["splade_mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["splade_mask", "splade_last_axis"], ["splade_mask3"]),
        helper.make_node("Mul", ["logits", "splade_mask3"], ["splade_masked"]),
        helper.make_node("Relu", ["splade_masked"], ["splade_relu"]),
        helper.make_node("Add", ["splade_relu", "splade_one"], ["splade_plus1"]),
        helper.make_node("Log", ["splade_plus1"], ["splade_log"]),
    ]
    last = "splade_log"
    if activation == "log1p_relu":
        nodes += [
            helper.make_node("Add", [last, "splade_one"], ["splade_plus1b"]),
            helper.make_node("Log", ["splade_plus1b"], ["splade_log2"]),
        ]
        last = "splade_log2"
    reduce = "ReduceMax" if strategy == "max" else "ReduceSum"
    if reduce == "ReduceSum" and opset >= 13 or opset >= 18:  # axes as an input
        nodes.append(helper.make_node(reduce, [last, "splade_token_axis"], [OUTPUT], keepdims=0))
    else:
        nodes.append(helper.make_node(reduce, [last], [OUTPUT], axes=[1], keepdims=0))
    graph.node.extend(nodes)
    batch = logits.type.tensor_type.shape.dim[0]
    vocab = logits.type.tensor_type.shape.dim[2]
    out = helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, [None, None])
    dims = out.type.tensor_type.shape.dim
    dims[0].CopyFrom(batch)
    dims[1].CopyFrom(vocab)
    graph.output.remove(logits)
    graph.output.append(out)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def reference_call(checkpoint, threads: int | None = None, options: dict | None = None):
    """``bertrt bench``'s PyTorch reference: ``SparseEncoder.encode`` on ``checkpoint``, its answers as
    the task's results (``{"indices", "values"}`` per text)."""
    import numpy as np
    import torch
    from sentence_transformers import SparseEncoder

    from bertrt.tasks.sparse_embedding import sparse_terms

    if threads:
        torch.set_num_threads(threads)
    model = SparseEncoder(str(checkpoint), device="cpu")

    def call(texts: list, batch_size: int) -> list:
        dense = model.encode(list(texts), batch_size=batch_size, convert_to_tensor=True).to_dense().numpy()
        return [dict(zip(("indices", "values"), sparse_terms(np.asarray(row)))) for row in dense]

    return call
