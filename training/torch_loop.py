"""The training loop shared by the PyTorch families (LSTM, BERT).

Texts arrive already tokenised (lists of token ids from a `tokenizers` tokenizer — the same one the
server runs), so batches are padded only to their own longest text, and texts of similar length are
batched together. Linear warm-up then decay, gradient clipping, early stopping on a validation split
carved from train (training.splits, which the export reproduces), fixed seeds, a progress bar and one
callback per epoch (for MLflow).
"""

from __future__ import annotations

import copy
import math
import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sklearn.metrics import f1_score
from torch import nn

from training.epochs import EpochStats, LoopConfig
from training.params import TorchParams
from training.splits import split_validation  # the one carve, shared with export (and logreg)

Forward = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]
BUCKET_BATCHES = 50  # texts are sorted by length within windows of this many batches


def loop_config(p: TorchParams) -> LoopConfig:
    """The loop's settings from a family's parameters."""
    return LoopConfig(
        epochs=p.epochs,
        batch_size=p.batch_size,
        lr=p.lr,
        weight_decay=p.weight_decay,
        warmup_ratio=p.warmup_ratio,
        patience=p.patience,
        val_fraction=p.val_fraction,
        seed=p.seed,
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def length_batches(
    lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None
) -> list[np.ndarray]:
    """Batches of indices with similar lengths (little padding); shuffled when `rng` is given."""
    index = rng.permutation(len(lengths)) if rng is not None else np.arange(len(lengths))
    window = batch_size * BUCKET_BATCHES
    batches: list[np.ndarray] = []
    for start in range(0, len(index), window):
        chunk = index[start : start + window]
        chunk = chunk[np.argsort(lengths[chunk], kind="stable")]
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    if rng is not None:
        rng.shuffle(batches)  # type: ignore[arg-type]
    return batches


def pad(ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad to the longest sequence: (input_ids, attention_mask), both int64."""
    width = max(1, max(len(x) for x in ids))
    input_ids = torch.full((len(ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for row, seq in enumerate(ids):
        input_ids[row, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        mask[row, : len(seq)] = 1
    return input_ids, mask


def linear_warmup_decay(total_steps: int, warmup_ratio: float) -> Callable[[int], float]:
    warmup = max(1, int(total_steps * warmup_ratio))

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return factor


@torch.inference_mode()
def predict_logits(
    model: nn.Module, ids: Sequence[Sequence[int]], pad_id: int, forward: Forward, batch_size: int = 64
) -> np.ndarray:
    """Logits for every sequence, computed in length-sorted batches, returned in input order."""
    model.eval()
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    out: np.ndarray | None = None
    for batch in length_batches(lengths, batch_size):
        input_ids, mask = pad([ids[i] for i in batch], pad_id)
        logits = forward(model, input_ids, mask).float().numpy()
        if out is None:
            out = np.zeros((len(ids), logits.shape[1]), dtype=np.float32)
        out[batch] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


def fit(
    model: nn.Module,
    ids: Sequence[Sequence[int]],
    targets: np.ndarray,
    config: LoopConfig,
    pad_id: int,
    forward: Forward,
    on_epoch: Callable[[EpochStats], None] | None = None,
    description: str = "training",
    always_train: int = 0,
    validation: int = 0,
) -> list[EpochStats]:
    """Train `model` in place; keep the weights of the best validation epoch. The validation split is
    the last `validation` examples when given (a dataset's own split), else carved from all but the last
    `always_train` examples (labelled feedback), which always train."""
    seed_everything(config.seed)
    if validation:  # the dataset's own validation split: the last `validation` examples
        train_idx, val_idx = np.arange(len(ids) - validation), np.arange(len(ids) - validation, len(ids))
    else:
        carved = len(ids) - always_train
        train_idx, val_idx = split_validation(carved, config.val_fraction, config.seed)
        train_idx = np.concatenate([train_idx, np.arange(carved, len(ids))])
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    targets_t = torch.as_tensor(targets, dtype=torch.long)
    rng = np.random.default_rng(config.seed)
    steps_per_epoch = math.ceil(len(train_idx) / config.batch_size)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, linear_warmup_decay(steps_per_epoch * config.epochs, config.warmup_ratio)
    )
    loss_fn = nn.CrossEntropyLoss()
    history: list[EpochStats] = []
    best_score, best_state, stale = -math.inf, copy.deepcopy(model.state_dict()), 0
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, transient=True) as progress:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            model.train()
            batches = [train_idx[b] for b in length_batches(lengths[train_idx], config.batch_size, rng)]
            task = progress.add_task(f"{description} epoch {epoch}/{config.epochs}", total=len(batches))
            total_loss = 0.0
            for batch in batches:
                input_ids, mask = pad([ids[i] for i in batch], pad_id)
                loss = loss_fn(forward(model, input_ids, mask), targets_t[batch])
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                total_loss += loss.item() * len(batch)
                progress.advance(task)
            progress.remove_task(task)
            stats = _validate(model, ids, targets, val_idx, pad_id, forward, config.batch_size)
            record = EpochStats(
                epoch=epoch,
                train_loss=total_loss / max(1, len(train_idx)),
                val_loss=stats[0],
                val_accuracy=stats[1],
                val_macro_f1=stats[2],
                lr=scheduler.get_last_lr()[0],
                seconds=time.perf_counter() - started,
            )
            history.append(record)
            progress.console.print(
                f"{description} epoch {epoch}: train loss {record.train_loss:.4f}, "
                f"val loss {record.val_loss:.4f}, val accuracy {record.val_accuracy:.4f} "
                f"({record.seconds:.0f}s)"
            )
            if on_epoch is not None:
                on_epoch(record)
            score = record.val_accuracy if len(val_idx) else -record.train_loss
            if score > best_score:
                best_score, best_state, stale = score, copy.deepcopy(model.state_dict()), 0
            else:
                stale += 1
                if stale >= config.patience:
                    break
    model.load_state_dict(best_state)
    model.eval()
    return history


def _validate(
    model: nn.Module,
    ids: Sequence[Sequence[int]],
    targets: np.ndarray,
    val_idx: np.ndarray,
    pad_id: int,
    forward: Forward,
    batch_size: int,
) -> tuple[float, float, float]:
    if len(val_idx) == 0:
        return math.nan, math.nan, math.nan
    logits = predict_logits(model, [ids[i] for i in val_idx], pad_id, forward, batch_size * 2)
    truth = targets[val_idx]
    loss = float(nn.functional.cross_entropy(torch.from_numpy(logits), torch.as_tensor(truth)))
    predicted = logits.argmax(axis=1)
    return loss, float((predicted == truth).mean()), float(f1_score(truth, predicted, average="macro"))
