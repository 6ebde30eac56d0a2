"""How a batch run sizes its requests and how many it keeps in flight.

A BentoML server runs several worker processes on one shared listening socket, and a burst of new
connections is accepted by whichever worker wakes first: all of a client's connections, opened at
once, can land on one worker while the others idle (bentoml/BentoML#5426). So a run starts slowly:
small requests, one more in flight per answer, each new connection opened on its own and accepted
by whichever worker is free then. And it ends with small requests too, so no worker is left alone
with a deep queue while the others have finished.
"""

from __future__ import annotations

from dataclasses import dataclass

RAMP_ROWS = 16  # rows per request while the run ramps up, and the smallest request at its end


@dataclass(frozen=True)
class Pacing:
    """The request size and the in-flight limit at each point of a run."""

    chunk_size: int  # rows per request in the steady state
    concurrency: int  # requests in flight in the steady state
    rows: int  # rows this run reads (after a resume: those still to do)
    ramp_rows: int = RAMP_ROWS

    def size(self, read: int, sent: int) -> int:
        """Rows in the next request, after `read` rows in `sent` requests: small while ramping up,
        `chunk_size` in the steady state, then shrinking so the last requests finish together."""
        small = min(self.chunk_size, self.ramp_rows)
        if sent < 2 * self.concurrency:
            return small
        share = -(-(self.rows - read) // self.concurrency)  # the rest spread over every request in flight
        return max(small, min(self.chunk_size, share))

    def in_flight(self, answered: int) -> int:
        """Requests allowed in flight once `answered` requests have been answered (slow start: one
        more per answer, so connections open one at a time)."""
        return min(self.concurrency, 1 + answered)
