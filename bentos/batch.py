"""Batch prediction: stream a CSV/JSONL file through a running textclf server, chunk by chunk.

Memory stays O(chunk_size * concurrency) whatever the file size: rows are read lazily, at most
`concurrency` chunks are in flight, and finished chunks are written in input order as soon as the
oldest one is done. The output goes to a temporary file beside the target and is renamed onto it
only when every row has been written, so a half-written file is never mistaken for a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import secrets
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import IO, Any

import bentoml
import httpx
from bentoml.exceptions import BentoMLException
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

API = "classify"
OUTPUT_FIELDS = ("label", "score", "top_k", "error")
CSV_SUFFIXES = frozenset({".csv"})
JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson"})
RETRYABLE_4XX = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0


class BatchError(Exception):
    """The run cannot finish correctly; nothing was written to the output path."""


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


@dataclass(frozen=True)
class Row:
    """One input record: the line it starts on, and its values (a list for CSV, a dict for JSONL)."""

    line: int
    values: list[str] | dict[str, Any]


@dataclass
class Chunk:
    """Consecutive rows sent as one request; `results` gets one (prediction, error) per row."""

    rows: list[Row]
    texts: list[str] = field(default_factory=list)
    sent: list[int] = field(default_factory=list)  # index in `rows` of each text in `texts`
    results: list[tuple[dict[str, Any] | None, str | None]] = field(default_factory=list)

    @property
    def lines(self) -> str:
        return f"{self.rows[0].line}-{self.rows[-1].line}"


# ---------------------------------------------------------------------------------------------- reading


def _kind(path: Path, role: str) -> str:
    suffix = path.suffix.lower()
    if suffix in CSV_SUFFIXES:
        return "csv"
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    known = ", ".join(sorted(CSV_SUFFIXES | JSONL_SUFFIXES))
    raise BatchError(f"{role} {path} has an unknown format {suffix or '(no suffix)'!r}; use one of {known}")


@dataclass(frozen=True)
class InputSpec:
    """What the first, cheap pass learned: columns (in first-seen order) and the row count."""

    path: Path
    kind: str
    columns: list[str]
    rows: int


def _open_text(path: Path) -> IO[str]:
    # utf-8-sig: spreadsheets often prefix CSV exports with a BOM that would corrupt the first column.
    return path.open("r", encoding="utf-8-sig", newline="")


def _csv_rows(reader: Any, header: list[str], path: Path) -> Iterator[Row]:
    previous = reader.line_num
    for record in reader:
        start, previous = previous + 1, reader.line_num
        if not record:  # a blank line is not a record (csv.DictReader skips them too)
            continue
        if len(record) > len(header):
            raise BatchError(f"{path} line {start} has {len(record)} fields but the header has {len(header)}")
        yield Row(start, record + [""] * (len(header) - len(record)))


def _jsonl_rows(handle: IO[str], path: Path) -> Iterator[Row]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BatchError(f"{path} line {number} is not valid JSON: {exc.msg}") from None
        if not isinstance(record, dict):
            raise BatchError(f"{path} line {number} is a JSON {type(record).__name__}, not an object")
        yield Row(number, record)


def _read_error(path: Path, exc: Exception) -> BatchError:
    if isinstance(exc, UnicodeDecodeError):
        return BatchError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})")
    return BatchError(f"{path} is not a readable CSV file: {exc}")


def _translated(rows: Iterator[Row], path: Path) -> Iterator[Row]:
    """Turn decode and CSV errors met while streaming into a BatchError naming the file."""
    try:
        yield from rows
    except (UnicodeDecodeError, csv.Error) as exc:
        raise _read_error(path, exc) from None


@contextlib.contextmanager
def _reading(path: Path, kind: str) -> Iterator[tuple[list[str] | None, Iterator[Row]]]:
    """Open the input and stream its rows; reading errors (not the caller's) become BatchError."""
    try:
        handle = _open_text(path)
    except OSError as exc:
        raise BatchError(f"cannot read {path}: {exc.strerror or exc}") from None
    with handle:
        if kind == "jsonl":
            yield None, _translated(_jsonl_rows(handle, path), path)
            return
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise BatchError(f"{path} is empty: a CSV input needs a header row") from None
        except (UnicodeDecodeError, csv.Error) as exc:
            raise _read_error(path, exc) from None
        yield header, _translated(_csv_rows(reader, header, path), path)


def scan_input(path: Path, text_column: str) -> InputSpec:
    """First pass, O(columns) memory: count rows, collect columns, check the text column exists.

    Reading the whole file once before sending anything means a malformed line fails the run in
    seconds instead of after half the file went through the server, and gives the progress total.
    """
    path = Path(path)
    kind = _kind(path, "input")
    if not path.is_file():
        raise BatchError(f"input file {path} does not exist")
    count = 0
    with _reading(path, kind) as (header, rows):
        seen: dict[str, None] = dict.fromkeys(header or [])
        for row in rows:
            count += 1
            if isinstance(row.values, dict):
                seen.update(dict.fromkeys(row.values))
    columns = list(seen)
    if kind == "csv" and len(columns) != len(header or []):
        raise BatchError(f"{path} has duplicate column names in its header: {header}")
    if text_column not in seen and (kind == "csv" or count):
        found = ", ".join(repr(c) for c in columns) or "none"
        what = "column" if kind == "csv" else "key"
        raise BatchError(f"{path} has no text {what} {text_column!r}; {what}s found: {found}")
    clashes = [c for c in OUTPUT_FIELDS if c in seen]
    if clashes:
        raise BatchError(
            f"{path} already has column(s) {', '.join(map(repr, clashes))}, which the output adds; "
            "rename them in the input first"
        )
    return InputSpec(path=path, kind=kind, columns=columns, rows=count)


def _chunks(rows: Iterator[Row], spec: InputSpec, text_column: str, size: int) -> Iterator[Chunk]:
    """Group rows into chunks; rows the server would refuse are kept but not sent."""
    index = spec.columns.index(text_column) if spec.kind == "csv" else -1
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == size:
            yield _prepare(batch, text_column, index)
            batch = []
    if batch:
        yield _prepare(batch, text_column, index)


def _prepare(rows: list[Row], text_column: str, index: int) -> Chunk:
    chunk = Chunk(rows=rows, results=[(None, None)] * len(rows))
    for i, row in enumerate(rows):
        if isinstance(row.values, dict):
            if text_column not in row.values:
                chunk.results[i] = (None, f"no {text_column!r} key in this record")
                continue
            text = row.values[text_column]
        else:
            text = row.values[index]
        if not isinstance(text, str):
            chunk.results[i] = (None, f"text is a JSON {type(text).__name__}, not a string")
        elif not text.strip():
            chunk.results[i] = (None, "text is empty or only whitespace")
        else:
            chunk.sent.append(i)
            chunk.texts.append(text)
    return chunk


# ---------------------------------------------------------------------------------------------- writing


def _cell(value: Any) -> str:
    """A JSON value as one CSV cell: strings as they are, everything else as JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


class _Writer:
    """Writes result rows in the output's format; for CSV output the columns are fixed up front."""

    def __init__(self, handle: IO[str], kind: str, spec: InputSpec) -> None:
        self.handle = handle
        self.kind = kind
        self.spec = spec
        self.csv = csv.writer(handle) if kind == "csv" else None
        if self.csv is not None:
            self.csv.writerow([*spec.columns, *OUTPUT_FIELDS])

    def write(self, row: Row, prediction: dict[str, Any] | None, error: str | None) -> None:
        label = prediction["label"] if prediction else None
        score = prediction["score"] if prediction else None
        top_k = prediction.get("top_k") if prediction else None
        if self.csv is not None:
            values = row.values
            if isinstance(values, dict):
                cells = [_cell(values.get(c)) for c in self.spec.columns]
            else:
                cells = list(values)
            top = json.dumps(top_k, ensure_ascii=False) if top_k is not None else ""
            self.csv.writerow([*cells, _cell(label), _cell(score), top, error or ""])
        else:
            values = row.values
            if isinstance(values, dict):
                record = dict(values)
            else:
                record = dict(zip(self.spec.columns, values, strict=True))
            record.update(label=label, score=score, top_k=top_k, error=error)
            self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")


def _temporary_beside(output: Path) -> Path:
    """A fresh name in the output's folder, so the final rename is atomic (same file system)."""
    return output.with_name(f".{output.name}.{os.getpid()}.{secrets.token_hex(4)}.part")


# ---------------------------------------------------------------------------------------------- requests


def _refusal(exc: BentoMLException, chunk: Chunk) -> str:
    """A readable message from a 4xx body ({"error", "detail": [pydantic errors]}), with input lines."""
    status = int(exc.error_code)
    text = getattr(exc, "message", str(exc))
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"server refused this chunk (HTTP {status}): {text.strip()[:300]}"
    parts: list[str] = []
    for item in body.get("detail") or []:
        if not isinstance(item, dict):
            continue
        loc = item.get("loc") or []
        where = ".".join(str(p) for p in loc)
        if len(loc) >= 2 and loc[0] == "texts" and isinstance(loc[1], int) and loc[1] < len(chunk.sent):
            where = f"line {chunk.rows[chunk.sent[loc[1]]].line}"
        parts.append(f"{where}: {item.get('msg', '')}" if where else str(item.get("msg", "")))
    message = "; ".join(parts) or str(body.get("error") or text)
    return f"server refused this chunk (HTTP {status}): {message}"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, httpx.TransportError):  # connection refused/reset, timeouts, protocol errors
        return True
    if isinstance(exc, BentoMLException):
        status = int(exc.error_code)
        return status >= 500 or status in RETRYABLE_4XX
    return False


