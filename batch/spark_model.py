"""The model folder a Spark run ships to its workers, and the archive that carries it to a cluster.

Locally every worker reads the folder from its path. A sealed folder (encrypted at rest) is decrypted
once, on the driver, into a private temporary folder (mode 0700, files 0600) that the run removes when
it ends. On a cluster the folder travels as an archive (`spark-submit --archives model.tar.gz#model`)
or lies on shared storage; a sealed one stays sealed there and each worker decrypts it in memory with
the data key its environment holds (`spark.executorEnv.TEXTCLF_DATA_KEY`).
"""

from __future__ import annotations

import os
import secrets
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from batch.spark_io import SparkRunError
from textclf.core.artifacts import ModelFiles
from textclf.core.contract import ModelMetadata, read_model_files
from textclf.core.crypto import DataKeyError, SealedDataError


@dataclass(frozen=True)
class ModelRef:
    """What workers need to find (and cache) the model: its folder as they see it, and its version."""

    folder: str
    version: str
    metadata: ModelMetadata
    labels: int


def open_model(folder: Path, key: bytes | None = None) -> tuple[ModelFiles, ModelMetadata, int]:
    """The folder's files, checked against the contract; SparkRunError says what is wrong."""
    if not folder.is_dir():
        raise SparkRunError(f"model folder {folder} does not exist")
    files = ModelFiles(folder, key)
    try:
        labels, metadata = read_model_files(files)
        files.verify()
    except (DataKeyError, SealedDataError, ValueError) as exc:  # ContractError is a ValueError
        raise SparkRunError(str(exc)) from None
    return files, metadata, len(labels)


@contextmanager
def local_model(folder: Path, key: bytes | None = None) -> Iterator[ModelRef]:
    """The model for a local run: a plain folder as it is, a sealed one decrypted into a private
    temporary folder for the run's duration (`key`: the data key; None: the environment's)."""
    files, metadata, labels = open_model(folder, key)
    if not files.sealed:
        yield ModelRef(str(folder.resolve()), metadata.version, metadata, labels)
        return
    private = Path(tempfile.mkdtemp(prefix="textclf-model-"))  # mkdtemp: mode 0700, this user only
    try:
        for name in files.names():
            handle = os.open(private / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(handle, "wb") as out:
                out.write(files.read(name))
        yield ModelRef(str(private), metadata.version, metadata, labels)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def cluster_model(folder: str, key: bytes | None = None) -> ModelRef:
    """The model for a spark-submit run: checked on the driver at `folder`, read by the workers at the
    same path as given (relative: the archive's alias in their working folder, e.g. `model`)."""
    _, metadata, labels = open_model(Path(folder), key)
    return ModelRef(folder, metadata.version, metadata, labels)


def write_model_archive(folder: Path, target: Path) -> ModelMetadata:
    """A tar.gz of the folder's files at its root (`--archives target#model` unpacks them into ./model);
    sealed files stay sealed. Written beside `target` and renamed onto it once complete."""
    files, metadata, _ = open_model(folder)
    staging = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
    try:
        with tarfile.open(staging, "w:gz") as archive:
            for path in sorted(p for p in files.folder.iterdir() if p.is_file()):
                archive.add(path, arcname=path.name)
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)
    return metadata
