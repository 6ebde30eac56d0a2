"""The one place that reads a model folder's files, plain or sealed (encrypted at rest).

A folder holding any `<name>.sealed` file is sealed: each artifact is AES-256-GCM encrypted with the
data key, its file name as associated data (so files cannot be swapped), and only sealed files count
(a plain file dropped next to them is ignored). Other folders are read as plain files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from textclf.core.crypto import (
    DATA_KEY_ENV,
    DATA_KEY_FILE_ENV,
    DataKeyError,
    SealedDataError,
    Sealer,
    load_data_key,
)

SEALED_SUFFIX = ".sealed"
NO_KEY = f"model artifacts are encrypted: set {DATA_KEY_ENV} or {DATA_KEY_FILE_ENV}"


def sealed_name(name: str) -> str:
    return name + SEALED_SUFFIX


def artifact_aad(name: str) -> bytes:
    """Associated data of a sealed artifact: its (plain) file name."""
    return name.encode("utf-8")


def is_sealed(folder: Path | str) -> bool:
    """Whether `folder` holds sealed artifacts."""
    return any(p.name.endswith(SEALED_SUFFIX) and p.is_file() for p in Path(folder).iterdir())


class ModelFiles:
    """The artifacts of one model folder. `key`: the data key; None takes it from the environment
    (only when a sealed file is first read, so plain folders never need one)."""

    def __init__(
        self, folder: Path | str, key: bytes | None = None, environ: Mapping[str, str] | None = None
    ):
        self.folder = Path(folder)
        self.sealed = self.folder.is_dir() and is_sealed(self.folder)
        self._key = key
        self._environ = environ
        self._sealer: Sealer | None = None

    @property
    def sealer(self) -> Sealer:
        """The Sealer of the data key; DataKeyError when none is configured."""
        if self._sealer is None:
            key = self._key if self._key is not None else load_data_key(self._environ)
            if key is None:
                raise DataKeyError(f"{self.folder}: {NO_KEY}")
            self._sealer = Sealer(key)
        return self._sealer

    def _file(self, name: str) -> Path:
        return self.folder / (sealed_name(name) if self.sealed else name)

    def has(self, name: str) -> bool:
        """Whether the artifact `name` (e.g. "model.onnx") exists, sealed or plain as the folder is."""
        return self._file(name).is_file()

    def names(self) -> list[str]:
        """The artifacts' plain names, sorted."""
        if not self.folder.is_dir():
            return []
        files = sorted(p.name for p in self.folder.iterdir() if p.is_file())
        if not self.sealed:
            return files
        return [f.removesuffix(SEALED_SUFFIX) for f in files if f.endswith(SEALED_SUFFIX)]

    def plain_path(self, name: str) -> Path | None:
        """The file itself where it is plain (for readers that take a path), else None."""
        return None if self.sealed else self._file(name)

    def read(self, name: str) -> bytes:
        """The plaintext bytes of artifact `name`; a wrong key or tampered file raises SealedDataError
        naming the file and the key id."""
        path = self._file(name)
        data = path.read_bytes()
        if not self.sealed:
            return data
        sealer = self.sealer
        try:
            return sealer.open(data, artifact_aad(name))
        except SealedDataError as exc:
            raise SealedDataError(f"{path}: refusing this model artifact: {exc}") from None

    def read_text(self, name: str) -> str:
        return self.read(name).decode("utf-8")

    def verify(self) -> None:
        """Authenticate every sealed artifact (plain folders: nothing to check)."""
        if self.sealed:
            for name in self.names():
                self.read(name)


def write_sealed(folder: Path | str, name: str, data: bytes, sealer: Sealer) -> Path:
    """Write artifact `name` into `folder` sealed (`<name>.sealed`, its name as associated data)."""
    path = Path(folder) / sealed_name(name)
    path.write_bytes(sealer.seal(data, artifact_aad(name)))
    return path


def has_artifact(folder: Path | str, name: str) -> bool:
    """Whether the model folder holds artifact `name`, sealed or plain."""
    return ModelFiles(folder).has(name)


def read_artifact(folder: Path | str, name: str, key: bytes | None = None) -> bytes:
    """The plaintext of one artifact of a model folder (key None: from the environment if needed)."""
    return ModelFiles(folder, key).read(name)
