"""The OAuth2 token endpoint (RFC 6749): client-credentials and password grants → access tokens.

Pure request → response logic; the middleware does the HTTP plumbing. Errors use the RFC's codes:
400 invalid_request / unsupported_grant_type / invalid_scope / invalid_grant, 401 invalid_client.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from auth.credentials import Credentials, Principal
from auth.scopes import SCOPES
from auth.tokens import TokenService

MAX_FORM_BYTES = 8 * 1024
GRANTS = ("client_credentials", "password")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@dataclass
class TokenResponse:
    status: int
    body: dict
    headers: dict[str, str] = field(default_factory=dict)
    subject: str | None = None  # who asked (for the audit log), when known
    scopes: tuple[str, ...] = ()
    jti: str | None = None


def _error(
    status: int, code: str, description: str, subject: str | None = None, **headers: str
) -> TokenResponse:
    return TokenResponse(
        status, {"error": code, "error_description": description}, {**NO_STORE, **headers}, subject=subject
    )


def parse_form(body: bytes) -> dict[str, str] | None:
    """application/x-www-form-urlencoded → one value per name; None if malformed or repeated."""
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
    except (UnicodeDecodeError, ValueError):
        return None
    form = dict(pairs)
    return form if len(form) == len(pairs) else None


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """HTTP Basic client authentication (RFC 6749 §2.3.1: both parts form-urlencoded)."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    name, sep, secret = decoded.partition(":")
    return (unquote(name), unquote(secret)) if sep else None


def _granted_scopes(principal: Principal, requested: str | None) -> tuple[str, ...] | None:
    """Requested ∩ allowed must equal requested; no `scope` asks for everything allowed."""
    if requested is None or not requested.strip():
        return tuple(sorted(principal.scopes))
    wanted = set(requested.split())
    if not wanted <= set(SCOPES) or not wanted <= principal.scopes:
        return None
    return tuple(sorted(wanted))


async def token_response(
    form: dict[str, str] | None, basic_header: str | None, credentials: Credentials, tokens: TokenService
) -> TokenResponse:
    """Authenticate the client or user of a token request and mint its token."""
    if form is None:
        return _error(
            400, "invalid_request", "body must be application/x-www-form-urlencoded, each field once"
        )
    grant = form.get("grant_type")
    if grant is None:
        return _error(400, "invalid_request", "grant_type is required")
    if grant not in GRANTS:
        return _error(400, "unsupported_grant_type", f"grant_type must be one of {', '.join(GRANTS)}")
    basic = parse_basic(basic_header)
    if basic_header and basic is None:
        return _error(400, "invalid_request", "malformed Basic authorization header")
    if basic and ("client_secret" in form):
        return _error(400, "invalid_request", "authenticate the client one way only")
    if grant == "client_credentials":
        name, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        if not name or not secret:
            return _error(401, "invalid_client", "client authentication required", None, **_basic_challenge())
        principal = await asyncio.to_thread(credentials.authenticate, "client", name, secret)
        if principal is None:
            return _error(401, "invalid_client", "unknown client or wrong secret", name, **_basic_challenge())
    else:
        name, password = form.get("username", ""), form.get("password", "")
        if not name or not password:
            return _error(400, "invalid_request", "username and password are required")
        principal = await asyncio.to_thread(credentials.authenticate, "user", name, password)
        if principal is None:
            return _error(400, "invalid_grant", "unknown user or wrong password", name)
    granted = _granted_scopes(principal, form.get("scope"))
    if granted is None:
        return _error(
            400,
            "invalid_scope",
            f"{principal.kind} {name} may ask only for: {' '.join(sorted(principal.scopes))}",
            name,
        )
    issued = tokens.issue(principal.name, granted)
    body = {
        "access_token": issued.token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": " ".join(issued.scopes),
    }
    return TokenResponse(
        200, body, dict(NO_STORE), subject=principal.name, scopes=issued.scopes, jti=issued.jti
    )


def _basic_challenge() -> dict[str, str]:
    return {"WWW-Authenticate": 'Basic realm="textclf"'}


TOKEN_OPENAPI = {
    "summary": "OAuth2 token endpoint (client_credentials and password grants)",
    "description": "Client authentication by HTTP Basic (preferred) or client_id/client_secret fields. "
    "Answers RFC 6749 errors: 400 invalid_request/unsupported_grant_type/invalid_scope/invalid_grant, "
    "401 invalid_client.",
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["grant_type"],
                    "properties": {
                        "grant_type": {"type": "string", "enum": list(GRANTS)},
                        "scope": {
                            "type": "string",
                            "description": f"space-separated, some of: {' '.join(SCOPES)}",
                        },
                        "client_id": {"type": "string"},
                        "client_secret": {"type": "string"},
                        "username": {"type": "string"},
                        "password": {"type": "string"},
                    },
                }
            }
        },
    },
    "responses": {
        "200": {
            "description": "An access token (a JWT, `typ: at+jwt`).",
            "content": {
                "application/json": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "access_token": {"type": "string"},
                            "token_type": {"type": "string"},
                            "expires_in": {"type": "integer"},
                            "scope": {"type": "string"},
                        },
                    }
                }
            },
        }
    },
}
