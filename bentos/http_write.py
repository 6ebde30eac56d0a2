"""One write per HTTP response: uvicorn's httptools protocol writes the status line and headers the
moment the app sends `http.response.start`, and the body in a second write. For a small JSON answer
that is two syscalls and two TCP segments, so the client wakes twice, and on loopback the sender's
CPU carries the whole network stack twice. Here the head waits for the first body message and both
leave in one write; nothing else about the response changes (headers, chunking, keep-alive, HEAD).

`install()` makes every connection of this process's uvicorn (BentoML's workers run it with
httptools) create its request cycles from `OneWriteCycle`. uvicorn offers no option for that, so it
replaces the module's cycle class, the one name its protocol looks up per request.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http import httptools_impl


class _HeldHead:
    """Stands in for the transport while uvicorn writes the head: keeps the bytes instead."""

    __slots__ = ("data", "real")

    def __init__(self, real: Any) -> None:
        self.real = real
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class _HeadFirst:
    """Stands in for the transport during the first body message: its first write carries the held
    head too; a close (keep-alive off) or the end of the message sends the head if nothing did."""

    __slots__ = ("head", "real")

    def __init__(self, real: Any, head: bytes) -> None:
        self.real = real
        self.head = head

    def write(self, data: bytes) -> None:
        self.real.write(self.head + data if self.head else data)
        self.head = b""

    def flush(self) -> None:
        if self.head:
            self.real.write(self.head)
            self.head = b""

    def close(self) -> None:
        self.flush()
        self.real.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


class OneWriteCycle(httptools_impl.RequestResponseCycle):
    """uvicorn's request cycle, with the response head held back until the first body message."""

    _held: bytes = b""

    async def send(self, message: Any) -> None:
        if self.flow.write_paused and not self.disconnected:
            await self.flow.drain()  # as uvicorn's send does first: then nothing awaits while swapped
        real = self.transport
        if message["type"] == "http.response.start" and not self.response_started:
            held = _HeldHead(real)
            self.transport = held
            try:
                await super().send(message)
            finally:
                self.transport = real
            self._held = held.data
            return
        if not self._held:
            await super().send(message)
            return
        first = _HeadFirst(real, self._held)
        self._held = b""
        self.transport = first
        try:
            await super().send(message)
        finally:
            self.transport = real
            if not self.disconnected:  # the head alone (a HEAD answer, an empty body)
                first.flush()


def install() -> None:
    """Every request cycle uvicorn's httptools protocol creates in this process is a `OneWriteCycle`."""
    httptools_impl.RequestResponseCycle = OneWriteCycle  # type: ignore[misc]
