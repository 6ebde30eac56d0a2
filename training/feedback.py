"""Labelled feedback as training data: taken in from the server's logs, checked, versioned with DVC.

The server's logs (textclf.core.feedback_log) hold every accepted `POST /feedback` item, sealed. The
retraining job takes them in here: blank texts, labels the model does not have, texts of the fixed test
split (leakage) and texts the training data already holds are refused with a count per reason; a text
sent more than once keeps its latest label. What is left joins the feedback data set
(`data.feedback_dir`), one file that DVC versions, sealed with the data key unless
`data.feedback_plaintext` says otherwise. Training decrypts it in memory only.

A fixed share of feedback texts (`data.feedback_holdout`, chosen by a hash of the text so a text stays on
its side for ever) is never trained on: it is the slice `textclf promote` compares the models on.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from textclf.core.crypto import (
    DataKeyError,
    SealedLog,
    Sealer,
    load_data_key,
    read_sealed_lines,
)
from textclf.core.feedback_log import FeedbackRecord
from training.validate import normalize, text_key

DATA_AAD = b"textclf-feedback-data-v1"
SEALED_NAME = "feedback.sealed.jsonl"
PLAIN_NAME = "feedback.jsonl"
_SHOW = 3  # sources quoted per refusal reason


@dataclass(frozen=True, slots=True)
class FeedbackRow:
    """One labelled feedback text of the data set; `time` is when the server stored it."""

    text: str
    label: str
    time: float

    def as_record(self) -> dict[str, object]:
        return {"text": self.text, "label": self.label, "time": self.time}


def in_holdout(text: str, fraction: float) -> bool:
    """Whether a feedback text belongs to the gate's slice: a fixed hash of the text, not a coin."""
    if fraction <= 0:
        return False
    digest = hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=8, person=b"holdout").digest()
    return int.from_bytes(digest, "big") < fraction * 2**64


# ------------------------------------------------------------------------------------- the data set file


def data_file(folder: Path) -> Path | None:
    """The feedback data set's file in `folder` (sealed or plain), or None when there is none yet."""
    sealed, plain = folder / SEALED_NAME, folder / PLAIN_NAME
    if sealed.is_file() and plain.is_file():
        raise ValueError(f"{folder} holds both {SEALED_NAME} and {PLAIN_NAME}: keep one")
    return sealed if sealed.is_file() else plain if plain.is_file() else None


def _sealer(key: bytes | None, what: Path) -> Sealer:
    key = key if key is not None else load_data_key()
    if key is None:
        raise DataKeyError(
            f"{what} is sealed: set TEXTCLF_DATA_KEY or TEXTCLF_DATA_KEY_FILE (the server's data key) "
            "to train on it"
        )
    return Sealer(key)


def read_rows(folder: Path, key: bytes | None = None) -> Iterator[FeedbackRow]:
    """The rows of the data set in `folder` (none when it has none), decrypted in memory."""
    path = data_file(folder)
    if path is None:
        return
    if path.name == SEALED_NAME:
        records = (r for _, r in read_sealed_lines(path, _sealer(key, path), DATA_AAD))
    else:
        records = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line)
    for record in records:
        yield FeedbackRow(str(record["text"]), str(record["label"]), float(record.get("time", 0.0)))


def write_rows(
    folder: Path, rows: Iterable[FeedbackRow], *, plaintext: bool, key: bytes | None = None
) -> Path:
    """Replace the data set in `folder` with `rows` (atomically: a killed writer leaves the old one)."""
    folder.mkdir(parents=True, exist_ok=True)
    name = PLAIN_NAME if plaintext else SEALED_NAME
    target, tmp = folder / name, folder / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    if plaintext:
        with tmp.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row.as_record(), ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
    else:
        with SealedLog(tmp, _sealer(key, target), DATA_AAD) as log:
            for row in rows:
                log.append(row.as_record())
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
    os.replace(tmp, target)
    (folder / (SEALED_NAME if plaintext else PLAIN_NAME)).unlink(missing_ok=True)  # one kind only
    return target


# ------------------------------------------------------------------------------------- taking feedback in


@dataclass
class Intake:
    """What taking the server's feedback in found: the data set's new rows and why others were refused."""

    rows: list[FeedbackRow]  # the whole data set after intake (previous rows, updated, plus new ones)
    new: int = 0  # rows added or relabelled
    read: int = 0  # records read from the server's logs
    refused: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def refuse(self, reason: str, record: FeedbackRecord) -> None:
        self.refused[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < _SHOW:
            shown.append(record.source)

    def summary(self) -> list[str]:
        """One line per refusal reason, with where the first few refused records are."""
        return [
            f"{count} {reason} ({', '.join(self.examples[reason])}{', …' if count > _SHOW else ''})"
            for reason, count in self.refused.most_common()
        ]


def take_in(
    records: Iterable[FeedbackRecord],
    *,
    labels: Iterable[str],
    train_labels: dict[bytes, str],
    test_keys: set[bytes],
    previous: Iterable[FeedbackRow],
) -> Intake:
    """Check the server's records against the training data and merge them into the previous data set.

    `train_labels` maps each train text's key to its label, `test_keys` are the test split's keys. A
    text sent more than once keeps the label of its latest record; one already in the data set with the
    same label is not new."""
    known = set(labels)
    rows = {text_key(row.text): row for row in previous}
    before = dict(rows)
    intake = Intake(rows=[])
    latest: dict[bytes, FeedbackRecord] = {}
    for record in records:
        intake.read += 1
        if not record.text.strip():
            intake.refuse("blank text(s)", record)
        elif record.label not in known:
            intake.refuse("unknown label(s)", record)
        elif (key := text_key(record.text)) in test_keys:
            intake.refuse("text(s) of the fixed test split (leakage)", record)
        elif key in train_labels:
            reason = (
                "text(s) already in the training data"
                if train_labels[key] == record.label
                else "text(s) the training data labels differently"
            )
            intake.refuse(reason, record)
        else:
            if key in latest:
                earlier = latest[key]
                if record.time < earlier.time:
                    intake.refuse("repeated text(s) (the latest label kept)", record)
                    continue
                intake.refuse("repeated text(s) (the latest label kept)", earlier)
            latest[key] = record
    for key, record in latest.items():
        row = FeedbackRow(record.text, record.label, record.time)
        old = before.get(key)
        if old is None or old.label != row.label:
            intake.new += 1
            rows[key] = row
    intake.rows = sorted(rows.values(), key=lambda row: (row.time, row.text))
    return intake


def _side(folder: Path, holdout: float, held: bool, key: bytes | None) -> tuple[list[str], list[str]]:
    rows = [row for row in read_rows(folder, key) if in_holdout(row.text, holdout) is held]
    return [row.text for row in rows], [row.label for row in rows]


def training_rows(folder: Path, holdout: float, key: bytes | None = None) -> tuple[list[str], list[str]]:
    """The feedback texts and labels a model trains on: the data set less the gate's held-out slice."""
    return _side(folder, holdout, False, key)


def holdout_rows(folder: Path, holdout: float, key: bytes | None = None) -> tuple[list[str], list[str]]:
    """The feedback slice no model trained on (the gate compares champion and challenger on it)."""
    return _side(folder, holdout, True, key)
