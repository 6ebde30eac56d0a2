"""The benchmark's plumbing: summaries parsed, failures counted, ratios and targets, report tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bench import report
from bench.load import LoadError, parse_summary, run_wrk, write_bodies
from textclf.cli import app


def _summary(statuses: dict[str, int], timeouts: int = 0) -> str:
    return json.dumps(
        {
            "requests": sum(statuses.values()) + timeouts,
            "duration_us": 2_000_000,
            "p50_us": 1500,
            "p95_us": 4000,
            "p99_us": 9000,
            "max_us": 12000,
            "statuses": statuses,
            "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": timeouts},
        }
    )


def test_only_successful_answers_count_as_throughput_and_every_failure_is_an_error() -> None:
    result = parse_summary(_summary({"200": 100, "503": 7, "400": 3}, timeouts=2), texts_per_request=4)
    assert result.texts_per_s == 200.0  # 100 OK requests x 4 texts / 2 s
    assert result.requests_per_s == 50.0
    assert result.errors == 12
    assert (result.p50_ms, result.p95_ms, result.p99_ms) == (1.5, 4.0, 9.0)
    assert result.statuses == {"200": 100, "503": 7, "400": 3}


def test_a_clean_run_has_no_errors() -> None:
    assert parse_summary(_summary({"200": 10}), texts_per_request=1).errors == 0


def test_request_bodies_hold_the_asked_number_of_texts(tmp_path: Path) -> None:
    path = write_bodies(["a", "b", "c"], 5, tmp_path / "bodies.jsonl", count=20)
    bodies = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(bodies) == 20
    assert all(len(b["texts"]) == 5 and set(b["texts"]) <= {"a", "b", "c"} for b in bodies)


def test_no_texts_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no texts"):
        write_bodies([], 1, tmp_path / "bodies.jsonl")


def test_missing_wrk_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LoadError, match="apt-get install wrk"):
        run_wrk("http://127.0.0.1:9/x", tmp_path / "b", texts_per_request=1, connections=1, duration_s=1)


def _result(texts_per_s: float, errors: int = 0, **extra) -> dict:
    return {"texts_per_s": texts_per_s, "requests_per_s": texts_per_s, "p50_ms": 1.0, "p95_ms": 2.0,
            "p99_ms": 3.0, "errors": errors, **extra}  # fmt: skip


def _full_results() -> dict:
    return {
        "raw": _result(1000, batch=32, threads=2, lanes=1, processes=1),
        "served_single": _result(900),
        "served_batched": _result(960),
        "served_half_load": _result(450, offered_fraction=0.5),
        "bentoml_route_single": _result(450),
        "fastapi_ort": _result(500),
        "fastapi_ort_1worker": _result(600),
        "naive": _result(150),
        "pytriton": _result(450),
        "bentoml_batching_single": _result(600),
        "bentoml_batching_half_load": _result(200, offered_fraction=0.5),
        "security_on": _result(580),
        "security_off": _result(600),
        # the median pair decides
        "monitoring_on": _result(590, paired_with={"monitoring_off": [0.99, 0.97, 0.98]}),
        "monitoring_off": _result(500),
        "overhead_on": _result(560),
        "overhead_off": _result(600),
        "pinning_on": _result(660, paired_with={"pinning_off": [1.1, 1.06, 1.08]}),
        "pinning_off": _result(600),
        "gather_on": _result(630, paired_with={"gather_off": [1.02, 1.05, 1.04]}),
        "gather_off": _result(600),
        "batch": _result(
            912,
            # the ratio is their median, not 912 / served_batched's 960
            paired_with={"served_batched": [0.97, 0.961, 0.93]},
            runs=[
                _batch_run(9_600, 931, 0.97, "throughput 1/3") | {"paired_texts_per_s": 960.0},
                _batch_run(9_500, 913, 0.95, "throughput 2/3") | {"paired_texts_per_s": 950.5},
                _batch_run(9_700, 902, 0.94, "throughput 3/3") | {"paired_texts_per_s": 970.0},
                _batch_run(10_000, 900, 0.94, "memory"),
                _batch_run(1_000_000, 5000, None, "memory"),
            ],
        ),
        "spark": _result(
            1200,
            rows=30_000,
            master="local[2]",
            workers=2,
            sessions_per_worker=1,
            startup_s=12.0,
            warmup_s=20.0,
            labels_equal_served=3079,
            labels_compared=3080,
        ),
    }


def _batch_run(rows: int, texts_per_s: float, ratio: float | None, purpose: str) -> dict:
    model = "bert-int8" if ratio else "textclf-logreg:1"
    run = {"purpose": purpose, "rows": rows, "model": model, "texts_per_s": texts_per_s, "classify_s": 9.0,
           "wall_s": 12.5, "peak_rss_mb": 101.5, "errors": 0}  # fmt: skip
    return run | ({"ratio_to_served_batched": ratio} if ratio else {})


def test_ratios_and_targets() -> None:
    results = _full_results()
    measured = report.ratios(results)
    assert measured == {
        "served_single/raw": 0.9,
        "served_batched/raw": 0.96,
        "served_single/fastapi_ort": 1.5,  # against the faster simple server (1 worker here)
        "served_single/naive": 6.0,
        "served_single/pytriton": 2.0,
        "served_single/bentoml_route": 2.0,
        "served_single/bentoml_batching": 1.5,
        "security_on/security_off": 0.967,
        "monitoring_on/monitoring_off": 0.98,
        "overhead_on/overhead_off": 0.933,
        "pinning_on/pinning_off": 1.08,  # reported, no target
        "gather_on/gather_off": 1.04,  # reported, no target
        "batch/served_batched": 0.961,  # the median pair, not 912 / 960
        "spark/served_batched": 1.25,  # reported, no target: Spark is for data that outgrows one machine
    }
    met = report.verdicts(results, measured)
    assert all(met.values())
    results["fastapi_ort"] = _result(750, errors=1)  # now the multi-worker one is the best baseline
    measured = report.ratios(results)
    met = report.verdicts(results, measured)
    assert measured["served_single/fastapi_ort"] == 1.2 and met["served_single/fastapi_ort"] is False
    assert met["zero_errors"] is False
    results["security_on"] = _result(560)
    assert report.verdicts(results, report.ratios(results))["security_on/security_off"] is False


def test_targets_not_measured_are_unknown_not_met() -> None:
    results = _full_results() | {"naive": None}
    measured = report.ratios(results)
    assert measured["served_single/naive"] is None
    assert report.verdicts(results, measured)["served_single/naive"] is None


def test_markdown_table_shows_every_target_and_ratio() -> None:
    results = _full_results()
    measured = report.ratios(results)
    data = {
        "results": results,
        "ratios": measured,
        "targets_met": report.verdicts(results, measured),
        "machine": {"cpu": "Test CPU", "cores": 2},
        "model": {"variant": "bert-int8"},
        "settings": {"connections": 64, "duration_s": 20.0},
        "when": "2026-01-01 00:00 UTC",
        "command": "textclf bench",
    }
    text = report.markdown(data)
    for name in report.ROWS:
        assert f"| {name} |" in text
    for name in report.RATIOS:
        assert f"| {name} |" in text
    assert "Test CPU" in text and "`textclf bench`" in text
    assert "| throughput 2/3 | 9,500 | `bert-int8` | 913 | 950 | 0.96 | 0.95 | 12.5 | 101.5 |" in text
    assert "| memory | 10,000 | `bert-int8` | 900 | — | — | 0.94 | 12.5 | 101.5 |" in text
    assert "| memory | 1,000,000 | `textclf-logreg:1` | 5,000 | — | — | — | 12.5 | 101.5 |" in text
    assert "median of the 3 pairs (0.97, 0.961, 0.93)" in text
    assert "labels equal the served Bento's on 3,079 of 3,080 test texts" in text


def test_cli_refuses_unknown_targets() -> None:
    result = CliRunner().invoke(app, ["bench", "--targets", "raw,warp"])
    assert result.exit_code != 0
    assert "unknown targets" in result.output


def test_rounds_combine_into_one_result() -> None:
    from bench.rounds import combine_rounds

    def load(texts_per_s: float, requests: int, max_ms: float, **extra: object) -> dict:
        return {**_result(texts_per_s, **extra), "requests": requests, "duration_s": 10.0, "max_ms": max_ms,
                "texts_per_request": 1}  # fmt: skip

    rounds = [
        load(100.0, 1000, 20.0, p99_ms=9.0),
        load(300.0, 3000, 40.0, errors=2, p99_ms=5.0, statuses={"200": 2998, "503": 2}),
        load(200.0, 2000, 30.0, p99_ms=7.0),
    ]
    combined = combine_rounds(rounds)
    assert combined["texts_per_s"] == 200.0 and combined["requests_per_s"] == 200.0
    assert combined["p99_ms"] == 7.0 and combined["max_ms"] == 40.0
    assert combined["errors"] == 2 and combined["statuses"] == {"200": 2998, "503": 2}
    assert combined["rounds"] == [100.0, 300.0, 200.0] and combined["duration_s"] == 30.0


def test_cpu_per_request_outside_the_model() -> None:
    import os
    import subprocess
    import sys
    import threading

    from bench.cpu import add_outside_model, model_us_per_text, tree_cpu_seconds, tree_cpu_split

    raw = {
        "sweep": [
            {"threads": 1, "lanes": 1, "processes": 1, "texts_per_s": 800.0},
            {"threads": 1, "lanes": 1, "processes": 1, "texts_per_s": 1000.0},  # the best one-thread lane
            {"threads": 1, "lanes": 1, "processes": 2, "texts_per_s": 2000.0},  # two cores: not one lane
        ]
    }
    assert model_us_per_text(raw) == 1000.0
    assert model_us_per_text({"sweep": []}) is None
    results = {
        "served_single": _result(
            900, server_cpu_us_per_request=1500.0, main_threads_cpu_us_per_request=150.0, texts_per_request=1
        ),
        "served_batched": _result(900, server_cpu_us_per_request=40000.0, texts_per_request=32),
        "naive": None,
        "fastapi_ort": _result(500, texts_per_request=1),  # no CPU figure: left alone
    }
    add_outside_model(results, 1000.0)
    assert results["served_single"]["outside_model_us_per_request"] == 500.0
    assert results["served_batched"]["outside_model_us_per_request"] == 8000.0
    assert "outside_model_us_per_request" not in results["fastapi_ort"]
    table = report._cpu_table(results)
    assert (
        "| served_single | 1,500 | 500 | 150 |" in table
        and "| served_batched | 40,000 | 8,000 | — |" in table
    )

    me = os.getpid()
    before = tree_cpu_seconds(me)
    main_before, other_before = tree_cpu_split(me)
    sum(i * i for i in range(3_000_000))  # a few hundred ms of CPU, many clock ticks, in the main thread
    assert tree_cpu_seconds(me) > before
    side = threading.Thread(target=lambda: sum(i * i for i in range(3_000_000)))
    side.start()
    side.join()
    main_after, other_after = tree_cpu_split(me)
    assert main_after > main_before and other_after > other_before  # the side thread counts as other
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert tree_cpu_seconds(gone.pid) == 0.0


def test_scaling_table_has_a_row_per_worker_count() -> None:
    def run(workers: str, single: float) -> dict:
        return {
            "when": "2026-01-01 00:00 UTC",
            "command": f"textclf bench --targets served --env TEXTCLF_WORKERS={workers}",
            "machine": {"cpu": "Test CPU", "cores": 2},
            "model": {"variant": "bert-int8"},
            "settings": {"connections": 64, "duration_s": 15.0, "served_env": {"TEXTCLF_WORKERS": workers}},
            "results": {
                "served_single": _result(single, server_cpu_us_per_request=1300.0),
                "served_batched": _result(2 * single),
                "served_half_load": _result(single / 2),
            },
        }

    text = report.scaling_markdown([run("2", 1400.0), run("1", 800.0)])
    rows = [line for line in text.splitlines() if line.startswith("| 1 x") or line.startswith("| 2 x")]
    assert rows == [
        "| 1 x default | 800.0 | 1,600.0 | 3.00 ms | 1,300.0 |",
        "| 2 x default | 1,400.0 | 2,800.0 | 3.00 ms | 1,300.0 |",
    ]
    assert "Test CPU (2 cores)" in text


def test_security_parts_run_each_part_for_real(tmp_path: Path) -> None:
    from bench.security_parts import STEPS, measure_security_parts

    parts = measure_security_parts(tmp_path, requests=50, repeats=1)
    assert list(parts["steps_us"]) == list(STEPS) and list(parts["parts_us"]) == list(STEPS[1:])
    assert all(v > 0 for v in parts["steps_us"].values())
    audit_lines = {
        d.name: sum(len(f.read_text().splitlines()) for f in d.iterdir())
        for d in tmp_path.glob("audit-*")
        if d.is_dir()
    }
    assert audit_lines == {"audit-2": 50, "audit-3": 50}  # the audit steps wrote a line per request
    assert len((tmp_path / "audit-stdout.jsonl").read_text().splitlines()) == 50  # and the last one to stdout
    table = report._security_parts_table(parts)
    assert all(f"| {step} |" in "\n".join(table) for step in STEPS)


def test_round_pairs_decide_the_security_ratio_by_their_median() -> None:
    results = _full_results()
    one_odd_pair = [0.97, 0.80, 0.96, 0.99, 0.98, 0.95]
    results["security_on"] = _result(500, paired_with={"security_off": one_odd_pair})
    assert report.ratios(results)["security_on/security_off"] == 0.965  # not 500 / 600
    assert report.median_ratio([0.9, 0.7, 0.8]) == 0.8


def test_the_launcher_reports_the_child_s_own_peak_memory_not_its_parent_s() -> None:
    """A process spawned from a big one inherits its high-water mark; the batch target's launcher must
    report only what the client itself used."""
    import subprocess
    import sys

    from bench.batch import LAUNCHER, PEAK

    held = bytearray(300 * 2**20)
    held[::4096] = b"\1" * len(held[::4096])  # touch every page: the parent is now 300 MB resident
    done = subprocess.run(
        [sys.executable, "-c", LAUNCHER, sys.executable, "-c", "pass"], capture_output=True, text=True
    )
    found = PEAK.search(done.stderr)
    assert done.returncode == 0 and found is not None
    assert 1 < int(found.group(1)) / 1024 < 100  # a bare interpreter, far below the parent's 300 MB
    del held


def test_served_against_raw_is_the_median_round_pair_and_only_for_raw() -> None:
    results = _full_results()
    rounds = [
        {"raw": 1000.0, "served": 850.0},
        {"raw": 1200.0, "served": 960.0},
        {"raw": 800.0, "served": 720.0},
    ]
    results["served_single"] |= {"paired_with": {"raw": [0.85, 0.8, 0.9]}, "raw_rounds": rounds}
    measured = report.ratios(results)
    assert measured["served_single/raw"] == 0.85  # not 900 / 1000 from the longer runs
    assert measured["served_single/fastapi_ort"] == 1.5  # other ratios of served_single are not paired
    text = "\n".join(report.raw_pairs_lines(results))
    assert "`served_single/raw` is the median of 3 round pairs" in text and "960 / 1,200 = 0.8" in text
    assert report.raw_pairs_lines(_full_results()) == []  # no rounds, no lines
