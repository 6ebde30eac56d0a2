"""The bench's `batch` target: `textclf predict-batch` (the real CLI, a subprocess) against the Bento as
shipped, its throughput next to served_batched and the client's peak memory at two input sizes."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from bench.load import LoadError

SUMMARY = re.compile(r"(\d+) rows classified in ([\d.]+) s")
PEAK = re.compile(r"^peak-rss-kib (\d+)$", re.M)
# The client's peak RSS must be its own: a process forked (or vforked) from the bench starts with the
# bench's high-water mark (hundreds of MB after the raw target), and exec keeps it. So a small launcher
# spawns the CLI and reports what wait4 says of it: the launcher is a fresh, small interpreter.
LAUNCHER = (
    "import os, sys\n"
    "pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ)\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print(f'peak-rss-kib {usage.ru_maxrss}', file=sys.stderr)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def write_input(texts: list[str], rows: int, path: Path) -> Path:
    """`rows` rows of `texts` repeated in order, as a CSV with a `text` column (streamed, never held)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "text"])
        writer.writerows((i, texts[i % len(texts)]) for i in range(rows))
    return path


def run_predict_batch(source: Path, url: str, token: str, workdir: Path, rows: int) -> dict:
    """One `textclf predict-batch` run: its classifying throughput (as it reports it), its wall time
    (start-up and the first pass included) and its peak RSS, read from the kernel when it is reaped
    (wait4's ru_maxrss, through LAUNCHER: exact, no polling)."""
    output = workdir / f"{source.stem}-out.csv"
    argv = [str(Path(sys.executable).with_name("textclf")), "predict-batch", str(source), "-o", str(output)]
    argv += ["--url", url, "--overwrite"]
    env = {**os.environ, "TEXTCLF_TOKEN": token, "COLUMNS": "300", "NO_COLOR": "1"}
    log = workdir / f"{source.stem}-predict-batch.log"
    started = time.monotonic()
    with log.open("w", encoding="utf-8") as stderr:
        code = subprocess.call(
            [sys.executable, "-c", LAUNCHER, *argv], stdout=subprocess.DEVNULL, stderr=stderr, env=env
        )
    wall_s = time.monotonic() - started
    raw = log.read_text(encoding="utf-8")
    text = " ".join(raw.split())
    found, peak = SUMMARY.search(text), PEAK.search(raw)
    if code != 0 or found is None or peak is None:
        raise LoadError(f"predict-batch on {rows} rows failed ({code}): {text[-2000:]}")
    classified, seconds = int(found.group(1)), float(found.group(2))
    output.unlink(missing_ok=True)
    return {
        "rows": rows,
        "texts_per_s": round(classified / seconds, 1) if seconds else 0.0,
        "classify_s": seconds,
        "wall_s": round(wall_s, 2),
        "peak_rss_mb": round(int(peak.group(1)) / 1024, 1),  # Linux reports KiB
        "errors": 0,
    }
