"""The limit: the served model file run by ONNX Runtime without a server, texts sorted by length.

No HTTP, no queue: the texts are sorted by token count once and cut into batches, so each ONNX Runtime
call pads almost nothing. Every batch size and parallel layout in the sweep is measured; the best is
the limit the served numbers are compared with.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from textclf.core.cpus import worker_cpus
from textclf.core.runtime import OnnxClassifier

BATCH_SIZES = (1, 8, 16, 32, 64)


def _sorted_by_length(classifier: OnnxClassifier, texts: list[str]) -> list[str]:
    tokenizer = classifier.tokenizer
    if tokenizer is None:
        return sorted(texts, key=len)
    lengths = [len(e.ids) for e in tokenizer.encode_batch(texts)]
    return [texts[i] for i in np.argsort(lengths, kind="stable")]


_START = None  # in worker processes: a barrier all of them pass once loaded and warm


def _share_start(barrier) -> None:
    global _START
    _START = barrier


def _run(
    folder: Path,
    texts: list[str],
    batch: int,
    threads: int,
    lanes: int,
    seconds: float,
    cpus: set[int] | None = None,
) -> tuple[int, float, list[float]]:
    """Texts done, seconds taken and per-call latencies of one process running `lanes` threads
    (on `cpus` when given, as a pinned server worker runs)."""
    if cpus is not None:
        os.sched_setaffinity(0, cpus)
    classifier = OnnxClassifier(folder, threads=threads, sub_batch=batch)
    ordered = _sorted_by_length(classifier, texts)
    batches = [ordered[i : i + batch] for i in range(0, len(ordered), batch)]
    for warm in batches[:: max(1, len(batches) // 8)]:
        classifier.predict_proba(warm)
    rng = np.random.default_rng(os.getpid())
    calls: list[float] = []
    done = 0
    if _START is not None:  # parallel processes measure the same window
        _START.wait()
    started = time.perf_counter()

    def timed(index: int) -> int:
        t0 = time.perf_counter()
        classifier.predict_proba(batches[index])
        calls.append(time.perf_counter() - t0)
        return len(batches[index])

    with ThreadPoolExecutor(lanes) as pool:  # lanes share one session, as a server worker's do
        while time.perf_counter() - started < seconds:
            done += sum(pool.map(timed, rng.permutation(len(batches))))  # every length, random order
    return done, time.perf_counter() - started, calls


def _one_setting(
    folder: Path,
    texts: list[str],
    batch: int,
    threads: int,
    lanes: int,
    processes: int,
    seconds: float,
    pinned: bool = False,
) -> dict:
    allowed = sorted(os.sched_getaffinity(0))
    shares = [worker_cpus(i, processes, allowed) if pinned else None for i in range(processes)]
    if processes == 1 and not pinned:
        runs = [_run(folder, texts, batch, threads, lanes, seconds)]
    else:  # fresh interpreters, like server workers; they start together once all are loaded
        context = multiprocessing.get_context("spawn")
        barrier = context.Barrier(processes)
        with ProcessPoolExecutor(
            processes, mp_context=context, initializer=_share_start, initargs=(barrier,)
        ) as pool:
            futures = [
                pool.submit(_run, folder, texts, batch, threads, lanes, seconds, cpus) for cpus in shares
            ]
            runs = [f.result() for f in futures]
    ms = np.asarray([c for _, _, calls in runs for c in calls]) * 1000
    return {
        "batch": batch,
        "threads": threads,
        "lanes": lanes,
        "processes": processes,
        "pinned": pinned,
        "texts_per_s": round(sum(done / elapsed for done, elapsed, _ in runs), 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
        "p99_ms": round(float(np.percentile(ms, 99)), 2),
    }


def measure_raw(folder: Path, texts: list[str], *, seconds: float = 2.0) -> dict:
    """Sweep batch size x parallel layout; report the best. Latency is per call.

    Layouts (ONNX Runtime threads per call, calls in parallel per process, processes, pinned): one call on
    one core; one call using every core; one single-threaded call per core in one process; one process per
    core with one single-threaded call each (what the server's workers do), left to the scheduler and
    pinned one per CPU (as the server pins its workers by default).
    """
    cores = len(os.sched_getaffinity(0))
    layouts = sorted({(1, 1, 1, False), (cores, 1, 1, False), (1, cores, 1, False), (1, 1, cores, False)})
    layouts.append((1, 1, cores, True))
    sweep = [
        _one_setting(folder, texts, b, t, n, p, seconds, pinned)
        for t, n, p, pinned in layouts
        for b in BATCH_SIZES
    ]
    best = max(sweep, key=lambda row: row["texts_per_s"])
    return {**best, "errors": 0, "latency_is": "per ONNX Runtime call (one batch)", "sweep": sweep}


def measure_best(folder: Path, texts: list[str], raw: dict, *, seconds: float = 2.0) -> float:
    """Texts/s of the sweep's best setting (`raw`), measured again now."""
    layout = (raw["batch"], raw["threads"], raw["lanes"], raw["processes"])
    return _one_setting(folder, texts, *layout, seconds, raw.get("pinned", False))["texts_per_s"]


def remeasure(folder: Path, texts: list[str], raw: dict, *, seconds: float = 2.0) -> dict:
    """The best setting again, after the served runs: the limit becomes the mean of both
    measurements, so a machine that drifts during the run does not favour either side."""
    before, after = raw["texts_per_s"], measure_best(folder, texts, raw, seconds=2 * seconds)
    return {
        **raw,
        "texts_per_s": round((before + after) / 2, 1),
        "texts_per_s_before": before,
        "texts_per_s_after": after,
    }


PLANNER_COSTS = (0, 2, 4, 8, 16, 32)  # call_cost_tokens tried; 0 = fixed chunks of 8


def measure_planner(
    folder: Path, texts: list[str], *, batch: int = 32, repeats: int = 3, seed: int = 0
) -> dict:
    """Model CPU µs per text on batches as a served lane sees them (random texts, `batch` at a time),
    for each call cost of the sub-batch planner (`TEXTCLF_CALL_COST_TOKENS`): which cost packs calls best
    for this model on this CPU. Single-threaded, CPU time, best of `repeats`."""
    rng = np.random.default_rng(seed)
    batches = [[texts[i] for i in rng.choice(len(texts), batch)] for _ in range(max(8, 1200 // batch))]
    classifiers = {
        cost: OnnxClassifier(folder, threads=1, sub_batch=8 if cost == 0 else 64, call_cost_tokens=cost)
        for cost in PLANNER_COSTS
    }
    best = dict.fromkeys(PLANNER_COSTS, float("inf"))
    for classifier in classifiers.values():
        for warm in batches[:2]:
            classifier.predict_proba(warm)
    for _ in range(repeats):  # interleaved, so drift hits every cost alike
        for cost, classifier in classifiers.items():
            started, done = time.process_time(), 0
            for texts_in_batch in batches:
                classifier.predict_proba(texts_in_batch)
                done += len(texts_in_batch)
            best[cost] = min(best[cost], (time.process_time() - started) * 1e6 / done)
    us = {str(cost): round(value, 1) for cost, value in best.items()}
    return {"batch": batch, "us_per_text": us, "best_call_cost_tokens": int(min(best, key=best.__getitem__))}
