"""The real Bento under `bentoml serve`: raw HTTP, the BentoML client, and every kind of bad input."""

from __future__ import annotations

import bentoml
import httpx
import pytest

from tests.conftest import Workspace
from textclf.core.runtime import OnnxClassifier

pytestmark = pytest.mark.integration

TEXTS = ["my pin is blocked please", "how do i get a refund", "where is my new card", "fx rate today"]


def classify(url: str, body: object, **kw: object) -> httpx.Response:
    return httpx.post(f"{url}/classify", json=body, timeout=10, **kw)


def test_classify_answers_in_order_like_the_model(server: str, trained_logreg: Workspace) -> None:
    response = classify(server, {"texts": TEXTS})
    assert response.status_code == 200
    results = response.json()
    local = OnnxClassifier(trained_logreg.onnx_dir("logreg"))
    expected = local.top_k(local.predict_proba(TEXTS), 1)
    assert [r["label"] for r in results] == [e[0].label for e in expected]
    assert [r["score"] for r in results] == pytest.approx([e[0].score for e in expected], abs=1e-6)
    assert [r["label"] for r in results] == ["pin_blocked", "refund", "card_arrival", "exchange_rate"]
    assert all(r["top_k"] is None for r in results)


def test_top_k_is_sorted_and_per_request(server: str) -> None:
    with_k = classify(server, {"texts": TEXTS[:2], "top_k": 3}).json()
    assert all(len(r["top_k"]) == 3 for r in with_k)
    for r in with_k:
        scores = [s["score"] for s in r["top_k"]]
        assert scores == sorted(scores, reverse=True) and r["top_k"][0]["label"] == r["label"]
    assert classify(server, {"texts": TEXTS[:1]}).json()[0]["top_k"] is None


def test_concurrent_requests_are_batched_without_mixing_answers(server: str) -> None:
    import concurrent.futures

    bodies = [{"texts": [t], "top_k": 1 + i % 3} for i, t in enumerate(TEXTS * 8)]
    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda b: classify(server, b), bodies))
    assert all(a.status_code == 200 for a in answers)
    for body, answer in zip(bodies, answers, strict=True):
        (result,) = answer.json()
        assert len(result["top_k"]) == body["top_k"]
        assert result["label"] == classify(server, {"texts": body["texts"]}).json()[0]["label"]


def test_model_endpoint(server: str, built_bento: dict[str, str]) -> None:
    info = httpx.get(f"{server}/model", timeout=10).json()
    name, version = built_bento["model"].split(":")
    assert (info["name"], info["version"], info["family"], info["labels"]) == (name, version, "logreg", 5)
    assert info["metrics"]["accuracy"] >= 0.9 and len(info["data_sha256"]) == 64


