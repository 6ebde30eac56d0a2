"""monitoring.profiles: real whylogs profiles written to and read from real files, damaged ones included."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from monitoring.profiles import (
    ProfileError,
    RollingWindow,
    merge_views,
    profile_columns,
    read_reference,
    read_window,
    view_from_bytes,
    view_texts,
    write_profile,
    write_reference,
)
from textclf.core.features import FEATURES

LABELS = np.array(["card_arrival", "refund", "pin_blocked", "top_up"], dtype=object)


def columns(n: int, seed: int, oov: bool = True) -> dict[str, np.ndarray]:
    """Feature columns shaped like the server's (textclf.core.features), drawn from a seeded RNG."""
    rng = np.random.default_rng(seed)
    confidence = rng.beta(8, 2, n)
    return {
        "chars": rng.integers(5, 120, n).astype(np.float64),
        "tokens": rng.integers(2, 30, n).astype(np.float64),
        "oov_rate": rng.beta(1, 9, n) if oov else np.full(n, np.nan),
        "confidence": confidence,
        "margin": confidence * rng.uniform(0.3, 1.0, n),
        "entropy": rng.gamma(2.0, 0.3, n),
        "predicted": LABELS[rng.integers(0, len(LABELS), n)],
    }


def count(view, name: str) -> int:
    return int(view.get_column(name).get_metric("counts").n.value)


def test_profile_has_every_feature_and_counts_every_text() -> None:
    view = profile_columns(columns(300, seed=1))
    assert set(view.get_columns()) == set(FEATURES)
    assert view_texts(view) == 300
    classes = view.get_column("predicted").get_metric("frequent_items").to_summary_dict()["frequent_strings"]
    assert {item.value for item in classes} == set(LABELS) and sum(item.est for item in classes) == 300


def test_a_model_without_vocabulary_profiles_nan_oov_rate_as_missing() -> None:
    view = profile_columns(columns(50, seed=2, oov=False))
    oov = view.get_column("oov_rate")
    assert count(view, "oov_rate") == 50 and int(oov.get_metric("counts").nan.value) == 50
    assert oov.get_metric("distribution").kll.value.is_empty()
    assert view_texts(view) == 50


def test_columns_of_different_lengths_are_refused() -> None:
    bad = columns(10, seed=3)
    bad["chars"] = bad["chars"][:5]
    with pytest.raises(ProfileError, match="different lengths"):
        profile_columns(bad)
    with pytest.raises(ProfileError):
        profile_columns({})


def test_merge_views_adds_counts_and_none_for_nothing() -> None:
    assert merge_views([]) is None and merge_views([None]) is None
    merged = merge_views([profile_columns(columns(40, seed=4)), None, profile_columns(columns(60, seed=5))])
    assert view_texts(merged) == 100


def test_write_profile_lays_out_version_and_start_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    path = write_profile(
        profile_columns(columns(20, 6)), tmp_path, model_version="v1", worker="w-2", start=1234.9
    )
    assert path == tmp_path / "v1" / "1234-w-2.bin"
    assert [p.name for p in (tmp_path / "v1").iterdir()] == ["1234-w-2.bin"]
    assert view_texts(view_from_bytes(path.read_bytes())) == 20


def test_read_window_merges_the_workers_of_one_version(tmp_path: Path) -> None:
    for worker, n in (("1", 120), ("2", 80)):
        write_profile(profile_columns(columns(n, n)), tmp_path, model_version="v1", worker=worker, start=1000)
    write_profile(profile_columns(columns(999, 7)), tmp_path, model_version="v2", worker="1", start=1000)
    window = read_window(tmp_path, model_version="v1", since=None)
    assert (window.files, window.texts, window.problems) == (2, 200, [])
    assert view_texts(window.view) == 200


def test_read_window_picks_files_by_the_start_in_their_name_without_opening_others(tmp_path: Path) -> None:
    for start in (100, 200, 300):
        write_profile(
            profile_columns(columns(10, start)), tmp_path, model_version="v1", worker="w", start=start
        )
    (tmp_path / "v1" / "50-w.bin").write_bytes(b"never opened: outside the window")
    window = read_window(tmp_path, model_version="v1", since=150.5, until=300)
    assert (window.files, window.texts, window.problems) == (1, 10, [])
    assert read_window(tmp_path, model_version="v1", since=100).problems == []
    assert read_window(tmp_path, model_version="v1", since=None).files == 3


