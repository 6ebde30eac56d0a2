"""Peer servers that cannot share our venv: PyTriton (NumPy < 2) runs from a venv of its own.

The venv is made on demand, once per machine and requirements file, under
`${XDG_CACHE_HOME:-~/.cache}/textclf/pytriton-<hash>`; a marker written only after a complete install
tells a usable venv from a half-made one. When it cannot be made (no package index, wrong Python), the
bench skips the target and says why. This module runs in the main venv and never imports pytriton.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from bench.load import write_bodies
from textclf.core.offline import OFFLINE_ENV

PYTRITON_REQUIREMENTS = Path(__file__).with_name("requirements-pytriton.txt")
PYTRITON_APP = "bench.apps.pytriton_ort"
TRITON_MODEL = "textclf"  # the name bench/apps/pytriton_ort.py binds
PYTRITON_OPTIONS = ("instances", "threads", "sub_batch", "max_batch", "queue_delay_us")
MARKER = ".textclf-ready"
# The interpreter that creates the venv: the one running the bench (the project pins CPython 3.11).
BASE_PYTHON = sys.executable
CHECK_IMPORTS = "import numpy, onnxruntime, pytriton, tokenizers, pydantic, cryptography"


def pytriton_venv_dir() -> Path:
    """Where the PyTriton venv lives: per machine, per requirements file (a changed pin is a new venv)."""
    digest = hashlib.sha256(PYTRITON_REQUIREMENTS.read_bytes()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "textclf" / f"pytriton-{digest}"


def _venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _tail(text: str, lines: int = 15) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _imports_ok(python: Path, timeout_s: float = 120) -> bool:
    try:
        done = subprocess.run(
            [str(python), "-c", CHECK_IMPORTS], capture_output=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _run_step(argv: list[str], what: str, log_file: Path, deadline: float) -> str:
    """Run one creation step, appending its output to `log_file`; "" on success, else why it failed."""
    left = deadline - time.monotonic()
    if left <= 0:
        return f"{what}: out of time"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=left, check=False)
    except FileNotFoundError as error:
        return f"{what}: {error.strerror}: {error.filename}"
    except OSError as error:
        return f"{what}: {error}"
    except subprocess.TimeoutExpired:
        return f"{what}: timed out after {left:.0f}s"
    with log_file.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(argv)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        return f"{what} failed ({done.returncode}):\n{_tail(done.stdout + done.stderr)}"
    return ""


def ensure_pytriton(log: Callable[[str], None], *, timeout_s: float = 1800) -> tuple[Path | None, str]:
    """The PyTriton venv's python and "", made now if need be; (None, reason) when it cannot be made."""
    venv = pytriton_venv_dir()
    python = _venv_python(venv)
    marker = venv / MARKER
    venv.parent.mkdir(parents=True, exist_ok=True)
    with (venv.parent / f"{venv.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two benches at once: one builds, the other waits and reuses
        if marker.is_file() and _imports_ok(python):
            return python, ""
        log(f"creating the PyTriton venv {venv} from {PYTRITON_REQUIREMENTS.name} (first run only; minutes)")
        shutil.rmtree(venv, ignore_errors=True)
        venv.parent.mkdir(parents=True, exist_ok=True)
        log_file = venv.parent / f"{venv.name}-install.log"
        log_file.write_text("", encoding="utf-8")
        started = time.monotonic()
        deadline = started + timeout_s
        pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--retries", "2"]
        steps = [
            ([BASE_PYTHON, "-m", "venv", str(venv)], "creating the venv"),
            ([*pip, "-r", str(PYTRITON_REQUIREMENTS)], f"pip install -r {PYTRITON_REQUIREMENTS.name}"),
        ]
        for argv, what in steps:
            if reason := _run_step(argv, what, log_file, deadline):
                shutil.rmtree(venv, ignore_errors=True)
                return None, f"PyTriton venv not made ({reason}); full log: {log_file}"
        if not _imports_ok(python):
            shutil.rmtree(venv, ignore_errors=True)
            return None, f"PyTriton venv made but `{CHECK_IMPORTS}` fails; full log: {log_file}"
        marker.write_text(
            json.dumps({"requirements": str(PYTRITON_REQUIREMENTS), "python": BASE_PYTHON}) + "\n",
            encoding="utf-8",
        )
        log(f"PyTriton venv ready in {time.monotonic() - started:.0f}s: {venv}")
        return python, ""


def pytriton_argv(python: Path, model_folder: Path, port: int, **options: int) -> list[str]:
    """The command serving `model_folder` with PyTriton on 127.0.0.1:`port` (options: PYTRITON_OPTIONS)."""
    unknown = set(options) - set(PYTRITON_OPTIONS)
    if unknown:
        raise TypeError(f"unknown PyTriton options {sorted(unknown)}; known: {', '.join(PYTRITON_OPTIONS)}")
    argv = [str(python), "-m", PYTRITON_APP, str(model_folder), "--port", str(port)]
    for name, value in options.items():
        argv += [f"--{name.replace('_', '-')}", str(int(value))]
    return argv


def pytriton_env(repo_root: Path) -> dict[str, str]:
    """Environment for the app: the repo (textclf.core, bench.apps) importable, offline, no user site."""
    return {"PYTHONPATH": str(repo_root), "PYTHONNOUSERSITE": "1", **OFFLINE_ENV}


def triton_ready_url(port: int) -> str:
    """Ready when the model is: Triton's /v2/health/ready answers 200 for about a second before PyTriton
    loads the model (then 400 while loading), so waiting on it lets the first requests fail."""
    return f"http://127.0.0.1:{port}/v2/models/{TRITON_MODEL}/ready"


def triton_infer_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v2/models/{TRITON_MODEL}/infer"


def triton_body(text: str) -> dict:
    """One KServe v2 inference request carrying one text (Triton batches requests, not texts)."""
    return {"inputs": [{"name": "texts", "shape": [1, 1], "datatype": "BYTES", "data": [text]}]}


def write_triton_bodies(texts: list[str], path: Path, count: int = 2000, seed: int = 0) -> Path:
    """bench.load.write_bodies with one text per request (the same random choices), as v2 JSON lines."""
    return write_bodies(texts, 1, path, count, seed, encode=lambda chosen: triton_body(chosen[0]))
