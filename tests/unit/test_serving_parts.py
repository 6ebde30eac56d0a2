"""The serving path's parts on their own: the batcher, the sub-batch planner, the settings."""

from __future__ import annotations

import asyncio
import itertools
import os
import threading

import numpy as np
import pytest

from bentos.batcher import GreedyBatcher, Overloaded
from textclf.core.runtime import plan_calls
from textclf.core.settings import SettingsError, load_settings

WAIT_S = 30  # a deadline for events that come at once when the code works, never a measured time


class Recorder:
    """A fake model: doubles numbers, remembers each batch, optionally held back, meeting or failing.

    `hold` keeps every batch waiting until the test calls `release.set()`, so requests provably queue
    behind a busy lane; `meet` makes each batch wait at a barrier that only concurrent batches pass."""

    def __init__(self, *, hold: bool = False, meet: int = 0, fail_on: int | None = None):
        self.batches: list[list[int]] = []
        self.fail_on = fail_on
        self.threads: set[str] = set()
        self.lock = threading.Lock()
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        self.barrier = threading.Barrier(meet) if meet else None

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(items))
            self.threads.add(threading.current_thread().name)
        self.started.set()
        if self.barrier is not None:
            self.barrier.wait(timeout=WAIT_S)  # BrokenBarrierError unless the other batches run meanwhile
        if not self.release.wait(timeout=WAIT_S):
            raise TimeoutError("the test never released the model")
        if self.fail_on is not None and self.fail_on in items:
            raise ValueError("model failed")
        return [2 * i for i in items]


def run(coro):
    return asyncio.run(coro)


async def submit_held(batcher: GreedyBatcher, model: Recorder, requests: list[list[int]]) -> list:
    """Submit every request while the model holds its first batch, then let it go: the first request
    runs alone and the rest queue behind it, whatever the machine's speed."""
    tasks = [asyncio.create_task(batcher.submit(r)) for r in requests]
    await asyncio.sleep(0)  # one loop turn: every task has submitted (or been refused)
    model.release.set()
    return await asyncio.gather(*tasks, return_exceptions=True)


def test_an_idle_batcher_hands_a_request_to_a_lane_at_once() -> None:
    model = Recorder(hold=True)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=64, max_queued=1000)
        task = asyncio.create_task(batcher.submit([7]))
        await asyncio.sleep(0)  # one loop turn: submit() has run
        # Block the event loop: a batcher that waited for a timer or a later loop turn could not start the
        # model now, so the model starting proves the request went to a lane inside submit() itself.
        started = model.started.wait(timeout=WAIT_S)
        model.release.set()
        return started, await task

    started, answer = run(main())
    assert started, "the model did not start while the event loop was blocked: the batcher waits"
    assert answer == [14] and model.batches == [[7]]


def test_each_request_gets_its_own_answers_in_order() -> None:
    model = Recorder(hold=True)
    requests = [list(range(i * 10, i * 10 + 1 + i % 3)) for i in range(20)]

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=64, max_queued=1000)
        return await submit_held(batcher, model, requests)

    answers = run(main())
    assert answers == [[2 * i for i in r] for r in requests]
    # the first ran alone on the idle lane; the 19 that waited behind it ran together, in order
    assert model.batches == [requests[0], [i for r in requests[1:] for i in r]]


def test_batches_respect_the_size_limit_but_never_split_a_request() -> None:
    model = Recorder(hold=True)
    requests = [[n] * 3 for n in range(6)] + [[9] * 8]

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=5, max_queued=1000)
        return await submit_held(batcher, model, requests)

    answers = run(main())
    assert answers == [[2 * i for i in r] for r in requests]
    # two requests of 3 would pass the limit of 5, so each runs alone; the 8 runs alone, whole
    assert model.batches == requests


def test_lanes_run_batches_in_parallel() -> None:
    model = Recorder(meet=2)  # each batch waits at a barrier that only two batches running at once pass

    async def main():
        batcher = GreedyBatcher(model, lanes=2, max_batch_size=1, max_queued=1000)
        return await asyncio.gather(batcher.submit([1]), batcher.submit([2]), return_exceptions=True)

    answers = run(main())
    assert answers == [[2], [4]], "the two batches did not run at the same time"
    assert len(model.threads) == 2


