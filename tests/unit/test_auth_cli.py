"""`textclf auth …` and `textclf token`: the operator's commands, good paths and ugly ones."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from auth.credentials import load_credentials
from auth.keys import load_ring
from textclf.cli import app


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEXTCLF_AUTH_DIR", str(tmp_path / "auth"))
    monkeypatch.setenv("TEXTCLF_AUDIT_DIR", str(tmp_path / "audit"))
    return tmp_path


def run(*args: str, stdin: str | None = None):
    return CliRunner().invoke(app, list(args), input=stdin)


def audit_actions(root: Path) -> list[str]:
    return [
        json.loads(line)["action"] for line in (root / "audit" / "audit-cli.jsonl").read_text().splitlines()
    ]


def test_init_add_list_token(env: Path) -> None:
    assert run("auth", "init").exit_code == 0
    kid = load_ring(env / "auth").active.kid
    assert "kept" in run("auth", "init").output  # idempotent: the key stays
    assert load_ring(env / "auth").active.kid == kid
    added = run("auth", "add-client", "billing", "--scope", "classify model:read")
    assert added.exit_code == 0
    secret = added.stdout.strip().splitlines()[-1]
    assert load_credentials(env / "auth").authenticate("client", "billing", secret) is not None
    assert (
        run(
            "auth", "add-user", "alice", "--scope", "classify", "--password-stdin", stdin="a long password!\n"
        ).exit_code
        == 0
    )
    listing = run("auth", "list").output
    assert "billing" in listing and "alice" in listing and kid in listing and secret not in listing
    minted = run("token", "--sub", "nightly", "--scope", "classify", "--ttl", "60")
    assert minted.exit_code == 0
    claims = jwt.decode(minted.stdout.strip(), options={"verify_signature": False})
    assert (
        claims["sub"] == "nightly" and claims["scope"] == "classify" and claims["exp"] - claims["iat"] == 60
    )
    assert audit_actions(env) == ["init", "add-client", "add-user", "mint-token"]
    assert secret not in (env / "audit" / "audit-cli.jsonl").read_text()


def test_rotate_and_retire(env: Path) -> None:
    run("auth", "init")
    first = load_ring(env / "auth").active.kid
    assert run("auth", "rotate-key").exit_code == 0
    second = load_ring(env / "auth").active.kid
    refused = run("auth", "retire-key", second)
    assert refused.exit_code == 1 and "active key" in refused.output
    assert "nothing" in run("auth", "retire-key").output  # the old key may still verify live tokens
    assert run("auth", "retire-key", first).exit_code == 0
    assert set(load_ring(env / "auth").keys) == {second}
    assert run("auth", "retire-key", "no-such-kid").exit_code == 1


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (("auth", "list"), None, "textclf auth init"),
        (("token", "--sub", "x", "--scope", "classify"), None, "textclf auth init"),
        (("token", "--sub", "x", "--scope", "root"), None, "scopes must be"),
        (("auth", "add-client", "x", "--scope", "superuser"), None, "scopes must be"),
        (("auth", "add-client", "two words", "--scope", "classify"), None, "without spaces"),
        (("auth", "add-user", "bob", "--scope", "classify", "--password-stdin"), "short\n", "at least 12"),
        (("auth", "remove", "client", "ghost"), None, "no client named"),
    ],
)
def test_ugly_cases_fail_with_a_message(env: Path, args: tuple, stdin: str | None, message: str) -> None:
    result = run(*args, stdin=stdin)
    assert result.exit_code != 0
    assert message in " ".join(result.output.split())


def test_data_key_file_is_private_and_never_overwritten_silently(env: Path) -> None:
    target = env / "keys" / "data.key"
    assert run("auth", "data-key", "--output", str(target)).exit_code == 0
    assert stat.S_IMODE(target.stat().st_mode) == 0o600 and len(target.read_text().strip()) == 44
    first = target.read_text()
    again = run("auth", "data-key", "--output", str(target))
    assert again.exit_code == 1 and target.read_text() == first
    assert run("auth", "data-key", "--output", str(target), "--force").exit_code == 0
    assert target.read_text() != first
