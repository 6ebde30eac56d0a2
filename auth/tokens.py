"""JWT access tokens (RFC 9068 profile): issue with the active key, verify strictly.

Verification pins the algorithm (the server's one configured algorithm, which must also be the key's),
takes the key by `kid` from the ring (unknown or retired kid → refused), requires `typ: at+jwt` and
every claim (iss, aud, sub, exp, iat, nbf, jti, scope). A verified token is cached until it expires,
so a client reusing its token pays one dictionary lookup per request, not an RSA verification; the
cache re-checks expiry and that the signing key is still in the ring on every hit. Every time check
reads the service's `clock` (the wall clock unless a test injects another).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import jwt

from auth.keys import KeyRing

TOKEN_TYPE = "at+jwt"
REQUIRED_CLAIMS = ("iss", "aud", "sub", "exp", "iat", "nbf", "jti", "scope")
CACHE_SIZE = 10_000


class InvalidToken(Exception):
    """The bearer token is missing, malformed, badly signed, expired or not meant for us."""


@dataclass(frozen=True)
class Claims:
    sub: str
    scopes: frozenset[str]
    jti: str
    exp: float
    nbf: float
    kid: str


@dataclass(frozen=True)
class IssuedToken:
    token: str
    expires_in: int
    scopes: tuple[str, ...]
    jti: str
    kid: str


class TokenService:
    """Issues and verifies access tokens against a (reloading) key ring."""

    def __init__(
        self,
        ring: Callable[[], KeyRing],
        *,
        issuer: str,
        audience: str,
        algorithm: str,
        ttl_s: int,
        clock: Callable[[], float] = time.time,
    ):
        self.ring = ring
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self.ttl_s = ttl_s
        self.clock = clock
        self._cache: dict[str, Claims] = {}

    def issue(self, sub: str, scopes: Iterable[str], ttl_s: int | None = None) -> IssuedToken:
        key = self.ring().active
        if key.alg != self.algorithm:
            raise InvalidToken(
                f"the active key {key.kid} is {key.alg}, the server is set to {self.algorithm}"
            )
        now = int(self.clock())
        ttl = ttl_s or self.ttl_s
        granted = tuple(sorted(set(scopes)))
        jti = uuid.uuid4().hex
        payload = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": sub,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
            "jti": jti,
            "scope": " ".join(granted),
        }
        token = jwt.encode(
            payload, key.signing_key, algorithm=key.alg, headers={"kid": key.kid, "typ": TOKEN_TYPE}
        )
        return IssuedToken(token=token, expires_in=ttl, scopes=granted, jti=jti, kid=key.kid)

    def verify(self, token: str) -> Claims:
        now = self.clock()
        ring = self.ring()
        cached = self._cache.get(token)
        if cached is not None:
            if cached.exp > now and cached.kid in ring.keys:
                return cached
            del self._cache[token]
        claims = self._verify(token, ring, now)
        if len(self._cache) >= CACHE_SIZE:
            self._cache.clear()
        self._cache[token] = claims
        return claims

    def _verify(self, token: str, ring: KeyRing, now: float) -> Claims:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("malformed token") from None
        if header.get("typ") != TOKEN_TYPE:
            raise InvalidToken(f"token type must be {TOKEN_TYPE}")
        if header.get("alg") != self.algorithm:
            raise InvalidToken(f"token algorithm must be {self.algorithm}")
        key = ring.keys.get(str(header.get("kid")))
        if key is None:
            raise InvalidToken("unknown or retired signing key")
        if key.alg != self.algorithm:
            raise InvalidToken("signing key does not match the token algorithm")
        try:
            payload = jwt.decode(
                token,
                key.verifying_key,
                algorithms=[self.algorithm],
                audience=self.audience,
                issuer=self.issuer,
                # the times are checked below, once, against this service's clock
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"token lacks the {exc.claim!r} claim") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("token is from another issuer") from None
        except jwt.PyJWTError:
            raise InvalidToken("invalid token signature or claims") from None
        try:
            exp, iat, nbf = (float(payload[claim]) for claim in ("exp", "iat", "nbf"))
        except (TypeError, ValueError):
            raise InvalidToken("exp, iat and nbf must be numbers") from None
        if exp <= now:
            raise InvalidToken("token expired")
        if iat > now or nbf > now:
            raise InvalidToken("token not valid yet")
        scope, sub, jti = payload["scope"], payload["sub"], payload["jti"]
        if not all(isinstance(v, str) and v for v in (sub, jti)) or not isinstance(scope, str):
            raise InvalidToken("sub, jti and scope must be strings")
        return Claims(
            sub=sub,
            scopes=frozenset(scope.split()),
            jti=jti,
            exp=exp,
            nbf=float(payload["nbf"]),
            kid=key.kid,
        )
