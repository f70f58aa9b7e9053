"""``export_model``: the export stages composed, from a checkpoint to a bundle folder.

Stages (each its own module): convert (optimum ONNX export) -> optimize (fusions) -> quantize (int8)
-> validate (against PyTorch) -> bundle (tokenizer, config, manifest). The bundle is built in a
temporary folder next to ``out_dir`` and moved in only when every stage passed, so a failed export never
leaves a half-written bundle behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from bertrt.architectures import get_architecture
from bertrt.bundle import FP32_FILE, INT8_FILE, MANIFEST
from bertrt.errors import ExportError

from . import convert, manifest, optimize, tokenizer, validate
from . import quantize as quantize_stage  # export_model's parameter is named quantize

__all__ = ["BUNDLE_FILES", "STEPS", "export_model"]

log = logging.getLogger("bertrt.export")

STEPS = ("load checkpoint", "export ONNX", "optimize fp32", "quantize int8", "validate", "write bundle")
BUNDLE_FILES = (FP32_FILE, INT8_FILE, *tokenizer.TOKENIZER_FILES, "config.json", MANIFEST)


def _check_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        what = "a bundle" if (out_dir / MANIFEST).exists() else "files"
        raise ExportError(f"{out_dir} already holds {what}; pass --force (force=True) to overwrite it")


def _sentence_transformers_info(folder: Path) -> dict | None:
    """Pooling and normalization of a sentence-transformers folder (modules.json), for the runtime."""
    modules_path = folder / "modules.json"
    if not modules_path.is_file():
        return None
    try:
        modules = json.loads(modules_path.read_text(encoding="utf-8"))
        info: dict = {"modules": [m.get("type", "").rsplit(".", 1)[-1] for m in modules]}
        for m in modules:
            kind = m.get("type", "")
            if kind.endswith("Pooling"):
                pooling = json.loads((folder / m["path"] / "config.json").read_text(encoding="utf-8"))
                modes = [
                    k.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
                    for k, v in pooling.items()
                    if k.startswith("pooling_mode_") and v
                ]
                info["pooling"] = modes[0] if len(modes) == 1 else modes
        info["normalize"] = any(m.get("type", "").endswith("Normalize") for m in modules)
        st_config = folder / "sentence_bert_config.json"
        if st_config.is_file():
            info["max_seq_length"] = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length")
        return info
    except (OSError, json.JSONDecodeError, KeyError, AttributeError) as exc:
        log.warning("ignoring unreadable sentence-transformers files in %s: %s", folder, exc)
        return None


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
) -> dict:
    """Export a BERT / RoBERTa / DistilBERT checkpoint (folder or hub id) to a bundle in ``out_dir``.

    ``per_channel`` defaults to True: per-tensor int8 weights cost all-MiniLM-L6-v2 its embedding quality
    (mean-pooled cosine to PyTorch 0.88 at worst vs 0.987 per channel) for a 0.5% smaller file.
    Returns the manifest (also written to ``out_dir/bundle.json``). Raises :class:`ExportError`
    subclasses: :class:`UnsupportedModelError`, :class:`ValidationError`; :class:`TaskError` for a task
    that cannot be inferred or does not fit the checkpoint's head. ``int8_gates`` overrides the int8
    accuracy gates (``validate.INT8_GATES``; ``{}`` disables them). ``int8_recipe``: "per-token" (default:
    per-token activation scales, results independent of the batch) or "dynamic" (onnxruntime's
    quantize_dynamic, one activation scale per batch tensor); see ``export/quantize.py``.
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
    if opset is not None and (not isinstance(opset, int) or opset < 11):
        raise ExportError(f"opset must be an int >= 11, got {opset!r}")
    out_dir = Path(out_dir).expanduser().resolve()  # stages run in other working directories
    _check_out_dir(out_dir, force)

    step(STEPS[0])
    folder, source = convert.resolve_source(model)
    config_dict = convert.read_config(folder)
    model_type = convert.check_model_type(config_dict)
    task, architecture = convert.resolve_task(config_dict, task)
    torch_model = convert.load_model(folder, task)
    tok = tokenizer.load_tokenizer(folder)
    row = get_architecture(model_type)
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
        fusion = optimize.optimize_graph(raw, stage / FP32_FILE, model_type, dims)
        step(STEPS[3])
        recipe = None
        if quantize == "int8":
            recipe = quantize_stage.quantize_graph(
                stage / FP32_FILE, stage / INT8_FILE, per_channel, recipe=int8_recipe
            )
        step(STEPS[4])
        int8_path = stage / INT8_FILE if recipe else None
        figures = validate.validate_bundle(
            torch_model, tok, task, stage / FP32_FILE, int8_path, length, int8_gates, architecture=row
        )
        step(STEPS[5])
        names = tokenizer.save_tokenizer(tok, stage, length)
        torch_model.config.save_pretrained(str(stage))
        inputs, outputs, graph_opset = _graph_io(stage / FP32_FILE)
        files = [FP32_FILE, *([INT8_FILE] if recipe else []), *names, "config.json"]
        extra = {}
        st_info = _sentence_transformers_info(folder)
        if st_info:
            extra["sentence_transformers"] = st_info
        result = manifest.build_manifest(
            task=task,
            model_type=model_type,
            architecture=architecture or type(torch_model).__name__,
            input_names=inputs,
            output_names=outputs,
            max_length=length,
            config=torch_model.config,
            special_tokens=tokenizer.special_tokens(tok),
            files=manifest.file_records(stage, files),
            fusion=fusion,
            quantization=recipe,
            validation=figures,
            source=source,
            opset=graph_opset,
            extra=extra,
        )
        manifest.write_manifest(stage, result)
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
