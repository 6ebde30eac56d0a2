"""Model artifacts encrypted at rest in the BentoML store, and a server that refuses a bad one.

The sealed store lives in its own BentoML home, written by child processes: a sealed and a plain save
of one model share a tag, and the session's store (other tests' Bento) stays plain.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from converters.store import store_tag
from tests.conftest import REPO, Workspace
from tests.helpers import bentoml_serve, bentoml_serve_fails
from textclf.core.artifacts import SEALED_SUFFIX, write_sealed
from textclf.core.contract import LABELS_FILE, MODEL_FILE, check_model_folder, read_model_folder
from textclf.core.crypto import (
    DATA_KEY_ENV,
    DATA_KEY_FILE_ENV,
    DataKeyError,
    SealedDataError,
    Sealer,
    decode_data_key,
    key_fingerprint,
    new_data_key,
)
from textclf.core.runtime import OnnxClassifier

pytestmark = pytest.mark.integration

TEXTS = ["my pin is blocked please", "how do i get a refund", "where is my new card", "fx rate today"]


@dataclass(frozen=True)
class SealedStore:
    home: Path  # BENTOML_HOME
    key: str  # TEXTCLF_DATA_KEY
    bento: str
    model: str

    @property
    def model_dir(self) -> Path:
        name, version = self.model.split(":")
        return self.home / "models" / name / version

    @property
    def key_bytes(self) -> bytes:
        return decode_data_key(self.key)

    def env(self, key: str | None) -> dict[str, str]:
        """A child's environment: this store, `key` as the data key (None: no key at all)."""
        return {"BENTOML_HOME": str(self.home), DATA_KEY_ENV: key or "", DATA_KEY_FILE_ENV: ""}


