"""Compare every exported variant and choose the champion by the rule in params.yaml.

The MLflow registry alias `champion` is the one source of truth for what is served: `register_champion`
is the only code that moves it, and `reports/champion.json` records what it points at.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from textclf.core.contract import read_model_folder
from textclf.core.variants import Variant
from training.params import Params


class NoChampionError(RuntimeError):
    """No variant satisfies the quality gate and the latency budget."""


@dataclass(frozen=True)
class Candidate:
    variant: str
    family: str
    precision: str
    accuracy: float
    macro_f1: float
    onnx_mb: float
    texts_per_s: float
    p95_ms_single: float
    model_tag: str  # the BentoML model store tag the variant is saved under
    registered_version: str | None

    @classmethod
    def of(
        cls, variant: Variant, metrics: dict[str, float], model_tag: str = "", registered: str | None = None
    ) -> Candidate:
        """A candidate from a variant and its evaluation metrics (reports/eval or comparison.json)."""
        return cls(
            variant=variant.name,
            family=variant.family,
            precision=variant.precision,
            accuracy=metrics["accuracy"],
            macro_f1=metrics["macro_f1"],
            onnx_mb=metrics["onnx_mb"],
            texts_per_s=metrics["texts_per_s"],
            p95_ms_single=metrics["p95_ms_single"],
            model_tag=model_tag,
            registered_version=registered,
        )


def collect(families: list[str], evaluations: Path, onnx_root: Path) -> list[Candidate]:
    """Every evaluated variant of the given families."""
    found = []
    for family in families:
        metrics = json.loads((evaluations / f"metrics_{family}.json").read_text(encoding="utf-8"))
        for precision, m in sorted(metrics.items()):
            _, meta = read_model_folder(onnx_root / family / precision)
            found.append(Candidate.of(meta.variant, m, meta.store_tag, meta.registered_version))
    return found


def majority_share(labels: list[str]) -> float:
    """The accuracy of always answering the most frequent label (the gate's relative baseline)."""
    return max(Counter(labels).values()) / len(labels) if labels else 0.0


def gate_failures(accuracy: float, macro_f1: float, params: Params, majority: float) -> list[str]:
    """Why a model does not pass the quality gate (empty: it passes)."""
    gate, failed = params.gate, []
    if gate.min_accuracy is not None and accuracy < gate.min_accuracy:
        failed.append(f"accuracy {accuracy:.4f} < {gate.min_accuracy}")
    if gate.min_macro_f1 is not None and macro_f1 < gate.min_macro_f1:
        failed.append(f"macro-F1 {macro_f1:.4f} < {gate.min_macro_f1}")
    if accuracy < majority + gate.min_gain_over_majority - 1e-12:
        failed.append(
            f"accuracy {accuracy:.4f} < majority-class share {majority:.4f} + {gate.min_gain_over_majority}"
        )
    return failed


def choose(candidates: list[Candidate], params: Params, majority: float = 0.0) -> Candidate:
    """Among the variants within the gate and the latency budget, the fastest of those whose accuracy is
    within `champion.accuracy_tolerance` of the best. `majority`: the test split's majority-class share."""
    eligible = [
        c
        for c in candidates
        if not gate_failures(c.accuracy, c.macro_f1, params, majority)
        and c.p95_ms_single <= params.champion.max_p95_ms
    ]
    if not eligible:
        shown = ", ".join(
            f"{c.variant} (acc {c.accuracy:.3f}, p95 {c.p95_ms_single:.1f} ms)" for c in candidates
        )
        raise NoChampionError(
            f"no variant passes the gate {params.gate.model_dump()} within p95 ≤ "
            f"{params.champion.max_p95_ms} ms: {shown}"
        )
    best = max(c.accuracy for c in eligible)
    near_best = [c for c in eligible if c.accuracy >= best - params.champion.accuracy_tolerance - 1e-12]
    return max(near_best, key=lambda c: c.texts_per_s)


def table(candidates: list[Candidate], champion: Candidate | None) -> str:
    """The comparison as a Markdown table (the champion in bold)."""
    lines = [
        "| variant | accuracy | macro-F1 | ONNX MB | texts/s (batch 32, 1 thread) | p95 ms (1 text) |",
        "|---|---|---|---|---|---|",
    ]
    for c in sorted(candidates, key=lambda c: -c.accuracy):
        name = f"**{c.variant}** (champion)" if champion and c.variant == champion.variant else c.variant
        lines.append(
            f"| {name} | {c.accuracy:.4f} | {c.macro_f1:.4f} | {c.onnx_mb:.2f} | "
            f"{c.texts_per_s:,.0f} | {c.p95_ms_single:.2f} |"
        )
    return "\n".join(lines)


def write_reports(
    candidates: list[Candidate], champion: Candidate, registered_model: str, reports_dir: Path
) -> None:
    """The comparison (JSON and Markdown) and `champion.json`, the record of what the alias points at."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    summary = {c.variant: {k: v for k, v in asdict(c).items() if isinstance(v, float)} for c in candidates}
    (reports_dir / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (reports_dir / "comparison.md").write_text(table(candidates, champion) + "\n", encoding="utf-8")
    record = asdict(champion) | {"registered_model": registered_model, "alias": "champion"}
    (reports_dir / "champion.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def register_champion(params: Params, champion: Candidate) -> None:
    """Point the MLflow `champion` alias at the champion's registered version, tagged with the variant.
    The only writer of the alias: training registers versions, the champion rule promotes one."""
    from training import tracking

    if champion.registered_version is None:
        raise NoChampionError(
            f"{champion.variant} has no registered MLflow version: run `textclf train --model "
            f"{champion.family}` again"
        )
    tracking.promote(
        params.registry.model_name,
        champion.registered_version,
        tags={"variant": champion.variant, "bentoml_model": champion.model_tag},
    )


def champion_variant(params: Params) -> Variant | None:
    """The served champion: the variant the MLflow alias points at (None before any `select`)."""
    from training import tracking

    name = tracking.champion_variant(params.registry.model_name)
    return Variant.parse(name) if name else None


def table_from_reports(comparison: dict[str, dict[str, float]], champion: str) -> str:
    """The comparison table again from `reports/comparison.json` and the champion's variant name."""
    rows = [Candidate.of(Variant.parse(name), m) for name, m in comparison.items()]
    chosen = next((c for c in rows if c.variant == champion), None)
    return table(rows, chosen)
