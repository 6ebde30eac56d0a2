"""AES-256-GCM at rest: sealing, key loading, sealed logs and sealed model folders."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from textclf.core.artifacts import ModelFiles, has_artifact, read_artifact
from textclf.core.crypto import (
    DATA_KEY_ENV,
    DATA_KEY_FILE_ENV,
    MAGIC,
    NONCE_BYTES,
    DataKeyError,
    SealedDataError,
    SealedLog,
    Sealer,
    load_data_key,
    new_data_key,
    read_sealed_lines,
    read_sealed_log,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def test_round_trip_and_format() -> None:
    sealer = Sealer(KEY)
    sealed = sealer.seal(b"hello world", b"ctx")
    assert sealed.startswith(MAGIC) and b"hello world" not in sealed
    assert len(sealed) == len(MAGIC) + NONCE_BYTES + len(b"hello world") + 16
    assert sealer.open(sealed, b"ctx") == b"hello world"
    assert sealer.open(sealer.seal(b"")) == b""


def test_fresh_nonce_per_message() -> None:
    sealer = Sealer(KEY)
    first, second = sealer.seal(b"same text"), sealer.seal(b"same text")
    assert first != second
    nonce = slice(len(MAGIC), len(MAGIC) + NONCE_BYTES)
    assert first[nonce] != second[nonce]


def test_every_tampered_byte_is_refused() -> None:
    sealer = Sealer(KEY)
    sealed = sealer.seal(b"some plaintext", b"aad")
    for i in range(len(sealed)):
        broken = bytearray(sealed)
        broken[i] ^= 0x01
        with pytest.raises(SealedDataError, match="wrong key or tampered data"):
            sealer.open(bytes(broken), b"aad")


@pytest.mark.parametrize("cut", [0, 3, len(MAGIC) + NONCE_BYTES, len(MAGIC) + NONCE_BYTES + 15])
def test_truncated_data_is_refused(cut: int) -> None:
    sealed = Sealer(KEY).seal(b"x", b"")
    with pytest.raises(SealedDataError, match="truncated"):
        Sealer(KEY).open(sealed[:cut])


def test_wrong_key_and_wrong_aad_are_refused() -> None:
    sealed = Sealer(KEY).seal(b"secret", b"labels.json")
    other = Sealer(OTHER_KEY)
    with pytest.raises(SealedDataError, match=f"data key {other.key_id}: wrong key or tampered data"):
        other.open(sealed, b"labels.json")
    with pytest.raises(SealedDataError, match="wrong key or tampered data"):
        Sealer(KEY).open(sealed, b"model.onnx")


def test_key_id_is_a_short_fingerprint() -> None:
    assert Sealer(KEY).key_id == Sealer(KEY).key_id != Sealer(OTHER_KEY).key_id
    assert len(Sealer(KEY).key_id) == 8 and KEY.hex()[:8] not in Sealer(KEY).key_id
    assert Sealer(KEY).key_id in repr(Sealer(KEY)) and KEY.hex() not in repr(Sealer(KEY))
    with pytest.raises(DataKeyError, match="32 bytes"):
        Sealer(b"short")


def test_new_key_loads_from_the_environment(tmp_path: Path) -> None:
    text = new_data_key()
    assert new_data_key() != text
    home = {"TEXTCLF_HOME": str(tmp_path)}  # no HOME/data.key there
    assert load_data_key(home | {DATA_KEY_ENV: text}) == base64.urlsafe_b64decode(text)
    assert load_data_key(home | {DATA_KEY_ENV: text.rstrip("=")}) == base64.urlsafe_b64decode(text)
    assert load_data_key(home) is None
    assert load_data_key(home | {DATA_KEY_ENV: ""}) is None


def test_the_default_key_file_is_found_without_any_variable(tmp_path: Path) -> None:
    """`make run` writes HOME/data.key once; build, serve, bench and `bentoml serve` find it unasked."""
    text = new_data_key()
    (tmp_path / "data.key").write_text(text + "\n")
    home = {"TEXTCLF_HOME": str(tmp_path)}
    assert load_data_key(home) == base64.urlsafe_b64decode(text)
    inline = new_data_key()  # an explicit key wins over the default file
    assert load_data_key(home | {DATA_KEY_ENV: inline}) == base64.urlsafe_b64decode(inline)
    other = tmp_path / "other.key"
    other.write_text(inline)
    assert load_data_key(home | {DATA_KEY_FILE_ENV: str(other)}) == base64.urlsafe_b64decode(inline)
    (tmp_path / "data.key").write_text("garbage")
    with pytest.raises(DataKeyError, match=r"default key file .*data\.key"):
        load_data_key(home)


def test_key_from_a_file(tmp_path: Path) -> None:
    text = new_data_key()
    key_file = tmp_path / "data.key"
    key_file.write_text(text + "\n")
    assert load_data_key({DATA_KEY_FILE_ENV: str(key_file)}) == base64.urlsafe_b64decode(text)


def test_key_loading_errors(tmp_path: Path) -> None:
    text = new_data_key()
    key_file = tmp_path / "data.key"
    key_file.write_text(text)
    with pytest.raises(DataKeyError, match=f"only one of {DATA_KEY_ENV} and {DATA_KEY_FILE_ENV}"):
        load_data_key({DATA_KEY_ENV: text, DATA_KEY_FILE_ENV: str(key_file)})
    with pytest.raises(DataKeyError, match=f"{DATA_KEY_ENV} must decode to 32 bytes.*got 16"):
        load_data_key({DATA_KEY_ENV: base64.urlsafe_b64encode(os.urandom(16)).decode()})
    with pytest.raises(DataKeyError, match=f"{DATA_KEY_ENV} is not the urlsafe base64"):
        load_data_key({DATA_KEY_ENV: "not base64 at all!"})
    missing = tmp_path / "nope.key"
    with pytest.raises(DataKeyError, match=f"{DATA_KEY_FILE_ENV}={missing}: cannot read the key file"):
        load_data_key({DATA_KEY_FILE_ENV: str(missing)})
    key_file.write_text(base64.urlsafe_b64encode(os.urandom(31)).decode())
    with pytest.raises(DataKeyError, match=f"key file {DATA_KEY_FILE_ENV}=.*must decode to 32 bytes"):
        load_data_key({DATA_KEY_FILE_ENV: str(key_file)})


def test_sealed_log_round_trip_is_private(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "feedback.sealed.jsonl"
    records = [{"text": f"my pin is blocked {i}", "label": "pin_blocked", "n": i} for i in range(50)]
    with SealedLog(path, Sealer(KEY), b"feedback") as log:
        threads = [threading.Thread(target=log.append, args=(r,)) for r in records]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    sealed = path.read_bytes()  # (a 3-letter word can turn up in 50 lines of random base64 by chance)
    assert (
        b"my pin is blocked" not in sealed and b"pin_blocked" not in sealed and len(sealed.splitlines()) == 50
    )
    got = list(read_sealed_log(path, Sealer(KEY), b"feedback"))
    assert sorted(got, key=lambda r: r["n"]) == records
    with SealedLog(path, Sealer(KEY), b"feedback") as log:  # appends to what is there
        log.append({"n": 50})
    assert [r["n"] for r in read_sealed_log(path, Sealer(KEY), b"feedback")][-1] == 50


def test_sealed_log_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    with SealedLog(path, Sealer(KEY), b"feedback") as log:
        for i in range(3):
            log.append({"n": i})
    lines = path.read_bytes().splitlines()
    raw = bytearray(base64.urlsafe_b64decode(lines[1]))
    raw[-1] ^= 0x80
    lines[1] = base64.urlsafe_b64encode(bytes(raw))
    path.write_bytes(b"\n".join(lines) + b"\n")
    reader = read_sealed_log(path, Sealer(KEY), b"feedback")
    assert next(reader) == {"n": 0}
    with pytest.raises(SealedDataError, match=r"log\.jsonl:2: .*wrong key or tampered data"):
        next(reader)
    with pytest.raises(SealedDataError, match=r":1: .*wrong key"):
        list(read_sealed_log(path, Sealer(KEY), b"audit"))  # another log's associated data
    path.write_bytes(lines[0] + b"\n!!!\n")
    with pytest.raises(SealedDataError, match=r":2: "):
        list(read_sealed_log(path, Sealer(KEY), b"feedback"))


def test_a_torn_tail_is_repaired_on_reopen_and_skipped_by_readers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A writer killed mid-append leaves part of a line: every record before it stays readable, the next
    writer starts a line of its own (marking the torn one), and only a tolerant reader skips it."""
    path = tmp_path / "feedback.sealed.jsonl"
    with SealedLog(path, Sealer(KEY), b"feedback") as log:
        for i in range(3):
            log.append({"n": i})
    whole = path.read_bytes()
    with SealedLog(tmp_path / "one.jsonl", Sealer(KEY), b"feedback") as other:
        other.append({"n": 99})
    path.write_bytes(whole + (tmp_path / "one.jsonl").read_bytes()[:40])  # killed after 40 bytes
    tolerant = list(read_sealed_lines(path, Sealer(KEY), b"feedback", skip_torn=True))
    assert [r["n"] for _, r in tolerant] == [0, 1, 2]
    assert "torn record" in caplog.text
    with pytest.raises(SealedDataError, match=r":4: "):  # the strict reader still says where
        list(read_sealed_log(path, Sealer(KEY), b"feedback"))
    with SealedLog(path, Sealer(KEY), b"feedback") as log:  # a restarted writer
        log.append({"n": 3})
    assert "cut short" in caplog.text
    tolerant = list(read_sealed_lines(path, Sealer(KEY), b"feedback", skip_torn=True))
    assert [r["n"] for _, r in tolerant] == [0, 1, 2, 3]
    # tampering in the middle is not a torn line: it still stops the tolerant reader
    lines = path.read_bytes().splitlines()
    raw = bytearray(base64.urlsafe_b64decode(lines[1]))
    raw[-1] ^= 0x80
    lines[1] = base64.urlsafe_b64encode(bytes(raw))
    path.write_bytes(b"\n".join(lines) + b"\n")
    with pytest.raises(SealedDataError, match=r":2: .*tampered"):
        list(read_sealed_lines(path, Sealer(KEY), b"feedback", skip_torn=True))


