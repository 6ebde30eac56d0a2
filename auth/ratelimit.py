"""Per-subject token buckets: a client past its rate gets 429 with the seconds to wait."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

MAX_TRACKED = 100_000  # subjects remembered before idle (full) buckets are dropped


class RateLimiter:
    """`rate` requests per second per key, `burst` at once; in-process (one per server worker)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = max(burst, 1.0)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, updated)

    def acquire(self, key: str) -> float:
        """Take one request's token: 0.0 when allowed, else the seconds until one is free."""
        if self.rate <= 0:
            return 0.0
        now = self.clock()
        tokens, updated = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - updated) * self.rate)
        if tokens >= 1.0:
            if len(self._buckets) >= MAX_TRACKED:
                self._forget_full(now)
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _forget_full(self, now: float) -> None:
        """Drop buckets that have refilled: forgetting them changes nothing."""
        full_after = self.burst / self.rate
        self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full_after}


def retry_after(seconds: float) -> str:
    """Retry-After takes whole seconds; never 0 for a refused request."""
    return str(max(1, math.ceil(seconds)))
