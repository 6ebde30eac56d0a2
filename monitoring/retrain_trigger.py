"""The retraining trigger: Alertmanager's webhook turns a firing drift or accuracy alert into one
retraining job, run as its own process (`textclf retrain`), never inside the server.

- Authenticated: `Authorization: Bearer <credential>`, checked by the caller's `verify` (a shared secret
  compared in constant time, or an access token with the `admin` scope). Anything else: 401.
- De-duplicated: one job at a time; alerts that arrive while it runs coalesce into it (counted).
- Rate-limited: a job starts at most once per `min_interval_s`; an alert inside the interval is
  acknowledged and refused with the time the next job may start.
- Visible: `GET /status` (same credential) and `textclf retrain --status` (the job's own state file).

Alertmanager retries a notification that gets a 5xx, so every decision is a 200 or 202 with its reason;
only a malformed request gets a 4xx. Resolved alerts and other alert names are ignored.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

TRIGGERS = frozenset({"TextclfDriftDetected", "TextclfLiveAccuracyDrop"})
MAX_BODY = 1 << 20  # Alertmanager's notifications are a few kilobytes
log = logging.getLogger(__name__)


@dataclass
class TriggerState:
    """What the trigger has done since it started (GET /status)."""

    running: bool = False
    jobs_started: int = 0
    coalesced: int = 0  # alerts absorbed by a running job
    rate_limited: int = 0
    ignored: int = 0
    last_started: float | None = None
    last_finished: float | None = None
    last_exit_code: int | None = None
    last_reason: str = ""
    last_log: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)  # the last few jobs


class RetrainTrigger:
    """Starts `command` (in `cwd`) for firing alerts, one at a time, at most once per `min_interval_s`."""

    def __init__(
        self,
        command: Sequence[str],
        *,
        cwd: Path,
        log_dir: Path,
        min_interval_s: float,
        audit: Callable[..., None] = lambda **_: None,
        clock: Callable[[], float] = time.time,
    ):
        self.command = list(command)
        self.cwd = cwd
        self.log_dir = log_dir
        self.min_interval_s = min_interval_s
        self.audit = audit
        self.clock = clock
        self.state = TriggerState()
        self._lock = threading.Lock()
        self.finished = threading.Event()  # set after each job: tests and shutdown wait on it

    def alert(self, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Decide on one Alertmanager notification: (HTTP status, answer)."""
        firing = sorted(
            {
                str((a.get("labels") or {}).get("alertname"))
                for a in payload.get("alerts") or []
                if isinstance(a, dict) and a.get("status", payload.get("status")) == "firing"
            }
            & TRIGGERS
        )
        with self._lock:
            if not firing:
                self.state.ignored += 1
                return HTTPStatus.OK, {"queued": False, "reason": "no firing drift or accuracy alert"}
            reason = ", ".join(firing)
            if self.state.running:
                self.state.coalesced += 1
                self.audit(action="retrain-coalesced", alerts=reason)
                return HTTPStatus.ACCEPTED, {"queued": False, "coalesced": True, "reason": "a job is running"}
            now = self.clock()
            last = self.state.last_started
            if last is not None and now - last < self.min_interval_s:
                self.state.rate_limited += 1
                next_at = last + self.min_interval_s
                self.audit(action="retrain-rate-limited", alerts=reason, next_at=next_at)
                return HTTPStatus.OK, {
                    "queued": False,
                    "reason": f"rate-limited: the last job started {now - last:.0f} s ago",
                    "next_allowed_at": next_at,
                }
            self.state.running = True
            self.state.jobs_started += 1
            self.state.last_started, self.state.last_reason = now, reason
            number = self.state.jobs_started
            self.finished.clear()
        self.audit(action="retrain-queued", alerts=reason, job=number)
        threading.Thread(
            target=self._run, args=(number, reason), name="textclf-retrain-job", daemon=True
        ).start()
        return HTTPStatus.ACCEPTED, {"queued": True, "job": number, "reason": reason}

    def _run(self, number: int, reason: str) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"job-{number}.log"
        code = -1
        try:
            with log_path.open("w", encoding="utf-8") as out:
                code = subprocess.run(
                    self.command, cwd=self.cwd, stdout=out, stderr=subprocess.STDOUT
                ).returncode
        except OSError as exc:
            log.error("retraining job %d could not start: %s", number, exc)
        finally:
            with self._lock:
                self.state.running = False
                self.state.last_finished, self.state.last_exit_code = self.clock(), code
                self.state.last_log = str(log_path)
                entry = {"job": number, "reason": reason, "exit_code": code, "log": str(log_path)}
                self.state.history = [*self.state.history, entry][-20:]
            self.audit(action="retrain-finished", job=number, exit_code=code, log=str(log_path))
            self.finished.set()

    def status(self) -> dict[str, Any]:
        with self._lock:
            return asdict(self.state) | {"min_interval_s": self.min_interval_s, "command": self.command}


def make_handler(trigger: RetrainTrigger, verify: Callable[[str], bool]) -> type[BaseHTTPRequestHandler]:
    """The HTTP side: POST /alerts, GET /status (both authenticated), GET /healthz."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "textclf-retrain-trigger"

        def _answer(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body, default=str).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _authorized(self) -> bool:
            scheme, _, credential = (self.headers.get("Authorization") or "").partition(" ")
            if scheme.lower() == "bearer" and credential and verify(credential.strip()):
                return True
            trigger.audit(action="retrain-unauthorized", client=self.client_address[0], path=self.path)
            self._answer(
                HTTPStatus.UNAUTHORIZED, {"error": "a bearer credential with the admin scope is required"}
            )
            return False

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._answer(HTTPStatus.OK, {"status": "ok"})
            elif self.path == "/status":
                if self._authorized():
                    self._answer(HTTPStatus.OK, trigger.status())
            else:
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})

        def do_POST(self) -> None:
            if self.path != "/alerts":
                self._answer(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}"})
                return
            if not self._authorized():
                return
            try:
                length = int(self.headers.get("Content-Length") or -1)
            except ValueError:
                length = -1
            if not 0 <= length <= MAX_BODY:
                self._answer(
                    HTTPStatus.BAD_REQUEST, {"error": f"a JSON body of at most {MAX_BODY} bytes is required"}
                )
                return
            try:
                payload = json.loads(self.rfile.read(length))
            except ValueError as exc:
                self._answer(HTTPStatus.BAD_REQUEST, {"error": f"not JSON: {exc}"})
                return
            if not isinstance(payload, dict):
                self._answer(HTTPStatus.BAD_REQUEST, {"error": "expected Alertmanager's webhook JSON object"})
                return
            status, body = trigger.alert(payload)
            self._answer(status, body)

        def log_message(self, format: str, *args: Any) -> None:
            log.info("%s %s", self.address_string(), format % args)

    return Handler


def serve(
    trigger: RetrainTrigger, verify: Callable[[str], bool], host: str, port: int
) -> ThreadingHTTPServer:
    """A started HTTP server (its own thread); `shutdown()` stops it."""
    server = ThreadingHTTPServer((host, port), make_handler(trigger, verify))
    threading.Thread(target=server.serve_forever, name="textclf-retrain-trigger", daemon=True).start()
    return server
