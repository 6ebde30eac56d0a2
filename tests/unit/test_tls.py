"""Local TLS: the self-signed pair `textclf tls-cert` makes, and the `bentoml serve` flags for HTTPS."""

from __future__ import annotations

import ipaddress
import json
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from typer.testing import CliRunner

from auth.tls import (
    MODERN_CIPHERS,
    SERVER_PROTOCOL,
    TLSError,
    https_env,
    make_self_signed,
    server_tls_args,
)
from textclf.cli import app, serve_argv

runner = CliRunner()


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, hostname: str | None) -> ssl.SSLObject:
    """A TLS handshake in memory (no sockets): raises the client's or the server's ssl error."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    c = client.wrap_bio(c_in, c_out, server_hostname=hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, obj, out, peer_in in (("c", c, c_out, s_in), ("s", s, s_out, c_in)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
            peer_in.write(out.read())
        if all(done.values()):
            return c
    raise AssertionError("handshake did not finish")


def _server_context(pair_dir: Path) -> ssl.SSLContext:
    """What uvicorn builds from the flags: SSLContext(--ssl-version) + chain + set_ciphers(--ssl-ciphers)."""
    ctx = ssl.SSLContext(SERVER_PROTOCOL)
    ctx.load_cert_chain(pair_dir / "cert.pem", pair_dir / "key.pem")
    ctx.set_ciphers(MODERN_CIPHERS)
    return ctx


def old_tls_client() -> ssl.SSLContext:
    """A client that offers TLS 1.0-1.1 only (OpenSSL 3 needs security level 0 to offer them at all)."""
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.set_ciphers("ALL:@SECLEVEL=0")
    old.minimum_version, old.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1
    return old


@pytest.fixture(scope="module")
def pair_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_self_signed(out, ["127.0.0.1", "localhost", "textclf.test"], days=7)
    return out


def test_certificate_names_every_host_and_is_a_leaf(pair_dir: Path) -> None:
    cert = x509.load_pem_x509_certificate((pair_dir / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["localhost", "textclf.test"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).days == 7
    assert cert.issuer == cert.subject
    key = serialization.load_pem_private_key((pair_dir / "key.pem").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
    assert key.public_key() == cert.public_key()


def test_key_is_owner_only_even_when_replacing_a_readable_file(tmp_path: Path) -> None:
    (tmp_path / "key.pem").write_text("old")
    (tmp_path / "key.pem").chmod(0o644)
    with pytest.raises(TLSError, match="already exist"):
        make_self_signed(tmp_path)
    pair = make_self_signed(tmp_path, overwrite=True)
    assert stat.S_IMODE(pair.key.stat().st_mode) == 0o600
    assert b"PRIVATE KEY" in pair.key.read_bytes()


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_python_trusts_the_self_signed_leaf_as_its_own_anchor(
    pair_dir: Path, hostname: str, strict: bool
) -> None:
    """CA:false is enough: OpenSSL takes a trusted self-signed leaf as anchor, also under
    VERIFY_X509_STRICT (Python 3.13's default), for the IP and the DNS name."""
    client = ssl.create_default_context(cafile=pair_dir / "cert.pem")
    if strict:
        client.verify_flags |= ssl.VERIFY_X509_STRICT
    assert _handshake(_server_context(pair_dir), client, hostname).version() == "TLSv1.3"


def test_other_names_and_untrusting_clients_fail_verification(pair_dir: Path) -> None:
    trusting = ssl.create_default_context(cafile=pair_dir / "cert.pem")
    with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
        _handshake(_server_context(pair_dir), trusting, "example.com")
    with pytest.raises(ssl.SSLCertVerificationError, match=r"self[- ]signed"):
        _handshake(_server_context(pair_dir), ssl.create_default_context(), "127.0.0.1")


def test_server_settings_refuse_old_protocols_and_weak_tls12_ciphers(pair_dir: Path) -> None:
    """Python ≥ 3.10 starts a server context at TLS 1.2; our cipher string keeps ECDHE + AEAD only."""
    server = _server_context(pair_dir)
    assert server.minimum_version >= ssl.TLSVersion.TLSv1_2
    tls12 = [c["name"] for c in server.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 and all(n.startswith("ECDHE-") and ("GCM" in n or "CHACHA20" in n) for n in tls12)

    old = old_tls_client()
    with pytest.raises(ssl.SSLError, match="UNSUPPORTED_PROTOCOL"):  # the server's refusal
        _handshake(server, old, None)
    permissive = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # control: this client can speak TLS 1.1
    permissive.load_cert_chain(pair_dir / "cert.pem", pair_dir / "key.pem")
    permissive.set_ciphers("ALL:@SECLEVEL=0")
    permissive.minimum_version = ssl.TLSVersion.TLSv1
    assert _handshake(permissive, old, None).version() == "TLSv1.1"

    cbc = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cbc.check_hostname, cbc.verify_mode = False, ssl.CERT_NONE
    cbc.maximum_version = ssl.TLSVersion.TLSv1_2
    cbc.set_ciphers("ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
    with pytest.raises(ssl.SSLError):
        _handshake(server, cbc, None)
    cbc.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert _handshake(server, cbc, None).cipher()[:2] == ("ECDHE-ECDSA-AES128-GCM-SHA256", "TLSv1.2")


def test_tls_args_neither_means_plain_http() -> None:
    assert server_tls_args(None, None) == []
    assert serve_argv("bentoml", "textclf:v1", "127.0.0.1", 3000) == [
        "bentoml",
        "serve",
        "textclf:v1",
        "--host",
        "127.0.0.1",
        "--port",
        "3000",
    ]


def test_tls_args_need_both_files(pair_dir: Path) -> None:
    with pytest.raises(TLSError, match="--ssl-certfile needs --ssl-keyfile"):
        server_tls_args(pair_dir / "cert.pem", None)
    with pytest.raises(TLSError, match="--ssl-keyfile needs --ssl-certfile"):
        server_tls_args(None, pair_dir / "key.pem")


def test_tls_args_name_a_missing_or_mismatched_file(pair_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(TLSError, match=r"--ssl-keyfile: .*nope\.pem not found"):
        server_tls_args(pair_dir / "cert.pem", tmp_path / "nope.pem")
    with pytest.raises(TLSError, match=r"--ssl-certfile: .*nope\.pem not found"):
        server_tls_args(tmp_path / "nope.pem", pair_dir / "key.pem")
    other = make_self_signed(tmp_path / "other")
    with pytest.raises(TLSError, match="cannot use"):
        server_tls_args(pair_dir / "cert.pem", other.key)


def test_serve_argv_with_tls(pair_dir: Path) -> None:
    argv = serve_argv("bentoml", "textclf:v1", "0.0.0.0", 8443, pair_dir / "cert.pem", pair_dir / "key.pem")
    assert argv[:7] == ["bentoml", "serve", "textclf:v1", "--host", "0.0.0.0", "--port", "8443"]
    flags = dict(zip(argv[7::2], argv[8::2], strict=True))
    assert flags == {
        "--ssl-certfile": str((pair_dir / "cert.pem").resolve()),
        "--ssl-keyfile": str((pair_dir / "key.pem").resolve()),
        "--ssl-version": str(int(ssl.PROTOCOL_TLS_SERVER)),
        "--ssl-ciphers": MODERN_CIPHERS,
    }


def test_https_env_turns_bentoml_ssl_on_and_keeps_other_overrides() -> None:
    assert json.loads(https_env({})["BENTOML_CONFIG_OVERRIDES"]) == {"services": {"ssl": {"enabled": True}}}
    mine = {"BENTOML_CONFIG_OVERRIDES": json.dumps({"services": {"textclf": {"workers": 2}}})}
    assert json.loads(https_env(mine)["BENTOML_CONFIG_OVERRIDES"]) == {
        "services": {"textclf": {"workers": 2}, "ssl": {"enabled": True}}
    }
    with pytest.raises(TLSError, match="not valid JSON"):
        https_env({"BENTOML_CONFIG_OVERRIDES": "{"})


def test_cli_serve_rejects_half_tls_before_building(pair_dir: Path) -> None:
    result = runner.invoke(app, ["serve", "--ssl-certfile", str(pair_dir / "cert.pem")])
    assert result.exit_code == 1 and "needs --ssl-keyfile" in result.output


def test_cli_tls_cert_writes_a_pair(tmp_path: Path) -> None:
    out = tmp_path / "certs"
    args = ["tls-cert", "--out", str(out), "--host", "10.0.0.5", "--host", "api.local", "--days", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cert = x509.load_pem_x509_certificate((out / "cert.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["api.local"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert stat.S_IMODE((out / "key.pem").stat().st_mode) == 0o600
    again = runner.invoke(app, ["tls-cert", "--out", str(out)])
    assert again.exit_code == 1 and "--force" in again.output
