"""Operator commands for the security layer: `textclf auth ...` and `textclf token`.

They act on the folders the server reads (TEXTCLF_AUTH_DIR, TEXTCLF_AUDIT_DIR, by default under
TEXTCLF_HOME = ~/.textclf; `--auth-dir` overrides),
and every change is written to the audit log.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from auth.audit import record_operator_action
from auth.credentials import CredentialsError, add_principal, check_scopes, load_credentials, remove_principal
from auth.keys import KeyRingError, init_ring, load_ring, retire, retire_expired, rotate
from auth.scopes import SCOPES
from auth.tokens import TokenService
from textclf.cli.common import cli_settings

app = typer.Typer(help="Signing keys, clients and users of the token endpoint.", no_args_is_help=True)
console = Console(stderr=True)  # the same stderr console as textclf.cli.common

AuthDirOption = typer.Option(
    None, "--auth-dir", help="Auth folder (default: TEXTCLF_AUTH_DIR, else HOME/auth)."
)
AlgOption = typer.Option(None, "--alg", help="RS256 or HS256 (default: TEXTCLF_TOKEN_ALG, RS256).")
ScopeOption = typer.Option(..., "--scope", help=f"Space-separated scopes: some of {' '.join(SCOPES)}.")


def _folder(auth_dir: Path | None) -> Path:
    return auth_dir.expanduser() if auth_dir else cli_settings().path("auth_dir")


def _audit(action: str, **fields: object) -> None:
    record_operator_action(cli_settings(), action, **fields)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/] {message}")
    return typer.Exit(1)


@app.command()
def init(
    auth_dir: Path | None = AuthDirOption,
    alg: str = AlgOption,
) -> None:
    """Create the signing key ring (idempotent)."""
    folder = _folder(auth_dir)
    try:
        created = init_ring(folder, alg or cli_settings().token_alg)
    except KeyRingError as exc:
        raise _fail(str(exc)) from None
    if created:
        _audit("init", kid=load_ring(folder).active.kid)
    console.print(f"{'created' if created else 'kept'} the key ring in {folder}")


@app.command("add-client")
def add_client(name: str, scope: str = ScopeOption, auth_dir: Path | None = AuthDirOption) -> None:
    """Add (or replace) a machine client; prints its generated secret once."""
    try:
        secret = add_principal(_folder(auth_dir), "client", name, scope.split())
    except CredentialsError as exc:
        raise _fail(str(exc)) from None
    _audit("add-client", name=name, scopes=scope.split())
    console.print(f"client [bold]{name}[/] may ask for: {scope}. Its secret (shown once):")
    typer.echo(secret)


@app.command("add-user")
def add_user(
    name: str,
    scope: str = ScopeOption,
    password_stdin: bool = typer.Option(False, "--password-stdin", help="Read the password from stdin."),
    auth_dir: Path | None = AuthDirOption,
) -> None:
    """Add (or replace) a person for the password grant."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        add_principal(_folder(auth_dir), "user", name, scope.split(), password)
    except CredentialsError as exc:
        raise _fail(str(exc)) from None
    _audit("add-user", name=name, scopes=scope.split())
    console.print(f"user [bold]{name}[/] may ask for: {scope}")


@app.command()
def remove(
    kind: str = typer.Argument(..., help="client or user"),
    name: str = typer.Argument(...),
    auth_dir: Path | None = AuthDirOption,
) -> None:
    """Remove a client or user: no new tokens for it (issued ones live until they expire)."""
    try:
        remove_principal(_folder(auth_dir), kind, name)
    except CredentialsError as exc:
        raise _fail(str(exc)) from None
    _audit("remove", kind=kind, name=name)
    console.print(f"removed {kind} {name}")


@app.command("list")
def list_all(auth_dir: Path | None = AuthDirOption) -> None:
    """Keys, clients and users (ids and scopes; never secrets)."""
    folder = _folder(auth_dir)
    table = Table("kind", "name", "detail")
    try:
        ring = load_ring(folder)
    except KeyRingError as exc:
        raise _fail(str(exc)) from None
    for key in ring.keys.values():
        state = "active" if key.kid == ring.active.kid else "verify only"
        table.add_row("key", key.kid, f"{key.alg}, {state}")
    credentials = load_credentials(folder)
    for kind, entries in (("client", credentials.clients), ("user", credentials.users)):
        for name, entry in sorted(entries.items()):
            table.add_row(kind, name, " ".join(entry["scopes"]))
    Console().print(table)


