"""OAuth2 clients (machines) and users (people) with argon2id-hashed secrets and their allowed scopes.

`credentials.json` in the auth folder, mode 0600:

    {"clients": {ID: {"secret_hash": "$argon2id$...", "scopes": [...]}},
     "users":   {NAME: {"password_hash": "$argon2id$...", "scopes": [...]}}}

Only hashes are stored; `textclf auth add-client` prints a generated secret once.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from auth.keys import Reloading, write_private
from auth.scopes import SCOPES

CREDENTIALS_FILE = "credentials.json"
_HASHER = PasswordHasher()  # argon2id, the library's (RFC 9106) defaults
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))  # equal work for unknown names


class CredentialsError(ValueError):
    """The credentials file or an operator's change to it is invalid."""


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str  # "client" or "user"
    scopes: frozenset[str]


@dataclass(frozen=True)
class Credentials:
    clients: dict[str, dict]
    users: dict[str, dict]

    def authenticate(self, kind: str, name: str, secret: str) -> Principal | None:
        """The principal if the secret matches; None otherwise (same work either way)."""
        table = self.clients if kind == "client" else self.users
        entry = table.get(name)
        stored = entry[f"{'secret' if kind == 'client' else 'password'}_hash"] if entry else _DUMMY_HASH
        try:
            _HASHER.verify(stored, secret)
        except (VerificationError, InvalidHashError):
            return None
        if entry is None:
            return None
        return Principal(name=name, kind=kind, scopes=frozenset(entry["scopes"]))


def check_scopes(scopes: list[str]) -> list[str]:
    unknown = sorted(set(scopes) - set(SCOPES))
    if unknown or not scopes:
        raise CredentialsError(
            f"scopes must be some of {', '.join(SCOPES)}; got {' '.join(scopes) or 'none'}"
        )
    return sorted(set(scopes))


def load_credentials(folder: Path) -> Credentials:
    path = folder / CREDENTIALS_FILE
    if not path.is_file():
        return Credentials(clients={}, users={})
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Credentials(clients=dict(data.get("clients", {})), users=dict(data.get("users", {})))
    except (ValueError, AttributeError) as exc:
        raise CredentialsError(f"{path} is not valid: {exc}") from None


def _save(folder: Path, credentials: Credentials) -> None:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    data = {"clients": credentials.clients, "users": credentials.users}
    write_private(folder / CREDENTIALS_FILE, json.dumps(data, indent=2, sort_keys=True).encode())


def add_principal(folder: Path, kind: str, name: str, scopes: list[str], secret: str | None = None) -> str:
    """Add or replace a client or user; returns the secret (generated for clients when not given)."""
    if not name or len(name) > 128 or not name.isprintable() or " " in name:
        raise CredentialsError("name must be 1-128 printable characters without spaces")
    if kind not in ("client", "user"):
        raise CredentialsError(f"kind must be client or user, got {kind!r}")
    if secret is None:
        if kind == "user":
            raise CredentialsError("a user needs a password")
        secret = secrets.token_urlsafe(32)
    if len(secret) < 12:
        raise CredentialsError("secrets and passwords must be at least 12 characters")
    credentials = load_credentials(folder)
    table = credentials.clients if kind == "client" else credentials.users
    field = "secret_hash" if kind == "client" else "password_hash"
    table[name] = {field: _HASHER.hash(secret), "scopes": check_scopes(scopes)}
    _save(folder, credentials)
    return secret


def remove_principal(folder: Path, kind: str, name: str) -> None:
    credentials = load_credentials(folder)
    table = credentials.clients if kind == "client" else credentials.users
    if table.pop(name, None) is None:
        raise CredentialsError(f"no {kind} named {name!r}")
    _save(folder, credentials)


def reloading_credentials(folder: Path) -> Reloading[Credentials]:
    return Reloading(folder / CREDENTIALS_FILE, lambda: load_credentials(folder))
