"""AES-256-GCM encryption at rest: the data key, sealed blobs and append-only sealed JSON-lines logs.

The key comes from the environment (TEXTCLF_DATA_KEY), a mounted file (TEXTCLF_DATA_KEY_FILE) or the
default key file HOME/data.key that `make run` creates, never from the repository. Every message gets a
fresh random nonce; the GCM tag authenticates the ciphertext and the caller's associated data (e.g. a file
name), so a tampered, swapped or wrongly-keyed blob is refused, never silently decrypted to garbage.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from textclf.core.settings import SettingsError, load_settings

DATA_KEY_ENV = "TEXTCLF_DATA_KEY"
DATA_KEY_FILE_ENV = "TEXTCLF_DATA_KEY_FILE"
log = logging.getLogger(__name__)
KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # the GCM standard nonce; random per message (2^32 messages per key stay safe)
TAG_BYTES = 16
TORN_MARK = b"~torn"  # a SealedLog line that says the line before it was cut short (never base64)
MAGIC = b"TCLF1"  # format and version of a sealed blob: MAGIC | nonce | ciphertext+tag


class DataKeyError(ValueError):
    """The data key is missing where it is needed, or its configuration is unusable."""


class SealedDataError(ValueError):
    """Sealed data could not be opened: wrong key, tampered, truncated or not sealed at all."""


def new_data_key() -> str:
    """A fresh random key, as the urlsafe base64 text TEXTCLF_DATA_KEY expects."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def decode_data_key(text: str, source: str = DATA_KEY_ENV) -> bytes:
    """The 32 key bytes of urlsafe base64 `text` (padding optional); `source` names it in errors."""
    text = text.strip()
    try:
        key = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError):
        raise DataKeyError(f"{source} is not the urlsafe base64 text of a {KEY_BYTES}-byte key") from None
    if len(key) != KEY_BYTES:
        raise DataKeyError(f"{source} must decode to {KEY_BYTES} bytes (AES-256), got {len(key)}")
    return key


def load_data_key(environ: Mapping[str, str] | None = None) -> bytes | None:
    """The data key from TEXTCLF_DATA_KEY, or the file TEXTCLF_DATA_KEY_FILE names, or the default key
    file HOME/data.key (`make run` makes it) when that exists; None when there is none. Both variables
    set is an error: two sources of one secret invite serving with the wrong one."""
    try:
        settings = load_settings(environ)
    except SettingsError as exc:
        raise DataKeyError(str(exc)) from None
    if settings.data_key is not None and settings.data_key_file is not None:
        raise DataKeyError(f"set only one of {DATA_KEY_ENV} and {DATA_KEY_FILE_ENV}, not both")
    if settings.data_key is not None:
        return decode_data_key(settings.data_key.get_secret_value(), DATA_KEY_ENV)
    key_file = settings.data_key_path
    if key_file is None:
        return None
    source = (
        f"{DATA_KEY_FILE_ENV}={key_file}" if settings.data_key_file else f"the default key file {key_file}"
    )
    try:
        text = key_file.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise DataKeyError(f"{source}: cannot read the key file ({reason})") from None
    return decode_data_key(text, f"the key file {source}")


def key_fingerprint(key: bytes) -> str:
    """A short id of a key (first 8 hex of its SHA-256) for logs and errors; reveals nothing usable."""
    return hashlib.sha256(key).hexdigest()[:8]


