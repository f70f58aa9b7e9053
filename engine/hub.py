"""The one path to the Hugging Face Hub, and the one rule for what a model string names.

:func:`resolve_source` is the only place that decides between a local folder and a hub repository; the
runtime (``load_bundle``) and the exporter (``export_model``) both call it and then :func:`download`,
each turning a failure into its own error (BundleError, ExportError). huggingface_hub is imported when a
download runs, never at ``import bertrt``.
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

__all__ = ["Source", "download", "hub_reachable", "is_repo_id", "resolve_source"]

# The hub's repo id grammar, restricted to its owner/name form: word characters, '-' and '.', each part
# starting and ending with a letter, digit or '_', no '--' or '..', at most 96 characters.
_PART = r"[A-Za-z0-9_](?:[\w.-]*[A-Za-z0-9_])?"
_REPO_ID = re.compile(rf"(?!.*(?:--|\.\.)){_PART}/{_PART}", re.ASCII)
_MAX_REPO_ID = 96
_TRUE = ("1", "ON", "YES", "TRUE")
# A name ending like a file bertrt reads (``owner/model.onnx``) is a path, not a repository.
_FILE_SUFFIXES = (".onnx", ".json", ".txt", ".bin", ".safetensors")


@dataclass(frozen=True)
class Source:
    """What a model string names: a local ``path`` (``kind="folder"``; it may not exist) or a ``repo_id``."""

    kind: Literal["folder", "hub"]
    spec: str
    path: Path | None = None
    repo_id: str | None = None


def is_repo_id(text: str) -> bool:
    """Whether ``text`` has the hub's ``owner/name`` form (``./a``, ``~/a``, ``a/b/c``, ``a`` do not)."""
    return (
        len(text) <= _MAX_REPO_ID
        and _REPO_ID.fullmatch(text) is not None
        and not text.lower().endswith(_FILE_SUFFIXES)
    )


def resolve_source(spec: str | os.PathLike) -> Source:
    """Folder or hub repository: the one rule.

    An existing path is a folder. A ``Path`` (any ``os.PathLike``) is always a folder. A string that is
    no existing path is a hub repository only when it has the ``owner/name`` form (:func:`is_repo_id`);
    any other string (``./model``, ``/abs/model``, ``~/m``, ``a/b/c``, ``name``) is a folder that does
    not exist, which the caller reports as "no such folder", never a download.
    """
    text = os.fspath(spec)
    path = Path(text).expanduser()
    if not isinstance(spec, os.PathLike) and not path.exists() and is_repo_id(text):
        return Source("hub", text, repo_id=text)
    return Source("folder", text, path=path)


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
    reachable: Callable[[str], bool] = hub_reachable,
) -> Path:
    """The local snapshot folder of ``repo_id`` with the files matching ``allow_patterns``.

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
        return Path(snapshot_download(repo_id, allow_patterns=list(allow_patterns), local_files_only=offline))
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as exc:
        raise fail(reason) from exc
    except HfHubHTTPError as exc:
        raise fail(f"HTTP error: {str(exc).splitlines()[0]}") from exc
    except Exception as exc:  # network, auth, a repository that is not there: one typed error
        raise fail(f"{type(exc).__name__}: {exc}") from exc
