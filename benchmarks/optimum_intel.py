"""The ``optimum-intel`` peer of ``benchmarks.harness``: OpenVINO through optimum-intel + ``transformers.pipeline``.

What a user of Intel's stack runs: ``OVModelForTokenClassification`` / ``OVModelForSequenceClassification``
/ ``OVModelForFeatureExtraction`` exported from the checkpoint (``export=True``, OpenVINO IR saved once and
cached like the optimum-native artefacts), loaded with the CPU plugin's defaults (so bf16 inference on a
CPU with avx512_bf16, fp32 elsewhere; only the thread count is set, as for every system), then
``transformers.pipeline`` with the same options, length sort and pooling as the other pipeline systems.

optimum-intel 2.2 needs optimum 2.3 and transformers 5, which clash with optimum-onnx's pins in the main
venv, so the peer lives in its own venv, ``<cache>/harness/peers/optimum-intel-<pins sha>``, built on demand
(:func:`ensure_venv`: ``python -m venv``, ``pip install torch==2.13.0`` first, then the pinned stack with
torch pinned again so the resolver cannot move it; a torchvision that does not match torch is removed),
and runs out of process: :class:`PeerSystem` starts ``benchmarks/optimum_intel_worker.py`` in that venv,
sends it each pass (texts, batch size) as one JSON line and reads back the pass's own timings (the worker
times its pipeline calls, so pipe and JSON costs stay out of the figures) and, when asked, the answers,
which the harness compares with the reference system (:func:`compare_answers`). A venv that cannot be
built raises :class:`PeerUnavailable`; the harness turns that into a row that says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

__all__ = [
    "DESCRIPTION",
    "NAME",
    "PINS",
    "PeerSystem",
    "PeerUnavailable",
    "TORCH_PIN",
    "compare_answers",
    "ensure_venv",
    "install_commands",
    "parse_reply",
    "unavailable_entry",
    "venv_dir",
    "worker_command",
]

log = logging.getLogger("bertrt.benchmarks")

NAME = "optimum-intel"
DESCRIPTION = (
    "optimum-intel OVModelFor* (OpenVINO IR exported from the checkpoint, CPU plugin defaults) "
    "+ transformers pipeline, in its own venv"
)
TORCH_PIN = "torch==2.13.0"
#: the peer venv's stack, installed after torch (resolves together: optimum-intel 2.2.0 requires
#: optimum ~=2.3.0, transformers >=4.51,<5.6, nncf, openvino(-tokenizers) >=2026.0 and torchvision)
PINS = (
    "optimum-intel[openvino]==2.2.0",
    "optimum==2.3.0",
    "transformers==5.5.4",
    "openvino==2026.4.1",
    "openvino-tokenizers==2026.4.1.0",
    "nncf==3.4.0",
    "torchvision==0.28.0",  # the release built against torch 2.13
)
WORKER = Path(__file__).resolve().with_name("optimum_intel_worker.py")
PREFIX = "BERTRT-PEER "
MARKER = "bertrt-peer.json"
#: (venv build, worker start incl. a first-time export, one pass) in seconds
TIMEOUTS = {"pip": 1800, "start": 900, "pass": 900}


class PeerUnavailable(RuntimeError):
    """The peer cannot run here (its venv could not be built, or its worker did not start)."""


# -------------------------------------------------------------------------------------------- venv


def pins_key() -> str:
    text = json.dumps([TORCH_PIN, *PINS, sys.version_info[:2]])
    return hashlib.sha256(text.encode()).hexdigest()[:10]


def venv_dir(cache: Path | None = None) -> Path:
    if cache is None:
        from benchmarks.workloads import harness_cache

        cache = harness_cache()
    return Path(cache) / "peers" / f"{NAME}-{pins_key()}"


def venv_python(folder: Path) -> Path:
    return Path(folder) / "bin" / "python"


def install_commands(folder: Path, base_python: str | None = None) -> list[list[str]]:
    """The commands that build the venv in ``folder``: venv, torch alone (exact pin), then the stack with
    torch pinned again (so pip can neither upgrade it nor pick a torchvision built for another torch)."""
    py = str(venv_python(folder))
    pip = [py, "-m", "pip", "install", "--no-input", "--disable-pip-version-check"]
    return [
        [base_python or sys.executable, "-m", "venv", str(folder)],
        [*pip, TORCH_PIN],
        [*pip, TORCH_PIN, *PINS],
    ]


_CHECK = r"""
import json
from importlib import metadata
from packaging.requirements import Requirement
out = {d: metadata.version(d) for d in ("torch", "optimum-intel", "optimum", "transformers", "openvino")}
try:
    tv = metadata.distribution("torchvision")
