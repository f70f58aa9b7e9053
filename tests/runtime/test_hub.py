"""The one rule for "folder or hub repository" (bertrt.hub), for the runtime and the exporter; no network.

Issue 14: loading from the Hugging Face Hub is explicit. Only ``hf://owner/name[@revision]`` is a hub
repository; every other string (``owner/name`` included) is a path, and a missing one is "no such folder".
"""

from __future__ import annotations

import os
from pathlib import Path

import huggingface_hub
import pytest

import bertrt
from bertrt import hub
from bertrt.bundle import load_bundle
from bertrt.errors import BundleError, ExportError
from bertrt.export import convert, export_model


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
    source = hub.resolve_source("org/model")
    assert source.kind == "folder" and source.path == Path("org/model") and source.repo_id is None
    assert hub.resolve_source(tmp_path).kind == "folder"


@pytest.mark.parametrize(
    "spec",
    [
        "missing-model",
        "./a/b",
        "./org",
        "../org/model",
        "~/org",
        "a/b/c",
        os.path.join(os.sep, "abs", "model"),
        "/org/model",
        "org/model.onnx",
        # issue 14: an owner/name-shaped string without hf:// is a path too, existing or not
        "org/model",
        "out/minilm",
        "bundles/wnut-ner",
        "BAAI/bge-small-en-v1.5",
        "HF://org/model",
    ],
)
def test_every_string_without_the_prefix_is_a_folder(spec):
    source = hub.resolve_source(spec)
    assert source.kind == "folder" and source.repo_id is None
    assert source.path == Path(spec).expanduser()


@pytest.mark.parametrize(
    "spec,repo_id,revision",
    [
        ("hf://org/model", "org/model", None),
        ("hf://bertrt-tests/no-such-model", "bertrt-tests/no-such-model", None),
        ("hf://BAAI/bge-small-en-v1.5", "BAAI/bge-small-en-v1.5", None),
        ("hf://a_b/c.d-e@main", "a_b/c.d-e", "main"),
        ("hf://org/model@refs/pr/1", "org/model", "refs/pr/1"),
        ("hf://org/model@0123abc", "org/model", "0123abc"),
    ],
)
def test_hf_prefix_names_a_hub_repository(spec, repo_id, revision):
    assert hub.resolve_source(spec) == hub.Source("hub", spec, repo_id=repo_id, revision=revision)


@pytest.mark.parametrize(
    "spec,needle",
    [
        ("hf://", "'' is not a Hugging Face Hub repository id"),
        ("hf://model", "'model' is not a Hugging Face Hub repository id"),
        ("hf://a/b/c", "'a/b/c' is not"),
        ("hf://org--x/model", "is not a Hugging Face Hub repository id"),
        ("hf://org/model.onnx", "is not a Hugging Face Hub repository id"),
        ("hf://org/model@", "'' is not a revision"),
        ("hf://org/model@a b", "'a b' is not a revision"),
        ("", "empty or whitespace-only"),
        ("   ", "empty or whitespace-only"),
    ],
)
def test_strings_that_name_nothing_are_the_callers_error(no_download, spec, needle):
    with pytest.raises(BundleError, match=needle) as info:
        load_bundle(spec)
    assert info.value.path == (spec if spec.strip() else repr(spec))
    with pytest.raises(ExportError, match=needle):
        convert.resolve_source(spec)
    with pytest.raises(ValueError, match=needle):
        hub.resolve_source(spec)


def test_empty_bundle_string_is_not_the_current_folder(no_download, runtime_bundle, monkeypatch):
    # issue 14: pipeline("ner", "") loaded the bundle in the working directory
    monkeypatch.chdir(runtime_bundle("bert", "token-classification"))
    with pytest.raises(BundleError, match=r"^'': an empty or whitespace-only string names no folder"):
        bertrt.pipeline("ner", "")
    with pytest.raises(BundleError, match="empty or whitespace-only"):
        bertrt.pipeline("ner", " \t")
    with pytest.raises(BundleError, match="expected a folder path or 'hf://owner/name', got int"):
        load_bundle(3)
    assert bertrt.pipeline("ner", ".").task == "token-classification"  # '.' says it explicitly


def test_a_path_object_is_never_a_hub_id():
    assert hub.resolve_source(Path("org/model")).kind == "folder"


def test_too_long_repo_id_is_not_a_repo_id():
    assert not hub.is_repo_id("o/" + "n" * 95)
    with pytest.raises(ValueError, match="not a Hugging Face Hub repository id"):
        hub.resolve_source("hf://o/" + "n" * 95)


@pytest.mark.parametrize(
    "spec",
    [
        "./a/b",
        "missing-model",
        "a/b/c",
        "~/no-such-bertrt-folder",
        "out/minilm",
        "bundles/wnut-ner",
        "org/model",
    ],
)
def test_missing_paths_never_download(no_download, tmp_path, spec):
    with pytest.raises(BundleError, match="no such folder"):
        load_bundle(spec)
    with pytest.raises(ExportError, match="no such folder"):
        convert.resolve_source(spec)
    with pytest.raises(BundleError, match="no such folder"):
        load_bundle(tmp_path / "missing")


def test_owner_name_without_prefix_never_calls_snapshot_download(monkeypatch, tmp_path):
    # issue 14: with a network, a missing "out/minilm" was downloaded from the hub and run
    def refuse(*args, **kwargs):
        pytest.fail(f"snapshot_download called: {args} {kwargs}")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", refuse)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError, match="no such folder") as info:
        load_bundle("bundles/wnut-ner")
    message = str(info.value)
    assert str(tmp_path / "bundles" / "wnut-ner") in message  # the folder it looked at
    assert "hf://bundles/wnut-ner" in message  # and how to ask for the hub explicitly
    with pytest.raises(ExportError, match=r"out/minilm: no such folder .*hf://out/minilm"):
        export_model("out/minilm", tmp_path / "bundle")
    assert not (tmp_path / "bundle").exists()


def test_download_failures_become_the_callers_error(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError

    calls = []

    def fake_snapshot(repo_id, revision, allow_patterns, local_files_only):
        calls.append((repo_id, revision, allow_patterns, local_files_only))
        raise LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(BundleError, match=r"org/model: fetching it .* is unreachable"):
        hub.download(
            "org/model",
            ["*.json"],
            lambda reason: BundleError(
                "org/model", f"fetching it from the Hugging Face Hub failed ({reason})"
            ),
            revision="v1",
            reachable=lambda endpoint: False,
        )
    assert calls == [("org/model", "v1", ["*.json"], True)]  # unreachable: the local cache only
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ExportError, match="HF_HUB_OFFLINE is set"):
        hub.download("org/model", ("*.onnx",), ExportError, reachable=lambda endpoint: pytest.fail("probed"))


def test_hf_prefix_offline_fails_at_once_naming_the_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        BundleError,
        match=r"^hf://bertrt-tests/no-such-model: fetching it from the Hugging Face Hub failed "
        r"\(HF_HUB_OFFLINE is set",
    ):
        load_bundle("hf://bertrt-tests/no-such-model")
    with pytest.raises(ExportError, match=r"cannot fetch 'bertrt-tests/no-such-model' .*HF_HUB_OFFLINE"):
        convert.resolve_source("hf://bertrt-tests/no-such-model@main")
