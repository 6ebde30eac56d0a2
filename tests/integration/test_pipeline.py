"""The real DVC pipeline on a tiny dataset: reproduces end to end, then does nothing when unchanged."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.helpers import bin_path, write_csv, write_tiny_dataset

pytestmark = pytest.mark.integration
CODE = [
    "training",
    "converters",
    "bentos",
    "textclf",
    "bentofile.yaml",
    "requirements-serving.txt",
    "dvc.yaml",
]


def dvc(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": f"{Path(bin_path('dvc')).parent}:{os.environ['PATH']}"}
    return subprocess.run(
        [bin_path("dvc"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DVC project holding the pipeline definition, the code it depends on and a tiny dataset."""
    root = tmp_path_factory.mktemp("dvcproject")
    for name in CODE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, root / name)
    write_tiny_dataset(root / "data" / "raw" / "tiny")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["dir"] = "data/raw/tiny"
    params["registry"].update(experiment="tests-pipeline", model_name="tests-pipeline")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert dvc(["init", "--no-scm", "-q"], root).returncode == 0
    return root


def test_repro_runs_every_stage_then_nothing(project: Path) -> None:
    first = dvc(["repro"], project)
    assert first.returncode == 0, first.stdout + first.stderr
    for stage in ("validate", "train@logreg", "export@logreg", "evaluate@logreg", "build"):
        assert f"Running stage '{stage}'" in first.stdout
    assert (project / "artifacts" / "onnx" / "logreg" / "model.onnx").is_file()
    assert (project / "artifacts" / "bento" / "logreg.json").is_file()

    shown = dvc(["metrics", "show"], project)
    assert shown.returncode == 0 and "reports/metrics_logreg.json" in shown.stdout
    assert "accuracy" in shown.stdout and "macro_f1" in shown.stdout

    second = dvc(["repro"], project)
    assert second.returncode == 0
    assert "Running stage" not in second.stdout
    assert "up to date" in second.stdout


def test_bad_data_stops_the_pipeline_with_a_clear_message(project: Path) -> None:
    train_csv = project / "data" / "raw" / "tiny" / "train.csv"
    rows = [tuple(line.rsplit(",", 1)) for line in train_csv.read_text().splitlines()[1:]]
    write_csv(train_csv, [*rows, ("", "refund")])
    failed = dvc(["repro"], project)
    assert failed.returncode != 0
    assert "empty or blank text(s)" in failed.stdout + failed.stderr