except metadata.PackageNotFoundError:
    out["torchvision"] = None
else:
    reqs = [Requirement(r) for r in tv.requires or []]
    torch_req = next((r for r in reqs if r.name == "torch"), None)
    ok = torch_req is None or torch_req.specifier.contains(out["torch"], prereleases=True)
    try:  # a CUDA torchvision next to a CPU torch of the same release fails here (torchvision::nms)
        import torchvision  # noqa: F401
    except Exception as exc:
        ok, out["torchvision_error"] = False, f"{type(exc).__name__}: {exc}"[:200]
    out["torchvision"] = tv.version
    out["torchvision_matches_torch"] = bool(ok)
print(json.dumps(out))
"""


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)


def _tail(proc: subprocess.CompletedProcess | str, lines: int = 4) -> str:
    text = proc if isinstance(proc, str) else (proc.stderr or "") + (proc.stdout or "")
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def ensure_venv(cache: Path | None = None, runner=_run) -> Path:
    """The peer venv's python, building the venv first when it is missing (marker written last)."""
    folder = venv_dir(cache)
    if (folder / MARKER).is_file() and venv_python(folder).exists():
        return venv_python(folder)
    # built in place (console scripts name their interpreter by path); the marker is written last, so a
    # folder without it is a broken build and is redone
    shutil.rmtree(folder, ignore_errors=True)
    folder.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        for cmd in install_commands(folder):
            log.warning("optimum-intel peer venv: %s", " ".join(cmd[1:]))
            try:
                proc = runner(cmd, TIMEOUTS["pip"])
            except subprocess.TimeoutExpired as exc:
                raise PeerUnavailable(f"`{' '.join(cmd[1:])}` ran past {exc.timeout:.0f} s") from exc
            if proc.returncode != 0:
                raise PeerUnavailable(
                    f"building the peer venv failed at `{' '.join(cmd[1:])}` (exit {proc.returncode}): "
                    f"{_tail(proc)}"
                )
        proc = runner([str(venv_python(folder)), "-c", _CHECK], 300)
        if proc.returncode != 0:
            raise PeerUnavailable(f"the peer venv does not import its stack: {_tail(proc)}")
        versions = json.loads(proc.stdout.strip().splitlines()[-1])
        if versions["torch"].split("+")[0] != TORCH_PIN.split("==")[1]:
            raise PeerUnavailable(f"the peer venv got torch {versions['torch']}, not {TORCH_PIN}")
        if versions.get("torchvision") and not versions.get("torchvision_matches_torch"):
            # transformers imports it for its image processors (AutoProcessor, which optimum-intel
            # imports): a broken one breaks optimum-intel, a missing one does not
            log.warning(
                "removing torchvision %s: it does not match torch %s (%s)",
                versions["torchvision"],
                versions["torch"],
                versions.get("torchvision_error", "declared torch requirement"),
            )
            proc = runner([str(venv_python(folder)), "-m", "pip", "uninstall", "-y", "torchvision"], 300)
            if proc.returncode != 0:
                raise PeerUnavailable(f"could not remove the mismatched torchvision: {_tail(proc)}")
            versions["torchvision_removed"] = versions.pop("torchvision")
        record = {
            "pins": [TORCH_PIN, *PINS],
            "versions": versions,
            "build_s": round(time.perf_counter() - started, 1),
        }
        (folder / MARKER).write_text(json.dumps(record, indent=2) + "\n")
    except OSError as exc:
        raise PeerUnavailable(f"building the peer venv in {folder} failed: {exc}") from exc
    return venv_python(folder)


