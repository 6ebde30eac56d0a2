"""One write per response (bentos.http_write): uvicorn's real request cycle, a recording transport."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from bentos.http_write import OneWriteCycle


class Transport:
    """Records what the cycle does to the connection, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, bytes]] = []

    def write(self, data: bytes) -> None:
        self.calls.append(("write", data))

    def close(self) -> None:
        self.calls.append(("close", b""))

    def is_closing(self) -> bool:
        return False


class Flow:
    write_paused = False


class PausedFlow:
    """A client that reads slowly: writes are paused until drain() returns."""

    def __init__(self) -> None:
        self.write_paused = True
        self.drains = 0

    async def drain(self) -> None:
        self.drains += 1
        self.write_paused = False


def _cycle(
    transport: Transport, method: str = "POST", keep_alive: bool = True, flow: Any = None
) -> OneWriteCycle:
    scope: dict[str, Any] = {"type": "http", "method": method, "http_version": "1.1", "path": "/classify"}
    return OneWriteCycle(
        scope=scope,  # type: ignore[arg-type]
        transport=transport,  # type: ignore[arg-type]
        flow=flow or Flow(),
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test.access"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )


def _respond(cycle: OneWriteCycle, *messages: dict) -> None:
    async def run() -> None:
        for message in messages:
            await cycle.send(message)

    asyncio.run(run())


START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"11")]}
HEAD = b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\n"


def test_head_and_body_leave_in_one_write() -> None:
    transport = Transport()
    cycle = _cycle(transport)
    _respond(cycle, START, {"type": "http.response.body", "body": b'{"ok":true}'})
    assert transport.calls == [("write", HEAD + b'{"ok":true}')]
    assert cycle.response_complete


def test_the_head_is_not_written_before_the_body_arrives() -> None:
    transport = Transport()
    _respond(_cycle(transport), START)
    assert transport.calls == []


def test_without_keep_alive_the_answer_is_written_before_the_connection_closes() -> None:
    transport = Transport()
    _respond(_cycle(transport, keep_alive=False), START, {"type": "http.response.body", "body": b"x" * 11})
    assert [name for name, _ in transport.calls] == ["write", "close"]
    assert transport.calls[0][1].startswith(b"HTTP/1.1 200 OK\r\n") and transport.calls[0][1].endswith(
        b"x" * 11
    )
    assert b"connection: close\r\n" in transport.calls[0][1]


def test_a_head_request_and_an_empty_body_still_get_their_head() -> None:
    transport = Transport()
    _respond(_cycle(transport, method="HEAD"), START, {"type": "http.response.body", "body": b""})
    assert transport.calls == [("write", HEAD)]
    transport = Transport()
    empty = {"type": "http.response.start", "status": 204, "headers": []}
    _respond(_cycle(transport), empty, {"type": "http.response.body", "body": b""})
    assert transport.calls == [("write", b"HTTP/1.1 204 No Content\r\n\r\n")]


def test_a_streamed_answer_sends_the_head_with_its_first_chunk_then_each_chunk() -> None:
    transport = Transport()
    streamed = {"type": "http.response.start", "status": 200, "headers": []}  # no length: chunked
    _respond(
        _cycle(transport),
        streamed,
        {"type": "http.response.body", "body": b"abc", "more_body": True},
        {"type": "http.response.body", "body": b"de", "more_body": False},
    )
    head = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
    assert transport.calls == [("write", head + b"3\r\nabc\r\n"), ("write", b"2\r\nde\r\n0\r\n\r\n")]


def test_a_body_longer_than_its_length_fails_as_uvicorn_does_after_the_head() -> None:
    transport = Transport()
    with pytest.raises(RuntimeError, match="longer than Content-Length"):
        _respond(_cycle(transport), START, {"type": "http.response.body", "body": b"x" * 12})
    assert transport.calls == [("write", HEAD)]  # what uvicorn alone would have written before failing


def test_a_client_gone_before_the_body_gets_nothing_written() -> None:
    transport = Transport()
    cycle = _cycle(transport)

    async def run() -> None:
        await cycle.send(START)
        cycle.disconnected = True
        await cycle.send({"type": "http.response.body", "body": b'{"ok":true}'})

    asyncio.run(run())
    assert transport.calls == []


def test_a_paused_connection_is_drained_before_the_answer_goes_out_in_one_write() -> None:
    transport, flow = Transport(), PausedFlow()
    _respond(_cycle(transport, flow=flow), START, {"type": "http.response.body", "body": b'{"ok":true}'})
    assert flow.drains == 1 and transport.calls == [("write", HEAD + b'{"ok":true}')]
