"""Batch prediction: stream a CSV/JSONL file through a running textclf server, chunk by chunk.

Memory stays O(chunk_size * concurrency) whatever the file size: rows are read lazily, at most
`concurrency` chunks are in flight, and finished chunks are written in input order as soon as the
oldest one is done. The output goes to a temporary file beside the target and is renamed onto it
only when every row has been written, so a half-written file is never mistaken for a result.

This module is the run itself and the package's public face; reading (`batch.rows`), writing
(`batch.output`) and talking to the server (`batch.requests`) live in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from batch.outcome import BatchError, BatchSummary
from batch.output import Writer, temporary_beside
from batch.requests import classify, connect, schema_limit
from batch.rows import Chunk, InputSpec, chunks, file_kind, read_rows, scan_input

__all__ = ["BatchError", "BatchSummary", "InputSpec", "apredict_file", "predict_file", "scan_input"]


def _progress(total: int, enabled: bool | None) -> Progress:
    console = Console(stderr=True)
    return Progress(
        TextColumn("[bold]classifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal if enabled is None else not enabled,
        transient=False,
    )


async def apredict_file(
    input_file: Path,
    output: Path,
    *,
    url: str = "http://127.0.0.1:3000",
    text_column: str = "text",
    chunk_size: int = 64,
    concurrency: int = 4,
    retries: int = 3,
    top_k: int | None = None,
    timeout: float = 30.0,
    progress: bool | None = None,
    token: str | None = None,
    overwrite: bool = False,
) -> BatchSummary:
    """Async form of `predict_file`, for callers that already run an event loop. An existing `output` is
    refused unless `overwrite` (and even then replaced only once the whole run succeeded)."""
    if chunk_size < 1 or concurrency < 1 or retries < 0:
        raise BatchError("chunk_size and concurrency must be ≥ 1 and retries ≥ 0")
    input_file, output = Path(input_file), Path(output)
    out_kind = file_kind(output, "output")
    spec = scan_input(input_file, text_column)
    if not output.parent.is_dir():
        raise BatchError(f"output folder {output.parent} does not exist")
    if output.exists() and not overwrite:
        raise BatchError(
            f"output {output} exists: pass --overwrite to replace it (it is kept until the run succeeds)"
        )
    client = await connect(url, timeout, token)
    summary = BatchSummary()
    # Larger chunks than the server takes would all be refused; a too-large top_k refuses every chunk.
    limit = schema_limit(client, "texts", "maxItems")
    summary.chunk_size = min(chunk_size, limit) if limit and limit > 0 else chunk_size
    most = schema_limit(client, "top_k", "maximum")
    if top_k is not None and most is not None and top_k > most:
        await client.close()
        raise BatchError(f"top_k {top_k} is more than this server allows ({most})")
    temporary = temporary_beside(output)
    window: deque[asyncio.Task[Chunk]] = deque()
    try:
        with (
            _progress(spec.rows, progress) as bar,
            temporary.open("x", encoding="utf-8", newline="") as handle,
            contextlib.closing(read_rows(spec)) as rows,
        ):
            task = bar.add_task("rows", total=spec.rows)
            writer = Writer(handle, out_kind, spec)

            async def flush_oldest() -> None:
                done = await window.popleft()
                for row, (prediction, error) in zip(done.rows, done.results, strict=True):
                    writer.write(row, prediction, error)
                    if error is not None:
                        summary.failed_rows += 1
                summary.rows_out += len(done.rows)
                bar.advance(task, len(done.rows))

            for chunk in chunks(rows, text_column, summary.chunk_size):
                summary.chunks += 1
                summary.rows_in += len(chunk.rows)
                if len(window) >= concurrency:  # reorder buffer full: wait for the oldest chunk
                    await flush_oldest()
                window.append(asyncio.create_task(classify(client, chunk, top_k, retries, summary)))
            while window:
                await flush_oldest()
        if summary.rows_out != summary.rows_in:  # defensive: the whole point is not to lose rows
            raise BatchError(f"wrote {summary.rows_out} rows for {summary.rows_in} input rows")
        os.replace(temporary, output)
    except OSError as exc:
        raise BatchError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        for pending in window:
            pending.cancel()
        await asyncio.gather(*window, return_exceptions=True)
        temporary.unlink(missing_ok=True)
        await client.close()
    return summary


def predict_file(input_file: Path, output: Path, **options: Any) -> BatchSummary:
    """Classify every row of `input_file` through the server at `url`; write `output` atomically.

    Rows keep their order and columns, gaining `label`, `score`, `top_k` and `error`. Rows the
    server cannot take (blank or non-string text, or a chunk it refused with a 4xx) are written
    with `error` filled; transient failures are retried, then fail the run with a BatchError.
    Options are those of `apredict_file`; `progress=None` shows the bar only on a terminal.
    """
    return asyncio.run(apredict_file(input_file, output, **options))
