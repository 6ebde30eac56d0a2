"""The interface every model family implements, so training, export and evaluation stay generic."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from textclf.core.contract import InputKind
from training.epochs import EpochStats

if TYPE_CHECKING:
    from tokenizers import Tokenizer


class ModelFamily(ABC):
    """A trainable text classifier: fit on texts and labels, score texts, save and load itself."""

    name: ClassVar[str]
    # What its exported graph takes: raw strings ("text") or token ids from `tokenizer` ("tokens").
    input_kind: ClassVar[InputKind]
    # Token-based families: the fast tokenizer the server runs in front of the graph; None otherwise.
    tokenizer: Tokenizer | None = None
    # True: `fit` carves the validation split itself (training.splits, with its val_fraction and seed),
    # e.g. to stop early. False: training.train holds that split out before calling `fit`. Either way
    # the model never trains on the rows the export calibrates and profiles on.
    carves_validation: ClassVar[bool] = False
    # True where the served graph expects texts lower-cased by the runtime (Python's str.lower)
    lowercase_input: bool = False

    @property
    def max_length(self) -> int | None:
        """Tokens kept per text (the server truncates the same way); None for string-input families."""
        return None

    @property
    def pad_id(self) -> int | None:
        """The padding token id the server pads batches with; None for string-input families."""
        return None

    @property
    @abstractmethod
    def labels(self) -> list[str]:
        """Class names in the order of `predict_proba` columns."""

    @abstractmethod
    def fit(
        self,
        texts: list[str],
        labels: list[str],
        on_epoch: Callable[[EpochStats], None] | None = None,
        always_train: int = 0,
        validation: tuple[list[str], list[str]] | None = None,
    ) -> ModelFamily:
        """Train on the given examples and return self; `on_epoch` hears about each epoch, if any.
        A family that carves its validation split keeps the last `always_train` examples (labelled
        feedback) out of it, so the split is the same rows with or without feedback; `validation`
        (texts, labels), the dataset's own split, replaces the carve."""

    @abstractmethod
    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Probabilities, shape (len(texts), len(self.labels))."""

    @abstractmethod
    def params(self) -> dict[str, object]:
        """Hyper-parameters worth logging."""

    @abstractmethod
    def save(self, directory: Path) -> None:
        """Write the trained model to `directory`."""

    @classmethod
    @abstractmethod
    def load(cls, directory: Path) -> ModelFamily:
        """Read a model written by `save`."""

    @abstractmethod
    def log_to_mlflow(self) -> str:
        """Log the model to the active MLflow run in its native flavour; return its model URI."""

    def predict(self, texts: list[str]) -> list[str]:
        """Most probable label per text."""
        probs = self.predict_proba(texts)
        return [self.labels[i] for i in probs.argmax(axis=1)]
