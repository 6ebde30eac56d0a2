"""Factory: a family name from params or the command line → its class."""

from __future__ import annotations

import json
from pathlib import Path

from training.families.base import ModelFamily
from training.params import Params

FAMILY_FILE = "family.json"


class UnknownFamilyError(ValueError):
    """The requested model family does not exist."""


def _registry() -> dict[str, type[ModelFamily]]:
    # Imported lazily so that choosing logreg never imports torch.
    from training.families.logreg import LogregFamily

    return {LogregFamily.name: LogregFamily}


FAMILIES: tuple[str, ...] = ("logreg",)


def family_class(name: str) -> type[ModelFamily]:
    try:
        return _registry()[name]
    except KeyError:
        raise UnknownFamilyError(
            f"unknown model family {name!r}; choose one of: {', '.join(FAMILIES)}"
        ) from None


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
