"""The drift evaluation's parts: shifts, samplers and the summary (the end-to-end run is in
tests/integration/test_drift_eval.py)."""

from __future__ import annotations

import random
from collections import Counter

import numpy as np

from bench.drift_eval import few_classes, shares, smallest_caught, weighted
from bench.shifts import other_domain_texts, truncate, typos


def test_typos_hit_letters_at_the_rate_asked_and_are_seeded() -> None:
    text = "my card payment was declined at the supermarket " * 20
    assert typos(text, 0.0, random.Random(1)) == text
    a, b = typos(text, 0.1, random.Random(1)), typos(text, 0.1, random.Random(1))
    assert a == b != text
    changed = sum(x != y for x, y in zip(a, text, strict=False))
    assert 0 < changed < len(text)
    assert typos("!!", 1.0, random.Random(0)) == "!!"  # no letters, nothing to slip on


def test_truncate_keeps_the_first_half_of_the_words_and_never_nothing() -> None:
    assert truncate("one two three four") == "one two"
    assert truncate("single") == "single"


def test_other_domain_texts_ship_with_the_repo() -> None:
    texts = other_domain_texts()
    assert len(texts) >= 1000
    assert not any(t.startswith("#") for t in texts)


def test_weighted_windows_follow_the_class_mix() -> None:
    labels = np.asarray(["a"] * 40 + ["b"] * 40, dtype=object)
    draw = weighted(labels, {"a": 0.8, "b": 0.2})
    rows = draw(np.random.default_rng(0), 60)
    mix = Counter(labels[rows].tolist())
    assert len(set(rows.tolist())) == 60  # without replacement while the rows suffice
    assert mix["a"] > mix["b"]


def test_few_classes_windows_hold_only_k_classes() -> None:
    labels = np.asarray([c for c in "abcdefgh" for _ in range(10)], dtype=object)
    rows = few_classes(labels, 3)(np.random.default_rng(0), 50)
    assert len(set(labels[rows].tolist())) <= 3


def test_smallest_caught_needs_the_detection_target() -> None:
    assert smallest_caught({50: 0.5, 100: 0.95, 200: 1.0}) == 100
    assert smallest_caught({50: 0.1, 100: 0.9}) is None
    assert shares(["a", "a", "b", "c"]) == {"a": 0.5, "b": 0.25, "c": 0.25}
