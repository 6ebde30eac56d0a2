"""The serving path's parts on their own: the batcher, the sub-batch planner, the settings."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import numpy as np
import pytest

from bentos.batcher import GreedyBatcher, Overloaded
from bentos.runtime import plan_calls
from bentos.settings import SettingsError, load_settings


class Recorder:
    """A fake model: doubles numbers, remembers each batch, optionally slow or failing."""

    def __init__(self, delay_s: float = 0.0, fail_on: int | None = None):
        self.batches: list[list[int]] = []
        self.delay_s = delay_s
        self.fail_on = fail_on
        self.threads: set[str] = set()
        self.lock = threading.Lock()

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(items))
            self.threads.add(threading.current_thread().name)
        time.sleep(self.delay_s)
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError("model failed")
        return [2 * i for i in items]


def run(coro):
    return asyncio.run(coro)


def test_each_request_gets_its_own_answers_in_order() -> None:
    model = Recorder(delay_s=0.02)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=64, max_queued=1000)
        requests = [list(range(i * 10, i * 10 + 1 + i % 3)) for i in range(20)]
        answers = await asyncio.gather(*(batcher.submit(r) for r in requests))
        return requests, answers

    requests, answers = run(main())
    assert answers == [[2 * i for i in r] for r in requests]
    assert len(model.batches) < 20  # requests that waited together ran together
    assert sorted(i for b in model.batches for i in b) == sorted(i for r in requests for i in r)


def test_batches_respect_the_size_limit_but_never_split_a_request() -> None:
    model = Recorder(delay_s=0.01)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=5, max_queued=1000)
        await asyncio.gather(*(batcher.submit([n] * 3) for n in range(6)), batcher.submit([9] * 8))

    run(main())
    assert [9] * 8 in model.batches  # a request larger than the limit runs alone, whole
    assert all(len(b) <= 5 for b in model.batches if 9 not in b)


def test_lanes_run_batches_in_parallel() -> None:
    model = Recorder(delay_s=0.1)

    async def main():
        batcher = GreedyBatcher(model, lanes=2, max_batch_size=1, max_queued=1000)
        started = time.perf_counter()
        await asyncio.gather(batcher.submit([1]), batcher.submit([2]))
        return time.perf_counter() - started

    elapsed = run(main())
    assert len(model.threads) == 2
    assert elapsed < 0.19  # two 0.1 s batches at once, not one after the other


def test_a_full_queue_refuses_new_requests() -> None:
    model = Recorder(delay_s=0.05)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=2, max_queued=4)
        results = await asyncio.gather(*(batcher.submit([n, n]) for n in range(6)), return_exceptions=True)
        return results

    results = run(main())
    refused = [r for r in results if isinstance(r, Overloaded)]
    served = [r for r in results if isinstance(r, list)]
    assert refused and served
    assert len(refused) + len(served) == 6


def test_a_model_error_reaches_only_its_batch() -> None:
    model = Recorder(fail_on=13)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=1, max_queued=100)
        return await asyncio.gather(batcher.submit([13]), batcher.submit([1]), return_exceptions=True)

    failed, fine = run(main())
    assert isinstance(failed, ValueError)
    assert fine == [2]


def test_requests_abandoned_while_queued_are_skipped() -> None:
    model = Recorder(delay_s=0.05)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=1, max_queued=100)
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0.01)  # the lane is busy with [1]
        gone = asyncio.create_task(batcher.submit([2]))
        await asyncio.sleep(0)
        gone.cancel()
        assert await batcher.submit([3]) == [6]
        await first

    run(main())
    assert [2] not in model.batches


@pytest.mark.parametrize("cost", [0, 4, 16, 1000])
def test_planned_calls_cover_every_text_once_within_the_row_limit(cost: int) -> None:
    lengths = np.sort(np.random.default_rng(0).integers(3, 80, size=100))
    calls = plan_calls(lengths, max_rows=16, call_cost_tokens=cost)
    covered = [i for start, end in calls for i in range(start, end)]
    assert covered == list(range(100))
    assert all(0 < end - start <= 16 for start, end in calls)


def test_fixed_chunks_without_a_call_cost() -> None:
    assert plan_calls(np.arange(10), max_rows=4, call_cost_tokens=0) == [(0, 4), (4, 8), (8, 10)]


def test_planner_keeps_a_long_text_away_from_short_ones() -> None:
    lengths = np.asarray([5] * 8 + [60])
    assert plan_calls(lengths, max_rows=16, call_cost_tokens=16) == [(0, 8), (8, 9)]
    # with a huge per-call cost everything shares one call
    assert plan_calls(lengths, max_rows=16, call_cost_tokens=10_000) == [(0, 9)]


def test_settings_parse_booleans_and_reject_nonsense() -> None:
    settings = load_settings({"TEXTCLF_ACCESS_LOG": "true", "TEXTCLF_METRICS": "0", "TEXTCLF_LANES": "0"})
    assert settings.access_log is True and settings.metrics is False
    assert settings.model_lanes >= 1
    assert load_settings({"TEXTCLF_LANES": "3"}).model_lanes == 3
    two = load_settings({"TEXTCLF_WORKERS": "2"})
    assert two.server_workers == 2 and two.model_lanes == max(1, (os.cpu_count() or 1) // 2)
    assert load_settings({}).server_workers == (os.cpu_count() or 1)
    with pytest.raises(SettingsError, match="TEXTCLF_TRACING must be true or false"):
        load_settings({"TEXTCLF_TRACING": "maybe"})
    with pytest.raises(SettingsError, match="TEXTCLF_MAX_QUEUED must be ≥ 1"):
        load_settings({"TEXTCLF_MAX_QUEUED": "0"})
    with pytest.raises(SettingsError, match="must be an integer"):
        load_settings({"TEXTCLF_SUB_BATCH": "lots"})
