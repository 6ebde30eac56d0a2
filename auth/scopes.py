"""RBAC: which scope each route needs, and which routes stay open."""

from __future__ import annotations

SCOPES = ("classify", "feedback", "model:read", "admin")

JWKS_PATH = "/.well-known/jwks.json"
TOKEN_PATH = "/token"
# Probes, metrics, the API description the BentoML client reads, and the docs: no secrets, no raw text.
OPEN_PATHS = frozenset(
    {
        "/metrics",
        "/readyz",
        "/livez",
        "/healthz",
        "/schema.json",
        "/docs",
        "/docs.json",
        "/",
        JWKS_PATH,
        TOKEN_PATH,
    }
)
OPEN_PREFIXES = ("/static_content/",)
ROUTE_SCOPES = {"/classify": "classify", "/feedback": "feedback", "/model": "model:read"}
ADMIN_PREFIX = "/admin/"
ANY_SCOPE = ""  # any valid token (routes we do not serve answer 404 only to authenticated callers)


def required_scope(path: str) -> str | None:
    """The scope a request to `path` needs; None for open routes."""
    if scope := ROUTE_SCOPES.get(path):
        return scope
    if path in OPEN_PATHS or path.startswith(OPEN_PREFIXES):
        return None
    if path.startswith(ADMIN_PREFIX):
        return "admin"
    return ANY_SCOPE
