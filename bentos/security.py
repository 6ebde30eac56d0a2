"""Wires the auth layer to the server settings, and what the admin status route may show."""

from __future__ import annotations

from typing import Any

from auth.keys import load_ring
from auth.middleware import AuthConfig
from textclf.core.settings import Settings


def auth_config(settings: Settings) -> AuthConfig:
    return AuthConfig(
        enabled=settings.auth,
        auth_dir=settings.path("auth_dir"),
        algorithm=settings.token_alg,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        token_ttl_s=settings.token_ttl_s,
        rate_limit_rps=settings.rate_limit_rps,
        rate_limit_burst=settings.rate_limit_burst,
        audit=settings.audit,
        audit_dir=settings.path("audit_dir"),
        audit_stdout=settings.audit_stdout,
        audit_max_bytes=settings.audit_max_bytes,
        audit_backups=settings.audit_backups,
    )


def admin_status(settings: Settings, auth: AuthConfig, model: dict[str, Any]) -> dict[str, Any]:
    """Non-secret state for operators: the model, the limits, and which key ids verify tokens."""
    keys: list[dict[str, Any]] = []
    if auth.enabled:
        ring = load_ring(auth.auth_dir)
        keys = [
            {"kid": k.kid, "alg": k.alg, "active": k.kid == ring.active.kid, "rotated_out": k.rotated_out}
            for k in ring.keys.values()
        ]
    return {
        "model": model,
        "workers": settings.server_workers,
        "limits": {
            "max_texts": settings.max_texts,
            "max_text_chars": settings.max_text_chars,
            "max_body_bytes": settings.max_body_bytes,
            "rate_limit_rps": settings.rate_limit_rps,
            "rate_limit_burst": settings.rate_limit_burst,
        },
        "auth": {
            "enabled": auth.enabled,
            "algorithm": auth.algorithm,
            "issuer": auth.issuer,
            "audience": auth.audience,
            "token_ttl_s": auth.token_ttl_s,
            "keys": keys,
        },
    }
