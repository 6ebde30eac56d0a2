"""Save a model folder into the BentoML model store, idempotently (same version → same entry).

With a data key configured (TEXTCLF_DATA_KEY or TEXTCLF_DATA_KEY_FILE), every file goes into the store
sealed (AES-256-GCM, `<name>.sealed`, its name as associated data); without one, as plain files.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path

import bentoml
from bentoml.exceptions import NotFound

from textclf.core.artifacts import ModelFiles, write_sealed
from textclf.core.contract import METADATA_FILE, ModelMetadata, read_model_folder
from textclf.core.crypto import SealedDataError, Sealer, load_data_key


def store_tag(metadata: ModelMetadata) -> bentoml.Tag:
    """textclf-<variant>:<version>; the version is a hash of the ONNX bytes."""
    return bentoml.Tag.from_taglike(metadata.store_tag)


def _stored_as_wanted(path: Path, key: bytes | None, names: set[str]) -> bool:
    """Whether a stored entry already holds every artifact `names` (an entry stored before the folder
    gained one, e.g. its drift reference, does not) with the sealing asked for. Without a key any
    entry does (a sealed one is never downgraded to plain); with one, only an entry sealed with that
    same key."""
    files = ModelFiles(path, key)
    if not names <= set(files.names()):
        return False
    if key is None:
        return True
    if not files.sealed:
        return False
    try:
        files.read(METADATA_FILE)
    except SealedDataError:  # sealed with another key: re-seal with this one
        return False
    return True


def save_to_store(folder: Path) -> str:
    """Copy the contract files of `folder` into the store (sealed when a data key is configured);
    return the model's tag."""
    labels, metadata = read_model_folder(folder)
    tag = store_tag(metadata)
    names = {item.name for item in Path(folder).iterdir() if item.is_file()}
    key = load_data_key()
    try:
        stored = bentoml.models.get(tag)
    except NotFound:
        pass
    else:
        if _stored_as_wanted(Path(stored.path), key, names):
            return str(stored.tag)
        bentoml.models.delete(tag)
    sealer = Sealer(key) if key is not None else None
    info = {k: v for k, v in asdict(metadata).items() if v is not None}
    with bentoml.models.create(
        tag,
        labels={
            "family": metadata.family,
            "precision": metadata.precision,
            "runtime": "onnxruntime",
            "encryption": "aes-256-gcm" if sealer else "none",
        },
        metadata=info | {"labels": len(labels)} | ({"data_key_id": sealer.key_id} if sealer else {}),
    ) as model:
        for item in Path(folder).iterdir():  # every file: the drift reference and vocabulary too
            if not item.is_file():
                continue
            if sealer is None:
                shutil.copy2(item, Path(model.path) / item.name)
            else:
                write_sealed(model.path, item.name, item.read_bytes(), sealer)
    return str(tag)
