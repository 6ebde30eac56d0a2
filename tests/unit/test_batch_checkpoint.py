"""Resume refusals: a checkpoint from another input, model or options, or a corrupted one, is refused
with the reason, and nothing is written. These are decided before any server is asked (or by
comparing what two servers answered), so no server runs here; tests/integration/test_batch_resume.py
resumes for real."""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path

import pytest

from batch import checkpoint as ckpt
from batch.client import BatchError, predict_file, scan_input
from tests.helpers import free_port, tiny_rows, write_csv
from textclf.core.records import Position

OPTIONS = {"text_column": "text", "top_k": None, "output_format": "csv"}


def _unfinished_run(tmp_path: Path, **options: object) -> tuple[Path, Path]:
    """An input and the checkpoint + partial an interrupted run of it would leave (row 10 of 20)."""
    source = write_csv(tmp_path / "in.csv", tiny_rows(4, seed=3))
    spec = scan_input(source, "text")
    saved = ckpt.Checkpoint(
        input=ckpt.input_identity(source),
        model={"name": "textclf", "version": "v1", "probe": [["refund", 0.9]]},
        options={**OPTIONS, **options},
        spec={**asdict(spec), "path": str(source)},
        position=Position(100, 11),
        rows_written=10,
        output_bytes=5,
    )
    output = tmp_path / "out.csv"
    ckpt.partial_path(output).write_text("rows\n", encoding="utf-8")
    ckpt.save(ckpt.checkpoint_path(output), saved)
    return source, output


def _resume(source: Path, output: Path, **options: object) -> None:
    # No server listens there: a refusal must come before any request.
    predict_file(source, output, url=f"http://127.0.0.1:{free_port()}", resume=True, **options)


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_a_checkpoint_of_a_changed_input_is_refused(tmp_path: Path) -> None:
    source, output = _unfinished_run(tmp_path)
    with source.open("a", encoding="utf-8") as handle:
        handle.write("one more row,refund\n")
    before = _files(tmp_path)
    with pytest.raises(
        BatchError, match=r"cannot resume from .*checkpoint.json: the input changed since: it had"
    ):
        _resume(source, output)
    assert _files(tmp_path) == before  # nothing written, the progress kept


def test_same_size_edits_and_touches_are_caught_too(tmp_path: Path) -> None:
    source, output = _unfinished_run(tmp_path)
    content = source.read_bytes()
    source.write_bytes(content[:-3] + b"xyz")  # same size, other last bytes
    with pytest.raises(BatchError, match="the input changed since"):
        _resume(source, output)
    source.write_bytes(content)
    os.utime(source, ns=(ckpt.load(ckpt.checkpoint_path(output)).input["mtime_ns"] + 10**9,) * 2)
    with pytest.raises(BatchError, match="content or modification time"):
        _resume(source, output)


def test_a_checkpoint_of_another_input_file_is_refused(tmp_path: Path) -> None:
    _, output = _unfinished_run(tmp_path)
    other = write_csv(tmp_path / "other.csv", tiny_rows(4, seed=3))  # same content, other file
    with pytest.raises(BatchError, match=r"it is for input .*in\.csv, not .*other\.csv"):
        _resume(other, output)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"text_column": "category"}, "text_column was 'text', now 'category'"),
        ({"top_k": 3}, "top_k was None, now 3"),
    ],
)
def test_other_output_options_are_refused(tmp_path: Path, options: dict, message: str) -> None:
    source, output = _unfinished_run(tmp_path)
    before = _files(tmp_path)
    with pytest.raises(BatchError, match=f"options that change the output differ: {message}"):
        _resume(source, output, **options)
    assert _files(tmp_path) == before


def test_another_output_format_is_refused(tmp_path: Path) -> None:
    source, output = _unfinished_run(tmp_path)
    saved = ckpt.load(ckpt.checkpoint_path(output))
    why = ckpt.refusal(saved, ckpt.input_identity(source), {**OPTIONS, "output_format": "jsonl"})
    assert why == "options that change the output differ: output_format was 'csv', now 'jsonl'"
    assert ckpt.refusal(saved, ckpt.input_identity(source), OPTIONS) is None


def test_another_model_version_is_refused() -> None:
    saved = {"name": "textclf", "version": "v1", "probe": [["refund", 0.9]]}
    why = ckpt.model_refusal(saved, {"name": "textclf", "version": "v2", "probe": [["refund", 0.9]]})
    assert (
        why is not None and "now serves textclf version v2" in why and "came from textclf version v1" in why
    )
    assert ckpt.model_refusal(saved, dict(saved)) is None


