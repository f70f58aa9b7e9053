"""bertrt.cpu: /proc/cpuinfo parsed once, by one parser (the runtime's backends and tuning key, the exporter)."""

from __future__ import annotations

from bertrt import cpu

CPUINFO = """processor\t: 0
model name\t: Test CPU
physical id\t: 0
core id\t: 0
flags\t\t: sse2 avx2 avx512f avx512_bf16

processor\t: 1
physical id\t: 0
core id\t: 0
flags\t\t: sse2 avx2 avx512f avx512_bf16

processor\t: 2
physical id\t: 0
core id\t: 1
"""


def test_parse_cpuinfo():
    info = cpu.parse_cpuinfo(CPUINFO)
    assert info.model == "Test CPU" and {"avx2", "avx512_bf16"} <= info.flags
    assert info.cores == ((0, "0", "0"), (1, "0", "0"), (2, "0", "1"))  # 3 hyper-threads on 2 cores
    assert cpu.has_bf16(set(info.flags)) and not cpu.has_bf16({"avx2"})
    assert cpu.parse_cpuinfo("Features\t: fp asimd\n").flags == {"fp", "asimd"}  # Arm


def test_read_once_and_the_key():
    assert cpu.read_cpuinfo() is cpu.read_cpuinfo()
    assert cpu.physical_cores() >= 1
    info = cpu.cpu_info()
    assert set(info["flags"]) <= set(cpu.CPU_FLAGS) and cpu.cpu_key(info).endswith(f"| {info['cores']} cores")


def test_installed_versions():
    versions = cpu.installed_versions(["numpy", "no-such-distribution-here"])
    assert versions["numpy"] and versions["no-such-distribution-here"] is None
