"""ONNX export: the contract folder, exact parity with sklearn, a failing check stops the pipeline.
(Calibration and the drift reference the export adds: tests/integration/test_calibration.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest

from converters import parity
from converters.sklearn_onnx import pipeline_to_onnx
from converters.store import save_to_store
from tests.conftest import Workspace
from textclf.core.contract import (
    REFERENCE_FILE,
    VOCABULARY_FILE,
    ContractError,
    check_exported_folder,
    read_model_folder,
)
from textclf.core.runtime import OnnxClassifier, apply_temperature
from training.families import load_family
from training.families.logreg import LogregFamily
from training.params import LogregParams

pytestmark = pytest.mark.integration  # trains a model or uses the BentoML store


def test_contract_folder_is_complete(trained_logreg: Workspace) -> None:
    folder = trained_logreg.onnx_dir("logreg")
    labels, metadata = check_exported_folder(folder)
    assert labels == sorted(labels) and len(labels) == 5
    assert metadata.family == "logreg" and metadata.input_kind == "text"
    assert len(metadata.version) == 16 and len(metadata.data_sha256) == 64
    assert metadata.mlflow_run_id and metadata.metrics["accuracy"] >= 0.9
    assert metadata.temperature > 0
    assert (folder / REFERENCE_FILE).stat().st_size > 0 and (folder / VOCABULARY_FILE).is_file()


def test_parity_on_the_whole_test_split(trained_logreg: Workspace) -> None:
    report = json.loads((trained_logreg.reports / "parity_logreg.json").read_text())["fp32"]
    assert set(json.loads((trained_logreg.reports / "parity_logreg.json").read_text())) == {"fp32"}
    assert report["label_agreement"] == 1.0
    assert report["max_proba_diff"] < 1e-5


def test_onnx_scores_like_sklearn_on_unseen_text(trained_logreg: Workspace) -> None:
    """The served scores are sklearn's, calibrated with the folder's temperature."""
    model = load_family(trained_logreg.model_dir("logreg"))
    served = OnnxClassifier(trained_logreg.onnx_dir("logreg"))
    texts = ["I NEED A REFUND NOW!!", "pin... blocked?", "ünïcödé top up ✓", "x"]
    expected = apply_temperature(model.predict_proba(texts), served.temperature)
    np.testing.assert_allclose(served.predict_proba(texts), expected, atol=1e-5)


def test_parity_check_fails_loudly() -> None:
    source = np.array([[0.9, 0.1], [0.2, 0.8]])
    flipped = np.array([[0.1, 0.9], [0.2, 0.8]])
    report = parity.compare(source, flipped)
    assert report.label_agreement == 0.5
    with pytest.raises(parity.ParityError, match=r"labels agree on 50.0000% of 2 texts"):
        parity.check(report, min_label_agreement=0.999, max_proba_diff=1e-4)
    with pytest.raises(parity.ParityError, match="probabilities differ"):
        parity.check(parity.compare(source, source + np.array([[0.01, -0.01], [0, 0]])), 0.5, 1e-4)


def test_sublinear_tf_is_refused_before_it_breaks_parity() -> None:
    model = LogregFamily(LogregParams(sublinear_tf=True)).fit(["aa bb", "cc dd"], ["x", "y"])
    with pytest.raises(ValueError, match="sublinear_tf"):
        pipeline_to_onnx(model.pipeline)


def test_store_save_is_idempotent(trained_logreg: Workspace) -> None:
    first = save_to_store(trained_logreg.onnx_dir("logreg"))
    assert save_to_store(trained_logreg.onnx_dir("logreg")) == first
    assert first.startswith("textclf-logreg:")


def test_incomplete_folder_is_refused(tmp_path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    with pytest.raises(ContractError, match=r"missing labels\.json, metadata\.json"):
        read_model_folder(tmp_path)


def test_export_is_byte_for_byte_reproducible(tmp_path) -> None:
    """The model version is a hash of the ONNX bytes, so the same model must give the same bytes."""
    import os
    import subprocess
    import sys

    import joblib

    model = LogregFamily(LogregParams()).fit(["aa bb", "cc dd", "ee ff"], ["x", "y", "z"])
    joblib.dump(model.pipeline, tmp_path / "p.joblib")
    script = (
        "import hashlib, joblib, sys; from converters.sklearn_onnx import pipeline_to_onnx; "
        "print(hashlib.sha256(pipeline_to_onnx(joblib.load(sys.argv[1]))).hexdigest())"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", script, str(tmp_path / "p.joblib")],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in ("1", "2", "3")
    }
    assert len(digests) == 1
