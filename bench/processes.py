"""Start a server as our own child process on loopback, wait until it is ready, stop it by PID."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx


class ServerError(RuntimeError):
    """A server exited early or never became ready."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 4000) -> str:
    return path.read_text(encoding="utf-8", errors="replace")[-chars:] if path.is_file() else ""


@contextmanager
def running(
    argv: Sequence[str],
    ready_url: str,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout_s: float = 120,
    verify: bool | str | ssl.SSLContext = True,
) -> Iterator[subprocess.Popen]:
    """Run `argv` in its own process group until the block ends; ready when `ready_url` answers 200.
    `verify` is httpx's: for an https `ready_url` with a private CA, an SSLContext that trusts it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = log_path.open("wb")
    process = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise ServerError(f"{argv[0]} exited early ({process.returncode}):\n{_tail(log_path)}")
            try:
                if httpx.get(ready_url, timeout=1, verify=verify).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ServerError(f"{' '.join(argv[:3])} not ready in {timeout_s:.0f}s:\n{_tail(log_path)}")
            time.sleep(0.3)
        yield process
    finally:
        stop(process)
        log.close()


def stop(process: subprocess.Popen, grace_s: float = 20) -> None:
    """SIGTERM our process group, SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
