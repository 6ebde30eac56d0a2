"""Runtime settings: every TEXTCLF_* environment variable, read here and nowhere else, typed and checked.

The pipeline's knobs live in params.yaml (training/params.py); everything a running process needs from
its environment (the server, the model store's data key, the CLI's defaults) is a field below. The
README's settings table is generated from these fields (`textclf readme`), so it cannot drift.
A plain pydantic model rather than pydantic-settings: the reader takes any mapping (tests and the
benchmark pass their own environments) and names the variable in every error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from textclf.core.cpus import available_cpus, worker_cpus

ENV_PREFIX = "TEXTCLF_"
DATA_KEY_FILE_NAME = "data.key"  # in `home`: the key `make run` creates, found with no variable set


class SettingsError(ValueError):
    """An environment variable holds a value the process cannot use."""


class Settings(BaseModel):
    """Every knob; each maps to TEXTCLF_<NAME> (e.g. TEXTCLF_MAX_BATCH_SIZE). Unset or empty = default."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    # -- serving
    model: str | None = Field(
        None,
        description="BentoML model tag the server loads; unset: the model its Bento was built with (from the "
        "source tree: the pipeline's champion)",
    )
    max_batch_size: int = Field(256, ge=1, description="most texts a free model lane takes at once")
    max_queued: int = Field(
        8192, ge=1, description="texts waiting for a lane; past it new requests get 503 with `Retry-After`"
    )
    gather_ms: float = Field(
        10.0,
        ge=0,
        description="a lane that finishes a batch with texts queued holds them this long at most for the "
        "requests it just answered to come back (closed-loop clients), then runs all as one batch; 0 = off",
    )
    lanes: int = Field(
        0, ge=0, description="model lanes (ONNX Runtime threads) per worker; 0 = usable CPUs / workers"
    )
    batcher: Literal["textclf", "bentoml"] = Field(
        "textclf", description="`textclf` (own adaptive batcher) or `bentoml` (BentoML's batchable API)"
    )
    classify_route: Literal["front", "bentoml"] = Field(
        "front",
        description="who answers `POST /classify`: `front` (the lean front door) or `bentoml` (BentoML's API "
        "route, the slower path it replaced)",
    )
    max_latency_ms: int = Field(20000, ge=1, description="`bentoml` batcher only: latency budget before 503")
    max_texts: int = Field(256, ge=1, description="texts per request")
    max_text_chars: int = Field(2000, ge=1, description="characters per text")
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=1, description="request body size limit")
    max_top_k: int = Field(20, ge=1, description="largest `top_k` a client may ask for")
    ort_threads: int = Field(1, ge=1, description="ONNX Runtime intra-op threads per lane")
    sub_batch: int = Field(64, ge=1, description="token models: most texts per padded ONNX Runtime call")
    call_cost_tokens: int = Field(
        8, ge=0, description="token models: cost of one model call in tokens (0 = fixed sub-batches)"
    )
    workers: int = Field(
        0,
        ge=0,
        description="server worker processes; 0 = one per CPU this process may use (affinity, cgroup quota)",
    )
    pin_workers: Literal["auto", "true", "false"] = Field(
        "auto",
        description="keep each worker's threads on its own share of the CPUs; `auto` = when there is one "
        "worker per CPU of the process's affinity (the default layout, no cgroup quota below it)",
    )
    timeout_s: int = Field(30, ge=1, description="request timeout, seconds")
    access_log: bool = Field(False, description="BentoML's per-request access log line")
    tracing: bool = Field(False, description="OpenTelemetry spans for `/classify` (configure an exporter)")
    metrics: bool = Field(
        True, description="Prometheus metrics at `/metrics` (requests by route and status, latency)"
    )
    bentoml_metrics: bool = Field(
        False,
        description="also BentoML's own per-request HTTP metrics (`bentoml_service_*`; costly per request)",
    )
    # -- monitoring
    profiles: bool = Field(
        True, description="log each served text's derived features (never the text) into whylogs profiles"
    )
    profiles_dir: str | None = Field(
        None, description="where each worker writes its whylogs profiles (default HOME/profiles)"
    )
    profile_interval_s: int = Field(60, ge=1, description="seconds each profile covers (one file per worker)")
    profile_queue: int = Field(
        10000, ge=1, description="texts waiting for the profiler; past it features are dropped and counted"
    )
    low_confidence: float = Field(
        0.5, ge=0, le=1, description="answers below this top probability count as low-confidence"
    )
    drift_check_s: int = Field(60, ge=0, description="how often the server checks its own drift; 0 = never")
    drift_window_s: int = Field(
        3600, ge=1, description="seconds of recent profiles the server's drift check covers"
    )
    drift_min_texts: int = Field(
        200, ge=1, description="fewest texts in a window before a drift verdict is given"
    )
    drift_alpha: float = Field(
        0.01,
        gt=0,
        lt=1,
        description="false-alarm rate of one drift check, over all features (Holm-corrected)",
    )
    # -- the model lifecycle
    follow: bool = Field(
        True,
        description="without TEXTCLF_MODEL: serve the champion the served-model file names and switch, "
        "without a restart, when `textclf promote` or `rollback` changes it",
    )
    served_model_file: str | None = Field(
        None,
        description="the served-model file (champion and challenger tags) the CLI writes and the server "
        "follows (default HOME/served-model.json)",
    )
    reload_check_s: float = Field(
        2.0, ge=0, description="how often each worker looks at the served-model file; 0 = never"
    )
    shadow_fraction: float = Field(
        0.1,
        ge=0,
        le=1,
        description="share of live texts also run on the challenger, off the response path (0 = no shadow)",
    )
    shadow_queue: int = Field(
        64, ge=1, description="batches waiting for the shadow lane; past it texts are skipped and counted"
    )
    # -- security
    auth: bool = Field(True, description="require OAuth2 bearer tokens (JWT); false only behind another gate")
    home: str = Field(
        "~/.textclf", description="local state: the default home of the folders below and of `data.key`"
    )
    auth_dir: str | None = Field(
        None,
        description="signing keys and hashed client/user secrets, `textclf auth init` (default HOME/auth)",
    )
    token_alg: Literal["RS256", "HS256"] = Field(
        "RS256", description="the one JWT algorithm accepted (RS256 or HS256); the active key must match"
    )
    token_issuer: str = Field("textclf", description="`iss` of issued tokens, required on verification")
    token_audience: str = Field("textclf-api", description="`aud` of issued tokens, required on verification")
    token_ttl_s: int = Field(900, ge=1, description="lifetime of issued access tokens, seconds")
    rate_limit_rps: float = Field(
        200.0, ge=0, description="requests/s per token subject (whole server); 0 = off"
    )
    rate_limit_burst: int = Field(400, ge=1, description="requests a subject may send at once")
    audit: bool = Field(True, description="the audit log (one JSON line per request)")
    audit_dir: str | None = Field(
        None, description="rotating audit files, one per worker, `audit-w<N>.jsonl` (default HOME/audit)"
    )
    audit_stdout: bool = Field(True, description="also print every audit line to stdout")
    audit_max_bytes: int = Field(10 * 1024 * 1024, ge=1, description="audit file size before it rotates")
    audit_backups: int = Field(5, ge=0, description="rotated audit files kept")
    feedback_dir: str | None = Field(
        None, description="where `POST /feedback` appends sealed records (default HOME/feedback)"
    )
    data_key: SecretStr | None = Field(
        None, description="AES-256 data key for encryption at rest (urlsafe base64 of 32 bytes)"
    )
    data_key_file: str | None = Field(
        None,
        description="file holding the data key, `textclf auth data-key` (default HOME/data.key if it exists)",
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="shared secret Alertmanager sends as a bearer credential to `textclf retrain-webhook` "
        "(an access token with the `admin` scope works too)",
    )
    webhook_secret_file: str | None = Field(None, description="file holding that shared secret")
    # -- clients
    token: SecretStr | None = Field(
        None, description="bearer token `textclf predict-batch` sends (`--token` overrides)"
    )

    @property
    def server_workers(self) -> int:
        """Worker processes actually started: the setting, or one per core."""
        return self.workers or available_cpus()

    @property
    def model_lanes(self) -> int:
        """Lanes actually used: the setting, or one per core this worker may use."""
        return self.lanes or max(1, available_cpus() // self.server_workers)

    def worker_cpu_set(self, worker: int | None) -> set[int] | None:
        """The CPUs server worker `worker` (1-based, as BentoML numbers them) keeps its threads on, or
        None: not pinned. Pinned, a worker's event loop and model lane share one core's caches and never
        chase each other across cores (`textclf bench --targets pinning` measures it). `auto` pins only
        where the workers own the CPUs one each: under a cgroup quota smaller than the affinity mask,
        the scheduler, not a fixed CPU, knows where there is room."""
        if worker is None or self.pin_workers == "false" or not hasattr(os, "sched_getaffinity"):
            return None
        allowed = os.sched_getaffinity(0)
        workers = self.server_workers
        if self.pin_workers == "auto" and not (workers == len(allowed) == available_cpus()):
            return None
        return worker_cpus(worker - 1, workers, allowed)

    def path(self, name: str) -> Path:
        """A folder setting with `~` expanded; unset ones default to HOME/<name without _dir>."""
        value = getattr(self, name)
        if value is None:
            return self.path("home") / name.removesuffix("_dir")
        return Path(value).expanduser()

    @property
    def served_model_path(self) -> Path:
        """The served-model file the CLI writes and servers follow."""
        if self.served_model_file is not None:
            return Path(self.served_model_file).expanduser()
        return self.path("home") / "served-model.json"

    @property
    def default_data_key_file(self) -> Path:
        """Where `make run` (`textclf auth data-key`) puts the data key, and where it is looked for."""
        return self.path("home") / DATA_KEY_FILE_NAME

    @property
    def data_key_path(self) -> Path | None:
        """The data key file in use: TEXTCLF_DATA_KEY_FILE, else HOME/data.key if it exists, else None
        (also None when the key is given inline)."""
        if self.data_key is not None:
            return None
        if self.data_key_file is not None:
            return Path(self.data_key_file).expanduser()
        default = self.default_data_key_file
        return default if default.is_file() else None


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Settings from TEXTCLF_* variables of `environ` (default: this process's); unset or empty
    variables keep their defaults. Raises SettingsError naming the variable."""
    environ = os.environ if environ is None else environ
    values = {name: environ[env_name(name)] for name in Settings.model_fields if environ.get(env_name(name))}
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        raise SettingsError(_explain(exc, values)) from None


def _explain(exc: ValidationError, values: Mapping[str, Any]) -> str:
    problems = []
    for error in exc.errors():
        field = str(error["loc"][0])
        got, kind, ctx = values.get(field), error["type"], error.get("ctx") or {}
        if kind == "bool_parsing":
            why = "must be true or false"
        elif kind == "int_parsing":
            why = "must be an integer"
        elif kind == "float_parsing":
            why = "must be a number"
        elif kind in ("greater_than_equal", "greater_than"):
            why = f"must be ≥ {ctx.get('ge', ctx.get('gt'))}"
        elif kind == "literal_error":
            why = f"must be one of {ctx.get('expected', '')}".replace("'", "")
        else:
            why = error["msg"]
        problems.append(f"{env_name(field)} {why}, got {got!r}")
    return "; ".join(problems)


def settings_table() -> str:
    """The Markdown table of every variable, its default and what it is for (the README's)."""
    lines = ["| variable | default | what it is for |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        shown = (
            "unset"
            if default is None
            else f"`{str(default).lower() if isinstance(default, bool) else default}`"
        )
        lines.append(f"| `{env_name(name)}` | {shown} | {info.description} |")
    return "\n".join(lines)
