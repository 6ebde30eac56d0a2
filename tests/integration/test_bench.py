"""`textclf bench` end to end on the tiny BERT: every target runs for real on loopback, briefly.

Plumbing only: every field is present and failures are counted; no timing is asserted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bench.load import run_wrk, write_bodies
from bench.report import HALF_LOAD_VERDICT, RATIOS, ROWS, TARGETS, median_ratio
from bench.run import BATCH_PAIRS, RAW_PAIRS, Bench, BenchConfig, throughput_rows
from tests.conftest import Workspace
from tests.helpers import needs_java, tiny_rows
from textclf.cli import app
from textclf.core.settings import Settings

pytestmark = pytest.mark.integration

LOAD_FIELDS = {"texts_per_s", "requests_per_s", "p50_ms", "p95_ms", "p99_ms", "max_ms", "errors", "statuses"}


def test_bench_measures_every_target(
    trained_bert: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(trained_bert.root)
    output = tmp_path / "bench.json"
    readme = tmp_path / "README.md"
    readme.write_text("# x\n<!-- bench:start -->\nSTALE-BENCH-BLOCK\n<!-- bench:end -->\n")
    args = ["bench", "--model", "bert-int8", "--params", str(trained_bert.params_file), "--connections", "4"]
    args += ["--duration", "2", "--warmup", "1", "--output", str(output), "--readme", str(readme)]
    args += ["--batch-rows", "300,3000", "--batch-memory-model", ""]  # this workspace exports only BERT
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(output.read_text())

    results = data["results"]
    # every HTTP target of the default run, BentoML's batching included
    loads = set(ROWS) - {"raw", "batch", "spark"}
    assert set(results) == {"raw", "batch", "spark", *loads}
    assert [run["rows"] for run in results["batch"]["runs"] if run["purpose"] == "memory"] == [300, 3000]
    assert results["spark"]["texts_per_s"] > 0 and results["spark"]["labels_compared"] > 0
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
    assert any(s["pinned"] for s in raw["sweep"]) and not all(s["pinned"] for s in raw["sweep"])
    for name in ("served_single", "served_batched"):  # served/raw also in round pairs on one server
        assert len(results[name]["paired_with"]["raw"]) == RAW_PAIRS == len(results[name]["raw_rounds"])
        assert data["ratios"][f"{name}/raw"] == pytest.approx(
            median_ratio(results[name]["paired_with"]["raw"])
        )
    mean = (raw["texts_per_s_before"] + raw["texts_per_s_after"]) / 2
    assert raw["texts_per_s"] == pytest.approx(mean, abs=0.1)
    assert 0 < results["served_half_load"]["offered_fraction"] < 1
    assert set(data["ratios"]) == set(RATIOS)
    unmeasured = {name for name in RATIOS if "pytriton" in name or name.startswith("batch/")}
    assert all(
        value > 0 for name, value in data["ratios"].items() if name not in unmeasured or value is not None
    )
    assert set(data["security_parts"]["parts_us"]) == {"token, scope and rate limit", "audit line to a file",
                                                       "audit line to stdout too"}  # fmt: skip
    assert {"zero_errors", HALF_LOAD_VERDICT, *TARGETS} <= set(data["targets_met"])
    assert data["machine"]["cores"] >= 1 and data["model"]["variant"] == "bert-int8"
    assert "| served_single |" in readme.read_text() and "STALE-BENCH-BLOCK" not in readme.read_text()


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


def _tiny_config(
    built_bento: dict[str, str], trained_logreg: Workspace, tmp_path: Path, **settings: Any
) -> BenchConfig:
    """A short bench of the tiny logreg Bento (4 connections, 2 s per target) with `settings`."""
    return BenchConfig(
        variant="logreg",
        model_folder=trained_logreg.onnx_dir("logreg"),
        bento=built_bento["bento"],
        model_tag=built_bento["model"],
        texts=[text for text, _ in tiny_rows(10, seed=5)],
        workdir=tmp_path,
        connections=4,
        duration_s=2,
        warmup_s=1,
        **settings,
    )


def test_batch_target_runs_the_cli_and_reads_the_client_peak_memory(
    built_bento: dict[str, str], trained_logreg: Workspace, tmp_path: Path
) -> None:
    """The batch target on the tiny model, security on: predict-batch's throughput on a run sized to
    served_batched's window, next to served_batched, and the client's peak RSS at two sizes (the second on a
    'memory model' Bento, here the same one)."""
    lines: list[str] = []
    config = _tiny_config(
        built_bento,
        trained_logreg,
        tmp_path,
        targets=("batch",),
        batch_rows=(300, 3000),
        batch_memory_bento=(built_bento["bento"], built_bento["model"]),
    )
    home_profiles = Settings().path("profiles_dir")
    before = sorted(home_profiles.rglob("*.bin"))
    data = Bench(config, log=lines.append).run()
    results = data["results"]
    assert results["served_batched"]["texts_per_s"] > 0 and results["served_batched"]["errors"] == 0
    runs = results["batch"]["runs"]
    pairs = runs[:BATCH_PAIRS]
    for run in pairs:  # each sized to the load measured just before it
        assert run["rows"] == throughput_rows(
            run["paired_texts_per_s"], config.duration_s / 2, len(config.texts)
        )
    assert [run["rows"] for run in runs[BATCH_PAIRS:]] == [300, 3000]
    assert [run["purpose"] for run in runs] == [f"throughput {i}/{BATCH_PAIRS}" for i in (1, 2, 3)] + [
        "memory",
        "memory",
    ]
    assert [run["model"] for run in runs] == ["logreg"] * (BATCH_PAIRS + 1) + [built_bento["model"]]
    for run in runs:
        assert run["texts_per_s"] > 0 and run["wall_s"] > run["classify_s"] > 0 and run["peak_rss_mb"] > 20
    assert runs[0]["ratio_to_served_batched"] > 0 and "ratio_to_served_batched" not in runs[-1]
    expected = [round(run["texts_per_s"] / run["paired_texts_per_s"], 3) for run in pairs]
    assert results["batch"]["paired_with"]["served_batched"] == expected
    assert data["ratios"]["batch/served_batched"] == sorted(expected)[1]
    assert data["targets_met"]["batch/served_batched"] is not None
    assert results["batch"]["errors"] == 0 and results["batch"]["paired_load"]["errors"] == 0
    assert sum(line.startswith("batch ") for line in lines) == len(runs) + BATCH_PAIRS  # runs, loads
    assert any(
        line.startswith("batch: predict-batch / served_batched's load per round pair") for line in lines
    )
    assert not list(tmp_path.glob("batch-*.csv")) and not list(tmp_path.glob("*-out.csv"))
    # the synthetic load is profiled apart, per server, never into the user's drift window
    assert list((tmp_path / "profiles" / "batch").rglob("*.bin"))
    assert list((tmp_path / "profiles" / "batch-memory").rglob("*.bin"))
    assert sorted(home_profiles.rglob("*.bin")) == before


def test_spark_target_reports_steady_throughput_beside_served_batched(
    built_bento: dict[str, str], trained_logreg: Workspace, tmp_path: Path
) -> None:
    """The spark target (predict-spark's path on local[2]) in the same run as served_batched: one ONNX
    Runtime session per Python worker over every run, start-up and warm-up reported apart."""
    needs_java()
    lines: list[str] = []
    config = _tiny_config(
        built_bento, trained_logreg, tmp_path, targets=("served", "spark"), spark_rows=2_000
    )
    data = Bench(config, log=lines.append).run()
    spark = data["results"]["spark"]
    assert spark["rows"] == 2_000 and spark["master"] == "local[2]" and spark["texts_per_s"] > 0
    assert spark["sessions_per_worker"] == 1 and spark["workers"] >= 1
    assert spark["startup_s"] > 0 and spark["warmup_s"] > 0
    assert data["ratios"]["spark/served_batched"] == pytest.approx(
        spark["texts_per_s"] / data["results"]["served_batched"]["texts_per_s"], abs=0.002
    )
    assert sum(line.startswith("spark ") for line in lines) == 1
    assert spark["labels_compared"] == len(config.texts) == spark["labels_equal_served"]  # fp32: all equal