async def _classify(
    client: bentoml.AsyncHTTPClient,
    chunk: Chunk,
    top_k: int | None,
    retries: int,
    summary: BatchSummary,
) -> Chunk:
    """Send one chunk, retrying transient failures with capped exponential backoff."""
    if not chunk.texts:
        return chunk
    body: dict[str, Any] = {"texts": chunk.texts}
    if top_k is not None:
        body["top_k"] = top_k
    attempt = 0
    while True:
        try:
            answer = await client.call(API, body)
            break
        except ValueError as exc:  # a 2xx body that is not the JSON the API promises
            raise BatchError(f"chunk of input lines {chunk.lines}: unreadable answer: {exc}") from None
        except (httpx.HTTPError, BentoMLException) as exc:
            if isinstance(exc, BentoMLException) and int(exc.error_code) in (401, 403):
                raise BatchError(
                    f"the server refused the token (HTTP {int(exc.error_code)}): pass a valid token with "
                    "the classify scope (--token or TEXTCLF_TOKEN)"
                ) from None
            if isinstance(exc, BentoMLException) and not _retryable(exc):  # a 4xx: it would refuse again
                refusal = _refusal(exc, chunk)
                chunk.results = [(None, error or refusal) for _, error in chunk.results]
                summary.refused_chunks += 1
                return chunk
            if not _retryable(exc) or attempt >= retries:
                reason = _describe(exc)
                tries = f"after {attempt} retr{'y' if attempt == 1 else 'ies'}" if attempt else "(no retries)"
                raise BatchError(f"chunk of input lines {chunk.lines} failed {tries}: {reason}") from None
            await asyncio.sleep(min(BACKOFF_BASE_S * 2**attempt, BACKOFF_CAP_S))
            attempt += 1
            summary.retried += 1
    if not isinstance(answer, list) or len(answer) != len(chunk.texts):
        got = len(answer) if isinstance(answer, list) else type(answer).__name__
        raise BatchError(
            f"chunk of input lines {chunk.lines}: server answered {got} results for {len(chunk.texts)} texts"
        )
    for i, prediction in zip(chunk.sent, answer, strict=True):
        if not isinstance(prediction, dict) or "label" not in prediction or "score" not in prediction:
            raise BatchError(f"chunk of input lines {chunk.lines}: unexpected answer {prediction!r:.200}")
        chunk.results[i] = (prediction, None)
    return chunk


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BentoMLException):
        return f"HTTP {int(exc.error_code)} {getattr(exc, 'message', exc)!s:.300}".strip()
    return f"{type(exc).__name__}: {exc}".rstrip(": ")


