"""The machine record every benchmark writes: the CPU model and its best int8 path."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from machine import cpu_flags, cpu_model, describe, headline, int8_isa  # noqa: E402

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx avx2 avx512f avx512_vnni
processor\t: 1
model name\t: another model
flags\t\t: fpu
"""


@pytest.mark.parametrize("flags, expected", [
    ({"avx2", "avx512f", "avx512_vnni", "amx_int8"}, "AMX-INT8"),
    ({"avx2", "avx512f", "avx512_vnni"}, "AVX-512 VNNI"),
    ({"avx2", "avx_vnni"}, "AVX-VNNI"),
    ({"avx2", "avx512f"}, "AVX2 without VNNI"),
    ({"sse2", "neon"}, "none"),
    (set(), "none"),
])
def test_int8_isa_names_the_best_int8_path(flags, expected):
    assert int8_isa(flags) == expected


def test_cpuinfo_is_read_from_the_first_processor():
    assert cpu_model(CPUINFO) == "AMD EPYC 9R14 96-Core Processor"
    assert cpu_flags(CPUINFO) == {"fpu", "sse2", "avx", "avx2", "avx512f", "avx512_vnni"}
    assert cpu_model("") == "" and cpu_flags("") == set()


def test_describe_reads_the_given_cpuinfo(tmp_path):
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    machine = describe(path)
    assert machine["processor"] == "AMD EPYC 9R14 96-Core Processor"
    assert machine["int8_isa"] == "AVX-512 VNNI"
    assert machine["cpus"] >= 1
    assert headline(machine).endswith("cores of AMD EPYC 9R14 96-Core Processor "
                                      "(AVX-512 VNNI)")


def test_describe_without_cpuinfo_still_names_a_processor(tmp_path):
    machine = describe(tmp_path / "absent")
    assert machine["int8_isa"] == "none" and machine["processor"]
