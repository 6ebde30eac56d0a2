"""How well the drift check works, measured: false alarms, detection per shift, and the label-free
accuracy estimate against true accuracy.

Every text is scored once per shift by the exported model (the same ONNX Runtime code and calibration
the server's lanes run), turned into the monitoring features, and windows of W texts are profiled with
whylogs and compared with the model folder's own reference profile (its validation split), exactly as
`textclf drift` does. Banking77's test split is class-balanced while its train split (hence the
validation split and the reference) is not, so same-distribution windows draw test texts with the train
split's class shares; windows of the balanced test split are reported on their own row: that is a
(mild) label shift.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bench.shifts import other_domain_texts, truncate, typos
from textclf.core.features import InputStats, text_features

WINDOW_GRID = (10, 20, 30, 50, 100, 200, 500, 1000)
TARGET_FALSE_ALARMS = 1 / 20
TARGET_DETECTION = 19 / 20
NO_SHIFT = ("same", "unseen_same")  # rows whose flags are false alarms


class Scorer(Protocol):
    labels: list[str]

    @property
    def input_stats(self) -> InputStats: ...

    def predict(self, texts: list[str]) -> tuple[np.ndarray, Any]: ...


@dataclass
class Pool:
    """Every text of one shift, scored once: feature columns, true labels (None: unknown) and whether
    the model got each one right."""

    columns: dict[str, np.ndarray]
    labels: np.ndarray | None
    correct: np.ndarray | None

    def __len__(self) -> int:
        return len(self.columns["chars"])

    def take(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        return {name: values[rows] for name, values in self.columns.items()}


def score(model: Scorer, texts: Sequence[str], labels: Sequence[str] | None, chunk: int = 256) -> Pool:
    """Features (and correctness) of every text, through the model in chunks."""
    parts: list[dict[str, np.ndarray]] = []
    for start in range(0, len(texts), chunk):
        batch = list(texts[start : start + chunk])
        probs, encodings = model.predict(batch)
        parts.append(text_features(batch, probs, model.labels, model.input_stats, encodings))
    columns = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}
    if labels is None:
        return Pool(columns, None, None)
    truth = np.asarray(labels, dtype=object)
    return Pool(columns, truth, columns["predicted"] == truth)


# Row indices of one window of `size` texts: sampler(rng, size)
Sampler = Callable[[np.random.Generator, int], np.ndarray]


def uniform(n: int) -> Sampler:
    return lambda rng, size: rng.choice(n, size=size, replace=size > n)


def weighted(labels: np.ndarray, shares: dict[str, float]) -> Sampler:
    """Rows drawn so that classes appear with `shares` (e.g. the train split's class mix)."""
    per_class = Counter(labels.tolist())
    p = np.array([shares.get(label, 0.0) / per_class[label] for label in labels.tolist()])
    p /= p.sum()
    return lambda rng, size: rng.choice(len(labels), size=size, replace=size > np.count_nonzero(p), p=p)


def few_classes(labels: np.ndarray, k: int) -> Sampler:
    """Traffic from `k` classes picked at random per window (drawn with replacement when they hold
    fewer texts than the window)."""
    classes = sorted(set(labels.tolist()))

    def draw(rng: np.random.Generator, size: int) -> np.ndarray:
        picked = set(rng.choice(classes, size=k, replace=False).tolist())
        rows = np.flatnonzero([label in picked for label in labels.tolist()])
        return rng.choice(rows, size=size, replace=size > len(rows))

    return draw


@dataclass
class Checker:
    """Profiles a window and runs the drift check against the reference (monitoring.drift)."""

    reference: Any
    alpha: float
    min_texts: int

    def __call__(self, columns: dict[str, np.ndarray]) -> Any:
        from monitoring.drift import check_drift
        from monitoring.profiles import profile_columns

        return check_drift(
            profile_columns(columns), self.reference, alpha=self.alpha, min_texts=self.min_texts
        )


def rates(
    pool: Pool, sampler: Sampler, check: Checker, sizes: Sequence[int], windows: int, seed: int
) -> dict[int, float]:
    """Share of `windows` windows flagged as drifted, for each window size."""
    out = {}
    for size in sizes:
        rng = np.random.default_rng(seed + size)
        flagged = sum(bool(check(pool.take(sampler(rng, size))).drifted) for _ in range(windows))
        out[size] = flagged / windows
    return out


def accuracy_errors(
    pool: Pool, sampler: Sampler, check: Checker, size: int, windows: int, seed: int
) -> dict[str, float]:
    """The label-free accuracy estimate (mean calibrated confidence) against true accuracy."""
    rng = np.random.default_rng(seed)
    errors, estimates, truths = [], [], []
    for _ in range(windows):
        rows = sampler(rng, size)
        report = check(pool.take(rows))
        truth = float(pool.correct[rows].mean())  # type: ignore[index]
        estimates.append(report.estimated_accuracy)
        truths.append(truth)
        errors.append(abs(report.estimated_accuracy - truth))
    return {
        "mae": float(np.mean(errors)),
        "bias": float(np.mean(np.subtract(estimates, truths))),
        "true_accuracy": float(np.mean(truths)),
        "estimated_accuracy": float(np.mean(estimates)),
    }


def noisy(texts: Sequence[str], rate: float, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [typos(t, rate, rng) for t in texts]


def smallest_caught(rates_by_size: dict[int, float]) -> int | None:
    """The smallest window size whose detection rate meets the target (None: none does)."""
    caught = [size for size, rate in sorted(rates_by_size.items()) if rate >= TARGET_DETECTION]
    return caught[0] if caught else None


def shares(labels: Sequence[str]) -> dict[str, float]:
    counts = Counter(labels)
    total = sum(counts.values())
    return {label: n / total for label, n in counts.items()}


class HeldOutModel:
    """A TF-IDF + logistic regression trained without some classes, for the unseen-intents shift (no
    exported model can be asked about classes it was trained on as if they were new), calibrated on its
    validation split as the export calibrates every variant."""

    def __init__(self, texts: Sequence[str], labels: Sequence[str], seed: int):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        from textclf.core.features import WORD_PATTERN, WordListStats

        self.pipeline = make_pipeline(
            TfidfVectorizer(token_pattern=WORD_PATTERN.pattern, dtype=np.float32),
            LogisticRegression(C=10.0, max_iter=2000, random_state=seed),
        )
        self.pipeline.fit(list(texts), list(labels))
        self.labels = [str(c) for c in self.pipeline.classes_]
        self._stats = WordListStats(self.pipeline[0].vocabulary_)
        self.temperature = 1.0

    def calibrate(self, texts: Sequence[str], labels: Sequence[str]) -> HeldOutModel:
        from converters.calibration import fit_temperature

        index = {label: i for i, label in enumerate(self.labels)}
        self.temperature = fit_temperature(
            self.pipeline.predict_proba(list(texts)), np.array([index[label] for label in labels])
        )
        return self

    @property
    def input_stats(self) -> InputStats:
        return self._stats

    def predict(self, texts: list[str]) -> tuple[np.ndarray, None]:
        from textclf.core.runtime import apply_temperature

        return apply_temperature(self.pipeline.predict_proba(texts), self.temperature), None


@dataclass
class EvalData:
    train_texts: list[str]
    train_labels: list[str]
    test_texts: list[str]
    test_labels: list[str]


@dataclass(frozen=True)
class Plan:
    """How every shift is measured: window sizes tried, windows per size, the headline window, the
    accuracy window, the seed."""

    sizes: Sequence[int]
    windows: int
    window: int
    accuracy_window: int
    seed: int

    def row(self, what: str, pool: Pool, sampler: Sampler, check: Checker) -> dict[str, Any]:
        """One line of the report: flag rates by window size, and the accuracy estimate where labels exist."""
        by_size = rates(pool, sampler, check, self.sizes, self.windows, self.seed)
        row: dict[str, Any] = {
            "what": what,
            "rate_by_window": by_size,
            "rate": by_size[self.window],
            "smallest_caught": smallest_caught(by_size),
        }
        if pool.correct is not None:
            row["accuracy_estimate"] = accuracy_errors(
                pool, sampler, check, self.accuracy_window, self.windows, self.seed
            )
        return row


def evaluate(
    model: Scorer,
    reference: Any,
    data: EvalData,
    *,
    windows: int = 20,
    window: int = 500,
    accuracy_window: int = 1000,
    sizes: Sequence[int] = WINDOW_GRID,
    alpha: float = 0.01,
    held_out_classes: int = 15,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """The whole measurement as one JSON-able dict (see the module docstring)."""
    plan = Plan(sorted(set(sizes) | {window}), windows, window, accuracy_window, seed)
    check = Checker(reference, alpha, min_texts=min(plan.sizes))
    test_labels = np.asarray(data.test_labels, dtype=object)
    train_mix = shares(data.train_labels)

    log("scoring the test split and its shifted copies…")
    clean = score(model, data.test_texts, data.test_labels)
    pools = {
        "typos_2pct": score(model, noisy(data.test_texts, 0.02, seed), data.test_labels),
        "typos_10pct": score(model, noisy(data.test_texts, 0.10, seed), data.test_labels),
        "truncated_half": score(model, [truncate(t) for t in data.test_texts], data.test_labels),
        "other_domain": score(model, other_domain_texts(), None),
    }
    same = weighted(test_labels, train_mix)
    cases: list[tuple[str, str, Pool, Sampler]] = [
        ("same", "same distribution (test texts, train class mix)", clean, same),
        ("balanced_test", "balanced test split (mild label shift)", clean, uniform(len(clean))),
        ("label_shift", "label shift: 5 classes per window", clean, few_classes(test_labels, 5)),
        ("typos_2pct", "typos, 2% of letters (mild)", pools["typos_2pct"], same),
        ("typos_10pct", "typos, 10% of letters", pools["typos_10pct"], same),
        ("truncated_half", "truncated to half the words", pools["truncated_half"], same),
        (
            "other_domain",
            "another domain (Python docs English)",
            pools["other_domain"],
            uniform(len(pools["other_domain"])),
        ),
    ]
    rows: dict[str, Any] = {}
    for key, what, pool, sampler in cases:
        log(f"windows: {what}")
        rows[key] = plan.row(what, pool, sampler, check)

    log(f"unseen intents: a model trained without {held_out_classes} classes…")
    rows.update(_unseen_intents(data, held_out_classes, check, plan))
    return {
        "window": window,
        "windows": windows,
        "alpha": alpha,
        "accuracy_window": accuracy_window,
        "false_alarm_rate": rows["same"]["rate"],
        "targets": {"false_alarms_at_most": TARGET_FALSE_ALARMS, "detection_at_least": TARGET_DETECTION},
        "shifts": rows,
    }


def _unseen_intents(data: EvalData, k: int, check: Checker, plan: Plan) -> dict[str, Any]:
    """Rows for a TF-IDF model trained without `k` classes: same-distribution windows (its false alarms)
    and windows of the classes it never saw; its reference is its own validation split."""
    from monitoring.profiles import profile_columns

    seed = plan.seed
    rng = random.Random(seed)
    classes = sorted(set(data.train_labels))
    unseen = set(rng.sample(classes, k))
    seen_rows = [i for i, label in enumerate(data.train_labels) if label not in unseen]
    rng.shuffle(seen_rows)
    cut = len(seen_rows) // 10  # its own validation split: the reference, never trained on
    val_rows, fit_rows = seen_rows[:cut], seen_rows[cut:]
    model = HeldOutModel(
        [data.train_texts[i] for i in fit_rows], [data.train_labels[i] for i in fit_rows], seed
    )
    val_texts, val_labels = [data.train_texts[i] for i in val_rows], [data.train_labels[i] for i in val_rows]
    reference = score(model.calibrate(val_texts, val_labels), val_texts, val_labels)
    held_check = Checker(profile_columns(reference.columns), check.alpha, check.min_texts)
    test_labels = np.asarray(data.test_labels, dtype=object)
    pool = score(model, data.test_texts, data.test_labels)  # unseen texts can never be right
    seen_mix = shares([data.train_labels[i] for i in fit_rows])
    unseen_mix = {label: 1.0 for label in unseen}
    out = {}
    for key, what, mix in (
        ("unseen_same", f"same distribution, the model trained without {k} classes", seen_mix),
        ("unseen_intents", f"unseen intents: the {k} classes it never saw", unseen_mix),
    ):
        out[key] = plan.row(what, pool, weighted(test_labels, mix), held_check)
    return out


def markdown(data: dict[str, Any]) -> str:
    """The README table: one row per shift."""
    w = data["window"]
    lines = [
        f"| traffic | flagged, {data['windows']} windows of {w} | smallest W caught (≥ 19/20) "
        f"| accuracy: true → estimated (MAE, windows of {data['accuracy_window']}) |",
        "|---|---:|---:|---|",
    ]
    for key, row in data["shifts"].items():
        est = row.get("accuracy_estimate")
        acc = (
            f"{est['true_accuracy']:.3f} → {est['estimated_accuracy']:.3f} ({est['mae']:.3f})"
            if est
            else "n/a (no labels)"
        )
        caught = "(false alarms)" if key in NO_SHIFT else row["smallest_caught"] or "not caught"
        lines.append(
            f"| {row['what']} | {round(row['rate'] * data['windows'])}/{data['windows']} | {caught} | {acc} |"
        )
    return "\n".join(lines)
