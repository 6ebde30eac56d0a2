"""Factory: a family name from params or the command line → its class (imported only when chosen)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from training.families.base import ModelFamily
from training.params import Params

FAMILY_FILE = "family.json"
# Lazy on purpose: choosing logreg never imports torch or transformers.
_CLASSES = {
    "logreg": "training.families.logreg:LogregFamily",
    "lstm": "training.families.lstm:LstmFamily",
    "bert": "training.families.bert:BertFamily",
}
FAMILIES: tuple[str, ...] = tuple(_CLASSES)


class UnknownFamilyError(ValueError):
    """The requested model family does not exist."""


def family_class(name: str) -> type[ModelFamily]:
    try:
        module, cls = _CLASSES[name].split(":")
    except KeyError:
        raise UnknownFamilyError(
            f"unknown model family {name!r}; choose one of: {', '.join(FAMILIES)}"
        ) from None
    return getattr(importlib.import_module(module), cls)


def create_family(name: str, params: Params) -> ModelFamily:
    """A fresh, untrained model of the named family configured from params.yaml."""
    cls = family_class(name)
    return cls(getattr(params, name))  # type: ignore[call-arg]


def save_family(model: ModelFamily, directory: Path) -> None:
    """Save a model with a marker that says which family reads it back."""
    model.save(directory)
    (directory / FAMILY_FILE).write_text(json.dumps({"family": model.name}), encoding="utf-8")


def load_family(directory: Path) -> ModelFamily:
    """Load any saved model, whatever its family."""
    marker = directory / FAMILY_FILE
    if not marker.is_file():
        raise FileNotFoundError(f"{directory}: not a saved model (no {FAMILY_FILE})")
    name = json.loads(marker.read_text(encoding="utf-8"))["family"]
    return family_class(name).load(directory)
