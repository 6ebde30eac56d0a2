"""The CPUs a process may use (textclf.core.cpus): the host's cores, the affinity and the cgroup quota."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from textclf.core import cpus
from textclf.core.settings import load_settings


def test_cgroup_v2_and_v1_quotas(tmp_path: Path) -> None:
    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")
    assert cpus.cgroup_quota(v2) == 1.5
    (v2 / "cpu.max").write_text("max 100000\n")
    assert cpus.cgroup_quota(v2) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("200000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpus.cgroup_quota(v1) == 2.0
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")  # no limit
    assert cpus.cgroup_quota(v1) is None
    assert cpus.cgroup_quota(tmp_path / "nothing") is None


def test_the_smallest_of_cores_affinity_and_quota_rounded_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3}, raising=False)
    (tmp_path / "cpu.max").write_text("250000 100000\n")  # 2.5 CPUs
    assert cpus.available_cpus(tmp_path) == 3
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert cpus.available_cpus(tmp_path) == 4  # the affinity
    (tmp_path / "cpu.max").write_text("20000 100000\n")  # a fifth of a CPU: still one
    assert cpus.available_cpus(tmp_path) == 1


def test_server_defaults_follow_the_cpus_this_process_may_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cpus, "available_cpus", lambda root=cpus.CGROUP_ROOT: 3)
    import textclf.core.settings as settings_module

    monkeypatch.setattr(settings_module, "available_cpus", lambda: 3)
    settings = load_settings({})
    assert settings.server_workers == 3 and settings.model_lanes == 1
    assert load_settings({"TEXTCLF_WORKERS": "1"}).model_lanes == 3