def test_bentoml_client(server: str) -> None:
    with bentoml.SyncHTTPClient(server) as client:
        results = client.classify({"texts": TEXTS[:2], "top_k": 2})
    assert [r["label"] for r in results] == ["pin_blocked", "refund"]
    assert len(results[0]["top_k"]) == 2


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"texts": []}, ["texts"]),
        ({"texts": ["   \n\t"]}, ["texts", 0]),
        ({"texts": ["ok", 7]}, ["texts", 1]),
        ({"texts": ["ok", None]}, ["texts", 1]),
        ({"texts": "not a list"}, ["texts"]),
        ({}, ["texts"]),
        ({"texts": ["ok"] * 17}, ["texts"]),
        ({"texts": ["x" * 201]}, ["texts", 0]),
        ({"texts": ["ok"], "top_k": 0}, ["top_k"]),
        ({"texts": ["ok"], "top_k": 1000}, ["top_k"]),
        ({"texts": ["ok"], "top_k": "3"}, ["top_k"]),
        ({"texts": ["ok"], "model": "other"}, ["model"]),
        ([1, 2], []),
    ],
)
def test_bad_bodies_get_a_422_naming_the_field(server: str, body: object, where: list) -> None:
    response = classify(server, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert "validation error" in error["error"]
    assert error["detail"][0]["loc"] == where


@pytest.mark.parametrize(
    ("content", "headers", "status", "message"),
    [
        (b'{"texts": ["ok"', {"content-type": "application/json"}, 422, "Invalid JSON"),
        (b'{"texts": ["\xff\xfe bad utf-8"]}', {"content-type": "application/json"}, 422, "Invalid JSON"),
        (b"", {"content-type": "application/json"}, 422, "Field required"),
        (b'{"texts": ["ok"]}', {"content-type": "text/plain"}, 415, "Content-Type must be application/json"),
        (b'{"texts": ["ok"]}', {}, 415, "Content-Type must be application/json"),
        (b'{"texts": ["' + b"a" * 70_000 + b'"]}', {"content-type": "application/json"}, 413, "larger than"),
    ],
)
def test_malformed_requests(server: str, content: bytes, headers: dict, status: int, message: str) -> None:
    response = httpx.post(f"{server}/classify", content=content, headers=headers, timeout=10)
    assert response.status_code == status, response.text
    body = response.json()
    assert message in (body["error"] + str(body.get("detail", "")))


def test_chunked_oversized_body_is_refused(server: str) -> None:
    def chunks():
        yield b'{"texts": ["'
        for _ in range(100):
            yield b"a" * 1000
        yield b'"]}'

    response = httpx.post(
        f"{server}/classify", content=chunks(), headers={"content-type": "application/json"}, timeout=10
    )
    assert response.status_code == 413
    assert classify(server, {"texts": ["still serving"]}).status_code == 200


def test_open_endpoints(server: str) -> None:
    assert httpx.get(f"{server}/livez", timeout=5).status_code == 200
    assert httpx.get(f"{server}/readyz", timeout=5).status_code == 200
    metrics = httpx.get(f"{server}/metrics", timeout=5)
    assert metrics.headers["content-type"].startswith("text/plain")
    assert "textclf_http_requests_total" in metrics.text
    assert "bentoml_service_request_total" not in metrics.text  # BentoML's costly ones are off by default
    spec = httpx.get(f"{server}/docs.json", timeout=5).json()
    assert {"/classify", "/model"} <= set(spec["paths"])
    assert httpx.get(f"{server}/docs", timeout=5, follow_redirects=True).status_code == 200
    assert httpx.get(f"{server}/schema.json", timeout=5).status_code == 200
    assert httpx.get(f"{server}/nope", timeout=5).status_code == 404


def _samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of metric `name` on the /metrics page, by its labels."""
    from prometheus_client.parser import text_string_to_metric_families

    page = httpx.get(f"{url}/metrics", timeout=10).text
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(page)
        for s in family.samples
        if s.name == name
    }


def test_request_counts_are_exact_over_every_worker(server: str) -> None:
    import concurrent.futures

    ok, bad = (("route", "/classify"), ("status", "200")), (("route", "/classify"), ("status", "422"))
    other = (("route", "other"), ("status", "404"))
    before = _samples(server, "textclf_http_requests_total")
    bodies = [{"texts": [t]} for t in TEXTS * 15] + [{"texts": []}] * 7
    with concurrent.futures.ThreadPoolExecutor(16) as pool:  # many connections: every worker answers some
        answers = list(pool.map(lambda b: classify(server, b), bodies))
    assert httpx.get(f"{server}/no/such/route/{len(bodies)}", timeout=5).status_code == 404
    after = _samples(server, "textclf_http_requests_total")
    assert [a.status_code for a in answers].count(200) == 60
    assert after[ok] - before.get(ok, 0) == 60
    assert after[bad] - before.get(bad, 0) == 7
    assert after[other] - before.get(other, 0) == 1  # unknown paths share one label value
    latency = _samples(server, "textclf_http_request_duration_seconds_count")
    assert latency[(("route", "/classify"),)] >= after[ok] + after[bad]


@pytest.fixture(scope="module")
def bentoml_route_server(built_bento: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    """The same Bento as it served before the front door: `/classify` through BentoML's own API route,
    and BentoML's own per-request metrics on."""
    from tests.conftest import SECURITY_OFF, SERVER_LIMITS
    from tests.helpers import bentoml_serve

    env = {
        "TEXTCLF_MODEL": built_bento["model"],
        "TEXTCLF_CLASSIFY_ROUTE": "bentoml",
        "TEXTCLF_BENTOML_METRICS": "true",
        **SECURITY_OFF,
        **SERVER_LIMITS,
    }
    with bentoml_serve(built_bento["bento"], env, cwd=tmp_path_factory.mktemp("bentoml-route")) as url:
        yield url


@pytest.mark.parametrize(
    "content",
    [
        b'{"texts": ["my pin is blocked please", "fx rate today"], "top_k": 3}',
        b'{"texts": ["how do i get a refund"]}',
        b'{"texts": []}',
        b'{"texts": ["ok", 7], "top_k": 0}',
        b'{"texts": ["ok"], "model": "other"}',
        b'{"texts": ["ok"',
        b'{"texts": ["\xff\xfe"]}',
        b"",
        b"[1, 2]",
    ],
)
def test_the_front_door_answers_exactly_as_bentomls_route(
    server: str, bentoml_route_server: str, content: bytes
) -> None:
    """Valid or not, a body gets the same status and the same JSON from both routes."""
    headers = {"content-type": "application/json"}
    front = httpx.post(f"{server}/classify", content=content, headers=headers, timeout=10)
    bentoml_route = httpx.post(
        f"{bentoml_route_server}/classify", content=content, headers=headers, timeout=10
    )
    assert front.status_code == bentoml_route.status_code
    assert front.json() == bentoml_route.json()
    assert front.headers["content-type"] == bentoml_route.headers["content-type"] == "application/json"
    if front.status_code == 200:  # answered by the front door itself, not by BentoML (which names itself)
        assert "server" not in front.headers and bentoml_route.headers["server"].startswith("BentoML")


def test_bentoml_metrics_when_asked_for_beside_ours(bentoml_route_server: str) -> None:
    assert classify(bentoml_route_server, {"texts": ["fx rate today"]}).status_code == 200
    page = httpx.get(f"{bentoml_route_server}/metrics", timeout=5).text
    assert "bentoml_service_request_total" in page and "textclf_http_requests_total" in page
