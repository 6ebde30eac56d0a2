"""The retraining webhook (monitoring.retrain_trigger, auth.webhook) over real HTTP on loopback: who may
call it, firing drift and accuracy alerts start one job, alerts during a run coalesce, a job inside the
minimum interval is refused (an injected clock), bad requests get a 4xx, and the state is visible.
The job is a real process that blocks on a FIFO until the test lets it finish."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from auth.webhook import WebhookAuthError, webhook_verifier
from monitoring.retrain_trigger import RetrainTrigger, serve
from tests.auth_helpers import AUDIENCE, ISSUER, make_auth_folder
from textclf.core.settings import load_settings

SECRET = "a-shared-secret-of-some-length"
DRIFT = {
    "version": "4",
    "status": "firing",
    "alerts": [{"status": "firing", "labels": {"alertname": "TextclfDriftDetected", "job": "textclf"}}],
}


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def hook(tmp_path: Path) -> Iterator[tuple[str, RetrainTrigger, Clock, Path, list[dict]]]:
    fifo = tmp_path / "release"
    os.mkfifo(fifo)
    command = [sys.executable, "-c", f"open({str(fifo)!r}).read(); print('retrained')"]
    audited: list[dict] = []
    clock = Clock()
    trigger = RetrainTrigger(
        command,
        cwd=tmp_path,
        log_dir=tmp_path / "jobs",
        min_interval_s=3600,
        audit=lambda **fields: audited.append(fields),
        clock=clock,
    )
    verify = webhook_verifier(
        load_settings({"TEXTCLF_WEBHOOK_SECRET": SECRET, "TEXTCLF_HOME": str(tmp_path)})
    )
    server = serve(trigger, verify, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", trigger, clock, fifo, audited
    finally:
        server.shutdown()
        if trigger.status()["running"]:
            fifo.write_text("go")
            trigger.finished.wait(30)


def post(url: str, body: object, credential: str | None = SECRET) -> httpx.Response:
    headers = {"Authorization": f"Bearer {credential}"} if credential else {}
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/alerts", content=data, headers=headers, timeout=10)


def test_only_the_secret_gets_in(hook) -> None:
    url, trigger, *_, audited = hook
    assert post(url, DRIFT, credential=None).status_code == 401
    assert post(url, DRIFT, credential=SECRET + "x").status_code == 401
    assert httpx.get(f"{url}/status", timeout=10).status_code == 401
    assert trigger.status()["jobs_started"] == 0
    assert [a["action"] for a in audited] == ["retrain-unauthorized"] * 3
    assert httpx.get(f"{url}/healthz", timeout=10).json() == {"status": "ok"}


def test_one_job_alerts_coalesce_then_the_interval_holds(hook) -> None:
    url, trigger, clock, fifo, audited = hook
    resolved = {**DRIFT, "status": "resolved", "alerts": [{**DRIFT["alerts"][0], "status": "resolved"}]}
    other = {**DRIFT, "alerts": [{"status": "firing", "labels": {"alertname": "TextclfWorkerDown"}}]}
    for ignored in (resolved, other):
        answer = post(url, ignored)
        assert answer.status_code == 200 and answer.json()["queued"] is False
    first = post(url, DRIFT)
    assert first.status_code == 202 and first.json() == {
        "queued": True,
        "job": 1,
        "reason": "TextclfDriftDetected",
    }
    accuracy = {**DRIFT, "alerts": [{"status": "firing", "labels": {"alertname": "TextclfLiveAccuracyDrop"}}]}
    during = post(url, accuracy)
    assert during.status_code == 202 and during.json()["coalesced"] is True
    status = httpx.get(f"{url}/status", headers={"Authorization": f"Bearer {SECRET}"}, timeout=10).json()
    assert status["running"] and status["jobs_started"] == 1 and status["coalesced"] == 1

    fifo.write_text("go")  # the job ends
    assert trigger.finished.wait(30)
    state = trigger.status()
    assert not state["running"] and state["last_exit_code"] == 0
    assert "retrained" in Path(state["last_log"]).read_text()

    clock.now += 60  # inside the minimum interval
    limited = post(url, DRIFT)
    assert limited.status_code == 200 and "rate-limited" in limited.json()["reason"]
    assert limited.json()["next_allowed_at"] == 1_000_000.0 + 3600
    clock.now += 3600
    again = post(url, DRIFT)
    assert again.status_code == 202 and again.json()["job"] == 2
    actions = [a["action"] for a in audited]
    assert actions[:5] == [
        "retrain-queued",
        "retrain-coalesced",
        "retrain-finished",
        "retrain-rate-limited",
        "retrain-queued",
    ]


@pytest.mark.parametrize(
    ("body", "why"),
    [(b"{not json", "not JSON"), (b"[1, 2]", "expected Alertmanager's webhook JSON object")],
)
def test_a_malformed_notification_is_a_400(hook, body: bytes, why: str) -> None:
    url, trigger, *_ = hook
    answer = post(url, body)
    assert answer.status_code == 400 and why in answer.json()["error"]
    assert trigger.status()["jobs_started"] == 0


def test_admin_tokens_pass_and_other_scopes_do_not(tmp_path: Path) -> None:
    auth = make_auth_folder(tmp_path / "auth")
    settings = load_settings(
        {
            "TEXTCLF_AUTH_DIR": str(auth.path),
            "TEXTCLF_TOKEN_ISSUER": ISSUER,
            "TEXTCLF_TOKEN_AUDIENCE": AUDIENCE,
        }
    )
    verify = webhook_verifier(settings)
    assert verify(auth.mint(scopes="admin"))
    assert not verify(auth.mint(scopes="classify feedback"))
    assert not verify("not.a.token")
    with pytest.raises(WebhookAuthError, match="no way to authenticate"):
        webhook_verifier(load_settings({"TEXTCLF_HOME": str(tmp_path / "empty")}))
    with pytest.raises(WebhookAuthError, match="at least 16 characters"):
        webhook_verifier(load_settings({"TEXTCLF_WEBHOOK_SECRET": "short", "TEXTCLF_HOME": str(tmp_path)}))
