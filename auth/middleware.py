"""The ASGI security layer around the whole service: bearer tokens, RBAC scopes, per-subject rate
limits, the token and JWKS endpoints, and one audit line per request.

Order per request: open route? → token valid? (401) → scope held? (403) → under its rate? (429) → app.
It reads headers only; the body of an API call streams straight through to the service.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from auth.audit import AuditLog, worker_tag
from auth.credentials import reloading_credentials
from auth.keys import load_ring, reloading_ring
from auth.oauth import MAX_FORM_BYTES, parse_form, token_response
from auth.ratelimit import RateLimiter, retry_after
from auth.scopes import ADMIN_PREFIX, ANY_SCOPE, JWKS_PATH, TOKEN_PATH, required_scope
from auth.tokens import InvalidToken, TokenService
from textclf.core.asgi import ASGIApp, Message, Receive, Scope, Send

REALM = 'Bearer realm="textclf"'
_REQUEST_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")
TOKEN_RATE = (5.0, 20.0)  # token requests per second (and burst) per client address: slows guessing


@dataclass(frozen=True)
class AuthConfig:
    """Everything the layer needs, as plain values (built from the server settings)."""

    enabled: bool
    auth_dir: Path
    algorithm: str
    issuer: str
    audience: str
    token_ttl_s: int
    rate_limit_rps: float
    rate_limit_burst: float
    audit: bool
    audit_dir: Path | None
    audit_stdout: bool
    audit_max_bytes: int
    audit_backups: int

    def check(self) -> None:
        """Fail at start, with the reason, if tokens cannot be verified (no ring, wrong algorithm)."""
        if not self.enabled:
            return
        ring = load_ring(self.auth_dir)
        if ring.active.alg != self.algorithm:
            raise ValueError(
                f"the active signing key in {self.auth_dir} is {ring.active.alg} but TEXTCLF_TOKEN_ALG is "
                f"{self.algorithm}: rotate with `textclf auth rotate-key --alg {self.algorithm}`"
            )


def _json_body(data: object) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class AuthMiddleware:
    """Wraps the BentoML app (`Service.add_asgi_middleware(AuthMiddleware, config=...)`)."""

    def __init__(self, app: ASGIApp, config: AuthConfig, workers: int = 1):
        self.app = app
        self.config = config
        # Request ids: this worker's random prefix and a counter (unique without a uuid4 per request)
        self._id_prefix = secrets.token_hex(8)
        self._id_counter = itertools.count()
        self.audit = (
            AuditLog(
                config.audit_dir,
                f"audit-{worker_tag()}",
                config.audit_stdout,
                config.audit_max_bytes,
                config.audit_backups,
            )
            if config.audit
            else None
        )
        if config.enabled:
            ring = reloading_ring(config.auth_dir)
            self.ring = ring.get
            self.credentials = reloading_credentials(config.auth_dir).get
            self.tokens = TokenService(
                ring.get,
                issuer=config.issuer,
                audience=config.audience,
                algorithm=config.algorithm,
                ttl_s=config.token_ttl_s,
            )
            # Each worker sees its share of a subject's requests (connections spread across workers).
            share = max(workers, 1)
            self.limiter = RateLimiter(config.rate_limit_rps / share, config.rate_limit_burst / share)
            self.token_limiter = RateLimiter(*TOKEN_RATE)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.config.enabled:  # no route of ours speaks it: refuse
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = b""
        authorization = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
            elif name == b"x-request-id" and _REQUEST_ID.match(value):
                request_id = value
        request_id = request_id or f"{self._id_prefix}{next(self._id_counter):08x}".encode()
        outcome: dict[str, Any] = {"status": 500, "subject": None, "scopes": None, "event": "request"}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                outcome["status"] = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
            await send(message)

        try:
            if not self.config.enabled:
                await self.app(scope, receive, send_with_id)
            else:
                await self._guarded(scope, receive, send_with_id, authorization, outcome)
        finally:
            if self.audit is not None:
                client = scope.get("client")
                self.audit.record(
                    event=outcome["event"],
                    request_id=request_id.decode(),
                    subject=outcome["subject"],
                    client=client[0] if client else None,
                    method=scope["method"],
                    route=scope["path"],
                    status=outcome["status"],
                    latency_ms=round((time.perf_counter() - started) * 1000, 3),
                    scopes=outcome["scopes"],
                    **({"detail": outcome["detail"]} if "detail" in outcome else {}),
                )

    async def _guarded(
        self, scope: Scope, receive: Receive, send: Send, authorization: bytes | None, outcome: dict[str, Any]
    ) -> None:
        path = scope["path"]
        if path == TOKEN_PATH:
            await self._token(scope, receive, send, outcome)
            return
        if path == JWKS_PATH:
            if scope["method"] not in ("GET", "HEAD"):
                await _respond(send, 405, _json_body({"error": "use GET"}), {"Allow": "GET, HEAD"})
                return
            body = _json_body(self.ring().jwks())
            await _respond(send, 200, body, {"Cache-Control": "public, max-age=60"})
            return
        needed = required_scope(path)
        if needed is None:
            await self.app(scope, receive, send)
            return
        if path.startswith(ADMIN_PREFIX):
            outcome["event"] = "admin"
        if authorization is None or authorization[:7].lower() != b"bearer ":
            outcome["detail"] = "no bearer token"
            await _respond(
                send, 401, _json_body({"error": "a bearer token is required"}), {"WWW-Authenticate": REALM}
            )
            return
        try:
            claims = self.tokens.verify(authorization[7:].strip().decode("latin-1"))
        except InvalidToken as exc:
            outcome["detail"] = str(exc)
            challenge = f'{REALM}, error="invalid_token", error_description="{exc}"'
            await _respond(
                send, 401, _json_body({"error": f"invalid token: {exc}"}), {"WWW-Authenticate": challenge}
            )
            return
        outcome["subject"] = claims.sub
        if needed != ANY_SCOPE and needed not in claims.scopes:
            outcome["scopes"] = [needed]
            outcome["detail"] = "insufficient scope"
            challenge = f'{REALM}, error="insufficient_scope", scope="{needed}"'
            await _respond(
                send,
                403,
                _json_body({"error": f"this route needs the {needed!r} scope"}),
                {"WWW-Authenticate": challenge},
            )
            return
        outcome["scopes"] = [needed] if needed else []
        wait = self.limiter.acquire(claims.sub)
        if wait:
            outcome["detail"] = "rate limited"
            await _respond(
                send,
                429,
                _json_body({"error": "too many requests; slow down"}),
                {"Retry-After": retry_after(wait)},
            )
            return
        scope.setdefault("state", {})["subject"] = claims.sub
        await self.app(scope, receive, send)

    async def _token(self, scope: Scope, receive: Receive, send: Send, outcome: dict[str, Any]) -> None:
        outcome["event"] = "token"
        if scope["method"] != "POST":
            await _respond(send, 405, _json_body({"error": "use POST"}), {"Allow": "POST"})
            return
        client = scope.get("client")
        wait = self.token_limiter.acquire(client[0] if client else "?")
        if wait:
            outcome["detail"] = "rate limited"
            await _respond(
                send,
                429,
                _json_body({"error": "too many token requests"}),
                {"Retry-After": retry_after(wait)},
            )
            return
        content_type = basic = b""
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"authorization":
                basic = value
        if content_type.split(b";", 1)[0].strip().lower() != b"application/x-www-form-urlencoded":
            outcome["detail"] = "wrong content type"
            await _respond(
                send,
                400,
                _json_body(
                    {
                        "error": "invalid_request",
                        "error_description": "send application/x-www-form-urlencoded",
                    }
                ),
            )
            return
        body = await _read_body(receive, MAX_FORM_BYTES)
        if body is None:
            await _respond(
                send, 413, _json_body({"error": f"token request body is over {MAX_FORM_BYTES} bytes"})
            )
            return
        answer = await token_response(
            parse_form(body), basic.decode("latin-1") or None, self.credentials(), self.tokens
        )
        outcome["subject"] = answer.subject
        outcome["scopes"] = list(answer.scopes) if answer.status == 200 else None
        outcome["detail"] = f"issued {answer.jti}" if answer.jti else answer.body.get("error")
        await _respond(send, answer.status, _json_body(answer.body), answer.headers)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or None once it passes `limit` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)
