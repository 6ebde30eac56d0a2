"""Abstention: the threshold fitted for a target precision, and the answers the server gives with it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import yaml

from bench.abstain_eval import (
    Split,
    apply_overrides,
    fpr_at_recall,
    held_out_intents,
    measure,
    project_params,
)
from converters.abstention import fit_threshold
from tests.conftest import REPO
from textclf.core.runtime import ABSTAIN_CANDIDATES, Scored, answer


def test_the_lowest_threshold_that_reaches_the_target_wins() -> None:
    # best first: 4 right, then a wrong one, then 5 right, then 10 at 50%
    scores = np.array(
        [0.99, 0.98, 0.97, 0.96, 0.95, 0.9, 0.89, 0.88, 0.87, 0.86, *[0.5 - i / 100 for i in range(10)]]
    )
    correct = np.array([1, 1, 1, 1, 0, 1, 1, 1, 1, 1, *[i % 2 for i in range(10)]], dtype=bool)
    fitted = fit_threshold(scores, correct, 0.9)
    assert fitted.reached
    assert fitted.threshold == pytest.approx(0.86)  # 9 of 10 right at and above 0.86; lower falls under 0.9
    assert fitted.coverage == pytest.approx(10 / 20) and fitted.precision == pytest.approx(0.9)


def test_precision_is_not_monotone_so_every_cut_is_checked() -> None:
    # the top text is wrong (precision 0 at the first cut), yet answering all four reaches 0.75
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([False, True, True, True])
    fitted = fit_threshold(scores, correct, 0.75)
    assert fitted.threshold == 0.0 and fitted.coverage == 1.0 and fitted.reached


def test_tied_scores_are_answered_together() -> None:
    scores = np.array([0.9, 0.7, 0.7, 0.7, 0.2])
    correct = np.array([True, True, False, True, False])
    fitted = fit_threshold(scores, correct, 0.8)
    # cutting inside the tie (after the first 0.7) would claim 1.0 precision the server cannot give
    assert fitted.threshold == pytest.approx(0.9) and fitted.coverage == pytest.approx(0.2)
    assert fit_threshold(scores, correct, 0.75).threshold == pytest.approx(0.7)


def test_an_unreachable_target_answers_only_the_surest_texts_and_says_so() -> None:
    fitted = fit_threshold(np.array([0.9, 0.8]), np.array([False, True]), 0.99)
    assert not fitted.reached and fitted.threshold == pytest.approx(0.9) and fitted.coverage == 0.5


def test_the_stored_threshold_never_drops_an_answer_the_fit_made() -> None:
    scores = np.array([0.912345678, 0.5])
    fitted = fit_threshold(scores, np.array([True, False]), 0.9)
    assert fitted.threshold <= 0.912345678 and fitted.threshold == pytest.approx(0.9123)
    assert fitted.coverage == 0.5


@pytest.mark.parametrize(
    ("scores", "correct", "target"),
    [([], [], 0.9), ([0.5], [True, False], 0.9), ([0.5], [True], 0.0), ([0.5], [True], 1.5)],
)
def test_bad_fits_are_refused(scores: list, correct: list, target: float) -> None:
    with pytest.raises(ValueError):
        fit_threshold(np.array(scores), np.array(correct, dtype=bool), target)


BEST = [Scored("a", 0.4), Scored("b", 0.3), Scored("c", 0.2), Scored("d", 0.1)]


def test_an_answer_below_the_threshold_abstains_and_lists_candidates() -> None:
    got = answer(BEST, None, 0.5)
    assert got["label"] is None and got["abstained"] is True and got["score"] == 0.4
    assert [c["label"] for c in got["top_k"]] == ["a", "b", "c"][:ABSTAIN_CANDIDATES]
    assert [c["label"] for c in answer(BEST, 2, 0.5)["top_k"]] == ["a", "b"]  # the k asked for wins


def test_an_answer_at_or_above_the_threshold_or_without_one_is_unchanged() -> None:
    for threshold in (None, 0.4, 0.0):
        got = answer(BEST, None, threshold)
        assert got == {"label": "a", "score": 0.4, "abstained": False, "top_k": None}
    assert answer(BEST, 2, None)["top_k"] == [{"label": "a", "score": 0.4}, {"label": "b", "score": 0.3}]


def test_held_out_intents_are_a_seeded_draw_leaving_two_known_classes() -> None:
    labels = [f"c{i}" for i in range(10)] * 3
    drawn = held_out_intents(labels, 3, seed=0)
    assert drawn == held_out_intents(labels, 3, seed=0) != held_out_intents(labels, 3, seed=1)
    assert len(set(drawn)) == 3 and set(drawn) <= set(labels)
    for k in (0, 9):
        with pytest.raises(ValueError, match="hold out 1 to 8 of the 10 classes"):
            held_out_intents(labels, k, seed=0)


def test_the_eval_project_points_at_its_own_data_and_registry() -> None:
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    params = apply_overrides(project_params(base, ["logreg"], 0.9), ["bert.epochs=4", "logreg.C=1.5"])
    assert params["data"]["dir"] == "data/raw/held-out" and params["data"]["labels_file"] is None
    assert params["registry"]["model_name"] == "abstain-eval" != base["registry"]["model_name"]
    assert params["abstain"] == {"target_precision": 0.9} and params["families"] == ["logreg"]
    assert params["bert"]["epochs"] == 4 and params["logreg"]["C"] == 1.5
    assert base["bert"]["epochs"] != 4  # the repo's parameters are untouched
    for bad in ("bert.epochs", "nothing.x=1", "bert.nope=1"):
        with pytest.raises(ValueError, match="--set"):
            apply_overrides(params, [bad])


def test_false_positive_rate_at_95_percent_recall() -> None:
    inside = np.linspace(0.5, 1.0, 100)  # the threshold keeping 95 of these is inside[5]
    outside = np.array([0.1, 0.52, 0.53, 0.9])  # inside[5] = 0.5 + 5 / 198 ≈ 0.5253
    assert fpr_at_recall(inside, outside) == pytest.approx(2 / 4)
    assert fpr_at_recall(inside, np.array([0.0, 0.2])) == 0.0


@dataclass
class Fixed:
    """A classifier that gives set probabilities per text (what `measure` reads of an OnnxClassifier)."""

    probs: dict[str, list[float]]
    abstain_below: float | None
    labels: tuple[str, ...] = ("a", "b")

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return np.array([self.probs[t] for t in texts])


def test_measure_counts_abstentions_as_not_right() -> None:
    probs = {"a1": [0.9, 0.1], "a2": [0.6, 0.4], "b1": [0.3, 0.7], "x": [0.55, 0.45], "y": [0.2, 0.8]}
    in_scope = Split(["a1", "a2", "b1"], ["a", "b", "b"])  # a2 is wrong
    got = measure(Fixed(probs, abstain_below=0.65), in_scope, ["x", "y"])
    assert got["accuracy_without_abstention"] == pytest.approx(2 / 3)
    assert got["accuracy_with_abstention"] == pytest.approx(2 / 3)  # a2 abstained: it was wrong anyway
    assert got["in_scope_coverage"] == pytest.approx(2 / 3) and got["answered_precision"] == 1.0
    assert got["out_of_scope_abstained"] == 0.5  # x abstained, y (0.8) answered
    assert got["auroc"] == pytest.approx(4 / 6)  # pairs (in > out): a1>x, a1>y, a2>x, b1>x
    never = measure(Fixed(probs, abstain_below=None), in_scope, ["x", "y"])
    assert never["in_scope_coverage"] == 1.0 and never["out_of_scope_abstained"] == 0.0