async def _connect(url: str, timeout: float, token: str | None = None) -> bentoml.AsyncHTTPClient:
    """Open a client; its start fetches /schema.json, so an unreachable server fails here.

    `server_ready_timeout=0` skips BentoML's /readyz wait, which busy-loops for `timeout` seconds
    against a closed port; a server that is up but not ready answers 503, which is retried.
    """
    client = bentoml.AsyncHTTPClient(url, server_ready_timeout=0, timeout=timeout, token=token)
    try:
        await client.__aenter__()
    except (httpx.HTTPError, BentoMLException, ValueError, KeyError, TypeError) as exc:
        await client.close()
        if isinstance(exc, httpx.TransportError):
            raise BatchError(f"cannot reach a textclf server at {url}: {exc}") from None
        raise BatchError(f"{url} does not look like a textclf server: {_describe(exc)}") from None
    if API not in client.endpoints:
        await client.close()
        found = ", ".join(client.endpoints) or "none"
        raise BatchError(f"{url} serves no {API!r} API (APIs found: {found}); is it a textclf server?")
    return client


def _schema_limit(client: bentoml.AsyncHTTPClient, field: str, key: str) -> int | None:
    """A limit the server publishes in its /schema.json (e.g. maxItems of `texts`)."""
    limit = client.endpoints[API].input.get("properties", {}).get(field, {}).get(key)
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


