"""`textclf promote` and `textclf rollback`: the champion/challenger gate and the one command to undo it.

Both models are scored as the server runs them (ONNX Runtime, from the BentoML store) on the fixed test
split and on the held-out feedback slice (training.feedback: texts no model trained on). The challenger
replaces the champion only if, by the rule in params.yaml `promotion`, it is better on the test split by
the margin and not worse beyond the tolerance on any slice, and no class's recall falls too far. The
decision, both sets of numbers and the reasons are printed, logged to MLflow (a `promote` run) and audited
by the CLI. Promotion moves aliases only: `champion` → the challenger, `previous-champion` → the old one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from textclf.core.runtime import OnnxClassifier
from training import tracking
from training.compare import gate_failures, majority_share
from training.data import load_texts_labels
from training.evaluate import classification_metrics
from training.feedback import holdout_rows
from training.params import Params
from training.validate import PREPARED_LABEL, PREPARED_TEXT


class GateError(RuntimeError):
    """The gate cannot run: a model or alias is missing; the message says what to do."""


@dataclass(frozen=True)
class Slice:
    name: str
    rows: int
    accuracy: float
    recall: dict[str, float]  # per true label present in the slice
    macro_f1: float = float("nan")
    majority: float = 0.0  # the slice's majority-class share


@dataclass(frozen=True)
class Contender:
    role: str  # champion or challenger
    version: str  # MLflow registered version
    variant: str
    model_tag: str  # BentoML store
    slices: dict[str, Slice]


@dataclass
class Decision:
    promote: bool
    reasons: list[str] = field(default_factory=list)  # why not, or why yes
    notes: list[str] = field(default_factory=list)  # what was not compared, and why
    champion: Contender | None = None
    challenger: Contender | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def score(folder: Path, name: str, texts: list[str], labels: list[str]) -> Slice:
    """Accuracy and per-class recall of the model in `folder` on one slice, as the server runs it."""
    classifier = OnnxClassifier(folder, threads=1)
    if not texts:
        return Slice(name, 0, float("nan"), {})
    probs = np.concatenate([classifier.predict_proba(texts[i : i + 512]) for i in range(0, len(texts), 512)])
    predicted = [classifier.labels[i] for i in probs.argmax(axis=1)]
    metrics = classification_metrics(labels, predicted, classifier.labels)
    present = set(labels)
    recall = {label: float(r["recall"]) for label, r in metrics["per_class"].items() if label in present}  # type: ignore[union-attr]
    return Slice(
        name,
        len(texts),
        float(metrics["accuracy"]),  # type: ignore[arg-type]
        recall,
        float(metrics["macro_f1"]),  # type: ignore[arg-type]
        majority_share(labels),
    )


def _contender(params: Params, alias: str) -> tuple[Any, Path]:
    """The registered version an alias points at and its model folder in the BentoML store."""
    import bentoml
    from bentoml.exceptions import NotFound

    version = tracking.version_by_alias(params.registry.model_name, alias)
    if version is None:
        hint = "run `textclf retrain`" if alias == tracking.CHALLENGER else "run the pipeline"
        raise GateError(f"no {alias} in the MLflow registry model {params.registry.model_name!r}: {hint}")
    tag = version.tags.get("bentoml_model")
    try:
        return version, Path(bentoml.models.get(tag).path)
    except (NotFound, ValueError, TypeError):
        raise GateError(
            f"the {alias} (version {version.version}) names BentoML model {tag!r}, which is not in the store"
        ) from None


def evaluate(params: Params) -> Decision:
    """Score champion and challenger on every slice and apply the rule."""
    data = params.data
    found = [(alias, *_contender(params, alias)) for alias in (tracking.CHAMPION, tracking.CHALLENGER)]
    if not data.prepared_test.is_file():
        raise GateError(f"no validated test split {data.prepared_test}: run `textclf validate` first")
    test = load_texts_labels(data.prepared_test, PREPARED_TEXT, PREPARED_LABEL)
    feedback = holdout_rows(data.prepared_feedback_dir, data.feedback_holdout)
    contenders = [
        Contender(
            alias,
            str(version.version),
            version.tags.get("variant", ""),
            version.tags["bentoml_model"],
            {"test": score(folder, "test", *test), "feedback": score(folder, "feedback", *feedback)},
        )
        for alias, version, folder in found
    ]
    return decide(*contenders, params)


def decide(champion: Contender, challenger: Contender, params: Params) -> Decision:
    """The rule of params.yaml `promotion` (and the quality gate on the test split)."""
    rule = params.promotion
    decision = Decision(promote=False, champion=champion, challenger=challenger)
    if champion.version == challenger.version:
        decision.reasons.append(f"the challenger is the champion (version {champion.version})")
        return decision
    old, new = champion.slices["test"], challenger.slices["test"]
    failed = decision.reasons
    if new.accuracy < old.accuracy + rule.margin - 1e-12:
        failed.append(
            f"test accuracy {new.accuracy:.4f} is not at least the champion's {old.accuracy:.4f} "
            f"+ margin {rule.margin}"
        )
    below = gate_failures(new.accuracy, new.macro_f1, params, new.majority)
    if below:
        failed.append(f"the challenger fails the quality gate on the test split: {'; '.join(below)}")
    for name, new_slice in challenger.slices.items():
        old_slice = champion.slices[name]
        if name != "test" and new_slice.rows < rule.min_slice_rows:
            decision.notes.append(
                f"{name} slice not compared: {new_slice.rows} row(s), fewer than {rule.min_slice_rows}"
            )
            continue
        if new_slice.accuracy < old_slice.accuracy - rule.tolerance - 1e-12:
            failed.append(
                f"{name} accuracy {new_slice.accuracy:.4f} is worse than the champion's "
                f"{old_slice.accuracy:.4f} by more than {rule.tolerance}"
            )
    drops = sorted(
        (old.recall[label] - recall, label)
        for label, recall in new.recall.items()
        if old.recall.get(label, 0.0) - recall > rule.max_recall_drop + 1e-12
    )
    if drops:
        shown = ", ".join(f"{label} (-{drop:.3f})" for drop, label in reversed(drops[-5:]))
        failed.append(
            f"test recall of {len(drops)} class(es) falls by more than {rule.max_recall_drop}: {shown}"
        )
    if not failed:
        decision.promote = True
        decision.reasons.append(
            f"test accuracy {new.accuracy:.4f} vs {old.accuracy:.4f} (margin {rule.margin}), "
            f"no slice worse by more than {rule.tolerance}, no class's recall down by more than "
            f"{rule.max_recall_drop}"
        )
    return decision


def log_decision(params: Params, decision: Decision, action: str) -> str:
    """The decision as an MLflow run (both sets of numbers, the verdict and the reasons); its id."""
    import mlflow

    with tracking.run(params.registry.experiment, run_name=action) as active:
        mlflow.set_tags(
            {
                "stage": action,
                "decision": "promote" if decision.promote else "keep",
                "reasons": "; ".join(decision.reasons),
            }
        )
        for contender in (decision.champion, decision.challenger):
            if contender is None:
                continue
            mlflow.log_params(
                {
                    f"{contender.role}.version": contender.version,
                    f"{contender.role}.variant": contender.variant,
                }
            )
            for name, s in contender.slices.items():
                mlflow.log_metric(f"{contender.role}.{name}.rows", s.rows)
                if s.rows:
                    mlflow.log_metric(f"{contender.role}.{name}.accuracy", s.accuracy)
        mlflow.log_dict(decision.as_dict(), "decision.json")
        return active.info.run_id


def promote(params: Params, decision: Decision) -> None:
    """Move the aliases: the champion keeps an alias (`previous-champion`), the challenger's is cleared."""
    assert decision.champion is not None and decision.challenger is not None
    name = params.registry.model_name
    old, new = decision.champion, decision.challenger
    tracking.set_alias(name, tracking.PREVIOUS_CHAMPION, old.version)
    tracking.set_alias(
        name, tracking.CHAMPION, new.version, {"variant": new.variant, "bentoml_model": new.model_tag}
    )
    tracking.delete_alias(name, tracking.CHALLENGER)


def rollback(params: Params) -> tuple[str, str, str]:
    """`champion` back to `previous-champion`, which then names the demoted one (a second rollback
    undoes the first). Returns (demoted version, restored version, its BentoML store tag)."""
    name = params.registry.model_name
    previous = tracking.version_by_alias(name, tracking.PREVIOUS_CHAMPION)
    current = tracking.version_by_alias(name, tracking.CHAMPION)
    if previous is None or current is None:
        raise GateError("nothing to roll back to: no previous-champion alias (nothing was promoted yet)")
    tracking.set_alias(name, tracking.PREVIOUS_CHAMPION, str(current.version))
    tracking.set_alias(name, tracking.CHAMPION, str(previous.version))
    return str(current.version), str(previous.version), previous.tags.get("bentoml_model", "")
