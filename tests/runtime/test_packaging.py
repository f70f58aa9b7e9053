"""The wheel ships one top-level name, ``bertrt`` (runtime) with ``bertrt.export`` inside, and never benchmarks/."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("wheel-build")
    # --no-build-isolation: the venv's setuptools, no download; a scratch build dir keeps the checkout clean.
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        cwd=build,
        env={**__import__("os").environ, "TMPDIR": str(build)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    (found,) = out.glob("bertrt-*.whl")
    return found


@pytest.mark.slow
def test_wheel_has_only_the_bertrt_top_level_name(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        top = {n.split("/")[0] for n in names}
        declared = (
            zf.read(next(n for n in names if n.endswith(".dist-info/top_level.txt"))).decode().split()
            if any(n.endswith("top_level.txt") for n in names)
            else ["bertrt"]
        )
    assert {t for t in top if not t.endswith(".dist-info")} == {"bertrt"}
    assert declared == ["bertrt"]
    assert "bertrt/__init__.py" in names and "bertrt/export/__init__.py" in names
    assert "bertrt/cli.py" in names and "bertrt/export/pipeline.py" in names
    for sub in ("tasks", "ner", "serve", "evaluate"):
        if (ROOT / "engine" / sub / "__init__.py").is_file():
            assert f"bertrt/{sub}/__init__.py" in names, f"subpackage {sub} missing from the wheel"
    assert not any(n.startswith(("engine/", "export/", "benchmarks/", "tests/")) for n in names)
    assert not any("/benchmarks/" in n or n.endswith("conftest.py") for n in names)


@pytest.mark.slow
def test_every_runtime_module_is_in_the_wheel(wheel):
    """A module added under engine/ but missing from pyproject's package list would vanish from the wheel."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for path in (ROOT / "engine").rglob("*.py"):
        rel = "bertrt/" + path.relative_to(ROOT / "engine").as_posix()
        assert rel in names, f"{rel} is not shipped"
    for path in (ROOT / "export").rglob("*.py"):
        rel = "bertrt/export/" + path.relative_to(ROOT / "export").as_posix()
        assert rel in names, f"{rel} is not shipped"


def test_every_source_folder_is_a_declared_package():
    """The default run's stand-in for the (slow) wheel build: a folder of modules under engine/ or
    export/ that pyproject's package list misses would vanish from the wheel."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")  # no tomllib on Python 3.10
    assert 'package-dir = {"bertrt" = "engine", "bertrt.export" = "export"}' in text
    packages = re.findall(r'"([\w.]+)"', re.search(r"^packages = \[(.*)\]$", text, re.M).group(1))
    for folder, name in {"engine": "bertrt", "export": "bertrt.export"}.items():
        for module in (ROOT / folder).rglob("*.py"):
            package = ".".join((name, *module.parent.relative_to(ROOT / folder).parts))
            assert package in packages, f"{module.relative_to(ROOT)}: {package} is not in packages"
