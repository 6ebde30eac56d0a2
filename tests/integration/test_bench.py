"""`textclf bench` end to end on the tiny BERT: every target runs for real on loopback, briefly.

Plumbing only: every field is present and failures are counted; no timing is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench.load import run_wrk, write_bodies
from bench.report import HALF_LOAD_VERDICT, RATIOS, ROWS, TARGETS
from tests.conftest import Workspace
from textclf.cli import app

pytestmark = pytest.mark.integration

LOAD_FIELDS = {"texts_per_s", "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", "statuses"}


def test_bench_measures_every_target(
    trained_bert: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(trained_bert.root)
    output = tmp_path / "bench.json"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- bench:start -->\nold\n<!-- bench:end -->\n")
    args = ["bench", "--model", "bert-int8", "--params", str(trained_bert.params_file), "--connections", "4"]
    args += ["--duration", "2", "--warmup", "1", "--output", str(output), "--readme", str(readme)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text())

    results = data["results"]
    loads = set(ROWS) - {"raw"}  # every HTTP target, BentoML's own batching included
    assert set(results) == {"raw", *loads}
    if results["pytriton"] is None:  # its venv could not be made here: skipped, and the output says why
        assert "pytriton: skipped (" in result.output
        loads.discard("pytriton")
    for name in loads:
        assert set(results[name]) >= LOAD_FIELDS, name
        assert results[name]["texts_per_s"] > 0, name
        assert results[name]["errors"] == 0, (name, results[name]["statuses"])
    assert results["served_batched"]["texts_per_request"] == 32
    raw = results["raw"]
    assert {"texts_per_s", "p50_ms", "p99_ms", "batch", "threads", "lanes", "processes", "sweep"} <= set(raw)
    mean = (raw["texts_per_s_before"] + raw["texts_per_s_after"]) / 2
    assert raw["texts_per_s"] == pytest.approx(mean, abs=0.1)
    assert 0 < results["served_half_load"]["offered_fraction"] < 1
    assert set(data["ratios"]) == set(RATIOS)
    assert all(
        value > 0 for name, value in data["ratios"].items() if "pytriton" not in name or value is not None
    )
    assert set(data["security_parts"]["parts_us"]) == {"token, scope and rate limit", "audit line to a file",
                                                       "audit line to stdout too"}  # fmt: skip
    assert {"zero_errors", HALF_LOAD_VERDICT, *TARGETS} <= set(data["targets_met"])
    assert data["machine"]["cores"] >= 1 and data["model"]["variant"] == "bert-int8"
    assert "| served_single |" in readme.read_text() and "old" not in readme.read_text()


def test_soak_reads_every_server_process_memory_through_the_load(
    trained_bert: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(trained_bert.root)
    output = tmp_path / "soak.json"
    args = ["bench", "--model", "bert-int8", "--params", str(trained_bert.params_file), "--connections", "2"]
    args += ["--targets", "soak", "--soak", "10", "--warmup", "1", "--output", str(output)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    soak = json.loads(output.read_text())["soak"]
    assert soak["requests"] > 0 and soak["errors"] == 0
    assert len(soak["samples"]) == 11  # the start, then after each of 10 slices
    first = soak["samples"][0]["rss_mb"]
    assert len(first) >= 3  # BentoML's arbiter and one worker per core at least
    assert set(soak["rss_growth_mb"]) == set(first) and all(mb > 0 for mb in first.values())
    assert "RSS at start, MB" in result.output


def test_switch_changes_the_served_model_under_load_and_reads_memory(
    trained_bert: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(trained_bert.root)
    output = tmp_path / "switch.json"
    args = ["bench", "--model", "bert-int8", "--params", str(trained_bert.params_file), "--connections", "2"]
    args += ["--targets", "switch", "--switch-to", "bert", "--warmup", "1", "--output", str(output)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    switch = json.loads(output.read_text())["switch"]
    assert switch["load"]["requests"] > 0 and switch["load"]["errors"] == 0
    first, other = switch["models"]
    assert [s["serving"] for s in switch["samples"]] == [first, other, first, other, first, other, first]
    assert all(len(s["rss_mb"]) >= 2 for s in switch["samples"])  # the arbiter and the workers
    assert "now serving" in " ".join(result.output.split())
    same = CliRunner().invoke(app, [*args[:-2], "--switch-to", "bert-int8", "--output", str(output)])
    assert same.exit_code == 1 and "is the benchmarked model itself" in " ".join(same.output.split())


def test_failed_requests_are_counted_not_hidden(server: str, tmp_path: Path) -> None:
    bodies = tmp_path / "bad.jsonl"
    bodies.write_text('{"texts": []}\n{"texts": ["ok"], "surprise": 1}\n')
    result = run_wrk(f"{server}/classify", bodies, texts_per_request=1, connections=2, duration_s=1)
    assert result.requests > 0
    assert result.errors == result.requests
    assert result.texts_per_s == 0
    assert set(result.statuses) == {"422"}


def test_a_healthy_server_answers_every_request(server: str, tmp_path: Path) -> None:
    bodies = write_bodies(["where is my card", "refund please"], 3, tmp_path / "ok.jsonl", count=10)
    result = run_wrk(f"{server}/classify", bodies, texts_per_request=3, connections=4, duration_s=1)
    assert result.requests > 0 and result.errors == 0
    assert result.texts_per_s == pytest.approx(3 * result.requests_per_s, rel=0.01)
