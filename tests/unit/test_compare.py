"""The champion rule: best accuracy within the gate and the latency budget, faster on ties."""

from __future__ import annotations

import pytest

from training.compare import (
    Candidate,
    NoChampionError,
    choose,
    gate_failures,
    majority_share,
    table,
    table_from_reports,
)
from training.params import ChampionParams, GateParams, Params


def candidate(variant: str, accuracy: float, p95_ms: float, texts_per_s: float = 1000.0) -> Candidate:
    return Candidate(
        variant=variant,
        family=variant.split("-")[0],
        precision="int8" if variant.endswith("int8") else "fp32",
        accuracy=accuracy,
        macro_f1=accuracy,
        onnx_mb=1.0,
        texts_per_s=texts_per_s,
        p95_ms_single=p95_ms,
        model_tag=f"textclf-{variant}:v1",
        registered_version="1",
    )


PARAMS = Params(
    gate=GateParams(min_accuracy=0.85, min_macro_f1=0.85),
    champion=ChampionParams(max_p95_ms=10, accuracy_tolerance=0.005),
)


def test_most_accurate_within_budget_wins() -> None:
    pool = [candidate("logreg", 0.90, 0.1), candidate("bert", 0.94, 30.0), candidate("bert-int8", 0.93, 8.0)]
    assert choose(pool, PARAMS).variant == "bert-int8"  # bert itself is over the latency budget


def test_near_ties_go_to_the_fastest() -> None:
    pool = [
        candidate("bert", 0.923, 9.0, texts_per_s=200),
        candidate("bert-int8", 0.920, 4.0, texts_per_s=470),
        candidate("lstm", 0.893, 1.0, texts_per_s=1800),
    ]
    assert choose(pool, PARAMS).variant == "bert-int8"  # 0.3 points from the best, 2.3x faster
    strict = PARAMS.model_copy(update={"champion": ChampionParams(max_p95_ms=10, accuracy_tolerance=0)})
    assert choose(pool, strict).variant == "bert"


def test_gate_excludes_and_exact_ties_go_to_the_faster() -> None:
    pool = [
        candidate("lstm", 0.80, 1.0, texts_per_s=90_000),
        candidate("logreg", 0.90, 0.1, texts_per_s=50_000),
        candidate("lstm-int8", 0.90, 1.0, texts_per_s=9_000),
    ]
    assert choose(pool, PARAMS).variant == "logreg"


def test_no_eligible_variant_is_a_clear_error() -> None:
    with pytest.raises(NoChampionError, match=r"bert \(acc 0\.940, p95 30\.0 ms\)"):
        choose([candidate("bert", 0.94, 30.0)], PARAMS)


def test_table_and_its_regeneration_from_reports() -> None:
    pool = [candidate("logreg", 0.90, 0.1), candidate("bert-int8", 0.93, 8.0)]
    markdown = table(pool, pool[1])
    assert markdown.splitlines()[2].startswith("| **bert-int8** (champion) | 0.9300")
    report = {c.variant: {k: getattr(c, k) for k in FLOATS} for c in pool}
    assert table_from_reports(report, "bert-int8") == markdown


FLOATS = ("accuracy", "macro_f1", "onnx_mb", "texts_per_s", "p95_ms_single")


def test_the_gate_can_be_relative_to_the_majority_class_instead_of_absolute() -> None:
    pool = [candidate("logreg", 0.62, 0.1), candidate("lstm", 0.55, 1.0)]
    relative = Params(
        gate=GateParams(min_accuracy=None, min_macro_f1=None, min_gain_over_majority=0.1),
        champion=ChampionParams(max_p95_ms=10),
    )
    assert choose(pool, relative, majority=0.5).variant == "logreg"  # 0.62 ≥ 0.5 + 0.1; 0.55 is not
    with pytest.raises(NoChampionError):
        choose(pool, relative, majority=0.6)
    assert gate_failures(0.55, 0.5, relative, 0.5) == ["accuracy 0.5500 < majority-class share 0.5000 + 0.1"]
    assert majority_share(["a", "a", "b", "c"]) == 0.5
    with pytest.raises(NoChampionError):
        choose(pool, PARAMS)  # the shipped absolute floors (0.85 here) refuse both
