"""MLflow tracking: every training run is logged; registry aliases mark what may be served."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_DIR = Path("mlartifacts")
CHAMPION = "champion"


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI when set (a server works too), else a local sqlite store."""
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def configure(experiment: str) -> str:
    """Point MLflow at the tracking store and experiment; returns the experiment id."""
    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    existing = mlflow.get_experiment_by_name(experiment)
    if existing is not None:
        experiment_id = existing.experiment_id
    else:
        location = None
        if uri.startswith("sqlite:"):
            location = DEFAULT_ARTIFACT_DIR.resolve().as_uri()
        experiment_id = mlflow.create_experiment(experiment, artifact_location=location)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextmanager
def run(experiment: str, run_name: str, run_id: str | None = None) -> Iterator[mlflow.ActiveRun]:
    """Start (or resume, given run_id) a run in the configured store."""
    configure(experiment)
    with mlflow.start_run(run_id=run_id, run_name=None if run_id else run_name) as active:
        yield active


@dataclass(frozen=True)
class Registration:
    name: str
    version: str


def register(model_uri: str, name: str, tags: dict[str, str]) -> Registration:
    """Register a logged model as a new version (the champion alias moves only in `promote`)."""
    version = mlflow.register_model(model_uri, name, tags=tags)
    return Registration(name=name, version=str(version.version))


def promote(name: str, version: str, tags: dict[str, str]) -> None:
    """Move the champion alias to `version` of `name`, recording why in version tags."""
    mlflow.set_tracking_uri(tracking_uri())
    client = MlflowClient()
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHAMPION, version)


def champion_variant(name: str) -> str | None:
    """The variant the MLflow `champion` alias points at (tagged by `textclf select`), if any."""
    mlflow.set_tracking_uri(tracking_uri())
    try:
        version = MlflowClient().get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None
    return version.tags.get("variant")


CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous-champion"


def client() -> MlflowClient:
    mlflow.set_tracking_uri(tracking_uri())
    return MlflowClient()


def version_by_alias(name: str, alias: str) -> mlflow.entities.model_registry.ModelVersion | None:
    """The registered version an alias points at, or None when the alias (or the model) is not set."""
    try:
        return client().get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException:
        return None


def set_alias(name: str, alias: str, version: str, tags: dict[str, str] | None = None) -> None:
    """Point `alias` at `version` of `name`, recording `tags` on the version first."""
    mlflow_client = client()
    for key, value in (tags or {}).items():
        mlflow_client.set_model_version_tag(name, version, key, value)
    mlflow_client.set_registered_model_alias(name, alias, version)


def delete_alias(name: str, alias: str) -> None:
    with contextlib.suppress(mlflow.exceptions.MlflowException):  # not set: nothing to delete
        client().delete_registered_model_alias(name, alias)
