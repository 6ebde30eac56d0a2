"""`textclf retrain`: labelled feedback → a new DVC data version → the champion's family retrained →
an MLflow challenger. The champion alias is never touched here (`textclf promote` decides).

Every step can be killed and the next run starts clean: the feedback data file is replaced atomically,
DVC versions it, the job lock dies with its holder, and a data version that was written but never
trained on is trained on by the next run even when no new feedback has come in.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from textclf import paths
from textclf.core.contract import read_model_folder
from textclf.core.crypto import DataKeyError, Sealer, load_data_key
from textclf.core.feedback_log import feedback_logs, iter_feedback
from textclf.core.variants import Variant
from textclf.loop import jobs
from training import tracking
from training.data import load_texts_labels, read_label_list
from training.feedback import data_file, read_rows, take_in, write_rows
from training.params import Params
from training.validate import PREPARED_LABEL, PREPARED_TEXT, text_key

STATE_DIR = paths.ARTIFACTS / "retrain"
Runner = Callable[[Sequence[str]], int]


class RetrainError(RuntimeError):
    """The job cannot run or did not finish; the message says why and what to do."""


@dataclass
class RetrainResult:
    status: str  # "nothing-to-do" or "challenger"
    message: str
    read: int = 0
    new: int = 0
    refused: list[str] = field(default_factory=list)
    data_version: str | None = None
    challenger: dict[str, Any] | None = None


def champion_of(params: Params) -> tuple[Variant, Any]:
    """The champion's variant and registered version (MLflow alias); RetrainError before any."""
    version = tracking.version_by_alias(params.registry.model_name, tracking.CHAMPION)
    if version is None or "variant" not in version.tags:
        raise RetrainError(
            f"no champion in the MLflow registry model {params.registry.model_name!r}: run the pipeline "
            "(`make pipeline`) first"
        )
    return Variant.parse(version.tags["variant"]), version


def data_version(params: Params) -> str | None:
    """The DVC hash of the feedback data set (its .dvc file), or None before the first one."""
    found = data_file(params.data.feedback_dir)
    pointer = found.with_name(found.name + ".dvc") if found else None
    if pointer is None or not pointer.is_file():
        return None
    outs = yaml.safe_load(pointer.read_text(encoding="utf-8")).get("outs") or [{}]
    return outs[0].get("md5")


def _training_data(params: Params) -> tuple[list[str], dict[bytes, str], set[bytes]]:
    """Labels, train text keys → label, and test text keys, from the validated splits."""
    data = params.data
    labels_file = data.prepared_dir / "labels.json"
    if not (labels_file.is_file() and data.prepared_train.is_file() and data.prepared_test.is_file()):
        raise RetrainError(f"no validated data in {data.prepared_dir}: run `textclf validate` first")
    train_texts, train_labels = load_texts_labels(data.prepared_train, PREPARED_TEXT, PREPARED_LABEL)
    test_texts, _ = load_texts_labels(data.prepared_test, PREPARED_TEXT, PREPARED_LABEL)
    train = {text_key(t): label for t, label in zip(train_texts, train_labels, strict=True)}
    return read_label_list(labels_file), train, {text_key(t) for t in test_texts}


def run_command(argv: Sequence[str]) -> int:
    """Run a pipeline command in this process's folder, its output going where ours goes."""
    return subprocess.run(list(argv), check=False).returncode


