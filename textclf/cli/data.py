"""Data commands: bring your own labelled dataset into the pipeline (`data add`)."""

from __future__ import annotations

from pathlib import Path

import typer

from textclf.cli.common import ParamsOption, console, fail

app = typer.Typer()
_SHOW = 6  # removed results named in the summary


@app.command()
def add(
    path: Path = typer.Argument(
        ..., help="Labelled data: a CSV (with a header) or JSONL file.", show_default=False
    ),
    text_column: str = typer.Option(..., "--text-column", help="The column (JSONL: key) holding the text."),
    label_column: str = typer.Option(
        ..., "--label-column", help="The column (JSONL: key) holding the label."
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        help="Dataset name (data/raw/NAME, MLflow NAME-classifier); default: from the file name.",
    ),
    test: Path | None = typer.Option(
        None, "--test", help="Your own test split; else one is carved from PATH."
    ),
    validation: Path | None = typer.Option(
        None, "--validation", help="Your own validation split (optional)."
    ),
    test_fraction: float = typer.Option(
        0.2,
        "--test-fraction",
        help="Share of each label's texts carved into the test split (without --test).",
    ),
    seed: int = typer.Option(42, "--seed", help="Seed of the carved test split."),
    labels_file: Path | None = typer.Option(
        None,
        "--labels-file",
        help="The closed list of labels (JSON array); default: the train split's labels.",
    ),
    keep_gate: bool = typer.Option(
        False,
        "--keep-gate",
        help="Keep the gate's absolute floors (else null, and 0.1 over the majority class).",
    ),
    force: bool = typer.Option(False, "--force", help="Replace a dataset of the same name."),
    params_file: Path = ParamsOption,
) -> None:
    """Add a labelled dataset: copy (or split) it under data/raw/NAME, version it with DVC, point
    params.yaml at it, validate it, and clear the previous dataset's results."""
    from training.dataset_add import AddRequest, DatasetAddError, add_dataset

    request = AddRequest(
        source=path,
        text_column=text_column,
        label_column=label_column,
        name=name,
        test=test,
        validation=validation,
        labels_file=labels_file,
        test_fraction=test_fraction,
        seed=seed,
        params_file=params_file,
        force=force,
        keep_gate=keep_gate,
    )
    try:
        with console.status("checking and adding the dataset…"):
            result = add_dataset(request)
    except DatasetAddError as exc:
        raise fail(str(exc)) from None
    report = result.report
    split = (
        f"test carved: {request.test_fraction:g} of each label, seed {seed}" if result.carved else "your test"
    )
    console.print(
        f"[green]added {result.name}:[/] {result.directory} ({report.train_rows} train / "
        f"{report.test_rows} test rows, {report.labels} labels; {split}), versioned with DVC "
        f"({result.directory}.dvc)"
    )
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    for note in result.notes:
        console.print(f"[cyan]note:[/] {note}")
    if result.removed:
        shown = ", ".join(str(p) for p in result.removed[:_SHOW])
        more = f" and {len(result.removed) - _SHOW} more" if len(result.removed) > _SHOW else ""
        console.print(
            f"[cyan]note:[/] removed {len(result.removed)} result(s) of the previous dataset (the outputs of "
            "the stages that read it) and their dvc.lock entries; DVC's cache and git keep them: "
            f"{shown}{more}"
        )
    console.print(
        f"next: commit params.yaml, {result.directory}.dvc, {result.directory.parent}/.gitignore and the "
        "cleared results (reports/, dvc.lock), `dvc push` the data, then `make run` (or `textclf repro`) "
        "trains, selects and serves on it"
    )
