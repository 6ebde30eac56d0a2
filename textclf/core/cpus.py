"""How many CPUs this process may really use: the smallest of the host's cores, its CPU affinity (taskset,
cpusets) and its cgroup CPU quota (a container's `--cpus`, a Kubernetes CPU limit).

`os.cpu_count()` answers the host's cores, so a container limited to 2 CPUs on a 64-core host would start
64 workers, and PyTorch would run 64 threads beside another job: oversubscribed threads spin and wait on
each other (the LSTM ran 12x slower per epoch next to another job with every core's thread).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
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


def worker_cpus(worker: int, workers: int, allowed: Sequence[int]) -> set[int] | None:
    """The CPUs of worker `worker` (0-based) of `workers`: an equal, consecutive share of `allowed`;
    None when they do not split evenly (pinning would leave CPUs idle or crowd some)."""
    cpus = sorted(allowed)
    if workers < 1 or not cpus or len(cpus) % workers:
        return None
    share = len(cpus) // workers
    start = (worker % workers) * share
    return set(cpus[start : start + share])


def pin_process(cpus: set[int], tasks: Path = Path("/proc/self/task")) -> None:
    """Every thread of this process on `cpus` (threads it starts later inherit the main thread's)."""
    for tid in os.listdir(tasks):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, ValueError):  # a thread that ended meanwhile
            continue