def venv_record(cache: Path | None = None) -> dict | None:
    path = venv_dir(cache) / MARKER
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


# ------------------------------------------------------------------------------------------ worker


def ir_dir(checkpoint: Path, cache: Path | None = None) -> Path:
    """Where the worker caches the OpenVINO IR of ``checkpoint`` (per weights digest and pins)."""
    from benchmarks.workloads import _weights_digest, harness_cache

    root = Path(cache) if cache is not None else harness_cache()
    key = hashlib.sha256((_weights_digest(Path(checkpoint)) + pins_key()).encode()).hexdigest()[:12]
    return root / "openvino" / f"{Path(checkpoint).name}-{key}"


def worker_command(python: Path | str, spec: dict) -> list[str]:
    """The worker's command line: the peer venv's python, the worker script, its spec as one JSON arg."""
    return [str(python), str(WORKER), json.dumps(spec, sort_keys=True)]


def worker_spec(task: str, checkpoint: Path, threads: int, ir_folder: Path) -> dict:
    return {"task": task, "checkpoint": str(checkpoint), "threads": int(threads), "ir_dir": str(ir_folder)}


def parse_reply(line: str) -> dict | None:
    """One worker line: the reply dict for a ``BERTRT-PEER {json}`` line, None for any other output."""
    if not line.startswith(PREFIX):
        return None
    try:
        reply = json.loads(line[len(PREFIX) :])
    except json.JSONDecodeError as exc:
        raise RuntimeError(f"unparsable worker reply {line[:200]!r}: {exc}") from exc
    if not isinstance(reply, dict) or "ok" not in reply:
        raise RuntimeError(f"worker reply without 'ok': {line[:200]!r}")
    return reply


class PeerSystem:
    """A system that runs in a worker process: ``system(texts, bs)`` returns the answers;
    :meth:`timed_pass` returns the worker's own timing of one pass (and batch-1 latencies)."""

    def __init__(self, command: list[str], env: dict | None = None, start_timeout: float = TIMEOUTS["start"]):
        self.command = command
        self._log = tempfile.TemporaryFile("w+", prefix="bertrt-peer-", suffix=".log")
        base = env if env is not None else os.environ
        env = {k: v for k, v in base.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            env=env,
            bufsize=1,
        )
        # a thread reads stdout: select() on a buffered text pipe misses lines already in the buffer
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, name="bertrt-peer-stdout", daemon=True).start()
        self.info = self._read(start_timeout)

    def _pump(self) -> None:
        """Reader thread: every stdout line into the queue, then None at end of file."""
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                why = self._stderr()
                self.close(kill=True)
                raise RuntimeError(f"peer worker gave no answer in {timeout:.0f} s: {why}") from None
            if line is None:
                code = self.proc.wait()
                raise RuntimeError(f"peer worker exited ({code}): {self._stderr()}")
            reply = parse_reply(line.rstrip("\n"))
            if reply is None:
                continue  # library chatter on stdout
            if not reply["ok"]:
                raise RuntimeError(f"peer worker failed: {reply.get('error')}")
            return reply

    def _stderr(self) -> str:
        try:
            self._log.seek(0)
            return _tail(self._log.read(), 6) or "(no stderr)"
        except (OSError, ValueError):
            return "(stderr unreadable)"

    def request(self, message: dict, timeout: float = TIMEOUTS["pass"]) -> dict:
        if self.proc.poll() is not None:
            raise RuntimeError(f"peer worker is not running (exit {self.proc.returncode}): {self._stderr()}")
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def timed_pass(self, texts: list[str], batch_size: int) -> tuple[float, list[float]]:
        """Seconds of one pass as the worker timed it; at batch size 1 every call's latency too."""
        reply = self.request({"op": "run", "texts": texts, "batch_size": batch_size, "outputs": False})
        if reply["n"] != len(texts):
            raise RuntimeError(f"the peer returned {reply['n']} results for {len(texts)} texts")
        return float(reply["seconds"]), [float(x) for x in reply.get("latencies") or []]

    def __call__(self, texts: list[str], batch_size: int) -> list:
        reply = self.request({"op": "run", "texts": texts, "batch_size": batch_size, "outputs": True})
        return reply["outputs"]

    def close(self, kill: bool = False) -> None:
        """Ask the worker to quit (``kill``: end it at once, for a worker that stopped answering)."""
        if self.proc.poll() is None:
            try:
                if kill:
                    raise OSError("killed")
                self.proc.stdin.write(json.dumps({"op": "quit"}) + "\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired, ValueError):
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdin, self._log):
            try:
                stream.close()
            except OSError:
                pass