def _child(script: str, env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        env={**os.environ, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def sealed_store(trained_logreg: Workspace, tmp_path_factory: pytest.TempPathFactory) -> SealedStore:
    """The tiny model saved sealed, and the project's Bento built around it, in a fresh store."""
    root = tmp_path_factory.mktemp("sealed")
    key = new_data_key()
    script = (
        "import json, sys; from pathlib import Path; from converters.bundle import build_bento; "
        "print(json.dumps(build_bento(Path(sys.argv[1]), Path(sys.argv[2]))))"
    )
    env = {"BENTOML_HOME": str(root / "bentoml"), DATA_KEY_ENV: key, DATA_KEY_FILE_ENV: ""}
    built = json.loads(_child(script, env, str(trained_logreg.onnx_dir("logreg")), str(root / "bento.json")))
    return SealedStore(home=root / "bentoml", key=key, bento=built["bento"], model=built["model"])


def test_the_store_holds_no_plaintext(sealed_store: SealedStore, trained_logreg: Workspace) -> None:
    plain = trained_logreg.onnx_dir("logreg")
    stored = sorted(p.name for p in sealed_store.model_dir.iterdir())
    assert stored == sorted([f"{p.name}{SEALED_SUFFIX}" for p in plain.iterdir()] + ["model.yaml"])
    labels = json.loads((plain / LABELS_FILE).read_text())
    model_head = (plain / MODEL_FILE).read_bytes()[:256]
    for path in sealed_store.model_dir.iterdir():
        data = path.read_bytes()
        assert not any(label.encode() in data for label in labels), path
        assert model_head not in data, path
    assert "aes-256-gcm" in (sealed_store.model_dir / "model.yaml").read_text()


def test_sealed_model_reads_and_predicts_like_the_plain_one(
    sealed_store: SealedStore, trained_logreg: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = OnnxClassifier(trained_logreg.onnx_dir("logreg"))
    expected = plain.predict_proba(TEXTS)
    sealed = OnnxClassifier(sealed_store.model_dir, key=sealed_store.key_bytes)
    assert sealed.labels == plain.labels and sealed.metadata == plain.metadata
    assert (sealed.predict_proba(TEXTS) == expected).all()
    monkeypatch.setenv(DATA_KEY_ENV, sealed_store.key)  # the key from the environment
    monkeypatch.delenv(DATA_KEY_FILE_ENV, raising=False)
    assert (OnnxClassifier(sealed_store.model_dir).predict_proba(TEXTS) == expected).all()
    _, metadata = read_model_folder(sealed_store.model_dir)
    assert str(store_tag(metadata)) == sealed_store.model  # versioning works through the key


def test_wrong_key_missing_key_and_tampering_are_refused(
    sealed_store: SealedStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(DATA_KEY_ENV, raising=False)
    monkeypatch.delenv(DATA_KEY_FILE_ENV, raising=False)
    with pytest.raises(DataKeyError, match="model artifacts are encrypted: set TEXTCLF_DATA_KEY"):
        OnnxClassifier(sealed_store.model_dir)
    wrong = os.urandom(32)
    with pytest.raises(SealedDataError, match=rf"\.sealed: .*data key {key_fingerprint(wrong)}: wrong key"):
        OnnxClassifier(sealed_store.model_dir, key=wrong)
    copy = shutil.copytree(sealed_store.model_dir, tmp_path / "copy")
    data = bytearray((copy / f"{MODEL_FILE}{SEALED_SUFFIX}").read_bytes())
    data[len(data) // 2] ^= 0x01
    (copy / f"{MODEL_FILE}{SEALED_SUFFIX}").write_bytes(bytes(data))
    key = sealed_store.key_bytes
    read_model_folder(copy, key)  # labels and metadata are intact ...
    with pytest.raises(SealedDataError, match=r"model\.onnx\.sealed: .*wrong key or tampered data"):
        OnnxClassifier(copy, key=key)  # ... the model is not
    with pytest.raises(SealedDataError, match=r"model\.onnx\.sealed"):
        check_model_folder(copy, key)  # what the server checks before it starts


def test_sealed_token_model_predicts_like_the_plain_one(trained_lstm: Workspace, tmp_path: Path) -> None:
    """The tokenizer is read through the key too (Tokenizer.from_str, never a plaintext file)."""
    plain_dir, key = trained_lstm.onnx_dir("lstm"), os.urandom(32)
    sealer = Sealer(key)
    for item in plain_dir.iterdir():
        write_sealed(tmp_path, item.name, item.read_bytes(), sealer)
    plain = OnnxClassifier(plain_dir, sub_batch=2)
    sealed = OnnxClassifier(tmp_path, sub_batch=2, key=key)
    assert sealed.tokenizer is not None and plain.tokenizer is not None
    assert sealed.tokenizer.to_str() == plain.tokenizer.to_str()
    assert (sealed.predict_proba(TEXTS) == plain.predict_proba(TEXTS)).all()


def test_store_seals_again_when_the_key_changes_but_never_unseals(
    trained_logreg: Workspace, tmp_path: Path
) -> None:
    script = (
        "import sys; from pathlib import Path; from converters.store import save_to_store; "
        "from textclf.core.artifacts import is_sealed; import bentoml; "
        "tag = save_to_store(Path(sys.argv[1])); "
        "m = bentoml.models.get(tag); print(tag, is_sealed(m.path), m.info.metadata.get('data_key_id'))"
    )
    folder = str(trained_logreg.onnx_dir("logreg"))
    home = {"BENTOML_HOME": str(tmp_path / "bentoml"), DATA_KEY_FILE_ENV: ""}
    first, second = new_data_key(), new_data_key()
    plain = _child(script, home | {DATA_KEY_ENV: ""}, folder).split()
    assert plain[1:] == ["False", "None"]
    sealed = _child(script, home | {DATA_KEY_ENV: first}, folder).split()
    assert sealed == [plain[0], "True", key_fingerprint(decode_data_key(first))]
    assert _child(script, home | {DATA_KEY_ENV: ""}, folder).split() == sealed  # no downgrade
    resealed = _child(script, home | {DATA_KEY_ENV: second}, folder).split()
    assert resealed == [plain[0], "True", key_fingerprint(decode_data_key(second))]


def test_server_starts_on_the_sealed_bento_with_its_key(sealed_store: SealedStore, tmp_path: Path) -> None:
    env = sealed_store.env(sealed_store.key) | {
        "TEXTCLF_MODEL": sealed_store.model,
        "TEXTCLF_AUTH": "false",
        "TEXTCLF_AUDIT": "false",
        "TEXTCLF_WORKERS": "1",
    }
    with bentoml_serve(sealed_store.bento, env, cwd=tmp_path) as url:
        answer = httpx.post(f"{url}/classify", json={"texts": TEXTS}, timeout=10)
        assert answer.status_code == 200, answer.text
    assert [r["label"] for r in answer.json()] == ["pin_blocked", "refund", "card_arrival", "exchange_rate"]


@pytest.mark.parametrize("problem", ["wrong key", "no key", "tampered model"])
def test_server_refuses_to_start_on_a_bad_sealed_model(
    sealed_store: SealedStore, tmp_path: Path, problem: str
) -> None:
    key, home = sealed_store.key, sealed_store.home
    if problem == "wrong key":
        key = new_data_key()
    elif problem == "no key":
        key = ""
    else:  # a copy of the store, one byte of the sealed model flipped
        home = Path(shutil.copytree(sealed_store.home, tmp_path / "bentoml"))
        target = home / sealed_store.model_dir.relative_to(sealed_store.home) / f"{MODEL_FILE}{SEALED_SUFFIX}"
        data = bytearray(target.read_bytes())
        data[-1] ^= 0x01
        target.write_bytes(bytes(data))
    env = {
        "BENTOML_HOME": str(home),
        DATA_KEY_ENV: key,
        DATA_KEY_FILE_ENV: "",
        "TEXTCLF_MODEL": sealed_store.model,
        "TEXTCLF_AUTH": "false",
        "TEXTCLF_AUDIT": "false",
        "TEXTCLF_WORKERS": "1",
    }
    returncode, log = bentoml_serve_fails(sealed_store.bento, env, cwd=tmp_path, timeout_s=60)
    assert returncode != 0, log[-3000:]
    if problem == "no key":
        assert "model artifacts are encrypted: set TEXTCLF_DATA_KEY or TEXTCLF_DATA_KEY_FILE" in log
    else:
        assert "wrong key or tampered data" in log, log[-3000:]
        assert f"data key {key_fingerprint(decode_data_key(key))}" in log
    if problem == "tampered model":
        assert "model.onnx.sealed: refusing this model artifact" in log
    assert "Service textclf initialized" not in log  # no worker ever started


def test_server_refuses_to_start_on_a_malformed_data_key(built_bento: dict[str, str], tmp_path: Path) -> None:
    """Even a plain model: the key also seals what the server writes (feedback), so a broken key
    configuration stops the server before any worker, instead of failing each one forever."""
    env = {
        DATA_KEY_ENV: new_data_key()[:22],  # 16 bytes: an AES-128 key is not accepted
        DATA_KEY_FILE_ENV: "",
        "TEXTCLF_MODEL": built_bento["model"],
        "TEXTCLF_AUTH": "false",
        "TEXTCLF_AUDIT": "false",
        "TEXTCLF_WORKERS": "1",
    }
    returncode, log = bentoml_serve_fails(built_bento["bento"], env, cwd=tmp_path, timeout_s=60)
    assert returncode != 0 and f"{DATA_KEY_ENV} must decode to 32 bytes (AES-256), got 16" in log, log[-3000:]


def test_bentoml_serve_finds_the_data_key_that_make_run_made(
    sealed_store: SealedStore, tmp_path: Path
) -> None:
    """No variable set: a plain `bentoml serve` opens the sealed store with HOME/data.key, the file
    `make run` (`textclf auth data-key`) creates, as build, serve and bench do."""
    home = tmp_path / "textclf-home"
    home.mkdir()
    (home / "data.key").write_text(sealed_store.key + "\n")
    env = sealed_store.env(None) | {
        "TEXTCLF_HOME": str(home),
        "TEXTCLF_MODEL": sealed_store.model,
        "TEXTCLF_AUTH": "false",
        "TEXTCLF_AUDIT": "false",
        "TEXTCLF_WORKERS": "1",
    }
    with bentoml_serve(sealed_store.bento, env, cwd=tmp_path) as url:
        answer = httpx.post(f"{url}/classify", json={"texts": TEXTS[:1]}, timeout=30)
    assert answer.status_code == 200 and answer.json()[0]["label"] == "pin_blocked"
