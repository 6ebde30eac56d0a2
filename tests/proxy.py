"""A loopback proxy in front of a real server that injects faults into POST /classify: 503s, requests
held until several are in flight, or held after the first few until the test releases them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

GATHER_DEADLINE_S = 5.0
HOLD_DEADLINE_S = 120.0  # a held request goes on by itself after this, so no test can hang on it


class FlakyProxy(ThreadingHTTPServer):
    """Forwards to the real server, but answers 503 to the first `failures` POST /classify requests.

    It also records the most /classify requests it saw in flight at once, and can hold each
    forwarded /classify until `gather` of them are in flight (or `GATHER_DEADLINE_S` passes, for a last
    chunk that has no company), so the client's concurrency shows without timing anything. With
    `hold_after`, every /classify after the first `hold_after` waits until `release()` (`held` counts
    those waiting), so a test can change the server under a client that is stopped mid-run.
    """

    daemon_threads = True

    def __init__(self, upstream: str, failures: int, gather: int = 0, hold_after: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.upstream = httpx.Client(base_url=upstream, timeout=10)
        self.failures = failures
        self.gather = gather
        self.failed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.answered = 0
        self.arrivals: list[tuple[int, int]] = []  # (in flight with it, answered before it) per /classify
        self.lock = threading.Condition()
        self.hold_after = hold_after
        self.held = 0
        self.released = threading.Event()

    def release(self) -> None:
        """Let every held request (and every later one) through."""
        self.released.set()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class _ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like the real server
    server: FlakyProxy

    def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
        pass

    def _body(self) -> bytes:
        """The request body; the BentoML client streams it chunked, without a Content-Length."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
            pass
        return b"".join(parts)

    def _reply(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _forward(self, method: str) -> None:
        proxy = self.server
        body = self._body() if method == "POST" else b""
        is_classify = method == "POST" and self.path == "/classify"
        order = 0
        if is_classify:
            with proxy.lock:
                failing = proxy.failed < proxy.failures
                proxy.failed += failing
                proxy.in_flight += 1
                proxy.max_in_flight = max(proxy.max_in_flight, proxy.in_flight)
                proxy.arrivals.append((proxy.in_flight, proxy.answered))
                order = len(proxy.arrivals)  # this request's place among the /classify ones, from 1
                proxy.lock.notify_all()
        try:
            if is_classify and failing:
                self._reply(503, b'{"error": "overloaded, try again"}')
                return
            if is_classify and proxy.hold_after is not None and order > proxy.hold_after:
                with proxy.lock:
                    proxy.held += 1
                    proxy.lock.notify_all()
                proxy.released.wait(HOLD_DEADLINE_S)
            if is_classify and proxy.gather:
                with proxy.lock:
                    proxy.lock.wait_for(lambda: proxy.in_flight >= proxy.gather, GATHER_DEADLINE_S)
            headers = {"Content-Type": self.headers.get("Content-Type", "application/json")}
            answer = proxy.upstream.request(method, self.path, content=body, headers=headers)
            self._reply(answer.status_code, answer.content, answer.headers.get("content-type", "text/plain"))
        finally:
            if is_classify:
                with proxy.lock:
                    proxy.in_flight -= 1
                    proxy.answered += 1

    def do_GET(self) -> None:
        self._forward("GET")

    def do_POST(self) -> None:
        self._forward("POST")


@contextmanager
def flaky_proxy(
    upstream: str, failures: int, gather: int = 0, hold_after: int | None = None
) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(upstream, failures, gather, hold_after)
    thread = threading.Thread(target=proxy.serve_forever, name="flaky-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        proxy.release()
        proxy.shutdown()
        proxy.server_close()
        proxy.upstream.close()
        thread.join(timeout=5)
