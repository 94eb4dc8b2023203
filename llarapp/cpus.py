"""How many CPUs this process may use: the cores it may run on, capped by its cgroup's CPU
quota. In a Kubernetes pod with ``limits.cpu: 2`` on a 64-core node the affinity still
lists 64 cores, and sizing thread pools from it makes 32 threads per worker share 2 CPUs
of quota: the pod is throttled instead of served.

* cgroup v2: ``cpu.max`` holds ``"<quota> <period>"`` (or ``"max <period>"``).
* cgroup v1: ``cpu/cpu.cfs_quota_us`` (-1 for none) and ``cpu/cpu.cfs_period_us``.

A fractional quota rounds up (1.5 CPUs → 2 threads), and never below one.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def quota_cpus(root: Path | None = None) -> float | None:
    """The CPU quota in CPUs, or None where no quota is set or readable."""
    root = root or CGROUP
    try:
        if (root / "cpu.max").exists():
            quota, period = (root / "cpu.max").read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None


def available_cpus(root: Path | None = None) -> int:
    cores = len(os.sched_getaffinity(0))
    quota = quota_cpus(root)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))
