"""The real Bento under `bentoml serve` over TLS, started with the flags `textclf serve` passes:
verified HTTPS works, and untrusting, old-protocol, weak-cipher and plain-HTTP clients are refused."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from auth.tls import https_env, make_self_signed
from bench.processes import free_port, running
from tests.auth_helpers import SECRETS, make_auth_folder
from tests.helpers import bin_path, server_home
from textclf.cli import serve_argv

pytestmark = pytest.mark.integration

TIMEOUT_S = 10


@dataclass(frozen=True)
class TLSServer:
    url: str
    port: int
    cafile: Path
    log: Path

    def trusting(self) -> ssl.SSLContext:
        """A client context that trusts only the server's self-signed certificate."""
        return ssl.create_default_context(cafile=self.cafile)


@pytest.fixture(scope="module")
def tls_server(built_bento: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[TLSServer]:
    root = tmp_path_factory.mktemp("tls")
    pair = make_self_signed(root / "certs")
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    argv = serve_argv(bin_path("bentoml"), built_bento["bento"], "127.0.0.1", port, pair.cert, pair.key)
    make_auth_folder(root / "auth")
    env = {
        "TEXTCLF_MODEL": built_bento["model"],
        "TEXTCLF_AUTH_DIR": str(root / "auth"),
        "TEXTCLF_AUDIT_DIR": str(root / "audit"),
        "TEXTCLF_AUDIT_STDOUT": "false",
        **https_env(os.environ),  # as `textclf serve` sets it
    }
    ready = ssl.create_default_context(cafile=pair.cert)
    log = root / "serve.log"
    env = server_home(root, env)
    with running(argv, f"{url}/readyz", log, env=env, cwd=root, timeout_s=120, verify=ready):
        yield TLSServer(url, port, pair.cert, log)


def _connect(server: TLSServer, context: ssl.SSLContext, hostname: str | None = "127.0.0.1") -> tuple:
    """One TLS handshake on a raw socket: (version, cipher name) or the ssl error it raised."""
    with (
        socket.create_connection(("127.0.0.1", server.port), timeout=TIMEOUT_S) as sock,
        context.wrap_socket(sock, server_hostname=hostname) as tls,
    ):
        return tls.version(), tls.cipher()[0]


def _unverified(maximum: ssl.TLSVersion, ciphers: str | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    ctx.maximum_version = maximum
    if ciphers:
        ctx.set_ciphers(ciphers)
    return ctx


def test_readyz_over_verified_https(tls_server: TLSServer) -> None:
    response = httpx.get(f"{tls_server.url}/readyz", verify=tls_server.trusting(), timeout=TIMEOUT_S)
    assert response.status_code == 200


def test_bentoml_announces_https(tls_server: TLSServer) -> None:
    assert f"listening on {tls_server.url}" in tls_server.log.read_text(encoding="utf-8", errors="replace")


def test_token_then_classify_over_verified_https(tls_server: TLSServer) -> None:
    with httpx.Client(base_url=tls_server.url, verify=tls_server.trusting(), timeout=TIMEOUT_S) as client:
        grant = client.post("/token", data={"grant_type": "client_credentials"}, auth=("svc", SECRETS["svc"]))
        assert grant.status_code == 200, grant.text
        token = grant.json()["access_token"]
        response = client.post(
            "/classify", json={"texts": ["where is my card"]}, headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200, response.text
    [prediction] = response.json()
    assert prediction["label"] == "card_arrival" and 0 < prediction["score"] <= 1


def test_certificate_verifies_for_the_dns_name_too(tls_server: TLSServer) -> None:
    assert _connect(tls_server, tls_server.trusting(), hostname="localhost")[0] == "TLSv1.3"


def test_client_that_does_not_trust_the_certificate_fails(tls_server: TLSServer) -> None:
    with pytest.raises(ssl.SSLCertVerificationError):
        _connect(tls_server, ssl.create_default_context())  # the system CAs only
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_server.url}/readyz", timeout=TIMEOUT_S)


def test_tls_1_1_and_older_are_refused(tls_server: TLSServer) -> None:
    old = _unverified(ssl.TLSVersion.TLSv1_1)
    try:
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.set_ciphers("ALL:@SECLEVEL=0")  # OpenSSL 3 offers TLS 1.0/1.1 only at security level 0
    except (ValueError, ssl.SSLError) as exc:
        pytest.skip(f"this OpenSSL cannot make a TLS 1.1 client: {exc}")
    with pytest.raises(ssl.SSLError) as refused:
        _connect(tls_server, old)
    # uvicorn hangs up without an alert; NO_PROTOCOLS_AVAILABLE would mean the client never offered 1.1
    assert refused.value.reason in {"TLSV1_ALERT_PROTOCOL_VERSION", "UNEXPECTED_EOF_WHILE_READING"}, refused
    old.maximum_version = ssl.TLSVersion.TLSv1_2  # control: the same client, allowed TLS 1.2, gets in
    assert _connect(tls_server, old)[0] == "TLSv1.2"


def test_tls_1_2_accepts_only_forward_secret_aead_ciphers(tls_server: TLSServer) -> None:
    """Try every TLS 1.2 suite this OpenSSL knows, one per handshake: only ECDHE + GCM/ChaCha20 pass."""
    offered = [c["name"] for c in _unverified(ssl.TLSVersion.TLSv1_2, "ALL:@SECLEVEL=0").get_ciphers()]
    accepted = []
    for name in offered:
        try:
            version, cipher = _connect(tls_server, _unverified(ssl.TLSVersion.TLSv1_2, f"{name}:@SECLEVEL=0"))
        except (ssl.SSLError, ConnectionError):
            continue
        assert (version, cipher) == ("TLSv1.2", name)
        accepted.append(name)
    assert "ECDHE-ECDSA-AES128-GCM-SHA256" in accepted
    assert all(n.startswith("ECDHE-") and ("GCM" in n or "CHACHA20" in n) for n in accepted), accepted
    assert "ECDHE-ECDSA-AES128-SHA" in offered and "ECDHE-ECDSA-AES128-SHA" not in accepted


def test_default_client_negotiates_tls_1_3(tls_server: TLSServer) -> None:
    version, cipher = _connect(tls_server, tls_server.trusting())
    assert version == "TLSv1.3" and cipher.startswith("TLS_")


def test_plain_http_to_the_tls_port_gets_no_answer(tls_server: TLSServer) -> None:
    plain = f"http://127.0.0.1:{tls_server.port}/readyz"
    try:
        response = httpx.get(plain, timeout=TIMEOUT_S)
    except httpx.HTTPError:
        return
    assert response.status_code != 200
