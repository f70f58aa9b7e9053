"""The :class:`Plan`: which backend runs a bundle, at which precision and threads, computed once per
command (:func:`plan`) and passed down to everything that loads the bundle or opens a session.

With an accelerator provider (``providers="cuda"``, ``device=0``) and backend auto, tuning.json's entry
for that accelerator on this machine (:func:`tuning_key`, written by ``bertrt tune --providers cuda``)
decides when there is one; else, with no ``precision``, the plan runs fp16 when the local bundle has
``model.fp16.onnx`` (``bertrt export --fp16``), else fp32. fp16 without an accelerator provider is
refused: it is the GPU's precision.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .. import cpu
from ..bundle import read_tuning
from ..errors import BackendError, InputError, ModelFileNotFoundError
from .base import DEFAULT_PRECISION, PRECISIONS
from .registry import BACKENDS, get_backend

__all__ = ["DEFAULT_BATCH_SIZE", "Plan", "accelerated", "check_available", "plan", "tuning_key"]

log = logging.getLogger("bertrt")

#: sequences per session run of a call that gives no batch size, unless tuning.json's applies
DEFAULT_BATCH_SIZE = 32


@dataclass(frozen=True)
class Plan:
    """What a pipeline runs: backend, precision, intra-op threads (None: physical cores), and why;
    ``providers``: onnxruntime execution providers (None: CPU)."""

    backend: str
    precision: str
    threads: int | None
    #: "explicit" (backend named), "tuned" (tuning.json, this CPU), "static" (the documented rule)
    source: str
    #: the tuned candidate's batch size, when the plan comes from tuning.json
    batch_size: int | None = None
    providers: tuple[str, ...] | None = None
    #: onnxruntime's intra-op spinning (None: its default, on); False for processes that share cores
    #: (:func:`bertrt.session.session_options`)
    spinning: bool | None = None

    def default_batch_size(self, static: int = DEFAULT_BATCH_SIZE) -> tuple[int, str]:
        """(batch size, why) for a caller that gave none: the tuned candidate's (``"tuned"``) when this
        plan comes from tuning.json and holds a usable one, else ``static`` (``"static"``)."""
        size = self.batch_size
        if self.source == "tuned" and isinstance(size, int) and not isinstance(size, bool) and size > 0:
            return size, "tuned"
        if self.source == "tuned":
            log.warning("tuning.json batch size %r is not a positive int: using %d", size, static)
        return static, "static"

    def load_bundle(self, bundle, model_file=None, verify: bool = True):
        """The :class:`~bertrt.bundle.Bundle` with the model file this plan's backend reads."""
        from ..bundle import load_bundle

        return load_bundle(bundle, self.precision, model_file, verify, backend=self.backend)

    def open_session(self, model_path, output_name: str | None = None):
        """This plan's backend's :class:`~bertrt.backends.base.Session` on ``model_path``."""
        return get_backend(self.backend).open(Path(model_path), self, output_name)


def accelerated(providers) -> bool:
    """Whether ``providers`` (None, a name or names) name an execution provider other than the CPU's."""
    if providers is None:
        return False
    names = [providers] if isinstance(providers, str) else list(providers)
    return any(str(p).lower() not in ("cpu", "cpuexecutionprovider") for p in names)


def tuning_key(providers=None) -> str:
    """The tuning.json key of this machine: :func:`bertrt.cpu.cpu_key`, prefixed by the accelerator
    providers (``"cuda on <cpu key>"``) when ``providers`` name one."""
    key = cpu.cpu_key()
    if not accelerated(providers):
        return key
    names = [providers] if isinstance(providers, str) else list(providers)
    devices = dict.fromkeys(
        str(p).lower().removesuffix("executionprovider")
        for p in names
        if str(p).lower() not in ("cpu", "cpuexecutionprovider")
    )
    return f"{'+'.join(devices)} on {key}"


