"""Test helpers for the security layer: a ready auth folder, tokens minted or forged at will."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt

from auth.credentials import add_principal
from auth.keys import init_ring, load_ring
from auth.tokens import TokenService

ISSUER, AUDIENCE = "textclf", "textclf-api"
ALL_SCOPES = "classify feedback model:read admin"
SECRETS = {
    "svc": "svc-secret-0123456789",
    "reader": "reader-secret-0123456789",
    "ops": "ops-secret-0123456789",
}
PASSWORDS = {"alice": "alice-password-0123"}


@dataclass(frozen=True)
class AuthFolder:
    path: Path

    def mint(self, sub: str = "tester", scopes: str = ALL_SCOPES, ttl_s: int = 600) -> str:
        """A valid token from the ring's current active key, as `textclf token` makes them."""
        ring = load_ring(self.path)
        service = TokenService(
            lambda: ring, issuer=ISSUER, audience=AUDIENCE, algorithm=ring.active.alg, ttl_s=ttl_s
        )
        return service.issue(sub, scopes.split()).token

    def headers(self, sub: str = "tester", scopes: str = ALL_SCOPES) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(sub, scopes)}"}

    def claims(self, **changes: Any) -> dict[str, Any]:
        """Good claims, with `changes` applied (a value of None removes the claim)."""
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "forger",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": "j-" + str(now),
            "scope": "classify",
        }
        claims.update(changes)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: dict[str, Any], **header: Any) -> str:
        """Sign with the real active key (headers overridable): only the claims are wrong."""
        key = load_ring(self.path).active
        headers = {"kid": key.kid, "typ": "at+jwt", **header}
        return jwt.encode(claims, key.signing_key, algorithm=key.alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A token assembled by hand, as an attacker would (any alg, any signature)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64(signature)}"


def hs256_with(secret: bytes, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """HS256 over the token with `secret` (e.g. the server's *public* key: key confusion)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


def make_auth_folder(path: Path, alg: str = "RS256") -> AuthFolder:
    """A key ring plus clients svc (classify, model:read), reader (model:read), ops (every scope),
    and the user alice (classify)."""
    init_ring(path, alg)
    add_principal(path, "client", "svc", ["classify", "model:read", "feedback"], SECRETS["svc"])
    add_principal(path, "client", "reader", ["model:read"], SECRETS["reader"])
    add_principal(path, "client", "ops", ALL_SCOPES.split(), SECRETS["ops"])
    add_principal(path, "user", "alice", ["classify"], PASSWORDS["alice"])
    return AuthFolder(path)
