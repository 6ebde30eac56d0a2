"""The retraining loop on a real DVC + git project (TF-IDF + LR, tiny data), real MLflow and the real CLI:
feedback logs as the server writes them → `textclf retrain` (a new DVC data version, a challenger, the
champion untouched) → `textclf promote` (the gate, both ways) → `textclf rollback`; a job killed with
SIGKILL mid-run leaves the champion alone and the next run finishes the work."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import bin_path, shifted_rows, wait_for
from tests.loop_project import Project, make_project

pytestmark = pytest.mark.integration
MODEL = "tests-retrain"
POINTER = "data/feedback/feedback.sealed.jsonl.dvc"
MARKER = "zebracorn"  # in every feedback text: it must never appear in the clear on disk


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """A git + DVC project with the pipeline, TF-IDF + LR only, its champion selected."""
    return make_project(tmp_path_factory.mktemp("retrainproject"), MODEL, logreg_c=7.0)


def test_no_feedback_is_nothing_to_do_and_says_why(project: Project) -> None:
    champion = project.version("champion")
    result = project.textclf("retrain", "--feedback-dir", str(project.logs))
    assert result.returncode == 0, result.stderr
    assert "nothing to do: no new usable feedback" in result.stderr
    assert not list((project.root / "data" / "feedback").glob("*.dvc"))
    assert project.version("champion") == champion
    assert project.state()["status"] == "nothing-to-do"


def test_feedback_becomes_a_dvc_data_version_and_a_challenger(project: Project) -> None:
    champion = project.alias("champion")
    train_csv = (project.root / "data/raw/tiny/train.csv").read_text().splitlines()[1:3]
    test_csv = (project.root / "data/raw/tiny/test.csv").read_text().splitlines()[1]
    in_train = [tuple(line.rsplit(",", 1)) for line in train_csv]
    shifted = [(f"{text} {MARKER}", label) for text, label in shifted_rows(12, seed=5)]
    project.post_feedback("w1", shifted[:30])
    project.post_feedback(
        "w2",
        [
            *shifted[30:],
            (f"{MARKER} not one of ours", "no_such_label"),
            tuple(test_csv.rsplit(",", 1)),  # a text of the fixed test split
            in_train[0],  # already in train, same label
            (in_train[1][0], "refund" if in_train[1][1] != "refund" else "top_up"),  # relabelled
            (shifted[0][0], "top_up" if shifted[0][1] != "top_up" else "refund"),  # an older label...
        ],
        start=-100.0,  # ...sent before the one in w1, so w1's label wins
    )
    result = project.textclf("retrain", "--feedback-dir", str(project.logs))
    assert result.returncode == 0, result.stdout + result.stderr
    out = " ".join(result.stderr.split())
    for reason in (
        "1 unknown label(s)",
        "1 text(s) of the fixed test split (leakage)",
        "1 text(s) already in the training data",
        "1 text(s) the training data labels differently",
        "1 repeated text(s) (the latest label kept)",
    ):
        assert reason in out, (reason, out)
    assert "challenger logreg registered" in out

    challenger = project.alias("challenger")
    assert project.version("champion") == str(champion.version)  # never moved by retrain
    assert challenger.version != champion.version
    assert challenger.tags["variant"] == "logreg" and challenger.tags["bentoml_model"].startswith(
        "textclf-logreg:"
    )
    assert challenger.tags["data_sha256"] != champion.tags["data_sha256"]  # new training data
    assert project.served()["champion"] == champion.tags["bentoml_model"]
    assert project.served()["challenger"] == challenger.tags["bentoml_model"]  # shadowed by servers

    data = json.loads((project.root / "reports/data.json").read_text())
    assert data["feedback_rows"] == len(shifted)
    pointer = project.root / "data/feedback/feedback.sealed.jsonl.dvc"
    assert pointer.is_file()
    log = project.run("git", "log", "--format=%s", "--", str(pointer)).stdout
    assert "textclf retrain: feedback data version" in log
    md5 = yaml.safe_load(pointer.read_text())["outs"][0]["md5"]
    cached = project.root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]
    data_files = [
        cached,
        *(project.root / "data/feedback").rglob("*"),
        *(project.root / "artifacts/data").rglob("*"),
    ]
    for path in data_files:  # the feedback data is sealed wherever it lies (models learn its words, not it)
        if path.is_file():
            assert MARKER.encode() not in path.read_bytes(), path
    assert cached.is_file() and (project.root / "artifacts/data/feedback/feedback.sealed.jsonl").is_file()
    audit = (project.root / "audit" / "audit-cli.jsonl").read_text()
    assert '"action":"retrain-done"' in audit and '"status":"challenger"' in audit

    again = project.textclf("retrain", "--feedback-dir", str(project.logs))
    assert again.returncode == 0 and "nothing to do" in again.stderr
    assert "already has a challenger" in again.stderr


def test_the_gate_keeps_a_challenger_that_is_not_better_and_promotes_one_that_is(project: Project) -> None:
    champion, challenger = project.version("champion"), project.version("challenger")
    project.set_params("promotion", margin=0.5)  # nothing beats the champion by 50 points
    kept = project.textclf("promote")
    assert kept.returncode == 2, kept.stdout + kept.stderr
    assert "keep the champion" in kept.stderr and "+ margin 0.5" in " ".join(kept.stderr.split())
    decision = json.loads(kept.stdout)
    assert decision["decision"] == "keep" and decision["challenger"] == challenger
    assert project.version("champion") == champion

    project.set_params("promotion", margin=0.0, tolerance=1.0, max_recall_drop=1.0, min_slice_rows=1)
    project.set_params("gate", min_accuracy=0.0, min_macro_f1=0.0)
    promoted = project.textclf("promote")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    slices = json.loads(promoted.stdout)["slices"]
    assert slices["challenger"]["slices"]["feedback"]["rows"] > 0  # the held-out feedback was compared
    assert project.version("champion") == challenger
    assert project.version("previous-champion") == champion
    promoted_tag = project.alias("champion").tags["bentoml_model"]
    assert project.served() | {"updated": 0} == {
        "champion": promoted_tag,
        "challenger": None,
        "updated": 0,
        "by": "textclf promote",
    }
    audit = (project.root / "audit" / "audit-cli.jsonl").read_text()
    assert '"action":"promote"' in audit and '"decision":"promote"' in audit
    runs = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name(MODEL).experiment_id], "tags.stage = 'promote'"
    )
    assert {run.data.tags["decision"] for run in runs} == {"keep", "promote"}

    back = project.textclf("rollback")
    assert back.returncode == 0, back.stderr
    assert project.version("champion") == champion
    assert project.version("previous-champion") == challenger
    assert project.served()["champion"] == project.alias("champion").tags["bentoml_model"] != promoted_tag


def test_a_killed_job_leaves_the_champion_and_the_next_run_finishes(project: Project) -> None:
    champion = project.version("champion")
    versions_before = project.run("git", "log", "--format=%H", "--", POINTER).stdout.split()
    project.post_feedback(
        "w1", [(f"{t} {MARKER} later", label) for t, label in shifted_rows(3, seed=9)], start=1e6
    )
    job = subprocess.Popen(
        [bin_path("textclf"), "retrain", "--feedback-dir", str(project.logs)],
        cwd=project.root,
        env=project.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        state_file = project.root / "artifacts/retrain/state.json"
        wait_for(
            lambda: (
                state_file.is_file()
                and json.loads(state_file.read_text()).get("message", "").startswith("retraining")
            ),
            120,
            "the job to start retraining",
        )
    finally:
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
    assert project.version("champion") == champion
    assert project.state()["status"] == "interrupted"

    started = time.time()
    rerun = project.textclf("retrain", "--feedback-dir", str(project.logs))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "challenger logreg registered" in rerun.stderr  # the written data version is trained on
    state = project.state()
    assert state["status"] == "challenger" and state["finished"] >= started
    assert project.version("champion") == champion

    # both data versions stay retrievable: two commits of the pointer, both in DVC's cache
    versions = project.run("git", "log", "--format=%H", "--", POINTER).stdout.split()
    assert len(versions) == len(versions_before) + 1 >= 2
    hashes = {
        yaml.safe_load(project.run("git", "show", f"{v}:{POINTER}").stdout)["outs"][0]["md5"]
        for v in versions
    }
    assert len(hashes) == len(versions)
    for md5 in hashes:
        assert (project.root / ".dvc/cache/files/md5" / md5[:2] / md5[2:]).is_file()
