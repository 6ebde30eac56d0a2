"""The signing key ring: one active key signs new tokens; keys rotated out still verify until retired.

On disk (a folder the operator owns, never the repo):

    ring.json        {"active": KID, "keys": {KID: {"alg": ..., "created": ..., "rotated_out": ...}}}
    KID.pem          RS256 private key (PKCS#8), mode 0600
    KID.secret       HS256 secret (urlsafe base64 of 32 random bytes), mode 0600

Rotation makes a new active key and keeps the old one for verification, so tokens it signed stay
valid until they expire; retiring a key deletes it, and every token it signed is refused from then on.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

log = logging.getLogger(__name__)
RING_FILE = "ring.json"
ALGORITHMS = ("RS256", "HS256")
RSA_BITS = 2048


class KeyRingError(RuntimeError):
    """The key folder is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    created: float
    rotated_out: float | None
    material: Any  # an RSA private key object, or the HMAC secret bytes

    @property
    def signing_key(self) -> Any:
        return self.material

    @property
    def verifying_key(self) -> Any:
        return self.material.public_key() if self.alg == "RS256" else self.material

    def jwk(self) -> dict[str, Any] | None:
        """The public JWK (RS256 only: an HMAC secret is never published)."""
        if self.alg != "RS256":
            return None
        jwk = RSAAlgorithm.to_jwk(self.material.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig"}


@dataclass(frozen=True)
class KeyRing:
    active: SigningKey
    keys: dict[str, SigningKey]

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """Every key that may still verify a token, as a JSON Web Key Set."""
        return {"keys": [jwk for key in self.keys.values() if (jwk := key.jwk()) is not None]}


def write_private(path: Path, data: bytes) -> None:
    """Write a secret file atomically, readable by its owner only (whatever was there before)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def _new_key_material(folder: Path, kid: str, alg: str) -> None:
    if alg == "RS256":
        key = rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private(folder / f"{kid}.pem", pem)
    elif alg == "HS256":
        write_private(folder / f"{kid}.secret", base64.urlsafe_b64encode(secrets.token_bytes(32)))
    else:
        raise KeyRingError(f"unsupported algorithm {alg!r}; use one of {', '.join(ALGORITHMS)}")


def _read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / RING_FILE
    if not path.is_file():
        raise KeyRingError(f"no signing keys in {folder}: run `textclf auth init` first")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        manifest["active"], manifest["keys"]
    except (ValueError, KeyError, TypeError) as exc:
        raise KeyRingError(f"{path} is not a valid key ring: {exc}") from None
    return manifest


def _write_manifest(folder: Path, manifest: dict[str, Any]) -> None:
    write_private(folder / RING_FILE, json.dumps(manifest, indent=2).encode())


def _load_material(folder: Path, kid: str, alg: str) -> Any:
    try:
        if alg == "RS256":
            return serialization.load_pem_private_key((folder / f"{kid}.pem").read_bytes(), password=None)
        if alg == "HS256":
            return base64.urlsafe_b64decode((folder / f"{kid}.secret").read_bytes().strip())
    except (OSError, ValueError) as exc:
        raise KeyRingError(f"key {kid} in {folder} cannot be read: {exc}") from None
    raise KeyRingError(f"key {kid} in {folder} has unsupported algorithm {alg!r}")


def load_ring(folder: Path) -> KeyRing:
    """Read the ring; every listed key must be present and readable."""
    manifest = _read_manifest(folder)
    keys = {
        kid: SigningKey(
            kid,
            meta["alg"],
            meta["created"],
            meta.get("rotated_out"),
            _load_material(folder, kid, meta["alg"]),
        )
        for kid, meta in manifest["keys"].items()
    }
    if manifest["active"] not in keys:
        raise KeyRingError(f"active key {manifest['active']} is not in {folder / RING_FILE}")
    return KeyRing(active=keys[manifest["active"]], keys=keys)


def init_ring(folder: Path, alg: str = "RS256") -> bool:
    """Create the ring with one active key; False (and no change) when one exists already."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (folder / RING_FILE).exists():
        return False
    rotate(folder, alg)
    return True


def rotate(folder: Path, alg: str = "RS256") -> str:
    """Make a new active key; the previous one stays in the ring (verify only) until retired."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / RING_FILE
    manifest = _read_manifest(folder) if path.exists() else {"active": None, "keys": {}}
    kid = f"{time.strftime('%Y%m%d')}-{secrets.token_hex(4)}"
    _new_key_material(folder, kid, alg)
    now = time.time()
    if manifest["active"] in manifest["keys"]:
        manifest["keys"][manifest["active"]]["rotated_out"] = now
    manifest["keys"][kid] = {"alg": alg, "created": now, "rotated_out": None}
    manifest["active"] = kid
    _write_manifest(folder, manifest)
    return kid


def retire(folder: Path, kid: str) -> None:
    """Delete a rotated-out key: tokens it signed are refused from now on."""
    manifest = _read_manifest(folder)
    if kid == manifest["active"]:
        raise KeyRingError(f"{kid} is the active key: rotate first, then retire it")
    if kid not in manifest["keys"]:
        raise KeyRingError(f"no key {kid} in {folder}")
    alg = manifest["keys"].pop(kid)["alg"]
    _write_manifest(folder, manifest)
    (folder / f"{kid}.{'pem' if alg == 'RS256' else 'secret'}").unlink(missing_ok=True)


def retire_expired(folder: Path, max_token_ttl_s: float, clock: Callable[[], float] = time.time) -> list[str]:
    """Retire every key rotated out longer ago than a token lives: nothing valid depends on it.
    `clock` is the wall clock the ring's times are written in (tests pass one to move time)."""
    manifest = _read_manifest(folder)
    now = clock()
    old = [
        kid
        for kid, meta in manifest["keys"].items()
        if meta.get("rotated_out") is not None and now - meta["rotated_out"] > max_token_ttl_s
    ]
    for kid in old:
        retire(folder, kid)
    return old


T = TypeVar("T")


class Reloading(Generic[T]):
    """A value loaded from a file, reloaded when the file changes (checked at most once a second).

    Lets operators rotate keys or add clients while the server runs, without a restart. `clock` is
    injectable so tests can step past the interval instead of sleeping through it.
    """

    def __init__(
        self,
        path: Path,
        loader: Callable[[], T],
        interval_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.path = path
        self.loader = loader
        self.interval_s = interval_s
        self.clock = clock
        self._value = loader()
        self._stamp = self._stat()
        self._checked = clock()

    def _stat(self) -> tuple[int, int]:
        try:
            st = self.path.stat()
        except OSError:
            return (0, 0)
        return (st.st_mtime_ns, st.st_size)

    def get(self) -> T:
        now = self.clock()
        if now - self._checked >= self.interval_s:
            self._checked = now
            stamp = self._stat()
            if stamp != self._stamp:
                try:
                    self._value = self.loader()
                    self._stamp = stamp
                except Exception as exc:  # a half-edited or broken file: keep the last good value
                    log.warning("keeping the previous %s: %s", self.path.name, exc)
        return self._value


def reloading_ring(folder: Path) -> Reloading[KeyRing]:
    return Reloading(folder / RING_FILE, lambda: load_ring(folder))
