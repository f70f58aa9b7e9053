"""This machine as the runtime sees it: CPU model name, instruction-set flags, physical cores, the tuning
key, and the versions of the packages installed.

``/proc/cpuinfo`` is parsed once per process (:func:`read_cpuinfo`); the cores a process may use follow
its CPU affinity at each call. Where there is no ``/proc/cpuinfo`` (not Linux) the model name comes from
``platform`` and the flags are empty.
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

__all__ = [
    "CPU_FLAGS",
    "installed_versions",
    "CpuInfo",
    "cpu_flags",
    "cpu_info",
    "cpu_key",
    "cpu_model",
    "has_bf16",
    "parse_cpuinfo",
    "physical_cores",
    "read_cpuinfo",
]

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


@dataclass(frozen=True)
class CpuInfo:
    """What /proc/cpuinfo says: the first processor's model name and flags, and each logical CPU's core."""

    model: str
    flags: frozenset[str]
    #: (logical cpu, physical id, core id) of every processor listed
    cores: tuple[tuple[int, str | None, str], ...]


def parse_cpuinfo(text: str) -> CpuInfo:
    """``/proc/cpuinfo`` text as a :class:`CpuInfo` (flags: x86 ``flags`` or Arm ``Features``)."""
    model, flags, cores = "", frozenset(), []
    cpu = phys = None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "processor":
            cpu, phys = (int(value) if value.strip().isdigit() else None), None
        elif key == "physical id":
            phys = value.strip()
        elif key == "core id" and cpu is not None:
            cores.append((cpu, phys, value.strip()))
        elif key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model, flags, tuple(cores))


@functools.cache
def read_cpuinfo() -> CpuInfo:
    """/proc/cpuinfo, read and parsed once per process (model name from ``platform`` where it has none)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as fh:
            info = parse_cpuinfo(fh.read())
    except OSError:
        info = CpuInfo("", frozenset(), ())
    return CpuInfo(info.model or platform.processor() or platform.machine(), info.flags, info.cores)


def _cpuinfo() -> tuple[str, set[str]]:
    """(model name, flags) of the first processor (tests replace it to play another CPU)."""
    info = read_cpuinfo()
    return info.model, set(info.flags)


def cpu_model() -> str:
    """The CPU's model name (``platform``'s processor or machine where /proc/cpuinfo has none)."""
    return _cpuinfo()[0]


def cpu_flags() -> set[str]:
    """All flags of /proc/cpuinfo (empty where it cannot be read)."""
    return _cpuinfo()[1]


def has_bf16(flags: set[str] | None = None) -> bool:
    """Whether the CPU has bf16 compute (avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in _BF16_FLAGS)


def physical_cores() -> int:
    """Physical cores this process may use (hyper-threads not counted); at least 1."""
    try:
        allowed = os.sched_getaffinity(0)
    except AttributeError:  # not Linux
        allowed = set(range(os.cpu_count() or 1))
    cores = {(phys, core) for cpu, phys, core in read_cpuinfo().cores if cpu in allowed}
    return max(1, len(cores) if cores else len(allowed))


def cpu_info() -> dict:
    """The machine as the tuning key sees it: CPU model name, the :data:`CPU_FLAGS` it has, usable cores."""
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


def installed_versions(distributions) -> dict[str, str | None]:
    """{distribution: its installed version, None when it is not installed}."""
    from importlib import metadata

    versions = {}
    for name in distributions:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
