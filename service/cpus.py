"""The CPUs this process may use, which is what threads and worker processes are sized from.

`os.cpu_count()` is the machine's cores: in a Kubernetes pod limited to 4 CPUs on a 64-core
node it says 64, and a service sized from it starts 16 face workers and 48 torch threads that
the CFS quota then throttles (an OpenMP barrier waits for its slowest, throttled, thread). What
the process may use is the smaller of its CPU affinity (`os.sched_getaffinity`: cpusets,
`taskset`) and its cgroup's CPU quota (cgroup v2 `cpu.max`, or v1 `cpu.cfs_quota_us` over
`cpu.cfs_period_us`), the tightest of every cgroup from its own up to the root.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def available_cpus() -> int:
    """Whole CPUs this process may keep busy, at least 1. A fractional quota rounds down: a
    thread more than the quota holds is throttled every period."""
    affinity = _affinity()
    quota = cgroup_cpu_quota(CGROUP_ROOT, PROC_CGROUP)
    if quota is None:
        return max(1, affinity)
    return max(1, min(affinity, math.floor(quota)))


def _affinity() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1  # macOS, Windows: no affinity call


def cgroup_cpu_quota(cgroup_root: Path, proc_cgroup: Path) -> float | None:
    """CPUs' worth of time per period the cgroup quota allows (1.5: one and a half CPUs), the
    smallest along the process's cgroup and its ancestors; None when no quota is set or
    cgroups cannot be read (not Linux, no cgroup filesystem)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    quotas = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2: "0::/path"
            quotas += [_v2_quota(d / "cpu.max") for d in _up_to_root(cgroup_root, path)]
        elif "cpu" in controllers.split(","):  # cgroup v1: "4:cpu,cpuacct:/path"
            base = cgroup_root / controllers
            if not base.is_dir():
                base = cgroup_root / "cpu"
            quotas += [_v1_quota(d) for d in _up_to_root(base, path)]
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def _up_to_root(mount: Path, path: str) -> list[Path]:
    """The cgroup's directory and its ancestors' under `mount`. Inside a container with its
    own cgroup namespace the path is "/" and the mount's top is the container's cgroup."""
    parts = [p for p in path.strip("/").split("/") if p and p != ".."]
    return [mount.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _v2_quota(cpu_max: Path) -> float | None:
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return int(quota) / int(period)


def _v1_quota(directory: Path) -> float | None:
    try:
        quota = int((directory / "cpu.cfs_quota_us").read_text())
        period = int((directory / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:  # -1: no quota
        return None
    return quota / period
