"""Has the traffic moved away from the reference? Two-sample tests per feature on whylogs profiles.

Numeric features get whylogs' Kolmogorov-Smirnov test on the KLL sketches (plus its Hellinger distance,
as an effect size a person can read): with whylogs' default sketch size (k = 1024) its statistic is within
0.01 of the exact two-sample KS on the raw values, and it alarms on the same windows. The predicted class
gets our own chi-square test of homogeneity on the class counts of the frequent-items sketch (exact for
up to 1,024 classes), with a Monte Carlo p value where expected counts are small. whylogs' chi-square is
not used: it treats the reference's shares as the truth (a goodness-of-fit test that ignores the
reference's own sampling noise), truncates expected counts to integers and returns p = 0 for any class
whose truncated expected count is 0. On banking77 (1,500 reference texts, windows of 500 from the same
distribution) it flagged 68-70 of 100 windows at alpha 0.01; this test flags 0-1.

Verdicts (whylogs' "drift categories" and their thresholds are not used):
- per feature and overall: Holm's correction over every tested feature at family-wise `alpha`, so a
  check that tests seven features does not alarm seven times as often as one that tests one;
- "model_outputs": confidence, margin, entropy and the predicted class, Bonferroni inside the group.
  This is black-box shift detection (Rabanser et al., 2019, "Failing Loudly"): a shift that matters to
  the classifier shows in its outputs, which are low-dimensional and need no labels;
- a window with fewer than `min_texts` texts gets "too few texts" and nothing is flagged; a window
  where nothing could be tested gets "no verdict".
`estimated_accuracy` is the window's mean top probability: an accuracy estimate only as good as the
model's calibration (the CBPE idea), but it moves when the model grows unsure.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from monitoring.profiles import DatasetProfileView, view_texts
from textclf.core.features import CATEGORICAL_FEATURES, FEATURES, NUMERIC_FEATURES

MODEL_OUTPUTS = ("confidence", "margin", "entropy", "predicted")
MODEL_OUTPUTS_GROUP = "model_outputs"
OVERALL = "overall"
DRIFT, NO_DRIFT, TOO_FEW, NO_VERDICT = "drift", "no drift", "too few texts", "no verdict"
# the chi-square distribution is trusted when every expected count reaches this; below, Monte Carlo
MIN_EXPECTED = 5.0
MONTE_CARLO_DRAWS = 10_000  # smallest p value 1e-4: below alpha / 7 features for any alpha >= 0.001
MONTE_CARLO_SEED = 20190101


class DriftError(ValueError):
    """Inputs a drift check cannot compare honestly (a reference without the features, another model)."""


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's test. `p_value` is the test's own; `p_adjusted` is Holm's over all tested features
    (what `drifted` compares with alpha). Untested features have p values of None and say why in `note`."""

    feature: str
    test: str  # "ks" | "chi-square" | "none"
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    hellinger: float | None = None
    drifted: bool = False
    note: str = ""


@dataclass(frozen=True)
class GroupDrift:
    """A group verdict: Bonferroni over the tested members (p_value = min(1, m * smallest p))."""

    name: str
    features: tuple[str, ...]
    p_value: float | None
    drifted: bool


@dataclass(frozen=True)
class DriftReport:
    verdict: str  # DRIFT | NO_DRIFT | TOO_FEW | NO_VERDICT
    drifted: bool
    texts: int
    reference_texts: int
    alpha: float
    min_texts: int
    p_value: float | None  # overall: the smallest Holm-adjusted p value
    features: list[FeatureDrift] = field(default_factory=list)
    model_outputs: GroupDrift | None = None
    estimated_accuracy: float | None = None  # mean confidence in the window
    reference_confidence: float | None = None  # mean confidence in the reference, for comparison
    problems: list[str] = field(default_factory=list)

    def feature(self, name: str) -> FeatureDrift | None:
        return next((f for f in self.features if f.feature == name), None)

    def gauges(self) -> dict[str, tuple[float | None, bool]]:
        """(p value, drifted) per FEATURES name, "model_outputs" and "overall": what the server exports
        as textclf_drift_p_value / textclf_drift_detected. An untested feature reads (None, False)."""
        out: dict[str, tuple[float | None, bool]] = {}
        for name in FEATURES:
            found = self.feature(name)
            out[name] = (None, False) if found is None else (found.p_adjusted, found.drifted)
        group = self.model_outputs
        out[MODEL_OUTPUTS_GROUP] = (None, False) if group is None else (group.p_value, group.drifted)
        out[OVERALL] = (self.p_value, self.drifted)
        return out

    def to_dict(self) -> dict:
        """JSON-able (non-finite numbers become None)."""
        return _clean(asdict(self))


