"""Who may call the retraining webhook: a shared secret (compared in constant time), or an access token
with the `admin` scope signed by this deployment's key ring. Alertmanager sends either as a bearer
credential (`http_config.authorization.credentials_file` in alertmanager.yml)."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path

from auth.keys import KeyRingError, load_ring
from auth.tokens import InvalidToken, TokenService
from textclf.core.settings import Settings

ADMIN_SCOPE = "admin"


class WebhookAuthError(ValueError):
    """Nothing to check a credential against: no secret and no key ring."""


def _secret(settings: Settings) -> bytes | None:
    if settings.webhook_secret is not None and settings.webhook_secret_file is not None:
        raise WebhookAuthError("set only one of TEXTCLF_WEBHOOK_SECRET and TEXTCLF_WEBHOOK_SECRET_FILE")
    if settings.webhook_secret is not None:
        value = settings.webhook_secret.get_secret_value()
    elif settings.webhook_secret_file is not None:
        try:
            value = Path(settings.webhook_secret_file).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise WebhookAuthError(f"TEXTCLF_WEBHOOK_SECRET_FILE: cannot read it ({exc.strerror})") from None
    else:
        return None
    value = value.strip()
    if len(value) < 16:
        raise WebhookAuthError("the webhook secret must be at least 16 characters")
    return value.encode()


def webhook_verifier(settings: Settings) -> Callable[[str], bool]:
    """A check of one bearer credential; WebhookAuthError when nothing could ever pass it."""
    secret = _secret(settings)
    tokens: TokenService | None = None
    try:
        ring = load_ring(settings.path("auth_dir"))
    except KeyRingError:
        ring = None
    if ring is not None:
        tokens = TokenService(
            lambda: load_ring(settings.path("auth_dir")),  # follows key rotation
            issuer=settings.token_issuer,
            audience=settings.token_audience,
            algorithm=ring.active.alg,
            ttl_s=settings.token_ttl_s,
        )
    if secret is None and tokens is None:
        raise WebhookAuthError(
            "no way to authenticate Alertmanager: set TEXTCLF_WEBHOOK_SECRET (or _FILE), or create the key "
            "ring (`textclf auth init`) and give Alertmanager a token with the admin scope"
        )

    def verify(credential: str) -> bool:
        if secret is not None and hmac.compare_digest(credential.encode(), secret):
            return True
        if tokens is not None:
            try:
                return ADMIN_SCOPE in tokens.verify(credential).scopes
            except InvalidToken:
                return False
        return False

    return verify
