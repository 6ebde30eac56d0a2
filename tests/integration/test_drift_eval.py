"""`textclf drift-eval` end to end on the tiny TF-IDF model: its own reference, real whylogs windows,
every shift, one JSON and the README table. Plumbing and sanity, not the power figures (those need
banking77's size: the README's table comes from the real run)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.drift_eval import NO_SHIFT
from tests.conftest import Workspace
from textclf.cli import app

pytestmark = pytest.mark.integration


def test_drift_eval_measures_every_shift(
    trained_logreg: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(trained_logreg.root)
    output, readme = tmp_path / "drift_eval.json", tmp_path / "README.md"
    readme.write_text("# x\n<!-- drift_eval:start -->\nold\n<!-- drift_eval:end -->\n")
    args = ["drift-eval", "--model", "logreg", "--params", str(trained_logreg.params_file), "--windows", "4"]
    args += ["--window", "40", "--accuracy-window", "40", "--sizes", "20,40", "--held-out-classes", "2"]
    args += ["--output", str(output), "--readme", str(readme)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text())
    shifts = data["shifts"]
    assert set(shifts) == {"same", "balanced_test", "label_shift", "typos_2pct", "typos_10pct",
                           "truncated_half", "other_domain", "unseen_same", "unseen_intents"}  # fmt: skip
    for key, row in shifts.items():
        assert set(row["rate_by_window"]) == {"20", "40"}, key
        assert all(0 <= rate <= 1 for rate in row["rate_by_window"].values()), key
    # text from another domain looks nothing like five banking intents: every window is flagged
    assert shifts["other_domain"]["rate"] == 1.0
    assert "accuracy_estimate" not in shifts["other_domain"]  # no labels, no accuracy
    unseen = shifts["unseen_intents"]["accuracy_estimate"]
    assert unseen["true_accuracy"] == 0.0 and unseen["mae"] > 0  # classes it never saw: never right
    for key in NO_SHIFT:
        assert 0 <= shifts[key]["accuracy_estimate"]["true_accuracy"] <= 1
    assert data["false_alarm_rate"] == shifts["same"]["rate"]
    table = readme.read_text()
    assert "old" not in table and "another domain" in table and "(false alarms)" in table


def test_drift_eval_refuses_bad_options(trained_logreg: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained_logreg.root)
    base = ["drift-eval", "--model", "logreg", "--params", str(trained_logreg.params_file)]
    result = CliRunner().invoke(app, [*base, "--sizes", "ten"])
    assert result.exit_code == 1 and "--sizes takes comma-separated whole numbers" in result.output
    result = CliRunner().invoke(app, [*base, "--held-out-classes", "4"])
    assert result.exit_code == 1 and "must leave at least 2 of the 5 classes seen" in result.output
