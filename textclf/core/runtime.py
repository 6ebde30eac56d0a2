"""ONNX Runtime inference for any model folder that follows the contract (one code path for all).

Token-based models are tokenised in one batched Rust call, sorted by length and run in sub-batches
each padded only to its own longest text: on CPU, padding costs more than batching saves. The server
sizes those sub-batches by estimated work (`plan_calls`); offline scoring uses fixed chunks.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Encoding, Tokenizer

from textclf.core.artifacts import ModelFiles
from textclf.core.contract import (
    MODEL_FILE,
    PROBABILITIES_OUTPUT,
    TOKENIZER_FILE,
    VOCABULARY_FILE,
    ContractError,
    ModelMetadata,
    read_model_files,
)
from textclf.core.features import InputStats, WordListStats, WordPieceStats


@dataclass(frozen=True, slots=True)
class Scored:
    label: str
    score: float


ABSTAIN_CANDIDATES = 3  # labels listed with an abstained answer that asked for no top_k


def ranks_needed(top_k: int | None, abstain_below: float | None) -> int:
    """How many best labels `answer` needs for a text that asked for `top_k`: an abstained answer lists
    at least ABSTAIN_CANDIDATES, so a model with a threshold ranks that many."""
    return max(top_k or 1, ABSTAIN_CANDIDATES if abstain_below is not None else 1)


def answer(best: list[Scored], top_k: int | None, abstain_below: float | None) -> dict:
    """One text's answer as the API gives it: the best label and its score, `abstained` (label None)
    when that score is below the model's threshold, and the `top_k` best labels when asked for; an
    abstained answer lists its ABSTAIN_CANDIDATES best candidates even when none were asked for.
    `best`: the text's labels, best first (`OnnxClassifier.top_k`), at least as many as will be listed."""
    top = best[0]
    if abstain_below is not None and top.score < abstain_below:
        listed = best[: top_k or ABSTAIN_CANDIDATES]
        return {
            "label": None,
            "score": top.score,
            "abstained": True,
            "top_k": [{"label": s.label, "score": s.score} for s in listed],
        }
    return {
        "label": top.label,
        "score": top.score,
        "abstained": False,
        "top_k": [{"label": s.label, "score": s.score} for s in best[:top_k]] if top_k else None,
    }


@dataclass(slots=True)
class Timings:
    """Where one `predict` call spent its time (seconds), for the server's metrics: `inference_s` in
    ONNX Runtime's session calls, `tokenize_s` everything else (tokenising, padding, the feed). For
    models that take raw strings the graph tokenises, so nearly all of it is inference."""

    tokenize_s: float = 0.0
    inference_s: float = 0.0


def plan_calls(lengths: np.ndarray, max_rows: int, call_cost_tokens: int) -> list[tuple[int, int]]:
    """Split texts sorted by token count into model calls [start, end) of at most `max_rows` rows.

    With `call_cost_tokens` = 0: fixed chunks of `max_rows`. Otherwise the split with the least
    estimated work, where a call costs `call_cost_tokens` plus rows x its longest text (padding
    included): small texts share a call, a long one does not drag many short ones to its width.
    """
    n = len(lengths)
    if call_cost_tokens <= 0:
        return [(a, min(a + max_rows, n)) for a in range(0, n, max_rows)]
    # Plain Python ints: a lane plans a few dozen texts, where numpy's per-call overhead costs more than
    # the arithmetic (numpy was 5x slower on 16 texts). A call [s, end) costs call_cost + (end - s) * widest,
    # the widest being lengths[end - 1] (sorted); for each end the best start minimises best[s] - s * widest.
    widths = lengths.tolist()
    best = [0] * (n + 1)
    cut = [0] * (n + 1)
    for end in range(1, n + 1):
        widest = widths[end - 1]
        start = low = max(0, end - max_rows)
        least = best[low] - low * widest
        for s in range(low + 1, end):
            value = best[s] - s * widest
            if value < least:
                least, start = value, s
        best[end], cut[end] = least + call_cost_tokens + end * widest, start
    calls, end = [], n
    while end > 0:
        calls.append((cut[end], end))
        end = cut[end]
    return calls[::-1]