@app.command("rotate-key")
def rotate_key(
    auth_dir: Path | None = AuthDirOption,
    alg: str = AlgOption,
) -> None:
    """New active signing key; tokens of the previous key stay valid until they expire."""
    folder = _folder(auth_dir)
    try:
        kid = rotate(folder, alg or cli_settings().token_alg)
    except KeyRingError as exc:
        raise _fail(str(exc)) from None
    _audit("rotate-key", kid=kid)
    console.print(f"active key is now {kid}; servers pick it up within a second")


@app.command("retire-key")
def retire_key(
    kid: str | None = typer.Argument(
        None, help="Key id; none: every key rotated out longer than a token lives."
    ),
    auth_dir: Path | None = AuthDirOption,
) -> None:
    """Delete rotated-out keys: every token they signed is refused from then on."""
    folder = _folder(auth_dir)
    try:
        retired = [kid] if kid else retire_expired(folder, cli_settings().token_ttl_s)
        if kid:
            retire(folder, kid)
    except KeyRingError as exc:
        raise _fail(str(exc)) from None
    for done in retired:
        _audit("retire-key", kid=done)
    console.print(f"retired: {', '.join(retired) or 'nothing'}")


def token(
    sub: str = typer.Option(..., "--sub", help="The token's subject (who it is for)."),
    scope: str = ScopeOption,
    ttl: int | None = typer.Option(None, min=1, help="Lifetime in seconds (default TEXTCLF_TOKEN_TTL_S)."),
    auth_dir: Path | None = AuthDirOption,
) -> None:
    """Mint an access token from the local signing key (for scripts and tests)."""
    settings = cli_settings()
    try:
        scopes = check_scopes(scope.split())
    except CredentialsError as exc:
        raise _fail(str(exc)) from None
    folder = _folder(auth_dir)
    try:
        ring = load_ring(folder)
    except KeyRingError as exc:
        raise _fail(str(exc)) from None
    service = TokenService(
        lambda: ring,
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        algorithm=ring.active.alg,
        ttl_s=settings.token_ttl_s,
    )
    issued = service.issue(sub, scopes, ttl)
    _audit("mint-token", name=sub, scopes=list(issued.scopes), detail=f"issued {issued.jti}")
    typer.echo(issued.token)


@app.command("data-key")
def data_key(
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="File to write (mode 0600); default HOME/data.key (TEXTCLF_HOME, ~/.textclf), where every "
        "command finds it. Mount it, never commit it.",
    ),
    force: bool = typer.Option(
        False, "--force", help="Replace an existing key file (data sealed with it is lost)."
    ),
    if_missing: bool = typer.Option(
        False, "--if-missing", help="Do nothing when a data key is already configured or the file exists."
    ),
) -> None:
    """Make an AES-256 data key for encryption at rest (found by default at HOME/data.key)."""
    from auth.keys import write_private
    from textclf.core.crypto import DataKeyError, load_data_key, new_data_key

    settings = cli_settings()
    target = (output or settings.default_data_key_file).expanduser()
    if if_missing:
        try:
            configured = load_data_key() is not None
        except DataKeyError as exc:
            raise _fail(str(exc)) from None
        if configured or target.exists():
            console.print(f"kept the data key ({settings.data_key_path or 'TEXTCLF_DATA_KEY'})")
            return
    if target.exists() and not force:
        raise _fail(
            f"{target} exists; --force replaces it, and whatever was sealed with it becomes unreadable"
        )
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    write_private(target, (new_data_key() + "\n").encode())
    _audit("data-key", detail=f"wrote {target}")
    where = "" if target == settings.default_data_key_file else f" (set TEXTCLF_DATA_KEY_FILE={target})"
    console.print(f"wrote {target}; build, serve and bench seal and open the model store with it{where}")
