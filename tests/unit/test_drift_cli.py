"""`textclf drift`: real profiles and a real model folder on disk, through the real command line."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from monitoring.profiles import profile_columns, write_profile, write_reference
from tests.unit.test_drift import CLASSES, columns
from textclf.cli import app
from textclf.cli.monitor import EXIT_DRIFT, EXIT_INPUT, EXIT_NO_DRIFT, EXIT_NO_VERDICT, parse_duration
from textclf.core.contract import REFERENCE_FILE, ModelMetadata, write_model_folder
from textclf.core.features import FEATURES

VERSION = "a1b2c3d4e5f60718"
runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.output


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A model folder by the contract (the graph is never loaded here) with its drift reference."""
    folder = tmp_path / "model"
    metadata = ModelMetadata(family="logreg", version=VERSION, input_kind="text", data_sha256="0" * 64)
    write_model_folder(folder, b"not loaded by drift", list(CLASSES), metadata)
    write_reference(profile_columns(columns(1500, seed=0)), folder / REFERENCE_FILE)
    return folder


def served(folder: Path, cols: dict[str, np.ndarray], *, version: str = VERSION, age_s: float = 60) -> None:
    """Profiles as two server workers write them, `age_s` seconds ago."""
    half = len(cols["chars"]) // 2
    start = time.time() - age_s
    for worker, part in (("1", slice(0, half)), ("2", slice(half, None))):
        view = profile_columns({k: v[part] for k, v in cols.items()})
        write_profile(view, folder, model_version=version, worker=worker, start=start)


def test_no_drift_prints_every_feature_and_exits_0(model: Path, tmp_path: Path) -> None:
    served(tmp_path / "profiles", columns(500, seed=1))
    code, out = run("drift", "--model", str(model), "--profiles", str(tmp_path / "profiles"))
    assert code == EXIT_NO_DRIFT, out
    assert all(name in out for name in FEATURES)
    assert "verdict: no drift" in out and "500 texts" in out and f"version {VERSION}" in out
    assert "model outputs (Bonferroni): no drift" in out


def test_drift_exits_1_and_writes_an_html_report(model: Path, tmp_path: Path) -> None:
    served(tmp_path / "profiles", columns(500, seed=2, confidence=(2, 2)))
    page = tmp_path / "out" / "report.html"
    code, out = run("drift", "-m", str(model), "--profiles", str(tmp_path / "profiles"), "--html", str(page))
    assert code == EXIT_DRIFT, out
    assert "verdict: drift" in out and "model outputs (Bonferroni): drift" in out
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!doctype html>") and "Drift detected in" in html
    assert all(f"<h2>{name}</h2>" in html for name in FEATURES)
    assert html.count("data:image/png;base64,") == len(FEATURES)
    assert 'src="http' not in html  # self-contained


def test_json_output_is_the_report(model: Path, tmp_path: Path) -> None:
    served(tmp_path / "profiles", columns(400, seed=3))
    code, out = run("drift", "-m", str(model), "--profiles", str(tmp_path / "profiles"), "--json")
    data = json.loads(out)
    assert code == EXIT_NO_DRIFT and data["verdict"] == "no drift" and data["texts"] == 400
    assert [f["feature"] for f in data["features"]] == list(FEATURES)
    assert data["context"]["profiles"].endswith("2 file(s)")


