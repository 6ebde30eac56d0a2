"""Request metrics for every route, cheap enough for the hot path, and the `/metrics` page.

BentoML's own HTTP metrics middleware resolves five labelled series per request (`.labels()` with five
label values each time); on short texts it cost more CPU per request than the whole front door (the
README has the measurement). These are the same facts (requests by route and status,
latency by route) from children resolved once per (route, status) and cached, so a request costs two
increments. Routes outside the known set count as `other`: no label can grow without bound.

Every worker process writes its values to BentoML's multi-process folder (`PROMETHEUS_MULTIPROC_DIR`, set
before any worker starts), and `/metrics` sums them over all workers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from textclf.core.asgi import ASGIApp, Message, Receive, Scope, Send

OTHER_ROUTE = "other"
# Seconds; short texts answer in milliseconds, a saturated server in tenths, a timeout at 30 s.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS = Counter(
    "textclf_http_requests", "HTTP requests answered, by route and status code.", ["route", "status"]
)
LATENCY = Histogram(
    "textclf_http_request_duration_seconds",
    "Time from a request's arrival to the end of its answer, by route.",
    ["route"],
    buckets=LATENCY_BUCKETS,
)


class HttpMetrics:
    """ASGI middleware: counts every HTTP answer and observes its latency (outermost of ours, so
    refusals of the security layer count too)."""

    def __init__(self, app: ASGIApp, routes: Iterable[str], clock: Callable[[], float] = time.perf_counter):
        self.app = app
        self.routes = frozenset(routes)
        self.clock = clock
        self._counts: dict[tuple[str, int], Any] = {}
        self._latency: dict[str, Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in self.routes else OTHER_ROUTE
        started = self.clock()
        status = 500  # if the app fails before answering, the server answers 500

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.observe(route, status, self.clock() - started)

    def observe(self, route: str, status: int, seconds: float) -> None:
        counter = self._counts.get((route, status))
        if counter is None:
            counter = self._counts[(route, status)] = REQUESTS.labels(route=route, status=str(status))
        latency = self._latency.get(route)
        if latency is None:
            latency = self._latency[route] = LATENCY.labels(route=route)
        counter.inc()
        latency.observe(seconds)


def metrics_page() -> tuple[bytes, str]:
    """The Prometheus text page, summed over every worker when they share a multi-process folder."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
