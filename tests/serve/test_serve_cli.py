"""``bertrt serve``'s command line and settings: defaults read from ServeSettings, range checks (usage
errors, exit 2), and a bundle that fails its warm-up stopping the command before the port opens.
"""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from bertrt.errors import ServeError
from bertrt.serve import ServeSettings, add_arguments
from bertrt.serve.cli import settings_from_args
from tests.serve.fakes import (
    BrokenPipe,
)


def test_cli_defaults_are_the_settings_defaults():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = ServeSettings()
    flagged = [f.name for f in dataclasses.fields(ServeSettings) if parser.get_default(f.name) is not None]
    assert set(flagged) == {f.name for f in dataclasses.fields(ServeSettings)} - {"retry_after_s"}
    for name in flagged:
        assert parser.get_default(name) == getattr(defaults, name), name
    assert settings_from_args(parser.parse_args(["bundle"])) == defaults
    given = parser.parse_args(["bundle", "--max-batch-size", "7", "--max-wait-ms", "0.5", "--no-batching"])
    assert settings_from_args(given) == dataclasses.replace(
        defaults, max_batch_size=7, max_wait_ms=0.5, batching=False
    )
    text = " ".join(parser.format_help().split())
    assert f"(default {defaults.max_batch_size})" in text and f"(default {defaults.max_queue})" in text


def test_settings_refuse_bad_fault_limits():
    problems = ServeSettings(
        header_timeout_s=0, body_timeout_s=float("nan"), max_batch_tokens=-1, max_connections=0
    ).problems()
    text = "; ".join(problems)
    for flag in ("--header-timeout", "--body-timeout", "--max-batch-tokens", "--max-connections"):
        assert flag in text, text


def test_problems_check_every_numeric_setting():
    assert ServeSettings().problems() == []
    found = ServeSettings(
        max_wait_ms=float("nan"), request_timeout_s=float("inf"), retry_after_s=-1
    ).problems()
    assert len(found) == 3 and any("--request-timeout" in p for p in found)


@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_a_port_out_of_range_is_a_usage_error(port, capsys):
    from bertrt.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["serve", "--port", port, "m=nowhere"])
    assert caught.value.code == 2
    assert f"--port: must be an integer in 0..65535, got {port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--threads", "0"], "--threads: must be an integer >= 1, got 0"),
        (["--shutdown-timeout", "nan"], "--shutdown-timeout: must be a finite number >= 0, got nan"),
    ],
)
def test_other_flags_out_of_range_are_usage_errors(flags, needle, capsys):
    from bertrt.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["serve", *flags, "m=nowhere"])
    assert caught.value.code == 2 and needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--max-wait-ms", "nan"], "--max-wait-ms must be a finite number >= 0, got nan"),
        (["--max-wait-ms", "inf"], "--max-wait-ms must be a finite number >= 0, got inf"),
        (["--request-timeout", "-1"], "--request-timeout must be a finite number of seconds >= 0"),
        (["--max-queue", "0"], "--max-queue must be > 0, got 0"),
    ],
)
def test_settings_out_of_range_are_usage_errors(flags, needle, capsys):
    from bertrt.cli import main

    assert main(["serve", *flags, "m=nowhere"]) == 2
    assert needle in capsys.readouterr().err


def test_serve_refuses_to_start_before_binding_when_warm_up_fails(monkeypatch, capsys, tmp_path):
    import bertrt.pipelines
    import bertrt.serve.cli
    from bertrt.cli import main

    bound = []

    def no_bind(host, port):
        bound.append((host, port))
        raise ServeError("the test stops here")

    monkeypatch.setattr(bertrt.pipelines, "pipeline", lambda *args, **kwargs: BrokenPipe())
    monkeypatch.setattr(bertrt.serve.cli, "_bind", no_bind)
    assert main(["serve", "--port", "0", f"m={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "model 'm' failed its warm-up" in err and "label id 3 is missing" in err and "not starting" in err
    assert bound == []  # the port never opened
