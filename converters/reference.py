"""The drift reference a model folder ships: the monitoring features of its validation texts, profiled.

The server profiles the same features (textclf.core.features) of the texts it serves and compares them
with this profile. It is computed by the exported graph itself through the server's classifier, so
scores are calibrated and tokenised exactly as served, and on the validation split: texts like the
training data that the model never trained on, so its confidence there is what it will be on new
texts from the same distribution (on training texts it would look better than it ever will live).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from converters.parity import CHUNK
from monitoring.profiles import profile_columns, write_reference
from textclf.core.contract import REFERENCE_FILE, VOCABULARY_FILE
from textclf.core.features import FEATURES, text_features
from textclf.core.runtime import OnnxClassifier
from training.data import batched


def reference_columns(classifier: OnnxClassifier, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The feature columns of `texts` as `classifier` scores them, CHUNK texts per model call."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in FEATURES}
    for chunk in batched(texts, CHUNK):
        probs, encodings = classifier.predict(chunk)
        columns = text_features(chunk, probs, classifier.labels, classifier.input_stats, encodings)
        for name in FEATURES:
            parts[name].append(columns[name])
    return {name: np.concatenate(values) for name, values in parts.items()}


def write_reference_profile(folder: Path, texts: Sequence[str]) -> Path:
    """Profile the features of `texts` scored by the model in `folder`; write REFERENCE_FILE there."""
    if not texts:
        raise ValueError(f"{folder}: a drift reference needs validation texts, got none")
    columns = reference_columns(OnnxClassifier(folder), texts)
    path = Path(folder) / REFERENCE_FILE
    write_reference(profile_columns(columns), path)
    # written through a private temporary file (0600); it ships like model.onnx, to whatever user
    # serves the model (a container's user too), so it gets the same permissions
    path.chmod(0o644)
    return path


def write_vocabulary(folder: Path, words: Sequence[str]) -> Path:
    """VOCABULARY_FILE: a raw-string model's words, sorted, so the server can count unknown ones."""
    path = Path(folder) / VOCABULARY_FILE
    path.write_text(json.dumps(sorted(words), ensure_ascii=False), encoding="utf-8")
    return path