def check_available(backend: str, precision: str, providers=None) -> None:
    """InputError for an unknown backend / precision or a pair the backend does not run; BackendError when
    what the backend needs is missing here, the CPU lacks bf16, or an accelerator precision (fp16) is asked
    for without an accelerator in ``providers``."""
    spec = get_backend(backend)
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if precision not in spec.precisions:
        others = [name for name, b in BACKENDS.items() if precision in b.precisions]
        why = spec.lacks.get(precision)
        hint = (f" ({why})" if why else "") + (f": use backend={others[0]!r}" if others else "")
        raise BackendError(
            f"backend {backend!r} does not run precision {precision!r}{hint}; it runs "
            f"{', '.join(spec.precisions)}"
        )
    spec.check(precision)
    if precision in spec.accelerator_precisions and not accelerated(providers):
        raise BackendError(
            f"precision {precision!r} on backend {backend!r} is for a GPU: pass providers='cuda' (or "
            "device=0; needs onnxruntime-gpu); on the CPU run 'int8' or 'fp32'"
        )
    if precision == "bf16" and not cpu.has_bf16():
        raise BackendError(
            f"precision 'bf16' needs a CPU with bf16 instructions (avx512_bf16 or amx_bf16); this CPU "
            f"({cpu.cpu_model()}) has neither: use precision 'fp32' or 'int8'"
        )


def _local_root(bundle) -> Path | None:
    """The bundle's folder when it is local (a Bundle or a path); None for hf:// (tuning.json is local)."""
    from ..bundle import Bundle

    if isinstance(bundle, Bundle):
        return bundle.root
    if isinstance(bundle, (str, os.PathLike)) and not str(bundle).startswith("hf://"):
        path = Path(bundle)
        return path if path.is_dir() else None
    return None


def _tuned(root: Path | None, precision: str | None, providers=None) -> dict | None:
    if root is None:
        return None
    data = read_tuning(root)
    if data is None:
        return None
    key = tuning_key(providers)
    entry = data["machines"].get(key)
    if not isinstance(entry, dict):
        log.info("tuning.json of %s has no entry for this CPU (%s): static rule", root, key)
        return None
    choice = entry.get("winner") if precision is None else (entry.get("by_precision") or {}).get(precision)
    if not isinstance(choice, dict) or choice.get("backend") not in BACKENDS:
        return None
    if not get_backend(choice["backend"]).available():
        log.warning(
            "tuning.json picks backend %s, which is not installed here: static rule", choice["backend"]
        )
        return None
    return choice


def _static_backend(precision: str) -> str:
    """The first registered backend that runs ``precision`` (onnxruntime; bf16: openvino)."""
    return next((name for name, b in BACKENDS.items() if precision in b.precisions), "onnxruntime")


def _accelerator_precision(root: Path | None) -> str:
    """fp16 when the local bundle has an fp16 graph, else fp32 (the precision an accelerator runs by default)."""
    from ..bundle import FP16_CANDIDATES

    if root is not None and any((root / name).is_file() for name in FP16_CANDIDATES):
        return "fp16"
    log.info("no model.fp16.onnx in %s: the accelerator runs fp32 (bertrt export --fp16 writes it)", root)
    return "fp32"


def plan(bundle, backend: str = "auto", precision: str | None = None, threads=None, providers=None) -> Plan:
    """The :class:`Plan` for ``bundle`` (a folder, hf:// spec or Bundle); see :mod:`bertrt.backends`."""
    if precision is not None and precision not in PRECISIONS:
        # as load_bundle reports it: no model file for that precision
        raise ModelFileNotFoundError(
            _local_root(bundle) or str(bundle),
            f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}",
        )
    if providers is not None:
        providers = (providers,) if isinstance(providers, str) else tuple(providers)
    gpu = accelerated(providers)
    # tuning.json: this CPU's entry on the default CPU path, the accelerator's with one
    tuned = None
    if backend == "auto" and (providers is None or gpu):
        tuned = _tuned(_local_root(bundle), precision, providers)
    if tuned is None and gpu and precision is None and backend in ("auto", "onnxruntime"):
        precision = _accelerator_precision(_local_root(bundle))
    if backend == "auto":
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
            result = Plan(_static_backend(chosen), chosen, threads, "static")
    else:
        result = Plan(backend, precision or DEFAULT_PRECISION, threads, "explicit")
    check_available(result.backend, result.precision, providers)
    if gpu and result.precision == "int8":
        log.warning(
            "int8 on %s: the per-token int8 graph's integer kernels are CPU kernels, so most of it runs on "
            "the CPU with copies between; fp16 (bertrt export --fp16) is the GPU's precision",
            providers,
        )
    if providers is not None:
        if not get_backend(result.backend).takes_providers:
            raise InputError(
                f"providers= are onnxruntime execution providers; backend {result.backend!r} takes none"
            )
        result = replace(result, providers=providers)
    return result
