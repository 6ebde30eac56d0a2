"""The model folder contract shared by every family: what the converters write, what the server reads.

A model folder holds `model.onnx`, `labels.json` (class names in output order), `metadata.json`
(`ModelMetadata`) and, for token-based families, `tokenizer.json`; the pipeline adds `reference.bin` (the
drift reference) and, for raw-string models, `vocabulary.json`, which readers treat as optional so older
folders still load. In the model store each may be sealed (encrypted at rest) as `<name>.sealed`, read
through textclf.core.artifacts.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from textclf.core.artifacts import ModelFiles
from textclf.core.crypto import DataKeyError, SealedDataError
from textclf.core.variants import Precision, Variant

MODEL_FILE = "model.onnx"
LABELS_FILE = "labels.json"
METADATA_FILE = "metadata.json"
TOKENIZER_FILE = "tokenizer.json"
VOCABULARY_FILE = "vocabulary.json"  # optional, raw-string models: their word vocabulary (monitoring)
REFERENCE_FILE = "reference.bin"  # whylogs profile of the validation split's features (drift reference)
PROBABILITIES_OUTPUT = "probabilities"

InputKind = Literal["text", "tokens"]


class ContractError(ValueError):
    """A model folder is incomplete or inconsistent; the server refuses to start on it."""


@dataclass(frozen=True)
class ModelMetadata:
    family: str
    version: str
    input_kind: InputKind
    data_sha256: str
    metrics: dict[str, float] = field(default_factory=dict)
    max_length: int | None = None  # token-based families: truncation length
    pad_id: int | None = None  # token-based families: the padding token id
    precision: Precision = "fp32"
    mlflow_run_id: str | None = None
    registered_version: str | None = None
    # temperature scaling (fitted on the validation split): served probabilities are
    # softmax(log(p) / temperature) of the graph's p; 1.0 (older folders) leaves them as they are
    temperature: float = 1.0
    # text models: the runtime lower-cases texts (Python's str.lower) before the graph, as training did
    lowercase: bool = False
    # out of scope: below this calibrated top score the server abstains (label null); fitted on the
    # validation split for params' abstain.target_precision; None: never abstains
    abstain_below: float | None = None

    @property
    def variant(self) -> Variant:
        return Variant(self.family, self.precision)

    @property
    def store_tag(self) -> str:
        """Its BentoML model store tag, `textclf-<variant>:<version>` (version: a hash of the ONNX bytes
        and the temperature: what the served probabilities depend on)."""
        return f"{self.variant.store_name}:{self.version}"


def model_version(
    onnx_bytes: bytes, temperature: float = 1.0, lowercase: bool = False, abstain_below: float | None = None
) -> str:
    """A model's version: a hash of what its answers depend on, the ONNX bytes, the temperature, the
    runtime's lower-casing and the abstention threshold (uncalibrated, graph as it is: the ONNX bytes
    alone). Same model, same version; a new calibration of the same graph is a new version, so the store
    and the Bento never keep a stale one. The server recomputes it before it switches to a new model: a
    file changed since the export is refused."""
    digest = hashlib.sha256(onnx_bytes)
    if temperature != 1.0:
        digest.update(f"\ntemperature={temperature!r}".encode())
    if lowercase:
        digest.update(b"\nlowercase")
    if abstain_below is not None:
        digest.update(f"\nabstain_below={abstain_below!r}".encode())
    return digest.hexdigest()[:16]


def version_of(onnx_bytes: bytes, metadata: ModelMetadata) -> str:
    """The version `metadata` implies for these ONNX bytes (what `model_version` hashes, read from it)."""
    return model_version(onnx_bytes, metadata.temperature, metadata.lowercase, metadata.abstain_below)


def write_model_folder(folder: Path, onnx_bytes: bytes, labels: list[str], metadata: ModelMetadata) -> None:
    """Write the contract files (the ONNX graph, labels and metadata) into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MODEL_FILE).write_bytes(onnx_bytes)
    (folder / LABELS_FILE).write_text(json.dumps(labels, indent=1), encoding="utf-8")
    write_metadata(folder, metadata)


def write_metadata(folder: Path, metadata: ModelMetadata) -> None:
    (folder / METADATA_FILE).write_text(json.dumps(asdict(metadata), indent=2), encoding="utf-8")


def read_model_folder(folder: Path, key: bytes | None = None) -> tuple[list[str], ModelMetadata]:
    """Check a model folder (plain or sealed: `key`, or the environment's data key) against the
    contract and return its labels and metadata."""
    return read_model_files(ModelFiles(folder, key))


def read_model_files(files: ModelFiles) -> tuple[list[str], ModelMetadata]:
    """`read_model_folder` for an open ModelFiles (one key lookup for every file a reader needs)."""
    folder = files.folder
    missing = [n for n in (MODEL_FILE, LABELS_FILE, METADATA_FILE) if not files.has(n)]
    if missing:
        raise ContractError(f"{folder}: model folder is missing {', '.join(missing)}")
    try:
        labels = json.loads(files.read_text(LABELS_FILE))
        metadata = ModelMetadata(**json.loads(files.read_text(METADATA_FILE)))
    except (DataKeyError, SealedDataError):
        raise
    except (ValueError, TypeError) as exc:
        raise ContractError(f"{folder}: unreadable labels or metadata ({exc})") from exc
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) for x in labels):
        raise ContractError(f"{folder}/{LABELS_FILE}: expected a non-empty list of strings")
    if metadata.input_kind == "tokens" and not files.has(TOKENIZER_FILE):
        raise ContractError(f"{folder}: token-based model without {TOKENIZER_FILE}")
    if not isinstance(metadata.lowercase, bool):
        raise ContractError(f"{folder}/{METADATA_FILE}: lowercase must be true or false")
    temperature = metadata.temperature
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, int | float)
        or not (math.isfinite(temperature) and temperature > 0)
    ):
        raise ContractError(
            f"{folder}/{METADATA_FILE}: temperature must be a positive number, not {temperature!r}"
        )
    threshold = metadata.abstain_below
    if threshold is not None and (
        isinstance(threshold, bool) or not isinstance(threshold, int | float) or not 0 <= threshold <= 1
    ):
        raise ContractError(
            f"{folder}/{METADATA_FILE}: abstain_below must be null or a number in [0, 1], not {threshold!r}"
        )
    return labels, metadata


def pipeline_artifacts(metadata: ModelMetadata) -> tuple[str, ...]:
    """The optional artifacts the pipeline always writes: the drift reference, and the vocabulary of a
    raw-string model (its out-of-vocabulary rate)."""
    return (REFERENCE_FILE, VOCABULARY_FILE) if metadata.input_kind == "text" else (REFERENCE_FILE,)


def check_exported_folder(folder: Path, key: bytes | None = None) -> tuple[list[str], ModelMetadata]:
    """`read_model_folder` for what the pipeline exports: there the optional artifacts are required,
    so a model never leaves the pipeline without its drift reference."""
    files = ModelFiles(folder, key)
    labels, metadata = read_model_files(files)
    missing = [name for name in pipeline_artifacts(metadata) if not files.has(name)]
    if missing:
        raise ContractError(f"{folder}: exported model folder is missing {', '.join(missing)}")
    return labels, metadata


def check_model_folder(folder: Path, key: bytes | None = None) -> tuple[list[str], ModelMetadata]:
    """`read_model_folder`, and every sealed artifact authenticated too: run where a server starts,
    so a wrongly-keyed or tampered model stops it before any worker spawns."""
    files = ModelFiles(folder, key)
    labels, metadata = read_model_files(files)
    files.verify()
    return labels, metadata
