"""Request metrics (monitoring.http_metrics): every answer counted by route and status, bounded labels."""

from __future__ import annotations

import asyncio

import pytest

from monitoring.http_metrics import LATENCY, REQUESTS, HttpMetrics


async def _app(scope, receive, send) -> None:
    if scope["path"] == "/boom":
        raise RuntimeError("failed before answering")
    status = 200 if scope["path"] == "/classify" else 404
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


def _count(route: str, status: str) -> float:
    return REQUESTS.labels(route=route, status=status)._value.get()


def test_answers_are_counted_by_route_and_status_and_timed_by_the_clock() -> None:
    ticks = iter(range(100))
    metrics = HttpMetrics(_app, routes={"/classify", "/boom"}, clock=lambda: next(ticks) * 0.5)

    async def send(message) -> None:
        pass

    async def receive():
        return {"type": "http.request", "body": b""}

    def call(path: str) -> None:
        asyncio.run(metrics({"type": "http", "method": "POST", "path": path, "headers": []}, receive, send))

    before = {key: _count(*key) for key in [("/classify", "200"), ("other", "404"), ("/boom", "500")]}
    latency_before = LATENCY.labels(route="/classify")._sum.get()
    for _ in range(3):
        call("/classify")
    for path in ("/a/b", "/c/d/e"):
        call(path)
    with pytest.raises(RuntimeError):
        call("/boom")
    assert _count("/classify", "200") - before[("/classify", "200")] == 3
    assert _count("other", "404") - before[("other", "404")] == 2  # unknown paths: one label value
    assert _count("/boom", "500") - before[("/boom", "500")] == 1  # failed before answering: a 500
    assert LATENCY.labels(route="/classify")._sum.get() - latency_before == pytest.approx(1.5)


def test_other_protocols_pass_through_uncounted() -> None:
    seen = []

    async def lifespan_app(scope, receive, send) -> None:
        seen.append(scope["type"])

    asyncio.run(HttpMetrics(lifespan_app, routes=())({"type": "lifespan"}, None, None))
    assert seen == ["lifespan"]
