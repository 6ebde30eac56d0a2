"""Calibration's pure parts (temperature fit, ECE, applying T), the validation carve, and the contract's
temperature and drift-reference rules. No trained model: synthetic scores and hand-made folders."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from converters.calibration import (
    calibrate,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
)
from textclf.core.contract import (
    METADATA_FILE,
    REFERENCE_FILE,
    VOCABULARY_FILE,
    ContractError,
    ModelMetadata,
    check_exported_folder,
    read_model_folder,
    write_model_folder,
)
from textclf.core.runtime import apply_temperature
from training.params import LogregParams, Params
from training.splits import SplitError, carve, split_validation, training_part


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def synthetic(n: int, classes: int, seed: int, overconfidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z) (so softmax(z) is calibrated); the model reports
    softmax(overconfidence · z), i.e. the true temperature is `overconfidence`."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0.0, 2.0, size=(n, classes))
    truth = softmax(logits)
    targets = (truth.cumsum(axis=1) < rng.random((n, 1))).sum(axis=1)
    return softmax(overconfidence * logits).astype(np.float32), np.minimum(targets, classes - 1)


def test_the_fit_recovers_a_known_temperature() -> None:
    probs, targets = synthetic(20_000, 10, seed=0, overconfidence=2.5)
    assert fit_temperature(probs, targets) == pytest.approx(2.5, abs=0.1)


def test_a_calibrated_model_keeps_a_temperature_near_one() -> None:
    probs, targets = synthetic(20_000, 10, seed=1, overconfidence=1.0)
    assert fit_temperature(probs, targets) == pytest.approx(1.0, abs=0.05)


def test_an_under_confident_model_gets_a_temperature_below_one() -> None:
    probs, targets = synthetic(20_000, 10, seed=2, overconfidence=0.5)
    assert fit_temperature(probs, targets) == pytest.approx(0.5, abs=0.05)


def test_a_validation_split_without_an_error_leaves_the_scores_alone() -> None:
    """Every text right: the NLL falls all the way to T → 0, which would make every score ~1."""
    probs, targets = synthetic(200, 5, seed=5, overconfidence=1.0)
    targets = probs.argmax(axis=1)
    assert fit_temperature(probs, targets) == 1.0
    targets[0] = (targets[0] + 1) % 5  # one error: a minimum exists again (within the bounds)
    assert 0.25 <= fit_temperature(probs, targets) < 1.0


def test_calibration_cuts_the_error_of_an_over_confident_model_on_unseen_rows() -> None:
    probs, targets = synthetic(8_000, 10, seed=3, overconfidence=3.0)
    result = calibrate(probs[:4000], targets[:4000], probs[4000:], targets[4000:])
    assert result.val_ece_before > 0.2 and result.test_ece_before > 0.2
    assert result.val_ece_after < result.val_ece_before / 5
    assert result.test_ece_after < result.test_ece_before / 5
    assert result.test_nll_after < result.test_nll_before
    assert (result.validation_rows, result.test_rows) == (4000, 4000)
    assert set(result.as_dict()) >= {"temperature", "val_ece_before", "test_ece_after"}


def test_ece_by_hand() -> None:
    # 10 texts all scored 0.9 of which 6 are right: one bin, |0.6 - 0.9| = 0.3
    probs = np.tile([0.9, 0.1], (10, 1))
    targets = np.array([0] * 6 + [1] * 4)
    assert expected_calibration_error(probs, targets) == pytest.approx(0.3)
    # two bins: 0.55 (1 of 2 right: gap 0.05) and 1.0 (2 of 2 right: gap 0) → (2·0.05 + 2·0) / 4
    probs = np.array([[0.55, 0.45], [0.55, 0.45], [1.0, 0.0], [0.0, 1.0]])
    assert expected_calibration_error(probs, np.array([0, 1, 0, 1])) == pytest.approx(0.025)
    assert negative_log_likelihood(np.array([[0.5, 0.5]]), np.array([1])) == pytest.approx(np.log(2))


def test_the_fit_refuses_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="same texts"):
        fit_temperature(np.full((3, 2), 0.5), np.array([0, 1]))
    with pytest.raises(ValueError, match="same texts"):
        fit_temperature(np.zeros((0, 2)), np.array([], dtype=int))


def test_applying_a_temperature_is_softmax_of_scaled_logits_and_keeps_every_label() -> None:
    logits = np.random.default_rng(4).normal(0, 3, size=(50, 7))
    probs = softmax(logits).astype(np.float32)
    for temperature in (0.3, 1.7, 4.0):
        scaled = apply_temperature(probs, temperature)
        assert scaled.dtype == np.float32 and scaled.shape == probs.shape
        np.testing.assert_allclose(scaled, softmax(logits / temperature), atol=1e-5)
        np.testing.assert_allclose(scaled.sum(axis=1), 1.0, atol=1e-5)
        assert (scaled.argmax(axis=1) == probs.argmax(axis=1)).all()
    assert apply_temperature(probs, 1.0) is probs  # uncalibrated models pay nothing
    assert apply_temperature(np.zeros((0, 7), np.float32), 2.0).shape == (0, 7)
    # a probability of exactly 0 stays finite (clipped before the log)
    assert np.isfinite(apply_temperature(np.array([[1.0, 0.0]], np.float32), 2.0)).all()


def test_the_carve_is_the_one_split_validation_and_reproducible() -> None:
    texts = [f"text {i}" for i in range(200)]
    labels = [f"l{i % 5}" for i in range(200)]
    fit, validation = carve(texts, labels, 0.1, seed=7)
    _, val_idx = split_validation(200, 0.1, 7)
    assert validation.texts == [texts[i] for i in val_idx] and len(validation) == 20
    assert not set(fit.texts) & set(validation.texts) and len(fit) + len(validation) == 200
    assert carve(texts, labels, 0.1, seed=7) == (fit, validation)
    assert carve(texts, labels, 0.1, seed=8)[1] != validation


def test_holding_out_a_labels_only_example_is_refused_by_name() -> None:
    params = Params(logreg=LogregParams(val_fraction=0.4))
    texts = ["a", "b", "c", "d", "e"]
    _, val_idx = split_validation(5, 0.4, params.logreg.seed)
    labels = ["x"] * 5
    labels[int(val_idx[0])] = "rare"  # its only example falls in the validation rows
    with pytest.raises(SplitError, match=r"logreg.val_fraction=0.4 leaves no training example of: rare"):
        training_part(params, "logreg", texts, labels)


def test_every_family_must_hold_out_a_validation_split() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        LogregParams(val_fraction=0)


def _folder(tmp_path: Path, input_kind: str = "text", **meta: object) -> Path:
    metadata = ModelMetadata(family="logreg", version="0" * 16, input_kind=input_kind, data_sha256="0" * 64)
    write_model_folder(tmp_path, b"onnx", ["a", "b"], metadata)
    if meta:
        raw = json.loads((tmp_path / METADATA_FILE).read_text()) | meta
        (tmp_path / METADATA_FILE).write_text(json.dumps(raw))
    return tmp_path


def test_an_older_folder_without_a_temperature_reads_as_uncalibrated(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    raw = json.loads((folder / METADATA_FILE).read_text())
    del raw["temperature"]
    (folder / METADATA_FILE).write_text(json.dumps(raw))
    assert read_model_folder(folder)[1].temperature == 1.0
    assert "temperature" in asdict(read_model_folder(folder)[1])


@pytest.mark.parametrize("bad", [0, -1.5, "2", None, True, float("nan")])
def test_a_temperature_that_is_not_a_positive_number_is_refused(tmp_path: Path, bad: object) -> None:
    # json writes NaN as a bare token Python reads back; a hand-edited folder can hold any of these
    with pytest.raises(ContractError, match="temperature must be a positive number"):
        read_model_folder(_folder(tmp_path, temperature=bad))


def test_the_pipeline_requires_the_drift_reference_and_a_text_models_vocabulary(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    read_model_folder(folder)  # optional for readers: older folders still load
    with pytest.raises(ContractError, match=r"missing reference\.bin, vocabulary\.json"):
        check_exported_folder(folder)
    (folder / REFERENCE_FILE).write_bytes(b"profile")
    with pytest.raises(ContractError, match=r"missing vocabulary\.json$"):
        check_exported_folder(folder)
    (folder / VOCABULARY_FILE).write_text("[]")
    assert check_exported_folder(folder)[0] == ["a", "b"]
