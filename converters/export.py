"""Export a trained family to an ONNX model folder, prove parity on the test set, log to MLflow."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bentos.contract import ModelMetadata, write_model_folder
from bentos.runtime import OnnxClassifier
from converters import parity
from training.data import batched, load_texts_labels
from training.families.base import ModelFamily
from training.families.factory import load_family
from training.params import Params
from training.train import RUN_FILE
from training.validate import PREPARED_LABEL, PREPARED_TEXT

CHUNK = 1024  # texts per model call during the parity check


def _logreg(model: ModelFamily) -> tuple[bytes, str]:
    from converters.sklearn_onnx import pipeline_to_onnx

    return pipeline_to_onnx(model.pipeline), "text"  # type: ignore[attr-defined]


CONVERTERS: dict[str, Callable[[ModelFamily], tuple[bytes, str]]] = {"logreg": _logreg}


def _scores(score: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
    return np.concatenate([score(chunk) for chunk in batched(texts, CHUNK)])


def export(params: Params, model_dir: Path, onnx_dir: Path, reports_dir: Path) -> dict[str, object]:
    """Convert the model in `model_dir`, write the contract folder, fail on a parity miss."""
    model = load_family(model_dir)
    convert = CONVERTERS.get(model.name)
    if convert is None:
        raise ValueError(f"no ONNX converter for family {model.name!r}")
    run = json.loads((model_dir / RUN_FILE).read_text(encoding="utf-8"))
    data = json.loads((reports_dir / "data.json").read_text(encoding="utf-8"))
    onnx_bytes, input_kind = convert(model)
    metadata = ModelMetadata(
        family=model.name,
        version=hashlib.sha256(onnx_bytes).hexdigest()[:16],
        input_kind=input_kind,  # type: ignore[arg-type]
        data_sha256=data["data_sha256"],
        metrics={k: run["metrics"][k] for k in ("accuracy", "macro_f1") if k in run["metrics"]},
        mlflow_run_id=run["run_id"],
        registered_version=run["registered_version"],
    )
    write_model_folder(onnx_dir, onnx_bytes, model.labels, metadata)

    texts, _ = load_texts_labels(params.data.prepared_test, PREPARED_TEXT, PREPARED_LABEL)
    served = OnnxClassifier(onnx_dir)
    report = parity.compare(_scores(model.predict_proba, texts), _scores(served.predict_proba, texts))
    result: dict[str, object] = report.as_dict() | {"onnx_bytes": len(onnx_bytes)}
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / f"parity_{model.name}.json").write_text(
        json.dumps(result, indent=2) + "\n", encoding="utf-8"
    )
    parity.check(report, params.export.parity_min_label_agreement, params.export.parity_max_proba_diff)
    _log_to_mlflow(params, run["run_id"], onnx_dir, report)
    return result | {"version": metadata.version}


def _log_to_mlflow(params: Params, run_id: str, onnx_dir: Path, report: parity.ParityReport) -> None:
    import mlflow

    from training import tracking

    with tracking.run(params.registry.experiment, run_name="export", run_id=run_id):
        mlflow.log_metrics({f"parity_{k}": float(v) for k, v in report.as_dict().items()})
        mlflow.log_artifacts(str(onnx_dir), "onnx")
