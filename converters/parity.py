"""Parity: the exported graph must score like the model it came from, or the pipeline stops."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from training.data import batched

CHUNK = 1024  # texts per model call: bounded memory however long the test split is


class ParityError(AssertionError):
    """The converted model disagrees with its source beyond the configured tolerance."""


@dataclass(frozen=True)
class ParityReport:
    rows: int
    label_agreement: float
    max_proba_diff: float
    mean_proba_diff: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def chunked(score: Callable[[list[str]], np.ndarray], texts: list[str]) -> np.ndarray:
    """`score(texts)` computed CHUNK texts at a time, so a whole test split fits in memory."""
    return np.concatenate([score(chunk) for chunk in batched(texts, CHUNK)])


def compare(source: np.ndarray, converted: np.ndarray) -> ParityReport:
    """Label agreement over all rows; probability gaps over the rows whose labels agree."""
    if source.shape != converted.shape:
        raise ParityError(f"shape mismatch: source {source.shape} vs converted {converted.shape}")
    agree = source.argmax(axis=1) == converted.argmax(axis=1)
    gaps = np.abs(source[agree].astype(np.float64) - converted[agree].astype(np.float64))
    return ParityReport(
        rows=int(source.shape[0]),
        label_agreement=float(agree.mean()) if len(agree) else 1.0,
        max_proba_diff=float(gaps.max()) if gaps.size else 0.0,
        mean_proba_diff=float(gaps.mean()) if gaps.size else 0.0,
    )


def check(report: ParityReport, min_label_agreement: float, max_proba_diff: float) -> None:
    """Raise ParityError naming the failed bound."""
    problems = []
    if report.label_agreement < min_label_agreement:
        problems.append(
            f"labels agree on {report.label_agreement:.4%} of {report.rows} texts "
            f"(need ≥ {min_label_agreement:.4%})"
        )
    if report.max_proba_diff > max_proba_diff:
        problems.append(
            f"probabilities differ by up to {report.max_proba_diff:.2e} (allowed {max_proba_diff:.0e})"
        )
    if problems:
        raise ParityError("ONNX parity check failed: " + "; ".join(problems))
