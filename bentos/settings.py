"""Server configuration: environment variables prefixed TEXTCLF_, read once, typed and checked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields

ENV_PREFIX = "TEXTCLF_"


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot use."""


@dataclass(frozen=True)
class ServerSettings:
    """Every knob of the server; each maps to TEXTCLF_<NAME> (e.g. TEXTCLF_MAX_BATCH_SIZE)."""

    model: str = "textclf-logreg:latest"  # BentoML model tag to serve
    max_batch_size: int = 64  # adaptive batching: most texts merged into one model call
    max_latency_ms: int = 1000  # adaptive batching: latency budget before 503 "overloaded"
    max_texts: int = 256  # texts per request
    max_text_chars: int = 2000  # characters per text
    max_body_bytes: int = 2 * 1024 * 1024  # request body size limit
    max_top_k: int = 20  # largest top_k a client may ask for
    ort_threads: int = 1  # ONNX Runtime intra-op threads per worker
    sub_batch: int = 8  # token models: texts per padded ONNX Runtime call within a batch
    workers: int = 1  # server worker processes
    timeout_s: int = 30  # request timeout

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and value < 1:
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()} must be ≥ 1, got {value}")
        if self.max_batch_size < 2:
            raise SettingsError(f"{ENV_PREFIX}MAX_BATCH_SIZE must be ≥ 2 (BentoML's minimum)")


def load_settings(environ: Mapping[str, str] | None = None) -> ServerSettings:
    """Build settings from TEXTCLF_* variables; unset ones keep their defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(ServerSettings):
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is None or raw == "":
            continue
        if f.type in (int, "int"):
            try:
                values[f.name] = int(raw)
            except ValueError:
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()} must be an integer, got {raw!r}") from None
        else:
            values[f.name] = raw
    return ServerSettings(**values)  # type: ignore[arg-type]


SETTINGS = load_settings()
"""The settings of this process, read once at import."""
