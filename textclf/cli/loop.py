"""The retraining loop: `textclf retrain` (feedback → challenger), `textclf promote` (the gate),
`textclf rollback` (the undo). Each is audited; none ever runs inside the server."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from textclf.cli.common import ParamsOption, cli_settings, console, fail, load, print_json

app = typer.Typer()

LogsOption = typer.Option(
    None,
    "--feedback-dir",
    help="The server's feedback logs (default: TEXTCLF_FEEDBACK_DIR, else HOME/feedback).",
)


def _serve(champion: str, challenger: str | None, by: str) -> None:
    """Tell following servers (textclf.core.served_model) what to serve and shadow."""
    from textclf.core.served_model import write_served_model

    path = cli_settings().served_model_path
    write_served_model(path, champion, challenger, by)
    shadowed = f", shadowing {challenger}" if challenger else ""
    console.print(f"servers following {path} now serve {champion}{shadowed}")


def _audit(action: str, **fields: object) -> None:
    from auth.audit import record_operator_action

    record_operator_action(cli_settings(), action, **fields)


@app.command()
def retrain(
    params_file: Path = ParamsOption,
    feedback_dir: Path | None = LogsOption,
    status: bool = typer.Option(False, "--status", help="Show the last job's state and exit."),
    promote_after: bool | None = typer.Option(
        None,
        "--promote/--no-promote",
        help="Run the gate after a new challenger (default: params.yaml retrain.auto_promote).",
    ),
) -> None:
    """Retrain the champion's family on the server's labelled feedback and register a challenger.

    Feedback is decrypted in memory, checked like the training data, de-duplicated and written as a new
    DVC version of the feedback data set (sealed unless data.feedback_plaintext). The champion alias is
    never moved here: `textclf promote` decides. Exit 0: done or nothing to do; 1: failed; 3: busy."""
    from textclf.loop import jobs
    from textclf.loop.retrain import STATE_DIR, RetrainError
    from textclf.loop.retrain import retrain as run_retrain

    if status:
        print_json(jobs.read_state(STATE_DIR))
        return
    params = load(params_file)
    logs = feedback_dir.expanduser() if feedback_dir else cli_settings().path("feedback_dir")
    _audit("retrain-start", feedback_dir=str(logs))
    try:
        result = run_retrain(params, logs_dir=logs)
    except jobs.JobBusy as exc:
        _audit("retrain-refused", reason=str(exc))
        raise fail(f"{exc}: `textclf retrain --status` shows it", code=3) from None
    except (RetrainError, OSError, ValueError) as exc:
        _audit("retrain-failed", reason=str(exc))
        raise fail(str(exc)) from None
    for line in result.refused:
        console.print(f"[yellow]not used:[/] {line}")
    if result.challenger is not None:
        _serve(result.challenger["champion_tag"], result.challenger["model_tag"], "textclf retrain")
    console.print(f"[green]{result.status}:[/] {result.message}")
    _audit(
        "retrain-done",
        status=result.status,
        read=result.read,
        new=result.new,
        data_version=result.data_version,
        challenger=(result.challenger or {}).get("version"),
    )
    auto = params.retrain.auto_promote if promote_after is None else promote_after
    if result.status == "challenger" and auto:
        promote(params_file=params_file, dry_run=False)


def _slice_table(decision) -> Table:
    table = Table(title="champion vs challenger (ONNX Runtime)")
    table.add_column("slice")
    table.add_column("rows", justify="right")
    for contender in (decision.champion, decision.challenger):
        table.add_column(f"{contender.role} v{contender.version} ({contender.variant})", justify="right")
    for name, champ in decision.champion.slices.items():
        chal = decision.challenger.slices[name]
        table.add_row(
            name,
            str(chal.rows),
            "—" if not champ.rows else f"{champ.accuracy:.4f}",
            "—" if not chal.rows else f"{chal.accuracy:.4f}",
        )
    return table


@app.command()
def promote(
    params_file: Path = ParamsOption,
    dry_run: bool = typer.Option(False, "--dry-run", help="Compare and decide, but move no alias."),
) -> None:
    """Compare challenger and champion on the test split and the held-out feedback slice (params.yaml
    `promotion`); promote the challenger only if it wins. Exit 0: promoted (or would be); 2: kept."""
    from textclf.loop.gate import GateError, evaluate, log_decision
    from textclf.loop.gate import promote as move_aliases

    params = load(params_file)
    try:
        decision = evaluate(params)
    except GateError as exc:
        raise fail(str(exc)) from None
    console.print(_slice_table(decision))
    for note in decision.notes:
        console.print(f"[yellow]note:[/] {note}")
    verdict = "promote" if decision.promote else "keep the champion"
    for reason in decision.reasons:
        console.print(f"[{'green' if decision.promote else 'red'}]{verdict}:[/] {reason}")
    run_id = log_decision(params, decision, "promote-dry-run" if dry_run else "promote")
    assert decision.champion is not None and decision.challenger is not None
    fields = {
        "decision": "promote" if decision.promote else "keep",
        "champion": decision.champion.version,
        "challenger": decision.challenger.version,
        "reasons": decision.reasons,
        "mlflow_run": run_id,
        "dry_run": dry_run,
    }
    _audit("promote", **fields)
    print_json({**fields, "slices": json.loads(json.dumps(decision.as_dict(), default=str))})
    if not decision.promote:
        raise typer.Exit(2)
    if not dry_run:
        move_aliases(params, decision)
        _serve(decision.challenger.model_tag, None, "textclf promote")
        console.print(
            f"[green]promoted:[/] version {decision.challenger.version} is the champion; "
            f"version {decision.champion.version} keeps the alias previous-champion (`textclf rollback`)"
        )


@app.command()
def rollback(params_file: Path = ParamsOption) -> None:
    """Move the champion alias back to the previous champion (run again to undo the rollback)."""
    from textclf.loop.gate import GateError
    from textclf.loop.gate import rollback as move_back

    params = load(params_file)
    try:
        demoted, restored, tag = move_back(params)
    except GateError as exc:
        raise fail(str(exc)) from None
    _serve(tag, None, "textclf rollback")
    _audit("rollback", demoted=demoted, restored=restored)
    console.print(f"[green]rolled back:[/] version {restored} is the champion again (was {demoted})")


@app.command("retrain-webhook")
def retrain_webhook(
    params_file: Path = ParamsOption,
    feedback_dir: Path | None = LogsOption,
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8090, help="Port (monitoring/alertmanager/alertmanager.yml points at 8090)."),
) -> None:
    """Alertmanager's webhook receiver: a firing drift or accuracy alert starts `textclf retrain` (in this
    folder, its own process), one job at a time, at most once per retrain.min_interval_s; with
    retrain.auto_promote the gate runs after it. Needs TEXTCLF_WEBHOOK_SECRET(_FILE) or a key ring whose
    admin-scoped tokens Alertmanager sends. POST /alerts, GET /status, GET /healthz."""
    import signal
    import sys
    import threading

    from auth.audit import record_operator_action
    from auth.webhook import WebhookAuthError, webhook_verifier
    from monitoring.retrain_trigger import RetrainTrigger, serve
    from textclf.loop.retrain import STATE_DIR

    params, settings = load(params_file), cli_settings()
    try:
        verify = webhook_verifier(settings)
    except WebhookAuthError as exc:
        raise fail(str(exc)) from None
    command = [str(Path(sys.executable).with_name("textclf")), "retrain", "--params", str(params_file)]
    command.append("--promote" if params.retrain.auto_promote else "--no-promote")
    if feedback_dir is not None:
        command += ["--feedback-dir", str(feedback_dir.expanduser())]
    trigger = RetrainTrigger(
        command,
        cwd=Path.cwd(),
        log_dir=STATE_DIR / "jobs",
        min_interval_s=params.retrain.min_interval_s,
        audit=lambda **fields: record_operator_action(settings, client="alertmanager", **fields),
    )
    try:
        server = serve(trigger, verify, host, port)
    except OSError as exc:
        raise fail(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    console.print(
        f"[green]retraining webhook[/] on http://{host}:{port}/alerts "
        f"(auto-promote {'on' if params.retrain.auto_promote else 'off'}, "
        f"at most one job per {params.retrain.min_interval_s:g} s); Ctrl-C stops it"
    )
    stopping.wait()
    server.shutdown()
    if trigger.status()["running"]:
        console.print("waiting for the running job to finish…")
        trigger.finished.wait()
