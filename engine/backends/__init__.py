"""Backends: which engine runs a bundle's graph, at which precision, and how ``backend="auto"`` decides.

=============== ============================================================ ==========================
backend         precisions                                                   needs
=============== ============================================================ ==========================
onnxruntime     int8 (``model.int8.onnx``: per-token recipe), fp32           the runtime itself
                (``model.onnx``); fp16 (``model.fp16.onnx``) on CUDA          (fp16: onnxruntime-gpu)
openvino        fp32, bf16 (CPU with avx512_bf16 / amx_bf16), int8 (nncf    ``bertrt[openvino]``
                int8 weights of ``model.onnx`` + per-token-group dynamic
                activation quantization)
=============== ============================================================ ==========================

``backend="auto"`` (the default) follows, in order:

1. the bundle's ``tuning.json`` (written by ``bertrt tune``) when it holds an entry for this machine's CPU
   key (:func:`bertrt.cpu.cpu_key`: model name, the instruction-set flags that matter, usable cores) and CPU
   execution: its winner (or, when ``precision`` is given, the best gated candidate at that precision),
   with its thread count unless ``threads`` is given, and its batch size as the default of every call
   that gives none (:meth:`Plan.default_batch_size`: pipeline calls, ``bertrt predict``, ``bertrt batch``;
   ``bertrt serve``'s ``--pipeline-batch-size``);
2. with an accelerator provider (``providers="cuda"``): tuning.json's entry for it on this machine
   (:func:`tuning_key`; ``bertrt tune --providers cuda``) as in 1., else, with no ``precision``,
   onnxruntime fp16 when the bundle has ``model.fp16.onnx``, else fp32;
3. else the static rule: the first registered backend that runs ``precision`` (default int8):
   onnxruntime; bf16 goes to openvino, the only backend with bf16 CPU kernels (onnxruntime's CPU provider
   has none); the static batch size
   (:data:`DEFAULT_BATCH_SIZE`, 32; serve: its ``ServeSettings`` defaults).

An explicit backend never consults ``tuning.json``. Whatever cannot run here (the extra not installed,
bf16 on a CPU without it, onnxruntime at bf16, fp16 without a GPU provider, providers on openvino) is a
:class:`~bertrt.errors.BackendError` or :class:`~bertrt.errors.InputError` before any model is loaded.

Layout: :mod:`.base` (the :class:`Session` protocol, the :class:`Backend` declaration, :data:`PRECISIONS`),
one module per backend (:mod:`.onnxruntime`, :mod:`.openvino`), :mod:`.registry` (:data:`BACKENDS`,
:func:`register_backend`), :mod:`.planning` (:class:`Plan`, :func:`plan`). A new backend is one module
defining ``BACKEND`` plus one :func:`register_backend` call (or one line of the registry's built-ins);
every command's ``--backend`` choices, the static rule and ``bertrt tune`` follow the registry.
"""

from __future__ import annotations

from dataclasses import replace

from ..bundle import TUNING_FILE, read_tuning
from ..cpu import CPU_FLAGS, cpu_flags, cpu_info, cpu_key, has_bf16
from .base import DEFAULT_PRECISION, PRECISIONS, Backend, Session
from .planning import DEFAULT_BATCH_SIZE, Plan, accelerated, check_available, plan, tuning_key
from .registry import BACKENDS, get_backend, register_backend, unregister_backend

__all__ = [
    "BACKENDS",
    "CPU_FLAGS",
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "TUNING_FILE",
    "Backend",
    "Plan",
    "Session",
    "accelerated",
    "add_backend_arguments",
    "add_providers_argument",
    "available",
    "check_available",
    "cpu_flags",
    "cpu_info",
    "cpu_key",
    "create_session",
    "get_backend",
    "has_bf16",
    "plan",
    "plan_from_args",
    "read_tuning",
    "register_backend",
    "tuning_key",
    "unregister_backend",
]


def available(backend: str) -> bool:
    """Whether ``backend`` is registered and its packages are importable (without importing them)."""
    return backend in BACKENDS and BACKENDS[backend].available()


def create_session(the_plan: Plan, model_path, output_name: str | None = None) -> Session:
    """The session ``the_plan``'s backend opens on ``model_path`` (:meth:`Plan.open_session`)."""
    return the_plan.open_session(model_path, output_name)


def add_backend_arguments(parser) -> None:
    """``--backend``, ``--precision``, ``--providers`` and ``--spinning``, the same for every command that
    builds pipelines (predict, batch, serve); the choices are the registered backends when the parser is built."""
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
        f"{DEFAULT_PRECISION}; with --providers cuda fp16 when the bundle has it, else fp32; bf16 needs "
        "openvino and a CPU with bf16; fp16 needs --providers cuda)",
    )
    add_providers_argument(
        parser,
        "onnxruntime execution providers, e.g. cuda (default: the CPU); cuda needs onnxruntime-gpu "
        "in place of onnxruntime and runs model.fp16.onnx when the bundle has it",
    )
    parser.add_argument(
        "--spinning",
        choices=("on", "off"),
        default=None,
        help="onnxruntime's intra-op thread spinning (default: onnxruntime's, on); off where other "
        "processes share the cores: 2-3x faster there, ~6%% slower on idle cores (docs/speed.md)",
    )


def add_providers_argument(parser, help_text: str) -> None:
    """``--providers NAME[,NAME]``, parsed the one way (bench and tune add it with their own help)."""
    parser.add_argument(
        "--providers", type=_provider_list, default=None, metavar="NAME[,NAME]", help=help_text
    )


def _provider_list(text: str) -> list[str]:
    """``--providers cuda`` / ``--providers cuda,cpu`` -> the names, in order."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"expected provider names, got {text!r}")
    return names


def plan_from_args(args, bundle=None) -> Plan:
    """The :class:`Plan` of a command line with :func:`add_backend_arguments` (and ``--threads``), for
    ``bundle`` (default ``args.bundle``)."""
    bundle = args.bundle if bundle is None else bundle
    threads, providers = getattr(args, "threads", None), getattr(args, "providers", None)
    the_plan = plan(bundle, args.backend, args.precision, threads, providers)
    spinning = getattr(args, "spinning", None)
    return the_plan if spinning is None else replace(the_plan, spinning=spinning == "on")