def test_a_rolling_window_reads_each_file_once_and_forgets_what_falls_out(tmp_path: Path) -> None:
    def write(start: int, worker: str, n: int) -> Path:
        view = profile_columns(columns(n, start + n))
        return write_profile(view, tmp_path, model_version="v1", worker=worker, start=start)

    write(60, "a", 10)
    write(60, "b", 20)
    write(120, "a", 30)
    window = RollingWindow(tmp_path, "v1")
    first = window.read(since=0)
    assert (first.files, first.texts, window.reads) == (3, 60, 3)
    again = window.read(since=0)  # nothing new: nothing read, and the kept views are not merged twice
    assert (again.files, again.texts, window.reads) == (3, 60, 3)
    late = write(120, "b", 5)  # a worker's file for an interval already in the window
    write(180, "a", 7)
    grown = window.read(since=0)
    assert (grown.files, grown.texts, window.reads) == (5, 72, 5)
    moved = window.read(since=100)  # the first interval falls out of the window
    assert (moved.files, moved.texts, window.reads) == (3, 42, 5)
    assert window.read(since=0).texts == 72 and window.reads == 7  # read again once back in the window
    late.unlink()
    write(120, "b", 9)  # replaced (another size): its interval is read afresh
    replaced = window.read(since=100)
    assert (replaced.files, replaced.texts) == (3, 46)
    assert replaced.texts == read_window(tmp_path, model_version="v1", since=100).texts


def test_a_rolling_window_names_a_damaged_file_at_every_read(tmp_path: Path) -> None:
    write_profile(profile_columns(columns(30, 8)), tmp_path, model_version="v1", worker="a", start=10)
    (tmp_path / "v1" / "10-b.bin").write_bytes(b"not a profile")
    window = RollingWindow(tmp_path, "v1")
    for _ in range(2):
        read = window.read(since=None)
        assert (read.files, read.texts) == (1, 30)
        assert [p.split(":")[0] for p in read.problems] == ["10-b.bin"]


def test_damaged_files_are_skipped_and_named(tmp_path: Path) -> None:
    good = write_profile(profile_columns(columns(30, 8)), tmp_path, model_version="v1", worker="a", start=10)
    data = good.read_bytes()
    folder = tmp_path / "v1"
    (folder / "11-truncated.bin").write_bytes(data[: len(data) // 2])
    (folder / "12-cut-tail.bin").write_bytes(data[:-3])
    (folder / "13-empty.bin").write_bytes(b"")
    (folder / "14-garbage.bin").write_bytes(os.urandom(500))
    (folder / "stray.bin").write_bytes(data)
    (folder / ".15-writer.bin.x1.tmp").write_bytes(b"half")  # a writer at work: ignored silently
    window = read_window(tmp_path, model_version="v1", since=None)
    assert (window.files, window.texts) == (1, 30)
    named = sorted(p.split(":")[0] for p in window.problems)
    assert named == ["11-truncated.bin", "12-cut-tail.bin", "13-empty.bin", "14-garbage.bin", "stray.bin"]


def test_a_missing_folder_is_an_empty_window_and_a_file_is_an_error(tmp_path: Path) -> None:
    assert read_window(tmp_path / "nothing-yet", model_version="v1", since=0) == read_window(
        tmp_path, model_version="v1", since=0
    )
    empty = read_window(tmp_path / "nothing-yet", model_version="v1", since=0)
    assert (empty.view, empty.files, empty.texts, empty.problems) == (None, 0, 0, [])
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ProfileError, match="not a folder"):
        read_window(a_file, model_version="v1", since=None)


def test_another_model_version_reads_nothing(tmp_path: Path) -> None:
    write_profile(profile_columns(columns(500, 9)), tmp_path, model_version="old", worker="1", start=10)
    window = read_window(tmp_path, model_version="new", since=None)
    assert (window.view, window.texts) == (None, 0)


def test_writing_where_no_folder_can_be_made_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "profiles"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(ProfileError, match="cannot write profiles"):
        write_profile(profile_columns(columns(5, 10)), blocker, model_version="v1", worker="1", start=1)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_writing_into_a_read_only_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1").chmod(0o500)
    try:
        with pytest.raises(ProfileError, match="cannot write"):
            write_profile(profile_columns(columns(5, 11)), tmp_path, model_version="v1", worker="1", start=1)
    finally:
        (tmp_path / "v1").chmod(0o700)


@pytest.mark.parametrize("version", ["../up", "a/b", "", ".hidden", "a b"])
def test_names_that_are_not_one_path_component_are_refused(tmp_path: Path, version: str) -> None:
    with pytest.raises(ProfileError, match="cannot be a file name"):
        write_profile(profile_columns(columns(5, 12)), tmp_path, model_version=version, worker="1", start=1)
    with pytest.raises(ProfileError):
        read_window(tmp_path, model_version=version, since=None)


def test_reference_round_trip_and_unreadable_references(tmp_path: Path) -> None:
    path = tmp_path / "model" / "reference.bin"
    write_reference(profile_columns(columns(77, 13)), path)
    assert view_texts(read_reference(path)) == 77
    with pytest.raises(ProfileError, match="no profile"):
        read_reference(tmp_path / "missing.bin")
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ProfileError, match="not a readable whylogs profile"):
        read_reference(path)
    with pytest.raises(ProfileError, match="empty"):
        view_from_bytes(b"")
