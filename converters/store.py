"""Save a model folder into the BentoML model store, idempotently (same version → same entry)."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound

from bentos.contract import ModelMetadata, read_model_folder

STORE_PREFIX = "textclf-"


def store_tag(metadata: ModelMetadata) -> bentoml.Tag:
    """textclf-<family>[-int8]:<version>; the version is a hash of the ONNX bytes."""
    suffix = "" if metadata.precision == "fp32" else f"-{metadata.precision}"
    return bentoml.Tag(f"{STORE_PREFIX}{metadata.family}{suffix}", metadata.version)


def save_to_store(folder: Path) -> str:
    """Copy the contract files of `folder` into the store; return the model's tag."""
    labels, metadata = read_model_folder(folder)
    tag = store_tag(metadata)
    try:
        return str(bentoml.models.get(tag).tag)
    except NotFound:
        pass
    info = {k: v for k, v in asdict(metadata).items() if v is not None}
    with bentoml.models.create(
        tag,
        labels={"family": metadata.family, "precision": metadata.precision, "runtime": "onnxruntime"},
        metadata=info | {"labels": len(labels)},
    ) as model:
        for item in Path(folder).iterdir():
            if item.is_file():
                shutil.copy2(item, Path(model.path) / item.name)
    return str(tag)
