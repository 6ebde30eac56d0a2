"""The service's front door: one ASGI pass over every JSON POST, and the hot route answered in it.

Every POST to a JSON route is checked from its headers first: wrong content type → 415, a declared
body over the limit → 413 (a chunked one is counted as it streams in). A valid `POST /classify` is
then answered right here: the body is parsed and validated once by pydantic-core, its texts go to the
batcher, and the answer is written as JSON in two ASGI messages. BentoML's router, request objects,
IO descriptors and context would cost more CPU per request than the model does on short texts.

Anything else passes through to BentoML unchanged, and so does a `/classify` body that fails
validation: it is replayed to BentoML's own endpoint, so every bad-input answer (and the OpenAPI
schema and the BentoML client) stays exactly BentoML's, with its 400 turned into a 422.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Sequence

import orjson
from pydantic import ValidationError

from textclf.core.asgi import ASGIApp, Message, Receive, Scope, Send

Answer = Callable[[bytes], Awaitable[tuple[int, bytes, Sequence[tuple[bytes, bytes]]]]]

log = logging.getLogger(__name__)
JSON = (b"content-type", b"application/json")
INTERNAL_ERROR = b'{"error":"An unexpected error has occurred, please check the server log."}'


def json_error(message: str) -> bytes:
    return orjson.dumps({"error": message})


async def send_json(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON, (b"content-length", str(len(body)).encode()), *headers],
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


def _replaying(body: bytes, receive: Receive) -> Receive:
    """A receive() that hands out the already-read body once, then defers to the real one."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _read_body(receive: Receive, limit: int) -> bytes | bool | None:
    """The whole body; False if it grows past `limit`; None if the client went away."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):  # the usual case: one message
        return body if len(body) <= limit else False
    chunks = [body]
    size = len(body)
    while True:
        if size > limit:
            return False
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks) if size <= limit else False


class HotRoute:
    """The `/classify` answer of this worker's service instance, bound once the instance exists
    (the middleware is built before it); until then requests take BentoML's route."""

    def __init__(self) -> None:
        self.answer: Answer | None = None

    def bind(self, answer: Answer) -> None:
        self.answer = answer


class FrontDoor:
    """Checks POSTs to the JSON routes before BentoML parses them and answers valid `/classify` calls."""

    def __init__(
        self,
        app: ASGIApp,
        json_routes: Iterable[str],
        max_body_bytes: int,
        hot_path: str = "/classify",
        hot_route: HotRoute | None = None,
    ):
        self.app = app
        self.json_routes = frozenset(json_routes)
        self.max_body_bytes = max_body_bytes
        self.hot_path = hot_path
        self.hot_route = hot_route or HotRoute()
        self._too_large = json_error(f"request body is larger than {max_body_bytes} bytes")

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
            await send_json(send, 415, json_error(f"Content-Type must be application/json, got {shown}"))
            return
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await send_json(send, 413, self._too_large)
            return
        answer = self.hot_route.answer
        if answer is not None and scope["path"] == self.hot_path:
            await self._answer(answer, scope, receive, send)
        elif declared is None:  # chunked: count it as it streams in, then replay it
            body = await _read_body(receive, self.max_body_bytes)
            if body is False:
                await send_json(send, 413, self._too_large)
            elif body is not None:
                await self.app(scope, _replaying(body, receive), _unprocessable_on_invalid(send))
        else:  # the server enforces the declared length, which is within the limit
            await self.app(scope, receive, _unprocessable_on_invalid(send))

    async def _answer(self, answer: Answer, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, self.max_body_bytes)
        if body is None:  # the client went away
            return
        if body is False:
            await send_json(send, 413, self._too_large)
            return
        try:
            status, payload, headers = await answer(body)
        except ValidationError:  # BentoML's endpoint words the error, as it does for every bad body
            await self.app(scope, _replaying(body, receive), _unprocessable_on_invalid(send))
            return
        except Exception:
            log.exception("POST %s failed", self.hot_path)
            status, payload, headers = 500, INTERNAL_ERROR, ()
        await send_json(send, status, payload, headers)
