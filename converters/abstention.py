"""Abstention: the score threshold below which the server answers "none of my classes" (label null).

Intent classifiers meet texts that belong to no class, and a calibrated top score is the cheapest signal
that one has arrived. The threshold is fitted per variant at export, on the validation split's calibrated
scores (texts the model never trained on): the lowest score such that the texts answered at or above it
are right at least `target_precision` of the time, i.e. the most answers for that precision. Lower
thresholds answer more and err more; the choice is a product decision, so the target lives in params.yaml
(`abstain.target_precision`, off by default).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

THRESHOLD_DECIMALS = 4  # the stored threshold (part of the model's version)


@dataclass(frozen=True)
class Abstention:
    """A fitted threshold and what it does on the split it was fitted on."""

    target_precision: float
    threshold: float  # answer when the top score >= threshold; 0: never abstains
    texts: int
    coverage: float  # share of the split answered
    precision: float  # accuracy of the answered texts (1.0 when none is answered)
    reached: bool  # False: no threshold reaches the target; the threshold answers only the surest texts

    def as_dict(self) -> dict[str, float | int | bool]:
        return asdict(self)


def fit_threshold(scores: np.ndarray, correct: np.ndarray, target_precision: float) -> Abstention:
    """The lowest threshold whose answered texts (score >= it) reach `target_precision`.

    Cuts fall only between distinct scores (tied texts are answered together, as the server would).
    Precision is not monotone in the threshold, so every cut is checked and the one answering most
    texts wins. When none reaches the target, the threshold answers only the texts tied at the top
    score, and `reached` says so."""
    scores = np.asarray(scores, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    if len(scores) == 0 or len(scores) != len(correct):
        raise ValueError(f"need a score and an outcome per text, got {len(scores)}/{len(correct)}")
    if not 0 < target_precision <= 1:
        raise ValueError(f"target precision must be in (0, 1], not {target_precision}")
    order = np.argsort(-scores, kind="stable")
    ranked, hits = scores[order], correct[order]
    precision = np.cumsum(hits) / np.arange(1, len(ranked) + 1)
    # a cut after position i is real only where the next score is lower (ties are answered together)
    ends = np.flatnonzero(np.append(ranked[1:] < ranked[:-1], True))
    meets = ends[precision[ends] >= target_precision - 1e-12]
    reached = len(meets) > 0
    end = int(meets[-1]) if reached else int(ends[0])
    threshold = 0.0 if end == len(ranked) - 1 and reached else float(ranked[end])
    # stored rounded down, so every text the fit answered is still answered by the server
    threshold = float(np.floor(threshold * 10**THRESHOLD_DECIMALS) / 10**THRESHOLD_DECIMALS)
    answered = scores >= threshold
    return Abstention(
        target_precision=target_precision,
        threshold=threshold,
        texts=len(scores),
        coverage=float(answered.mean()),
        precision=float(correct[answered].mean()) if answered.any() else 1.0,
        reached=reached,
    )
