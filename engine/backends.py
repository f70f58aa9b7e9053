"""Backends: which engine runs a bundle's graph, at which precision, and how ``backend="auto"`` decides.

=============== ============================================================ ==========================
backend         precisions                                                   needs
=============== ============================================================ ==========================
onnxruntime     int8 (``model.int8.onnx``: per-token recipe), fp32           the runtime itself
openvino        fp32, bf16 (CPU with avx512_bf16 / amx_bf16), int8 (nncf    ``bertrt[openvino]``
                int8 weights of ``model.onnx`` + per-token-group dynamic
                activation quantization)
=============== ============================================================ ==========================

``backend="auto"`` (the default) follows, in order:

1. the bundle's ``tuning.json`` (written by ``bertrt tune``) when it holds an entry for this machine's CPU
   key (:func:`cpu_key`: model name, the instruction-set flags that matter, usable cores) and CPU
   execution: its winner (or, when ``precision`` is given, the best gated candidate at that precision),
   with its thread count unless ``threads`` is given, and its batch size as the default of every call
   that gives none (:meth:`Plan.default_batch_size`: pipeline calls, ``bertrt predict``, ``bertrt batch``;
   ``bertrt serve``'s ``--pipeline-batch-size``);
2. else the static rule: onnxruntime, at ``precision`` (default int8); bf16 goes to openvino, the only
   backend with bf16 CPU kernels (onnxruntime's CPU provider has none); the static batch size
   (:data:`DEFAULT_BATCH_SIZE`, 32; serve: its ``ServeSettings`` defaults).

An explicit backend never consults ``tuning.json``. Whatever cannot run here (the extra not installed,
bf16 on a CPU without it, onnxruntime at bf16, providers on openvino) is a
:class:`~bertrt.errors.BackendError` or :class:`~bertrt.errors.InputError` before any model is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import platform
from dataclasses import dataclass
from pathlib import Path

from .errors import BackendError, BundleError, InputError, ModelFileNotFoundError

__all__ = [
    "add_backend_arguments",
    "BACKENDS",
    "BACKEND_PRECISIONS",
    "CPU_FLAGS",
    "PRECISIONS",
    "TUNING_FILE",
    "Plan",
    "available",
    "check_available",
    "cpu_flags",
    "cpu_info",
    "cpu_key",
    "create_session",
    "has_bf16",
    "plan",
    "read_tuning",
]

log = logging.getLogger("bertrt")

BACKENDS = ("onnxruntime", "openvino")
PRECISIONS = ("int8", "fp32", "bf16")
#: what each backend runs
BACKEND_PRECISIONS = {"onnxruntime": ("int8", "fp32"), "openvino": ("fp32", "bf16", "int8")}
#: the file ``bertrt tune`` writes into the bundle and ``backend="auto"`` reads
TUNING_FILE = "tuning.json"
#: /proc/cpuinfo flags that change which kernels run (part of the tuning key)
CPU_FLAGS = (
    "avx2",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_int8",
    "amx_bf16",
)
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
#: the precision the static rule (and a missing ``precision``) uses
DEFAULT_PRECISION = "int8"
#: sequences per session run of a call that gives no batch size, unless tuning.json's applies
DEFAULT_BATCH_SIZE = 32


def add_backend_arguments(parser) -> None:
    """``--backend`` and ``--precision``, the same for every command that builds pipelines (predict, serve)."""
    parser.add_argument(
        "--backend",
        choices=("auto", *BACKENDS),
        default="auto",
        help="engine running the graph (default auto: this machine's tuning.json winner when the bundle has "
        "one for this CPU, else onnxruntime; see bertrt tune)",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="graph precision (default: with --backend auto, the tuning.json winner's for this CPU, else "
        f"{DEFAULT_PRECISION}; bf16 needs openvino and a CPU with bf16)",
    )


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo; ("", empty) where there is none."""
    model, flags = "", set()
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and not model:
                    model = value.strip()
                elif key == "flags" and not flags:
                    flags = set(value.split())
                if model and flags:
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), flags


def cpu_flags() -> set[str]:
    """All flags of /proc/cpuinfo (empty where it cannot be read)."""
    return _cpuinfo()[1]


def has_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU has bf16 compute (avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in _BF16_FLAGS)


def cpu_info() -> dict:
    """The machine as the tuning key sees it: CPU model name, the :data:`CPU_FLAGS` it has, usable cores."""
    from .session import physical_cores

    model, flags = _cpuinfo()
    return {
        "model": model,
        "flags": [f for f in CPU_FLAGS if f in flags],
        "cores": physical_cores(),
        "machine": platform.machine(),
    }


def cpu_key(info: dict | None = None) -> str:
    """``"<model> | <flags,...> | <cores> cores"``: a tuning result is used only on a matching key."""
    info = cpu_info() if info is None else info
    return f"{info['model']} | {','.join(info['flags'])} | {info['cores']} cores"


def available(backend: str) -> bool:
    """Whether ``backend``'s package is importable (without importing it)."""
    if backend == "onnxruntime":
        return importlib.util.find_spec("onnxruntime") is not None
    if backend == "openvino":
        return importlib.util.find_spec("openvino") is not None
    return False


