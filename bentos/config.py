"""The server's settings, read from the environment once per process (textclf.core.settings)."""

from __future__ import annotations

from textclf.core.settings import SettingsError, load_settings

try:
    SETTINGS = load_settings()
except SettingsError as exc:  # a bad TEXTCLF_* value: one line naming it, before BentoML starts anything
    raise SystemExit(f"textclf: cannot start: {exc}") from None