def test_without_a_readable_version_the_probe_answers_decide() -> None:
    saved = {"probe": [["refund", 0.91], ["top_up", 0.5]]}
    assert ckpt.model_refusal(saved, {"probe": [["refund", 0.9104], ["top_up", 0.5]]}) is None
    for other in ([["refund", 0.91], ["pin_blocked", 0.5]], [["refund", 0.95], ["top_up", 0.5]], []):
        why = ckpt.model_refusal(saved, {"probe": other})
        assert why is not None and "answers the same probe texts differently" in why and "model:read" in why
    # a version on one side only (the token changed): the probe still decides
    assert ckpt.model_refusal(saved, {"version": "v1", "probe": saved["probe"]}) is None


@pytest.mark.parametrize(
    "content",
    [b"", b"{not json", b"[1, 2]", b'{"schema": 1, "input": {}}', b'{"schema": 99}', b"\xff\xfe"],
)
def test_a_corrupted_checkpoint_is_refused(tmp_path: Path, content: bytes) -> None:
    source, output = _unfinished_run(tmp_path)
    ckpt.checkpoint_path(output).write_bytes(content)
    before = _files(tmp_path)
    with pytest.raises(
        BatchError, match=r"checkpoint .* is unreadable .*pass --overwrite \(without --resume\)"
    ):
        _resume(source, output)
    assert _files(tmp_path) == before


def test_a_checkpoint_with_a_negative_offset_is_corrupted(tmp_path: Path) -> None:
    _, output = _unfinished_run(tmp_path)
    path = ckpt.checkpoint_path(output)
    path.write_text(
        path.read_text(encoding="utf-8").replace('"offset": 100', '"offset": -1'), encoding="utf-8"
    )
    with pytest.raises(BatchError, match="unreadable"):
        ckpt.load(path)


def test_an_unfinished_run_is_never_discarded_silently(tmp_path: Path) -> None:
    source, output = _unfinished_run(tmp_path)
    before = _files(tmp_path)
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(BatchError, match=r"left a checkpoint .*pass --resume to continue it, or --overwrite"):
        predict_file(source, output, url=url)
    assert _files(tmp_path) == before


def test_the_checkpoint_round_trips_and_is_written_atomically(tmp_path: Path) -> None:
    _, output = _unfinished_run(tmp_path)
    path = ckpt.checkpoint_path(output)
    saved = ckpt.load(path)
    saved.rows_written, saved.position = 20, Position(200, 21)
    ckpt.save(path, saved)
    assert ckpt.load(path) == saved
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [".out.csv.checkpoint.json", ".out.csv.part", "in.csv"]  # no temporary left


# ------------------------------------------------- what a resumed run appends to: the output rows


def test_abstained_and_null_labels_are_written_as_empty_cells_and_nulls(tmp_path: Path) -> None:
    import csv
    import io
    import json

    from batch.output import OUTPUT_FIELDS, Writer
    from textclf.core.records import Record

    source = write_csv(tmp_path / "in.csv", [("hi", "x")])
    spec = scan_input(source, "text")
    row = Record(2, {"text": "hi", "category": "x"})
    answers = [
        ({"label": None, "score": 0.3, "abstained": True}, None),
        ({"label": "refund", "score": 0.9}, None),  # a server that does not say: not abstained
        (None, "text is empty or only whitespace"),
    ]
    as_csv, as_jsonl = io.StringIO(newline=""), io.StringIO()
    for handle, kind in ((as_csv, "csv"), (as_jsonl, "jsonl")):
        writer = Writer(handle, kind, spec)
        for prediction, error in answers:
            writer.write(row, prediction, error)
    assert OUTPUT_FIELDS == ("label", "score", "abstained", "top_k", "error")
    rows = list(csv.reader(io.StringIO(as_csv.getvalue())))
    assert rows[0] == ["text", "category", *OUTPUT_FIELDS]
    assert [r[2:] for r in rows[1:]] == [
        ["", "0.3", "true", "", ""],
        ["refund", "0.9", "false", "", ""],
        ["", "", "", "", "text is empty or only whitespace"],
    ]
    records = [json.loads(line) for line in as_jsonl.getvalue().splitlines()]
    assert [(r["label"], r["abstained"]) for r in records] == [(None, True), ("refund", False), (None, None)]
    resumed = io.StringIO()
    Writer(resumed, "csv", spec, header=False).write(row, answers[1][0], None)
    assert resumed.getvalue() == "hi,x,refund,0.9,false,,\r\n"  # appended to a partial: no second header
