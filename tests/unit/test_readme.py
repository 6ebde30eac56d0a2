"""The README's generated tables match their sources: reports/ (the last measured runs) and the code."""

from __future__ import annotations

from pathlib import Path

from textclf.core.settings import Settings, settings_table
from textclf.readme import read_block, replace_block, stale_blocks

REPO = Path(__file__).resolve().parents[2]


def test_readme_tables_match_reports_and_settings() -> None:
    assert stale_blocks(REPO / "README.md", REPO / "reports") == [], "run `textclf readme`"


def test_every_setting_is_documented() -> None:
    documented = read_block(REPO / "README.md", "settings") or ""
    for name in Settings.model_fields:
        assert f"`TEXTCLF_{name.upper()}`" in documented
    assert settings_table().count("\n") == len(Settings.model_fields) + 1


def test_a_stale_block_is_caught_and_rewritten(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- settings:start -->\nold\n<!-- settings:end -->\noutro\n")
    assert stale_blocks(readme, tmp_path / "no-reports") == ["settings"]
    assert replace_block(readme, "settings", settings_table())
    assert stale_blocks(readme, tmp_path / "no-reports") == []
    assert readme.read_text().startswith("intro\n<!-- settings:start -->\n| variable |")
    assert not replace_block(tmp_path / "missing.md", "settings", "x")
