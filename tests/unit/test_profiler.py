"""The profiler and the drift watcher (monitoring.profiler): a bounded queue that drops and counts but
never blocks, one file per worker and interval, a flush at stop, failures counted with the server alive,
and no text ever written."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY
from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import Whitespace

from monitoring.model_metrics import ModelMetrics
from monitoring.profiler import DriftWatcher, Profiler, reference_loader
from monitoring.profiles import profile_columns, read_window, write_reference
from textclf.core.contract import REFERENCE_FILE
from textclf.core.features import WordListStats, WordPieceStats, text_features

LABELS = ["card_arrival", "refund", "pin_blocked"]
STATS = WordListStats(["where", "is", "my", "card", "refund", "pin"])
WAIT_S = 30  # a deadline for things that happen at once when the code works


def value(metric: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(metric, labels) or 0.0


def metrics() -> ModelMetrics:
    return ModelMetrics(LABELS, name="m", version="v1", family="logreg", precision="fp32", low_confidence=0.5)


class Clock:
    """Unix time that moves only when the test says so."""

    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def batch(n: int, seed: int = 0, word: str = "card") -> tuple[list[str], np.ndarray, None]:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(len(LABELS)), size=n)
    return [f"where is my {word} {i % 50:02d}" for i in range(n)], probs, None  # same lengths everywhere


def profiler(folder: Path, clock: Clock | None = None, **kw) -> Profiler:
    options = dict(
        labels=LABELS,
        stats=STATS,
        model_version="v1",
        worker="w1",
        interval_s=60,
        max_queued=1000,
        counts=metrics(),
    )
    options.update(kw)
    return Profiler(folder, clock=clock or Clock(1_000_000.0), **options)


def test_a_full_queue_drops_and_counts_the_batch(tmp_path: Path) -> None:
    p = profiler(tmp_path, max_queued=5)
    dropped = value("textclf_profile_dropped_total")
    assert p.offer(*batch(3))
    assert not p.offer(*batch(3))  # 6 > 5: the whole batch is dropped
    assert p.offer(*batch(2))  # exactly full
    assert not p.offer(*batch(1))
    assert value("textclf_profile_dropped_total") - dropped == 4
    p.flush()
    assert read_window(tmp_path, model_version="v1", since=None).texts == 5


def test_offer_never_waits_for_a_busy_profiler(tmp_path: Path) -> None:
    """While the thread is stuck computing features, the lane's offers still return at once."""
    busy, release = threading.Event(), threading.Event()

    def slow_stats(texts, encodings):
        busy.set()
        release.wait(WAIT_S)
        return STATS(texts, encodings)

    p = profiler(tmp_path, stats=slow_stats, max_queued=10).start()
    try:
        assert p.offer(*batch(10))  # half full or more: wakes the thread, which gets stuck in features
        assert busy.wait(WAIT_S), "the profiler's thread never took the batch"
        answers: list[bool] = []
        lane = threading.Thread(target=lambda: answers.extend(p.offer(*batch(4)) for _ in range(5)))
        lane.start()
        lane.join(WAIT_S)
        assert not lane.is_alive(), "offer blocked behind the busy profiler"
        assert answers == [True, True, False, False, False]  # 8 of 10 places, then drops
    finally:
        release.set()
        p.stop()


def test_one_file_per_interval_with_its_texts(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)  # intervals of 60 s start at 999,960, 1,000,020, ...
    p = profiler(tmp_path, clock=clock)
    p.offer(*batch(3))
    clock.now += 10
    p.step()
    assert list(tmp_path.rglob("*.bin")) == []  # the interval is not over
    p.offer(*batch(4, seed=1))
    clock.now += 15  # 1,000,025: the first interval is over
    p.step()
    p.offer(*batch(2, seed=2))
    clock.now += 200  # several intervals later
    p.step()
    p.step()  # nothing new: no empty file
    assert {path.name for path in (tmp_path / "v1").iterdir()} == {"999960-w1.bin", "1000020-w1.bin"}
    assert read_window(tmp_path, model_version="v1", since=999_960, until=999_961).texts == 7
    assert read_window(tmp_path, model_version="v1", since=1_000_020).texts == 2


def test_many_batches_make_one_profile_across_whylogs_chunks(tmp_path: Path) -> None:
    p = profiler(tmp_path, chunk_texts=10)
    expected = []
    for seed in range(9):
        texts, probs, _ = batch(4, seed=seed)
        p.offer(texts, probs, None)
        p.step()  # drains: whylogs chunks of >= 10 texts are logged as they fill
        expected.append(text_features(texts, probs, LABELS, STATS))
    p.flush()
    window = read_window(tmp_path, model_version="v1", since=None)
    assert (window.files, window.texts) == (1, 36)
    confidence = np.concatenate([e["confidence"] for e in expected])
    stats = window.view.get_column("confidence").get_metric("distribution")
    assert stats.mean.value == pytest.approx(confidence.mean())
    assert stats.max == pytest.approx(confidence.max())


def test_stop_flushes_the_current_interval(tmp_path: Path) -> None:
    p = profiler(tmp_path, interval_s=3600).start()
    p.offer(*batch(3))
    p.stop()
    assert not p._thread.is_alive()
    assert read_window(tmp_path, model_version="v1", since=None).texts == 3


