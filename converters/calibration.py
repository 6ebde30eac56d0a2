"""Calibration: one temperature per exported variant, fitted on its validation split (Guo et al. 2017).

Networks trained to low loss tend to be over-confident: of the texts scored 0.95, fewer than 95% are
right. Dividing the logits by one temperature T fitted to minimise the validation negative
log-likelihood fixes most of that and changes no label. The graphs output probabilities p, and
log(p) are the logits up to a per-row constant, so T is fitted and applied on log(p) (the server
applies it with textclf.core.runtime.apply_temperature). The expected calibration error (ECE: the gap
between confidence and accuracy, averaged over 15 equal-width confidence bins, weighted by the texts in
each) says how far scores are from being probabilities, before and after.

Measured on banking77 (reports/calibration_<family>.json): the LSTM and BERT are over-confident (T ≈ 1.7
and 1.1), TF-IDF + LR under-confident (T ≈ 0.6). When every validation text is classified right, the
NLL only falls as T → 0 and has no minimum: such a split says nothing about the temperature, so T stays 1
rather than sharpening every score (an out-of-vocabulary text's too) towards certainty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from textclf.core.runtime import apply_temperature

ECE_BINS = 15
# searched on log T: logits sharpened at most 4x (a small split with one error can pull T towards 0),
# softened at most 10x
T_BOUNDS = (0.25, 10.0)
T_DECIMALS = 4  # the stored temperature (what the server applies and the metrics are measured with)


def _log_probs(probs: np.ndarray) -> np.ndarray:
    return np.log(np.clip(np.asarray(probs, dtype=np.float64), 1e-12, None))


def _nll_at(log_probs: np.ndarray, targets: np.ndarray, temperature: float) -> float:
    scaled = log_probs / temperature
    scaled -= scaled.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(scaled).sum(axis=1))
    return float(np.mean(log_norm - scaled[np.arange(len(targets)), targets]))


def negative_log_likelihood(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean -log p(true class), nats."""
    return _nll_at(_log_probs(probs), np.asarray(targets), 1.0)


def fit_temperature(probs: np.ndarray, targets: np.ndarray) -> float:
    """The T within T_BOUNDS minimising the NLL of softmax(log(probs) / T) against `targets` (class
    indices); 1 when every text is classified right (no minimum: see the module's docstring)."""
    targets = np.asarray(targets)
    if len(targets) == 0 or len(targets) != len(probs):
        raise ValueError(
            f"need probabilities and targets for the same texts, got {len(probs)}/{len(targets)}"
        )
    log_probs = _log_probs(probs)
    if (log_probs.argmax(axis=1) == targets).all():
        return 1.0
    found = minimize_scalar(
        lambda log_t: _nll_at(log_probs, targets, float(np.exp(log_t))),
        bounds=tuple(np.log(T_BOUNDS)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return round(float(np.exp(found.x)), T_DECIMALS)


def expected_calibration_error(probs: np.ndarray, targets: np.ndarray, bins: int = ECE_BINS) -> float:
    """Σ over equal-width confidence bins of (texts in bin / texts) · |accuracy - mean confidence|."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return 0.0
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(targets)
    # bin b holds confidences in (b/bins, (b+1)/bins]; a confidence of exactly 0 joins the first
    which = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    gap = np.abs(np.bincount(which, correct, bins) - np.bincount(which, confidence, bins))
    return float(gap.sum() / count.sum())


@dataclass(frozen=True)
class Calibration:
    """A variant's temperature and what it did, on the split it was fitted on and on the test split."""

    temperature: float
    validation_rows: int
    val_accuracy: float
    val_ece_before: float
    val_ece_after: float
    val_nll_before: float
    val_nll_after: float
    test_rows: int
    test_ece_before: float
    test_ece_after: float
    test_nll_before: float
    test_nll_after: float

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in self.__dict__.items()}


def calibrate(
    val_probs: np.ndarray, val_targets: np.ndarray, test_probs: np.ndarray, test_targets: np.ndarray
) -> Calibration:
    """Fit T on the validation probabilities (uncalibrated graph output); measure before and after."""
    temperature = fit_temperature(val_probs, val_targets)

    def measured(probs: np.ndarray, targets: np.ndarray) -> tuple[float, float, float, float]:
        after = apply_temperature(np.asarray(probs, dtype=np.float64), temperature)
        return (
            expected_calibration_error(probs, targets),
            expected_calibration_error(after, targets),
            negative_log_likelihood(probs, targets),
            negative_log_likelihood(after, targets),
        )

    val, test = measured(val_probs, val_targets), measured(test_probs, test_targets)
    accuracy = float((np.asarray(val_probs).argmax(axis=1) == np.asarray(val_targets)).mean())
    return Calibration(temperature, len(val_targets), accuracy, *val, len(test_targets), *test)
