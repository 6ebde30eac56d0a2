"""The front door (bentos.front): header checks, the hot /classify route, and the hand-over of
everything else (bad bodies included) to the app behind it."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from bentos.front import FrontDoor, HotRoute

LIMIT = 100


class Body(BaseModel):
    texts: list[str]


class Behind:
    """The app behind the door (BentoML in the server): records what reaches it, answers 400."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    async def __call__(self, scope, receive, send) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        self.calls.append((scope["path"], body))
        await send({"type": "http.response.start", "status": 400, "headers": []})
        await send({"type": "http.response.body", "body": b'{"error":"from behind"}'})


async def answer(body: bytes):
    """A hot route in the image of the service's: validates, then answers or refuses."""
    request = Body.model_validate_json(body)
    if request.texts == ["busy"]:
        return 503, b'{"error":"busy"}', [(b"retry-after", b"1")]
    if request.texts == ["boom"]:
        raise RuntimeError("model failed")
    return 200, json.dumps([{"label": t.upper()} for t in request.texts]).encode(), []


def call(
    door: FrontDoor, path: str, chunks: list[bytes], headers: dict[str, str], method: str = "POST"
) -> tuple[int, dict[bytes, bytes], bytes]:
    messages = [
        {"type": "http.request", "body": c, "more_body": i < len(chunks) - 1} for i, c in enumerate(chunks)
    ]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
    }
    asyncio.run(door(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body


def door_with(hot: bool = True) -> tuple[FrontDoor, Behind]:
    behind = Behind()
    route = HotRoute()
    if hot:
        route.bind(answer)
    return FrontDoor(behind, ("/classify", "/feedback"), LIMIT, hot_route=route), behind


JSON = {"content-type": "application/json"}


def test_a_valid_classify_call_is_answered_without_reaching_the_app() -> None:
    door, behind = door_with()
    status, headers, body = call(
        door, "/classify", [b'{"texts": ["a", "b"]}'], {**JSON, "content-length": "20"}
    )
    assert status == 200
    assert json.loads(body) == [{"label": "A"}, {"label": "B"}]
    assert headers[b"content-type"] == b"application/json"
    assert int(headers[b"content-length"]) == len(body)
    assert behind.calls == []


def test_a_body_that_fails_validation_is_replayed_to_the_app_and_its_400_becomes_422() -> None:
    door, behind = door_with()
    status, _, body = call(door, "/classify", [b'{"texts": ', b"[1]}"], JSON)
    assert status == 422 and body == b'{"error":"from behind"}'
    assert behind.calls == [("/classify", b'{"texts": [1]}')]  # the whole body, as sent


def test_refusals_and_failures_of_the_hot_route_are_json_answers() -> None:
    door, _ = door_with()
    status, headers, body = call(door, "/classify", [b'{"texts": ["busy"]}'], JSON)
    assert (status, headers[b"retry-after"], json.loads(body)) == (503, b"1", {"error": "busy"})
    status, _, body = call(door, "/classify", [b'{"texts": ["boom"]}'], JSON)
    assert status == 500 and "unexpected error" in json.loads(body)["error"]


@pytest.mark.parametrize("hot", [True, False])
@pytest.mark.parametrize(
    ("headers", "chunks", "status", "words"),
    [
        ({"content-type": "text/plain"}, [b"{}"], 415, "got text/plain"),
        ({}, [b"{}"], 415, "got none"),
        ({"content-type": "Application/JSON; charset=utf-8", "content-length": "101"}, [b"x"], 413, "larger"),
        (JSON, [b"x" * 60, b"x" * 60], 413, "larger than 100 bytes"),  # chunked, counted as it streams
    ],
)
def test_header_and_size_checks_answer_before_the_body_is_parsed(
    hot: bool, headers: dict, chunks: list[bytes], status: int, words: str
) -> None:
    door, behind = door_with(hot)
    answered, _, body = call(door, "/classify", chunks, headers)
    assert answered == status and words in json.loads(body)["error"]
    assert behind.calls == []


def test_other_routes_and_methods_pass_through() -> None:
    door, behind = door_with()
    assert (
        call(door, "/feedback", [b"{}"], {**JSON, "content-length": "2"})[0] == 422
    )  # JSON route: 400 → 422
    assert call(door, "/model", [b""], {}, method="GET")[0] == 400  # not a JSON POST: untouched
    assert call(door, "/classify", [b""], {}, method="GET")[0] == 400
    assert [path for path, _ in behind.calls] == ["/feedback", "/model", "/classify"]


def test_before_the_service_binds_its_route_classify_goes_to_the_app() -> None:
    door, behind = door_with(hot=False)
    status, _, _ = call(door, "/classify", [b'{"texts": ["a"]}'], JSON)
    assert status == 422 and behind.calls == [("/classify", b'{"texts": ["a"]}')]


def test_a_client_that_leaves_before_sending_its_body_gets_nothing() -> None:
    door, behind = door_with()
    sent: list[dict] = []

    async def receive():
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/classify",
        "headers": [(b"content-type", b"application/json")],
    }
    asyncio.run(door(scope, receive, send))
    assert sent == [] and behind.calls == []
