"""Out of scope, measured: how well each family's calibrated top score tells texts of no known class apart.

Some intents are held out of training altogether and stand in for the texts an intent classifier meets
that belong to none of its classes. Every family then goes through the real pipeline (`textclf validate`,
`train`, `export`: calibration, and the abstention threshold fitted on the validation split for the target
precision) in a private project folder with its own MLflow store and BentoML home, and every exported
variant scores the whole test split: the in-scope texts (classes it knows) and the held-out ones.

Reported per variant: AUROC of the top score separating in-scope from held-out texts; the false-positive
rate at 95% recall of in-scope texts (the share of held-out texts still answered when the threshold keeps
95% of in-scope ones); and, at the threshold fitted for the target precision, in-scope accuracy with
abstention (an abstention counts as not right), in-scope coverage, and the share of held-out texts it
abstains on, beside the in-scope accuracy without abstention.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import random
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

TEXT, LABEL = "text", "label"
VARIANT_DIRS = ("fp32", "int8")


@dataclass(frozen=True)
class Split:
    texts: list[str]
    labels: list[str]


def held_out_intents(labels: Sequence[str], k: int, seed: int) -> list[str]:
    """`k` classes drawn at random (seeded) to be unknown to every model."""
    classes = sorted(set(labels))
    if not 1 <= k <= len(classes) - 2:
        raise ValueError(f"hold out 1 to {len(classes) - 2} of the {len(classes)} classes, not {k}")
    return sorted(random.Random(seed).sample(classes, k))


def _write_csv(path: Path, split: Split, keep: Callable[[str], bool]) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [(t, label) for t, label in zip(split.texts, split.labels, strict=True) if keep(label)]
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([TEXT, LABEL])
        writer.writerows(rows)
    return len(rows)


def project_params(base: dict[str, Any], families: Sequence[str], target_precision: float) -> dict[str, Any]:
    """The repo's parameters, pointed at the held-out dataset in the private project folder."""
    params = yaml.safe_load(yaml.safe_dump(base))  # a deep copy
    params["families"] = list(families)
    params["data"].update(
        name="held-out",
        dir="data/raw/held-out",
        train_file="train.csv",
        test_file="test.csv",
        validation_file=None,
        text_column=TEXT,
        label_column=LABEL,
        labels_file=None,
        prepared_dir="artifacts/data",
        feedback_dir="data/feedback",
    )
    params["registry"] = {"model_name": "abstain-eval", "experiment": "abstain-eval"}
    params["abstain"] = {"target_precision": target_precision}
    return params


def apply_overrides(params: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """`section.key=value` settings (value read as YAML), e.g. `bert.epochs=4`."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        section, dot, name = key.partition(".")
        if not sep or not dot or section not in params or not isinstance(params[section], dict):
            raise ValueError(f"--set takes section.key=value with a known section, got {item!r}")
        if name not in params[section]:
            raise ValueError(f"--set {item!r}: {section} has no {name!r}")
        params[section][name] = yaml.safe_load(raw)
    return params


def _run(argv: list[str], cwd: Path, env: dict[str, str], log_file: Path) -> None:
    with log_file.open("a", encoding="utf-8") as log:
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode:
        tail = "\n".join(log_file.read_text(encoding="utf-8").splitlines()[-15:])
        raise RuntimeError(f"`{' '.join(argv[1:])}` failed (exit {done.returncode}); {log_file}:\n{tail}")


def build_models(
    workdir: Path,
    params: dict[str, Any],
    train: Split,
    test: Split,
    unknown: set[str],
    log: Callable[[str], None],
) -> dict[str, Path]:
    """Train and export every family on the known classes, in `workdir` (its own MLflow and BentoML
    stores); the exported variants' folders by variant name."""
    workdir.mkdir(parents=True, exist_ok=True)
    raw = workdir / "data" / "raw" / "held-out"
    kept = _write_csv(raw / "train.csv", train, lambda label: label not in unknown)
    _write_csv(raw / "test.csv", test, lambda label: label not in unknown)
    (workdir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False), encoding="utf-8")
    env = {
        **os.environ,
        "BENTOML_HOME": str(workdir / "bentoml"),
        "MLFLOW_TRACKING_URI": "sqlite:///mlflow.db",
    }
    textclf = [sys.executable, "-m", "textclf.cli"]
    log_file = workdir / "pipeline.log"
    log(f"{kept:,} training rows of {len(set(train.labels)) - len(unknown)} classes; log: {log_file}")
    _run([*textclf, "validate"], workdir, env, log_file)
    folders: dict[str, Path] = {}
    for family in params["families"]:
        for step in ("train", "export"):
            log(f"{family}: {step}…")
            _run([*textclf, step, "--model", family], workdir, env, log_file)
        for precision in VARIANT_DIRS:
            folder = workdir / "artifacts" / "onnx" / family / precision
            if folder.is_dir():
                folders[family if precision == "fp32" else f"{family}-{precision}"] = folder
    return folders


