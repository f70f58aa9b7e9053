"""The optimum-intel peer of ``benchmarks.harness`` without building its venv: the install commands, the venv
build's failure and torchvision paths (fake runner), the worker protocol (a stand-in worker process and the
real worker's pure parts), answer comparison, and the "unavailable" row in the harness and the report."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import harness, optimum_intel, optimum_intel_worker, report
from benchmarks.optimum_intel import PINS, TORCH_PIN, PeerSystem, PeerUnavailable
from benchmarks.systems import ALL_SYSTEMS, PEERS, SYSTEMS


def test_peer_is_listed_apart_from_the_in_process_systems():
    assert "optimum-intel" in PEERS and "optimum-intel" not in SYSTEMS
    assert list(ALL_SYSTEMS) == [*SYSTEMS, *PEERS]


def test_install_commands_pin_torch_first_and_again(tmp_path):
    cmds = optimum_intel.install_commands(tmp_path / "venv", base_python="/usr/bin/python3")
    assert cmds[0] == ["/usr/bin/python3", "-m", "venv", str(tmp_path / "venv")]
    py = str(tmp_path / "venv" / "bin" / "python")
    assert cmds[1][:4] == [py, "-m", "pip", "install"] and cmds[1][-1] == TORCH_PIN == "torch==2.13.0"
    assert [a for a in cmds[1] if "==" in a] == [TORCH_PIN]  # torch alone first
    assert cmds[2][:4] == [py, "-m", "pip", "install"]
    pins = [a for a in cmds[2] if not a.startswith("-") and a not in (py, "pip", "install")]
    assert pins == [TORCH_PIN, *PINS]
    assert all("==" in p for p in pins)  # every package exactly pinned
    assert any(p.startswith("optimum-intel[openvino]==") for p in pins)
    assert "optimum==2.3.0" in pins and any(p.startswith("transformers==5.") for p in pins)


def test_venv_dir_is_under_the_cache_and_keyed_by_the_pins(tmp_path):
    folder = optimum_intel.venv_dir(tmp_path)
    assert folder.parent == tmp_path / "peers" and folder.name.startswith("optimum-intel-")
    assert folder.name.endswith(optimum_intel.pins_key())


class FakeRunner:
    """Records commands; fails the ``fail_at``-th, answers the stack check with ``check``."""

    def __init__(self, fail_at=None, check=None):
        self.cmds, self.fail_at, self.check = [], fail_at, check

    def __call__(self, cmd, timeout):
        self.cmds.append(cmd)
        if cmd[1:3] == ["-m", "venv"]:
            (optimum_intel.venv_python(cmd[3])).parent.mkdir(parents=True)
            (optimum_intel.venv_python(cmd[3])).write_text("")
        if len(self.cmds) == self.fail_at:
            return SimpleNamespace(
                returncode=1, stdout="", stderr="Collecting x\nERROR: No matching distribution"
            )
        out = json.dumps(self.check) if cmd[1] == "-c" else ""
        return SimpleNamespace(returncode=0, stdout=out, stderr="")


def test_venv_build_failure_is_peer_unavailable_and_leaves_no_marker(tmp_path):
    runner = FakeRunner(fail_at=2)
    with pytest.raises(PeerUnavailable, match=r"torch==2\.13\.0.*exit 1.*No matching distribution"):
        optimum_intel.ensure_venv(tmp_path, runner=runner)
    assert not (optimum_intel.venv_dir(tmp_path) / optimum_intel.MARKER).exists()
    assert len(runner.cmds) == 2  # stopped at the failing step


def test_venv_build_removes_a_torchvision_that_does_not_import(tmp_path):
    check = {
        "torch": "2.13.0+cpu",
        "optimum-intel": "2.2.0",
        "optimum": "2.3.0",
        "transformers": "5.5.4",
        "openvino": "2026.4.1",
        "torchvision": "0.28.0",
        "torchvision_matches_torch": False,
        "torchvision_error": "RuntimeError: operator torchvision::nms does not exist",
    }
    runner = FakeRunner(check=check)
    python = optimum_intel.ensure_venv(tmp_path, runner=runner)
    assert python == optimum_intel.venv_python(optimum_intel.venv_dir(tmp_path))
    assert runner.cmds[-1][-4:] == ["pip", "uninstall", "-y", "torchvision"]
    record = optimum_intel.venv_record(tmp_path)
    assert record["versions"]["torchvision_removed"] == "0.28.0" and "torchvision" not in record["versions"]
    assert record["pins"] == [TORCH_PIN, *PINS]
    # built once: a second call runs nothing
    again = FakeRunner()
    assert optimum_intel.ensure_venv(tmp_path, runner=again) == python and again.cmds == []


def test_venv_build_rejects_a_moved_torch(tmp_path):
    runner = FakeRunner(check={"torch": "2.14.1", "torchvision": None})
    with pytest.raises(PeerUnavailable, match="torch 2.14.1"):
        optimum_intel.ensure_venv(tmp_path, runner=runner)


def test_worker_command_and_reply_parsing(tmp_path):
    spec = optimum_intel.worker_spec("text-classification", tmp_path / "ckpt", 2, tmp_path / "ir")
    cmd = optimum_intel.worker_command("/venv/bin/python", spec)
    assert cmd[0] == "/venv/bin/python" and cmd[1].endswith("benchmarks/optimum_intel_worker.py")
    assert json.loads(cmd[2]) == {
        "task": "text-classification",
        "checkpoint": str(tmp_path / "ckpt"),
        "threads": 2,
        "ir_dir": str(tmp_path / "ir"),
    }
    assert optimum_intel.parse_reply("some library chatter") is None
    assert optimum_intel.parse_reply('BERTRT-PEER {"ok": true, "n": 3}') == {"ok": True, "n": 3}
    with pytest.raises(RuntimeError, match="unparsable"):
        optimum_intel.parse_reply("BERTRT-PEER {nope")
    with pytest.raises(RuntimeError, match="without 'ok'"):
        optimum_intel.parse_reply('BERTRT-PEER {"n": 3}')


FAKE_WORKER = textwrap.dedent(
    """
    import json, sys
    print("chatter before the first reply")
    print("BERTRT-PEER " + json.dumps({"ok": True, "ready": True, "inference_precision": "bf16"}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        if req["op"] == "quit":
            break
        texts = req["texts"]
        if texts == ["boom"]:
            print("BERTRT-PEER " + json.dumps({"ok": False, "error": "ValueError: boom"}), flush=True)
            continue
        lat = [0.25] * len(texts) if req["batch_size"] == 1 else []
        out = [{"label": t.upper(), "score": 1.0} for t in texts] if req["outputs"] else None
        reply = {"ok": True, "n": len(texts), "seconds": 0.5, "latencies": lat, "outputs": out}
        print("BERTRT-PEER " + json.dumps(reply), flush=True)
    """
)


@pytest.mark.slow  # a worker process: the slow run; the pure parts stay in the default run
def test_peer_system_speaks_the_protocol(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(FAKE_WORKER)
    peer = PeerSystem([sys.executable, str(script)], start_timeout=60)
    try:
        assert peer.info["inference_precision"] == "bf16"
        assert peer.timed_pass(["a", "b"], 8) == (0.5, [])
        assert peer.timed_pass(["a", "b"], 1) == (0.5, [0.25, 0.25])
        assert peer(["a", "b"], 8) == [{"label": "A", "score": 1.0}, {"label": "B", "score": 1.0}]
        # the harness's pass timer takes the worker's own timing
        assert harness._timed_pass(peer, ["x"] * 3, 1) == (0.5, [0.25] * 3)
        with pytest.raises(RuntimeError, match="boom"):
            peer(["boom"], 8)
        assert peer(["c"], 8) == [{"label": "C", "score": 1.0}]  # still serving
    finally:
        peer.close()
    assert peer.proc.returncode == 0


@pytest.mark.slow  # a worker process: the slow run; the pure parts stay in the default run
def test_peer_system_reports_a_worker_that_dies(tmp_path):
    script = tmp_path / "dies.py"
    script.write_text("import sys\nprint('no module named optimum', file=sys.stderr)\nsys.exit(3)\n")
    with pytest.raises(RuntimeError, match=r"exited \(3\).*no module named optimum"):
        PeerSystem([sys.executable, str(script)], start_timeout=60)


def test_worker_pure_parts():
    calls = []

    def pipe(texts, batch_size, **kwargs):
        calls.append((list(texts), batch_size, kwargs))
        return [{"label": t, "score": np.float32(0.5)} for t in texts]

    call = optimum_intel_worker.pipeline_call(pipe, "text-classification")
    out = call(["ccc", "a", "bb"], 8)
    assert calls[0] == (["a", "bb", "ccc"], 8, {"truncation": True})  # length-sorted like the other systems
    assert [o["label"] for o in out] == ["ccc", "a", "bb"]  # order restored
    assert optimum_intel_worker.plain(out)[0] == {"label": "ccc", "score": 0.5}
    assert isinstance(optimum_intel_worker.plain(np.arange(3, dtype=np.float32)), list)
    answers, seconds, lat = optimum_intel_worker.run_pass(call, ["x", "yy"], 1)
    assert (
        [a["label"] for a in answers] == ["x", "yy"] and len(lat) == 2 and seconds == pytest.approx(sum(lat))
    )
    answers, seconds, lat = optimum_intel_worker.run_pass(call, ["x", "yy"], 2)
    assert len(answers) == 2 and lat == [] and seconds > 0


def test_worker_rejects_a_bad_command_line():
    proc = subprocess.run(
        [sys.executable, str(optimum_intel.WORKER)], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_compare_answers_per_task():
    ents = [[{"entity_group": "PER", "start": 0, "end": 3}], []]
    other = [
        [{"entity_group": "PER", "start": 0, "end": 3}, {"entity_group": "LOC", "start": 5, "end": 9}],
        [],
    ]
    same = optimum_intel.compare_answers("token-classification", ents, ents)
    assert same["value"] == 1.0 and same["identical_texts"] == 1.0
    diff = optimum_intel.compare_answers("token-classification", ents, other)
    assert diff["value"] == pytest.approx(2 * 1 / 3) and diff["identical_texts"] == 0.5
    labels = optimum_intel.compare_answers(
        "text-classification",
        [{"label": "pos", "score": 0.9}, [{"label": "neg", "score": 0.6}]],
        [[{"label": "pos", "score": 0.8}], {"label": "pos", "score": 0.55}],
    )
    assert labels["value"] == 0.5 and labels["max_score_diff"] == pytest.approx(0.1)
    vec = optimum_intel.compare_answers(
        "feature-extraction", [np.array([1.0, 0.0]), np.array([1.0, 1.0])], [[2.0, 0.0], [1.0, 0.0]]
    )
    assert vec["value"] == pytest.approx(np.sqrt(0.5)) and vec["cosine_mean"] == pytest.approx(
        (1 + np.sqrt(0.5)) / 2
    )
    with pytest.raises(ValueError, match="answers"):
        optimum_intel.compare_answers("feature-extraction", [[1.0]], [])


class _Bar:
    def set_postfix_str(self, _):
        pass


def test_unavailable_peer_becomes_a_row_not_a_failure(monkeypatch):
    def build(name, workload, threads):
        if name == "optimum-intel":
            raise PeerUnavailable("building the peer venv failed at `pip install torch==2.13.0` (exit 1)")
        return lambda texts, bs: texts

    monkeypatch.setattr(harness, "build_system", build)
    workload = SimpleNamespace(name="ner")
    built, build_s, unavailable = harness._build_systems(
        workload, ["bertrt-int8", "optimum-intel"], 1, _Bar()
    )
    assert list(built) == ["bertrt-int8"] and list(build_s) == ["bertrt-int8"]
    assert unavailable["optimum-intel"]["reason"].startswith("PeerUnavailable: building the peer venv failed")

    def broken(name, workload, threads):  # an in-process system raising it is a real failure
        raise PeerUnavailable("no")

    monkeypatch.setattr(harness, "build_system", broken)
    with pytest.raises(PeerUnavailable):
        harness._build_systems(workload, ["bertrt-int8"], 1, _Bar())


def _report_result(unavailable: bool) -> dict:
    one = {"median": 10.0, "min": 9.0, "max": 11.0, "runs": [10.0]}
    tp = {"bertrt-int8": {"1": one, "8": one}}
    wl = {
        "workload": {"name": "ner", "task": "token-classification", "model": "m", "data": "d", "bundle": "b"},
        "n_texts": 4,
        "mean_chars": 20.0,
        "padded_tokens": {"1": 40, "8": 48},
        "throughput": tp,
        "latency_bs1": {},
        "sizes": {
            "pytorch_weights_file": "model.safetensors",
            "pytorch_weights_bytes": 1,
            "onnx_fp32_bytes": 1,
            "onnx_int8_bytes": 1,
        },
        "gops_per_token": 0.01,
        "peers": {},
        "unavailable": {},
    }
    if unavailable:
        wl["unavailable"]["optimum-intel"] = {
            "system": "optimum-intel",
            "reason": "PeerUnavailable: no | registry",
        }
    else:
        tp["optimum-intel"] = {"1": one, "8": one}
        wl["peers"]["optimum-intel"] = {
            "info": {"inference_precision": "bf16", "versions": {"openvino": "2026.4.1"}, "export_s": 3.0},
            "agreement": {
                "reference": "pytorch",
                "batch_size": 8,
                "metric": "entity agreement",
                "value": 0.995,
                "identical_texts": 0.75,
                "entities": [10, 10],
            },
        }
    return {
        "machine": {"cpu": "cpu"},
        "threads": 1,
        "repeats": 1,
        "batch_sizes": [1, 8],
        "systems": {"bertrt-int8": "", "optimum-intel": ""},
        "targets": [],
        "int8_peak": {"graphs": {}, "shape": [1, 1, 1], "threads": 1, "runs": 1, "peak_gops": 100.0},
        "workloads": {"ner": wl},
    }


def test_report_row_says_why_the_peer_is_unavailable(tmp_path):
    result = _report_result(unavailable=True)
    md = report.render_markdown(result)
    row = next(line for line in md.splitlines() if line.startswith("| optimum-intel |"))
    assert "unavailable: PeerUnavailable: no \\| registry" in row  # the pipe is escaped: one table cell
    assert row.count(" | ") + 1 >= 4
    report.plot_throughput(result, tmp_path / "t.png")  # the plot skips the missing system
    assert (tmp_path / "t.png").stat().st_size > 0


def test_report_shows_the_peers_agreement():
    md = report.render_markdown(_report_result(unavailable=False))
    assert "| optimum-intel | 10.0 (9.0–11.0) |" in md
    line = next(line for line in md.splitlines() if line.startswith("`optimum-intel`"))
    assert "entity agreement with `pytorch` 99.50%" in line and "75.0% of texts identical" in line
    assert "bf16" in line and "openvino 2026.4.1" in line


@pytest.mark.slow  # a worker process: the slow run; the pure parts stay in the default run
def test_peer_system_times_out_on_a_silent_worker(tmp_path):
    script = tmp_path / "silent.py"
    script.write_text(
        "import sys, time\nprint('loading', flush=True)\nprint('stuck', file=sys.stderr)\ntime.sleep(60)\n"
    )
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"no answer in 2 s.*stuck"):
        PeerSystem([sys.executable, str(script)], start_timeout=2)
    assert time.monotonic() - start < 30  # killed, not waited for
