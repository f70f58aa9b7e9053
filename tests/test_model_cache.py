"""tests/cache.py: entries are built once, shared safely between processes, and rebuilt when altered."""

from __future__ import annotations

import multiprocessing
import os
import time
from pathlib import Path

from tests.cache import TestCache, fingerprint


def _write(text: str, delay: float = 0.0):
    def build(out: Path) -> None:
        out.mkdir()
        time.sleep(delay)
        (out / "data.txt").write_text(text)
        (out / "sub").mkdir()
        (out / "sub" / "more.txt").write_text(text * 2)

    return build


def test_built_once_and_reused(tmp_path):
    calls = []

    def build(out: Path) -> None:
        calls.append(out)
        _write("a")(out)

    folder = TestCache(tmp_path).get("entry", build)
    assert (folder / "data.txt").read_text() == "a"
    assert {p.name for p in folder.iterdir()} == {"data.txt", "sub"}  # only what build wrote
    assert TestCache(tmp_path).get("entry", build) == folder  # a new session reads the disk
    assert len(calls) == 1
    assert [p.name for p in tmp_path.iterdir()] == [fingerprint()]


def test_altered_entry_is_reported_and_rebuilt(tmp_path):
    cache = TestCache(tmp_path)
    folder = cache.get("entry", _write("a"))
    assert cache.changed() == []
    (folder / "tuning.json").write_text("{}")  # a test writing into a shared folder
    assert cache.changed() == ["entry"]
    assert not folder.exists()
    folder = TestCache(tmp_path).get("entry", _write("b"))
    (folder / "sub" / "more.txt").unlink()  # damaged outside a session
    assert (TestCache(tmp_path).get("entry", _write("c")) / "sub" / "more.txt").read_text() == "cc"


def test_failed_build_leaves_no_entry(tmp_path):
    cache = TestCache(tmp_path)

    def broken(out: Path) -> None:
        out.mkdir()
        (out / "half.txt").write_text("x")
        raise RuntimeError("interrupted")

    try:
        cache.get("entry", broken)
    except RuntimeError:
        pass
    assert list(cache.root.iterdir()) == []
    assert (cache.get("entry", _write("a")) / "data.txt").read_text() == "a"


def _get_in_process(base: str, text: str, queue) -> None:
    folder = TestCache(Path(base)).get("entry", _write(text, delay=0.5))
    queue.put((folder / "data.txt").read_text())


def test_two_processes_building_at_once_agree(tmp_path):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [context.Process(target=_get_in_process, args=(str(tmp_path), t, queue)) for t in "xy"]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    assert results[0] == results[1]  # the first rename won; the other process read that entry
    assert [p.name for p in TestCache(tmp_path).root.iterdir()] == ["entry"]  # no staging left


def test_leftovers_of_killed_processes_are_removed(tmp_path):
    root = TestCache(tmp_path).root
    old, fresh = root / ".build-entry-x", root / ".trash-entry-y"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "half.txt").write_text("x")
    os.utime(old, (time.time() - 2 * 24 * 3600,) * 2)
    TestCache(tmp_path)
    assert not old.exists() and fresh.exists()  # a build under way in another process is left alone