def test_a_full_queue_refuses_new_requests() -> None:
    model = Recorder(hold=True)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=2, max_queued=4)
        return await submit_held(batcher, model, [[n, n] for n in range(6)])

    results = run(main())
    # [0, 0] runs at once; [1, 1] and [2, 2] fill the queue's 4 texts; the rest are refused
    assert results[:3] == [[0, 0], [2, 2], [4, 4]]
    assert all(isinstance(r, Overloaded) for r in results[3:]), results
    assert model.batches == [[0, 0], [1, 1], [2, 2]]  # at most 2 texts a batch


def test_a_model_error_reaches_only_its_batch() -> None:
    model = Recorder(fail_on=13)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=1, max_queued=100)
        return await asyncio.gather(batcher.submit([13]), batcher.submit([1]), return_exceptions=True)

    failed, fine = run(main())
    assert isinstance(failed, ValueError)
    assert fine == [2]


def test_closing_ends_the_lanes_after_the_work_they_hold() -> None:
    model = Recorder()

    async def main():
        batcher = GreedyBatcher(model, lanes=2, max_batch_size=1, max_queued=100)
        answers = await asyncio.gather(*(batcher.submit([i]) for i in range(4)))
        batcher.close()
        return batcher, answers

    batcher, answers = run(main())
    assert answers == [[0], [2], [4], [6]]
    for lane in batcher.lanes:
        lane.join(timeout=WAIT_S)
    assert len(batcher.lanes) == 2 and not any(lane.is_alive() for lane in batcher.lanes)


def test_requests_abandoned_while_queued_are_skipped() -> None:
    model = Recorder(hold=True)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=1, max_queued=100)
        first = asyncio.create_task(batcher.submit([1]))
        await asyncio.sleep(0)  # one loop turn: [1] holds the only lane
        gone = asyncio.create_task(batcher.submit([2]))
        await asyncio.sleep(0)  # [2] is queued behind it
        gone.cancel()
        third = asyncio.create_task(batcher.submit([3]))
        await asyncio.sleep(0)
        model.release.set()
        answers = await asyncio.gather(first, third)
        with pytest.raises(asyncio.CancelledError):
            await gone
        return answers

    assert run(main()) == [[2], [6]]
    assert model.batches == [[1], [3]]


class Stepper(Recorder):
    """A held model whose batches the test lets through one at a time (`gate.release()`)."""

    def __init__(self) -> None:
        super().__init__(hold=True)
        self.gate = threading.Semaphore(0)

    def __call__(self, items: list[int]) -> list[int]:
        with self.lock:
            self.batches.append(list(items))
        self.started.set()
        if not self.gate.acquire(timeout=WAIT_S):
            raise TimeoutError("the test never let the batch through")
        return [2 * i for i in items]


async def until(condition, what: str) -> None:
    """Let the loop run until `condition()` holds (a deadline, never a measured time)."""
    for _ in range(WAIT_S * 1000):
        if condition():
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"never: {what}")


async def answer_first_with_others_queued(
    batcher: GreedyBatcher, model: Stepper, queued: list[list[int]]
) -> list[asyncio.Task]:
    """[1] runs alone on the idle lane, `queued` wait behind it, then [1] is answered: the lane is now
    free with texts queued (where a gathering lane decides whether to hold)."""
    first = asyncio.create_task(batcher.submit([1]))
    await until(lambda: model.batches == [[1]], "the first request runs")
    tasks = [asyncio.create_task(batcher.submit(items)) for items in queued]
    await asyncio.sleep(0)  # all queued behind the busy lane
    model.gate.release()
    assert await first == [2]
    return tasks


def test_a_gathering_lane_waits_for_the_requests_it_just_answered() -> None:
    """Closed-loop clients send their next text as soon as they have an answer: a lane that just
    answered 1 request, with 2 others queued, holds them until that client's next one arrives, and
    the three run as one batch instead of 2 now and 1 alone later."""
    model = Stepper()

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=64, max_queued=100, gather_s=WAIT_S)
        queued = await answer_first_with_others_queued(batcher, model, [[2], [3]])
        await asyncio.sleep(0)
        held = list(model.batches)  # the lane is free and 2 texts wait: still held
        again = asyncio.create_task(batcher.submit([4]))  # the first client's next request
        await until(lambda: len(model.batches) == 2, "the gathered batch runs")
        model.gate.release()
        return held, await asyncio.gather(*queued, again)

    held, answers = run(main())
    assert held == [[1]]
    assert answers == [[4], [6], [8]]
    assert model.batches == [[1], [2, 3, 4]]


