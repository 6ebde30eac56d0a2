"""Train one model family on the prepared splits, evaluate it, and track everything in MLflow."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import mlflow

from training import tracking
from training.data import load_texts_labels
from training.epochs import EpochStats
from training.evaluate import (
    classification_metrics,
    headline,
    plot_confusion_matrix,
    plot_learning_curves,
)
from training.families.factory import create_family, save_family
from training.feedback import training_rows
from training.params import Params
from training.splits import Examples, given_validation, training_part
from training.validate import PREPARED_LABEL, PREPARED_TEXT

log = logging.getLogger(__name__)
RUN_FILE = "mlflow_run.json"


@dataclass(frozen=True)
class TrainResult:
    family: str
    run_id: str
    metrics: dict[str, float]
    registered_version: str
    train_seconds: float


def train(family: str, params: Params, model_dir: Path, reports_dir: Path) -> TrainResult:
    """Fit `family` on the prepared train split less its validation rows (training.splits); write the
    model, metrics and plots; log to MLflow.

    The model is registered in MLflow as a new version; the champion alias is left to the champion
    rule (`textclf select`), so the alias and reports/champion.json never disagree.
    """
    data = params.data
    train_texts, train_labels = load_texts_labels(data.prepared_train, PREPARED_TEXT, PREPARED_LABEL)
    test_texts, test_labels = load_texts_labels(data.prepared_test, PREPARED_TEXT, PREPARED_LABEL)
    data_report = json.loads((reports_dir / "data.json").read_text(encoding="utf-8"))
    reports_dir.mkdir(parents=True, exist_ok=True)

    feedback = Examples(*training_rows(data.prepared_feedback_dir, data.feedback_holdout))
    validation = given_validation(params)
    model = create_family(family, params)
    fit = Examples(train_texts, train_labels)
    if not model.carves_validation:
        fit = training_part(params, family, train_texts, train_labels)
    # labelled feedback trains, last and never in the validation split (decrypted in memory only)
    fit = Examples(fit.texts + feedback.texts, fit.labels + feedback.labels)
    with tracking.run(params.registry.experiment, run_name=f"train-{family}") as active:
        mlflow.set_tags({"family": family, "stage": "train", "data_sha256": data_report["data_sha256"]})
        mlflow.log_params({f"{family}.{k}": v for k, v in model.params().items()})
        mlflow.log_params(
            {
                "data.name": data.name,
                "data.train_rows": len(train_texts),
                "data.test_rows": len(test_texts),
                "data.feedback_rows": len(feedback),
            }
        )
        started = time.perf_counter()
        model.fit(
            fit.texts,
            fit.labels,
            on_epoch=_log_epoch,
            always_train=len(feedback),
            validation=None if validation is None else (validation.texts, validation.labels),
        )
        train_seconds = time.perf_counter() - started

        predictions = model.predict(test_texts)
        metrics = classification_metrics(test_labels, predictions, model.labels)
        scalars = headline(metrics) | {"train_seconds": train_seconds}
        save_family(model, model_dir)
        metrics_path = reports_dir / f"train_{family}.json"
        metrics_path.write_text(json.dumps(scalars, indent=2) + "\n", encoding="utf-8")
        class_report_path = reports_dir / f"per_class_{family}.json"
        class_report_path.write_text(json.dumps(metrics["per_class"], indent=1) + "\n", encoding="utf-8")
        plots = [
            plot_confusion_matrix(
                test_labels,
                predictions,
                model.labels,
                reports_dir / f"confusion_{family}.png",
                title=f"{family}: accuracy {scalars['accuracy']:.3f}",
            )
        ]
        history = getattr(model, "history", None)
        if history:
            plots.append(plot_learning_curves(history, reports_dir / f"curves_{family}.png", title=family))
        mlflow.log_metrics(scalars)
        mlflow.log_artifact(str(class_report_path), "reports")
        for plot in plots:
            mlflow.log_artifact(str(plot), "plots")

        registration = tracking.register(
            model.log_to_mlflow(),
            params.registry.model_name,
            tags={"family": family, "data_sha256": data_report["data_sha256"]},
        )
        run_id = active.info.run_id
    result = TrainResult(
        family=family,
        run_id=run_id,
        metrics=scalars,
        registered_version=registration.version,
        train_seconds=train_seconds,
    )
    (model_dir / RUN_FILE).write_text(json.dumps(asdict(result), indent=2), encoding="utf-8")
    return result


def _log_epoch(stats: EpochStats) -> None:
    mlflow.log_metrics(stats.as_metrics(), step=stats.epoch)