def test_an_unwritable_folder_is_counted_and_the_profiler_lives_on(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "profiles"
    not_a_folder.write_text("a file where the folder should be")
    clock = Clock(1_000_000.0)
    errors = value("textclf_profile_errors_total", kind="write")
    p = profiler(not_a_folder, clock=clock)
    p.offer(*batch(3))
    clock.now += 60
    p.step()  # the interval ends: its write fails
    p.offer(*batch(3))
    p.flush()  # at shutdown: fails too
    assert value("textclf_profile_errors_total", kind="write") - errors == 2
    assert p.written == []
    not_a_folder.unlink()  # once the folder is usable, the same profiler writes again
    p.offer(*batch(2))
    p.flush()
    assert read_window(not_a_folder, model_version="v1", since=None).texts == 2


def test_no_text_is_ever_written(tmp_path: Path) -> None:
    p = profiler(tmp_path)
    secret = "zebracorn"
    texts = [f"my account {secret} number {i} was charged twice" for i in range(50)]
    p.offer(texts, np.tile([[0.2, 0.7, 0.1]], (50, 1)), None)
    p.flush()
    written = b"".join(path.read_bytes() for path in tmp_path.rglob("*") if path.is_file())
    assert written and b"refund" in written  # predicted labels are features, the texts are not
    for word in (secret, "charged", "account"):
        assert word.encode() not in written


def test_token_models_count_tokens_from_their_encodings(tmp_path: Path) -> None:
    """Models with a tokenizer hand over its encodings: metrics and profiles read token counts (and
    unknown words) from them instead of tokenising again."""
    tokenizer = Tokenizer(WordLevel({"[UNK]": 0, "where": 1, "is": 2, "my": 3, "card": 4}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = Whitespace()
    texts = ["where is my card", "my zebra", "card"] * 3
    encodings = tokenizer.encode_batch(texts)
    probs = np.tile([[0.6, 0.3, 0.1]], (len(texts), 1))
    m = metrics()
    tokens_before = value("textclf_input_tokens_sum")
    m.note_batch(texts, probs, encodings, 0.001, 0.002)
    m.flush()
    assert value("textclf_input_tokens_sum") - tokens_before == 3 * (4 + 2 + 1)
    p = profiler(tmp_path, stats=WordPieceStats(unk_id=0))
    p.offer(texts, probs, encodings)
    p.flush()
    view = read_window(tmp_path, model_version="v1", since=None).view
    assert view.get_column("tokens").get_metric("distribution").mean.value == pytest.approx(7 / 3)
    oov = view.get_column("oov_rate").get_metric("distribution").mean.value
    assert oov == pytest.approx((0 + 0.5 + 0) / 3)  # "zebra" is the one unknown word


# -- the drift watcher


def reference_folder(tmp_path: Path, n: int = 600) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    texts, probs, _ = batch(n, seed=42)
    write_reference(profile_columns(text_features(texts, probs, LABELS, STATS)), folder / REFERENCE_FILE)
    return folder


def watcher(profiles: Path, model: Path, clock: Clock, **kw) -> DriftWatcher:
    options = dict(
        model_version="v1",
        reference=reference_loader(model),
        counts=metrics(),
        every_s=60,
        window_s=3600,
        alpha=0.01,
        min_texts=200,
        clock=clock,
    )
    options.update(kw)
    return DriftWatcher(profiles, **options)


def test_a_drift_check_publishes_its_report(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    p = profiler(tmp_path / "profiles", clock=clock)
    texts, probs, _ = batch(400, seed=7)
    p.offer(texts, probs**8 / (probs**8).sum(axis=1, keepdims=True), None)  # much more confident
    p.flush()
    report = watcher(tmp_path / "profiles", reference_folder(tmp_path), clock).check()
    assert report is not None and report.texts == 400
    assert report.drifted and report.feature("confidence").drifted
    assert value("textclf_drift_window_texts") == 400
    assert value("textclf_drift_detected", feature="confidence") == 1
    assert value("textclf_drift_detected", feature="chars") == 0
    assert value("textclf_drift_p_value", feature="overall") == pytest.approx(report.p_value)
    assert value("textclf_estimated_accuracy") == pytest.approx(report.estimated_accuracy)
    assert value("textclf_drift_check_timestamp_seconds") == 1_000_000.0


def test_a_missing_reference_is_counted_once_and_checks_stop(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    errors = value("textclf_profile_errors_total", kind="reference")
    w = watcher(tmp_path / "profiles", tmp_path / "model", Clock(1_000_000.0))
    assert w.check() is None and w.check() is None
    assert value("textclf_profile_errors_total", kind="reference") - errors == 1


def test_damaged_profiles_are_counted_and_skipped(tmp_path: Path) -> None:
    clock = Clock(1_000_000.0)
    profiles = tmp_path / "profiles"
    p = profiler(profiles, clock=clock)
    p.offer(*batch(300, seed=3))
    p.flush()
    (profiles / "v1" / "999961-w2.bin").write_bytes(b"\x00garbage")
    corrupt = value("textclf_profile_errors_total", kind="corrupt")
    report = watcher(profiles, reference_folder(tmp_path), clock).check()
    assert report is not None and report.texts == 300
    assert value("textclf_profile_errors_total", kind="corrupt") - corrupt == 1


def test_an_unreadable_profiles_folder_is_counted(tmp_path: Path) -> None:
    not_a_folder = tmp_path / "profiles"
    not_a_folder.write_text("not a folder")
    read = value("textclf_profile_errors_total", kind="read")
    assert watcher(not_a_folder, reference_folder(tmp_path), Clock(1_000_000.0)).check() is None
    assert value("textclf_profile_errors_total", kind="read") - read == 1
