"""Optional bundle step: OpenVINO IR files of the fused fp32 graph (``--openvino-ir``).

The OpenVINO backend can read ``model.onnx`` itself (converting it at every load, and compressing the
int8 precision's weights with nncf at every load too). With ``openvino_ir`` the exporter does that work
once and writes the results into the bundle:

- ``fp32``: ``model.openvino.xml`` + ``.bin``: ``openvino.convert_model(model.onnx)`` saved with
  ``compress_to_fp16=False`` (fp32 weights; the runtime reads it for precisions fp32 and bf16);
- ``int8``: ``model.openvino-int8.xml`` + ``.bin``: the same model with its weights compressed by
  :func:`bertrt.session_openvino.compress_int8_weights` (``nncf.compress_weights``, INT8_SYM: the call
  the runtime makes at load), for precision int8; activations stay dynamic-quantized at run time;
- ``both``: the two; ``none`` (default): neither.

Each IR is checked before it is installed: compiled by the runtime's own
:class:`~bertrt.session_openvino.OpenVinoSession` and run on the validation batches against onnxruntime
fp32 on ``model.onnx`` (fp32: max |Δ| within the fp32 tolerance; int8: the int8 accuracy gates). The
manifest's ``openvino_ir`` record holds the files, the openvino / nncf versions, the settings and
those figures; the files themselves are in ``files`` with their sha256 like every other one.
"""

from __future__ import annotations

import logging
from importlib import metadata
from pathlib import Path

import numpy as np

from bertrt.bundle import OPENVINO_FILE, OPENVINO_INT8_FILE, ir_weights_file
from bertrt.errors import BackendError, BundleError, ExportError, ValidationError
from bertrt.tasks import get_task

__all__ = ["IR_FILES", "IR_MODES", "check_available", "check_mode", "precisions", "write_ir"]

log = logging.getLogger("bertrt.export")

IR_MODES = ("none", "fp32", "int8", "both")
#: IR precision -> the bundle files it writes (xml, bin)
IR_FILES = {
    "fp32": (OPENVINO_FILE, ir_weights_file(OPENVINO_FILE)),
    "int8": (OPENVINO_INT8_FILE, ir_weights_file(OPENVINO_INT8_FILE)),
}
_EXTRA = "pip install 'bertrt[openvino]'"


def check_mode(mode) -> None:
    """ExportError unless ``mode`` is one of :data:`IR_MODES`."""
    if mode not in IR_MODES:
        raise ExportError(f"openvino_ir must be one of {', '.join(IR_MODES)}, got {mode!r}")


def precisions(mode: str) -> list[str]:
    """The IR precisions ``mode`` writes, in order."""
    return {"none": [], "fp32": ["fp32"], "int8": ["int8"], "both": ["fp32", "int8"]}[mode]


def _import_openvino():
    try:
        import openvino
    except ImportError as exc:
        raise ExportError(
            f"openvino_ir needs the openvino package, which is not installed ({exc}): {_EXTRA} "
            f"(the bertrt[openvino] extra), or export without --openvino-ir"
        ) from exc
    return openvino


def _import_nncf():
    try:
        import nncf
    except ImportError as exc:
        raise ExportError(
            f"an int8 OpenVINO IR needs nncf to compress the weights, which is not installed ({exc}): "
            f"{_EXTRA} (the bertrt[openvino] extra), or use --openvino-ir fp32"
        ) from exc
    return nncf


def check_available(mode: str) -> None:
    """ExportError naming the ``bertrt[openvino]`` extra when ``mode`` needs a package that is missing
    (openvino; nncf for an int8 IR). Called before any work."""
    check_mode(mode)
    if mode == "none":
        return
    _import_openvino()
    if "int8" in precisions(mode):
        _import_nncf()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _check(path: Path, precision: str, batches, reference, output_name: str, task: str, mask_id, gates):
    """Figures of the IR at ``path`` run by the runtime's session against ``reference``; failures list."""
    from bertrt.session_openvino import OpenVinoSession

    from . import validate

    try:
        session = OpenVinoSession(path, precision=precision, output_name=output_name)
    except (BundleError, BackendError) as exc:
        raise ExportError(
            f"the {precision} OpenVINO IR does not load in the runtime ({exc}); export without "
            f"--openvino-ir (backend 'onnxruntime' runs this bundle)"
        ) from exc
    if session.source != ("ir-int8" if precision == "int8" else "ir"):
        raise ExportError(f"{path.name}: read back as {session.source!r}, expected the {precision} IR")
    outputs = []
    for _, enc in batches:
        feed = {n: enc[n] if n in enc else np.zeros_like(enc["input_ids"]) for n in session.input_dtypes}
        outputs.append(session.run(feed))
    return validate.compare(task, reference, outputs, batches, mask_id)


