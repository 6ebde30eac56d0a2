"""The real DVC pipeline on a tiny dataset: reproduces end to end, then does nothing when unchanged."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.conftest import REPO, TINY_EXPORT, TINY_LSTM
from tests.helpers import bin_path, write_csv, write_tiny_dataset
from tests.loop_project import CODE

pytestmark = pytest.mark.integration


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
            shutil.copytree(source, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.jsonl*"))
        else:
            shutil.copy2(source, root / name)
    write_tiny_dataset(root / "data" / "raw" / "tiny")
    (root / "README.md").write_text("# demo\n<!-- comparison:start -->\nold\n<!-- comparison:end -->\nend\n")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["dir"] = "data/raw/tiny"
    params["families"] = ["logreg", "lstm"]
    params["lstm"].update(TINY_LSTM)
    params["export"].update(TINY_EXPORT)
    params["registry"].update(experiment="tests-pipeline", model_name="tests-pipeline")
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    assert dvc(["init", "--no-scm", "-q"], root).returncode == 0
    return root


def test_repro_runs_every_stage_then_nothing(project: Path) -> None:
    first = dvc(["repro"], project)
    assert first.returncode == 0, first.stdout + first.stderr
    stages = ["validate", "select", "build"]
    stages += [
        f"{stage}@{family}" for stage in ("train", "export", "evaluate") for family in ("logreg", "lstm")
    ]
    for stage in stages:
        assert f"Running stage '{stage}'" in first.stdout
    for variant in ("logreg/fp32", "lstm/fp32", "lstm/int8"):
        assert (project / "artifacts" / "onnx" / variant / "model.onnx").is_file()
    champion = json.loads((project / "reports" / "champion.json").read_text())
    assert champion["variant"] in {"logreg", "lstm", "lstm-int8"}
    # One source of truth: the report records what the MLflow alias points at, and the build stage
    # (`textclf build --model champion`, which reads the alias) built exactly that model.
    alias = MlflowClient().get_model_version_by_alias("tests-pipeline", "champion")
    assert (alias.tags["variant"], str(alias.version)) == (
        champion["variant"],
        champion["registered_version"],
    )
    bento = json.loads((project / "artifacts" / "bento" / "champion.json").read_text())
    assert bento["model"] == champion["model_tag"] == alias.tags["bentoml_model"]
    comparison = (project / "reports" / "comparison.md").read_text()
    assert all(f"{v}**" in comparison or f"| {v} |" in comparison for v in ("logreg", "lstm", "lstm-int8"))
    assert comparison.count("(champion)") == 1
    readme = (project / "README.md").read_text()
    assert comparison.strip() in readme and "old" not in readme and readme.endswith("end\n")

    shown = dvc(["metrics", "show"], project)
    assert shown.returncode == 0 and "reports/eval/metrics_lstm.json" in shown.stdout
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
