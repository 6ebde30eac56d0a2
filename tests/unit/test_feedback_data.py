"""Taking the server's feedback in (training.feedback): refusals by reason, latest label wins, the data set
sealed or plain, and a held-out slice chosen by the text alone."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from textclf.core.crypto import DataKeyError
from textclf.core.feedback_log import FeedbackRecord
from training.feedback import (
    PLAIN_NAME,
    SEALED_NAME,
    FeedbackRow,
    data_file,
    holdout_rows,
    in_holdout,
    read_rows,
    take_in,
    training_rows,
    write_rows,
)
from training.validate import text_key

KEY = os.urandom(32)
LABELS = ["refund", "top_up"]


def record(text: str, label: str, time: float = 0.0) -> FeedbackRecord:
    return FeedbackRecord(text=text, label=label, predicted=None, time=time, source=f"log:{int(time)}")


def test_take_in_refuses_by_reason_and_keeps_the_latest_label() -> None:
    train = {text_key("in train"): "refund", text_key("train twice"): "refund"}
    test = {text_key("a test text")}
    previous = [FeedbackRow("kept before", "refund", 1.0), FeedbackRow("relabel me", "refund", 2.0)]
    intake = take_in(
        [
            record("   ", "refund"),
            record("new one", "no_such", 3),
            record("a  test text ", "refund", 4),  # the same text once whitespace is normalised
            record("in train", "refund", 5),
            record("train twice", "top_up", 6),
            record("fresh", "top_up", 8),
            record("fresh", "refund", 7),  # older than the one above: refused
            record("kept before", "refund", 9),  # already in the data set, same label: not new
            record("relabel me", "top_up", 10),  # a correction: new
        ],
        labels=LABELS,
        train_labels=train,
        test_keys=test,
        previous=previous,
    )
    assert intake.read == 9 and intake.new == 2
    assert dict(intake.refused) == {
        "blank text(s)": 1,
        "unknown label(s)": 1,
        "text(s) of the fixed test split (leakage)": 1,
        "text(s) already in the training data": 1,
        "text(s) the training data labels differently": 1,
        "repeated text(s) (the latest label kept)": 1,
    }
    assert {(r.text, r.label) for r in intake.rows} == {
        ("kept before", "refund"),
        ("relabel me", "top_up"),
        ("fresh", "top_up"),
    }
    assert any("log:7" in line for line in intake.summary())  # says which record was refused


@pytest.mark.parametrize("plaintext", [False, True])
def test_the_data_set_round_trips_sealed_or_plain(tmp_path: Path, plaintext: bool) -> None:
    rows = [FeedbackRow(f"text {i} café 🙂", "refund", float(i)) for i in range(5)]
    path = write_rows(tmp_path, rows, plaintext=plaintext, key=KEY)
    assert path.name == (PLAIN_NAME if plaintext else SEALED_NAME) and data_file(tmp_path) == path
    assert (b"caf" in path.read_bytes()) is plaintext
    assert list(read_rows(tmp_path, KEY)) == rows
    write_rows(tmp_path, rows[:2], plaintext=not plaintext, key=KEY)  # switching kinds leaves one file
    assert [p.name for p in tmp_path.iterdir()] == [PLAIN_NAME if not plaintext else SEALED_NAME]
    assert list(read_rows(tmp_path, KEY)) == rows[:2]


def test_a_sealed_data_set_needs_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_rows(tmp_path, [FeedbackRow("x", "refund", 0.0)], plaintext=False, key=KEY)
    for name in ("TEXTCLF_DATA_KEY", "TEXTCLF_DATA_KEY_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEXTCLF_HOME", str(tmp_path / "home"))
    with pytest.raises(DataKeyError, match="is sealed: set TEXTCLF_DATA_KEY"):
        list(read_rows(tmp_path))


def test_the_held_out_slice_is_fixed_by_the_text_and_near_its_share(tmp_path: Path) -> None:
    texts = [f"feedback number {i}" for i in range(2000)]
    held = [t for t in texts if in_holdout(t, 0.2)]
    assert 0.16 < len(held) / len(texts) < 0.24
    assert held == [t for t in texts if in_holdout(t, 0.2)]  # the same every time
    assert not any(in_holdout(t, 0.0) for t in texts)
    write_rows(tmp_path, [FeedbackRow(t, "refund", 0.0) for t in texts], plaintext=True)
    train, _ = training_rows(tmp_path, 0.2)
    slice_, _ = holdout_rows(tmp_path, 0.2)
    assert set(train).isdisjoint(slice_) and len(train) + len(slice_) == len(texts)
