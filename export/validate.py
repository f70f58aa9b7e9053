"""Step 4: validation of the exported graphs against the PyTorch model on fixed sample inputs.

The task says what is fed and compared (:meth:`bertrt.tasks.base.Task.validation_inputs` and
:meth:`~bertrt.tasks.base.Task.compare_outputs`; the graph output is the task's ``output``): by default a
padded batch of sentences of different lengths, a padded batch of sentence pairs (``token_type_ids`` = 1
on the second segment where the graph declares them: the graph's inputs decide, not the tokenizer, whose
``model_input_names`` may list ``token_type_ids`` for a graph without them, as DeBERTa-v3's does) and one
unpadded sentence; fill-mask's sentences hold the tokenizer's mask token, without pairs. PyTorch and
onnxruntime are fed the same arrays.

* fp32 (``model.onnx``): max |Δ| of the output must be ≤ the architecture's ``fp32_tolerance``
  (:mod:`bertrt.architectures`), by default :data:`FP32_ATOL`. Token-level outputs are compared on real
  tokens only (``attention_mask == 1``): padded positions are never read by any pipeline, and the fused
  Attention kernel leaves them different from PyTorch's.
* int8 (``model.int8.onnx``): figures for the manifest: max |Δ| and the task's agreement figures (label /
  token argmax agreement, cosine of mean-pooled embeddings, top-5 overlap at the mask positions).
  :data:`INT8_GATES` holds the minimum figures an int8 graph must reach.

Every failure is collected; one :class:`ValidationError` carries all the numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bertrt import tasks
from bertrt.architectures import Architecture
from bertrt.errors import ExportError, ValidationError
from bertrt.tasks import get_task
from bertrt.tasks.base import VALIDATION_PAIRS as SAMPLE_PAIRS
from bertrt.tasks.base import VALIDATION_TEXTS as SAMPLE_TEXTS
from bertrt.tasks.figures import argmax_agreement, cosine_rows, masked_max_abs_diff, mean_pool, topk_overlap

__all__ = [
    "FP32_ATOL",
    "INT8_GATES",
    "SAMPLE_PAIRS",
    "SAMPLE_TEXTS",
    "argmax_agreement",
    "compare",
    "graph_input_names",
    "cosine_rows",
    "masked_max_abs_diff",
    "mean_pool",
    "sample_batches",
    "topk_overlap",
    "validate_bundle",
]

log = logging.getLogger("bertrt.export")

FP32_ATOL = 1e-4


#: figure -> minimum an int8 graph must reach (only figures the task produces are checked): every built-in
#: task's :attr:`~bertrt.tasks.base.Task.int8_gates`. These are gross-breakage gates (a wrong recipe or a
#: broken kernel), not quality targets: the figures themselves are in the manifest. Label agreement over
#: a handful of sentences is too coarse to gate (text-classification declares none).
def _task_int8_gates() -> dict[str, float]:
    gates: dict[str, float] = {}
    for name in tasks.TASKS:
        for key, value in get_task(name).int8_gates.items():
            if gates.setdefault(key, value) != value:  # one figure name, one meaning, one minimum
                raise ExportError(f"tasks disagree on the int8 gate {key}: {gates[key]} and {value} ({name})")
    return gates


INT8_GATES = _task_int8_gates()


# ---- inputs and runs ----------------------------------------------------------------------------------


def sample_batches(
    tokenizer, task: str, max_length: int, token_type_ids: bool = True
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """The fixed validation batches as numpy int64 arrays: (name, encoding); ``token_type_ids=False``
    (an architecture without segment ids) leaves them out even where the tokenizer gives them."""
    length = min(max_length, 128)
    kw = {"padding": True, "truncation": True, "max_length": length, "return_tensors": "np"}
    inputs = get_task(task).validation_inputs(tokenizer.mask_token)
    texts = list(inputs.texts)
    batches = [("padded batch", tokenizer(texts, **kw))]
    if inputs.pairs:
        pairs = ([p[0] for p in inputs.pairs], [p[1] for p in inputs.pairs])
        batches.append(("pair batch", tokenizer(*pairs, **kw)))
    batches.append(("single", tokenizer(texts[:1], **kw)))
    return [
        (
            name,
            {
                k: np.asarray(v, dtype=np.int64)
                for k, v in enc.items()
                if token_type_ids or k != "token_type_ids"
            },
        )
        for name, enc in batches
    ]


def _torch_outputs(model, batches, output_name: str, stacked: tuple[str, ...] = ()) -> list[np.ndarray]:
    """PyTorch's ``output_name`` per batch (or its ``stacked`` outputs stacked on a last axis, as the
    exporter stacks them in the graph)."""
    import inspect

    import torch

    accepted = set(inspect.signature(model.forward).parameters)
    outs = []
    with torch.no_grad():
        for _, enc in batches:
            feed = {k: torch.from_numpy(v) for k, v in enc.items() if k in accepted}
            result = model(**feed)
            if stacked:
                outs.append(torch.stack([getattr(result, n) for n in stacked], dim=-1).float().numpy())
            else:
                outs.append(getattr(result, output_name).float().numpy())
    return outs


def graph_input_names(path: Path) -> list[str]:
    """The inputs the graph at ``path`` declares (what the runtime feeds it)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return [i.name for i in session.get_inputs()]


