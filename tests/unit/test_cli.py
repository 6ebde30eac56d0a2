"""The textclf command: clear errors and exit codes for the mistakes people make."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from tests.conftest import Workspace, make_workspace
from textclf.cli import app

runner = CliRunner()


def test_help_lists_every_job() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("validate", "train", "export", "evaluate", "build", "serve", "predict-batch"):
        assert command in result.output


def test_unknown_family() -> None:
    result = runner.invoke(app, ["train", "--model", "gpt"])
    assert result.exit_code == 1
    assert "unknown model family 'gpt'" in result.output


def test_missing_params_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", "--params", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 1 and "parameters file not found" in result.output


def test_invalid_params_are_explained(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("logreg:\n  C: -1\n")
    result = runner.invoke(app, ["validate", "--params", str(bad)])
    assert result.exit_code == 1 and "logreg.C" in result.output


def test_validate_reports_bad_data(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    (ws.root / "data" / "test.csv").write_text("text,category\nhello,not_a_label\n")
    result = runner.invoke(app, ["validate", "--params", str(ws.params_file)])
    assert result.exit_code == 1
    assert "never seen in train: ['not_a_label']" in result.output


def test_export_before_train_says_what_to_run(tmp_path: Path, monkeypatch, trained_logreg: Workspace) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["export", "--model", "logreg", "--params", str(trained_logreg.params_file)])
    assert result.exit_code == 1 and "textclf train --model logreg" in result.output


def test_build_without_a_champion_says_what_to_run(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path)
    result = runner.invoke(app, ["build", "--params", str(ws.params_file)])
    assert result.exit_code == 1 and "no champion in MLflow yet" in result.output


def test_serving_without_signing_keys_says_what_to_run(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TEXTCLF_AUTH_DIR", str(tmp_path / "no-keys"))
    result = runner.invoke(app, ["serve", "--model", "logreg"])
    assert result.exit_code == 1 and "run `textclf auth init` first" in " ".join(result.output.split())


def test_serving_an_unexported_variant_says_what_to_run(tmp_path: Path, monkeypatch) -> None:
    ws = make_workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTCLF_AUTH", "false")
    result = runner.invoke(app, ["serve", "--model", "bert-int8", "--params", str(ws.params_file)])
    assert result.exit_code == 1 and "textclf export --model bert" in result.output
