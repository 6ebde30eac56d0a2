"""ONNX Runtime inference for any model folder that follows the contract (one code path for all).

Token-based models are tokenised in one batched Rust call, sorted by length and run in small
sub-batches each padded only to its own longest text: on CPU, padding costs more than batching saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from bentos.contract import (
    MODEL_FILE,
    PROBABILITIES_OUTPUT,
    TOKENIZER_FILE,
    ContractError,
    ModelMetadata,
    read_model_folder,
)


@dataclass(frozen=True, slots=True)
class Scored:
    label: str
    score: float


class _TokenFeeder:
    """Turns texts into padded id/mask arrays, one length-sorted sub-batch at a time."""

    def __init__(self, folder: Path, metadata: ModelMetadata, input_names: set[str], sub_batch: int):
        if metadata.max_length is None or metadata.pad_id is None:
            raise ContractError(f"{folder}: token-based metadata needs max_length and pad_id")
        self.tokenizer = Tokenizer.from_file(str(folder / TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(metadata.max_length)
        self.pad_id = metadata.pad_id
        self.sub_batch = sub_batch
        self.type_ids = "token_type_ids" in input_names

    def sub_batches(self, texts: list[str]):
        """Yield (row indices, feed dict) covering every text exactly once."""
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(lengths, kind="stable")
        for start in range(0, len(order), self.sub_batch):
            rows = order[start : start + self.sub_batch]
            width = max(1, int(lengths[rows].max()))
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = lengths[i]
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if self.type_ids:
                feed["token_type_ids"] = np.zeros_like(ids)
            yield rows, feed


class OnnxClassifier:
    """One ONNX Runtime session plus the label map (and tokenizer); built once per process."""

    def __init__(self, folder: Path | str, threads: int = 1, sub_batch: int = 8):
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
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if PROBABILITIES_OUTPUT not in outputs:
            raise ContractError(f"{folder}: ONNX graph has no {PROBABILITIES_OUTPUT!r} output")
        width = outputs[PROBABILITIES_OUTPUT].shape[-1]
        if isinstance(width, int) and width != len(self.labels):
            raise ContractError(f"{folder}: graph scores {width} classes, labels.json has {len(self.labels)}")
        self._text_input = self.session.get_inputs()[0].name
        self._feeder = (
            _TokenFeeder(folder, self.metadata, inputs, sub_batch)
            if self.metadata.input_kind == "tokens"
            else None
        )

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities for a batch of texts, shape (len(texts), len(labels)), in order."""
        return self.output(texts, PROBABILITIES_OUTPUT)

    def output(self, texts: list[str], name: str) -> np.ndarray:
        """Any per-class output of the graph (e.g. `logits`, for parity checks), in text order."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        if self._feeder is None:
            feed = np.asarray(texts, dtype=object).reshape(-1, 1)
            return self.session.run([name], {self._text_input: feed})[0]
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        for rows, feed in self._feeder.sub_batches(texts):
            out[rows] = self.session.run([name], feed)[0]
        return out

    def top_k(self, probs: np.ndarray, k: int) -> list[list[Scored]]:
        """The k best labels per row, best first."""
        k = max(1, min(k, probs.shape[1]))
        best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            [Scored(str(self._labels[j]), float(row[j])) for j in idx]
            for row, idx in zip(probs, best, strict=True)
        ]
