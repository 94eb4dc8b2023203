"""The CPU budget that sizes thread pools: the affinity, capped by the cgroup's quota."""

import os

import pytest

from llarapp.cpus import available_cpus, quota_cpus

CORES = len(os.sched_getaffinity(0))


def write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("files, quota", [
    ({"cpu.max": "200000 100000\n"}, 2.0),  # v2, limits.cpu: 2
    ({"cpu.max": "150000 100000\n"}, 1.5),
    ({"cpu.max": "max 100000\n"}, None),  # v2, no limit
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({}, None),  # no cgroup files at all
    ({"cpu.max": "garbage\n"}, None),
])
def test_the_quota_is_read_from_either_cgroup_version(tmp_path, files, quota):
    write(tmp_path, files)
    assert quota_cpus(tmp_path) == quota
    expected = CORES if quota is None else max(1, min(CORES, -(-quota // 1)))
    assert available_cpus(tmp_path) == expected


def test_a_quota_below_the_cores_caps_the_serving_threads(tmp_path, monkeypatch):
    from llarapp import cpus
    from llarapp.serving.config import ServeConfig

    write(tmp_path, {"cpu.max": "100000 100000\n"})
    monkeypatch.setattr(cpus, "CGROUP", tmp_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert cpus.available_cpus() == 1
    assert ServeConfig(workers=2).worker_threads == 1
    write(tmp_path, {"cpu.max": "max 100000\n"})
    assert ServeConfig(workers=2).worker_threads == 32
