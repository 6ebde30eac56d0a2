"""The champion/challenger rule (textclf.loop.gate.decide) on hand-made scores: margin on the test split,
tolerance on every slice, the per-class recall floor, the quality gate, and small slices left out."""

from __future__ import annotations

from textclf.loop.gate import Contender, Slice, decide
from training.params import Params

PARAMS = Params.model_validate(
    {
        "promotion": {"margin": 0.01, "tolerance": 0.02, "max_recall_drop": 0.1, "min_slice_rows": 20},
        "gate": {"min_accuracy": 0.5, "min_macro_f1": 0.5},
    }
)


def contender(
    role: str, version: str, test: float, feedback: float, rows: int = 50, **recall: float
) -> Contender:
    recall = recall or {"a": test, "b": test}
    return Contender(
        role,
        version,
        "logreg",
        f"textclf-logreg:{version}",
        {"test": Slice("test", 100, test, recall), "feedback": Slice("feedback", rows, feedback, {})},
    )


def test_a_better_challenger_is_promoted() -> None:
    decision = decide(
        contender("champion", "1", 0.90, 0.70), contender("challenger", "2", 0.92, 0.85), PARAMS
    )
    assert decision.promote and "0.9200 vs 0.9000" in decision.reasons[0]


def test_below_the_margin_on_the_test_split_is_kept() -> None:
    decision = decide(
        contender("champion", "1", 0.90, 0.70), contender("challenger", "2", 0.905, 0.95), PARAMS
    )
    assert not decision.promote and "+ margin 0.01" in decision.reasons[0]


def test_worse_on_the_feedback_slice_beyond_the_tolerance_is_kept() -> None:
    decision = decide(
        contender("champion", "1", 0.90, 0.80), contender("challenger", "2", 0.95, 0.77), PARAMS
    )
    assert not decision.promote and decision.reasons == [
        "feedback accuracy 0.7700 is worse than the champion's 0.8000 by more than 0.02"
    ]


def test_a_small_feedback_slice_is_noted_not_compared() -> None:
    decision = decide(
        contender("champion", "1", 0.90, 0.80, rows=5),
        contender("challenger", "2", 0.95, 0.10, rows=5),
        PARAMS,
    )
    assert decision.promote and "5 row(s), fewer than 20" in decision.notes[0]


def test_a_class_whose_recall_collapses_blocks_promotion() -> None:
    decision = decide(
        contender("champion", "1", 0.90, 0.8, a=0.9, b=0.9),
        contender("challenger", "2", 0.95, 0.8, a=1.0, b=0.75),
        PARAMS,
    )
    assert not decision.promote and "b (-0.150)" in decision.reasons[0]


def test_the_quality_gate_and_the_same_version() -> None:
    low = decide(contender("champion", "1", 0.30, 0.3), contender("challenger", "2", 0.45, 0.4), PARAMS)
    assert (
        not low.promote
        and "fails the quality gate on the test split: accuracy 0.4500 < 0.5" in low.reasons[0]
    )
    same = decide(contender("champion", "3", 0.9, 0.9), contender("challenger", "3", 0.9, 0.9), PARAMS)
    assert not same.promote and "is the champion" in same.reasons[0]
