"""Your own dataset, end to end, in a real git + DVC project with real MLflow: a project that trained and
selected a champion on one dataset (five intents, CSV `text,category`) takes a different one with
`textclf data add` (binary, JSONL `body`/`sentiment`, accented and non-Latin text); the previous results
leave the workspace, `dvc repro` trains, exports (ONNX parity on that text), evaluates and selects on the
new data alone, under a registered model of its own; checking the previous files out brings the previous
dataset back with nothing to rerun."""

from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.helpers import bin_path
from tests.loop_project import Project, make_project
from tests.unit.test_data_add import write_reviews

pytestmark = pytest.mark.integration
PREVIOUS = "tests-data-add-previous"
NAME = "dataadd-reviews"  # the data file's name: the dataset's default name
STAGES = {"validate", "train@logreg", "export@logreg", "evaluate@logreg", "select", "build"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The previous dataset's pipeline run and committed (results, dvc.lock and all)."""
    project = make_project(tmp_path_factory.mktemp("dataaddproject"), PREVIOUS, logreg_c=3.0)
    for argv in (["git", "add", "-A"], ["git", "commit", "-qm", "previous dataset"]):
        assert project.run(*argv).returncode == 0
    return project


def metrics(project: Project) -> dict[str, dict]:
    """`dvc metrics show`: every metrics file it reads, with its values (files it cannot read left out)."""
    shown = project.run(bin_path("dvc"), "metrics", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    files = json.loads(shown.stdout or "{}").get("", {}).get("data", {})
    return {path: entry["data"] for path, entry in files.items() if "data" in entry}


def champion(model: str) -> str:
    return MlflowClient().get_model_version_by_alias(model, "champion").tags["variant"]


def test_a_new_dataset_starts_clean_and_reaches_a_champion_of_its_own(project: Project) -> None:
    before = metrics(project)
    assert before["reports/data.json"]["labels"] == 5 and "reports/comparison.json" in before
    previous_champion = MlflowClient().get_model_version_by_alias(PREVIOUS, "champion").version
    source = write_reviews(project.root / "incoming" / f"{NAME}.jsonl", 300)

    added = project.textclf(
        "data", "add", str(source), "--text-column", "body", "--label-column", "sentiment"
    )
    out = " ".join(added.stderr.split())
    assert added.returncode == 0, out
    assert f"added {NAME}: data/raw/{NAME} (240 train / 60 test rows, 2 labels" in out
    assert "min_gain_over_majority 0.1" in out and f"register as {NAME}-classifier" in out
    params = yaml.safe_load((project.root / "params.yaml").read_text())
    assert params["data"] | {"feedback_dir": None} == params["data"] | {
        "name": NAME,
        "dir": f"data/raw/{NAME}",
        "train_file": "train.jsonl",
        "test_file": "test.jsonl",
        "validation_file": None,
        "text_column": "body",
        "label_column": "sentiment",
        "labels_file": None,
        "feedback_dir": None,
    }
    assert params["registry"] == {"model_name": f"{NAME}-classifier", "experiment": NAME}
    assert params["gate"] == {"min_accuracy": None, "min_macro_f1": None, "min_gain_over_majority": 0.1}
    assert (project.root / f"data/raw/{NAME}.dvc").is_file()
    assert f"/{NAME}" in (project.root / "data/raw/.gitignore").read_text().split()

    # Nothing of the previous dataset shows, and DVC sees every stage as to be run.
    assert metrics(project) == {}
    assert not (project.root / "dvc.lock").exists()
    status = json.loads(project.run(bin_path("dvc"), "status", "--json").stdout)
    assert set(status) == STAGES

    run = project.run(bin_path("dvc"), "repro", "select")
    assert run.returncode == 0, run.stdout + run.stderr
    after = metrics(project)
    assert after["reports/data.json"] | {"data_sha256": ""} == after["reports/data.json"] | {
        "train_rows": 240,
        "test_rows": 60,
        "labels": 2,
        "data_sha256": "",
    }
    assert after["reports/parity_logreg.json"]["fp32"]["label_agreement"] == 1.0  # accents, Cyrillic, CJK
    assert after["reports/eval/metrics_logreg.json"]["fp32"]["accuracy"] >= 0.9
    assert set(after["reports/comparison.json"]) == {"logreg"}
    assert champion(f"{NAME}-classifier") == "logreg"
    assert MlflowClient().get_model_version_by_alias(PREVIOUS, "champion").version == previous_champion

    # Going back: the previous params, dvc.lock and results from git, the outputs from DVC's cache.
    for argv in (
        ["git", "checkout", "HEAD", "--", "params.yaml", "dvc.lock", "reports"],
        [bin_path("dvc"), "checkout", "--quiet"],
    ):
        assert project.run(*argv).returncode == 0
    back = project.run(bin_path("dvc"), "status", "--json", "select")
    assert json.loads(back.stdout) == {}, back.stdout  # nothing to rerun up to the selection
    assert metrics(project) == before
