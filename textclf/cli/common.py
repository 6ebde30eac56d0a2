"""What every `textclf` command shares: the console, clear failures, params and model options."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console

from textclf import paths
from textclf.core.variants import CHAMPION, Variant, VariantError

if TYPE_CHECKING:
    from textclf.core.settings import Settings
    from training.params import Params

console = Console(stderr=True)

ParamsOption = typer.Option(Path("params.yaml"), "--params", help="Pipeline parameters file.")
FamilyOption = typer.Option("logreg", "--model", "-m", help="Model family: logreg, lstm or bert.")
VariantOption = typer.Option(
    CHAMPION,
    "--model",
    "-m",
    help="Variant (family, or family-int8: logreg, lstm, lstm-int8, bert, bert-int8) or champion "
    "(the MLflow alias).",
)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error and return the Exit to raise (`raise fail(...)`)."""
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def cli_settings() -> Settings:
    """The TEXTCLF_* settings, or a clear failure naming the variable."""
    from textclf.core.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        raise fail(str(exc)) from None


def load(params_file: Path) -> Params:
    from training.params import ParamsError, load_params

    try:
        return load_params(params_file)
    except ParamsError as exc:
        raise fail(str(exc)) from None


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2))


def family(name: str) -> str:
    """A family name the factory knows; a variant name gets told which family it belongs to."""
    from training.families import FAMILIES

    if name in FAMILIES:
        return name
    try:
        variant = Variant.parse(name)
    except VariantError:
        variant = None
    if variant is not None and variant.family in FAMILIES:
        raise fail(f"{name!r} is a variant; this command takes its family: --model {variant.family}")
    raise fail(f"unknown model family {name!r}; choose one of: {', '.join(FAMILIES)}")


def _champion(params: Params) -> tuple[Variant, Path]:
    """The MLflow champion's variant and model folder: its exported folder, or, when its family was
    retrained since (the folder holds a challenger), the champion's own copy in the BentoML store."""
    from textclf.core.contract import read_model_folder
    from training import tracking

    version = tracking.version_by_alias(params.registry.model_name, tracking.CHAMPION)
    if version is None or "variant" not in version.tags:
        raise fail("no champion in MLflow yet: run `dvc repro` (or `textclf select`), or pass --model")
    chosen, tag = Variant.parse(version.tags["variant"]), version.tags.get("bentoml_model")
    folder = paths.variant_dir(chosen)
    exported = read_model_folder(folder)[1].store_tag if (folder / "model.onnx").is_file() else None
    if tag and exported != tag:
        import bentoml
        from bentoml.exceptions import NotFound

        try:
            return chosen, Path(bentoml.models.get(tag).path)
        except NotFound:
            raise fail(
                f"the champion {tag} is in neither {folder} nor the BentoML store: run the pipeline"
            ) from None
    if exported is None:
        raise fail(f"no exported model {chosen.name!r}: run `textclf export --model {chosen.family}` first")
    return chosen, folder


def variant(name: str, params_file: Path) -> tuple[Variant, Path]:
    """A variant name, or `champion` (the MLflow alias) → (variant, its exported model folder)."""
    from training.families import FAMILIES

    if name == CHAMPION:
        return _champion(load(params_file))
    else:
        try:
            chosen = Variant.parse(name)
        except VariantError as exc:
            raise fail(str(exc)) from None
        if chosen.family not in FAMILIES:
            raise fail(f"unknown model family {chosen.family!r}; choose one of: {', '.join(FAMILIES)}")
    folder = paths.variant_dir(chosen)
    if not (folder / "model.onnx").is_file():
        raise fail(f"no exported model {chosen.name!r}: run `textclf export --model {chosen.family}` first")
    return chosen, folder
