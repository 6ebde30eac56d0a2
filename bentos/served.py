"""A model ready to serve, and the checks a new one passes before a running server switches to it.

A server switches models only to one it has proven whole: it is in the store, its contract files read
(sealed ones authenticate with the data key), its ONNX bytes still hash to the version it was exported
and stored as (a file changed since the export is refused), ONNX Runtime loads it, a probe text gets a
probability per label that sums to one, and its labels are the served model's (answers, metrics and
feedback are all in those labels; a model with other labels needs a restart).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bentos.config import SETTINGS
from bentos.schemas import ModelInfo
from textclf.core.artifacts import ModelFiles
from textclf.core.contract import MODEL_FILE, ModelMetadata, check_model_folder, version_of
from textclf.core.runtime import OnnxClassifier

PROBE = ["is this model whole"]


class ModelRefused(RuntimeError):
    """A model the server will not serve; the message says why."""


@dataclass(frozen=True)
class Served:
    tag: str
    folder: Path
    classifier: OnnxClassifier
    info: ModelInfo


def store_folder(tag: str) -> Path:
    """The folder of a model in this process's BentoML store."""
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        return Path(bentoml.models.get(tag).path)
    except (BentoMLException, ValueError) as exc:
        raise ModelRefused(f"{tag}: not in the BentoML model store ({exc})") from None


def verify_model(tag: str, folder: Path) -> tuple[list[str], ModelMetadata]:
    """The model's labels and metadata, once its files read (sealed ones authenticate) and its ONNX
    bytes hash to the version in its tag and metadata; ModelRefused says what is wrong."""
    try:
        labels, metadata = check_model_folder(folder)
        onnx = ModelFiles(folder).read(MODEL_FILE)
    except (OSError, ValueError) as exc:  # contract, sealing and key errors are ValueErrors
        raise ModelRefused(f"{tag}: {exc}") from None
    version = version_of(onnx, metadata)
    stored_as = tag.rpartition(":")[2]
    if version != metadata.version or version != stored_as:
        raise ModelRefused(
            f"{tag}: model.onnx hashes to version {version}, not {stored_as}: changed since it was exported"
        )
    return labels, metadata


def load_served(tag: str, folder: Path | None = None, labels: list[str] | None = None) -> Served:
    """The model `tag` (from `folder`, else the store), checked whole; ModelRefused says why not.
    `labels`: the labels it must have (the served model's), when switching."""
    folder = store_folder(tag) if folder is None else folder
    found_labels, metadata = verify_model(tag, folder)
    if labels is not None and found_labels != labels:
        raise ModelRefused(
            f"{tag}: its {len(found_labels)} labels differ from the served model's {len(labels)}; "
            "restart the server to serve it"
        )
    try:
        classifier = OnnxClassifier(
            folder,
            threads=SETTINGS.ort_threads,
            sub_batch=SETTINGS.sub_batch,
            call_cost_tokens=SETTINGS.call_cost_tokens,
        )
        probs = classifier.predict_proba(PROBE)
    except Exception as exc:  # ONNX Runtime's own errors: a graph it cannot load or run
        raise ModelRefused(f"{tag}: ONNX Runtime cannot run it ({type(exc).__name__}: {exc})") from None
    if probs.shape != (1, len(found_labels)) or not np.isclose(float(probs.sum()), 1.0, atol=1e-3):
        raise ModelRefused(f"{tag}: a probe got probabilities of shape {probs.shape}, sum {probs.sum():.3f}")
    name, _, version_part = tag.partition(":")
    info = ModelInfo(
        name=name,
        version=version_part,
        family=metadata.family,
        precision=metadata.precision,
        labels=len(found_labels),
        metrics=metadata.metrics,
        data_sha256=metadata.data_sha256,
        mlflow_run_id=metadata.mlflow_run_id,
        registered_version=metadata.registered_version,
        abstain_below=metadata.abstain_below,
    )
    return Served(tag, folder, classifier, info)
