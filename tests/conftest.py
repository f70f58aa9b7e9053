"""Session fixtures and hooks. The tiny models come from tests/builders.py, cached on disk (tests/cache.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.builders import build_tiny_checkpoint
from tests.cache import CACHE_ENV, TestCache

# Fixtures of each area live in their own plugin module.
pytest_plugins = ["tests.fixtures_export", "tests.fixtures_runtime"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

_SESSION_CACHE = pytest.StashKey[TestCache]()


def pytest_configure(config):
    # Tiny reference models run ~100x slower with torch's default 2 spinning threads on this shared
    # 2-core machine than with one; the reference side of every parity test is single-threaded.
    try:
        import torch
    except ImportError:  # the runtime-only test environment
        return
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def model_cache(request, tmp_path_factory) -> TestCache:
    """The on-disk cache of built models: ``$BERTRT_TEST_CACHE`` (``off``: this session's temp folder)."""
    setting = os.environ.get(CACHE_ENV, "")
    if setting.lower() == "off":
        base = tmp_path_factory.mktemp("model-cache")
    else:
        base = Path(setting).expanduser() if setting else Path.home() / ".cache" / "bertrt-tests"
    cache = TestCache(base)
    request.config.stash[_SESSION_CACHE] = cache
    return cache


def pytest_sessionfinish(session, exitstatus):
    """Cached folders are shared by every test and run: a test that wrote into one fails the run."""
    cache = session.config.stash.get(_SESSION_CACHE, None)
    altered = cache.changed() if cache is not None else []
    if altered:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        message = (
            f"a test modified cached fixture folders (removed; copy them into tmp_path first): "
            f"{', '.join(altered)}"
        )
        if reporter is not None:
            reporter.ensure_newline()
            reporter.write_line(f"ERROR: {message}", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def tiny_checkpoint(model_cache):
    """``tiny_checkpoint(arch, task) -> Path``: a checkpoint folder (read-only: copy it to change it)."""

    def get(arch: str, task: str) -> Path:
        return model_cache.get(
            f"checkpoint-{arch}-{task}", lambda out: build_tiny_checkpoint(arch, task, out)
        )

    return get
