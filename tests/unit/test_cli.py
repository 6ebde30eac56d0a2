"""The textclf command: every command is run here (a good path where it is cheap, else the mistake a
person makes first), with clear errors and exit codes. A new command without a case here fails."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tests.conftest import make_workspace
from textclf.cli import app

runner = CliRunner()


def command_paths(group: typer.Typer = app, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every runnable command, as the words that reach it (`("auth", "init")`)."""

    def walk(command: object, words: tuple[str, ...]) -> set[tuple[str, ...]]:
        subcommands = getattr(command, "commands", None)  # a group (typer's or click's)
        if subcommands:
            return {p for name, sub in subcommands.items() for p in walk(sub, (*words, name))}
        return {words}

    return walk(typer.main.get_command(group), prefix)


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh project folder (tiny dataset, params.yaml) as the working directory, own TEXTCLF_HOME."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TEXTCLF_HOME", str(tmp_path / "home"))
    return make_workspace(tmp_path)


def run(*args: str, stdin: str | None = None):
    result = runner.invoke(app, list(args), input=stdin)
    return result.exit_code, " ".join(result.output.split())


# command → (arguments after it, expected exit code, text the output must hold); "{params}" → params file
CASES: dict[tuple[str, ...], tuple[list[str], int, str]] = {
    ("validate",): (["--params", "{params}"], 0, "data ok: 200 train / 50 test rows, 5 labels"),
    ("train",): (["--model", "bert-int8"], 1, "'bert-int8' is a variant; this command takes its family"),
    ("export",): (
        ["--model", "logreg", "--params", "{params}"],
        1,
        "run `textclf train --model logreg` first",
    ),
    ("evaluate",): (["--model", "lstm"], 1, "run `textclf export --model lstm` first"),
    ("select",): (["--params", "{params}"], 1, "not evaluated yet: logreg"),
    ("build",): (["--params", "{params}"], 1, "no champion in MLflow yet"),
    ("repro",): (["--model", "gpt"], 1, "unknown model family 'gpt'"),
    ("retrain",): (["--params", "{params}"], 1, "no champion in the MLflow registry model"),
    ("promote",): (["--params", "{params}"], 1, "no champion in the MLflow registry model"),
    ("rollback",): (["--params", "{params}"], 1, "nothing to roll back to"),
    ("retrain-webhook",): (["--params", "{params}"], 1, "no way to authenticate Alertmanager"),
    ("serve",): (["--model", "logreg"], 1, "run `textclf auth init` first"),
    ("tls-cert",): (["--out", "certs", "--days", "2"], 0, "valid 2 days"),
    ("predict-spark",): (["missing.csv", "out.parquet"], 1, "input missing.csv does not exist"),
    ("model-archive",): (
        ["model.tar.gz", "--model", "logreg", "--params", "{params}"],
        1,
        "no exported model 'logreg'",
    ),
    ("predict-batch",): (["missing.csv", "-o", "out.csv"], 1, "input file missing.csv does not exist"),
    ("bench",): (["--targets", "warp"], 1, "unknown targets ['warp']"),
    ("drift",): (["--model", "logreg", "--params", "{params}"], 2, "no exported model 'logreg'"),
    ("drift-eval",): (["--model", "logreg", "--params", "{params}"], 1, "no exported model 'logreg'"),
    ("abstain-eval",): (["--families", "gpt", "--params", "{params}"], 1, "unknown model families ['gpt']"),
    ("readme",): (["--readme", "nothing.md", "--check"], 1, "stale generated block(s): settings"),
    ("token",): (["--sub", "ci", "--scope", "root"], 1, "scopes must be some of classify"),
    ("data", "add"): (
        ["data/train.csv", "--text-column", "text", "--label-column", "category", "--params", "{params}"],
        1,
        "is not a DVC repository",
    ),
    ("auth", "init"): ([], 0, "created the key ring"),
    ("auth", "add-client"): (["billing", "--scope", "classify"], 0, "client billing may ask for: classify"),
    ("auth", "add-user"): (["alice", "--scope", "classify", "--password-stdin"], 0, "user alice may ask"),
    ("auth", "remove"): (["client", "nobody"], 1, "nobody"),
    ("auth", "list"): ([], 1, "textclf auth init"),
    ("auth", "rotate-key"): ([], 0, "active key is now"),
    ("auth", "retire-key"): (["nokid"], 1, "textclf auth init"),
    ("auth", "data-key"): ([], 0, "data.key"),
}


def test_every_command_has_a_case() -> None:
    assert command_paths() == set(CASES)


@pytest.mark.parametrize("words", sorted(CASES), ids=" ".join)
def test_command_runs(words: tuple[str, ...], ws) -> None:
    args, code, text = CASES[words]
    if words == ("auth", "add-client") or words == ("auth", "add-user"):
        assert run("auth", "init")[0] == 0
    args = [a.replace("{params}", str(ws.params_file)) for a in args]
    exit_code, output = run(*words, *args, stdin="a long password!\n")
    assert (exit_code, text in output) == (code, True), output


def test_data_key_is_made_once_where_every_command_finds_it(ws, tmp_path: Path) -> None:
    from textclf.core.crypto import load_data_key

    assert load_data_key() is None
    assert run("auth", "data-key", "--if-missing")[0] == 0
    key = load_data_key()
    assert key is not None and (tmp_path / "home" / "data.key").stat().st_mode & 0o077 == 0
    assert run("auth", "data-key", "--if-missing")[1].startswith("kept the data key")
    assert load_data_key() == key
    code, output = run("auth", "data-key")
    assert code == 1 and "exists; --force replaces it" in output


def test_missing_params_file(tmp_path: Path) -> None:
    code, output = run("validate", "--params", str(tmp_path / "nope.yaml"))
    assert code == 1 and "parameters file not found" in output


def test_invalid_params_are_explained(tmp_path: Path) -> None:
    bad = tmp_path / "params.yaml"
    bad.write_text("logreg:\n  C: -1\n")
    code, output = run("validate", "--params", str(bad))
    assert code == 1 and "logreg.C" in output


def test_validate_reports_bad_data(ws) -> None:
    (ws.root / "data" / "test.csv").write_text("text,category\nhello,not_a_label\n")
    code, output = run("validate", "--params", str(ws.params_file))
    assert code == 1 and "never seen in train: ['not_a_label']" in output


def test_unknown_family_and_bad_variant_names(ws) -> None:
    assert run("train", "--model", "gpt")[1].endswith("choose one of: logreg, lstm, bert")
    code, output = run("build", "--model", "bert-fp16", "--params", str(ws.params_file))
    assert code == 1 and "unknown precision 'fp16'" in output


def test_serving_an_unexported_variant_says_what_to_run(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTCLF_AUTH", "false")
    code, output = run("serve", "--model", "bert-int8", "--params", str(ws.params_file))
    assert code == 1 and "textclf export --model bert" in output


def test_a_bad_setting_is_named(ws, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEXTCLF_TOKEN_TTL_S", "soon")
    code, output = run("token", "--sub", "ci", "--scope", "classify")
    assert code == 1 and "TEXTCLF_TOKEN_TTL_S must be an integer, got 'soon'" in output
