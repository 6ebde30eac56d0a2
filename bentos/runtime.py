"""ONNX Runtime inference for any model folder that follows the contract (one code path for all)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from bentos.contract import MODEL_FILE, PROBABILITIES_OUTPUT, ModelMetadata, read_model_folder


@dataclass(frozen=True, slots=True)
class Scored:
    label: str
    score: float


class OnnxClassifier:
    """One ONNX Runtime session plus the label map; built once per process and reused."""

    def __init__(self, folder: Path | str, threads: int = 1):
        folder = Path(folder)
        self.labels, self.metadata = read_model_folder(folder)
        self._labels = np.asarray(self.labels, dtype=object)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(
            str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"]
        )
        self._input = self.session.get_inputs()[0].name
        outputs = [o.name for o in self.session.get_outputs()]
        if PROBABILITIES_OUTPUT not in outputs:
            raise ValueError(f"{folder}: ONNX graph has no {PROBABILITIES_OUTPUT!r} output")
        width = self.session.get_outputs()[outputs.index(PROBABILITIES_OUTPUT)].shape[-1]
        if isinstance(width, int) and width != len(self.labels):
            raise ValueError(f"{folder}: graph scores {width} classes, labels.json has {len(self.labels)}")

    @property
    def info(self) -> ModelMetadata:
        return self.metadata

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities for a batch of texts, shape (len(texts), len(labels))."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        feed = np.asarray(texts, dtype=object).reshape(-1, 1)
        (probs,) = self.session.run([PROBABILITIES_OUTPUT], {self._input: feed})
        return probs

    def top_k(self, probs: np.ndarray, k: int) -> list[list[Scored]]:
        """The k best labels per row, best first."""
        k = max(1, min(k, probs.shape[1]))
        best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            [Scored(str(self._labels[j]), float(row[j])) for j in idx]
            for row, idx in zip(probs, best, strict=True)
        ]