def check_drift(
    window: DatasetProfileView | None,
    reference: DatasetProfileView,
    *,
    alpha: float,
    min_texts: int,
) -> DriftReport:
    """Compare a window of traffic with the model's reference profile (see the module docstring)."""
    if not 0.0 < alpha < 1.0:
        raise DriftError(f"alpha must lie in (0, 1), got {alpha}")
    if min_texts < 1:
        raise DriftError(f"min_texts must be at least 1, got {min_texts}")
    if reference is None:
        raise DriftError("no reference profile")
    ref_columns = reference.get_columns()
    missing = [name for name in FEATURES if name not in ref_columns]
    if missing:
        raise DriftError(
            f"the reference profile has no {', '.join(missing)} column(s): it was not made from these "
            "features (rebuild the model folder's reference)"
        )
    texts = view_texts(window)
    base = dict(
        texts=texts,
        reference_texts=view_texts(reference),
        alpha=alpha,
        min_texts=min_texts,
        estimated_accuracy=_mean(window, "confidence"),
        reference_confidence=_mean(reference, "confidence"),
    )
    if window is None or texts < min_texts:
        return DriftReport(verdict=TOO_FEW, drifted=False, p_value=None, **base)

    problems: list[str] = []
    tested = _run_tests(window, reference, problems)
    adjusted = _holm({f.feature: f.p_value for f in tested if f.p_value is not None})
    features = [
        FeatureDrift(
            **{
                **asdict(f),
                "p_adjusted": adjusted.get(f.feature),
                "drifted": adjusted.get(f.feature, 1.0) <= alpha,
            }
        )
        for f in tested
    ]
    if not adjusted:
        return DriftReport(
            verdict=NO_VERDICT, drifted=False, p_value=None, features=features, problems=problems, **base
        )
    overall_p = min(adjusted.values())
    group_p = _bonferroni(f.p_value for f in features if f.feature in MODEL_OUTPUTS)
    group = GroupDrift(MODEL_OUTPUTS_GROUP, MODEL_OUTPUTS, group_p, group_p is not None and group_p <= alpha)
    drifted = overall_p <= alpha
    return DriftReport(
        verdict=DRIFT if drifted else NO_DRIFT,
        drifted=drifted,
        p_value=overall_p,
        features=features,
        model_outputs=group,
        problems=problems,
        **base,
    )


