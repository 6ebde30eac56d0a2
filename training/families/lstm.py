"""Embedding + (bi)LSTM + classifier, with its own WordPiece tokenizer learned from the training texts."""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer
from torch import nn

from training.families.torch_base import TOKENIZER_FILE, TorchFamily
from training.params import LstmParams
from training.tokenization import pad_id, train_wordpiece

WEIGHTS_FILE = "model.pt"
NEG_LARGE = -1e4  # masks padding out of the max-pool (finite: exports cleanly to ONNX)


def reverse_within_length(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Reverse each row's real tokens, leaving its padding at the end."""
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
    source = lengths.unsqueeze(1) - 1 - positions
    source = torch.where(source >= 0, source, positions)
    return torch.gather(ids, 1, source)


class LstmClassifier(nn.Module):
    """A bidirectional LSTM built from two forward LSTMs, the second over each text reversed.

    Unlike nn.LSTM(bidirectional=True) on padded input, every text's output is independent of how
    much padding its batch has — so the server may batch texts however it likes.
    """

    def __init__(self, vocab_size: int, n_labels: int, p: LstmParams, pad: int = 0):
        super().__init__()
        self.bidirectional = p.bidirectional
        self.embedding = nn.Embedding(vocab_size, p.embed_dim, padding_idx=pad)
        lstm = dict(
            input_size=p.embed_dim, hidden_size=p.hidden_size, num_layers=p.num_layers, batch_first=True
        )
        lstm["dropout"] = p.dropout if p.num_layers > 1 else 0.0
        self.forward_lstm = nn.LSTM(**lstm)
        self.backward_lstm = nn.LSTM(**lstm) if p.bidirectional else None
        directions = 2 if p.bidirectional else 1
        self.dropout = nn.Dropout(p.dropout)
        self.head = nn.Linear(2 * directions * p.hidden_size, n_labels)

    @staticmethod
    def _pool(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        weights = mask.unsqueeze(-1).to(states.dtype)
        mean = (states * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        peak = states.masked_fill(weights == 0, NEG_LARGE).max(1).values
        return torch.cat([mean, peak], dim=-1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        states, _ = self.forward_lstm(self.embedding(input_ids))
        features = [self._pool(states, attention_mask)]
        if self.backward_lstm is not None:
            reversed_ids = reverse_within_length(input_ids, attention_mask.sum(1))
            back, _ = self.backward_lstm(self.embedding(reversed_ids))
            features.append(self._pool(back, attention_mask))
        return self.head(self.dropout(torch.cat(features, dim=-1)))


class LstmFamily(TorchFamily):
    name = "lstm"
    params_class = LstmParams
    config_file = "config.json"

    def __init__(self, params: LstmParams | None = None):
        super().__init__(params or LstmParams())

    def _build(self, texts: list[str], n_labels: int) -> tuple[Tokenizer, nn.Module]:
        p = self.hparams
        assert isinstance(p, LstmParams)
        tokenizer = train_wordpiece(texts, p.vocab_size, p.max_length)
        return tokenizer, LstmClassifier(tokenizer.get_vocab_size(), n_labels, p, pad_id(tokenizer))

    @staticmethod
    def forward(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return model(input_ids, attention_mask)

    def save(self, directory: Path) -> None:
        assert self.model is not None and self.tokenizer is not None
        directory.mkdir(parents=True, exist_ok=True)
        torch.save(self.model.state_dict(), directory / WEIGHTS_FILE)
        self.tokenizer.save(str(directory / TOKENIZER_FILE))
        self._save_config(directory)

    @classmethod
    def load(cls, directory: Path) -> LstmFamily:
        family = cls._restore(directory)
        assert family.tokenizer is not None
        family.model = LstmClassifier(
            family.tokenizer.get_vocab_size(), len(family.labels), family.hparams, family.pad_id
        )
        family.model.load_state_dict(torch.load(directory / WEIGHTS_FILE, weights_only=True))
        family.model.eval()
        return family
