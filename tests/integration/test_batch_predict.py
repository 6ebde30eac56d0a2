"""`textclf predict-batch` against the real Bento: formats, row errors, retries, the CLI, flat memory.

Longer than our ~350-line norm on purpose: the cases share one served Bento (and the fault-injecting
proxy of tests/proxy.py in front of it); split apart, each file would need it again.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from batch.client import BatchError, BatchSummary, predict_file
from tests.helpers import bin_path, free_port, tiny_rows, write_csv
from tests.proxy import flaky_proxy

pytestmark = pytest.mark.integration

MAX_TEXTS = 16  # the test server's TEXTCLF_MAX_TEXTS
LABELS = {"card_arrival", "refund", "pin_blocked", "exchange_rate", "top_up"}


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def direct_labels(url: str, texts: list[str]) -> list[str]:
    """Labels from plain POST /classify calls, the reference the batch output must match."""
    labels: list[str] = []
    for start in range(0, len(texts), MAX_TEXTS):
        response = httpx.post(f"{url}/classify", json={"texts": texts[start : start + MAX_TEXTS]}, timeout=10)
        response.raise_for_status()
        labels.extend(r["label"] for r in response.json())
    return labels


def leftovers(folder: Path) -> list[str]:
    """Partial outputs and checkpoints a run left behind (there must be none after a success)."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith((".part", ".checkpoint.json")))


# ---------------------------------------------------------------------------------------------- tests


def test_csv_round_trip_keeps_rows_order_and_labels(server: str, tmp_path: Path) -> None:
    rows = tiny_rows(12, seed=11)  # 60 rows: several chunks, the last one partial
    source = write_csv(tmp_path / "in.csv", rows)
    summary = predict_file(source, tmp_path / "out.csv", url=server, chunk_size=7, concurrency=3)

    out = read_csv(tmp_path / "out.csv")
    assert isinstance(summary, BatchSummary)
    assert (summary.rows_in, summary.rows_out, summary.retried, summary.failed_rows) == (60, 60, 0, 0)
    assert list(out[0]) == ["text", "category", "label", "score", "abstained", "top_k", "error"]
    assert [(r["text"], r["category"]) for r in out] == rows
    assert [r["label"] for r in out] == direct_labels(server, [t for t, _ in rows])
    assert all(0 < float(r["score"]) <= 1 and r["top_k"] == "" and r["error"] == "" for r in out)
    assert sum(r["label"] == r["category"] for r in out) >= 55  # the tiny model knows its intents
    assert leftovers(tmp_path) == []


