"""Which model the service serves when TEXTCLF_MODEL is not set: the champion the served-model file names
(`textclf promote` writes it) when the server follows it, else what `make run` starts, so that
`bentoml serve textclf:latest` and `bentoml serve` in the project root agree: the model the Bento was
built with (its bento.yaml), or from a source checkout the pipeline's champion
(artifacts/bento/champion.json)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from textclf.core.served_model import read_served_model
from textclf.core.settings import Settings

BENTO_INFO = "bento.yaml"
CHAMPION_RECORD = Path("artifacts") / "bento" / "champion.json"
STORE_PREFIX = "textclf-"


class NoModelError(RuntimeError):
    """Nothing says which model to serve."""


def followed_champion(settings: Settings) -> str | None:
    """The champion the served-model file names, when this server follows it and the file exists."""
    if not settings.follow:
        return None
    found = read_served_model(settings.served_model_path)
    return found.champion if found is not None else None


def default_model(service_file: Path) -> str:
    """The store tag to serve: a built Bento's own model (`<bento>/src/bentos/service.py` sits two folders
    below its bento.yaml), else the champion the pipeline recorded next to the source tree."""
    here = service_file.resolve()
    info = here.parents[2] / BENTO_INFO
    if info.is_file():
        tags = _bento_models(info)
        if len(tags) == 1:
            return tags[0]
        raise NoModelError(f"{info} lists {len(tags)} textclf models ({tags}); set TEXTCLF_MODEL to one")
    record = here.parents[1] / CHAMPION_RECORD
    if record.is_file():
        try:
            return str(json.loads(record.read_text(encoding="utf-8"))["model"])
        except (ValueError, KeyError, TypeError) as exc:
            raise NoModelError(f"{record} is unreadable ({exc}); run `make pipeline` again") from None
    raise NoModelError(
        "no model to serve: set TEXTCLF_MODEL to a store tag (`bentoml models list`), or run `make pipeline` "
        f"so that {CHAMPION_RECORD} names the champion"
    )


def _bento_models(info: Path) -> list[str]:
    data = yaml.safe_load(info.read_text(encoding="utf-8")) or {}
    tags = [m.get("tag", "") for service in data.get("services") or [] for m in service.get("models") or []]
    tags += [m.get("tag", "") for m in data.get("models") or []]
    return sorted({str(t) for t in tags if str(t).startswith(STORE_PREFIX)})
