"""What a batch run reports back: a BatchSummary when it finished, a BatchError when it cannot.

Every step (reading, sending, the run itself) raises or fills these, so they live apart from all
of them and import nothing from the package.
"""

from __future__ import annotations

from dataclasses import dataclass


class BatchError(Exception):
    """The run cannot finish correctly; nothing was written to the output path."""


class ModelChanged(BatchError):
    """The server started serving another model during the run: the rows since the last check may
    come from either, so they are not checkpointed."""


@dataclass
class BatchSummary:
    """What a finished run did; `rows_out == rows_in` always holds for a returned summary."""

    rows_in: int = 0
    rows_out: int = 0
    retried: int = 0  # requests re-sent after a transient failure (5xx, 408/429, network, timeout)
    failed_rows: int = 0  # rows written with `error` filled (not sendable, or refused by the server)
    refused_chunks: int = 0  # chunks the server answered with a 4xx
    chunks: int = 0  # chunks read (including those with nothing to send)
    chunk_size: int = 0  # texts per request actually used (capped at the server's limit)
    resumed_rows: int = 0  # rows a resumed run found already written (counted in rows_in/rows_out)
    seconds: float = 0.0  # time spent classifying in this run (from the first request to the last row)
    model_unverified: str | None = None  # why the run could not check that one model answered every row