def _sealed_folder(folder: Path, files: dict[str, bytes], key: bytes) -> Path:
    folder.mkdir()
    for name, data in files.items():
        (folder / f"{name}.sealed").write_bytes(Sealer(key).seal(data, name.encode()))
    return folder


def test_sealed_model_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_KEY_ENV, raising=False)
    monkeypatch.delenv(DATA_KEY_FILE_ENV, raising=False)
    labels = json.dumps(["a", "b"]).encode()
    folder = _sealed_folder(tmp_path / "m", {"labels.json": labels, "metadata.json": b"{}"}, KEY)
    (folder / "model.onnx").write_bytes(b"plain file next to sealed ones")
    files = ModelFiles(folder, KEY)
    assert files.sealed and files.names() == ["labels.json", "metadata.json"]
    assert files.has("labels.json") and not files.has("model.onnx")  # plain files do not count
    assert files.plain_path("labels.json") is None
    assert read_artifact(folder, "labels.json", KEY) == labels
    assert has_artifact(folder, "metadata.json")
    with pytest.raises(DataKeyError, match="model artifacts are encrypted: set TEXTCLF_DATA_KEY"):
        read_artifact(folder, "labels.json")
    monkeypatch.setenv(DATA_KEY_ENV, base64.urlsafe_b64encode(KEY).decode())
    assert read_artifact(folder, "labels.json") == labels  # the key from the environment
    with pytest.raises(SealedDataError, match=rf"labels\.json\.sealed: .*{Sealer(OTHER_KEY).key_id}"):
        read_artifact(folder, "labels.json", OTHER_KEY)
    (folder / "metadata.json.sealed").replace(folder / "labels.json.sealed")  # a swapped file
    with pytest.raises(SealedDataError, match="wrong key or tampered data"):
        read_artifact(folder, "labels.json")


def test_plain_model_files_need_no_key(tmp_path: Path) -> None:
    (tmp_path / "labels.json").write_text("[]")
    files = ModelFiles(tmp_path, environ={})
    assert not files.sealed and files.read("labels.json") == b"[]"
    assert files.plain_path("labels.json") == tmp_path / "labels.json"
    files.verify()
