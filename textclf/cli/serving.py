"""Serving commands: serve a variant's Bento, make a local TLS pair, classify a file through a server."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from textclf import paths
from textclf.cli.common import ParamsOption, VariantOption, console, fail, load, variant
from textclf.core.variants import CHAMPION

app = typer.Typer()


def serve_argv(
    bentoml: str, bento: str, host: str, port: int, certfile: Path | None = None, keyfile: Path | None = None
) -> list[str]:
    """The `bentoml serve` command line (kept apart from the exec so tests can check it); HTTPS when
    both TLS files are given. Raises auth.tls.TLSError for one file without the other or a missing one."""
    from auth.tls import server_tls_args

    tls = server_tls_args(certfile, keyfile)
    return [bentoml, "serve", bento, "--host", host, "--port", str(port), *tls]


@app.command()
def serve(
    model: str = VariantOption,
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default)."),
    port: int = typer.Option(3000, help="Port to listen on."),
    ssl_certfile: Path | None = typer.Option(
        None, "--ssl-certfile", help="PEM certificate (chain): serve HTTPS (TLS 1.2+). Needs --ssl-keyfile."
    ),
    ssl_keyfile: Path | None = typer.Option(
        None, "--ssl-keyfile", help="PEM private key of --ssl-certfile (`textclf tls-cert` makes a pair)."
    ),
    params_file: Path = ParamsOption,
) -> None:
    """Serve the Bento of a variant (built now if the local store does not have it)."""
    from auth.keys import KeyRingError
    from auth.tls import TLSError, https_env
    from bentos.security import auth_config
    from converters.bundle import ensure_bento
    from textclf.core.settings import load_settings

    bentoml = str(Path(sys.executable).with_name("bentoml"))
    try:  # check the TLS options and the token keys before the (slow) Bento build
        serve_argv(bentoml, "-", host, port, ssl_certfile, ssl_keyfile)
        env = https_env(os.environ) if ssl_certfile else {}
        auth_config(load_settings()).check()
    except (TLSError, KeyRingError, ValueError) as exc:
        raise fail(str(exc)) from None
    chosen, folder = variant(model, params_file)
    tags = ensure_bento(folder, paths.bento_record(model))
    argv = serve_argv(bentoml, tags["bento"], host, port, ssl_certfile, ssl_keyfile)
    scheme = "https" if ssl_certfile else "http"
    console.print(f"serving {tags['bento']} ({chosen}: {tags['model']}) on {scheme}://{host}:{port}")
    if model == CHAMPION:  # follow promotions: `textclf promote` and `rollback` switch it, no restart
        _follow_champion(tags["model"], params_file)
        os.environ.pop("TEXTCLF_MODEL", None)
        os.environ.update(env)
    else:
        os.environ.update(env, TEXTCLF_MODEL=tags["model"])
    os.execv(bentoml, argv)


def _follow_champion(tag: str, params_file: Path) -> None:
    """Name the champion (and any challenger) in the served-model file the server will follow."""
    from textclf.core.served_model import write_served_model
    from textclf.core.settings import load_settings
    from training import tracking

    params = load(params_file)
    challenger = tracking.version_by_alias(params.registry.model_name, tracking.CHALLENGER)
    shadowed = challenger.tags.get("bentoml_model") if challenger is not None else None
    path = load_settings().served_model_path
    write_served_model(path, tag, shadowed, "textclf serve")
    console.print(
        f"following {path}: `textclf promote` and `textclf rollback` switch models without a restart"
    )


@app.command("tls-cert")
def tls_cert(
    out: Path = typer.Option(Path("certs"), "--out", help="Folder for cert.pem and key.pem."),
    hosts: list[str] = typer.Option(
        ["127.0.0.1", "localhost"], "--host", help="IP or DNS name the certificate is for (repeatable)."
    ),
    days: int = typer.Option(30, min=1, help="Days the certificate stays valid."),
    force: bool = typer.Option(False, "--force", help="Replace an existing pair."),
) -> None:
    """Make a self-signed certificate and key for local HTTPS (`serve --ssl-certfile/--ssl-keyfile`)."""
    from auth.tls import TLSError, make_self_signed

    try:
        pair = make_self_signed(out, hosts, days, overwrite=force)
    except TLSError as exc:
        raise fail(str(exc)) from None
    console.print(
        f"[green]wrote[/] {pair.cert} and {pair.key} (mode 0600) for {', '.join(hosts)}, valid {days} days; "
        f"clients trust it with its cert, e.g. `curl --cacert {pair.cert} https://{hosts[0]}:3000/readyz`"
    )


@app.command("predict-batch")
def predict_batch(
    input_file: Path = typer.Argument(..., help="CSV or JSONL file with a text column."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the predictions."),
    url: str = typer.Option("http://127.0.0.1:3000", help="Base URL of a running textclf server."),
    text_column: str = typer.Option("text", help="Column (or JSON key) holding the text."),
    chunk_size: int = typer.Option(256, min=1, help="Texts per request (capped at the server's limit)."),
    concurrency: int = typer.Option(8, min=1, max=64, help="Requests in flight at once."),
    retries: int = typer.Option(3, min=0, help="Retries per failed chunk."),
    top_k: int | None = typer.Option(None, min=1, help="Also write the k best labels."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace OUTPUT if it exists; without --resume, discard an unfinished run."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the unfinished run of OUTPUT from its checkpoint (or start one)."
    ),
    checkpoint_chunks: int = typer.Option(
        200, min=1, help="Checkpoint progress after this many chunks (and at least every 5 s)."
    ),
    token: str | None = typer.Option(
        None,
        help="Bearer token with the classify scope, and model:read so a resume can check the model "
        "(`textclf token`); default: TEXTCLF_TOKEN.",
    ),
) -> None:
    """Classify a file through a running server, streaming it in chunks (memory stays flat); a run
    that dies continues with --resume."""
    from batch.client import BatchError, predict_file
    from textclf.core.settings import SettingsError, load_settings

    try:
        secret = None if token else load_settings().token  # a SecretStr: its value, never its mask
        token = token or (secret.get_secret_value() if secret is not None else None)
    except SettingsError as exc:
        raise fail(str(exc)) from None
    try:
        summary = predict_file(
            input_file,
            output,
            url=url,
            text_column=text_column,
            chunk_size=chunk_size,
            concurrency=concurrency,
            retries=retries,
            top_k=top_k,
            token=token,
            overwrite=overwrite,
            resume=resume,
            checkpoint_chunks=checkpoint_chunks,
        )
    except BatchError as exc:
        raise fail(str(exc)) from None
    new_rows = summary.rows_out - summary.resumed_rows
    rate = new_rows / summary.seconds if summary.seconds > 0 else 0.0
    resumed = f", {summary.resumed_rows} of them from the checkpoint" if summary.resumed_rows else ""
    console.print(
        f"[green]{summary.rows_out}/{summary.rows_in} rows[/] written to {output}{resumed} "
        f"({summary.retried} retried requests; {new_rows} rows classified in {summary.seconds:.2f} s, "
        f"{rate:.1f} rows/s)"
    )
    if summary.failed_rows:
        console.print(
            f"[yellow]warning:[/] {summary.failed_rows} row(s) not classified; "
            "their reason is in the `error` column"
        )
    if summary.model_unverified:
        console.print(f"[yellow]warning:[/] {summary.model_unverified}")
