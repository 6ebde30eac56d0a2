"""The security layer's parts: key ring, tokens, credentials, scopes, rate limits, audit, middleware."""

from __future__ import annotations

import asyncio
import json
import stat
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from auth.audit import AuditLog
from auth.credentials import CredentialsError, add_principal, load_credentials
from auth.keys import KeyRingError, Reloading, init_ring, load_ring, retire, retire_expired, rotate
from auth.middleware import AuthConfig, AuthMiddleware
from auth.oauth import parse_basic, parse_form
from auth.ratelimit import RateLimiter, retry_after
from auth.scopes import ANY_SCOPE, required_scope
from auth.tokens import InvalidToken, TokenService
from tests.auth_helpers import SECRETS, make_auth_folder


class Clock:
    """A clock a test moves by hand instead of sleeping: the wall clock plus `offset` seconds (it starts
    at the wall clock because PyJWT always checks tokens against the wall clock as well)."""

    def __init__(self, offset: float = 0.0):
        self.offset = offset

    def __call__(self) -> float:
        return time.time() + self.offset


def service(
    folder: Path, alg: str = "RS256", ttl_s: int = 60, clock: Callable[[], float] = time.time
) -> TokenService:
    return TokenService(
        lambda: load_ring(folder),
        issuer="textclf",
        audience="textclf-api",
        algorithm=alg,
        ttl_s=ttl_s,
        clock=clock,
    )


@pytest.mark.parametrize("alg", ["RS256", "HS256"])
def test_issue_and_verify_round_trip(tmp_path: Path, alg: str) -> None:
    init_ring(tmp_path, alg)
    tokens = service(tmp_path, alg)
    issued = tokens.issue("svc", ["model:read", "classify", "classify"])
    header = jwt.get_unverified_header(issued.token)
    assert header == {"alg": alg, "kid": issued.kid, "typ": "at+jwt"}
    claims = tokens.verify(issued.token)
    assert claims.sub == "svc" and claims.scopes == {"classify", "model:read"} and claims.jti == issued.jti
    payload = jwt.decode(issued.token, options={"verify_signature": False})
    assert set(payload) == {"iss", "aud", "sub", "exp", "iat", "nbf", "jti", "scope"}
    assert payload["exp"] - payload["iat"] == 60


def test_the_server_algorithm_is_pinned(tmp_path: Path) -> None:
    init_ring(tmp_path, "HS256")
    hs_token = service(tmp_path, "HS256").issue("x", ["classify"]).token
    with pytest.raises(InvalidToken, match="algorithm must be RS256"):
        service(tmp_path, "RS256").verify(hs_token)


def test_ring_files_are_private_and_jwks_is_public_only(tmp_path: Path) -> None:
    assert init_ring(tmp_path) is True and init_ring(tmp_path) is False  # idempotent
    ring = load_ring(tmp_path)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    (jwk,) = ring.jwks()["keys"]
    assert jwk["kid"] == ring.active.kid and "d" not in jwk and jwk["alg"] == "RS256"


def test_hs256_secrets_are_never_published(tmp_path: Path) -> None:
    init_ring(tmp_path, "HS256")
    assert load_ring(tmp_path).jwks() == {"keys": []}


def test_rotation_keeps_the_old_key_until_retired(tmp_path: Path) -> None:
    init_ring(tmp_path)
    tokens = service(tmp_path)
    old = tokens.issue("a", ["classify"])
    new_kid = rotate(tmp_path)
    assert tokens.verify(old.token).kid == old.kid  # still valid, and now cached
    assert tokens.issue("a", ["classify"]).kid == new_kid
    with pytest.raises(KeyRingError, match="active key"):
        retire(tmp_path, new_kid)
    retire(tmp_path, old.kid)
    assert not (tmp_path / f"{old.kid}.pem").exists()
    with pytest.raises(InvalidToken, match="unknown or retired"):
        tokens.verify(old.token)  # the cache does not outlive the key


def test_retire_expired_only_takes_keys_no_token_can_need(tmp_path: Path) -> None:
    init_ring(tmp_path)
    first = load_ring(tmp_path).active.kid
    rotate(tmp_path)
    rotated_out = load_ring(tmp_path).keys[first].rotated_out
    assert rotated_out is not None
    # a token signed just before the rotation lives until exactly rotated_out + ttl
    assert retire_expired(tmp_path, max_token_ttl_s=3600, clock=lambda: rotated_out + 3600) == []
    assert first in load_ring(tmp_path).keys
    assert retire_expired(tmp_path, max_token_ttl_s=3600, clock=lambda: rotated_out + 3600.5) == [first]
    assert list(load_ring(tmp_path).keys) == [load_ring(tmp_path).active.kid]  # the active key stays


