"""Offline guard: no hub downloads, no telemetry, in every entry point (CLI, server, tests)."""

from __future__ import annotations

import os

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WHYLOGS_NO_ANALYTICS": "1",
    "BENTOML_DO_NOT_TRACK": "true",
    "DVC_NO_ANALYTICS": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "1",
}


def go_offline() -> None:
    """Set the offline variables unless the caller has set them already."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