def _onnx_outputs(path: Path, batches, output_name: str) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    outs = []
    for _, enc in batches:
        feed = {n: enc[n] if n in enc else np.zeros_like(enc["input_ids"]) for n in names}
        outs.append(session.run([output_name], feed)[0])
    return outs


def compare(
    task: str, reference: list[np.ndarray], candidate: list[np.ndarray], batches, mask_id: int | None
):
    """Figures of ``candidate`` against ``reference`` outputs (pure numpy): the task's
    :meth:`~bertrt.tasks.base.Task.compare_outputs`."""
    return get_task(task).compare_outputs(reference, candidate, batches, mask_id)


def resolve_int8_gates(overrides: dict[str, float] | None = None, enabled: bool = True) -> dict[str, float]:
    """The int8 accuracy gates in force: :data:`INT8_GATES` updated by ``overrides``; {} when disabled."""
    if not enabled:
        return {}
    gates = dict(INT8_GATES)
    for key, value in (overrides or {}).items():
        if key not in INT8_GATES:
            raise ExportError(f"unknown int8 gate {key!r}; known gates: {', '.join(INT8_GATES)}")
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
            raise ExportError(f"int8 gate {key} must be a number in [0, 1], got {value!r}")
        gates[key] = float(value)
    return gates


def validate_bundle(
    model,
    tokenizer,
    task: str,
    fp32_path: Path,
    int8_path: Path | None,
    max_length: int,
    int8_gates: dict[str, float] | None = None,
    architecture: Architecture | None = None,
) -> dict:
    """Validate the fp32 (and int8) graphs; return the manifest's ``validation`` record.

    ``int8_gates`` (default :data:`INT8_GATES`; ``{}`` disables them) are the minimum agreement figures an
    int8 graph must reach; a miss fails the export with every figure in the message. The fp32 tolerance
    comes from ``architecture`` (its table row; :data:`FP32_ATOL` when it sets none) and is not an
    option: a graph that disagrees with PyTorch is wrong.
    """
    gates = INT8_GATES if int8_gates is None else int8_gates
    own = architecture.fp32_tolerance if architecture is not None else None
    atol = FP32_ATOL if own is None else own
    spec = get_task(task)
    output_name = spec.output
    batches = sample_batches(
        tokenizer, task, max_length, token_type_ids="token_type_ids" in graph_input_names(fp32_path)
    )
    reference = _torch_outputs(model, batches, output_name, spec.stacked_outputs)
    attention = getattr(model.config, "_attn_implementation", None) or "default"
    record = {
        "reference": f"PyTorch (transformers) fp32, {attention} attention",
        "output": output_name,
        "compared_positions": "real tokens (attention_mask == 1)" if spec.token_level else "all",
        "batches": {name: list(enc["input_ids"].shape) for name, enc in batches},
        "fp32_atol": atol,
    }
    failures = []
    record["fp32"] = compare(
        task, reference, _onnx_outputs(fp32_path, batches, output_name), batches, tokenizer.mask_token_id
    )
    if not record["fp32"]["max_abs_diff"] <= atol:
        failures.append(f"fp32 max|Δ| of {output_name} = {record['fp32']['max_abs_diff']:.3g} > {atol:g}")
    if int8_path is not None:
        record["int8"] = compare(
            task, reference, _onnx_outputs(int8_path, batches, output_name), batches, tokenizer.mask_token_id
        )
        record["int8_gates"] = {k: v for k, v in gates.items() if k in record["int8"]}
        for key, minimum in record["int8_gates"].items():
            if not record["int8"][key] >= minimum:
                failures.append(
                    f"int8 {key} = {record['int8'][key]:.4f} < {minimum} (accuracy gate; "
                    f"override with --int8-gate {key}=VALUE or --no-int8-gate)"
                )
    if failures:
        raise ValidationError(
            f"validation against PyTorch failed ({task}, {fp32_path.parent}): " + "; ".join(failures),
            figures=record,
        )
    return record