def test_missing_or_broken_ring_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(KeyRingError, match="textclf auth init"):
        load_ring(tmp_path)
    init_ring(tmp_path)
    (tmp_path / "ring.json").write_text("{broken")
    with pytest.raises(KeyRingError, match="not a valid key ring"):
        load_ring(tmp_path)


def test_reloading_keeps_the_last_good_value(tmp_path: Path) -> None:
    path = tmp_path / "value.json"
    path.write_text('{"v": 1}')
    value = Reloading(path, lambda: json.loads(path.read_text()), interval_s=0)
    assert value.get() == {"v": 1}
    path.write_text('{"v": 22}')
    assert value.get() == {"v": 22}
    path.write_text("{half written")
    assert value.get() == {"v": 22}


def test_reloading_looks_at_the_file_at_most_once_per_interval(tmp_path: Path) -> None:
    path = tmp_path / "value.json"
    path.write_text('{"v": 1}')
    now = [100.0]
    value = Reloading(path, lambda: json.loads(path.read_text()), interval_s=1.0, clock=lambda: now[0])
    path.write_text('{"v": 22}')
    now[0] = 100.99
    assert value.get() == {"v": 1}  # inside the interval: the file is not even looked at
    now[0] = 101.0
    assert value.get() == {"v": 22}
    path.write_text('{"v": 333}')
    now[0] = 101.5
    assert value.get() == {"v": 22}  # the interval restarts at each look
    now[0] = 102.0
    assert value.get() == {"v": 333}


def test_cached_tokens_still_expire(tmp_path: Path) -> None:
    init_ring(tmp_path)
    clock = Clock()
    tokens = service(tmp_path, ttl_s=600, clock=clock)
    issued = tokens.issue("a", ["classify"])
    first = tokens.verify(issued.token)  # valid now, and cached
    clock.offset = 300
    assert tokens.verify(issued.token) is first  # half-way through its life: served from the cache
    clock.offset = 601
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(issued.token)


def test_a_token_from_the_services_future_is_not_valid_yet(tmp_path: Path) -> None:
    init_ring(tmp_path)
    issued = service(tmp_path).issue("a", ["classify"])
    with pytest.raises(InvalidToken, match="not valid yet"):
        service(tmp_path, clock=Clock(offset=-120)).verify(issued.token)  # its clock is 2 min behind


def test_credentials_store_only_argon2_hashes(tmp_path: Path) -> None:
    folder = make_auth_folder(tmp_path).path
    text = (folder / "credentials.json").read_text()
    assert SECRETS["svc"] not in text and "$argon2id$" in text
    assert stat.S_IMODE((folder / "credentials.json").stat().st_mode) == 0o600
    creds = load_credentials(folder)
    assert creds.authenticate("client", "svc", SECRETS["svc"]).scopes == {
        "classify",
        "model:read",
        "feedback",
    }
    assert creds.authenticate("client", "svc", "wrong") is None
    assert creds.authenticate("client", "ghost", SECRETS["svc"]) is None
    assert creds.authenticate("user", "svc", SECRETS["svc"]) is None  # clients are not users


@pytest.mark.parametrize(
    ("name", "scopes", "secret", "message"),
    [
        ("a b", ["classify"], None, "without spaces"),
        ("a", ["root"], None, "scopes must be"),
        ("a", [], None, "scopes must be"),
        ("a", ["classify"], "short", "at least 12"),
    ],
)
def test_bad_principals_are_refused(
    tmp_path: Path, name: str, scopes: list, secret: str | None, message: str
) -> None:
    with pytest.raises(CredentialsError, match=message):
        add_principal(tmp_path, "client", name, scopes, secret)


def test_generated_client_secret_is_returned_once(tmp_path: Path) -> None:
    secret = add_principal(tmp_path, "client", "gen", ["classify"])
    assert len(secret) >= 32 and load_credentials(tmp_path).authenticate("client", "gen", secret)


def test_scopes_per_route() -> None:
    assert required_scope("/classify") == "classify"
    assert required_scope("/feedback") == "feedback"
    assert required_scope("/model") == "model:read"
    assert required_scope("/admin/status") == "admin"
    for open_path in (
        "/metrics",
        "/readyz",
        "/livez",
        "/schema.json",
        "/docs",
        "/.well-known/jwks.json",
        "/token",
    ):
        assert required_scope(open_path) is None
    assert required_scope("/anything-else") == ANY_SCOPE


def test_form_and_basic_parsing() -> None:
    assert parse_form(b"grant_type=password&username=a%20b") == {"grant_type": "password", "username": "a b"}
    assert parse_form(b"a=1&a=2") is None  # repeated
    assert parse_form(b"\xff") is None
    assert parse_form(b"") == {}
    assert parse_basic("Basic c3ZjOnMlM0FjcmV0") == ("svc", "s:cret")
    assert parse_basic("Basic !!!") is None and parse_basic("Bearer x") is None