def _run_tests(
    window: DatasetProfileView, reference: DatasetProfileView, problems: list[str]
) -> list[FeatureDrift]:
    # whylogs' drift module imports its notebook helpers (IPython) and warns about empty sketches
    from whylogs.viz.drift.column_drift_algorithms import Hellinger, calculate_drift_scores

    win_columns = window.get_columns()
    present = [name for name in FEATURES if name in win_columns]
    for name in FEATURES:
        if name not in win_columns:
            problems.append(f"{name}: the window has no such column (profiles from an older server?)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = calculate_drift_scores(target_view=window, reference_view=reference, with_thresholds=True)
        distances = calculate_drift_scores(
            target_view=window,
            reference_view=reference,
            drift_map={name: Hellinger() for name in NUMERIC_FEATURES if name in present},
        )
    results: list[FeatureDrift] = []
    for name in present:
        if name in CATEGORICAL_FEATURES:
            results.append(_chi_square(name, window, reference, problems))
            continue
        score = scores.get(name)
        hellinger = (distances.get(name) or {}).get("statistic")
        if score is None or score.get("algorithm") != "ks" or score.get("pvalue") is None:
            results.append(FeatureDrift(name, "none", note=_why_untested(name, window, reference, problems)))
            continue
        results.append(
            FeatureDrift(
                name,
                "ks",
                statistic=float(score["statistic"]),
                p_value=float(score["pvalue"]),
                hellinger=None if hellinger is None else float(hellinger),
            )
        )
    return results


def _why_untested(
    name: str, window: DatasetProfileView, reference: DatasetProfileView, problems: list[str]
) -> str:
    in_window, in_reference = _values(window, name), _values(reference, name)
    if in_window == 0 and in_reference == 0:
        return "no values on either side (e.g. a model without a vocabulary has no out-of-vocabulary rate)"
    side = "window" if in_window == 0 else "reference" if in_reference == 0 else "profile"
    problem = f"{name}: no values in the {side} but some on the other side (do they come from one model?)"
    problems.append(problem)
    return problem


def _chi_square(
    name: str, window: DatasetProfileView, reference: DatasetProfileView, problems: list[str]
) -> FeatureDrift:
    """Chi-square test of homogeneity, reference vs window, on the class counts. With 77 classes and a
    few hundred texts most expected counts are below 5, where the chi-square distribution is a poor
    approximation and pooling the rare classes throws the signal away (a window of five classes pools
    into one bin); there the p value comes from Monte Carlo draws of the window's counts under the null
    (multivariate hypergeometric, the margins fixed), which is exact up to the draws' resolution."""
    win, ref = class_counts(window, name), class_counts(reference, name)
    if not win or not ref:
        side = "window" if not win else "reference"
        problems.append(f"{name}: no class counts in the {side}")
        return FeatureDrift(name, "none", note=f"no class counts in the {side}")
    new = sorted(set(win) - set(ref))
    if new and len(new) == len(win):
        raise DriftError(
            f"none of the window's predicted classes ({', '.join(new[:5])}, ...) occurs in the reference: "
            "the reference belongs to another model"
        )
    if new:
        shown = ", ".join(new[:5]) + (" ..." if len(new) > 5 else "")
        problems.append(
            f"{name}: {len(new)} class(es) predicted in the window never occur in the reference "
            f"({shown}; {sum(win[c] for c in new)} texts)"
        )
    classes = sorted(set(win) | set(ref))
    table = np.array([[ref.get(c, 0) for c in classes], [win.get(c, 0) for c in classes]], dtype=np.int64)
    hellinger = _hellinger(table[0] / table[0].sum(), table[1] / table[1].sum())
    if table.shape[1] < 2:
        return FeatureDrift(name, "chi-square", statistic=0.0, p_value=1.0, hellinger=hellinger)
    statistic, expected = _pearson(table)
    if expected.min() >= MIN_EXPECTED:
        p_value = float(stats.chi2.sf(statistic, table.shape[1] - 1))
        note = ""
    else:
        p_value = _monte_carlo_p(table, statistic)
        note = f"Monte Carlo p value ({MONTE_CARLO_DRAWS:,} draws): expected counts below {MIN_EXPECTED:g}"
    return FeatureDrift(
        name, "chi-square", statistic=statistic, p_value=p_value, hellinger=hellinger, note=note
    )


def _pearson(table: np.ndarray) -> tuple[float, np.ndarray]:
    totals = table.sum(axis=0)
    expected = np.outer(table.sum(axis=1), totals) / totals.sum()
    return float(((table - expected) ** 2 / expected).sum()), expected


def _monte_carlo_p(table: np.ndarray, statistic: float) -> float:
    """P(chi-square >= observed) when the window's texts were drawn without replacement from the pooled
    texts; a fixed seed makes one pair of profiles always give one answer."""
    totals = table.sum(axis=0)
    n_ref, n_win = int(table[0].sum()), int(table[1].sum())
    rng = np.random.default_rng(MONTE_CARLO_SEED)
    win = rng.multivariate_hypergeometric(totals, n_win, size=MONTE_CARLO_DRAWS, method="marginals")
    ref = totals - win
    total = n_ref + n_win
    exp_win, exp_ref = totals * (n_win / total), totals * (n_ref / total)
    drawn = ((win - exp_win) ** 2 / exp_win).sum(axis=1) + ((ref - exp_ref) ** 2 / exp_ref).sum(axis=1)
    extreme = int(np.count_nonzero(drawn >= statistic * (1 - 1e-9)))
    return (extreme + 1) / (MONTE_CARLO_DRAWS + 1)


def class_counts(view: DatasetProfileView | None, name: str) -> dict[str, int]:
    """Texts per class from the frequent-items sketch (exact while the classes fit its 1,024 slots; a
    remainder the sketch lost is kept as one "(other)" class so the totals stay right)."""
    if view is None:
        return {}
    column = view.get_column(name)
    if column is None:
        return {}
    metric = column.get_metric("frequent_items")
    counts_metric = column.get_metric("counts")
    if metric is None or counts_metric is None:
        return {}
    items = metric.to_summary_dict()["frequent_strings"]
    counts = {str(item.value): int(item.est) for item in items}
    total = int(counts_metric.n.value) - int(counts_metric.null.value)
    rest = total - sum(counts.values())
    if rest > 0:
        counts["(other)"] = counts.get("(other)", 0) + rest
    return counts


def _hellinger(p: np.ndarray, q: np.ndarray) -> float:
    return float(np.sqrt(0.5 * np.sum((np.sqrt(p) - np.sqrt(q)) ** 2)))


def _holm(p_values: dict[str, float]) -> dict[str, float]:
    """Holm's step-down adjusted p values (valid under any dependence between the tests)."""
    order = sorted(p_values, key=p_values.get)
    k = len(order)
    adjusted: dict[str, float] = {}
    running = 0.0
    for i, name in enumerate(order):
        running = max(running, min(1.0, (k - i) * p_values[name]))
        adjusted[name] = running
    return adjusted


def _bonferroni(p_values: Iterable[float | None]) -> float | None:
    values = [p for p in p_values if p is not None]
    return min(1.0, len(values) * min(values)) if values else None


def _values(view: DatasetProfileView, name: str) -> int:
    column = view.get_column(name)
    metric = None if column is None else column.get_metric("distribution")
    return 0 if metric is None else int(metric.kll.value.get_n())


def _mean(view: DatasetProfileView | None, name: str) -> float | None:
    if view is None or _values(view, name) == 0:
        return None
    value = float(view.get_column(name).get_metric("distribution").mean.value)
    return value if math.isfinite(value) else None


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
