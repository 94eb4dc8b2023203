"""The CPU budget that sizes thread pools: the affinity, capped by the cgroup's quota."""

import os

import pytest

from llarapp.cpus import available_cpus, quota_cpus

CORES = len(os.sched_getaffinity(0))


def write(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


@pytest.mark.parametrize("files, quota, cpus", [  # cpus: before the cap by the cores
    ({"cpu.max": "200000 100000\n"}, 2.0, 2),  # v2, limits.cpu: 2
    ({"cpu.max": "150000 100000\n"}, 1.5, 2),  # a fraction rounds up
    ({"cpu.max": "max 100000\n"}, None, None),  # v2, no limit
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5, 1),  # v1
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None, None),
    ({}, None, None),  # no cgroup files at all
    ({"cpu.max": "garbage\n"}, None, None),
])
def test_the_quota_is_read_from_either_cgroup_version(tmp_path, files, quota, cpus):
    write(tmp_path, files)
    assert quota_cpus(tmp_path) == quota
    assert available_cpus(tmp_path) == (CORES if cpus is None else min(CORES, cpus))


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
