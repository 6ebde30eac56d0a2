"""How a batch run paces itself: small requests and one more in flight per answer at the start, full
chunks in the steady state, shrinking requests at the end; and chunking by a size function."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch.pacing import Pacing
from batch.rows import chunks
from textclf.core.records import iter_records_at


def sizes(pacing: Pacing) -> list[int]:
    """The request sizes a run of `pacing.rows` rows makes."""
    out: list[int] = []
    read = 0
    while read < pacing.rows:
        size = min(pacing.size(read, len(out)), pacing.rows - read)
        out.append(size)
        read += size
    return out


def test_a_run_ramps_up_holds_full_chunks_and_shrinks_at_the_end() -> None:
    pacing = Pacing(chunk_size=256, concurrency=8, rows=10_000)
    made = sizes(pacing)
    assert sum(made) == 10_000
    assert made[:16] == [16] * 16  # two rounds of small requests while connections open one by one
    assert max(made) == 256 and made.count(256) > len(made) // 3
    tail = made[made.index(256) :]
    # once the rest no longer fills every request in flight, sizes only go down, to the ramp size
    shrinking = tail[next(i for i, s in enumerate(tail) if s < 256) :]
    assert shrinking == sorted(shrinking, reverse=True) and shrinking[-1] <= 16
    # the last round (one request per slot in flight) holds less than one full chunk in all, where
    # fixed chunks would leave 8 x 256 rows queued: no worker is left alone with a deep queue
    assert sum(made[-8:]) <= 256


def test_chunks_never_exceed_the_chunk_size_and_small_runs_still_work() -> None:
    for chunk_size, concurrency, rows in [(4, 3, 40), (1, 8, 5), (256, 1, 300), (16, 64, 1_000)]:
        made = sizes(Pacing(chunk_size, concurrency, rows))
        assert sum(made) == rows and max(made) <= chunk_size and min(made) >= 1


def test_in_flight_grows_by_one_per_answer_up_to_the_concurrency() -> None:
    pacing = Pacing(chunk_size=256, concurrency=4, rows=1_000)
    assert [pacing.in_flight(answered) for answered in range(6)] == [1, 2, 3, 4, 4, 4]


@pytest.mark.parametrize("size", [3, None])
def test_chunks_follow_a_size_function(tmp_path: Path, size: int | None) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text("".join(f'{{"text": "t{i}"}}\n' for i in range(20)), encoding="utf-8")
    asked: list[tuple[int, int]] = []

    def grow(read: int, made: int) -> int:
        asked.append((read, made))
        return made + 1  # 1, 2, 3, ... rows

    made = list(chunks(iter_records_at(source), "text", size if size is not None else grow))
    assert [len(c.rows) for c in made] == ([3] * 6 + [2] if size else [1, 2, 3, 4, 5, 5])
    assert [t for c in made for t in c.texts] == [f"t{i}" for i in range(20)]
    if size is None:
        assert asked[:3] == [(0, 0), (1, 1), (3, 2)]  # rows read and chunks made so far
