"""Closed-loop HTTP load from wrk (a separate C process, light on the CPU it shares with the server).

wrk keeps C connections busy for a fixed time, each sending the next request as soon as the last one
is answered (optionally after a random pause, for a lighter open-ish load); our Lua script counts
every answer by status and prints one JSON summary.
"""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

WRK_SCRIPT = Path(__file__).with_name("wrk.lua")
SUMMARY_PREFIX = "__wrk__"


class LoadError(RuntimeError):
    """The load generator is missing or did not report."""


@dataclass(frozen=True)
class LoadResult:
    """What one load run measured: throughput, latency percentiles, and every failure counted."""

    texts_per_s: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int  # non-2xx answers + connection errors + timeouts
    duration_s: float
    texts_per_request: int
    statuses: dict[str, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def write_bodies(
    texts: list[str],
    per_request: int,
    path: Path,
    count: int = 2000,
    seed: int = 0,
    encode: Callable[[list[str]], object] = lambda chosen: {"texts": chosen},
) -> Path:
    """Request bodies, one JSON document per line: `count` requests of `per_request` texts each, drawn
    the same way for every server; `encode` turns a request's texts into its body (ours by default)."""
    if not texts:
        raise LoadError("no texts to send")
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(count):
            chosen = [rng.choice(texts) for _ in range(per_request)]
            handle.write(json.dumps(encode(chosen), ensure_ascii=False) + "\n")
    return path


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise LoadError(
            "wrk is not installed (Debian/Ubuntu: `apt-get install wrk`; macOS: `brew install wrk`)"
        )
    return found


def _wrk_command(
    url: str,
    bodies: Path,
    connections: int,
    duration_s: float,
    think_ms: float,
    authorization: str,
    timeout_s: float,
) -> list[str]:
    return [
        wrk_binary(),
        f"-t{max(1, min(2, connections))}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={max(1, round(timeout_s))}s",
        "-s",
        str(WRK_SCRIPT),
        url,
        "--",
        str(bodies),
        str(think_ms),
        authorization,
    ]


def _summary(returncode: int, stdout: str, stderr: str, texts_per_request: int) -> LoadResult:
    lines = [line for line in stdout.splitlines() if line.startswith(SUMMARY_PREFIX)]
    if returncode != 0 or not lines:
        raise LoadError(f"wrk failed ({returncode}):\n{stdout[-2000:]}{stderr[-2000:]}")
    return parse_summary(lines[-1].removeprefix(SUMMARY_PREFIX), texts_per_request)


def run_wrk(
    url: str,
    bodies: Path,
    *,
    texts_per_request: int,
    connections: int,
    duration_s: float,
    think_ms: float = 0.0,
    authorization: str = "",
    timeout_s: float = 30.0,
) -> LoadResult:
    """Load `url` with POSTs of the bodies in `bodies` and return what wrk measured."""
    command = _wrk_command(url, bodies, connections, duration_s, think_ms, authorization, timeout_s)
    done = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + timeout_s + 30, check=False
    )
    return _summary(done.returncode, done.stdout, done.stderr, texts_per_request)


class WrkRun:
    """wrk loading `url` until `stop()` (at most `limit_s`): for load through an event that takes as long
    as it takes, e.g. a model switch. wrk stops on SIGINT and still reports everything it counted."""

    def __init__(
        self,
        url: str,
        bodies: Path,
        *,
        texts_per_request: int,
        connections: int,
        limit_s: float = 600.0,
        authorization: str = "",
    ):
        self.texts_per_request = texts_per_request
        command = _wrk_command(url, bodies, connections, limit_s, 0.0, authorization, 30.0)
        self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def stop(self) -> LoadResult:
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
        stdout, stderr = self._process.communicate(timeout=60)
        return _summary(self._process.returncode, stdout, stderr, self.texts_per_request)


def parse_summary(text: str, texts_per_request: int) -> LoadResult:
    """Turn the Lua script's JSON summary into a LoadResult (throughput counts only 2xx answers)."""
    raw = json.loads(text)
    statuses = {str(k): int(v) for k, v in raw["statuses"].items()}
    sockets = {str(k): int(v) for k, v in raw["socket_errors"].items()}
    ok = sum(n for status, n in statuses.items() if status.startswith("2"))
    errors = sum(n for status, n in statuses.items() if not status.startswith("2")) + sum(sockets.values())
    seconds = raw["duration_us"] / 1e6
    return LoadResult(
        texts_per_s=round(ok * texts_per_request / seconds, 1),
        requests_per_s=round(ok / seconds, 1),
        p50_ms=raw["p50_us"] / 1000,
        p95_ms=raw["p95_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        requests=int(raw["requests"]),
        errors=errors,
        duration_s=round(seconds, 2),
        texts_per_request=texts_per_request,
        statuses=statuses,
        socket_errors=sockets,
    )
