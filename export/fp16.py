"""Optional bundle step: ``model.fp16.onnx``, the fp16 graph a CUDA session runs (``bertrt export --fp16``).

The graph is the optimizer's fused fp32 graph (SkipLayerNormalization kept fused: the split into Add +
LayerNormalization in ``model.onnx`` is for onnxruntime's CPU kernels) converted by onnxruntime's own
float16 converter (``OnnxModel.convert_float_to_float16``):

- ``keep_io_types=True``: the inputs stay int64 and the output float32, so the runtime feeds and reads the
  same arrays as for ``model.onnx``;
- the op block list: onnxruntime's default one (ops without fp16 kernels) plus ``Softmax``, ``Pow``
  and ``ReduceMean``, which stay fp32 behind casts. In a fused graph softmax and LayerNorm live inside
  Attention / (Skip)LayerNormalization, whose CUDA kernels accumulate in fp32; in an unfused one
  (DeBERTa, MPNet, ModernBERT) a decomposed LayerNorm squares activations (``Pow``), which overflows fp16
  past 256, and a softmax over fp16 sums loses the small probabilities;
- constants are clipped to the fp16 range (the converter's default): an additive mask of
  ``finfo(float32).min`` becomes -65504, not -inf, so fully masked rows do not turn into NaN.

Validation (:func:`validate_fp16`) runs the graph on the exporter's validation batches against the PyTorch
fp32 model with the figures of the int8 check (the task's, through :func:`bertrt.export.validate.compare`:
max |Δ|, token / label argmax agreement, embedding cosine, fill-mask top-5), on CUDA when this onnxruntime has it, else on
the CPU provider: it runs the fp16 graph too (onnxruntime casts around the nodes it has no fp16 CPU kernel
for), which checks the fp16 weights and the conversion but not the CUDA kernels; the ``gpu``-marked tests
do that. :data:`FP16_GATES` are the minimum agreement figures; max |Δ| is recorded, not gated (fp16 logits
differ from fp32 by ~1e-3 of their scale, which no fixed tolerance fits).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from bertrt.architectures import Architecture
from bertrt.errors import ExportError, ValidationError
from bertrt.tasks import get_task

from . import validate

__all__ = ["EXTRA_BLOCKED", "FP16_GATES", "convert_graph", "validate_fp16"]

log = logging.getLogger("bertrt.export")

#: ops kept fp32 on top of onnxruntime's default list (see the module docstring)
EXTRA_BLOCKED = ("Softmax", "Pow", "ReduceMean")

#: figure -> minimum the fp16 graph must reach against PyTorch fp32 (tighter than int8's)
FP16_GATES = {"cosine_min": 0.995, "token_agreement": 0.95, "top5_overlap": 0.8}


def _default_block_list() -> list[str]:
    from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

    return [*DEFAULT_OP_BLOCK_LIST, *EXTRA_BLOCKED]


def convert_graph(src: Path, dst: Path, source: str = "model.onnx") -> dict:
    """Write the fp16 conversion of the fused fp32 graph ``src`` to ``dst``; return the manifest record
    (``source``: what ``src`` is, for the record)."""
    import onnx
    from onnxruntime.transformers.onnx_model import OnnxModel

    blocked = _default_block_list()
    try:
        model = OnnxModel(onnx.load(str(src)))
        model.convert_float_to_float16(keep_io_types=True, op_block_list=blocked)
        model.save_model_to_file(str(dst))
    except Exception as exc:  # the converter and shape inference raise bare exceptions
        raise ExportError(f"the fp16 conversion of {src.name} failed: {exc}") from exc
    kept = sorted({n.op_type for n in model.model.graph.node if n.op_type in EXTRA_BLOCKED})
    casts = sum(1 for n in model.model.graph.node if n.op_type == "Cast")
    log.info("fp16: %s written (%d Cast nodes; kept fp32: %s)", dst.name, casts, kept or "none")
    return {
        "file": dst.name,
        "converter": "onnxruntime.transformers OnnxModel.convert_float_to_float16",
        "onnxruntime": _onnxruntime_version(),
        "source": source,
        "keep_io_types": True,
        "op_block_list_extra": list(EXTRA_BLOCKED),
        "kept_fp32": kept,
        "casts": casts,
    }


def _onnxruntime_version() -> str | None:
    from bertrt.cpu import installed_versions

    versions = installed_versions(("onnxruntime", "onnxruntime-gpu"))
    return versions["onnxruntime"] or versions["onnxruntime-gpu"]


def _provider() -> str:
    import onnxruntime as ort

    available = ort.get_available_providers()
    return "CUDAExecutionProvider" if "CUDAExecutionProvider" in available else "CPUExecutionProvider"


def _run(path: Path, batches, output_name: str, provider: str) -> tuple[list[np.ndarray], str]:
    """The graph's outputs on the validation batches, and the provider that really ran it (onnxruntime
    falls back to the CPU when CUDA cannot start)."""
    import onnxruntime as ort

    providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
    session = ort.InferenceSession(str(path), providers=providers)
    names = [i.name for i in session.get_inputs()]
    outs = []
    for _, enc in batches:
        feed = {n: enc[n] if n in enc else np.zeros_like(enc["input_ids"]) for n in names}
        outs.append(np.asarray(session.run([output_name], feed)[0], dtype=np.float32))
    return outs, session.get_providers()[0]


def validate_fp16(
    model,
    tokenizer,
    task: str,
    fp16_path: Path,
    max_length: int,
    architecture: Architecture | None = None,
    gates: dict[str, float] | None = None,
    provider: str | None = None,
) -> dict:
    """The fp16 graph's figures against PyTorch fp32 (module docstring); ValidationError with every figure
    when a gate is missed. ``provider``: the onnxruntime provider (default: CUDA when present, else CPU)."""
    del architecture  # the fp32 tolerance does not apply to fp16; kept for a uniform call
    gates = FP16_GATES if gates is None else gates
    provider = provider or _provider()
    output_name = get_task(task).output
    batches = validate.sample_batches(
        tokenizer,
        task,
        max_length,
        token_type_ids="token_type_ids" in validate.graph_input_names(fp16_path),
    )
    reference = validate._torch_outputs(model, batches, output_name)
    outputs, ran_on = _run(fp16_path, batches, output_name, provider)
    if ran_on != provider:
        log.warning("fp16 validation: %s did not start, the graph ran on %s", provider, ran_on)
        provider = ran_on
    figures = validate.compare(task, reference, outputs, batches, tokenizer.mask_token_id)
    record = {
        "reference": "PyTorch (transformers) fp32",
        "provider": provider,
        "figures": figures,
        "gates": {k: v for k, v in gates.items() if k in figures},
    }
    if provider == "CPUExecutionProvider":
        record["note"] = "run on the CPU provider (no CUDA here): fp16 weights checked, not the CUDA kernels"
    failures = [
        f"fp16 {key} = {figures[key]:.4f} < {minimum}"
        for key, minimum in record["gates"].items()
        if not figures[key] >= minimum
    ]
    if not np.isfinite(figures["max_abs_diff"]):
        failures.append("fp16 output is not finite (an overflow in an fp16 node)")
    if failures:
        raise ValidationError(
            f"fp16 validation against PyTorch failed ({task}, {fp16_path.parent}): " + "; ".join(failures),
            figures=record,
        )
    return record
