"""Adaptive batching that never waits on purpose: a free model lane takes everything queued.

Requests queue their texts; whenever one of the model lanes (threads, each running ONNX Runtime on
one core) is free, it takes every queued text up to `max_batch_size` and runs them as one batch.
Under light load a text runs alone at once; under heavy load batches grow by themselves while the
lanes are busy. There is no timer and no polling, so an idle server costs nothing and a half-loaded
one adds no batching delay. The queue is bounded: past `max_queued` texts new requests are refused
(the service answers 503 with Retry-After) instead of waiting for ever.

Each request notes when it queued; an optional `on_batch(waits)` hook hears, in the lane and before the
model runs, how long each request of the batch waited (seconds), so the server can observe queueing
without this module knowing about metrics.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Overloaded(RuntimeError):
    """More texts are queued than the server is configured to hold."""


@dataclass(slots=True)
class _Job(Generic[T, R]):
    items: Sequence[T]
    future: asyncio.Future[list[R]]
    queued_at: float  # time.perf_counter() when submitted


class GreedyBatcher(Generic[T, R]):
    """Runs `predict(items) -> results` (same length, same order) on batches of queued requests."""

    def __init__(
        self,
        predict: Callable[[list[T]], list[R]],
        *,
        lanes: int,
        max_batch_size: int,
        max_queued: int,
        on_batch: Callable[[list[float]], None] | None = None,
    ):
        self.predict = predict
        self.on_batch = on_batch
        self.max_batch_size = max_batch_size
        self.max_queued = max_queued
        self._queue: collections.deque[_Job[T, R]] = collections.deque()
        self._queued = 0
        self._free = lanes
        # Batches go to the lanes through one queue; each lane hands its results back to the event loop
        # with one thread-safe call per batch (no executor futures, no per-request wake-ups).
        self._batches: queue.SimpleQueue[
            tuple[asyncio.AbstractEventLoop, list[_Job[T, R]], list[T]] | None
        ] = queue.SimpleQueue()
        self.lanes = [
            threading.Thread(target=self._lane, name=f"textclf-model-{i}", daemon=True) for i in range(lanes)
        ]
        for lane in self.lanes:
            lane.start()

    async def submit(self, items: Sequence[T]) -> list[R]:
        """The results for `items`, computed in some batch; raises Overloaded when the queue is full."""
        if self._queued and self._queued + len(items) > self.max_queued:
            raise Overloaded(f"{self._queued} texts already queued (limit {self.max_queued})")
        job: _Job[T, R] = _Job(items, asyncio.get_running_loop().create_future(), time.perf_counter())
        self._queue.append(job)
        self._queued += len(items)
        self._dispatch()
        return await job.future

    def _take(self) -> list[_Job[T, R]]:
        """Queued jobs up to max_batch_size texts (a larger request goes alone, whole)."""
        jobs: list[_Job[T, R]] = []
        size = 0
        while self._queue:
            job = self._queue[0]
            if jobs and size + len(job.items) > self.max_batch_size:
                break
            self._queue.popleft()
            self._queued -= len(job.items)
            if job.future.done():  # the client gave up while it waited
                continue
            jobs.append(job)
            size += len(job.items)
        return jobs

    def _dispatch(self) -> None:
        loop = asyncio.get_running_loop()
        while self._free and self._queue:
            jobs = self._take()
            if not jobs:
                continue
            self._free -= 1
            self._batches.put((loop, jobs, [item for job in jobs for item in job.items]))

    def _lane(self) -> None:
        """A model lane (a thread): runs batches, hands each one's results to the loop in one call."""
        while (batch := self._batches.get()) is not None:
            loop, jobs, items = batch
            try:
                if self.on_batch is not None:
                    now = time.perf_counter()
                    self.on_batch([now - job.queued_at for job in jobs])
                results, error = self.predict(items), None
            except Exception as exc:  # the batch's requests get the error, the lane lives on
                results, error = None, exc
            with contextlib.suppress(RuntimeError):  # a closed loop (shutting down): nobody waits
                loop.call_soon_threadsafe(self._finish, jobs, results, error)

    def close(self) -> None:
        """Let the lanes end once the batches already handed to them are done."""
        for _ in self.lanes:
            self._batches.put(None)

    def _finish(self, jobs: list[_Job[T, R]], results: list[R] | None, error: BaseException | None) -> None:
        self._free += 1
        start = 0
        for job in jobs:
            end = start + len(job.items)
            if not job.future.done():
                if error is not None:
                    job.future.set_exception(error)
                else:
                    job.future.set_result(results[start:end])  # type: ignore[index]
            start = end
        self._dispatch()
