"""One retraining job at a time (textclf.loop.jobs): a second is refused, a dead one reads as interrupted."""

from __future__ import annotations

from pathlib import Path

import pytest

from textclf.loop import jobs


def test_a_second_job_is_refused_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    assert jobs.read_state(tmp_path) == {"status": "idle"}
    with jobs.job_lock(tmp_path):
        assert jobs.lock_held(tmp_path)
        jobs.write_state(tmp_path, status="running", message="working")
        assert jobs.read_state(tmp_path)["status"] == "running"
        with pytest.raises(jobs.JobBusy), jobs.job_lock(tmp_path):
            pass
    assert not jobs.lock_held(tmp_path)
    state = jobs.read_state(tmp_path)  # "running", but nobody holds the lock: it was killed
    assert state["status"] == "interrupted" and "killed" in state["message"]
    with jobs.job_lock(tmp_path):  # and the next job starts
        jobs.write_state(tmp_path, status="challenger")
    assert jobs.read_state(tmp_path)["status"] == "challenger"
