"""Adaptive batching that never waits for a timer to fill a batch: a free model lane takes what is queued.

Requests queue their texts; whenever one of the model lanes (threads, each running ONNX Runtime on
one core) is free, it takes every queued text up to `max_batch_size` and runs them as one batch.
Under light load a text runs alone at once; under heavy load batches grow by themselves while the
lanes are busy. There is no polling, so an idle server costs nothing. The queue is bounded: past
`max_queued` texts new requests are refused (the service answers 503 with Retry-After) instead of
waiting for ever.

One wait is allowed, and only on evidence (`gather_s`): when a lane finishes a batch while other
texts are queued, the clients it just answered are likely to send their next text within a few
milliseconds (closed-loop callers: batch jobs, services calling in a loop). The lane then holds the
queued texts until that many new requests have arrived, or `gather_s` has passed, and runs them all
as one batch. On a CPU a batch of 30 short texts costs less per text than three of 10 (each model
call pays for its weights once, and a larger pool pads less once sorted by length). A hold that
times out means the clients did not come back (open-loop traffic): then the lanes do not hold again
for `backoff_s`, so such traffic waits at most one `gather_s` per `backoff_s`.

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
        gather_s: float = 0.0,
        backoff_s: float = 1.0,
    ):
        self.predict = predict
        self.gather_s = gather_s
        self.backoff_s = backoff_s
        self._awaiting = 0  # new requests a holding lane waits for (as many as it just answered)
        self._hold: asyncio.TimerHandle | None = None  # the hold's time limit, while one holds
        self._no_hold_until = 0.0  # loop time: after a hold that timed out, none until then
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
        if self._hold is not None:
            self._awaiting -= 1
            if self._awaiting > 0 and self._queued < self.max_batch_size:
                return await job.future
            self._end_hold()
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
        if not self._held(len(jobs)):
            self._dispatch()

    def _held(self, answered: int) -> bool:
        """Hold the queued texts for the `answered` clients' next requests (see the module docstring)?"""
        if self.gather_s <= 0 or not self._queue or self._queued >= self.max_batch_size:
            return False
        loop = asyncio.get_running_loop()
        if self._hold is None:
            if loop.time() < self._no_hold_until:
                return False
            self._hold = loop.call_later(self.gather_s, self._hold_timed_out)
        self._awaiting += answered
        return True

    def _end_hold(self) -> None:
        if self._hold is not None:
            self._hold.cancel()
            self._hold = None
        self._awaiting = 0

    def _hold_timed_out(self) -> None:
        self._end_hold()
        self._no_hold_until = asyncio.get_running_loop().time() + self.backoff_s
        self._dispatch()
