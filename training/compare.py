"""Compare every exported variant and choose the champion by the rule in params.yaml."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from bentos.contract import read_model_folder
from textclf.readme import replace_block
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


def collect(families: list[str], evaluations: Path, onnx_root: Path) -> list[Candidate]:
    """Every evaluated variant of the given families."""
    from converters.store import store_tag

    found = []
    for family in families:
        metrics = json.loads((evaluations / f"metrics_{family}.json").read_text(encoding="utf-8"))
        for precision, m in sorted(metrics.items()):
            _, meta = read_model_folder(onnx_root / family / precision)
            found.append(
                Candidate(
                    variant=family if precision == "fp32" else f"{family}-{precision}",
                    family=family,
                    precision=precision,
                    accuracy=m["accuracy"],
                    macro_f1=m["macro_f1"],
                    onnx_mb=m["onnx_mb"],
                    texts_per_s=m["texts_per_s"],
                    p95_ms_single=m["p95_ms_single"],
                    model_tag=str(store_tag(meta)),
                    registered_version=meta.registered_version,
                )
            )
    return found


def choose(candidates: list[Candidate], params: Params) -> Candidate:
    """Among the variants within the gate and the latency budget, the fastest of those whose accuracy is
    within `champion.accuracy_tolerance` of the best."""
    eligible = [
        c
        for c in candidates
        if c.accuracy >= params.gate.min_accuracy
        and c.macro_f1 >= params.gate.min_macro_f1
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


def update_readme(readme: Path, markdown: str) -> bool:
    """Replace the comparison block; False when there is no such block."""
    return replace_block(readme, "comparison", markdown)


def write_reports(candidates: list[Candidate], champion: Candidate, reports_dir: Path) -> None:
    reports_dir.mkdir(parents=True, exist_ok=True)
    summary = {c.variant: {k: v for k, v in asdict(c).items() if isinstance(v, float)} for c in candidates}
    (reports_dir / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    (reports_dir / "comparison.md").write_text(table(candidates, champion) + "\n", encoding="utf-8")
    (reports_dir / "champion.json").write_text(
        json.dumps(asdict(champion), indent=2) + "\n", encoding="utf-8"
    )


def register_champion(params: Params, champion: Candidate) -> None:
    """Point the MLflow `champion` alias at the champion's registered version, tagged with the variant."""
    from training import tracking

    if champion.registered_version is None:
        return
    tracking.promote(
        params.registry.model_name,
        champion.registered_version,
        tags={"variant": champion.variant, "bentoml_model": champion.model_tag},
    )