def write_ir(
    stage: Path,
    fp32_onnx: Path,
    mode: str,
    *,
    tokenizer,
    task: str,
    max_length: int,
    fp32_atol: float,
    int8_gates: dict[str, float],
) -> tuple[list[str], dict | None]:
    """Write the IR files of ``mode`` into ``stage`` from ``fp32_onnx``, check them; return (the file
    names written, the manifest's ``openvino_ir`` record). ``([], None)`` for ``"none"``.

    ValidationError with the figures when an IR disagrees with onnxruntime fp32 beyond ``fp32_atol``
    (fp32) or misses one of ``int8_gates`` (int8); ExportError when OpenVINO cannot convert or compile it.
    """
    wanted = precisions(mode)
    if not wanted:
        return [], None
    ov = _import_openvino()
    from bertrt.session_openvino import (
        DYNAMIC_QUANTIZATION_GROUP_SIZE,
        INT8_WEIGHT_MODE,
        compress_int8_weights,
    )

    from . import validate

    try:
        model = ov.convert_model(str(fp32_onnx))
    except Exception as exc:  # OpenVINO's frontend raises its own RuntimeError subclasses
        raise ExportError(
            f"openvino.convert_model cannot convert {fp32_onnx.name} ({' '.join(str(exc).split())}); "
            f"export without --openvino-ir"
        ) from exc
    names: list[str] = []
    for precision in wanted:
        if precision == "int8":
            _import_nncf()
            model = compress_int8_weights(model)  # in place: the fp32 IR, if wanted, is already saved
        xml, weights = IR_FILES[precision]
        ov.save_model(model, str(stage / xml), compress_to_fp16=False)
        names += [xml, weights]
    del model  # nncf cannot compress another model of the same file while this one's nodes live

    output_name = get_task(task).output
    batches = validate.sample_batches(
        tokenizer, task, max_length, token_type_ids="token_type_ids" in validate.graph_input_names(fp32_onnx)
    )
    reference = validate._onnx_outputs(fp32_onnx, batches, output_name)
    mask_id = getattr(tokenizer, "mask_token_id", None)
    record: dict = {
        "files": {p: list(IR_FILES[p]) for p in wanted},
        "source": fp32_onnx.name,
        "produced_by": {
            "openvino": _version("openvino"),
            "nncf": _version("nncf") if "int8" in wanted else None,
        },
        "convert": "openvino.convert_model + openvino.save_model(compress_to_fp16=False)",
        "validation": {
            "reference": f"onnxruntime fp32 ({fp32_onnx.name})",
            "runtime": "bertrt OpenVinoSession (CPU plugin)",
            "output": output_name,
            "fp32_atol": fp32_atol,
        },
    }
    if "int8" in wanted:
        record["int8"] = {
            "weights": f"nncf.compress_weights mode={INT8_WEIGHT_MODE} (symmetric int8, per output channel, "
            "data-free)",
            "activations": f"dynamic quantization at run time, DYNAMIC_QUANTIZATION_GROUP_SIZE "
            f"{DYNAMIC_QUANTIZATION_GROUP_SIZE}",
        }
    failures = []
    for precision in wanted:
        figures = _check(
            stage / IR_FILES[precision][0],
            precision,
            batches,
            reference,
            output_name,
            task,
            mask_id,
            int8_gates,
        )
        record["validation"][precision] = figures
        if precision == "fp32" and not figures["max_abs_diff"] <= fp32_atol:
            failures.append(
                f"fp32 IR max|Δ| of {output_name} = {figures['max_abs_diff']:.3g} > {fp32_atol:g}"
            )
        if precision == "int8":
            checked = {k: v for k, v in int8_gates.items() if k in figures}
            record["validation"]["int8_gates"] = checked
            failures += [
                f"int8 IR {k} = {figures[k]:.4f} < {v} (accuracy gate)"
                for k, v in checked.items()
                if not figures[k] >= v
            ]
    if failures:
        raise ValidationError(
            "OpenVINO IR validation against onnxruntime fp32 failed: " + "; ".join(failures),
            figures=record["validation"],
        )
    log.info("export: OpenVINO IR %s written (%s)", ", ".join(wanted), ", ".join(names))
    return names, record
