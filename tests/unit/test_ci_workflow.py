"""The GitHub Actions workflow (.github/workflows/ci.yml) is valid YAML and runs what the project's CI runs:
.ci/run, on Python 3.11, plus the image build and test through their make targets."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import yaml

from tests.conftest import REPO

WORKFLOW = REPO / ".github" / "workflows" / "ci.yml"


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    data = yaml.safe_load(WORKFLOW.read_text())
    assert isinstance(data, dict)
    return data


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_triggers_on_push_and_pull_request(workflow: dict[str, Any]) -> None:
    triggers = workflow.get("on", workflow.get(True))  # YAML 1.1 reads a bare `on` as true
    assert {"push", "pull_request"} <= set(triggers)


def test_test_job_runs_ci_run_on_python_311_with_a_pip_cache(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["test"]
    assert job["runs-on"] == "ubuntu-latest"
    (setup,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    assert str(setup["with"]["python-version"]) == "3.11"
    assert setup["with"]["cache"] == "pip"
    assert (REPO / setup["with"]["cache-dependency-path"]).is_file()
    assert any(re.search(r"(^|\s)(bash )?\.ci/run\b", command) for command in runs(job))
    script = REPO / ".ci" / "run"
    assert script.is_file() and os.access(script, os.X_OK)
    assert workflow["env"]["REQUIRE_K8S_TOOLS"] == "1"  # k8s tests fail, not skip, without kubectl


def test_image_job_uses_the_make_targets(workflow: dict[str, Any]) -> None:
    commands = runs(workflow["jobs"]["image"])
    for target in ("image", "test-image"):
        assert any(re.search(rf"\bmake {target}\b", command) for command in commands), target
    makefile = (REPO / "Makefile").read_text()
    for target in ("image", "test-image"):
        assert re.search(rf"^{target}:", makefile, re.M), f"the Makefile has no `{target}` target"


def test_every_action_is_pinned(workflow: dict[str, Any]) -> None:
    used = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert used
    assert all(re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+", u) for u in used), used


def test_needs_no_secrets_and_only_reads_the_repo(workflow: dict[str, Any]) -> None:
    text = WORKFLOW.read_text()
    assert "secrets." not in text  # nothing here needs a secret; pull requests from forks get none
    assert workflow["permissions"] == {"contents": "read"}
