"""Threads and processes are sized from the CPUs the process may use (affinity and cgroup
quota), never from the node's core count."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from service import cpus
from service.config import Settings


def _cgroup_v2(tmp_path: Path, levels: dict[str, str]) -> None:
    """A fake cgroup v2 tree: `levels` maps a cgroup path to its cpu.max."""
    root = tmp_path / "cgroup"
    deepest = max(levels, key=len)
    for path, cpu_max in levels.items():
        directory = root / path.strip("/")
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "cpu.max").write_text(cpu_max + "\n")
    (tmp_path / "proc-cgroup").write_text(f"0::{deepest}\n")


@pytest.fixture
def pod(monkeypatch, tmp_path: Path):
    """A 64-core node: what os.cpu_count() and the affinity mask say, with the cgroup files
    under tmp_path."""
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)), raising=False)
    monkeypatch.setattr(cpus, "CGROUP_ROOT", tmp_path / "cgroup")
    monkeypatch.setattr(cpus, "PROC_CGROUP", tmp_path / "proc-cgroup")
    for name in ("FACE_WORKERS", "TORCH_THREADS", "CODEC_THREADS"):
        monkeypatch.delenv(f"ABPN_{name}", raising=False)
    return tmp_path


def test_a_4_cpu_pod_on_a_64_core_node_is_sized_for_4(pod: Path) -> None:
    _cgroup_v2(pod, {"/": "max 100000", "/kubepods/pod1/c1": "400000 100000"})
    assert cpus.available_cpus() == 4
    settings = Settings()
    assert settings.face_workers == 1
    assert settings.torch_thread_count() == 3
    assert settings.codec_threads == 4


def test_the_tightest_ancestor_quota_wins(pod: Path) -> None:
    _cgroup_v2(pod, {"/kubepods": "200000 100000", "/kubepods/pod1": "max 100000"})
    assert cpus.available_cpus() == 2


def test_a_fractional_quota_rounds_down_but_never_to_zero(pod: Path) -> None:
    _cgroup_v2(pod, {"/a": "150000 100000"})
    assert cpus.available_cpus() == 1
    _cgroup_v2(pod, {"/a": "50000 100000"})
    assert cpus.available_cpus() == 1


def test_a_container_with_its_own_cgroup_namespace(pod: Path) -> None:
    # Inside the namespace the process is at "/" and the mount's top is its cgroup.
    _cgroup_v2(pod, {"/": "300000 100000"})
    assert cpus.available_cpus() == 3


def test_affinity_limits_without_a_quota(pod: Path, monkeypatch) -> None:
    _cgroup_v2(pod, {"/": "max 100000"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    assert cpus.available_cpus() == 2
    settings = Settings()
    assert settings.face_workers == 0  # below 4 CPUs a worker would take a core from torch
    assert settings.torch_thread_count() == 2


def test_cgroup_v1_quota(pod: Path) -> None:
    directory = pod / "cgroup" / "cpu,cpuacct" / "docker" / "abc"
    directory.mkdir(parents=True)
    (directory / "cpu.cfs_quota_us").write_text("800000\n")
    (directory / "cpu.cfs_period_us").write_text("100000\n")
    (pod / "proc-cgroup").write_text("4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n")
    assert cpus.available_cpus() == 8


def test_no_cgroup_filesystem_leaves_the_affinity(pod: Path) -> None:
    assert cpus.cgroup_cpu_quota(pod / "missing", pod / "missing") is None
    assert cpus.available_cpus() == 64


def test_explicit_settings_win(pod: Path, monkeypatch) -> None:
    _cgroup_v2(pod, {"/": "400000 100000"})
    monkeypatch.setenv("ABPN_FACE_WORKERS", "2")
    monkeypatch.setenv("ABPN_TORCH_THREADS", "5")
    settings = Settings()
    assert settings.face_workers == 2
    assert settings.torch_thread_count() == 5