def apply_temperature(probs: np.ndarray, temperature: float) -> np.ndarray:
    """Temperature scaling (Guo et al. 2017) of probabilities: softmax(log(p) / T) per row. The graphs
    output p = softmax(logits), and log(p) differs from the logits by a per-row constant that softmax
    drops, so this equals softmax(logits / T) without needing the logits. T > 1 softens over-confident
    scores; the ranking, hence every label, stays the same."""
    if temperature == 1.0 or probs.size == 0:
        return probs
    scaled = np.log(np.clip(probs, 1e-12, None)) / np.float32(temperature)
    scaled -= scaled.max(axis=1, keepdims=True)
    np.exp(scaled, out=scaled)
    scaled /= scaled.sum(axis=1, keepdims=True)
    return scaled.astype(probs.dtype, copy=False)


class _TokenFeeder:
    """Turns texts into padded id/mask arrays, one length-sorted sub-batch at a time."""

    def __init__(
        self,
        files: ModelFiles,
        metadata: ModelMetadata,
        input_names: set[str],
        sub_batch: int,
        call_cost_tokens: int,
    ):
        if metadata.max_length is None or metadata.pad_id is None:
            raise ContractError(f"{files.folder}: token-based metadata needs max_length and pad_id")
        self.tokenizer = Tokenizer.from_str(files.read_text(TOKENIZER_FILE))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(metadata.max_length)
        self.pad_id = metadata.pad_id
        self.sub_batch = sub_batch
        self.call_cost_tokens = call_cost_tokens
        self.type_ids = "token_type_ids" in input_names

    def encode(self, texts: list[str]) -> list[Encoding]:
        """One batched Rust call (it releases the GIL)."""
        return self.tokenizer.encode_batch(texts)

    def sub_batches(self, encodings: list[Encoding]):
        """Yield (row indices, feed dict) covering every encoded text exactly once."""
        lengths = np.fromiter((len(e.ids) for e in encodings), dtype=np.int64, count=len(encodings))
        order = np.argsort(lengths, kind="stable")
        for start, end in plan_calls(lengths[order], self.sub_batch, self.call_cost_tokens):
            rows = order[start:end]
            width = max(1, int(lengths[rows].max()))
            ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = lengths[i]
                ids[r, :n] = encodings[i].ids
                # a text with no token at all is read as one padding token: an all-zero mask row
                # turns a dynamically quantised graph's whole batch to noise, other texts included
                mask[r, : max(n, 1)] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if self.type_ids:
                feed["token_type_ids"] = np.zeros_like(ids)
            yield rows, feed


