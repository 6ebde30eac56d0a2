"""The security layer under a real `bentoml serve`, tested the way an attacker would probe it.

Longer than our ~350-line norm on purpose: every case shares the one secured server of the session
(starting one costs seconds), and the attacks read best as one catalogue in the README's order.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import bentoml
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from auth.keys import load_ring, retire, rotate
from bentos.feedback import FEEDBACK_AAD
from tests.auth_helpers import PASSWORDS, SECRETS, hs256_with, raw_token
from tests.conftest import SecureServer
from tests.helpers import wait_for
from textclf.core.crypto import Sealer, decode_data_key, read_sealed_log

pytestmark = pytest.mark.integration

BODY = {"texts": ["my pin is blocked please"]}
# Deadlines, not delays: each worker re-reads the key ring at most once a second, and writes a request's
# audit line just after its answer; the tests poll for the effect and give up only after these.
RELOAD_DEADLINE_S = 30
AUDIT_DEADLINE_S = 15


def post(server: SecureServer, path: str, token: str | None, body: object = BODY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{server.url}{path}", json=body, headers=headers, timeout=10)


def assert_refused(response: httpx.Response, reason: str | None = None) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="textclf"')
    if reason:
        assert reason in response.json()["error"]


def classify_until(server: SecureServer, token: str, status: int, what: str) -> httpx.Response:
    """POST /classify with `token` until it answers `status`, and return that answer: after a key ring
    change each server worker answers the new way once it has re-read the ring (within about a second)."""
    seen: list[int] = []

    def probe() -> httpx.Response | None:
        response = post(server, "/classify", token)
        seen.append(response.status_code)
        return response if response.status_code == status else None

    return wait_for(probe, RELOAD_DEADLINE_S, f"{what} (HTTP {status}; got {sorted(set(seen))})")


def published_kids(server: SecureServer) -> set[str]:
    jwks = httpx.get(f"{server.url}/.well-known/jwks.json", timeout=10).json()
    return {key["kid"] for key in jwks["keys"]}


def from_now(seconds: int) -> Callable[[], int]:
    """A claim time taken when the token is signed, not when the tests are collected (a long session
    would otherwise see a "future" nbf become the past)."""
    return lambda: int(time.time()) + seconds


# ------------------------------------------------------------------------------------------ the happy path


def test_a_minted_token_classifies_and_the_answer_carries_a_request_id(secure_server: SecureServer) -> None:
    response = post(secure_server, "/classify", secure_server.auth.mint(scopes="classify"))
    assert response.status_code == 200, response.text
    assert response.json()[0]["label"] == "pin_blocked"
    assert len(response.headers["x-request-id"]) >= 16


@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/livez", "/schema.json", "/docs.json", "/"])
def test_open_routes_need_no_token(secure_server: SecureServer, path: str) -> None:
    response = httpx.get(f"{secure_server.url}{path}", timeout=10)
    assert response.status_code == 200, (path, response.status_code)
    assert "Bearer ey" not in response.text and "secret_hash" not in response.text


def test_docs_redirect_is_open(secure_server: SecureServer) -> None:
    assert httpx.get(f"{secure_server.url}/docs", timeout=10, follow_redirects=True).status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/classify"),
        ("GET", "/model"),
        ("POST", "/feedback"),
        ("GET", "/admin/status"),
        ("GET", "/nope"),
    ],
)
def test_every_other_route_needs_a_token(secure_server: SecureServer, method: str, path: str) -> None:
    assert_refused(httpx.request(method, f"{secure_server.url}{path}", json=BODY, timeout=10), "bearer token")


def test_client_credentials_grant_with_basic_auth_and_with_form_fields(secure_server: SecureServer) -> None:
    url = f"{secure_server.url}/token"
    by_basic = httpx.post(
        url, data={"grant_type": "client_credentials"}, auth=("svc", SECRETS["svc"]), timeout=10
    )
    assert by_basic.status_code == 200, by_basic.text
    assert by_basic.headers["cache-control"] == "no-store"
    answer = by_basic.json()
    assert answer["token_type"] == "Bearer" and answer["expires_in"] == 900
    assert answer["scope"] == "classify feedback model:read"
    assert post(secure_server, "/classify", answer["access_token"]).status_code == 200

    narrowed = httpx.post(
        url,
        data={
            "grant_type": "client_credentials",
            "client_id": "svc",
            "client_secret": SECRETS["svc"],
            "scope": "model:read",
        },
        timeout=10,
    ).json()
    assert narrowed["scope"] == "model:read"
    token = narrowed["access_token"]
    assert (
        httpx.get(
            f"{secure_server.url}/model", headers={"Authorization": f"Bearer {token}"}, timeout=10
        ).status_code
        == 200
    )
    assert post(secure_server, "/classify", token).status_code == 403


def test_password_grant(secure_server: SecureServer) -> None:
    url = f"{secure_server.url}/token"
    ok = httpx.post(
        url, data={"grant_type": "password", "username": "alice", "password": PASSWORDS["alice"]}, timeout=10
    )
    assert ok.status_code == 200 and ok.json()["scope"] == "classify"
    bad = httpx.post(
        url, data={"grant_type": "password", "username": "alice", "password": "guess-guess-guess"}, timeout=10
    )
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"


@pytest.mark.parametrize(
    ("data", "auth", "status", "error"),
    [
        ({"grant_type": "client_credentials"}, ("svc", "wrong-secret-000000"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, ("nobody", "wrong-secret-000000"), 401, "invalid_client"),
        ({"grant_type": "client_credentials"}, None, 401, "invalid_client"),
        ({"grant_type": "authorization_code"}, ("svc", SECRETS["svc"]), 400, "unsupported_grant_type"),
        ({"scope": "classify"}, ("svc", SECRETS["svc"]), 400, "invalid_request"),
        (
            {"grant_type": "client_credentials", "scope": "admin"},
            ("svc", SECRETS["svc"]),
            400,
            "invalid_scope",
        ),
        (
            {"grant_type": "client_credentials", "scope": "root"},
            ("svc", SECRETS["svc"]),
            400,
            "invalid_scope",
        ),
        ({"grant_type": "password", "username": "alice"}, None, 400, "invalid_request"),
    ],
)
def test_token_endpoint_refusals(
    secure_server: SecureServer, data: dict, auth: tuple[str, str] | None, status: int, error: str
) -> None:
    response = httpx.post(f"{secure_server.url}/token", data=data, auth=auth, timeout=10)
    assert response.status_code == status, response.text
    assert response.json()["error"] == error
    assert "access_token" not in response.json()
    if status == 401:
        assert response.headers["www-authenticate"].startswith("Basic")


def test_token_endpoint_wants_a_form(secure_server: SecureServer) -> None:
    url = f"{secure_server.url}/token"
    as_json = httpx.post(
        url, json={"grant_type": "client_credentials"}, auth=("svc", SECRETS["svc"]), timeout=10
    )
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    assert httpx.get(url, timeout=10).status_code == 405
    huge = httpx.post(
        url,
        content=b"grant_type=" + b"x" * 20_000,
        headers={"content-type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert huge.status_code == 413


def test_jwks_publishes_public_keys_that_verify_our_tokens(secure_server: SecureServer) -> None:
    jwks = httpx.get(f"{secure_server.url}/.well-known/jwks.json", timeout=10).json()
    assert jwks["keys"] and all(k["kty"] == "RSA" and k["use"] == "sig" and k["kid"] for k in jwks["keys"])
    assert not any(private in k for k in jwks["keys"] for private in ("d", "p", "q", "dp", "dq", "qi"))
    token = secure_server.auth.mint(scopes="classify")
    key = jwt.PyJWKClient(f"{secure_server.url}/.well-known/jwks.json").get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="textclf-api", issuer="textclf")
    assert claims["scope"] == "classify"


# ------------------------------------------------------------------------------------------ attacks


def test_unsigned_alg_none_is_refused(secure_server: SecureServer) -> None:
    kid = load_ring(secure_server.auth.path).active.kid
    claims = secure_server.auth.claims(scope="classify admin")
    for alg in ("none", "None", "NONE"):
        token = raw_token({"alg": alg, "typ": "at+jwt", "kid": kid}, claims)
        assert_refused(post(secure_server, "/classify", token))


def test_hs256_signed_with_the_public_key_is_refused(secure_server: SecureServer) -> None:
    key = load_ring(secure_server.auth.path).active
    public_pem = key.verifying_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = secure_server.auth.claims()
    for secret in (public_pem, public_pem.strip()):
        token = hs256_with(secret, {"alg": "HS256", "typ": "at+jwt", "kid": key.kid}, claims)
        assert_refused(post(secure_server, "/classify", token), "algorithm")


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"exp": from_now(-60)}, "expired"),
        ({"nbf": from_now(3600)}, "not valid yet"),
        ({"iat": from_now(3600)}, "not valid yet"),
        ({"exp": "tomorrow"}, "must be numbers"),
        ({"aud": "another-api"}, "audience"),
        ({"iss": "evil"}, "issuer"),
        *[({claim: None}, claim) for claim in ("iss", "aud", "sub", "exp", "iat", "nbf", "jti", "scope")],
    ],
)
def test_bad_claims_signed_with_the_real_key_are_refused(
    secure_server: SecureServer, changes: dict, reason: str
) -> None:
    changes = {claim: value() if callable(value) else value for claim, value in changes.items()}
    token = secure_server.auth.sign(secure_server.auth.claims(**changes))
    assert_refused(post(secure_server, "/classify", token), reason)


@pytest.mark.parametrize(
    ("header", "reason"),
    [({"typ": "JWT"}, "type"), ({"typ": None}, "type"), ({"kid": "no-such-key"}, "unknown")],
)
def test_bad_headers_are_refused(secure_server: SecureServer, header: dict, reason: str) -> None:
    token = secure_server.auth.sign(secure_server.auth.claims(), **header)
    assert_refused(post(secure_server, "/classify", token), reason)


def test_tampered_payload_is_refused(secure_server: SecureServer) -> None:
    good = secure_server.auth.mint(scopes="model:read")
    head, payload, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["scope"] = "model:read classify admin"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    assert_refused(post(secure_server, "/classify", f"{head}.{forged_payload}.{signature}"), "signature")


@pytest.mark.parametrize("junk", ["abc", "a.b.c", "Bearer", "x" * 5000])
def test_garbage_tokens_are_refused(secure_server: SecureServer, junk: str) -> None:
    assert_refused(post(secure_server, "/classify", junk))


def test_scope_escalation_is_forbidden(secure_server: SecureServer) -> None:
    classify_only = secure_server.auth.mint(scopes="classify")
    for method, path in (("GET", "/admin/status"), ("POST", "/feedback"), ("GET", "/model")):
        response = httpx.request(
            method,
            f"{secure_server.url}{path}",
            headers={"Authorization": f"Bearer {classify_only}"},
            json={},
            timeout=10,
        )
        assert response.status_code == 403, (path, response.text)
        assert 'error="insufficient_scope"' in response.headers["www-authenticate"]
    admin = httpx.get(
        f"{secure_server.url}/admin/status", headers=secure_server.auth.headers(scopes="admin"), timeout=10
    )
    assert admin.status_code == 200
    assert admin.json()["auth"]["keys"] and "PRIVATE" not in admin.text


def test_rotation_keeps_old_tokens_until_the_key_is_retired(secure_server: SecureServer) -> None:
    folder = secure_server.auth.path
    old_kid = load_ring(folder).active.kid
    old_token = secure_server.auth.mint(sub="old-key-user", scopes="classify")
    assert post(secure_server, "/classify", old_token).status_code == 200
    new_kid = rotate(folder)
    new_token = secure_server.auth.mint(sub="new-key-user", scopes="classify")
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid != old_kid
    # Only what depends on a worker having re-read the ring is polled; the rest holds either way.
    classify_until(secure_server, new_token, 200, "the new key's token to be accepted")
    wait_for(
        lambda: {old_kid, new_kid} <= published_kids(secure_server),
        RELOAD_DEADLINE_S,
        f"the JWKS to publish both {old_kid} and {new_kid}",
    )
    assert post(secure_server, "/classify", old_token).status_code == 200  # in the old ring and the new
    retire(folder, old_kid)
    refused = classify_until(secure_server, old_token, 401, "the retired key's token to be refused")
    assert_refused(refused, "unknown or retired")
    classify_until(secure_server, new_token, 200, "the new key's token to stay accepted")
    wait_for(
        lambda: old_kid not in published_kids(secure_server),
        RELOAD_DEADLINE_S,
        f"the JWKS to drop the retired {old_kid}",
    )


# ------------------------------------------------------------------------------------------ abuse limits


def test_limits_give_413_and_422(secure_server: SecureServer) -> None:
    token = secure_server.auth.mint(scopes="classify")
    huge = httpx.post(
        f"{secure_server.url}/classify",
        content=b'{"texts": ["' + b"a" * 70_000 + b'"]}',
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
        timeout=10,
    )
    assert huge.status_code == 413
    too_many = post(secure_server, "/classify", token, {"texts": ["ok"] * 17})
    too_long = post(secure_server, "/classify", token, {"texts": ["x" * 201]})
    assert too_many.status_code == 422 and too_long.status_code == 422
    assert too_many.json()["detail"][0]["loc"] == ["texts"]


# ------------------------------------------------------------------------------------------ clients


def test_bentoml_client_with_a_token(secure_server: SecureServer) -> None:
    token = secure_server.auth.mint(scopes="classify")
    with bentoml.SyncHTTPClient(secure_server.url, token=token) as client:
        assert client.classify({"texts": ["how do i get a refund"]})[0]["label"] == "refund"
    with (
        bentoml.SyncHTTPClient(secure_server.url, token="not-a-token") as client,
        pytest.raises(bentoml.exceptions.BentoMLException) as refused,
    ):
        client.classify({"texts": ["how do i get a refund"]})
    assert int(refused.value.error_code) == 401


# ------------------------------------------------------------------------------------------ feedback & audit


def test_feedback_is_stored_encrypted(secure_server: SecureServer) -> None:
    token = secure_server.auth.mint(sub="labeller", scopes="feedback")
    marker = "unique feedback text 8431 about my refund"
    answer = post(
        secure_server,
        "/feedback",
        token,
        {"items": [{"text": marker, "label": "refund", "predicted": "top_up"}]},
    )
    assert answer.status_code == 200 and answer.json() == {"accepted": 1}
    unknown = post(secure_server, "/feedback", token, {"items": [{"text": "x", "label": "no_such_label"}]})
    assert unknown.status_code == 422 and "no_such_label" in unknown.json()["error"]
    files = list(secure_server.feedback_dir.glob("*.jsonl"))
    assert files and all(marker.encode() not in f.read_bytes() for f in files)
    sealer = Sealer(decode_data_key(secure_server.data_key))
    records = [r for f in files for r in read_sealed_log(f, sealer, FEEDBACK_AAD)]
    mine = [r for r in records if r["text"] == marker]
    assert mine and mine[0]["label"] == "refund" and mine[0]["subject"] == "labeller"


def _audit_lines(server: SecureServer) -> list[dict]:
    """Every complete audit line so far (a line being written as we read is left for the next look)."""
    lines = []
    for path in server.audit_dir.glob("*.jsonl*"):
        try:
            text = path.read_text()
        except FileNotFoundError:  # rotated away between the listing and the read
            continue
        lines += [json.loads(line) for line in text.split("\n")[:-1] if line]
    return lines


def test_audit_log_records_requests_without_secrets_or_text(secure_server: SecureServer) -> None:
    marker = "audit probe text 5521 where is my card"
    token = secure_server.auth.mint(sub="audited", scopes="classify")
    probe = uuid.uuid4().hex[:8]  # ids no earlier run against this server can have used
    ids = {name: f"audit-{name}-{probe}" for name in ("classify", "bad-token", "issued", "refused")}
    ok = httpx.post(
        f"{secure_server.url}/classify",
        json={"texts": [marker]},
        headers={"Authorization": f"Bearer {token}", "x-request-id": ids["classify"]},
        timeout=10,
    )
    assert ok.status_code == 200 and ok.headers["x-request-id"] == ids["classify"]
    bad = httpx.post(
        f"{secure_server.url}/classify",
        json=BODY,
        headers={"Authorization": "Bearer bad.token.here", "x-request-id": ids["bad-token"]},
        timeout=10,
    )
    assert bad.status_code == 401
    issued = httpx.post(
        f"{secure_server.url}/token",
        data={"grant_type": "client_credentials"},
        auth=("svc", SECRETS["svc"]),
        headers={"x-request-id": ids["issued"]},
        timeout=10,
    )
    refused = httpx.post(
        f"{secure_server.url}/token",
        data={"grant_type": "client_credentials"},
        auth=("svc", "nope-nope-nope-nope"),
        headers={"x-request-id": ids["refused"]},
        timeout=10,
    )
    assert (issued.status_code, refused.status_code) == (200, 401)

    def ours() -> dict[str, list[dict]] | None:
        found = {
            name: [x for x in _audit_lines(secure_server) if x["request_id"] == rid]
            for name, rid in ids.items()
        }
        return found if all(found.values()) else None

    # a worker writes a request's audit line right after the answer has gone out: wait for all four
    found = wait_for(ours, AUDIT_DEADLINE_S, f"audit lines for request ids {sorted(ids.values())}")
    assert all(len(lines) == 1 for lines in found.values()), found  # one line per request
    mine, bad_line, issued_line, refused_line = (found[name][0] for name in ids)
    assert mine["subject"] == "audited" and mine["route"] == "/classify" and mine["status"] == 200
    assert mine["scopes"] == ["classify"] and mine["client"] == "127.0.0.1" and mine["latency_ms"] > 0
    assert {
        "time",
        "request_id",
        "subject",
        "client",
        "route",
        "status",
        "latency_ms",
        "scopes",
    } <= mine.keys()
    assert bad_line["status"] == 401 and bad_line["route"] == "/classify" and bad_line["subject"] is None
    for line, status in ((issued_line, 200), (refused_line, 401)):
        assert line["event"] == "token" and line["status"] == status and line["subject"] == "svc", line
    raw = "\n".join(json.dumps(line) for line in _audit_lines(secure_server))
    for secret in (marker, token, issued.json()["access_token"], SECRETS["svc"], "nope-nope-nope-nope"):
        assert secret not in raw


def test_predict_batch_with_and_without_a_token(secure_server: SecureServer, tmp_path: Path) -> None:
    from batch.client import BatchError, predict_file
    from tests.helpers import write_csv

    source = write_csv(tmp_path / "in.csv", [("where is my new card", "x"), ("how do i get a refund", "y")])
    token = secure_server.auth.mint(sub="batch-job", scopes="classify")
    summary = predict_file(source, tmp_path / "out.csv", url=secure_server.url, token=token)
    assert summary.rows_out == 2 and summary.failed_rows == 0
    with pytest.raises(BatchError, match=r"refused the token \(HTTP 401\)"):
        predict_file(source, tmp_path / "none.csv", url=secure_server.url)
    reader = secure_server.auth.mint(sub="reader", scopes="model:read")
    with pytest.raises(BatchError, match=r"HTTP 403"):
        predict_file(source, tmp_path / "reader.csv", url=secure_server.url, token=reader)
    assert not (tmp_path / "none.csv").exists() and not (tmp_path / "reader.csv").exists()
