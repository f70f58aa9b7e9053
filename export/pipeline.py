"""``export_model``: the export stages composed, from a checkpoint to a bundle folder.

Stages (each its own module): convert (optimum ONNX export) -> optimize (fusions) -> quantize (int8)
-> fp16 (when asked: ``model.fp16.onnx`` for CUDA, :mod:`.fp16`) -> validate (against PyTorch) -> bundle (tokenizer, config, OpenVINO IR when asked, manifest). The bundle
is built in a temporary folder next to ``out_dir`` and moved in only when every stage passed, so a failed
export never leaves a half-written bundle behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from bertrt.architectures import get_architecture, takes_token_type_ids
from bertrt.bundle import (
    BUNDLE_FILES,
    FP16_FILE,
    FP32_FILE,
    INT8_FILE,
    MANIFEST,
    MIN_MAX_LENGTH,
    check_id2label,
    load_bundle,
)
from bertrt.errors import BundleError, ExportError
from bertrt.tasks import normalize_task

from . import convert, manifest, opcount, optimize, sentence_transformers, tokenizer, validate
from . import fp16 as fp16_stage  # export_model's parameter is named fp16
from . import openvino_ir as openvino_ir_stage  # export_model's parameter is named openvino_ir
from . import quantize as quantize_stage  # export_model's parameter is named quantize

__all__ = ["BUNDLE_FILES", "STEPS", "export_model"]

log = logging.getLogger("bertrt.export")

STEPS = (
    "load checkpoint",
    "export ONNX",
    "optimize fp32",
    "quantize int8",
    "convert fp16",
    "validate",
    "write bundle",
)
# BUNDLE_FILES (bertrt.bundle): every file an export writes, which _install replaces; the runtime's list


def _check_out_dir(out_dir: Path, force: bool) -> None:
    """ExportError before any work when the bundle could not be written into ``out_dir``.

    ``out_dir`` must be a folder (or not exist yet) and hold no files unless ``force``; it (when it exists)
    and the folder the work folder is made in (``out_dir.parent``, or its nearest existing ancestor when it
    is still to be made) must be writable: a probe file is created and removed in each, so a read-only
    destination fails at once instead of after the export, validation and quantization.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        what = "a bundle" if (out_dir / MANIFEST).exists() else "files"
        raise ExportError(f"{out_dir} already holds {what}; pass --force (force=True) to overwrite it")
    ancestor = out_dir.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    for folder in dict.fromkeys([out_dir, ancestor] if out_dir.is_dir() else [ancestor]):
        try:
            handle, probe = tempfile.mkstemp(prefix=".bertrt-write-probe-", dir=folder)
        except OSError as exc:
            raise ExportError(
                f"{out_dir}: cannot write the bundle, {folder} is not writable ({exc.strerror or exc})"
            ) from exc
        os.close(handle)
        os.unlink(probe)


def _check_max_length(max_length, positions: int | None = None, where: str = "") -> None:
    """ExportError unless ``max_length`` is None or an int from MIN_MAX_LENGTH to ``positions``."""
    if max_length is None:
        return
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < MIN_MAX_LENGTH:
        raise ExportError(
            f"max_length must be an int >= {MIN_MAX_LENGTH} (the special tokens and one token), "
            f"got {max_length!r}"
        )
    if positions is not None and max_length > positions:
        raise ExportError(f"max_length {max_length} exceeds the model's {positions} positions{where}")


def _graph_io(path: Path) -> tuple[list[str], list[str], int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in initializers]
    outputs = [o.name for o in model.graph.output]
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    return inputs, outputs, opset


