"""CPU time a server spends: its whole process tree's user + system seconds, read around a load run.

Divided by the requests the run answered, it is the server's CPU cost per request; minus the model's own
cost per text (from the in-process raw measurement, one thread), what each request costs outside the
model — HTTP, framework, security, validation, batching, JSON — the number the request path drives down.
"""

from __future__ import annotations

import psutil


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` and all its descendants alive now (0.0 if it is gone)."""
    return sum(tree_cpu_split(pid))


def tree_cpu_split(pid: int) -> tuple[float, float]:
    """CPU seconds of the tree's main threads (each server worker's event loop runs in its process's
    main thread) and of all its other threads (model lanes, ONNX Runtime, helpers): (main, other)."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0, 0.0
    main = other = 0.0
    for process in processes:
        try:
            times = process.cpu_times()  # every thread's, ended ones included
            threads = process.threads()
        except psutil.NoSuchProcess:
            continue
        total = times.user + times.system
        own = next((t.user_time + t.system_time for t in threads if t.id == process.pid), 0.0)
        main += own
        other += max(0.0, total - own)
    return main, other


def model_us_per_text(raw: dict) -> float | None:
    """The model's CPU microseconds per text: one single-threaded lane at its best batch size (raw sweep)."""
    single = [
        s["texts_per_s"]
        for s in raw.get("sweep", [])
        if s["threads"] == 1 and s["lanes"] == 1 and s["processes"] == 1 and s["texts_per_s"] > 0
    ]
    return 1e6 / max(single) if single else None


def add_outside_model(results: dict[str, dict | None], model_us: float) -> None:
    """Give every result with a server CPU figure its cost outside the model, in µs per request."""
    for result in results.values():
        if result and result.get("server_cpu_us_per_request") is not None:
            inside = result["texts_per_request"] * model_us
            result["outside_model_us_per_request"] = round(result["server_cpu_us_per_request"] - inside, 1)


def tree_rss_mb(pid: int) -> dict[str, float]:
    """Resident memory (MB) of process `pid` and each descendant, keyed `<name> <pid>` (e.g. the
    BentoML arbiter and each worker); a process gone in the meantime is left out."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for process in processes:
        try:
            out[f"{process.name()} {process.pid}"] = round(process.memory_info().rss / 2**20, 1)
        except psutil.NoSuchProcess:
            continue
    return out
