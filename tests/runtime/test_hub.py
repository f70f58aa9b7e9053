"""The one rule for "folder or hub id" (bertrt.hub), for the runtime and the exporter; no network."""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
import pytest

from bertrt import hub
from bertrt.bundle import load_bundle
from bertrt.errors import BundleError, ExportError
from bertrt.export import convert


@pytest.fixture()
def no_download(monkeypatch):
    """Fail the test if anything downloads: hub.download or huggingface_hub's snapshot_download."""

    def refuse(*args, **kwargs):
        pytest.fail(f"a download was attempted: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.setattr(hub, "download", refuse)


def test_existing_folder_is_a_folder(tmp_path, monkeypatch):
    (tmp_path / "org" / "model").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    source = hub.resolve_source("org/model")  # owner/name form, but a folder is there: the folder wins
    assert source.kind == "folder" and source.path == Path("org/model") and source.repo_id is None
    assert hub.resolve_source(tmp_path).kind == "folder"


@pytest.mark.parametrize(
    "spec",
    [
        "missing-model",  # name only: a relative folder, never a hub id
        "./a/b",
        "./org",
        "../org/model",
        "~/org",
        "a/b/c",
        os.path.join(os.sep, "abs", "model"),
        "/org/model",
        "org/model.onnx",
        "org/config.json",
        "org--x/model",
        "org/a..b",
        ".org/model",
        "org/model-",
    ],
)
def test_path_like_strings_are_folders(spec):
    source = hub.resolve_source(spec)
    assert source.kind == "folder" and source.repo_id is None
    assert source.path == Path(spec).expanduser()
    assert not hub.is_repo_id(spec)


@pytest.mark.parametrize(
    "spec", ["org/model", "bertrt-tests/no-such-model", "BAAI/bge-small-en-v1.5", "a_b/c.d-e"]
)
def test_owner_name_strings_are_hub_ids(spec):
    source = hub.resolve_source(spec)
    assert source == hub.Source("hub", spec, repo_id=spec)


def test_a_path_object_is_never_a_hub_id():
    assert hub.resolve_source(Path("org/model")).kind == "folder"


def test_too_long_repo_id_is_a_path():
    assert not hub.is_repo_id("o/" + "n" * 95)


@pytest.mark.parametrize("spec", ["./a/b", "missing-model", "a/b/c", "~/no-such-bertrt-folder"])
def test_missing_paths_never_download(no_download, tmp_path, spec):
    with pytest.raises(BundleError, match="no such folder"):
        load_bundle(spec)
    with pytest.raises(ExportError, match="no such checkpoint folder"):
        convert.resolve_source(spec)
    with pytest.raises(BundleError, match="no such folder"):
        load_bundle(tmp_path / "missing")


def test_download_failures_become_the_callers_error(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def fake_snapshot(repo_id, allow_patterns, local_files_only):
        calls.append((repo_id, allow_patterns, local_files_only))
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(BundleError, match=r"org/model: not a folder, and fetching it .* is unreachable"):
        hub.download(
            "org/model",
            ["*.json"],
            lambda reason: BundleError(
                "org/model", f"not a folder, and fetching it from the Hugging Face Hub failed ({reason})"
            ),
            reachable=lambda endpoint: False,
        )
    assert calls == [("org/model", ["*.json"], True)]  # unreachable: the local cache only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError, match="HF_HUB_OFFLINE is set"):
        hub.download("org/model", ("*.onnx",), ExportError, reachable=lambda endpoint: pytest.fail("probed"))


def test_runtime_hub_id_offline_is_a_bundle_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        BundleError,
        match="bertrt-tests/no-such-model: not a folder, and fetching it from the Hugging Face Hub failed",
    ):
        load_bundle("bertrt-tests/no-such-model")
