"""Pipeline commands: validate → train → export → evaluate → select → build (what `dvc repro` runs)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from textclf import paths
from textclf.cli.common import (
    FamilyOption,
    ParamsOption,
    VariantOption,
    console,
    fail,
    family,
    load,
    print_json,
    variant,
)
from textclf.core.variants import CHAMPION, Variant

if TYPE_CHECKING:
    from training.params import Params

app = typer.Typer()


@app.command()
def validate(params_file: Path = ParamsOption) -> None:
    """Check the raw dataset and write the clean splits the pipeline trains on."""
    from training.validate import DataValidationError, prepare

    params = load(params_file)
    try:
        report = prepare(params.data, paths.REPORTS / "data.json")
    except DataValidationError as exc:
        raise fail(str(exc)) from None
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(
        f"[green]data ok:[/] {report.train_rows} train / {report.test_rows} test rows, {report.labels} labels"
    )


@app.command()
def train(model: str = FamilyOption, params_file: Path = ParamsOption) -> None:
    """Train a model family, evaluate it on the test split and register it in MLflow."""
    model = family(model)
    from training.train import train as run_training

    params = load(params_file)
    if not params.data.prepared_train.is_file():
        raise fail("no prepared data: run `textclf validate` (or `dvc repro`) first")
    with console.status(f"training {model}…"):
        result = run_training(model, params, paths.model_dir(model), paths.REPORTS)
    console.print(
        f"[green]{model}:[/] accuracy {result.metrics['accuracy']:.4f}, "
        f"macro-F1 {result.metrics['macro_f1']:.4f} in {result.train_seconds:.1f}s; "
        f"registered as version {result.registered_version} "
        "(`textclf select` applies the quality gate and chooses the champion)"
    )


@app.command()
def export(model: str = FamilyOption, params_file: Path = ParamsOption) -> None:
    """Convert a trained family to ONNX variants (fp32, and int8 where configured) and check parity."""
    model = family(model)
    from converters.export import export as run_export
    from converters.parity import ParityError

    params = load(params_file)
    if not (paths.model_dir(model) / "family.json").is_file():
        raise fail(f"no trained {model} model: run `textclf train --model {model}` first")
    try:
        with console.status(f"exporting {model} to ONNX…"):
            results = run_export(params, paths.model_dir(model), paths.onnx_dir(model), paths.REPORTS)
    except ParityError as exc:
        raise fail(str(exc)) from None
    for precision, r in results.items():
        console.print(
            f"[green]{Variant(model, precision)}:[/] labels agree on {r['label_agreement']:.2%}, "
            f"max gap {r['max_proba_diff']:.1e}, {r['onnx_bytes'] / 1e6:.1f} MB"
        )


@app.command()
def evaluate(model: str = FamilyOption, params_file: Path = ParamsOption) -> None:
    """Evaluate every exported variant of a family as the server runs it; writes reports/eval/."""
    model = family(model)
    from training.data import load_texts_labels
    from training.evaluate import evaluate_model_folder, headline
    from training.validate import PREPARED_LABEL, PREPARED_TEXT

    params = load(params_file)
    variants = sorted(p for p in paths.onnx_dir(model).glob("*") if p.is_dir())
    if not variants:
        raise fail(f"no exported {model} model: run `textclf export --model {model}` first")
    texts, labels = load_texts_labels(params.data.prepared_test, PREPARED_TEXT, PREPARED_LABEL)
    results = {}
    for folder in variants:
        with console.status(f"evaluating {model} {folder.name}…"):
            plot = paths.REPORTS / f"confusion_onnx_{model}_{folder.name}.png"
            results[folder.name] = headline(evaluate_model_folder(folder, texts, labels, plot))
    paths.EVALUATIONS.mkdir(parents=True, exist_ok=True)
    out = paths.EVALUATIONS / f"metrics_{model}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print_json(results)


@app.command()
def select(
    params_file: Path = ParamsOption,
    readme: Path | None = typer.Option(None, help="Also write the comparison table into this README."),
) -> None:
    """Compare every variant, choose the champion by the rule in params.yaml, point the MLflow alias at it."""
    from textclf.readme import replace_block
    from training.compare import NoChampionError, choose, collect, register_champion, table, write_reports

    params = load(params_file)
    missing = [f for f in params.families if not (paths.EVALUATIONS / f"metrics_{f}.json").is_file()]
    if missing:
        raise fail(f"not evaluated yet: {', '.join(missing)} (run `textclf evaluate --model NAME`)")
    candidates = collect(params.families, paths.EVALUATIONS, paths.ARTIFACTS / "onnx")
    try:
        champion = choose(candidates, params, _majority(params))
        register_champion(params, champion)
    except NoChampionError as exc:
        raise fail(str(exc)) from None
    write_reports(candidates, champion, params.registry.model_name, paths.REPORTS)
    markdown = table(candidates, champion)
    if readme is not None and not replace_block(readme, "comparison", markdown):
        console.print(f"[yellow]warning:[/] {readme} is missing or has no comparison markers; not updated")
    typer.echo(markdown)
    console.print(f"[green]champion:[/] {champion.variant} ({champion.model_tag})")


def _majority(params: Params) -> float:
    """The test split's majority-class share (the quality gate's relative baseline)."""
    from training.compare import majority_share
    from training.data import load_texts_labels

    if not params.data.prepared_test.is_file():
        return 0.0
    return majority_share(load_texts_labels(params.data.prepared_test, "text", "label")[1])


@app.command()
def build(model: str = VariantOption, params_file: Path = ParamsOption) -> None:
    """Save a variant to the BentoML model store and build the Bento that serves it."""
    from converters.bundle import build_bento

    chosen, folder = variant(model, params_file)
    with console.status("building the Bento…"):
        result = build_bento(folder, paths.bento_record(model))
    console.print(f"[green]built[/] {result['bento']} serving {chosen} ({result['model']})")


@app.command()
def repro(
    model: str = typer.Option(
        CHAMPION,
        "--model",
        "-m",
        help="champion: the whole pipeline (every family, select, build); a variant or family: "
        "only its family's stages up to evaluation.",
    ),
) -> None:
    """Reproduce the DVC pipeline (cached stages are skipped), then show its metrics."""
    target = [] if model == CHAMPION else [f"evaluate@{_family_of(model)}"]
    dvc = str(Path(sys.executable).with_name("dvc"))
    for argv in ([dvc, "repro", *target], [dvc, "metrics", "show"]):
        if subprocess.run(argv, check=False).returncode != 0:
            raise fail(f"`{' '.join(argv[1:])}` failed (its output is above)")


def _family_of(name: str) -> str:
    from textclf.core.variants import VariantError

    try:
        return family(Variant.parse(name).family)
    except VariantError as exc:
        raise fail(str(exc)) from None
