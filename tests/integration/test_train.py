"""Training: the family learns, the run is tracked and registered in MLflow; only the champion rule
moves the `champion` alias, and never to a model below the gate."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import Workspace, make_workspace
from tests.helpers import write_csv
from textclf.core.variants import Variant
from training.compare import Candidate, NoChampionError, champion_variant, register_champion
from training.families import UnknownFamilyError, create_family, load_family
from training.params import load_params
from training.train import train
from training.validate import prepare

pytestmark = pytest.mark.integration  # trains a model or uses the BentoML store


def test_logreg_learns_the_tiny_task(trained_logreg: Workspace) -> None:
    metrics = json.loads((trained_logreg.reports / "train_logreg.json").read_text())
    assert metrics["accuracy"] >= 0.9 and metrics["macro_f1"] >= 0.9
    per_class = json.loads((trained_logreg.reports / "per_class_logreg.json").read_text())
    assert set(per_class) == {"card_arrival", "exchange_rate", "pin_blocked", "refund", "top_up"}
    assert (trained_logreg.reports / "confusion_logreg.png").stat().st_size > 1000


def test_saved_model_round_trips(trained_logreg: Workspace) -> None:
    model = load_family(trained_logreg.model_dir("logreg"))
    assert model.name == "logreg"
    assert model.predict(["my pin is blocked please"]) == ["pin_blocked"]
    probs = model.predict_proba(["refund please", "fx rate today"])
    assert probs.shape == (2, 5)
    assert probs.sum(axis=1) == pytest.approx([1.0, 1.0])


def test_run_is_tracked_and_registered(trained_logreg: Workspace) -> None:
    run_info = json.loads((trained_logreg.model_dir("logreg") / "mlflow_run.json").read_text())
    run = mlflow.get_run(run_info["run_id"])
    assert run.data.metrics["accuracy"] == pytest.approx(run_info["metrics"]["accuracy"])
    assert "macro_f1" in run.data.metrics and run.data.params["logreg.C"] == "10.0"
    assert run.data.tags["family"] == "logreg"
    artifacts = {a.path for a in MlflowClient().list_artifacts(run.info.run_id, "plots")}
    assert artifacts == {"plots/confusion_logreg.png"}
    params = load_params(trained_logreg.params_file)
    version = MlflowClient().get_model_version(params.registry.model_name, run_info["registered_version"])
    assert version.run_id == run.info.run_id


def _candidate(variant: str, registered_version: str | None) -> Candidate:
    return Candidate(
        variant, variant, "fp32", 0.95, 0.95, 1.0, 1000.0, 1.0, f"textclf-{variant}:v", registered_version
    )


def test_only_the_champion_rule_moves_the_alias(tmp_path: Path, trained_logreg: Workspace) -> None:
    params = load_params(trained_logreg.params_file)
    run_info = json.loads((trained_logreg.model_dir("logreg") / "mlflow_run.json").read_text())
    register_champion(params, _candidate("logreg", run_info["registered_version"]))
    assert champion_variant(params) == Variant("logreg")
    client = MlflowClient()
    before = client.get_model_version_by_alias(params.registry.model_name, "champion").version
    assert str(before) == run_info["registered_version"]

    ws = make_workspace(tmp_path)
    test_csv = ws.root / "data" / "test.csv"
    rows = [line.rsplit(",", 1) for line in test_csv.read_text().splitlines()[1:]]
    labels = sorted({label for _, label in rows})
    rotated = [(text, labels[(labels.index(label) + 1) % len(labels)]) for text, label in rows]
    write_csv(test_csv, rotated)  # every test label wrong: a model that cannot pass the gate
    strict = load_params(ws.params_file)
    strict = strict.model_copy(update={"registry": params.registry})
    prepare(strict.data, ws.reports / "data.json")
    result = train("logreg", strict, ws.model_dir("logreg"), ws.reports)
    assert result.metrics["accuracy"] < strict.gate.min_accuracy  # below the gate, and registered anyway
    after = client.get_model_version_by_alias(params.registry.model_name, "champion").version
    assert after == before != int(result.registered_version)  # training registered it, the alias stayed
    with pytest.raises(NoChampionError, match="no registered MLflow version"):
        register_champion(params, _candidate("lstm", None))


def test_unknown_family_is_a_clear_error(trained_logreg: Workspace) -> None:
    with pytest.raises(UnknownFamilyError, match="unknown model family 'gpt'"):
        create_family("gpt", load_params(trained_logreg.params_file))
