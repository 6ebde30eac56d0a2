"""The server's settings, read from the environment once per process (textclf.core.settings)."""

from __future__ import annotations

from textclf.core.settings import load_settings

SETTINGS = load_settings()
