"""Talking to the textclf server: connect, read its limits, send one chunk with retries.

Transient failures (5xx, 408/429, network, timeouts) are retried with tenacity; a 4xx refusal
becomes a per-row error on that chunk; anything that makes the run unsound is a BatchError.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import bentoml
import httpx
from bentoml.exceptions import BentoMLException
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, wait_exponential

from batch import checkpoint as ckpt
from batch.outcome import BatchError, BatchSummary, ModelChanged
from batch.rows import Chunk

API = "classify"
RETRYABLE_4XX = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})
BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0


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


def _retrying(retries: int, summary: BatchSummary) -> AsyncRetrying:
    """Retry transient failures with capped exponential backoff (0.2 s, 0.4 s, … at most 5 s).

    Anything else (a 4xx, an unreadable answer, a cancellation) is re-raised at once; after the last
    retry the last error is re-raised as it is, for `classify` to describe.
    """

    def count(_: RetryCallState) -> None:
        summary.retried += 1

    return AsyncRetrying(
        retry=retry_if_exception(_retryable),
        wait=wait_exponential(multiplier=BACKOFF_BASE_S, max=BACKOFF_CAP_S),
        stop=stop_after_attempt(retries + 1),
        before_sleep=count,
        reraise=True,
    )


async def classify(
    client: bentoml.AsyncHTTPClient,
    chunk: Chunk,
    top_k: int | None,
    retries: int,
    summary: BatchSummary,
) -> Chunk:
    """Send one chunk (retrying transient failures) and file one result per row."""
    if not chunk.texts:
        return chunk
    body: dict[str, Any] = {"texts": chunk.texts}
    if top_k is not None:
        body["top_k"] = top_k

    async def call() -> Any:
        return await client.call(API, body)

    retrying = _retrying(retries, summary)
    try:
        answer = await retrying(call)
    except ValueError as exc:  # a 2xx body that is not the JSON the API promises
        raise BatchError(f"chunk of input lines {chunk.lines}: unreadable answer: {exc}") from None
    except (httpx.HTTPError, BentoMLException) as exc:
        status = int(exc.error_code) if isinstance(exc, BentoMLException) else None
        if status in (401, 403):
            raise BatchError(
                f"the server refused the token (HTTP {status}): pass a valid token with "
                "the classify scope (--token or TEXTCLF_TOKEN)"
            ) from None
        if status is not None and not _retryable(exc):  # a 4xx: it would refuse again
            refusal = _refusal(exc, chunk)
            chunk.results = [(None, error or refusal) for _, error in chunk.results]
            summary.refused_chunks += 1
            return chunk
        done = retrying.statistics["attempt_number"] - 1
        tries = f"after {done} retr{'y' if done == 1 else 'ies'}" if done else "(no retries)"
        raise BatchError(f"chunk of input lines {chunk.lines} failed {tries}: {_describe(exc)}") from None
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


async def connect(url: str, timeout: float, token: str | None = None) -> bentoml.AsyncHTTPClient:
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


def schema_limit(client: bentoml.AsyncHTTPClient, field: str, key: str) -> int | None:
    """A limit the server publishes in its /schema.json (e.g. maxItems of `texts`)."""
    limit = client.endpoints[API].input.get("properties", {}).get(field, {}).get(key)
    return limit if isinstance(limit, int) and not isinstance(limit, bool) else None


PROBE_ROWS = 8  # rows whose answers identify the model when GET /model cannot be read
# Probe sends, at most, to find two answers in a row that agree. An int8 model quantises each call's
# activations as a whole, so a probe batched with other requests (a busy server) gets other scores; two
# equal answers in a row mean the server answered it alone, the only answer worth comparing.
PROBE_TRIES = 4


async def served_model(
    client: bentoml.AsyncHTTPClient, probe: Chunk | None, retries: int, summary: BatchSummary
) -> dict[str, Any]:
    """What identifies the served model: name and version from GET /model (scope model:read), and
    always the answers to `probe` (the input's first texts), which stand in for the version when the
    token may not read /model. A resume compares these with the checkpoint's (batch.checkpoint). When the
    probe's answers keep changing (a busy server batching them with other texts), `probe_unstable` says so
    instead: they identify nothing."""
    identity: dict[str, Any] = {}
    try:
        response = await client.request("GET", "/model")
        if response.status_code == HTTPStatus.OK:
            info = response.json()
            if isinstance(info, dict) and isinstance(info.get("version"), str):
                identity.update(name=info.get("name"), version=info["version"])
    except (httpx.HTTPError, ValueError):
        pass  # no /model, or not readable: the probe answers decide alone
    if probe is not None:  # a chunk the server refuses (a 4xx) leaves the version alone to decide
        answers = await _stable_answers(client, probe, retries, summary)
        if answers is None:
            identity["probe_unstable"] = True
        else:
            identity["probe"] = answers
    return identity


async def _stable_answers(
    client: bentoml.AsyncHTTPClient, probe: Chunk, retries: int, summary: BatchSummary
) -> list[list[Any]] | None:
    """The probe's answers, once two sends in a row agree (see PROBE_TRIES); None when none did."""
    previous: list[list[Any]] | None = None
    for _ in range(PROBE_TRIES):
        done = await classify(client, probe, None, retries, summary)
        results = (done.results[i][0] for i in done.sent)
        answers = [[a["label"], round(float(a["score"]), 6)] for a in results if a is not None]
        if previous is not None and ckpt.same_answers(previous, answers):
            return answers
        previous = answers
    return None


@dataclass
class ModelWatch:
    """Checks, during a run, that the server still serves the model the run started with (`expected`,
    from `served_model`), so one output never mixes two models' labels."""

    client: bentoml.AsyncHTTPClient
    probe: Chunk | None  # the input's first texts, as sent at the start (`served_model`)
    retries: int
    summary: BatchSummary
    expected: dict[str, Any]

    async def check(self, alone: bool) -> None:
        """Raise ModelChanged when the served model is no longer the expected one.

        Mid-run (`alone=False`, before each checkpoint) only the version from GET /model is compared:
        a probe's scores move with the texts an int8 model batches it with, and an unreadable version
        (no model:read, or a transient failure) waits for the next check. At the end (`alone=True`,
        nothing else of this run in flight) the probe answers decide when no version can, as on a resume;
        when they kept changing at the start or now (other clients keep the server busy), nothing can be
        concluded and `summary.model_unverified` says why."""
        if not alone and not self.expected.get("version"):
            return
        now = await served_model(self.client, self.probe if alone else None, self.retries, self.summary)
        if not alone and not now.get("version"):
            return
        unknown = ckpt.model_unverifiable(self.expected, now)
        if unknown:  # the run is done and its rows are written: said, not failed
            self.summary.model_unverified = unknown
            return
        why = ckpt.model_refusal(self.expected, now)
        if why:
            raise ModelChanged(f"the model changed during the run: {why}")
