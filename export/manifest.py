"""Bundle step: ``bundle.json``, the manifest described in :mod:`bertrt.bundle` (schema version 1).

Every file of the bundle is in ``files`` with its sha256 and size (the OpenVINO IR ``.xml`` and ``.bin``
files too, when the export writes them); what produced the IR (openvino / nncf versions, settings,
figures against onnxruntime) is the ``openvino_ir`` record (:mod:`bertrt.export.openvino_ir`).
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

from bertrt.bundle import MANIFEST, SCHEMA_VERSION, file_sha256
from bertrt.cpu import installed_versions
from bertrt.tasks import get_task

__all__ = [
    "FORMAT",
    "VERSIONED_PACKAGES",
    "build_manifest",
    "file_records",
    "package_versions",
    "write_manifest",
]

FORMAT = "bertrt-bundle"
VERSIONED_PACKAGES = (
    "bertrt",
    "torch",
    "transformers",
    "optimum",
    "optimum-onnx",
    "onnxruntime",
    "onnx",
    "tokenizers",
    "numpy",
)


def file_records(folder: Path, names) -> dict:
    return {
        name: {"sha256": file_sha256(folder / name), "bytes": (folder / name).stat().st_size}
        for name in sorted(names)
    }


def package_versions() -> dict:
    return installed_versions(VERSIONED_PACKAGES)


def build_manifest(
    *,
    task,
    model_type,
    architecture,
    input_names,
    output_names,
    max_length,
    config,
    special_tokens,
    files,
    fusion,
    quantization,
    validation,
    source,
    opset,
    extra=None,
) -> dict:
    id2label = getattr(config, "id2label", None) if get_task(task).labels else None
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "format": FORMAT,
        "task": task,
        "model_type": model_type,
        "architecture": architecture,
        "input_names": list(input_names),
        "output_names": list(output_names),
        "max_length": int(max_length),
        "id2label": {str(k): v for k, v in id2label.items()} if id2label else None,
        "problem_type": getattr(config, "problem_type", None),
        "special_tokens": special_tokens,
        "files": files,
        "opset": opset,
        "fusion": fusion,
        "quantization": quantization,
        "validation": validation,
        "versions": package_versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "source": source,
    }
    manifest.update(extra or {})
    return manifest


def write_manifest(folder: Path, manifest: dict) -> Path:
    path = folder / MANIFEST
    path.write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False, sort_keys=False) + "\n", encoding="utf-8"
    )
    return path
