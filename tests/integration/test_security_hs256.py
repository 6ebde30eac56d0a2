"""A server set to HS256 with a tight rate limit: the other algorithm's tokens are refused, the
shared secret is never published, and a subject past its rate gets 429 with Retry-After."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.auth_helpers import AuthFolder, make_auth_folder
from tests.conftest import SERVER_LIMITS
from tests.helpers import bentoml_serve

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hs256_server(
    built_bento: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, AuthFolder]]:
    root = tmp_path_factory.mktemp("hs256")
    auth = make_auth_folder(root / "auth", alg="HS256")
    env = {
        "TEXTCLF_MODEL": built_bento["model"],
        "TEXTCLF_AUTH_DIR": str(auth.path),
        "TEXTCLF_TOKEN_ALG": "HS256",
        "TEXTCLF_AUDIT_DIR": str(root / "audit"),
        "TEXTCLF_AUDIT_STDOUT": "false",
        "TEXTCLF_WORKERS": "1",
        # A burst of 3, then one request per 1,000 s: requests 4-6 are refused however slowly they come.
        "TEXTCLF_RATE_LIMIT_RPS": "0.001",
        "TEXTCLF_RATE_LIMIT_BURST": "3",
        **SERVER_LIMITS,
    }
    with bentoml_serve(built_bento["bento"], env, cwd=root) as url:
        yield url, auth


def test_hs256_tokens_work_and_rs256_ones_do_not(
    hs256_server: tuple[str, AuthFolder], tmp_path: Path
) -> None:
    url, auth = hs256_server
    ok = httpx.get(f"{url}/model", headers=auth.headers(sub="hs-reader", scopes="model:read"), timeout=10)
    assert ok.status_code == 200
    other = make_auth_folder(tmp_path / "rs", alg="RS256")
    refused = httpx.get(
        f"{url}/model", headers=other.headers(sub="hs-reader", scopes="model:read"), timeout=10
    )
    assert refused.status_code == 401 and "algorithm" in refused.json()["error"]
    assert httpx.get(f"{url}/.well-known/jwks.json", timeout=10).json() == {"keys": []}


def test_a_subject_past_its_rate_gets_429_and_others_do_not(hs256_server: tuple[str, AuthFolder]) -> None:
    url, auth = hs256_server
    flood = auth.headers(sub="flooder", scopes="classify")
    answers = [
        httpx.post(f"{url}/classify", json={"texts": ["hi"]}, headers=flood, timeout=10) for _ in range(6)
    ]
    statuses = [a.status_code for a in answers]
    assert statuses == [200, 200, 200, 429, 429, 429], statuses
    assert all(900 <= int(a.headers["retry-after"]) <= 1000 for a in answers[3:])
    calm = httpx.post(
        f"{url}/classify",
        json={"texts": ["hi"]},
        headers=auth.headers(sub="calm", scopes="classify"),
        timeout=10,
    )
    assert calm.status_code == 200


def test_a_server_without_a_key_ring_does_not_start(built_bento: dict[str, str], tmp_path: Path) -> None:
    from tests.helpers import bentoml_serve_fails

    env = {
        "TEXTCLF_MODEL": built_bento["model"],
        "TEXTCLF_AUTH_DIR": str(tmp_path / "empty"),
        **SERVER_LIMITS,
    }
    returncode, log = bentoml_serve_fails(built_bento["bento"], env, cwd=tmp_path, timeout_s=60)
    assert returncode != 0 and "textclf auth init" in log