def fpr_at_recall(in_scores: np.ndarray, out_scores: np.ndarray, recall: float = 0.95) -> float:
    """Share of out-of-scope texts answered by the highest threshold that answers `recall` of in-scope."""
    cut = np.sort(in_scores)[int(np.floor((1 - recall) * len(in_scores)))]
    return float(np.mean(out_scores >= cut))


def measure(
    classifier: Any, in_scope: Split, out_of_scope: list[str], chunk: int = 256
) -> dict[str, float | int | None]:
    """The out-of-scope figures of one served model (an OnnxClassifier: calibrated scores, its threshold)."""
    from sklearn.metrics import roc_auc_score

    def scored(texts: list[str]) -> np.ndarray:
        return np.concatenate(
            [classifier.predict_proba(texts[i : i + chunk]) for i in range(0, len(texts), chunk)]
        )

    probs_in, probs_out = scored(in_scope.texts), scored(out_of_scope)
    s_in, s_out = probs_in.max(axis=1), probs_out.max(axis=1)
    right = np.asarray(classifier.labels, dtype=object)[probs_in.argmax(axis=1)] == np.asarray(
        in_scope.labels
    )
    truth = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    threshold = classifier.abstain_below
    answered_in = s_in >= (threshold or 0.0)
    return {
        "in_scope_texts": len(s_in),
        "out_of_scope_texts": len(s_out),
        "auroc": float(roc_auc_score(truth, np.r_[s_in, s_out])),
        "fpr_at_95_recall": fpr_at_recall(s_in, s_out),
        "threshold": threshold,
        "accuracy_without_abstention": float(right.mean()),
        "accuracy_with_abstention": float((right & answered_in).mean()),
        "in_scope_coverage": float(answered_in.mean()),
        "answered_precision": float(right[answered_in].mean()) if answered_in.any() else None,
        "out_of_scope_abstained": float(np.mean(s_out < (threshold or 0.0))),
    }


def evaluate(
    base_params: dict[str, Any],
    train: Split,
    test: Split,
    *,
    workdir: Path,
    families: Sequence[str],
    held_out: int,
    target_precision: float,
    seed: int,
    overrides: Sequence[str] = (),
    command: str = "textclf abstain-eval",
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Hold out `held_out` intents, build every family without them, and measure every variant."""
    from textclf.core.runtime import OnnxClassifier

    unknown = held_out_intents(train.labels, held_out, seed)
    params = apply_overrides(project_params(base_params, families, target_precision), overrides)
    folders = build_models(workdir, params, train, test, set(unknown), log)
    rows = list(zip(test.texts, test.labels, strict=True))
    in_scope = Split([t for t, y in rows if y not in unknown], [y for t, y in rows if y not in unknown])
    out_of_scope = [t for t, y in rows if y in unknown]
    results = {}
    for name, folder in folders.items():
        results[name] = measure(OnnxClassifier(folder), in_scope, out_of_scope)
        r = results[name]
        log(
            f"{name}: AUROC {r['auroc']:.3f}, FPR@95 {r['fpr_at_95_recall']:.3f}, "
            f"in-scope accuracy {r['accuracy_without_abstention']:.3f}, "
            f"{r['accuracy_with_abstention']:.3f} with abstention"
        )
    return {
        "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": command,
        "held_out_intents": unknown,
        "target_precision": target_precision,
        "seed": seed,
        "overrides": list(overrides),
        "results": results,
    }


def markdown(data: dict[str, Any]) -> str:
    """The README table of one `textclf abstain-eval` run."""
    lines = [
        "| variant | AUROC | FPR at 95% in-scope recall | threshold | in-scope accuracy, no abstention "
        "| with abstention | in-scope answered | precision of answers | held-out texts abstained |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in data["results"].items():
        precision = "-" if r["answered_precision"] is None else f"{r['answered_precision']:.3f}"
        threshold = "-" if r["threshold"] is None else f"{r['threshold']:.3f}"
        lines.append(
            f"| {name} | {r['auroc']:.3f} | {r['fpr_at_95_recall']:.3f} | {threshold} "
            f"| {r['accuracy_without_abstention']:.3f} | {r['accuracy_with_abstention']:.3f} "
            f"| {r['in_scope_coverage']:.3f} | {precision} | {r['out_of_scope_abstained']:.3f} |"
        )
    unknown = data["held_out_intents"]
    first = next(iter(data["results"].values()), None)
    sizes = (
        f"{first['in_scope_texts']:,} in-scope and {first['out_of_scope_texts']:,} held-out test texts"
        if first
        else ""
    )
    settings = f"; settings changed for this run: {', '.join(data['overrides'])}" if data["overrides"] else ""
    lines += [
        "",
        f"{len(unknown)} intents held out of training ({', '.join(unknown)}); "
        f"{sizes}; target precision {data['target_precision']}{settings}. "
        f"Measured {data['when']}. Command: `{data['command']}`.",
    ]
    return "\n".join(lines)
