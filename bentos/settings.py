"""Server configuration: environment variables prefixed TEXTCLF_, read once, typed and checked."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

ENV_PREFIX = "TEXTCLF_"
BATCHERS = ("textclf", "bentoml")
_ZERO_OK = {"lanes", "workers", "call_cost_tokens", "rate_limit_rps", "audit_backups"}
TOKEN_ALGORITHMS = ("RS256", "HS256")
_BOOLEANS = {
    "1": True,
    "true": True,
    "yes": True,
    "on": True,
    "0": False,
    "false": False,
    "no": False,
    "off": False,
}


class SettingsError(ValueError):
    """An environment variable holds a value the server cannot use."""


@dataclass(frozen=True)
class ServerSettings:
    """Every knob of the server; each maps to TEXTCLF_<NAME> (e.g. TEXTCLF_MAX_BATCH_SIZE)."""

    model: str = "textclf-logreg:latest"  # BentoML model tag to serve
    max_batch_size: int = 256  # adaptive batching: most texts a free model lane takes at once
    max_queued: int = 8192  # texts waiting for a lane before new requests get 503 "overloaded"
    lanes: int = 0  # model lanes (threads running ONNX Runtime) per worker; 0 = cores / workers
    batcher: str = "textclf"  # "textclf" (bentos/batcher.py) or "bentoml" (BentoML's batchable API)
    max_latency_ms: int = 20000  # "bentoml" batcher only: its latency budget before 503
    max_texts: int = 256  # texts per request
    max_text_chars: int = 2000  # characters per text
    max_body_bytes: int = 2 * 1024 * 1024  # request body size limit
    max_top_k: int = 20  # largest top_k a client may ask for
    ort_threads: int = 1  # ONNX Runtime intra-op threads per worker
    sub_batch: int = 64  # token models: most texts per padded ONNX Runtime call within a batch
    call_cost_tokens: int = 16  # token models: cost of one model call, in tokens; 0 = fixed chunks
    workers: int = 0  # server worker processes; 0 = one per core
    timeout_s: int = 30  # request timeout
    access_log: bool = False  # BentoML's per-request access log line
    tracing: bool = False  # OpenTelemetry spans for /classify (configure an exporter in BentoML)
    metrics: bool = True  # Prometheus metrics at /metrics
    auth: bool = True  # require OAuth2 bearer tokens (JWT) on the API; false only behind another gate
    auth_dir: str = "~/.textclf/auth"  # signing keys and hashed client/user secrets (`textclf auth init`)
    token_alg: str = "RS256"  # the one JWT algorithm accepted and used for new keys: RS256 or HS256
    token_issuer: str = "textclf"  # `iss` of issued tokens, required on verification
    token_audience: str = "textclf-api"  # `aud` of issued tokens, required on verification
    token_ttl_s: int = 900  # lifetime of issued access tokens
    rate_limit_rps: int = 200  # requests per second per token subject (whole server); 0 = no limit
    rate_limit_burst: int = 400  # requests a subject may send at once before the rate applies
    audit: bool = True  # the audit log (one JSON line per request)
    audit_dir: str = "~/.textclf/audit"  # the audit log's rotating JSON-lines files
    audit_stdout: bool = True  # also print every audit line to stdout
    audit_max_bytes: int = 10 * 1024 * 1024  # audit file size before it rotates
    audit_backups: int = 5  # rotated audit files kept
    feedback_dir: str = "~/.textclf/feedback"  # where POST /feedback appends its (encrypted) records

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, int) and not isinstance(value, bool) and value < (1 - (f.name in _ZERO_OK)):
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()} must be ≥ 1, got {value}")
        if self.token_alg not in TOKEN_ALGORITHMS:
            raise SettingsError(
                f"{ENV_PREFIX}TOKEN_ALG must be one of {', '.join(TOKEN_ALGORITHMS)}, got {self.token_alg!r}"
            )
        if self.batcher not in BATCHERS:
            raise SettingsError(
                f"{ENV_PREFIX}BATCHER must be one of {', '.join(BATCHERS)}, got {self.batcher!r}"
            )

    @property
    def server_workers(self) -> int:
        """Worker processes actually started: the setting, or one per core."""
        return self.workers or (os.cpu_count() or 1)

    @property
    def model_lanes(self) -> int:
        """Lanes actually used: the setting, or one per core this worker may use."""
        return self.lanes or max(1, (os.cpu_count() or 1) // self.server_workers)

    def path(self, name: str) -> Path:
        """A folder setting with `~` expanded."""
        return Path(getattr(self, name)).expanduser()


def load_settings(environ: Mapping[str, str] | None = None) -> ServerSettings:
    """Build settings from TEXTCLF_* variables; unset ones keep their defaults."""
    environ = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for f in fields(ServerSettings):
        raw = environ.get(ENV_PREFIX + f.name.upper())
        if raw is None or raw == "":
            continue
        if f.type in (bool, "bool"):
            if raw.lower() not in _BOOLEANS:
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()} must be true or false, got {raw!r}")
            values[f.name] = _BOOLEANS[raw.lower()]
        elif f.type in (int, "int"):
            try:
                values[f.name] = int(raw)
            except ValueError:
                raise SettingsError(f"{ENV_PREFIX}{f.name.upper()} must be an integer, got {raw!r}") from None
        else:
            values[f.name] = raw
    return ServerSettings(**values)  # type: ignore[arg-type]


SETTINGS = load_settings()
"""The settings of this process, read once at import."""