def test_chunk_size_is_capped_at_the_server_limit(server: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", tiny_rows(8, seed=12))
    summary = predict_file(source, tmp_path / "out.csv", url=server, chunk_size=500)
    assert summary.chunk_size == MAX_TEXTS and summary.chunks == 3  # 40 rows / 16
    assert all(r["error"] == "" for r in read_csv(tmp_path / "out.csv"))


def test_jsonl_in_jsonl_out_keeps_every_key_and_type(server: str, tmp_path: Path) -> None:
    rows = tiny_rows(4, seed=13)
    records: list[dict] = [{"id": i, "text": t, "meta": {"gold": g}} for i, (t, g) in enumerate(rows)]
    records.insert(5, {"id": 100, "text": 42})
    records.insert(9, {"id": 101, "text": None})
    records.insert(12, {"id": 102})
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n", encoding="utf-8")

    summary = predict_file(source, tmp_path / "out.jsonl", url=server, chunk_size=5)

    out = read_jsonl(tmp_path / "out.jsonl")
    assert summary.rows_in == summary.rows_out == len(out) == len(records)
    assert summary.failed_rows == 3
    assert [{k: r[k] for k in ("id", "text", "meta") if k in r} for r in out] == records
    errors = {r["id"]: r["error"] for r in out if r["error"]}
    assert set(errors) == {100, 101, 102}
    assert "not a string" in errors[100] and "not a string" in errors[101] and "no 'text' key" in errors[102]
    good = [r for r in out if not r["error"]]
    assert [r["label"] for r in good] == direct_labels(server, [r["text"] for r in good])
    assert all(isinstance(r["score"], float) and r["top_k"] is None for r in good)
    assert all(r["label"] is None and r["score"] is None for r in out if r["error"])


def test_csv_in_jsonl_out_and_jsonl_in_csv_out(server: str, tmp_path: Path) -> None:
    rows = tiny_rows(2, seed=14)
    predict_file(write_csv(tmp_path / "in.csv", rows), tmp_path / "a.jsonl", url=server)
    assert [(r["text"], r["category"]) for r in read_jsonl(tmp_path / "a.jsonl")] == rows

    records = [{"id": 1, "text": rows[0][0], "tags": ["x"]}, {"text": rows[1][0], "extra": True}]
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    predict_file(source, tmp_path / "b.csv", url=server)
    out = read_csv(tmp_path / "b.csv")
    assert list(out[0]) == ["id", "text", "tags", "extra", "label", "score", "abstained", "top_k", "error"]
    assert [(r["id"], r["tags"], r["extra"]) for r in out] == [("1", '["x"]', ""), ("", "", "true")]
    assert [r["label"] for r in out] == direct_labels(server, [rows[0][0], rows[1][0]])


def test_custom_text_column_and_top_k(server: str, tmp_path: Path) -> None:
    rows = tiny_rows(5, seed=15)
    source = write_csv(tmp_path / "in.csv", rows, header=("utterance", "intent"))
    summary = predict_file(source, tmp_path / "out.csv", url=server, text_column="utterance", top_k=3)

    out = read_csv(tmp_path / "out.csv")
    assert summary.rows_out == len(rows) and summary.failed_rows == 0
    assert [r["utterance"] for r in out] == [t for t, _ in rows]
    assert [r["label"] for r in out] == direct_labels(server, [t for t, _ in rows])
    for r in out:
        top = json.loads(r["top_k"])
        assert len(top) == 3 and {s["label"] for s in top} <= LABELS
        assert top[0]["label"] == r["label"] and top[0]["score"] == pytest.approx(float(r["score"]))
        assert [s["score"] for s in top] == sorted((s["score"] for s in top), reverse=True)


def test_missing_text_column_is_a_clear_error(server: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", tiny_rows(2, seed=16), header=("sentence", "category"))
    with pytest.raises(BatchError, match=r"no text column 'text'.*'sentence', 'category'"):
        predict_file(source, tmp_path / "out.csv", url=server)
    assert not (tmp_path / "out.csv").exists() and leftovers(tmp_path) == []

    jsonl = tmp_path / "in.jsonl"
    jsonl.write_text('{"body": "where is my card"}\n', encoding="utf-8")
    with pytest.raises(BatchError, match=r"no text key 'text'.*'body'"):
        predict_file(jsonl, tmp_path / "out.jsonl", url=server)


def test_bad_inputs_fail_before_anything_is_sent(server: str, tmp_path: Path) -> None:
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"text": "fine"}\n{"text": oops}\n', encoding="utf-8")
    with pytest.raises(BatchError, match="line 2 is not valid JSON"):
        predict_file(bad_json, tmp_path / "out.jsonl", url=server)
    with pytest.raises(BatchError, match=r"unknown format '\.txt'"):
        predict_file(bad_json, tmp_path / "out.txt", url=server)
    clash = write_csv(tmp_path / "clash.csv", [("where is my card", "refund")], header=("text", "label"))
    with pytest.raises(BatchError, match=r"already has column.*'label'"):
        predict_file(clash, tmp_path / "out.csv", url=server)
    good = write_csv(tmp_path / "good.csv", [("where is my card", "card_arrival")])
    with pytest.raises(BatchError, match=r"top_k 50 is more than this server allows \(20\)"):
        predict_file(good, tmp_path / "out.csv", url=server, top_k=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl", "clash.csv", "good.csv"]


def test_a_malformed_row_deep_in_a_big_file_fails_first_naming_its_line(server: str, tmp_path: Path) -> None:
    source = tmp_path / "big.jsonl"
    with source.open("w", encoding="utf-8") as handle:
        for i in range(50_000):
            good = json.dumps({"text": f"where is my card {i}"}) + "\n"
            handle.write('{"text": oops\n' if i == 31_337 else good)
    with pytest.raises(BatchError, match=r"big.jsonl line 31338 is not valid JSON Lines: invalid JSON"):
        predict_file(source, tmp_path / "out.jsonl", url=server)
    wide = write_csv(tmp_path / "wide.csv", tiny_rows(400, seed=26))
    with wide.open("a", encoding="utf-8") as handle:
        handle.write("one,two,three\n" + "fine text,refund\n" * 100)
    with pytest.raises(BatchError, match=r"wide.csv line 2002 is not valid CSV: 3 fields but the header"):
        predict_file(wide, tmp_path / "out.csv", url=server)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.jsonl", "wide.csv"]  # nothing sent or written


def test_blank_texts_are_not_sent_and_marked(server: str, tmp_path: Path) -> None:
    rows = tiny_rows(4, seed=17)
    blanks = {3: "", 4: "   ", 11: "\t\n"}
    for i, text in blanks.items():
        rows[i] = (text, rows[i][1])
    source = write_csv(tmp_path / "in.csv", rows)
    summary = predict_file(source, tmp_path / "out.csv", url=server, chunk_size=6)

    out = read_csv(tmp_path / "out.csv")
    assert summary.rows_out == len(rows) and summary.failed_rows == 3 and summary.refused_chunks == 0
    assert [r["text"] for r in out] == [t for t, _ in rows]
    for i, r in enumerate(out):
        if i in blanks:
            assert r["error"] == "text is empty or only whitespace" and r["label"] == r["score"] == ""
        else:
            assert r["error"] == "" and r["label"] in LABELS
    good = [r["text"] for i, r in enumerate(out) if i not in blanks]
    assert [r["label"] for i, r in enumerate(out) if i not in blanks] == direct_labels(server, good)


def test_refused_chunk_carries_the_4xx_error_and_the_rest_is_classified(server: str, tmp_path: Path) -> None:
    rows = tiny_rows(8, seed=18)  # 40 rows in chunks of 8: rows 16..23 form the third chunk
    rows[20] = ("word " * 50, rows[20][1])  # 250 characters, over the server's 200
    source = write_csv(tmp_path / "in.csv", rows)
    summary = predict_file(source, tmp_path / "out.csv", url=server, chunk_size=8, retries=3)

    out = read_csv(tmp_path / "out.csv")
    assert summary.rows_out == 40 and summary.refused_chunks == 1 and summary.failed_rows == 8
    assert summary.retried == 0  # a 4xx is final: never retried
    for i, r in enumerate(out):
        if 16 <= i < 24:
            assert r["error"].startswith("server refused this chunk (HTTP 422)")
            assert "line 22" in r["error"] and "at most 200 characters" in r["error"]  # header is line 1
            assert r["label"] == ""
        else:
            assert r["error"] == "" and r["label"] in LABELS


def test_unreachable_server_is_a_clear_error_and_writes_nothing(tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", tiny_rows(2, seed=19))
    url = f"http://127.0.0.1:{free_port()}"
    # With a 300 s client timeout, a client that waited for /readyz would miss the 60 s deadline.
    with ThreadPoolExecutor(1) as pool:
        run = pool.submit(predict_file, source, tmp_path / "out.csv", url=url, timeout=300.0)
        with pytest.raises(BatchError, match=f"cannot reach a textclf server at {url}"):
            run.result(timeout=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_transient_503s_are_retried(server: str, tmp_path: Path) -> None:
    rows = tiny_rows(6, seed=20)
    source = write_csv(tmp_path / "in.csv", rows)
    with flaky_proxy(server, failures=3) as proxy:
        summary = predict_file(source, tmp_path / "out.csv", url=proxy.url, chunk_size=8, retries=3)
    assert proxy.failed == 3 and summary.retried == 3
    out = read_csv(tmp_path / "out.csv")
    assert summary.rows_out == len(out) == len(rows) and summary.failed_rows == 0
    assert [r["label"] for r in out] == direct_labels(server, [t for t, _ in rows])


def test_persistent_5xx_fails_naming_the_lines_and_leaves_no_file(server: str, tmp_path: Path) -> None:
    source = write_csv(tmp_path / "in.csv", tiny_rows(4, seed=21))
    with (
        flaky_proxy(server, failures=1000) as proxy,
        pytest.raises(BatchError, match=r"chunk of input lines 2-9 failed after 2 retries: HTTP 503"),
    ):
        predict_file(source, tmp_path / "out.csv", url=proxy.url, chunk_size=8, concurrency=1, retries=2)
    assert proxy.failed == 3  # the first try and two retries, then it gave up
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_requests_in_flight_ramp_up_one_per_answer_to_the_concurrency(server: str, tmp_path: Path) -> None:
    rows = tiny_rows(8, seed=22)
    source = write_csv(tmp_path / "in.csv", rows)
    with flaky_proxy(server, failures=0, gather=3) as proxy:  # holds each until 3 are in flight
        summary = predict_file(source, tmp_path / "out.csv", url=proxy.url, chunk_size=4, concurrency=3)
    assert summary.chunks == 10 and summary.rows_out == len(rows)
    assert proxy.max_in_flight == 3  # the window is used, and never exceeded
    # slow start: a request goes out only while fewer than 1 + answers-so-far are in flight, so the
    # client's connections open one at a time (a burst would all land on one server worker)
    probe = 2  # the run's first two requests identify the model (two answers in a row that agree), alone
    assert [n for n, _ in proxy.arrivals[probe : probe + 3]] == [1, 1, 2]
    assert all(n <= 1 + answered - probe for n, answered in proxy.arrivals[probe:])
    assert [r["text"] for r in read_csv(tmp_path / "out.csv")] == [t for t, _ in rows]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}  # no wrapping, no colour codes
    return subprocess.run(
        [bin_path("textclf"), "predict-batch", *args], capture_output=True, text=True, env=env, timeout=60
    )


def test_cli_end_to_end(server: str, tmp_path: Path) -> None:
    rows = tiny_rows(4, seed=23)
    source = write_csv(tmp_path / "in.csv", rows)
    done = run_cli(str(source), "--output", str(tmp_path / "out.csv"), "--url", server, "--top-k", "2")
    assert done.returncode == 0, done.stderr
    assert f"20/20 rows written to {tmp_path / 'out.csv'}" in done.stderr
    out = read_csv(tmp_path / "out.csv")
    assert [r["text"] for r in out] == [t for t, _ in rows]
    assert all(len(json.loads(r["top_k"])) == 2 for r in out)

    failed = run_cli(str(source), "-o", str(tmp_path / "x.csv"), "--url", server, "--text-column", "body")
    assert failed.returncode != 0
    assert "error:" in failed.stderr and "no text column 'body'" in failed.stderr
    assert "'text', 'category'" in failed.stderr and "Traceback" not in failed.stderr
    assert not (tmp_path / "x.csv").exists()

    again = run_cli(str(source), "--output", str(tmp_path / "out.csv"), "--url", server)
    assert again.returncode != 0 and "exists: pass --overwrite" in " ".join(again.stderr.split())
    assert read_csv(tmp_path / "out.csv") == out  # untouched
    replaced = run_cli(str(source), "--output", str(tmp_path / "out.csv"), "--url", server, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert "top_k" not in read_csv(tmp_path / "out.csv")[0] or not read_csv(tmp_path / "out.csv")[0]["top_k"]


def test_memory_stays_flat_on_a_large_file(server: str, tmp_path: Path) -> None:
    # Long texts (190 chars) make the file big for few requests: 20,000 rows, 1,250 chunks of 16.
    texts = [((t + " ") * 8)[:190] for t, _ in tiny_rows(20, seed=24)]
    source = tmp_path / "big.csv"
    with source.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows((i, texts[i % len(texts)]) for i in range(20_000))
    predict_file(write_csv(tmp_path / "warm.csv", tiny_rows(1, seed=25)), tmp_path / "warm.jsonl", url=server)

    tracemalloc.start()  # baseline: what merely holding the parsed rows costs
    with source.open(newline="", encoding="utf-8") as handle:
        held = list(csv.reader(handle))
    holding_all = tracemalloc.get_traced_memory()[0]
    del held
    tracemalloc.stop()

    tracemalloc.start()
    try:
        summary = predict_file(source, tmp_path / "out.csv", url=server, concurrency=8)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()

    assert summary.rows_in == summary.rows_out == 20_000 and summary.failed_rows == 0
    assert holding_all > source.stat().st_size  # the baseline is honest: rows cost more than bytes
    assert peak < holding_all / 2, f"peak {peak} B vs {holding_all} B to hold all rows"
    assert peak < source.stat().st_size / 2, f"peak {peak} B vs a {source.stat().st_size} B file"
    with (tmp_path / "out.csv").open(newline="", encoding="utf-8") as handle:
        assert sum(1 for _ in handle) == 20_001
