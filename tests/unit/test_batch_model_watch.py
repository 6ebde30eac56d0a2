"""The mid-run model check of predict-batch: when it asks the server, and what it concludes, against a
stand-in for the BentoML client (the real server switch is in tests/integration/test_batch_resume.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from batch.checkpoint import model_unverifiable
from batch.outcome import BatchSummary, ModelChanged
from batch.requests import PROBE_ROWS, PROBE_TRIES, ModelWatch, served_model
from batch.rows import probe_chunk, scan_input
from tests.helpers import tiny_rows, write_csv


class StandIn:
    """Answers GET /model with `version` (403 when None) and every text with `label`; counts calls. Its
    first `busy` answers have other scores each time, as an int8 model's do when other requests share
    the probe's batch."""

    def __init__(self, version: str | None, label: str = "refund", busy: int = 0) -> None:
        self.version, self.label, self.busy = version, label, busy
        self.gets = self.posts = 0

    async def request(self, method: str, path: str) -> httpx.Response:
        self.gets += 1
        if self.version is None:
            return httpx.Response(403, json={"error": "missing scope model:read"})
        return httpx.Response(200, json={"name": "textclf-logreg", "version": self.version})

    async def call(self, api: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        self.posts += 1
        score = 0.9 - 0.01 * self.posts if self.posts <= self.busy else 0.9
        return [{"label": self.label, "score": score} for _ in body["texts"]]


def watch(tmp_path: Path, client: StandIn, expected: dict[str, Any]) -> ModelWatch:
    spec = scan_input(write_csv(tmp_path / "in.csv", tiny_rows(4, seed=5)), "text")
    probe = probe_chunk(spec, "text", PROBE_ROWS)
    return ModelWatch(client, probe, retries=0, summary=BatchSummary(), expected=expected)  # type: ignore[arg-type]


PROBE = [["refund", 0.9]] * PROBE_ROWS


def test_mid_run_a_new_version_stops_the_run_and_the_same_one_passes(tmp_path: Path) -> None:
    expected = {"name": "textclf-logreg", "version": "v1", "probe": PROBE}
    same = StandIn("v1")
    asyncio.run(watch(tmp_path, same, expected).check(alone=False))
    assert (same.gets, same.posts) == (1, 0)  # mid-run: the version only, no texts sent
    with pytest.raises(ModelChanged, match=r"version v2, but the rows written so far came from .* v1"):
        asyncio.run(watch(tmp_path, StandIn("v2"), expected).check(alone=False))


def test_mid_run_without_a_readable_version_nothing_is_concluded(tmp_path: Path) -> None:
    # the token could not read /model at the start: a probe batched with other texts could differ on an
    # int8 model, so mid-run checks do not ask at all
    blind = StandIn(None, label="top_up")
    asyncio.run(watch(tmp_path, blind, {"probe": PROBE}).check(alone=False))
    assert (blind.gets, blind.posts) == (0, 0)
    # readable at the start but not now (a transient failure): the next check decides
    asyncio.run(watch(tmp_path, blind, {"version": "v1", "probe": PROBE}).check(alone=False))
    assert blind.posts == 0


def test_at_the_end_the_probe_answers_decide_when_no_version_can(tmp_path: Path) -> None:
    asyncio.run(watch(tmp_path, StandIn(None), {"probe": PROBE}).check(alone=True))
    other = StandIn(None, label="top_up")
    with pytest.raises(ModelChanged, match="answers the same probe texts differently"):
        asyncio.run(watch(tmp_path, other, {"probe": PROBE}).check(alone=True))
    assert other.posts == 2  # two answers in a row that agree


def test_the_probe_counts_only_once_two_answers_in_a_row_agree(tmp_path: Path) -> None:
    busy = StandIn(None, busy=2)  # the first two answers shared a batch with other requests
    identity = asyncio.run(served_model(busy, watch(tmp_path, busy, {}).probe, 0, BatchSummary()))
    assert identity == {"probe": PROBE} and busy.posts == 4
    always = StandIn(None, busy=PROBE_TRIES)
    identity = asyncio.run(served_model(always, watch(tmp_path, always, {}).probe, 0, BatchSummary()))
    assert identity == {"probe_unstable": True} and always.posts == PROBE_TRIES


def test_a_probe_that_never_settles_is_said_not_taken_for_a_new_model(tmp_path: Path) -> None:
    # at the end of a run on a server other clients keep busy: nothing can be concluded, the run stands
    ended = watch(tmp_path, StandIn(None, busy=PROBE_TRIES), {"probe": PROBE})
    asyncio.run(ended.check(alone=True))
    assert "kept changing" in (ended.summary.model_unverified or "")
    # the start could not settle it: the same at the end, even if the server is idle by then
    started_busy = watch(tmp_path, StandIn(None, label="top_up"), {"probe_unstable": True})
    asyncio.run(started_busy.check(alone=True))
    assert "model:read" in (started_busy.summary.model_unverified or "")
    # a readable version decides whatever the probe did
    versioned = watch(
        tmp_path,
        StandIn("v1", busy=PROBE_TRIES),
        {"name": "textclf-logreg", "version": "v1", "probe_unstable": True},
    )
    asyncio.run(versioned.check(alone=True))
    assert versioned.summary.model_unverified is None
    with pytest.raises(ModelChanged):
        asyncio.run(
            watch(
                tmp_path, StandIn("v2"), {"name": "textclf-logreg", "version": "v1", "probe_unstable": True}
            ).check(alone=True)
        )


def test_a_resume_that_cannot_tell_the_model_is_refused_with_the_fix() -> None:
    unstable, stable = {"probe_unstable": True}, {"probe": PROBE}
    assert "model:read" in (model_unverifiable(unstable, stable) or "")
    assert "model:read" in (model_unverifiable(stable, unstable) or "")
    assert model_unverifiable(stable, stable) is None
    assert model_unverifiable({**unstable, "version": "v1"}, {"version": "v1"}) is None
