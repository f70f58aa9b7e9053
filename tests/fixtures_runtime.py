"""Fixtures for runtime tests (owned by the runtime area).

``optimum_folder(arch, task) -> Path``: the ``tiny_checkpoint`` exported with Optimum's
``main_export`` (fp32 ``model.onnx`` + ``config.json`` + ``tokenizer.json``), i.e. the foreign
"Optimum export folder" layout the runtime loads as it is. Cached on disk (tests/cache.py); read-only.

``runtime_bundle(arch, task) -> Path``: the folder the parity tests run: the bertrt bundle from the
export area's ``tiny_bundle`` when the exporter is present, else the Optimum folder.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest


def _export_with_optimum(checkpoint: Path, out: Path, task: str) -> Path:
    from optimum.exporters.onnx import main_export

    # Quiet the exporter's validation chatter; errors still raise.
    logging.getLogger("optimum").setLevel(logging.ERROR)
    main_export(
        str(checkpoint),
        out,
        task=task,
        opset=17,
        do_validation=False,
        no_post_process=True,
        library_name="transformers",
    )
    return out


@pytest.fixture(scope="session")
def optimum_folder(tiny_checkpoint, model_cache):
    """``optimum_folder(arch, task) -> Path``: an Optimum ONNX export of the tiny checkpoint."""

    def get(arch: str, task: str) -> Path:
        checkpoint = tiny_checkpoint(arch, task)
        return model_cache.get(
            f"optimum-{arch}-{task}", lambda out: _export_with_optimum(checkpoint, out, task)
        )

    return get


def exporter_available() -> bool:
    """Whether the export area's ``bertrt.export.export_model`` exists in this checkout."""
    if importlib.util.find_spec("bertrt.export") is None:
        return False
    import bertrt.export as export

    return hasattr(export, "export_model")


@pytest.fixture(scope="session")
def runtime_bundle(request, optimum_folder):
    """``runtime_bundle(arch, task) -> Path``: bertrt bundle when the exporter exists, else Optimum's folder."""
    if exporter_available():
        return request.getfixturevalue("tiny_bundle")
    return optimum_folder
