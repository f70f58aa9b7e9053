"""The one path to the Hugging Face Hub, and the one rule for what a model string names.

:func:`resolve_source` is the only place that decides between a local folder and a hub repository; the
runtime (``load_bundle``) and the exporter (``export_model``) both call it and then :func:`download`,
each turning a failure into its own error (BundleError, ExportError). huggingface_hub is imported when a
download runs, never at ``import bertrt``.

The rule: loading from the Hub is explicit. Only a string ``hf://owner/name`` (optionally
``hf://owner/name@revision``: a branch, tag or commit) names a hub repository; everything else is a local
path, and a path that does not exist is "no such folder", never a download. So a typo or the wrong
working directory (``bundles/wnut-ner`` looked up from elsewhere) can never fetch and run a stranger's
model.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlparse

__all__ = [
    "HUB_PREFIX",
    "Source",
    "download",
    "hub_reachable",
    "is_repo_id",
    "missing_folder_problem",
    "resolve_source",
]

#: The prefix that opts in to the Hugging Face Hub: ``hf://owner/name[@revision]``.
HUB_PREFIX = "hf://"

# The hub's repo id grammar, restricted to its owner/name form: word characters, '-' and '.', each part
# starting and ending with a letter, digit or '_', no '--' or '..', at most 96 characters.
_PART = r"[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"(?!.*(?:--|\.\.)){_PART}/{_PART}", re.ASCII)
_MAX_REPO_ID = 96
# A git revision: a branch, tag (``refs/pr/1`` included) or commit; no whitespace, no '..'.
_REVISION = re.compile(r"(?!.*\.\.)[\w./-]{1,128}", re.ASCII)
_TRUE = ("1", "ON", "YES", "TRUE")
# A name ending like a file bertrt reads (``owner/model.onnx``) is a path, not a repository.
_FILE_SUFFIXES = (".onnx", ".json", ".txt", ".bin", ".safetensors")


@dataclass(frozen=True)
class Source:
    """What a model string names: a local ``path`` (``kind="folder"``; it may not exist) or a ``repo_id``
    (``kind="hub"``, at ``revision``; None: the default branch)."""

    kind: Literal["folder", "hub"]
    spec: str
    path: Path | None = None
    repo_id: str | None = None
    revision: str | None = None


def is_repo_id(text: str) -> bool:
    """Whether ``text`` has the hub's ``owner/name`` form (``./a``, ``~/a``, ``a/b/c``, ``a`` do not)."""
    return (
        len(text) <= _MAX_REPO_ID
        and _REPO_ID.fullmatch(text) is not None
        and not text.lower().endswith(_FILE_SUFFIXES)
    )


def _value_error(what: str, problem: str) -> Exception:
    return ValueError(f"{what}: {problem}")


def resolve_source(spec: str | os.PathLike, fail: Callable[[str, str], Exception] = _value_error) -> Source:
    """Folder or hub repository: the one rule.

    A string ``hf://owner/name`` or ``hf://owner/name@revision`` is a hub repository. Anything else (a
    ``Path``, ``./model``, ``/abs/model``, ``~/m``, ``owner/name`` without the prefix) is a folder, which
    may not exist: the caller reports that as "no such folder" (:func:`missing_folder_problem`), never
    a download. ``fail(what, problem)`` builds the caller's error (``BundleError`` fits as it is) for a
    value that names nothing: not a str or path, an empty or whitespace-only string (``Path("")`` would
    silently be the current folder), or an ``hf://`` id that is not ``owner/name``.
    """
    if not isinstance(spec, (str, os.PathLike)):
        raise fail(
            repr(spec), f"expected a folder path or '{HUB_PREFIX}owner/name', got {type(spec).__name__}"
        )
    text = os.fspath(spec)
    if not isinstance(text, str):  # a bytes path
        raise fail(repr(text), f"expected a folder path or '{HUB_PREFIX}owner/name' as str, got bytes")
    if not text.strip():
        raise fail(
            repr(text),
            "an empty or whitespace-only string names no folder; "
            "pass a folder path ('.' for the current folder)",
        )
    if isinstance(spec, str) and text.startswith(HUB_PREFIX):
        repo_id, at, revision = text[len(HUB_PREFIX) :].partition("@")
        if not is_repo_id(repo_id):
            raise fail(
                text,
                f"{repo_id!r} is not a Hugging Face Hub repository id; "
                f"write {HUB_PREFIX}owner/name[@revision]",
            )
        if at and _REVISION.fullmatch(revision) is None:
            raise fail(text, f"{revision!r} is not a revision (a branch, tag or commit)")
        return Source("hub", text, repo_id=repo_id, revision=revision or None)
    return Source("folder", text, path=Path(text).expanduser())


def missing_folder_problem(source: Source) -> str:
    """The "no such folder" problem text for a folder ``source`` that does not exist.

    Names the absolute path looked at (a relative path depends on the working directory), and for an
    ``owner/name``-shaped string how to ask for the hub repository instead.
    """
    problem = "no such folder"
    if not source.path.is_absolute():
        problem += f" (looked for {Path.cwd() / source.path})"
    if is_repo_id(source.spec):
        problem += (
            f"; if you meant the Hugging Face Hub repository {source.spec}, write {HUB_PREFIX}{source.spec}"
        )
    return problem


def hub_reachable(endpoint: str, timeout: float = 5.0) -> bool:
    """A bounded TCP probe of the hub, so that an unreachable network fails in seconds, not minutes."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # a proxy decides; let huggingface_hub (with its own timeouts) try
    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def download(
    repo_id: str,
    allow_patterns: Iterable[str],
    fail: Callable[[str], Exception],
    *,
    revision: str | None = None,
    reachable: Callable[[str], bool] = hub_reachable,
) -> Path:
    """The local snapshot folder of ``repo_id`` (at ``revision``) with the files matching ``allow_patterns``.

    Offline (``HF_HUB_OFFLINE``), or when ``reachable(endpoint)`` says the hub cannot be reached, only
    the local cache is used. Every failure (huggingface_hub missing, not cached, HTTP error, network)
    raises ``fail(reason)``, the caller's typed error.
    """
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, OfflineModeIsEnabled
    except ImportError as exc:
        raise fail("huggingface_hub is not installed") from exc

    offline = constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE
    reason = "HF_HUB_OFFLINE is set and it is not in the local cache"
    if not offline and not reachable(constants.ENDPOINT):
        offline, reason = True, f"{constants.ENDPOINT} is unreachable"  # a cached copy still works
    try:
        return Path(
            snapshot_download(
                repo_id, revision=revision, allow_patterns=list(allow_patterns), local_files_only=offline
            )
        )
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise fail(reason) from exc
    except HfHubHTTPError as exc:
        raise fail(f"HTTP error: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # network, auth, a repository that is not there: one typed error
        raise fail(f"{type(exc).__name__}: {exc}") from exc
