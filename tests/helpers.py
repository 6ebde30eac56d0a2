"""Test helpers: a tiny labelled dataset, a real `bentoml serve` on a free loopback port, and `wait_for`."""

from __future__ import annotations

import csv
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import psutil
import pytest

from bench.processes import free_port, running, stop

INTENTS = {
    "card_arrival": ["where is my new card", "my card has not arrived yet", "when will my card come"],
    "refund": ["i want my money back", "how do i get a refund", "please refund this purchase"],
    "pin_blocked": ["my pin is blocked", "i entered the wrong pin too many times", "unblock my pin"],
    "exchange_rate": ["what exchange rate do you use", "how is the currency rate set", "fx rate today"],
    "top_up": ["how do i top up my account", "add money to my balance", "top up with a card"],
}
# The same intents in words the tiny dataset never uses: traffic that drifted (and labelled feedback on it).
SHIFTED_INTENTS = {
    "card_arrival": [
        "courier never delivered the plastic",
        "parcel with my debit thing is missing",
        "postman lost it",
    ],
    "refund": ["reimburse that charge", "chargeback for the order", "return the cash for the dress"],
    "pin_blocked": ["keypad code locked out", "secret digits frozen", "code jammed at the atm"],
    "exchange_rate": ["euro to dollar conversion", "what do you charge for yen", "forex spread"],
    "top_up": ["load funds onto the wallet", "put cash in the wallet", "fund the wallet via transfer"],
}
FILLERS = ["please", "hi", "thanks", "urgent", "today", "quickly", "help", "hello there", "now", "again"]
T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout_s: float, what: str, interval_s: float = 0.05) -> T:
    """Poll `predicate` until it returns something truthy, and return that; fail saying `what` did not
    happen by the deadline. Tests wait for the effect itself, never for a fixed while: as quick as the
    system allows, patient on a busy machine."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"gave up after {timeout_s:g}s waiting for {what} (last: {value!r})")
        time.sleep(interval_s)


def tiny_rows(per_intent: int, seed: int, intents: dict[str, list[str]] = INTENTS) -> list[tuple[str, str]]:
    """Short texts for five intents: easy to learn, varied enough to be unique."""
    rng = random.Random(seed)
    rows = []
    for label, phrases in intents.items():
        seen: set[str] = set()
        while len(seen) < per_intent:
            words = [rng.choice(FILLERS), rng.choice(phrases), rng.choice(FILLERS)]
            seen.add(" ".join(words) + f" {rng.randint(0, 10_000)}")
        rows.extend((text, label) for text in sorted(seen))
    rng.shuffle(rows)
    return rows


def shifted_rows(per_intent: int, seed: int) -> list[tuple[str, str]]:
    """Texts of the five intents in words the tiny dataset never uses (a drifted world)."""
    return tiny_rows(per_intent, seed, SHIFTED_INTENTS)


def write_csv(
    path: Path, rows: Iterable[Sequence[object]], header: Sequence[str] = ("text", "category")
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_tiny_dataset(directory: Path, train_per_intent: int = 40, test_per_intent: int = 10) -> Path:
    """train.csv, test.csv and categories.json for the five tiny intents."""
    write_csv(directory / "train.csv", tiny_rows(train_per_intent, seed=1))
    test = [r for r in tiny_rows(train_per_intent + test_per_intent, seed=2)]
    train_texts = {t for t, _ in tiny_rows(train_per_intent, seed=1)}
    test = [r for r in test if r[0] not in train_texts][: test_per_intent * len(INTENTS)]
    write_csv(directory / "test.csv", test)
    (directory / "categories.json").write_text(json.dumps(sorted(INTENTS)), encoding="utf-8")
    return directory


def bin_path(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def server_home(cwd: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` plus a BENTOML_HOME of this server's own that shares the session's model and Bento stores.

    Every `bentoml serve` start empties `$BENTOML_HOME/prometheus_multiproc_dir`, which would erase the
    metrics of servers already running in the same home."""
    shared = Path((env or {}).get("BENTOML_HOME") or os.environ["BENTOML_HOME"])
    home = cwd / f"bentoml-home-{free_port()}"
    home.mkdir(parents=True)
    shared.mkdir(parents=True, exist_ok=True)
    for name in ("models", "bentos"):
        (shared / name).mkdir(exist_ok=True)
        (home / name).symlink_to(shared / name, target_is_directory=True)
    return {**(env or {}), "BENTOML_HOME": str(home)}


@contextmanager
def bentoml_serve(target: str, env: dict[str, str], cwd: Path, timeout_s: float = 90) -> Iterator[str]:
    """Start `bentoml serve TARGET` on loopback, wait until ready, yield its URL, stop it by PID."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [bin_path("bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    env = server_home(cwd, env)
    with running(argv, f"{url}/readyz", cwd / f"serve-{port}.log", env=env, cwd=cwd, timeout_s=timeout_s):
        yield url


def bentoml_serve_fails(
    target: str, env: dict[str, str], cwd: Path, timeout_s: float = 90
) -> tuple[int, str]:
    """Start `bentoml serve TARGET` expecting it to refuse to start: (exit status, its output).
    Fails the test if the server is still running after `timeout_s` (stopped by PID first)."""
    port = free_port()
    argv = [bin_path("bentoml"), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
    log_path = cwd / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**os.environ, **server_home(cwd, env)},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            stop(process)
            raise AssertionError(
                f"bentoml serve still running after {timeout_s:.0f}s:\n{log_path.read_text()[-3000:]}"
            ) from None
    return returncode, log_path.read_text(encoding="utf-8", errors="replace")


def make_tiny_bert(folder: Path, texts: list[str]) -> Path:
    """A 2-layer random BERT with a WordPiece vocabulary learned from `texts`: a checkpoint folder
    that loads like any hub checkpoint, small enough to fine-tune in seconds."""
    import torch
    from tokenizers import processors
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from training.tokenization import build_wordpiece_vocab, wordpiece_tokenizer

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokenizer = wordpiece_tokenizer(build_wordpiece_vocab(texts, 300, special))
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    wrapped = BertTokenizerFast(
        tokenizer_object=tokenizer,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    config = BertConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(1)  # the same random "pretrained" weights in every run
    BertModel(config).save_pretrained(folder)
    wrapped.save_pretrained(folder)
    return folder


def serve_workers(port: int) -> list[psutil.Process]:
    """The worker processes of the `bentoml serve` listening on `port` (children of its arbiter)."""
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if "serve" in cmdline and "--port" in cmdline and str(port) in cmdline:
            return [child for child in proc.children(recursive=True) if "python" in child.name().lower()]
    raise AssertionError(f"no bentoml serve process on port {port}")


def needs_java() -> None:
    """Spark's tests need Java (17): skip, saying so, without it, unless REQUIRE_JAVA=1 (CI sets it: there
    a missing Java fails)."""
    import shutil

    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        why = "Spark needs Java (17): no `java` on PATH and no JAVA_HOME"
        if os.environ.get("REQUIRE_JAVA"):
            pytest.fail(f"REQUIRE_JAVA is set but {why}")
        pytest.skip(why)