class OnnxClassifier:
    """One ONNX Runtime session plus the label map (and tokenizer); built once per process.

    A sealed folder (see textclf.core.artifacts) is decrypted in memory with `key`, or the environment's
    data key when None: no plaintext model ever touches the disk."""

    def __init__(
        self,
        folder: Path | str,
        threads: int = 1,
        sub_batch: int = 8,
        call_cost_tokens: int = 0,
        key: bytes | None = None,
    ):
        files = ModelFiles(folder, key)
        folder = files.folder
        self.labels, self.metadata = read_model_files(files)
        self.temperature = float(self.metadata.temperature)  # calibration, applied in `predict`
        self.abstain_below = self.metadata.abstain_below  # applied by `answer` (None: never abstains)
        self._labels = np.asarray(self.labels, dtype=object)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        plain = files.plain_path(MODEL_FILE)
        self.session = ort.InferenceSession(
            str(plain) if plain is not None else files.read(MODEL_FILE),
            options,
            providers=["CPUExecutionProvider"],
        )
        inputs = {i.name for i in self.session.get_inputs()}
        outputs = {o.name: o for o in self.session.get_outputs()}
        if PROBABILITIES_OUTPUT not in outputs:
            raise ContractError(f"{folder}: ONNX graph has no {PROBABILITIES_OUTPUT!r} output")
        width = outputs[PROBABILITIES_OUTPUT].shape[-1]
        if isinstance(width, int) and width != len(self.labels):
            raise ContractError(f"{folder}: graph scores {width} classes, labels.json has {len(self.labels)}")
        self._text_input = self.session.get_inputs()[0].name
        # raw-string models may ship their word vocabulary (monitoring's out-of-vocabulary rate)
        self.vocabulary: list[str] | None = (
            json.loads(files.read_text(VOCABULARY_FILE)) if files.has(VOCABULARY_FILE) else None
        )
        self._feeder = (
            _TokenFeeder(files, self.metadata, inputs, sub_batch, call_cost_tokens)
            if self.metadata.input_kind == "tokens"
            else None
        )

    @property
    def tokenizer(self) -> Tokenizer | None:
        """The model's tokenizer (None for models that take raw strings)."""
        return None if self._feeder is None else self._feeder.tokenizer

    @property
    def input_stats(self) -> InputStats:
        """How monitoring counts this model's tokens and out-of-vocabulary words (textclf.core.features)."""
        if self._feeder is not None:
            tokenizer = self._feeder.tokenizer
            unk = getattr(tokenizer.model, "unk_token", None)
            return WordPieceStats(tokenizer.token_to_id(unk) if unk else None)
        return WordListStats(self.vocabulary)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities for a batch of texts, shape (len(texts), len(labels)), in order."""
        return self.predict(texts)[0]

    def predict(
        self, texts: list[str], timings: Timings | None = None
    ) -> tuple[np.ndarray, list[Encoding] | None]:
        """`predict_proba` plus the tokenizer's encodings of the texts (None for models that take
        raw strings): the monitoring features (token counts, out-of-vocabulary rate) read them later,
        off the model lane, instead of tokenising twice. `timings`, when given, is filled in.
        The probabilities are calibrated (the folder's temperature): the one place it is applied."""
        probs, encodings = self._run(texts, PROBABILITIES_OUTPUT, timings)
        return apply_temperature(probs, self.temperature), encodings

    def output(self, texts: list[str], name: str) -> np.ndarray:
        """Any per-class output of the graph (e.g. `logits`, for parity checks), in text order;
        `probabilities` calibrated as `predict` gives them, any other output as the graph gives it."""
        if name == PROBABILITIES_OUTPUT:
            return self.predict(texts)[0]
        return self._run(texts, name)[0]

    def _run(
        self, texts: list[str], name: str, timings: Timings | None = None
    ) -> tuple[np.ndarray, list[Encoding] | None]:
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32), None if self._feeder is None else []
        clock = time.perf_counter  # two readings per session call, plus two per batch
        started = clock()
        if self._feeder is None:
            if self.metadata.lowercase:
                texts = [text.lower() for text in texts]
            feed = np.asarray(texts, dtype=object).reshape(-1, 1)
            running = clock()
            out = self.session.run([name], {self._text_input: feed})[0]
            if timings is not None:
                ended = clock()
                timings.tokenize_s, timings.inference_s = running - started, ended - running
            return out, None
        out = np.empty((len(texts), len(self.labels)), dtype=np.float32)
        encodings = self._feeder.encode(texts)
        inference = 0.0
        for rows, feed in self._feeder.sub_batches(encodings):
            running = clock()
            out[rows] = self.session.run([name], feed)[0]
            inference += clock() - running
        if timings is not None:
            timings.tokenize_s, timings.inference_s = clock() - started - inference, inference
        return out, encodings

    def answers(self, probs: np.ndarray, top_k: int | None = None) -> list[dict]:
        """Every row's answer as the API gives it (`answer`), for callers outside the server."""
        widest = ranks_needed(top_k, self.abstain_below)
        return [answer(best, top_k, self.abstain_below) for best in self.top_k(probs, widest)]

    def top_k(self, probs: np.ndarray, k: int) -> list[list[Scored]]:
        """The k best labels per row, best first."""
        k = max(1, min(k, probs.shape[1]))
        best = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        return [
            [Scored(str(self._labels[j]), float(row[j])) for j in idx]
            for row, idx in zip(probs, best, strict=True)
        ]
