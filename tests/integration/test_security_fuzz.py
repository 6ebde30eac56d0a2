"""Schemathesis against the published OpenAPI schema of a real secured server: no input, with or
without a token, may produce a 5xx."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import SecureServer
from tests.helpers import bin_path

pytestmark = pytest.mark.integration


def schemathesis(url: str, tmp_path: Path, examples: int, *headers: str) -> subprocess.CompletedProcess:
    argv = [
        bin_path("st"),
        "run",
        f"{url}/docs.json",
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(examples),
    ]
    argv += ["--seed", "20261127", "--workers", "2", "--report", "junit", "--report-dir", str(tmp_path)]
    for header in headers:
        argv += ["-H", header]
    env = {**os.environ, "SCHEMATHESIS_TELEMETRY": "false", "NO_COLOR": "1"}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path, check=False
    )


def test_fuzzing_with_a_token_finds_no_server_error(secure_server: SecureServer, tmp_path: Path) -> None:
    token = secure_server.auth.mint(sub="fuzzer")
    done = schemathesis(secure_server.url, tmp_path, 60, f"Authorization: Bearer {token}")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    (junit,) = tmp_path.glob("junit-*.xml")
    tested = junit.read_text()
    for operation in ("POST /classify", "POST /feedback", "POST /token", "GET /model", "GET /admin/status"):
        assert f'testcase name="{operation}"' in tested, operation


def test_fuzzing_without_a_token_finds_no_server_error(secure_server: SecureServer, tmp_path: Path) -> None:
    done = schemathesis(secure_server.url, tmp_path, 15)
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
