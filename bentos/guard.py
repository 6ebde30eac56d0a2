"""ASGI guard in front of the API: wrong content type → 415, oversized body → 413, invalid body → 422,
as JSON.

It reads only headers and counts body bytes as they stream in, so it costs next to nothing on the
hot path and buffers only bodies sent without a Content-Length.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_json_error(send: Send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _unprocessable_on_invalid(send: Send) -> Send:
    """BentoML answers a body that fails validation (bad JSON, too many texts, too long a text) with
    400; the HTTP semantics (and FastAPI's convention) are 422 Unprocessable Content."""

    async def send_422(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 400:
            message = {**message, "status": 422}
        await send(message)

    return send_422


class RequestGuard:
    """Checks POSTs to the JSON routes before BentoML parses them."""

    def __init__(self, app: ASGIApp, json_routes: Iterable[str], max_body_bytes: int):
        self.app = app
        self.json_routes = frozenset(json_routes)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or (scope["path"] not in self.json_routes):
            await self.app(scope, receive, send)
            return
        content_type = b""
        declared = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                declared = value
        media = content_type.split(b";", 1)[0].strip().lower()
        if media != b"application/json":
            shown = media.decode("latin-1") or "none"
            await send_json_error(send, 415, f"Content-Type must be application/json, got {shown}")
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_json_error(send, 413, self._too_large())
            return
        send = _unprocessable_on_invalid(send)
        if declared is None:
            await self._guarded(scope, receive, send)
        else:  # the server enforces the declared length, which is within the limit
            await self.app(scope, receive, send)

    def _too_large(self) -> str:
        return f"request body is larger than {self.max_body_bytes} bytes"

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A body without Content-Length (chunked) is read up to the limit, then replayed."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await send_json_error(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