def test_a_gathering_lane_runs_what_waits_once_its_hold_ends() -> None:
    """A client that does not come back does not stall the others: after `gather_s` the queued texts
    run without it."""
    model = Stepper()

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=64, max_queued=100, gather_s=0.001)
        (queued,) = await answer_first_with_others_queued(batcher, model, [[2]])
        await until(lambda: len(model.batches) == 2, "the hold ends")
        model.gate.release()
        return await queued

    assert run(main()) == [4]
    assert model.batches == [[1], [2]]


def test_after_a_hold_times_out_the_lanes_stop_holding_for_a_while() -> None:
    """Open-loop traffic (clients that do not send again at once) pays for one hold, not one per batch."""
    model = Stepper()

    async def main():
        batcher = GreedyBatcher(
            model, lanes=1, max_batch_size=64, max_queued=100, gather_s=0.001, backoff_s=10 * WAIT_S
        )
        (second,) = await answer_first_with_others_queued(batcher, model, [[2]])
        await until(lambda: len(model.batches) == 2, "the hold times out")
        batcher.gather_s = 10 * WAIT_S  # a hold now would outlast the test's deadline
        third = asyncio.create_task(batcher.submit([3]))
        await asyncio.sleep(0)
        model.gate.release()
        await second
        await until(lambda: len(model.batches) == 3, "the queued request runs without a hold")
        model.gate.release()
        return await third

    assert run(main()) == [6]
    assert model.batches == [[1], [2], [3]]


def test_a_gathering_lane_does_not_hold_when_nothing_waits() -> None:
    """With nothing queued when it finishes, the lane takes the next request at once (no hold)."""
    model = Recorder(hold=True)

    async def main():
        batcher = GreedyBatcher(model, lanes=1, max_batch_size=64, max_queued=100, gather_s=WAIT_S)
        model.release.set()
        assert await batcher.submit([1]) == [2]
        model.release.clear()
        model.started.clear()
        task = asyncio.create_task(batcher.submit([5]))
        await asyncio.sleep(0)
        started = model.started.wait(timeout=WAIT_S)  # the loop blocked: only an immediate hand-off starts it
        model.release.set()
        return started, await task

    started, answer = run(main())
    assert started and answer == [10]


@pytest.mark.parametrize("cost", [0, 4, 16, 1000])
def test_planned_calls_cover_every_text_once_within_the_row_limit(cost: int) -> None:
    lengths = np.sort(np.random.default_rng(0).integers(3, 80, size=100))
    calls = plan_calls(lengths, max_rows=16, call_cost_tokens=cost)
    covered = [i for start, end in calls for i in range(start, end)]
    assert covered == list(range(100))
    assert all(0 < end - start <= 16 for start, end in calls)


def _plan_cost(lengths: np.ndarray, calls: list[tuple[int, int]], cost: int) -> int:
    return sum(cost + (end - start) * int(lengths[end - 1]) for start, end in calls)


def _every_split(n: int, max_rows: int):
    """Every way to cut range(n) into consecutive calls of at most max_rows rows."""
    for cuts in itertools.product((False, True), repeat=n - 1):
        bounds = [0, *(i + 1 for i, cut in enumerate(cuts) if cut), n]
        calls = list(itertools.pairwise(bounds))
        if all(end - start <= max_rows for start, end in calls):
            yield calls


@pytest.mark.parametrize("seed", range(20))
def test_planned_calls_cost_the_least_of_every_possible_split(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, max_rows, cost = int(rng.integers(1, 11)), int(rng.integers(1, 6)), int(rng.integers(1, 30))
    lengths = np.sort(rng.integers(0, 60, size=n))
    least = min(_plan_cost(lengths, calls, cost) for calls in _every_split(n, max_rows))
    assert _plan_cost(lengths, plan_calls(lengths, max_rows, cost), cost) == least


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