def _tool(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _in_git_repo() -> bool:
    probe = subprocess.run(["git", "rev-parse", "--is-inside-work-tree"], capture_output=True, text=True)
    return probe.returncode == 0 and probe.stdout.strip() == "true"


def _commit(paths_: Sequence[Path], message: str, run: Runner) -> None:
    """Commit only `paths_` (whatever else is staged stays staged) when this is a git work tree."""
    existing = [str(p) for p in paths_ if p.exists()]
    if not existing or not _in_git_repo():
        return
    run(["git", "add", "--", *existing])
    if subprocess.run(["git", "diff", "--cached", "--quiet", "--", *existing]).returncode == 0:
        return  # nothing changed
    if run(["git", "commit", "--quiet", "-m", message, "--", *existing]) != 0:
        raise RetrainError(f"`git commit` of {', '.join(existing)} failed (its output is above)")


def version_data(params: Params, run: Runner) -> str | None:
    """`dvc add` the feedback data set (a new version in DVC's cache); returns its hash."""
    found = data_file(params.data.feedback_dir)
    if found is None:
        return None
    for stale in params.data.feedback_dir.glob("*.dvc"):  # a data set that changed from plain to sealed
        if stale.name != found.name + ".dvc":
            stale.unlink()
    if run([_tool("dvc"), "add", "--quiet", str(found)]) != 0:
        raise RetrainError(f"`dvc add {found}` failed (its output is above)")
    return data_version(params)


def retrain(
    params: Params, *, logs_dir: Path, state_dir: Path = STATE_DIR, run: Runner = run_command
) -> RetrainResult:
    """Take the server's feedback in, version it, retrain the champion's family, register a challenger.

    Raises jobs.JobBusy when another job runs and RetrainError when this one cannot finish."""
    with jobs.job_lock(state_dir):
        jobs.write_state(
            state_dir, status="running", started=time.time(), pid=os.getpid(), message="taking feedback in"
        )
        try:
            result = _retrain(params, logs_dir, state_dir, run)
        except BaseException as exc:
            jobs.write_state(state_dir, status="failed", finished=time.time(), message=str(exc))
            raise
        jobs.write_state(
            state_dir, status=result.status, finished=time.time(), message=result.message, last=asdict(result)
        )
        return result


def _retrain(params: Params, logs_dir: Path, state_dir: Path, run: Runner) -> RetrainResult:
    champion, champion_version = champion_of(params)
    labels, train, test = _training_data(params)
    try:
        key = load_data_key()
    except DataKeyError as exc:
        raise RetrainError(str(exc)) from None
    if key is None and feedback_logs(logs_dir):
        raise RetrainError(
            "the feedback logs are sealed: set TEXTCLF_DATA_KEY or TEXTCLF_DATA_KEY_FILE (the server's key)"
        )
    records = iter_feedback(logs_dir, Sealer(key)) if key is not None else iter(())
    previous = list(read_rows(params.data.feedback_dir, key))
    intake = take_in(records, labels=labels, train_labels=train, test_keys=test, previous=previous)
    trained_on = jobs.read_state(state_dir).get("trained_data_version")
    version = data_version(params)
    result = RetrainResult(
        status="nothing-to-do", message="", read=intake.read, new=intake.new, refused=intake.summary()
    )
    if intake.new:
        write_rows(params.data.feedback_dir, intake.rows, plaintext=params.data.feedback_plaintext, key=key)
        version = version_data(params, run)
        if params.retrain.git_commit:
            pointer = data_file(params.data.feedback_dir)
            assert pointer is not None
            _commit(
                [pointer.with_name(pointer.name + ".dvc"), params.data.feedback_dir / ".gitignore"],
                f"textclf retrain: feedback data version {version} ({len(intake.rows)} rows)",
                run,
            )
    elif version is None or version == trained_on:
        result.message = (
            f"nothing to do: no new usable feedback in {logs_dir} ({intake.read} record(s) read)"
            + ("" if version is None else f"; data version {version} already has a challenger")
        )
        result.data_version = version
        return result
    result.data_version = version
    jobs.write_state(state_dir, message=f"retraining {champion.family} on data version {version}")
    target = f"evaluate@{champion.family}"
    if run([_tool("dvc"), "repro", target]) != 0:
        raise RetrainError(f"`dvc repro {target}` failed (its output is above); the champion is unchanged")
    result.challenger = register_challenger(params, Variant(champion.family, champion.precision), version)
    result.challenger["champion_tag"] = champion_version.tags.get("bentoml_model", "")
    jobs.write_state(state_dir, trained_data_version=version)
    if params.retrain.git_commit:
        _commit([Path("dvc.lock")], f"textclf retrain: {champion.family} on feedback data {version}", run)
    result.status = "challenger"
    result.message = (
        f"challenger {result.challenger['variant']} registered as version {result.challenger['version']} "
        f"(alias {tracking.CHALLENGER}); `textclf promote` compares it with the champion"
    )
    return result


def register_challenger(params: Params, variant: Variant, version: str | None) -> dict[str, Any]:
    """Save the retrained variant to the BentoML store and point the `challenger` alias at it."""
    from converters.store import save_to_store

    folder = paths.variant_dir(variant)
    _, metadata = read_model_folder(folder)
    if not metadata.registered_version:
        raise RetrainError(f"{folder} has no registered MLflow version: the train stage did not register it")
    tag = save_to_store(folder)
    evaluations = paths.EVALUATIONS / f"metrics_{variant.family}.json"
    evaluation = json.loads(evaluations.read_text(encoding="utf-8"))
    tags = {
        "variant": variant.name,
        "bentoml_model": tag,
        "feedback_data_version": version or "",
        "role": "challenger from textclf retrain",
    }
    tracking.set_alias(params.registry.model_name, tracking.CHALLENGER, metadata.registered_version, tags)
    return {
        "variant": variant.name,
        "version": metadata.registered_version,
        "model_tag": tag,
        "accuracy": evaluation.get(variant.precision, {}).get("accuracy"),
    }
