"""``bertrt bench``: run from the source checkout, one line without one, results in ./bertrt-results."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NO_CHECKOUT = (
    "bertrt bench runs from a source checkout of bertrt (benchmarks/ is not part of the installed package)"
)


def test_bench_default_out_is_bertrt_results_in_the_working_directory():
    from benchmarks import harness

    parser = argparse.ArgumentParser()
    harness.add_arguments(parser)
    out = parser.parse_args([]).out
    assert out == Path("bertrt-results") and not out.is_absolute()


def test_bench_resolves_this_checkout():
    from bertrt import cli

    assert cli._source_checkout() == ROOT


def test_bench_without_a_checkout_says_so_in_one_line(monkeypatch, capsys):
    from bertrt import cli

    monkeypatch.setattr(cli, "_source_checkout", lambda: None)
    assert cli.main(["bench", "--quick"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(NO_CHECKOUT) and err.count("\n") == 1


def test_bench_from_an_installed_copy_fails_cleanly(tmp_path):
    """The package copied as site-packages holds it (no pyproject.toml, no benchmarks/ next to it)."""
    site = tmp_path / "site"
    shutil.copytree(ROOT / "engine", site / "bertrt", ignore=shutil.ignore_patterns("__pycache__"))
    code = (
        f"import sys; sys.path[:0] = [{str(site)!r}, {sysconfig.get_paths()['purelib']!r}]; "
        "from bertrt.cli import main; sys.exit(main(['bench', '--quick']))"
    )
    # -S: no site processing, so the editable install's finder does not map bertrt back to engine/
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith(NO_CHECKOUT)


def test_bench_ignores_a_benchmarks_folder_in_the_working_directory(tmp_path):
    user = tmp_path / "benchmarks"
    user.mkdir()
    (user / "__init__.py").write_text("")
    (user / "harness.py").write_text("raise SystemExit('SHADOWED')\n")
    command = [sys.executable, "-m", "bertrt.cli", "bench", "--workloads", "nope", "--no-progress"]
    proc = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert "SHADOWED" not in proc.stderr
    assert proc.returncode == 2 and "unknown" in proc.stderr
