#!/usr/bin/env python3
"""The image's HEALTHCHECK: GET /livez on the server running in this container; exit 0 when it answers 200.

The server's address is whatever `serve` was started with, so it is read from the server's own command
line (PID 1: the entrypoint execs `bentoml serve ...`), then from BENTOML_PORT / BENTOML_HOST, then
BentoML's default port. With --ssl-certfile it asks over HTTPS without checking the certificate: this
probes liveness on loopback, it does not authenticate the server. Standard library only (python3 of the
base image), so it runs before and beside the application's virtual environment.
"""

import os
import ssl
import sys
import urllib.request
from pathlib import Path

WILDCARDS = {"", "0.0.0.0", "::", "[::]"}


def option(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in argv, if present."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main() -> int:
    try:
        argv = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    except OSError:
        argv = []
    port = option(argv, "--port") or os.environ.get("BENTOML_PORT") or "3000"
    host = option(argv, "--host") or os.environ.get("BENTOML_HOST") or "127.0.0.1"
    host = "127.0.0.1" if host in WILDCARDS else host
    host = f"[{host}]" if ":" in host and not host.startswith("[") else host
    tls = option(argv, "--ssl-certfile") is not None
    context = None
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    url = f"{'https' if tls else 'http'}://{host}:{port}/livez"
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as answer:
            return 0 if answer.status == 200 else 1
    except OSError as exc:
        print(f"{url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
