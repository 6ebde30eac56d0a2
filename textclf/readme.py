"""Generated blocks in the README: text between `<!-- NAME:start -->` and `<!-- NAME:end -->`."""

from __future__ import annotations

import re
from pathlib import Path


def replace_block(readme: Path, name: str, markdown: str) -> bool:
    """Replace the block called `name`; False when the file or its markers are missing."""
    if not readme.is_file():
        return False
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = readme.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda _: f"{start}\n{markdown}\n{end}", text), encoding="utf-8")
    return True
