"""Ways the world drifts away from the training data, made on purpose to measure the drift check.

Each shift turns clean test texts into the traffic a server would see after the world moved: typos,
cut-off messages, traffic from a few classes only, text from another domain. All are seeded.
"""

from __future__ import annotations

import random
import string
from pathlib import Path

OTHER_DOMAIN_FILE = Path(__file__).with_name("data") / "other_domain.txt"
LETTERS = string.ascii_lowercase


def typos(text: str, rate: float, rng: random.Random) -> str:
    """Keyboard-style noise: each letter is, with probability `rate`, dropped, doubled, swapped with
    the next one or replaced by a random letter (the four slips people make most)."""
    chars = list(text)
    out: list[str] = []
    i = 0
    while i < len(chars):
        c = chars[i]
        if c.isalpha() and rng.random() < rate:
            slip = rng.randrange(4)
            if slip == 0:  # dropped
                i += 1
                continue
            if slip == 1:  # doubled
                out += [c, c]
            elif slip == 2 and i + 1 < len(chars):  # swapped with the next character
                out += [chars[i + 1], c]
                i += 2
                continue
            else:  # replaced
                out.append(rng.choice(LETTERS))
            i += 1
            continue
        out.append(c)
        i += 1
    return "".join(out) or text


def truncate(text: str, keep: float = 0.5) -> str:
    """The first `keep` share of the words (at least one): messages cut off by a client or a UI."""
    words = text.split()
    return " ".join(words[: max(1, round(len(words) * keep))])


def other_domain_texts(path: Path = OTHER_DOMAIN_FILE) -> list[str]:
    """Non-banking English shipped with the repo (see the file's header for its source)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line for line in lines if line.strip() and not line.startswith("#")]
