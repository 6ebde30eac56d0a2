"""What the PyTorch families share: tokenise with `tokenizers`, train with the common loop, score."""

from __future__ import annotations

import json
import tempfile
from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Self

import numpy as np
import torch
from tokenizers import Tokenizer
from torch import nn

from textclf.core.cpus import available_cpus
from training import torch_loop
from training.epochs import EpochStats
from training.families.base import ModelFamily
from training.params import TorchParams
from training.tokenization import encode, pad_id, prepare_for_encoding

TOKENIZER_FILE = "tokenizer.json"


class TorchFamily(ModelFamily):
    """A token-based classifier: a `tokenizers` tokenizer feeding a torch module that returns logits."""

    input_kind = "tokens"  # the graph takes input_ids and attention_mask from `tokenizer`
    carves_validation = True  # torch_loop.fit early-stops on it
    params_class: ClassVar[type[TorchParams]]
    config_file: ClassVar[str]  # where save() records the parameters and labels

    def __init__(self, params: TorchParams):
        self.hparams = params
        self.tokenizer: Tokenizer | None = None
        self.model: nn.Module | None = None
        self._labels: list[str] = []
        self.history: list[EpochStats] = []

    @abstractmethod
    def _build(self, texts: list[str], n_labels: int) -> tuple[Tokenizer, nn.Module]:
        """A fresh tokenizer and untrained model for these training texts."""

    @staticmethod
    @abstractmethod
    def forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits for a padded batch."""

    @property
    def labels(self) -> list[str]:
        return self._labels

    def _save_config(self, directory: Path) -> None:
        config = {"params": self.hparams.model_dump(), "labels": self._labels}
        (directory / self.config_file).write_text(json.dumps(config, indent=2), encoding="utf-8")

    @classmethod
    def _restore(cls, directory: Path) -> Self:
        """A family with the saved parameters, labels and tokenizer; the subclass adds the weights."""
        config = json.loads((directory / cls.config_file).read_text(encoding="utf-8"))
        family = cls(cls.params_class(**config["params"]))
        family._labels = config["labels"]
        family.tokenizer = prepare_for_encoding(
            Tokenizer.from_file(str(directory / TOKENIZER_FILE)), family.hparams.max_length
        )
        return family

    @property
    def max_length(self) -> int:
        return self.hparams.max_length

    @property
    def pad_id(self) -> int:
        assert self.tokenizer is not None
        return pad_id(self.tokenizer)

    def fit(
        self,
        texts: list[str],
        labels: list[str],
        on_epoch: Callable[[EpochStats], None] | None = None,
        always_train: int = 0,
        validation: tuple[list[str], list[str]] | None = None,
    ) -> TorchFamily:
        p = self.hparams
        torch.set_num_threads(p.threads or available_cpus())  # 0: the CPUs this process may use
        torch_loop.seed_everything(p.seed)
        self._labels = sorted(set(labels))
        index = {label: i for i, label in enumerate(self._labels)}
        self.tokenizer, self.model = self._build(texts, len(self._labels))
        val_texts, val_labels = validation or ([], [])
        self.history = torch_loop.fit(
            self.model,
            encode(self.tokenizer, texts + val_texts),
            np.array([index[label] for label in labels + val_labels]),
            torch_loop.loop_config(p),
            self.pad_id,
            self.forward,
            on_epoch=on_epoch,
            description=self.name,
            always_train=always_train,
            validation=len(val_texts),
        )
        return self

    def encode(self, texts: list[str]) -> list[list[int]]:
        assert self.tokenizer is not None, "fit or load the model first"
        return encode(self.tokenizer, texts)

    def logits(self, texts: list[str]) -> np.ndarray:
        assert self.model is not None, "fit or load the model first"
        return torch_loop.predict_logits(self.model, self.encode(texts), self.pad_id, self.forward)

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return torch_loop.softmax(self.logits(texts))

    def params(self) -> dict[str, object]:
        return self.hparams.model_dump()

    def log_to_mlflow(self) -> str:
        import mlflow
        import mlflow.pytorch

        info = mlflow.pytorch.log_model(
            self.model,
            name="model",
            serialization_format="pickle",  # pt2 would trace forward with an input example
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
        assert self.tokenizer is not None
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tokenizer.json"
            self.tokenizer.save(str(path))
            mlflow.log_artifact(str(path), "tokenizer")
        return info.model_uri