def check_available(backend: str, precision: str) -> None:
    """InputError for an unknown backend / precision or a pair the backend does not run; BackendError when
    the backend's package (or nncf for openvino int8) is missing or the CPU lacks bf16."""
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; expected one of auto, {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision not in BACKEND_PRECISIONS[backend]:
        hint = (
            " (its CPU provider has no bf16 kernels): use backend='openvino'" if precision == "bf16" else ""
        )
        raise BackendError(
            f"backend {backend!r} does not run precision {precision!r}{hint}; it runs "
            f"{', '.join(BACKEND_PRECISIONS[backend])}"
        )
    if backend == "openvino":
        from .session_openvino import import_openvino

        import_openvino()
        if precision == "int8" and importlib.util.find_spec("nncf") is None:
            raise BackendError(
                "precision 'int8' on backend 'openvino' needs nncf, which is not installed: "
                "pip install 'bertrt[openvino]'"
            )
    if precision == "bf16" and not has_bf16():
        model, _ = _cpuinfo()
        raise BackendError(
            f"precision 'bf16' needs a CPU with bf16 instructions (avx512_bf16 or amx_bf16); this CPU "
            f"({model}) has neither: use precision 'fp32' or 'int8'"
        )


def read_tuning(root) -> dict | None:
    """The bundle folder's tuning.json, None when there is none; BundleError when it is unreadable."""
    path = Path(root) / TUNING_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(path, f"not valid JSON ({exc}); run bertrt tune again or delete it") from exc
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        raise BundleError(path, "expected an object with 'machines' {cpu key: result}")
    return data


@dataclass(frozen=True)
class Plan:
    """What a pipeline runs: backend, precision, intra-op threads (None: physical cores), and why."""

    backend: str
    precision: str
    threads: int | None
    #: "explicit" (backend named), "tuned" (tuning.json, this CPU), "static" (the documented rule)
    source: str
    #: the tuned candidate's batch size, when the plan comes from tuning.json
    batch_size: int | None = None

    def default_batch_size(self, static: int = DEFAULT_BATCH_SIZE) -> tuple[int, str]:
        """(batch size, why) for a caller that gave none: the tuned candidate's (``"tuned"``) when this
        plan comes from tuning.json and holds a usable one, else ``static`` (``"static"``)."""
        size = self.batch_size
        if self.source == "tuned" and isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size, "tuned"
        if self.source == "tuned":
            log.warning("tuning.json batch size %r is not a positive int: using %d", size, static)
        return static, "static"

    @property
    def file_precision(self) -> str:
        """Which of the bundle's files the backend reads (:func:`bertrt.bundle.load_bundle`'s precision):
        openvino's are "openvino-int8" / "openvino-fp32" (the bundle's OpenVINO IR when it has one, else
        model.onnx, int8 weights compressed at load)."""
        if self.backend == "openvino":
            return "openvino-int8" if self.precision == "int8" else "openvino-fp32"
        return "int8" if self.precision == "int8" else "fp32"


def _local_root(bundle) -> Path | None:
    """The bundle's folder when it is local (a Bundle or a path); None for hf:// (tuning.json is local)."""
    from .bundle import Bundle

    if isinstance(bundle, Bundle):
        return bundle.root
    if isinstance(bundle, (str, os.PathLike)) and not str(bundle).startswith("hf://"):
        path = Path(bundle)
        return path if path.is_dir() else None
    return None


def _tuned(root: Path | None, precision: str | None) -> dict | None:
    if root is None:
        return None
    data = read_tuning(root)
    if data is None:
        return None
    entry = data["machines"].get(cpu_key())
    if not isinstance(entry, dict):
        log.info("tuning.json of %s has no entry for this CPU (%s): static rule", root, cpu_key())
        return None
    choice = entry.get("winner") if precision is None else (entry.get("by_precision") or {}).get(precision)
    if not isinstance(choice, dict) or choice.get("backend") not in BACKENDS:
        return None
    if not available(choice["backend"]):
        log.warning(
            "tuning.json picks backend %s, which is not installed here: static rule", choice["backend"]
        )
        return None
    return choice


def plan(bundle, backend: str = "auto", precision: str | None = None, threads=None, providers=None) -> Plan:
    """The :class:`Plan` for ``bundle`` (a folder, hf:// spec or Bundle); see the module docstring."""
    if precision is not None and precision not in PRECISIONS:
        # as load_bundle reports it: no model file for that precision
        raise ModelFileNotFoundError(
            _local_root(bundle) or str(bundle),
            f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}",
        )
    if backend == "auto":
        tuned = _tuned(_local_root(bundle), precision) if providers is None else None
        if tuned is not None:
            result = Plan(
                tuned["backend"],
                tuned["precision"],
                threads if threads is not None else tuned.get("threads"),
                "tuned",
                tuned.get("batch_size"),
            )
        else:
            chosen = precision or DEFAULT_PRECISION
            result = Plan("openvino" if chosen == "bf16" else "onnxruntime", chosen, threads, "static")
    else:
        result = Plan(backend, precision or DEFAULT_PRECISION, threads, "explicit")
    check_available(result.backend, result.precision)
    if result.backend == "openvino" and providers is not None:
        raise InputError("providers= are onnxruntime execution providers; backend 'openvino' takes none")
    return result


def create_session(the_plan: Plan, model_path, providers=None, output_name: str | None = None):
    """The session for ``the_plan``: an OnnxSession or an OpenVinoSession (same interface)."""
    if the_plan.backend == "openvino":
        from .session_openvino import OpenVinoSession

        return OpenVinoSession(model_path, the_plan.threads, the_plan.precision, output_name)
    from .session import OnnxSession

    return OnnxSession(model_path, the_plan.threads, providers, output_name)
