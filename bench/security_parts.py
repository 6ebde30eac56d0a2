"""What each part of the security layer costs, in CPU microseconds per request, measured in process.

The served `security_on`/`security_off` comparison says what the whole layer costs under load, but a
few percent drown in a shared machine's drift. Here the layer (auth.middleware.AuthMiddleware) wraps an
app that answers at once, and the same requests go through it part by part: the bare app, then token
check + scope + rate limit, then the audit line to its file, then the same line to stdout as well. CPU
time (not wall time) of many requests per step, best of a few repeats, so other processes barely count.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from pathlib import Path
from typing import Any

from auth.middleware import AuthConfig, AuthMiddleware
from bench.rounds import UNLIMITED_RATE, secure_env

STEPS = ("bare app", "token, scope and rate limit", "audit line to a file", "audit line to stdout too")
BODY = b'{"texts":["where is my card"]}'


async def _answer(scope: dict, receive: Any, send: Any) -> None:
    await receive()
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b'[{"label":"card_arrival","score":0.9}]'})


def _config(folder: Path, step: int) -> AuthConfig:
    from textclf.core.settings import Settings

    defaults = Settings()
    return AuthConfig(
        enabled=True,
        auth_dir=folder / "auth",
        algorithm=defaults.token_alg,
        issuer=defaults.token_issuer,
        audience=defaults.token_audience,
        token_ttl_s=3600,
        rate_limit_rps=float(UNLIMITED_RATE),  # checked, never refusing: as in the served targets
        rate_limit_burst=float(UNLIMITED_RATE),
        audit=step >= 2,
        audit_dir=folder / f"audit-{step}",
        audit_stdout=step >= 3,
        audit_max_bytes=10**9,
        audit_backups=1,
    )


async def _drive(app: Any, authorization: bytes, requests: int) -> float:
    """CPU seconds per request for `requests` POSTs through `app`."""
    scope = {
        "type": "http",
        "method": "POST",
        "path": "/classify",
        "client": ("127.0.0.1", 40000),
        "headers": [(b"content-type", b"application/json"), (b"authorization", authorization)],
    }

    async def receive() -> dict:
        return {"type": "http.request", "body": BODY, "more_body": False}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"the layer answered {message['status']}")

    started = time.process_time()
    for _ in range(requests):
        await app(dict(scope), receive, send)
    return (time.process_time() - started) / requests


def measure_security_parts(workdir: Path, requests: int = 20000, repeats: int = 3) -> dict:
    """µs per request of each step (cumulative) and of each part (the difference to the step before)."""
    env, authorization = secure_env(workdir)
    folder = Path(env["TEXTCLF_AUTH_DIR"]).parent
    stdout_file = workdir / "audit-stdout.jsonl"
    apps = [_answer] + [AuthMiddleware(_answer, config=_config(folder, step)) for step in (1, 2, 3)]
    best = [float("inf")] * len(apps)
    with stdout_file.open("w") as sink, contextlib.redirect_stdout(sink):
        for _ in range(repeats):
            for i, app in enumerate(apps):
                seconds = asyncio.run(_drive(app, authorization.encode(), requests))
                best[i] = min(best[i], seconds)
    for app in apps[1:]:
        if app.audit is not None:  # type: ignore[attr-defined]
            app.audit.close()  # type: ignore[attr-defined]
    steps_us = [round(b * 1e6, 2) for b in best]
    parts = {STEPS[i]: round(steps_us[i] - steps_us[i - 1], 2) for i in range(1, len(STEPS))}
    return {"steps_us": dict(zip(STEPS, steps_us, strict=True)), "parts_us": parts, "requests": requests}


if __name__ == "__main__":  # pragma: no cover - a quick look: python -m bench.security_parts
    import json
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps(measure_security_parts(Path(tmp)), indent=2), file=sys.stderr)
