"""The validation split: carved from the prepared train split, the same way for every family.

PyTorch families early-stop on it (training.torch_loop.fit carves it); TF-IDF + LR has no use for one
while fitting, but training.train still holds it out. The export reproduces it to fit each variant's
temperature and to profile its drift reference on texts the model never trained on. One function, and
per family one fraction and seed (params.yaml `<family>.val_fraction`, `<family>.seed`), so every
stage that needs the split gets the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from training.data import load_texts_labels
from training.params import Params
from training.validate import PREPARED_LABEL, PREPARED_TEXT


class SplitError(ValueError):
    """The validation split cannot be carved as asked."""


@dataclass(frozen=True)
class Examples:
    texts: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.texts)


def split_validation(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random train/validation indices (the test split is never used for model selection)."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = min(n - 1, max(1, round(n * fraction))) if fraction > 0 else 0
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def carve(texts: list[str], labels: list[str], fraction: float, seed: int) -> tuple[Examples, Examples]:
    """(training part, validation part) of the examples, by `split_validation`."""
    fit_idx, val_idx = split_validation(len(texts), fraction, seed)
    return (
        Examples([texts[i] for i in fit_idx], [labels[i] for i in fit_idx]),
        Examples([texts[i] for i in val_idx], [labels[i] for i in val_idx]),
    )


def _fraction_and_seed(params: Params, family: str) -> tuple[float, int]:
    section = getattr(params, family)
    return section.val_fraction, section.seed


def given_validation(params: Params) -> Examples | None:
    """The dataset's own validation split (data.validation_file, validated into the prepared folder)."""
    if params.data.validation_file is None:
        return None
    return Examples(*load_texts_labels(params.data.prepared_validation, PREPARED_TEXT, PREPARED_LABEL))


def training_part(params: Params, family: str, texts: list[str], labels: list[str]) -> Examples:
    """What a family that does not carve its own validation split trains on: the train split less the
    validation rows (all of it when the dataset has its own validation split). Every label must keep a
    training example (a classifier cannot learn a class it never saw), or SplitError names the labels."""
    if params.data.validation_file is not None:
        return Examples(texts, labels)
    fraction, seed = _fraction_and_seed(params, family)
    fit, _ = carve(texts, labels, fraction, seed)
    lost = sorted(set(labels) - set(fit.labels))
    if lost:
        raise SplitError(
            f"{family}.val_fraction={fraction} leaves no training example of: {', '.join(lost[:10])}; "
            "lower it or add examples"
        )
    return fit


def validation_examples(params: Params, family: str) -> Examples:
    """The validation rows `family` was held out from while training: the dataset's own validation split,
    else the rows carved from the prepared train split."""
    given = given_validation(params)
    if given is not None:
        return given
    fraction, seed = _fraction_and_seed(params, family)
    texts, labels = load_texts_labels(params.data.prepared_train, PREPARED_TEXT, PREPARED_LABEL)
    _, validation = carve(texts, labels, fraction, seed)
    if not len(validation):
        raise SplitError(f"{family} has no validation split: set {family}.val_fraction above 0")
    return validation
