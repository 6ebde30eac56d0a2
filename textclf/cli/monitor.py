"""Monitoring commands: `textclf drift`, the drift check a person runs (the server runs the same one).

It reads the whylogs profiles the server's workers wrote for one model version, merges the ones in the
window, compares them with the reference profile the model folder ships, prints a verdict per feature
and overall, and can write the HTML report. Exit codes say the verdict so scripts and cron jobs can act
on it: 0 no drift, 1 drift, 2 an input it cannot use, 3 no verdict (too few texts in the window).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from textclf.cli.common import ParamsOption, console, fail

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_INPUT, EXIT_NO_VERDICT = 0, 1, 2, 3
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}

app = typer.Typer()


@dataclass(frozen=True)
class ModelRef:
    """The model a check is about: a name to show, the folder holding its reference, its version (the
    folder name of its profiles: the BentoML tag's version, which is the metadata's version)."""

    name: str
    folder: Path
    version: str


def parse_duration(text: str) -> float:
    """`30m`, `1h`, `2d`, `90s`, `1w` → seconds."""
    match = _DURATION.match(text)
    if match is None or float(match[1]) <= 0:
        raise ValueError(f"--since takes a positive duration like 30m, 1h or 2d, not {text!r}")
    return float(match[1]) * _UNIT_S[match[2]]


@app.command()
def drift(
    model: str | None = typer.Option(
        None,
        "--model",
        "-m",
        help="Model: a BentoML tag (textclf-bert-int8:VERSION), a model folder, a variant name or champion "
        "(default: TEXTCLF_MODEL, the one the server serves).",
    ),
    since: str | None = typer.Option(
        None,
        "--since",
        help="Window: profiles started this long ago or later (30m, 1h, 2d) or `all`. Default: the server's "
        "window (TEXTCLF_DRIFT_WINDOW_S); with --profiles, all of them.",
    ),
    profiles: Path | None = typer.Option(
        None, "--profiles", help="Profiles folder (default: TEXTCLF_PROFILES_DIR, else HOME/profiles)."
    ),
    html_path: Path | None = typer.Option(None, "--html", help="Also write the HTML report here."),
    alpha: float | None = typer.Option(
        None, help="False-alarm rate of the whole check (default: TEXTCLF_DRIFT_ALPHA)."
    ),
    min_texts: int | None = typer.Option(
        None, "--min-texts", help="Fewest texts for a verdict (default: TEXTCLF_DRIFT_MIN_TEXTS)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON instead of a table."),
    params_file: Path = ParamsOption,
) -> None:
    """Check the served traffic for drift against the model's reference profile.

    Exit: 0 no drift, 1 drift, 2 unusable input (model, folder, reference), 3 no verdict (too few texts)."""
    from monitoring.drift import DRIFT, NO_DRIFT, DriftError, check_drift
    from monitoring.profiles import ProfileError, read_window
    from textclf.core.settings import SettingsError, load_settings

    try:
        settings = load_settings()
    except SettingsError as exc:
        raise fail(str(exc), EXIT_INPUT) from None
    alpha = settings.drift_alpha if alpha is None else alpha
    min_texts = settings.drift_min_texts if min_texts is None else min_texts
    if not 0 < alpha < 1:
        raise fail(f"--alpha must lie between 0 and 1, got {alpha}", EXIT_INPUT)
    if min_texts < 1:
        raise fail(f"--min-texts must be at least 1, got {min_texts}", EXIT_INPUT)
    folder = settings.path("profiles_dir") if profiles is None else profiles
    if since is None:
        since = "all" if profiles is not None else f"{settings.drift_window_s}s"
    try:
        start = None if since.strip().lower() == "all" else time.time() - parse_duration(since)
    except ValueError as exc:
        raise fail(str(exc), EXIT_INPUT) from None
    if profiles is not None and not profiles.is_dir():
        raise fail(f"profiles folder {profiles} does not exist or is not a folder", EXIT_INPUT)

    ref = resolve_model(model or settings.model or "champion", params_file)  # as `make run` serves
    reference = load_reference(ref.folder)
    try:
        window = read_window(folder, model_version=ref.version, since=start)
        report = check_drift(window.view, reference, alpha=alpha, min_texts=min_texts)
    except (ProfileError, DriftError) as exc:
        raise fail(str(exc), EXIT_INPUT) from None
    report = replace(report, problems=[f"profile {p}" for p in window.problems] + report.problems)
    context = {
        "model": f"{ref.name} (version {ref.version})",
        "profiles": f"{folder}/{ref.version}: {window.files} file(s)",
        "window": "all profiles" if start is None else f"since {_when(start)} ({since})",
    }
    if html_path is not None:
        from monitoring.report import write_html

        try:
            write_html(html_path, report, window.view, reference, context)
        except OSError as exc:
            raise fail(f"cannot write {html_path}: {exc.strerror or exc}", EXIT_INPUT) from None
    if as_json:
        typer.echo(json.dumps({"context": context, **report.to_dict()}, indent=2))
    else:
        print_report(report, context)
    if html_path is not None:
        console.print(f"report written to {html_path}")
    if report.verdict == DRIFT:
        raise typer.Exit(EXIT_DRIFT)
    if report.verdict != NO_DRIFT:
        raise typer.Exit(EXIT_NO_VERDICT)


def resolve_model(name: str, params_file: Path) -> ModelRef:
    """A folder path, a BentoML tag (`name:version`, `textclf-...`), or a variant name / champion (the
    pipeline's exported folder); exits with EXIT_INPUT when it names nothing usable."""
    from textclf.core.artifacts import ModelFiles
    from textclf.core.contract import ContractError, read_model_files
    from textclf.core.crypto import DataKeyError, SealedDataError
    from textclf.core.variants import STORE_PREFIX

    path = Path(name).expanduser()
    if path.is_dir():
        folder, shown, version = path, str(path), None
    elif ":" in name or name.startswith(STORE_PREFIX) or "/" in name:
        if "/" in name:
            raise fail(f"model folder {name} does not exist", EXIT_INPUT)
        folder, shown, version = _from_store(name)
    else:
        from textclf.cli.common import variant

        try:
            chosen, folder = variant(name, params_file)
        except typer.Exit:  # variant() printed why
            raise typer.Exit(EXIT_INPUT) from None
        shown, version = chosen.name, None
    if version is None:
        try:
            version = read_model_files(ModelFiles(folder))[1].version
        except (ContractError, DataKeyError, SealedDataError, OSError) as exc:
            raise fail(f"{folder} is not a usable model folder: {exc}", EXIT_INPUT) from None
    return ModelRef(name=shown, folder=Path(folder), version=str(version))


def _from_store(tag: str) -> tuple[Path, str, str]:
    import bentoml
    from bentoml.exceptions import BentoMLException, NotFound

    try:
        stored = bentoml.models.get(tag)
    except NotFound:
        raise fail(f"no model {tag} in the BentoML store (BENTOML_HOME)", EXIT_INPUT) from None
    except (BentoMLException, ValueError) as exc:
        raise fail(f"{tag!r} is not a usable model tag: {exc}", EXIT_INPUT) from None
    return Path(stored.path), str(stored.tag), str(stored.tag.version)


def load_reference(folder: Path):
    """The folder's reference profile, plain or sealed (decrypted in memory)."""
    from monitoring.profiles import ProfileError, view_from_bytes
    from textclf.core.artifacts import ModelFiles
    from textclf.core.contract import REFERENCE_FILE
    from textclf.core.crypto import DataKeyError, SealedDataError

    files = ModelFiles(folder)
    if not files.has(REFERENCE_FILE):
        raise fail(
            f"{folder} has no {REFERENCE_FILE} (the drift reference): re-export the model "
            "(`dvc repro`) so its folder ships one",
            EXIT_INPUT,
        )
    try:
        return view_from_bytes(files.read(REFERENCE_FILE))
    except (ProfileError, DataKeyError, SealedDataError, OSError) as exc:
        raise fail(f"cannot read the reference {folder / REFERENCE_FILE}: {exc}", EXIT_INPUT) from None


def print_report(report, context: dict[str, str]) -> None:
    """A table per feature, then the group and overall verdicts (stdout)."""
    out = Console()
    for key, value in context.items():
        out.print(f"[dim]{key}:[/] {value}")
    if report.features:
        table = Table(show_edge=False, header_style="bold")
        for column in ("feature", "test", "statistic", "p value", "p (Holm)", "Hellinger", "verdict"):
            left = column in ("feature", "test", "verdict")
            table.add_column(column, justify="left" if left else "right", no_wrap=True, min_width=len(column))
        for f in report.features:
            verdict = (
                "[bold red]drift[/]"
                if f.drifted
                else "[green]ok[/]"
                if f.p_value is not None
                else "[dim]not tested[/]"
            )
            table.add_row(
                f.feature,
                f.test,
                _num(f.statistic),
                _p(f.p_value),
                _p(f.p_adjusted),
                _num(f.hellinger),
                verdict,
            )
        out.print(table)
    if report.model_outputs is not None:
        group = report.model_outputs
        state = "[bold red]drift[/]" if group.drifted else "[green]no drift[/]"
        out.print(f"model outputs (Bonferroni): {state}, p = {_p(group.p_value)}")
    if report.estimated_accuracy is not None:
        ref = report.reference_confidence
        tail = "" if ref is None else f" (reference {ref:.3f})"
        out.print(f"estimated accuracy (mean confidence): {report.estimated_accuracy:.3f}{tail}")
    for problem in report.problems:
        out.print(f"[yellow]problem:[/] {problem}")
    colour = {"drift": "bold red", "no drift": "bold green"}.get(report.verdict, "bold yellow")
    detail = (
        f"{report.texts:,} texts, fewer than {report.min_texts:,}"
        if report.verdict == "too few texts"
        else f"{report.texts:,} texts, overall p = {_p(report.p_value)} (Holm, alpha {report.alpha:g})"
    )
    out.print(f"[{colour}]verdict: {report.verdict}[/] ({detail})")


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.3g}"


def _p(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value:.1e}" if value < 1e-3 else f"{value:.3f}"


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))