def test_rate_limiter_refills_and_says_how_long_to_wait() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2, burst=3, clock=lambda: now[0])
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)
    assert limiter.acquire("b") == 0.0  # per subject
    now[0] += 0.5
    assert limiter.acquire("a") == 0.0
    assert retry_after(0.01) == "1" and retry_after(2.2) == "3"
    assert RateLimiter(rate=0, burst=1).acquire("x") == 0.0  # 0 = no limit


def test_audit_lines_are_json_in_a_private_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    log = AuditLog(tmp_path, "audit-test", stdout=True, max_bytes=1000, backups=2)
    for i in range(30):
        log.record(event="request", request_id=str(i), status=200)
    log.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) == 3  # rotated: current + 2 backups
    line = json.loads(files[0].read_text().splitlines()[-1])
    assert line["event"] == "request" and line["time"].endswith("Z")
    assert '"request_id":"29"' in capsys.readouterr().out


def test_audit_times_are_utc_with_milliseconds_across_second_boundaries(tmp_path: Path) -> None:
    now = [1_800_000_000.998]
    log = AuditLog(tmp_path, "audit-clock", stdout=False, max_bytes=0, backups=0, clock=lambda: now[0])
    for step in (0.0, 0.001, 0.5, 60.0):
        now[0] += step
        log.record(event="request")
    log.close()
    times = [json.loads(line)["time"] for line in (tmp_path / "audit-clock.jsonl").read_text().splitlines()]
    assert times == [
        "2027-01-15T08:00:00.998Z",
        "2027-01-15T08:00:00.999Z",
        "2027-01-15T08:00:01.499Z",
        "2027-01-15T08:01:01.499Z",
    ]


# ------------------------------------------------------------------------- the middleware, in process


def _middleware(tmp_path: Path, **changes: object) -> tuple[AuthMiddleware, AuthConfig]:
    async def hello(request):
        return JSONResponse({"subject": request.scope.get("state", {}).get("subject")})

    inner = Starlette(routes=[Route("/classify", hello, methods=["POST"]), Route("/livez", hello)])
    settings = dict(
        enabled=True,
        auth_dir=make_auth_folder(tmp_path / "auth").path,
        algorithm="RS256",
        issuer="textclf",
        audience="textclf-api",
        token_ttl_s=60,
        rate_limit_rps=1,
        rate_limit_burst=2,
        audit=True,
        audit_dir=tmp_path / "audit",
        audit_stdout=False,
        audit_max_bytes=10**6,
        audit_backups=1,
    )
    config = AuthConfig(**{**settings, **changes})
    return AuthMiddleware(inner, config=config, workers=1), config


def test_middleware_rate_limits_per_subject(tmp_path: Path) -> None:
    async def scenario() -> list[httpx.Response]:
        app, config = _middleware(tmp_path)
        app.limiter.clock = lambda: 0.0  # time stands still: no refill between the requests, however slow
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        tokens = service(config.auth_dir)
        heavy = {"Authorization": f"Bearer {tokens.issue('heavy', ['classify']).token}"}
        light = {"Authorization": f"Bearer {tokens.issue('light', ['classify']).token}"}
        async with client:
            answers = [await client.post("/classify", headers=heavy) for _ in range(3)]
            answers.append(await client.post("/classify", headers=light))
            answers.append(await client.get("/livez"))  # open routes are not limited
        return answers

    answers = asyncio.run(scenario())
    assert [a.status_code for a in answers] == [200, 200, 429, 200, 200]
    assert answers[0].json() == {"subject": "heavy"}
    assert answers[2].headers["retry-after"] == "1"
    lines = [json.loads(x) for f in (tmp_path / "audit").iterdir() for x in f.read_text().splitlines()]
    assert [line["status"] for line in lines] == [200, 200, 429, 200, 200]
    assert lines[2]["detail"] == "rate limited" and lines[2]["subject"] == "heavy"
    ids = [a.headers["x-request-id"] for a in answers]  # made up per request: unique, in the audit too
    assert len(set(ids)) == len(ids) and all(len(i) >= 16 for i in ids)
    assert [line["request_id"] for line in lines] == ids


def test_check_refuses_a_ring_of_the_other_algorithm(tmp_path: Path) -> None:
    _, config = _middleware(tmp_path, algorithm="HS256")
    with pytest.raises(ValueError, match="TEXTCLF_TOKEN_ALG"):
        config.check()


def test_websockets_are_refused(tmp_path: Path) -> None:
    from starlette.testclient import TestClient
    from starlette.websockets import WebSocketDisconnect

    app, _ = _middleware(tmp_path)
    with pytest.raises(WebSocketDisconnect) as closed, TestClient(app).websocket_connect("/classify"):
        pass
    assert closed.value.code == 1008
