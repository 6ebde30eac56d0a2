"""Model metrics, profiles and the drift check of a real `bentoml serve` with two workers: exact counts
summed over the workers, one profile file per worker and interval with no text in it, drift gauges."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitoring.profiles import read_window
from tests.conftest import SECURITY_OFF, SERVER_LIMITS
from tests.helpers import bentoml_serve, wait_for
from textclf.core.crypto import new_data_key

pytestmark = pytest.mark.integration

MARKER = "quokkafish"  # in every text sent, so any text that reached a file would be found
TEXTS = [f"{MARKER} my pin is blocked please", f"how do i get a refund {MARKER}", f"{MARKER} fx rate today"]
REQUESTS = 60


@dataclass(frozen=True)
class MonitoredServer:
    url: str
    profiles: Path
    model: str  # name:version


@pytest.fixture(scope="module")
def monitored(
    built_bento: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MonitoredServer]:
    root = tmp_path_factory.mktemp("monitored")
    env = {
        "TEXTCLF_MODEL": built_bento["model"],
        "TEXTCLF_WORKERS": "2",
        "TEXTCLF_HOME": str(root / "home"),
        "TEXTCLF_PROFILES_DIR": str(root / "profiles"),
        "TEXTCLF_PROFILE_INTERVAL_S": "1",
        "TEXTCLF_DRIFT_CHECK_S": "1",
        "TEXTCLF_DRIFT_MIN_TEXTS": "20",
        "TEXTCLF_FEEDBACK_DIR": str(root / "feedback"),
        "TEXTCLF_DATA_KEY": new_data_key(),
        **SECURITY_OFF,
        **SERVER_LIMITS,
    }
    with bentoml_serve(built_bento["bento"], env, cwd=root) as url:
        yield MonitoredServer(url, root / "profiles", built_bento["model"])


def samples(url: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample on the /metrics page: name → labels → value."""
    page = httpx.get(f"{url}/metrics", timeout=10).text
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(page):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def one(page: dict, name: str) -> float:
    (value,) = page[name].values()
    return value


@pytest.fixture(scope="module")
def served(monitored: MonitoredServer) -> MonitoredServer:
    """REQUESTS one-text requests over many connections, so both workers answer some."""
    bodies = [{"texts": [TEXTS[i % len(TEXTS)]]} for i in range(REQUESTS)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda b: httpx.post(f"{monitored.url}/classify", json=b, timeout=10), bodies)
        )
    assert [a.status_code for a in answers] == [200] * REQUESTS
    return monitored


def test_model_metrics_count_every_text_once_over_both_workers(served: MonitoredServer) -> None:
    def counted() -> dict | None:  # each worker moves its notes into the metrics once a second
        page = samples(served.url)
        return page if sum(page["textclf_predictions_total"].values()) >= REQUESTS else None

    page = wait_for(counted, 30, f"predictions of all {REQUESTS} texts")
    assert page["textclf_http_requests_total"][(("route", "/classify"), ("status", "200"))] == REQUESTS
    predictions = page["textclf_predictions_total"]
    assert sum(predictions.values()) == REQUESTS
    # every label of the model is listed, the ones never predicted at 0
    assert {dict(k)["label"] for k in predictions} == {
        "card_arrival",
        "refund",
        "pin_blocked",
        "exchange_rate",
        "top_up",
    }
    name, version = served.model.split(":")
    info = dict(next(iter(page["textclf_model_info"])))
    assert (info["name"], info["version"], info["family"], info["precision"]) == (
        name,
        version,
        "logreg",
        "fp32",
    )
    assert one(page, "textclf_model_info") == 1  # max over the workers, not their sum
    for per_text in (
        "textclf_prediction_confidence_count",
        "textclf_input_chars_count",
        "textclf_input_tokens_count",
    ):
        assert one(page, per_text) == REQUESTS, per_text
    assert one(page, "textclf_queue_wait_seconds_count") == REQUESTS  # one wait per request
    batches = one(page, "textclf_batch_size_count")
    assert 1 <= batches <= REQUESTS and one(page, "textclf_batch_size_sum") == REQUESTS
    assert (
        one(page, "textclf_tokenize_seconds_count") == one(page, "textclf_inference_seconds_count") == batches
    )
    assert one(page, "textclf_inference_seconds_sum") > 0
    assert one(page, "textclf_profile_dropped_total") == 0


def test_live_accuracy_counts_every_feedback_item_once_over_both_workers(monitored: MonitoredServer) -> None:
    """Feedback posted over many connections: per true label and outcome, the counters summed over the
    workers equal what was sent (the recording rules turn them into live accuracy and recall)."""
    kinds = [("refund", "refund"), ("refund", "top_up"), ("pin_blocked", None)]  # correct, wrong, unstated
    bodies = [
        {"items": [{"text": f"{MARKER} feedback {i}", "label": label, "predicted": predicted}]}
        for i, (label, predicted) in enumerate(kinds[i % 3] for i in range(REQUESTS))
    ]
    before = samples(monitored.url).get("textclf_feedback_total", {})
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(lambda b: httpx.post(f"{monitored.url}/feedback", json=b, timeout=10), bodies)
        )
    assert [a.status_code for a in answers] == [200] * REQUESTS
    page = samples(monitored.url)  # counted when stored, before the answer: no flush to wait for
    counted = page["textclf_feedback_total"]
    delta = {dict(k)["label"] + "/" + dict(k)["outcome"]: v - before.get(k, 0) for k, v in counted.items()}
    third = REQUESTS // 3
    assert {k: v for k, v in delta.items() if v} == {
        "refund/correct": third,
        "refund/wrong": third,
        "pin_blocked/unstated": third,
    }
    assert len(counted) == 5 * 3  # every label and outcome listed from the start


def test_profiles_hold_every_text_and_no_text(served: MonitoredServer) -> None:
    version = served.model.split(":")[1]

    def profiled() -> int:
        return read_window(served.profiles, model_version=version, since=None).texts

    # each worker writes its interval once it is over (1 s here): wait for all of them, never sleep
    wait_for(lambda: profiled() == REQUESTS, 60, f"profiles of all {REQUESTS} texts")
    files = sorted((served.profiles / version).glob("*.bin"))
    assert files and all(f.stat().st_size > 0 for f in files)
    written = b"".join(f.read_bytes() for f in files)
    assert MARKER.encode() not in written and b"blocked please" not in written
    assert b"pin_blocked" in written  # the predicted label is a feature; the text is not


def test_one_worker_checks_drift_and_publishes_gauges(served: MonitoredServer) -> None:
    version = served.model.split(":")[1]
    wait_for(
        lambda: read_window(served.profiles, model_version=version, since=None).texts == REQUESTS,
        60,
        "the profiles",
    )

    def checked() -> dict | None:
        page = samples(served.url)
        window = page.get("textclf_drift_window_texts")
        return page if window and one(page, "textclf_drift_window_texts") == REQUESTS else None

    page = wait_for(checked, 60, f"a drift check over all {REQUESTS} texts")
    features = {dict(k)["feature"] for k in page["textclf_drift_p_value"]}
    assert {"confidence", "predicted", "model_outputs", "overall"} <= features
    assert set(page["textclf_drift_detected"].values()) <= {0.0, 1.0}
    assert 0 < one(page, "textclf_estimated_accuracy") <= 1
    assert one(page, "textclf_drift_check_timestamp_seconds") > 1.7e9
    errors = page.get("textclf_profile_errors_total", {})
    assert sum(errors.values()) == 0, errors
