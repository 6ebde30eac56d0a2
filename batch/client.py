"""Batch prediction: stream a CSV/JSONL file through a running textclf server, chunk by chunk.

Memory stays O(chunk_size * concurrency) whatever the file size: rows are read lazily, at most
`concurrency` requests are in flight (fewer while the run ramps up, batch.pacing), and finished chunks
are written in input order as soon as the oldest one is done (at most REORDER_FACTOR * concurrency
chunks are held). Rows go to a partial file beside the target, checkpointed every few seconds
(batch.checkpoint), and renamed onto it only when every row has been written: a half-written file
is never mistaken for a result, and a run that died continues with `resume=True`.

This module is the run itself and the package's public face; reading (`batch.rows`), writing
(`batch.output`, `batch.partial`) and talking to the server (`batch.requests`) live in their own modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from batch import checkpoint as ckpt
from batch.outcome import BatchError, BatchSummary, ModelChanged
from batch.output import Writer
from batch.pacing import Pacing
from batch.partial import PartialOutput
from batch.requests import PROBE_ROWS, ModelWatch, classify, connect, schema_limit, served_model
from batch.rows import Chunk, InputSpec, chunks, file_kind, probe_chunk, read_rows, scan_input

__all__ = ["BatchError", "BatchSummary", "InputSpec", "apredict_file", "predict_file", "scan_input"]

CHECKPOINT_CHUNKS = 200  # checkpoint after this many chunks written...
CHECKPOINT_S = 5.0  # ...or this many seconds, whichever comes first
# Chunks held for in-order writing, per request in flight: memory stays O(chunk_size * concurrency)
# while finished chunks queue behind a slower one.
REORDER_FACTOR = 4


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


def _saved_run(output: Path, resume: bool, overwrite: bool) -> ckpt.Checkpoint | None:
    """The checkpoint a run continues (None: start afresh); an unfinished run is never discarded
    silently: without --resume it takes --overwrite."""
    path = ckpt.checkpoint_path(output)
    if not path.exists():
        return None
    if not resume:
        if overwrite:
            return None
        raise BatchError(
            f"an unfinished run of {output} left a checkpoint ({path}): pass --resume to continue it, "
            "or --overwrite to discard it and start afresh"
        )
    return ckpt.load(path)


async def apredict_file(
    input_file: Path,
    output: Path,
    *,
    url: str = "http://127.0.0.1:3000",
    text_column: str = "text",
    chunk_size: int = 256,
    concurrency: int = 8,
    retries: int = 3,
    top_k: int | None = None,
    timeout: float = 30.0,
    progress: bool | None = None,
    token: str | None = None,
    overwrite: bool = False,
    resume: bool = False,
    checkpoint_chunks: int = CHECKPOINT_CHUNKS,
    checkpoint_s: float = CHECKPOINT_S,
) -> BatchSummary:
    """Async form of `predict_file`, for callers that already run an event loop. An existing `output` is
    refused unless `overwrite` (and even then replaced only once the whole run succeeded)."""
    if chunk_size < 1 or concurrency < 1 or retries < 0 or checkpoint_chunks < 1:
        raise BatchError("chunk_size, concurrency and checkpoint_chunks must be ≥ 1 and retries ≥ 0")
    input_file, output = Path(input_file), Path(output)
    out_kind = file_kind(output, "output")
    file_kind(input_file, "input")
    if not input_file.is_file():
        raise BatchError(f"input file {input_file} does not exist")
    if not output.parent.is_dir():
        raise BatchError(f"output folder {output.parent} does not exist")
    if output.exists() and not overwrite:
        raise BatchError(
            f"output {output} exists: pass --overwrite to replace it (it is kept until the run succeeds)"
        )
    saved = _saved_run(output, resume, overwrite)
    options = {"text_column": text_column, "top_k": top_k, "output_format": out_kind}
    try:
        identity = ckpt.input_identity(input_file)
    except OSError as exc:
        raise BatchError(f"cannot read {input_file}: {exc.strerror or exc}") from None
    if saved is not None:
        why = ckpt.refusal(saved, identity, options)
        if why:
            raise BatchError(f"cannot resume from {ckpt.checkpoint_path(output)}: {why}")
        spec = InputSpec(input_file, saved.spec["kind"], list(saved.spec["columns"]), int(saved.spec["rows"]))
    else:
        spec = scan_input(input_file, text_column)
    client = await connect(url, timeout, token)
    try:
        summary = BatchSummary()
        # Larger chunks than the server takes would all be refused; a too-large top_k refuses every chunk.
        limit = schema_limit(client, "texts", "maxItems")
        summary.chunk_size = min(chunk_size, limit) if limit and limit > 0 else chunk_size
        most = schema_limit(client, "top_k", "maximum")
        if top_k is not None and most is not None and top_k > most:
            raise BatchError(f"top_k {top_k} is more than this server allows ({most})")
        probe = probe_chunk(spec, text_column, PROBE_ROWS)
        model = await served_model(client, probe, retries, summary)
        if saved is not None and (
            why := ckpt.model_unverifiable(saved.model, model) or ckpt.model_refusal(saved.model, model)
        ):
            raise BatchError(f"cannot resume from {ckpt.checkpoint_path(output)}: {why}")
        state = saved or ckpt.Checkpoint(
            input=identity, model=model, options=options, spec={**asdict(spec), "path": str(spec.path)}
        )
        run = _Run(text_column, top_k, retries, concurrency, progress, checkpoint_chunks, checkpoint_s)
        watch = ModelWatch(client, probe, retries, summary, expected=state.model)
        await _run(run, client, watch, spec, output, out_kind, state, summary, resumed=saved is not None)
    finally:
        await client.close()
    return summary


@dataclass(frozen=True)
class _Run:
    """How a run sends and checkpoints (the options that stay fixed through it)."""

    text_column: str
    top_k: int | None
    retries: int
    concurrency: int
    progress: bool | None
    checkpoint_chunks: int
    checkpoint_s: float


async def _run(
    run: _Run,
    client: Any,
    watch: ModelWatch,
    spec: InputSpec,
    output: Path,
    out_kind: str,
    state: ckpt.Checkpoint,
    summary: BatchSummary,
    resumed: bool,
) -> None:
    """Classify from the checkpoint's position on, writing in input order and checkpointing as it goes."""
    window: deque[asyncio.Task[Chunk]] = deque()
    summary.resumed_rows = state.rows_written
    summary.rows_in = summary.rows_out = state.rows_written
    for name in ("failed_rows", "refused_chunks", "retried"):
        setattr(summary, name, getattr(summary, name) + state.counts.get(name, 0))
    try:
        partial = PartialOutput(output)
    except OSError as exc:
        raise BatchError(f"cannot write {output}: {exc.strerror or exc}") from None
    try:
        partial.start(state.output_bytes if resumed else 0)
        if not resumed:
            partial.discard_checkpoint()  # --overwrite of an unfinished run: its progress goes now
        writer = Writer(partial.handle, out_kind, spec, header=not resumed)
        since, last_saved = 0, time.monotonic()

        def save() -> None:
            counts = ("failed_rows", "refused_chunks", "retried")
            state.rows_written, state.counts = summary.rows_out, {n: getattr(summary, n) for n in counts}
            partial.checkpoint(state)

        async def checked_save() -> None:
            """A checkpoint vouches only for rows of the run's model: the version is checked first."""
            await watch.check(alone=False)
            save()

        with (
            _progress(spec.rows, run.progress) as bar,
            contextlib.closing(read_rows(spec, state.position)) as rows,
        ):
            task = bar.add_task("rows", total=spec.rows, completed=state.rows_written)

            async def flush_oldest() -> None:
                nonlocal since, last_saved
                done = await window.popleft()
                for row, (prediction, error) in zip(done.rows, done.results, strict=True):
                    writer.write(row, prediction, error)
                    if error is not None:
                        summary.failed_rows += 1
                summary.rows_out += len(done.rows)
                state.position = done.end
                bar.advance(task, len(done.rows))
                since += 1
                if since >= run.checkpoint_chunks or time.monotonic() - last_saved >= run.checkpoint_s:
                    await checked_save()
                    since, last_saved = 0, time.monotonic()

            pacing = Pacing(summary.chunk_size, run.concurrency, spec.rows - state.rows_written)
            answered = 0

            def count_answer(_: asyncio.Task[Chunk]) -> None:
                nonlocal answered
                answered += 1

            async def make_room() -> None:
                """Write what is done at the head; then wait until fewer requests are in flight than
                the pacing allows and the reorder buffer has room. Done chunks wait in the buffer for
                the oldest, so a slow request (e.g. on the busier of the server's workers) does not
                keep the others from being replaced."""
                while True:
                    while window and window[0].done():
                        await flush_oldest()
                    if len(window) >= run.concurrency * REORDER_FACTOR:
                        await flush_oldest()
                        continue
                    sending = [task for task in window if not task.done()]
                    if len(sending) < pacing.in_flight(answered):
                        return
                    await asyncio.wait(sending, return_when=asyncio.FIRST_COMPLETED)

            try:
                started = time.monotonic()
                for chunk in chunks(rows, run.text_column, pacing.size):
                    summary.chunks += 1
                    summary.rows_in += len(chunk.rows)
                    await make_room()
                    request = asyncio.create_task(classify(client, chunk, run.top_k, run.retries, summary))
                    request.add_done_callback(count_answer)
                    window.append(request)
                while window:
                    await flush_oldest()
                summary.seconds = time.monotonic() - started
                await watch.check(alone=True)
            except ModelChanged as exc:  # rows since the last check may be either model's: not saved
                kept = (
                    f"the {state.rows_written} rows checkpointed before it are kept: serve that model again "
                    "and run the same command with --resume, or pass --overwrite to classify every row "
                    "with the new one"
                    if partial.saved
                    else "nothing was kept: run the same command again"
                )
                raise ModelChanged(f"{exc}\n{kept}") from None
            except BaseException as exc:  # keep what is done for --resume (a crash keeps the last one)
                if summary.rows_out > state.rows_written or partial.saved:
                    save()
                if isinstance(exc, BatchError) and partial.saved:
                    raise BatchError(
                        f"{exc}\n{summary.rows_out} of {spec.rows} rows are saved: once the cause is fixed, "
                        "run the same command with --resume to continue"
                    ) from None
                raise
        if summary.rows_out != spec.rows:  # defensive: the whole point is not to lose rows
            raise BatchError(f"wrote {summary.rows_out} rows for {spec.rows} input rows")
        partial.finish()
    except OSError as exc:
        raise BatchError(f"cannot write {output}: {exc.strerror or exc}") from None
    finally:
        for pending in window:
            pending.cancel()
        await asyncio.gather(*window, return_exceptions=True)
        partial.close()


def predict_file(input_file: Path, output: Path, **options: Any) -> BatchSummary:
    """Classify every row of `input_file` through the server at `url`; write `output` atomically.

    Rows keep their order and columns, gaining `label`, `score`, `abstained`, `top_k` and `error`. Rows
    the server cannot take (blank or non-string text, or a chunk it refused with a 4xx) are written
    with `error` filled; transient failures are retried, then fail the run with a BatchError, and
    the rows done so far stay checkpointed for `resume=True`. Options are those of `apredict_file`;
    `progress=None` shows the bar only on a terminal.
    """
    return asyncio.run(apredict_file(input_file, output, **options))
