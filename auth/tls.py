"""TLS for `textclf serve`: a self-signed certificate for local HTTPS, and the modern-only settings
the server is started with (TLS 1.2 minimum, forward-secret AEAD ciphers only)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from auth.keys import write_private

# TLS 1.2 suites: ECDHE key exchange (forward secrecy) with AEAD encryption only, so no CBC, no RSA key
# exchange, no SHA-1 MACs. TLS 1.3 suites are all AEAD and are not affected by this string.
MODERN_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
# One version-flexible server protocol: Python (≥ 3.10) sets its minimum to TLS 1.2 by itself, so
# TLS 1.0/1.1 are refused while TLS 1.3 stays on (the deprecated fixed-version protocols would pin 1.2).
SERVER_PROTOCOL = int(ssl.PROTOCOL_TLS_SERVER)
CERT_FILE = "cert.pem"
KEY_FILE = "key.pem"
DEFAULT_HOSTS = ("127.0.0.1", "localhost")


class TLSError(ValueError):
    """TLS options that cannot work (one file without the other, a missing file)."""


@dataclass(frozen=True)
class CertPair:
    cert: Path
    key: Path


def server_tls_args(certfile: Path | None, keyfile: Path | None) -> list[str]:
    """`bentoml serve` flags for HTTPS (none for plain HTTP). Both files or neither: a certificate
    without its key (or the reverse) is a mistake, never a reason to fall back to plain HTTP."""
    if certfile is None and keyfile is None:
        return []
    if certfile is None or keyfile is None:
        given, missing = ("--ssl-certfile", "--ssl-keyfile")
        if certfile is None:
            given, missing = missing, given
        raise TLSError(f"{given} needs {missing} too (pass both for HTTPS, neither for HTTP)")
    for flag, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if not path.is_file():
            raise TLSError(f"{flag}: {path} not found (a local pair: `textclf tls-cert --out certs`)")
    try:  # a clear error now rather than a traceback from every server worker
        ssl.SSLContext(SERVER_PROTOCOL).load_cert_chain(certfile, keyfile)
    except (ssl.SSLError, OSError) as exc:
        raise TLSError(f"cannot use {certfile} with {keyfile}: {exc}") from None
    # BentoML 1.4 keeps these flags hidden from `bentoml serve --help` but passes them on to uvicorn.
    return [
        "--ssl-certfile",
        str(certfile.resolve()),
        "--ssl-keyfile",
        str(keyfile.resolve()),
        "--ssl-version",
        str(SERVER_PROTOCOL),
        "--ssl-ciphers",
        MODERN_CIPHERS,
    ]


def https_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for an HTTPS `bentoml serve`: BentoML's `ssl.enabled` on (merged into any JSON
    overrides already set), so that its own log says https:// (the flags alone leave it saying http://)."""
    name = "BENTOML_CONFIG_OVERRIDES"
    try:
        overrides = json.loads(environ.get(name) or "{}")
    except json.JSONDecodeError as exc:
        raise TLSError(f"{name} is not valid JSON: {exc}") from None
    overrides.setdefault("services", {}).setdefault("ssl", {})["enabled"] = True
    return {name: json.dumps(overrides)}


def _san(hosts: Sequence[str]) -> list:
    from cryptography import x509

    names: list = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def make_self_signed(
    out: Path, hosts: Sequence[str] = DEFAULT_HOSTS, days: int = 30, *, overwrite: bool = False
) -> CertPair:
    """A P-256 key and a self-signed certificate for `hosts` (IPs and DNS names in subjectAltName),
    for local HTTPS only: clients trust it by loading cert.pem as their CA file.

    A leaf (CA:false, serverAuth): OpenSSL accepts a trusted self-signed leaf as its own anchor, also
    under VERIFY_X509_STRICT (Python ≥ 3.13's default; tested), and if its key leaks it cannot sign
    certificates for other names the way a trusted CA:true certificate could."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    if not hosts:
        raise TLSError("at least one --host is needed for the certificate's subjectAltName")
    if days < 1:
        raise TLSError(f"--days must be ≥ 1, got {days}")
    pair = CertPair(out / CERT_FILE, out / KEY_FILE)
    existing = [str(p) for p in (pair.cert, pair.key) if p.exists()]
    if existing and not overwrite:
        raise TLSError(f"{', '.join(existing)} already exist (pass --force to replace them)")

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"textclf local ({hosts[0]})")])
    now = dt.datetime.now(dt.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a little clock skew
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(_san(hosts)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    out.mkdir(parents=True, exist_ok=True)
    write_private(
        pair.key,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return pair
