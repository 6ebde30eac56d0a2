"""Generated blocks in the README: text between `<!-- NAME:start -->` and `<!-- NAME:end -->`.

Every table that a command measures or a class defines is generated, never typed: the model comparison
(reports/comparison.json + champion.json, written by `textclf select`), the throughput tables
(reports/bench.json and reports/bench_workers*.json, written by `textclf bench`), the drift check's
measured power (reports/drift_eval.json, `textclf drift-eval`), abstention on held-out intents
(reports/abstain_eval.json, `textclf abstain-eval`) and the settings table
(textclf.core.settings).
`textclf readme --check` (and a test) fails when the README and its sources differ.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

BENCH_REPORTS = {"bench": "bench.json"}


def _pattern(name: str) -> re.Pattern[str]:
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    return re.compile(re.escape(start) + r"\n?(.*?)\n?" + re.escape(end), re.S)


def read_block(readme: Path, name: str) -> str | None:
    """The text of block `name`, or None when the file or its markers are missing."""
    if not readme.is_file():
        return None
    found = _pattern(name).search(readme.read_text(encoding="utf-8"))
    return found.group(1) if found else None


def replace_block(readme: Path, name: str, markdown: str) -> bool:
    """Replace the block called `name`; False when the file or its markers are missing."""
    if read_block(readme, name) is None:
        return False
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = _pattern(name).sub(lambda _: f"{start}\n{markdown}\n{end}", readme.read_text(encoding="utf-8"))
    readme.write_text(text, encoding="utf-8")
    return True


def _comparison(reports: Path) -> str | None:
    from training.compare import table_from_reports

    comparison, champion = reports / "comparison.json", reports / "champion.json"
    if not (comparison.is_file() and champion.is_file()):
        return None
    return table_from_reports(
        json.loads(comparison.read_text(encoding="utf-8")),
        json.loads(champion.read_text(encoding="utf-8"))["variant"],
    )


def _bench(file: Path) -> Callable[[Path], str | None]:
    def render(reports: Path) -> str | None:
        from bench.report import markdown

        path = reports / file
        return markdown(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None

    return render


def _scaling(reports: Path) -> str | None:
    from bench.report import scaling_markdown

    runs = [
        json.loads(path.read_text(encoding="utf-8")) for path in sorted(reports.glob("bench_workers*.json"))
    ]
    return scaling_markdown(runs) if runs else None


def _drift_eval(reports: Path) -> str | None:
    from bench.drift_eval import markdown

    path = reports / "drift_eval.json"
    return markdown(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def _abstain_eval(reports: Path) -> str | None:
    from bench.abstain_eval import markdown

    path = reports / "abstain_eval.json"
    return markdown(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None


def _calibration(reports: Path) -> str | None:
    """Temperature and expected calibration error before → after, per variant (the export's reports)."""
    files = sorted(reports.glob("calibration_*.json"))
    if not files:
        return None
    lines = [
        "| variant | T | validation ECE (texts) | test ECE (texts) | test NLL |",
        "|---|---:|---|---|---|",
    ]
    for path in files:
        family = path.stem.removeprefix("calibration_")
        for precision, c in json.loads(path.read_text(encoding="utf-8")).items():
            name = family if precision == "fp32" else f"{family}-{precision}"
            lines.append(
                f"| {name} | {c['temperature']:.2f} "
                f"| {c['val_ece_before']:.3f} → {c['val_ece_after']:.3f} ({int(c['validation_rows']):,}) "
                f"| {c['test_ece_before']:.3f} → {c['test_ece_after']:.3f} ({int(c['test_rows']):,}) "
                f"| {c['test_nll_before']:.3f} → {c['test_nll_after']:.3f} |"
            )
    return "\n".join(lines)


def _target_table(target: str) -> Callable[[Path], str | None]:
    """The block of one bench target measured on its own (reports/<target>.json), e.g. soak or switch."""

    def render(reports: Path) -> str | None:
        from bench import report

        path = reports / f"{target}.json"
        if not path.is_file():
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
        lines = getattr(report, f"{target}_table")(data.get(target))
        measured = f"Measured {data['when']}. Command: `{data['command']}`."
        return "\n".join([*lines[1:], "", measured]) if lines else None

    return render


def _settings(_: Path) -> str:
    from textclf.core.settings import settings_table

    return settings_table()


GENERATORS: dict[str, Callable[[Path], str | None]] = {
    "comparison": _comparison,
    "settings": _settings,
    "scaling": _scaling,
    "drift_eval": _drift_eval,
    "abstain_eval": _abstain_eval,
    "calibration": _calibration,
    "soak": _target_table("soak"),
    "switch": _target_table("switch"),
    **{name: _bench(Path(file)) for name, file in BENCH_REPORTS.items()},
}


def generated(reports: Path) -> dict[str, str]:
    """Every block that its source can generate now (blocks whose report does not exist are left out)."""
    blocks = {name: render(reports) for name, render in GENERATORS.items()}
    return {name: text for name, text in blocks.items() if text is not None}


def stale_blocks(readme: Path, reports: Path) -> list[str]:
    """Names of the blocks whose README text differs from what their source generates (or is missing)."""
    return [name for name, text in generated(reports).items() if read_block(readme, name) != text]
