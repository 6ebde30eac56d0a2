"""Nothing acknowledged is lost: a server worker killed with SIGKILL while feedback pours in leaves every
record it acknowledged readable; what it had not acknowledged is whole or absent, never half-written."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import psutil
import pytest

from tests.conftest import SECURITY_OFF
from tests.helpers import bentoml_serve, serve_workers, wait_for
from textclf.core.crypto import Sealer, decode_data_key, new_data_key
from textclf.core.feedback_log import feedback_logs, iter_feedback

pytestmark = pytest.mark.integration
SENDERS = 12


def worker_that_stored_feedback(port: int, folder: Path) -> psutil.Process:
    """A worker whose feedback log exists, so it has acknowledged records: BentoML's workers share one
    listening socket and a burst of connections can all land on one of them (bentoml/BentoML#5426), so
    the first worker listed may have acknowledged nothing. Logs are named by worker id (`-w<id>`)."""
    stored = {path.name.split(".")[0].rsplit("-w", 1)[1] for path in feedback_logs(folder)}
    for worker in serve_workers(port):
        cmdline = worker.cmdline()
        if "--worker-id" in cmdline and cmdline[cmdline.index("--worker-id") + 1] in stored:
            return worker
    raise AssertionError(f"no worker of port {port} matches the feedback logs {sorted(stored)}")


def test_a_killed_worker_loses_no_acknowledged_feedback(built_bento: dict[str, str], tmp_path: Path) -> None:
    key = new_data_key()
    env = {
        "TEXTCLF_MODEL": built_bento["model"],
        **SECURITY_OFF,
        "TEXTCLF_WORKERS": "2",
        "TEXTCLF_FEEDBACK_DIR": str(tmp_path / "feedback"),
        "TEXTCLF_DATA_KEY": key,
        "TEXTCLF_PROFILES": "false",
        "TEXTCLF_FOLLOW": "false",
    }
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def send(sender: int) -> int:
        """Post one-item feedback until told to stop; count what failed (connections cut by the kill)."""
        failed = 0
        with httpx.Client(timeout=10) as client:
            n = 0
            while not stop.is_set():
                text = f"durable feedback {sender}-{n} where is my card"
                n += 1
                try:
                    answer = client.post(
                        f"{url}/feedback", json={"items": [{"text": text, "label": "card_arrival"}]}
                    )
                except httpx.HTTPError:
                    failed += 1
                    continue
                if answer.status_code == 200:
                    with lock:
                        acknowledged.add(text)
                else:
                    failed += 1
        return failed

    with bentoml_serve(built_bento["bento"], env, cwd=tmp_path) as url:
        port = int(url.rsplit(":", 1)[1])
        with ThreadPoolExecutor(SENDERS) as pool:
            senders = [pool.submit(send, i) for i in range(SENDERS)]
            try:
                wait_for(lambda: len(acknowledged) >= 200, 60, "feedback flowing")
                victim = worker_that_stored_feedback(port, tmp_path / "feedback")
                os.kill(victim.pid, signal.SIGKILL)
                killed_at = len(acknowledged)
                # the arbiter starts a new worker; feedback keeps being acknowledged after the kill
                wait_for(lambda: len(acknowledged) >= killed_at + 200, 90, "feedback after the kill")
                wait_for(
                    lambda: (
                        victim.pid not in {w.pid for w in serve_workers(port)}
                        and len(serve_workers(port)) == 2
                    ),
                    90,
                    "a new worker",
                )
            finally:
                stop.set()
            failures = sum(s.result() for s in senders)
    # every line decrypts and parses, or is a torn one the reader skips (anything else raises here)
    stored = [record.text for record in iter_feedback(tmp_path / "feedback", Sealer(decode_data_key(key)))]
    assert feedback_logs(tmp_path / "feedback")
    missing = acknowledged - set(stored)
    assert not missing, f"{len(missing)} acknowledged record(s) lost, e.g. {sorted(missing)[:3]}"
    assert len(stored) == len(set(stored))  # nothing written twice
    print(f"acknowledged {len(acknowledged)}, stored {len(stored)}, failed requests {failures}")
