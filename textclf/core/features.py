"""What monitoring knows about a served text: a few derived numbers, never the text itself.

The server (off the request path) and the pipeline (the reference profile, from the validation split)
compute them with this one module, so a drift check compares like with like.

Per text: `chars` (length), `tokens` (the model's token count, truncation included), `oov_rate` (share of
words the model's vocabulary cannot map to one entry), and from the model's probabilities `confidence`
(top probability), `margin` (top minus second), `entropy` (nats) and `predicted` (the top label).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np
from tokenizers import Encoding

NUMERIC_FEATURES = ("chars", "tokens", "oov_rate", "confidence", "margin", "entropy")
CATEGORICAL_FEATURES = ("predicted",)
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
# scikit-learn's default token pattern (the TF-IDF family's words), lower-cased as its vectorizer does
WORD_PATTERN = re.compile(r"(?u)\b\w\w+\b")

Columns = dict[str, np.ndarray]


def char_counts(texts: Sequence[str]) -> np.ndarray:
    """Characters per text."""
    return np.fromiter(map(len, texts), dtype=np.float64, count=len(texts))


def token_counts(texts: Sequence[str], encodings: Sequence[Encoding] | None) -> np.ndarray:
    """Model tokens per text: from the tokenizer's encodings, or, for models that take raw strings, the
    words their vectorizer sees (WORD_PATTERN). The metrics and the profiles count with this one function."""
    if encodings is not None:
        return np.fromiter((len(e.ids) for e in encodings), dtype=np.float64, count=len(encodings))
    findall = WORD_PATTERN.findall
    return np.fromiter((len(findall(t)) for t in texts), dtype=np.float64, count=len(texts))


class InputStats(Protocol):
    """Token count and out-of-vocabulary rate per text, from whatever the model's input step produced."""

    def __call__(
        self, texts: Sequence[str], encodings: Sequence[Encoding] | None
    ) -> tuple[np.ndarray, np.ndarray]: ...


class WordPieceStats:
    """Token models: tokens from the encodings; a word is out of vocabulary when the tokenizer maps it
    to the unknown token or splits it into more than one piece."""

    def __init__(self, unk_id: int | None):
        self.unk_id = unk_id

    def __call__(
        self, texts: Sequence[str], encodings: Sequence[Encoding] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        if encodings is None:
            raise ValueError("token statistics need the tokenizer's encodings")
        tokens = token_counts(texts, encodings)
        oov = np.fromiter((self._oov_rate(e) for e in encodings), dtype=np.float64, count=len(encodings))
        return tokens, oov

    def _oov_rate(self, encoding: Encoding) -> float:
        pieces: dict[int, int] = {}
        unknown: set[int] = set()
        for word, token_id in zip(encoding.word_ids, encoding.ids, strict=True):
            if word is None:  # [CLS], [SEP], padding
                continue
            pieces[word] = pieces.get(word, 0) + 1
            if token_id == self.unk_id:
                unknown.add(word)
        if not pieces:
            return 0.0
        return sum(1 for w, n in pieces.items() if n > 1 or w in unknown) / len(pieces)


class WordListStats:
    """Models that take raw strings (TF-IDF): words as scikit-learn's vectorizer finds them, out of
    vocabulary when the fitted vocabulary lacks them. A text with characters but no word at all
    (emoji, punctuation) counts as wholly out of vocabulary."""

    def __init__(self, vocabulary: Iterable[str] | None):
        self.vocabulary = None if vocabulary is None else frozenset(vocabulary)

    def __call__(
        self, texts: Sequence[str], encodings: Sequence[Encoding] | None
    ) -> tuple[np.ndarray, np.ndarray]:
        words = [WORD_PATTERN.findall(t.lower()) for t in texts]
        tokens = np.fromiter((len(w) for w in words), dtype=np.float64, count=len(words))
        if self.vocabulary is None:
            return tokens, np.full(len(words), np.nan)
        vocab = self.vocabulary
        oov = np.fromiter(
            (
                (sum(1 for x in w if x not in vocab) / len(w)) if w else (1.0 if t.strip() else 0.0)
                for w, t in zip(words, texts, strict=True)
            ),
            dtype=np.float64,
            count=len(words),
        )
        return tokens, oov


def probability_features(probs: np.ndarray) -> Columns:
    """Confidence, margin, entropy and the predicted class index of each row of probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] == 0:
        raise ValueError(f"expected probabilities of shape (texts, classes), got {probs.shape}")
    top2 = (
        -np.partition(-probs, 1, axis=1)[:, :2]
        if probs.shape[1] > 1
        else np.hstack([probs, np.zeros_like(probs)])
    )
    clipped = np.clip(probs, 1e-12, 1.0)
    return {
        "confidence": top2[:, 0],
        "margin": top2[:, 0] - top2[:, 1],
        "entropy": -(probs * np.log(clipped)).sum(axis=1),
        "predicted_index": probs.argmax(axis=1),
    }


def text_features(
    texts: Sequence[str],
    probs: np.ndarray,
    labels: Sequence[str],
    stats: InputStats,
    encodings: Sequence[Encoding] | None = None,
) -> Columns:
    """The feature columns (FEATURES, in that order) of a batch of texts and their probabilities."""
    if len(texts) != len(probs):
        raise ValueError(f"{len(texts)} texts but {len(probs)} rows of probabilities")
    tokens, oov = stats(texts, encodings)
    scored = probability_features(probs)
    names = np.asarray(labels, dtype=object)
    return {
        "chars": char_counts(texts),
        "tokens": tokens,
        "oov_rate": oov,
        "confidence": scored["confidence"],
        "margin": scored["margin"],
        "entropy": scored["entropy"],
        "predicted": names[scored["predicted_index"]],
    }