# ---------------------------------------------------------------------------------------------- the run


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
) -> BatchSummary:
    """Async form of `predict_file`, for callers that already run an event loop."""
    if chunk_size < 1 or concurrency < 1 or retries < 0:
        raise BatchError("chunk_size and concurrency must be ≥ 1 and retries ≥ 0")
    input_file, output = Path(input_file), Path(output)
    out_kind = _kind(output, "output")
    spec = scan_input(input_file, text_column)
    if not output.parent.is_dir():
        raise BatchError(f"output folder {output.parent} does not exist")
    client = await _connect(url, timeout, token)
    summary = BatchSummary()
    # Larger chunks than the server takes would all be refused; a too-large top_k refuses every chunk.
    limit = _schema_limit(client, "texts", "maxItems")
    summary.chunk_size = min(chunk_size, limit) if limit and limit > 0 else chunk_size
    most = _schema_limit(client, "top_k", "maximum")
    if top_k is not None and most is not None and top_k > most:
        await client.close()
        raise BatchError(f"top_k {top_k} is more than this server allows ({most})")
    temporary = _temporary_beside(output)
    window: deque[asyncio.Task[Chunk]] = deque()
    try:
        with (
            _progress(spec.rows, progress) as bar,
            temporary.open("x", encoding="utf-8", newline="") as handle,
            _reading(spec.path, spec.kind) as (_, rows),
        ):
            task = bar.add_task("rows", total=spec.rows)
            writer = _Writer(handle, out_kind, spec)

            async def flush_oldest() -> None:
                done = await window.popleft()
                for row, (prediction, error) in zip(done.rows, done.results, strict=True):
                    writer.write(row, prediction, error)
                    if error is not None:
                        summary.failed_rows += 1
                summary.rows_out += len(done.rows)
                bar.advance(task, len(done.rows))

            for chunk in _chunks(rows, spec, text_column, summary.chunk_size):
                summary.chunks += 1
                summary.rows_in += len(chunk.rows)
                if len(window) >= concurrency:  # reorder buffer full: wait for the oldest chunk
                    await flush_oldest()
                window.append(asyncio.create_task(_classify(client, chunk, top_k, retries, summary)))
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
