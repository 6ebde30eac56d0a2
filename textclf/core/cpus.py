"""How many CPUs this process may really use: the smallest of the host's cores, its CPU affinity (taskset,
cpusets) and its cgroup CPU quota (a container's `--cpus`, a Kubernetes CPU limit).

`os.cpu_count()` answers the host's cores, so a container limited to 2 CPUs on a 64-core host would start
64 workers, and PyTorch would run 64 threads beside another job: oversubscribed threads spin and wait on
each other (the LSTM ran 12x slower per epoch next to another job with every core's thread).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def cgroup_quota(root: Path = CGROUP_ROOT) -> float | None:
    """CPUs the cgroup quota allows (cgroup v2 `cpu.max`, else v1 `cpu.cfs_quota_us / cpu.cfs_period_us`),
    or None when there is no quota (or no cgroup file to read)."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        if quota != "max":
            return int(quota) / int(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return quota_us / period_us if quota_us > 0 and period_us > 0 else None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """Whole CPUs this process may use (at least 1): a fractional quota rounds up."""
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    quota = cgroup_quota(root)
    if quota is not None:
        counts.append(math.ceil(quota))
    return max(1, min(counts))