class Sealer:
    """Seals and opens byte strings with one AES-256-GCM key (MAGIC | 12-byte nonce | ciphertext+tag)."""

    __slots__ = ("_aead", "_key_id")

    def __init__(self, key: bytes):
        if len(key) != KEY_BYTES:
            raise DataKeyError(f"the data key must be {KEY_BYTES} bytes (AES-256), got {len(key)}")
        self._aead = AESGCM(key)
        self._key_id = key_fingerprint(key)

    @property
    def key_id(self) -> str:
        """The key's fingerprint, to say which key was used without revealing it."""
        return self._key_id

    def __repr__(self) -> str:
        return f"Sealer(key_id={self._key_id!r})"

    def seal(self, plaintext: bytes, aad: bytes = b"") -> bytes:
        """Encrypt and authenticate `plaintext` (and `aad`, which is bound but not stored)."""
        nonce = os.urandom(NONCE_BYTES)
        return MAGIC + nonce + self._aead.encrypt(nonce, plaintext, aad)

    def open(self, sealed: bytes, aad: bytes = b"") -> bytes:
        """The plaintext of `sealed`; SealedDataError unless it was sealed with this key and `aad`."""
        problem = ""
        if len(sealed) < len(MAGIC) + NONCE_BYTES + TAG_BYTES:
            problem = f" (truncated: {len(sealed)} bytes)"
        elif not sealed.startswith(MAGIC):
            problem = " (bad header: not textclf sealed data)"
        else:
            nonce = sealed[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
            try:
                return self._aead.decrypt(nonce, sealed[len(MAGIC) + NONCE_BYTES :], aad)
            except InvalidTag:
                pass
        raise SealedDataError(
            f"cannot open sealed data with data key {self._key_id}: wrong key or tampered data{problem}"
        )


class SealedLog:
    """An append-only JSON-lines file whose every line is one sealed record (urlsafe base64).

    Each append is one `write` on an O_APPEND descriptor, so lines from threads (serialised by a
    lock) and from other processes appending to the same file never interleave. The file is 0600.
    """

    def __init__(self, path: Path, sealer: Sealer, aad: bytes):
        self.path = Path(path)
        self.sealer = sealer
        self.aad = aad
        self._lock = threading.Lock()
        self._fd: int | None = None

    def _descriptor(self) -> int:
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            if os.fstat(fd).st_mode & 0o077:  # an older file, or one made by someone else's umask
                os.fchmod(fd, 0o600)
            self._repair_tail(fd)
            self._fd = fd
        return self._fd

    def _repair_tail(self, fd: int) -> None:
        """End a line a killed writer left unfinished, and mark it torn, so that the next record starts
        on a line of its own and readers skip the torn one (read_sealed_lines)."""
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            log.warning("%s: its last line was cut short (a writer was killed); marked torn", self.path)
            os.write(fd, b"\n" + TORN_MARK + b"\n")

    def append(self, record: Mapping[str, Any]) -> None:
        """Seal `record` (JSON) and append it as one line; it is on disk (unbuffered) on return."""
        body = json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        line = base64.urlsafe_b64encode(self.sealer.seal(body, self.aad)) + b"\n"
        with self._lock:
            fd = self._descriptor()
            written = os.write(fd, line)
            while written < len(line):  # a regular file takes it whole; be correct regardless
                written += os.write(fd, line[written:])

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> SealedLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_sealed_log(path: Path, sealer: Sealer, aad: bytes) -> Iterator[dict[str, Any]]:
    """Yield the records of a SealedLog in order; SealedDataError names the first bad line."""
    for _, record in read_sealed_lines(path, sealer, aad):
        yield record


def read_sealed_lines(
    path: Path, sealer: Sealer, aad: bytes, *, skip_torn: bool = False
) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) of a SealedLog in order; SealedDataError names the first bad line.

    With `skip_torn`, a line a writer did not finish is skipped with a warning instead: the last line
    when it has no newline (a write cut short, or one still in progress), or a line the log marked torn
    when it reopened the file. Any other bad line (wrong key, tampering) still stops the read."""
    with Path(path).open("rb") as handle:
        for number, raw, following in _with_next(handle):
            line = raw.strip()
            if not line or line == TORN_MARK:
                continue
            try:
                body = sealer.open(base64.urlsafe_b64decode(line), aad)
                record = json.loads(body)
            except (SealedDataError, binascii.Error, ValueError) as exc:
                if skip_torn and _torn(raw, following):
                    log.warning("%s:%d: skipped a torn record (a write that did not finish)", path, number)
                    continue
                if isinstance(exc, SealedDataError):
                    raise SealedDataError(f"{path}:{number}: {exc}") from None
                raise SealedDataError(f"{path}:{number}: not a sealed record ({exc})") from None
            if not isinstance(record, dict):
                raise SealedDataError(f"{path}:{number}: sealed record is not a JSON object")
            yield number, record


def _with_next(lines: Iterator[bytes]) -> Iterator[tuple[int, bytes, bytes | None]]:
    """(line number, line, the line after it or None at the end): one line of look-ahead, memory flat."""
    number, current = 0, next(lines, None)
    while current is not None:
        number += 1
        following = next(lines, None)
        yield number, current, following
        current = following


def _torn(raw: bytes, following: bytes | None) -> bool:
    """A line cut short: the file's last, without a newline, or one the log marked when it reopened."""
    if following is None:
        return not raw.endswith(b"\n")
    return following.strip() == TORN_MARK