def test_default_folder_and_window_come_from_the_settings(
    model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "served-profiles"
    monkeypatch.setenv("TEXTCLF_PROFILES_DIR", str(folder))
    monkeypatch.setenv("TEXTCLF_DRIFT_WINDOW_S", "3600")
    served(folder, columns(400, seed=4), age_s=2 * 3600)  # outside the server's window
    assert run("drift", "-m", str(model))[0] == EXIT_NO_VERDICT
    assert run("drift", "-m", str(model), "--since", "3h")[0] == EXIT_NO_DRIFT
    monkeypatch.setenv("TEXTCLF_DRIFT_MIN_TEXTS", "500")
    assert run("drift", "-m", str(model), "--since", "3h")[0] == EXIT_NO_VERDICT


def test_too_few_texts_exits_3_with_its_own_message(model: Path, tmp_path: Path) -> None:
    served(tmp_path / "profiles", columns(150, seed=5, confidence=(1, 4)))
    code, out = run("drift", "-m", str(model), "--profiles", str(tmp_path / "profiles"), "--min-texts", "200")
    assert code == EXIT_NO_VERDICT and "verdict: too few texts (150 texts, fewer than 200)" in out


def test_profiles_of_another_model_version_give_no_verdict(model: Path, tmp_path: Path) -> None:
    served(tmp_path / "profiles", columns(500, seed=6, confidence=(1, 4)), version="0ldversion")
    code, out = run("drift", "-m", str(model), "--profiles", str(tmp_path / "profiles"))
    assert code == EXIT_NO_VERDICT and "0 file(s)" in out and "too few texts" in out


def test_a_corrupt_profile_is_reported_and_the_rest_still_judged(model: Path, tmp_path: Path) -> None:
    served(tmp_path / "profiles", columns(400, seed=7))
    (tmp_path / "profiles" / VERSION / f"{int(time.time())}-3.bin").write_bytes(b"WHY1 cut short")
    code, out = run("drift", "-m", str(model), "--profiles", str(tmp_path / "profiles"))
    assert code == EXIT_NO_DRIFT and "problem: profile" in out and "-3.bin" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "yesterday"], "--since takes a positive duration"),
        (["--since", "0h"], "--since takes a positive duration"),
        (["--alpha", "1.5"], "--alpha must lie between 0 and 1"),
        (["--min-texts", "0"], "--min-texts must be at least 1"),
        (["--profiles", "no/such/folder"], "does not exist or is not a folder"),
    ],
)
def test_bad_options_exit_2(model: Path, args: list[str], message: str) -> None:
    code, out = run("drift", "-m", str(model), *args)
    assert code == EXIT_INPUT and message in " ".join(out.split())


def test_a_model_folder_without_reference_exits_2(model: Path, tmp_path: Path) -> None:
    (model / REFERENCE_FILE).unlink()
    code, out = run("drift", "-m", str(model), "--profiles", str(tmp_path))
    assert code == EXIT_INPUT and "has no reference.bin" in " ".join(out.split())


def test_an_unreadable_reference_exits_2(model: Path, tmp_path: Path) -> None:
    (model / REFERENCE_FILE).write_bytes(b"WHY1 not really")
    code, out = run("drift", "-m", str(model), "--profiles", str(tmp_path))
    assert code == EXIT_INPUT and "cannot read the reference" in " ".join(out.split())


def test_a_folder_that_is_not_a_model_exits_2(tmp_path: Path) -> None:
    code, out = run("drift", "-m", str(tmp_path), "--profiles", str(tmp_path))
    assert code == EXIT_INPUT and "is not a usable model folder" in " ".join(out.split())
    code, out = run("drift", "-m", "no/such/model", "--profiles", str(tmp_path))
    assert code == EXIT_INPUT and "does not exist" in out


def test_a_tag_missing_from_the_store_exits_2(tmp_path: Path) -> None:
    code, out = run("drift", "-m", "textclf-logreg:nope", "--profiles", str(tmp_path))
    assert code == EXIT_INPUT and "no model textclf-logreg:nope in the BentoML store" in " ".join(out.split())


def test_a_stored_model_is_found_by_its_tag_and_checked_under_its_version(
    model: Path, tmp_path: Path
) -> None:
    from converters.store import save_to_store

    tag = save_to_store(model)
    assert tag == f"textclf-logreg:{VERSION}"
    served(tmp_path / "profiles", columns(500, seed=8, confidence=(2, 2)))
    code, out = run("drift", "-m", "textclf-logreg:latest", "--profiles", str(tmp_path / "profiles"))
    assert code == EXIT_DRIFT and tag in out


def test_a_reference_that_lacks_a_feature_exits_2(model: Path, tmp_path: Path) -> None:
    partial = columns(800, seed=9)
    del partial["entropy"]
    write_reference(profile_columns(partial), model / REFERENCE_FILE)
    served(tmp_path / "profiles", columns(300, seed=10))
    code, out = run("drift", "-m", str(model), "--profiles", str(tmp_path / "profiles"))
    assert code == EXIT_INPUT and "no entropy column" in " ".join(out.split())


def test_durations() -> None:
    assert [parse_duration(t) for t in ("90s", "30m", "1h", "2d", "1.5h", "1w")] == [
        90,
        1800,
        3600,
        172800,
        5400,
        604800,
    ]
