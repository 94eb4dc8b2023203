"""The machine a benchmark ran on, as every benchmark's JSON records it.

The CPU's integer dot-product instructions decide the int8 ranker's speed more than its
clock: on this project's development VMs an int8 GEMM of the ranker's shapes ran at
1,055-1,079 G operations/s on earlier hosts and 179-223 G on one with AVX2 alone
(README, "Which CPU"). So the record names the CPU model and the best int8 instruction set
it offers, read from /proc/cpuinfo, beside the usual platform facts.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

# Best first: the int8 matrix paths onnxruntime's MLAS kernels can take on x86.
INT8_ISAS = (("amx_int8", "AMX-INT8"), ("avx512_vnni", "AVX-512 VNNI"),
             ("avx_vnni", "AVX-VNNI"), ("avx2", "AVX2 without VNNI"))


def cpuinfo_field(cpuinfo: str, key: str) -> str:
    """The first processor's ``key`` in a /proc/cpuinfo text, or ''."""
    for line in cpuinfo.splitlines():
        name, _, value = line.partition(":")
        if name.strip() == key:
            return value.strip()
    return ""


def cpu_model(cpuinfo: str) -> str:
    return cpuinfo_field(cpuinfo, "model name")


def cpu_flags(cpuinfo: str) -> set[str]:
    return set(cpuinfo_field(cpuinfo, "flags").split())


def int8_isa(flags: set[str]) -> str:
    """The best int8 instruction set among ``flags`` (see :data:`INT8_ISAS`), or 'none'."""
    return next((name for flag, name in INT8_ISAS if flag in flags), "none")


def describe(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> dict[str, object]:
    """Platform, CPU model, the int8 instruction set, usable cores and Python version."""
    cpuinfo = cpuinfo_path.read_text() if cpuinfo_path.exists() else ""
    return {"platform": platform.platform(),
            "processor": cpu_model(cpuinfo) or platform.processor() or platform.machine(),
            "int8_isa": int8_isa(cpu_flags(cpuinfo)),
            "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version()}


def headline(machine: dict[str, object]) -> str:
    """One line for a report's title: "2 cores of AMD EPYC (AVX2 without VNNI)"."""
    return f"{machine['cpus']} cores of {machine['processor']} ({machine['int8_isa']})"
