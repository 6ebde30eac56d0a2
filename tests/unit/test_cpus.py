"""The CPUs a process may use (textclf.core.cpus): the host's cores, the affinity and the cgroup quota."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from textclf.core import cpus
from textclf.core.settings import SettingsError, load_settings


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


def test_workers_get_equal_consecutive_shares_or_none() -> None:
    assert [cpus.worker_cpus(i, 2, [3, 1]) for i in range(2)] == [{1}, {3}]
    assert [cpus.worker_cpus(i, 2, range(8)) for i in range(2)] == [{0, 1, 2, 3}, {4, 5, 6, 7}]
    assert cpus.worker_cpus(2, 2, [0, 1]) == {0}  # a respawned worker numbered past the count wraps
    assert cpus.worker_cpus(0, 2, [0, 1, 2]) is None  # three CPUs do not split between two workers
    assert cpus.worker_cpus(0, 4, [0, 1]) is None  # more workers than CPUs
    assert cpus.worker_cpus(0, 0, [0, 1]) is None


def test_pinning_follows_the_setting_and_auto_only_where_workers_own_the_cpus(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import textclf.core.settings as settings_module

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5}, raising=False)
    monkeypatch.setattr(settings_module, "available_cpus", lambda: 2)
    shipped = load_settings({})
    assert [shipped.worker_cpu_set(i) for i in (1, 2)] == [{4}, {5}]  # BentoML numbers workers from 1
    assert shipped.worker_cpu_set(None) is None  # not a server worker (the arbiter, a test, a script)
    assert load_settings({"TEXTCLF_PIN_WORKERS": "false"}).worker_cpu_set(1) is None
    assert load_settings({"TEXTCLF_WORKERS": "1"}).worker_cpu_set(1) is None  # auto: one worker, two CPUs
    assert load_settings({"TEXTCLF_WORKERS": "1", "TEXTCLF_PIN_WORKERS": "true"}).worker_cpu_set(1) == {4, 5}
    assert load_settings({"TEXTCLF_WORKERS": "3", "TEXTCLF_PIN_WORKERS": "true"}).worker_cpu_set(1) is None
    monkeypatch.setattr(settings_module, "available_cpus", lambda: 1)  # a cgroup quota of one CPU
    assert load_settings({"TEXTCLF_WORKERS": "2"}).worker_cpu_set(1) is None  # the scheduler decides
    with pytest.raises(SettingsError, match="TEXTCLF_PIN_WORKERS"):
        load_settings({"TEXTCLF_PIN_WORKERS": "sometimes"})


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to pin to one of them")
def test_pin_process_moves_every_thread_and_the_threads_started_later() -> None:
    """In a child process, so this test's own threads keep every CPU."""
    code = textwrap.dedent(
        """
        import os, threading
        from textclf.core.cpus import pin_process
        cpu = max(os.sched_getaffinity(0))
        started, stop = threading.Event(), threading.Event()
        def wait():
            started.set()
            stop.wait()
        before = threading.Thread(target=wait)
        before.start()
        started.wait()
        pin_process({cpu})
        after = threading.Thread(target=stop.wait)
        after.start()
        tids = [int(t) for t in os.listdir("/proc/self/task")]
        print(all(os.sched_getaffinity(t) == {cpu} for t in tids), len(tids))
        stop.set()
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "3"]