def build(task: str, checkpoint: Path, threads: int, cache: Path | None = None) -> PeerSystem:
    """Build (once) the venv, then start the worker; :class:`PeerUnavailable` when either cannot be had."""
    python = ensure_venv(cache)
    spec = worker_spec(task, checkpoint, threads, ir_dir(checkpoint, cache))
    try:
        return PeerSystem(worker_command(python, spec))
    except RuntimeError as exc:
        raise PeerUnavailable(str(exc)) from exc


def unavailable_entry(name: str, exc: BaseException) -> dict:
    """What the report shows in the row of a peer that could not run."""
    return {"system": name, "reason": f"{type(exc).__name__}: {exc}"[:600]}


# ----------------------------------------------------------------------------------------- answers


def _top(result) -> dict:
    while isinstance(result, list) and len(result) == 1:
        result = result[0]
    return max(result, key=lambda d: d["score"]) if isinstance(result, list) else result


def _vector(x):
    import numpy as np

    return np.asarray(x, dtype=np.float64).reshape(-1)


def compare_answers(task: str, reference: list, got: list) -> dict:
    """How ``got`` agrees with ``reference`` on the same texts: entity agreement (F1 of (text, start,
    end, group) sets) and identical texts for NER, label agreement for classification, cosine for vectors."""
    import numpy as np

    if len(reference) != len(got):
        raise ValueError(f"{len(got)} answers for {len(reference)} reference answers")
    if task == "token-classification":
        from benchmarks.determinism import agreement

        r = agreement(reference, got)
        return {
            "metric": "entity agreement",
            "value": r["entity_agreement"],
            "identical_texts": r["sentences_identical"],
            "entities": [r["entities_batch1"], r["entities_batched"]],
        }
    if task == "text-classification":
        a, b = [_top(x) for x in reference], [_top(x) for x in got]
        same = sum(x["label"] == y["label"] for x, y in zip(a, b))
        return {
            "metric": "label agreement",
            "value": same / max(1, len(a)),
            "max_score_diff": max(
                (abs(float(x["score"]) - float(y["score"])) for x, y in zip(a, b)), default=0.0
            ),
        }
    cos = []
    for x, y in zip(reference, got):
        u, v = _vector(x), _vector(y)
        if u.shape != v.shape:
            raise ValueError(f"vector sizes differ: {u.shape[0]} vs {v.shape[0]}")
        cos.append(float(u @ v / (np.linalg.norm(u) * np.linalg.norm(v) + 1e-12)))
    return {
        "metric": "cosine min",
        "value": min(cos, default=1.0),
        "cosine_mean": float(np.mean(cos or [1.0])),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.optimum_intel [--build]``: print (and with --build make) the peer venv."""
    import argparse

    parser = argparse.ArgumentParser(description="the optimum-intel peer venv of benchmarks.harness")
    parser.add_argument("--build", action="store_true", help="build the venv if it is missing")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.build:
        try:
            ensure_venv()
        except PeerUnavailable as exc:
            print(f"unavailable: {exc}", file=sys.stderr)
            return 1
    print(json.dumps({"venv": str(venv_dir()), "record": venv_record()}, indent=2))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