def export_model(
    model: str | os.PathLike,
    out_dir: str | os.PathLike,
    task: str | None = None,
    quantize: str = "int8",
    per_channel: bool = True,
    opset: int | None = None,
    max_length: int | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
    int8_gates: dict[str, float] | None = None,
    int8_recipe: str = quantize_stage.DEFAULT_RECIPE,
    openvino_ir: str = "none",
    skip_layernorm: str = "split",
    fp16: bool = False,
) -> dict:
    """Export a checkpoint of an architecture-table row (a folder or ``hf://owner/name``) to ``out_dir``.

    ``per_channel`` defaults to True: per-tensor int8 weights cost all-MiniLM-L6-v2 its embedding quality
    (mean-pooled cosine to PyTorch 0.88 at worst vs 0.987 per channel) for a 0.5% smaller file.
    Returns the manifest (also written to ``out_dir/bundle.json``). Raises :class:`ExportError`
    subclasses: :class:`UnsupportedModelError`, :class:`ValidationError`; :class:`TaskError` for a task
    that cannot be inferred or does not fit the checkpoint's head. ``int8_gates`` overrides the int8
    accuracy gates (``validate.INT8_GATES``; ``{}`` disables them). ``int8_recipe``: "per-token" (default:
    per-token activation scales, results independent of the batch) or "dynamic" (onnxruntime's
    quantize_dynamic, one activation scale per batch tensor); see ``export/quantize.py``.
    ``openvino_ir``: "none" (default), "fp32", "int8" or "both": also write the OpenVINO IR of
    ``model.onnx`` (fp32 weights) and / or of its nncf int8 weights, checked against onnxruntime fp32 and
    recorded in the manifest (``export/openvino_ir.py``); needs the ``bertrt[openvino]`` extra.
    ``skip_layernorm``: "split" (default: each SkipLayerNormalization becomes Add + LayerNormalization,
    faster on onnxruntime's CPU kernels) or "fused"; see ``export/optimize.py``.
    ``fp16``: also write ``model.fp16.onnx`` (the fused graph in fp16, for ``providers="cuda"``), validated
    against PyTorch and recorded in the manifest's ``fp16`` (``export/fp16.py``).
    Checked before any work: the options (``task`` may be an alias such as ``ner``; ``max_length`` from
    :data:`bertrt.bundle.MIN_MAX_LENGTH` to the model's positions) and that ``out_dir`` is writable.
    """
    step = progress or (lambda name: None)
    if quantize not in quantize_stage.QUANTIZE_MODES:
        raise ExportError(
            f"quantize must be one of {', '.join(quantize_stage.QUANTIZE_MODES)}, got {quantize!r}"
        )
    if int8_recipe not in quantize_stage.INT8_RECIPES:
        raise ExportError(
            f"int8_recipe must be one of {', '.join(quantize_stage.INT8_RECIPES)}, got {int8_recipe!r}"
        )
    if skip_layernorm not in optimize.SKIP_LAYERNORM_MODES:
        raise ExportError(
            f"skip_layernorm must be one of {', '.join(optimize.SKIP_LAYERNORM_MODES)}, got {skip_layernorm!r}"
        )
    openvino_ir_stage.check_available(openvino_ir)  # a missing extra fails before any work
    if not isinstance(fp16, bool):
        raise ExportError(f"fp16 must be True or False, got {fp16!r}")
    if opset is not None and (not isinstance(opset, int) or opset < 11):
        raise ExportError(f"opset must be an int >= 11, got {opset!r}")
    if task is not None:
        task = normalize_task(task)  # aliases (ner, sentiment-analysis, ...) as everywhere in bertrt
    _check_max_length(max_length)
    out_dir = Path(out_dir).expanduser().resolve()  # stages run in other working directories
    _check_out_dir(out_dir, force)

    step(STEPS[0])
    folder, source = convert.resolve_source(model)
    config_dict = convert.read_config(folder)
    model_type = convert.check_model_type(config_dict)
    task, architecture = convert.resolve_task(config_dict, task, folder)
    positions = config_dict.get("max_position_embeddings")
    if isinstance(positions, int) and not isinstance(positions, bool):  # before the model is loaded
        offset = get_architecture(model_type).position_offset
        note = f" (max_position_embeddings {positions} - position offset {offset})" if offset else ""
        _check_max_length(max_length, positions - offset, note)
    st_info = sentence_transformers.read_settings(folder)
    problems = check_id2label(config_dict.get("id2label"), str(folder / "config.json"))
    if problems:  # the runtime would refuse the bundle: fail before the work
        raise ExportError("; ".join(problems))
    row = get_architecture(model_type)
    torch_model = convert.load_model(folder, task, row.attn_implementation)
    tok = tokenizer.load_tokenizer(folder)
    length = tokenizer.default_max_length(tok, torch_model.config, row.position_offset, max_length)
    dims = optimize.model_dims(torch_model.config)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".bertrt-export-", dir=out_dir.parent))
    try:
        stage = work / "bundle"
        stage.mkdir()
        step(STEPS[1])
        raw = convert.export_onnx(torch_model, task, work / "raw", opset=opset)
        step(STEPS[2])
        fusion = optimize.optimize_graph(raw, stage / FP32_FILE, model_type, dims, skip_layernorm)
        step(STEPS[3])
        recipe = None
        if quantize == "int8":
            recipe = quantize_stage.quantize_graph(
                stage / FP32_FILE, stage / INT8_FILE, per_channel, recipe=int8_recipe
            )
        step(STEPS[4])
        fp16_record = None
        if fp16:
            fused, source = stage / FP32_FILE, FP32_FILE
            if fusion["skip_layernorm"]["split"]:  # the GPU graph keeps SkipLayerNormalization fused
                fused, source = work / "fused.onnx", "the optimizer's graph, SkipLayerNormalization fused"
                optimize.optimize_graph(raw, fused, model_type, dims, "fused")
            fp16_record = fp16_stage.convert_graph(fused, stage / FP16_FILE, source)
        step(STEPS[5])
        int8_path = stage / INT8_FILE if recipe else None
        figures = validate.validate_bundle(
            torch_model, tok, task, stage / FP32_FILE, int8_path, length, int8_gates, architecture=row
        )
        if fp16_record is not None:
            fp16_record["validation"] = fp16_stage.validate_fp16(
                torch_model, tok, task, stage / FP16_FILE, length, architecture=row
            )
        step(STEPS[6])
        names = tokenizer.save_tokenizer(tok, stage, length)
        torch_model.config.save_pretrained(str(stage))
        inputs, outputs, graph_opset = _graph_io(stage / FP32_FILE)
        if ("token_type_ids" in inputs) != takes_token_type_ids(row, config_dict):
            log.warning(
                "export: the %s graph %s token_type_ids, unlike the architecture table expects for this "
                "config (type_vocab_size %r); the runtime feeds the inputs the graph declares",
                row.name,
                "takes" if "token_type_ids" in inputs else "does not take",
                config_dict.get("type_vocab_size"),
            )
        ir_names, ir_record = openvino_ir_stage.write_ir(
            stage,
            stage / FP32_FILE,
            openvino_ir,
            tokenizer=tok,
            task=task,
            max_length=length,
            fp32_atol=figures["fp32_atol"],
            int8_gates=validate.INT8_GATES if int8_gates is None else int8_gates,
        )
        files = [FP32_FILE, *([INT8_FILE] if recipe else []), *ir_names, *names, "config.json"]
        extra = {"openvino_ir": ir_record} if ir_record else {}
        if fp16_record is not None:
            files.append(FP16_FILE)
            extra["fp16"] = fp16_record
        if st_info:
            extra["sentence_transformers"] = st_info
        ops = opcount.matmul_ops(stage / FP32_FILE, length)
        if ops is not None:  # bertrt bench's GEMM op/s
            extra["matmul_ops"] = ops
        model = {"model_type": model_type, "architecture": architecture or type(torch_model).__name__}
        graph = {"input_names": inputs, "output_names": outputs, "opset": graph_opset, "max_length": length}
        stages = {"fusion": fusion, "quantization": recipe, "validation": figures, "source": source}
        result = manifest.build_manifest(
            task=task,
            config=torch_model.config,
            special_tokens=tokenizer.special_tokens(tok),
            files=manifest.file_records(stage, files),
            extra=extra,
            **model,
            **graph,
            **stages,
        )
        manifest.write_manifest(stage, result)
        try:  # the bundle must pass every check the runtime makes at load, before it is installed
            load_bundle(stage, precision="int8" if recipe else "fp32")
            if fp16_record is not None:  # the fp16 graph, its hash checked
                load_bundle(stage, precision="fp16")
            for ir_precision in openvino_ir_stage.precisions(openvino_ir):  # the IR, hashes checked
                loaded = load_bundle(stage, ir_precision, backend="openvino")
                if loaded.model_path.name != openvino_ir_stage.IR_FILES[ir_precision][0]:
                    raise BundleError(loaded.model_path, f"the {ir_precision} OpenVINO IR was not selected")
        except BundleError as exc:
            raise ExportError(f"the bundle written does not load: {exc.problem}") from exc
        _install(stage, out_dir)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    log.info("export: wrote %s", out_dir)
    return result


def _install(stage: Path, out_dir: Path) -> None:
    """Move the staged bundle into ``out_dir``, removing stale bundle files left by an earlier export."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for item in stage.iterdir():
        os.replace(item, out_dir / item.name)
