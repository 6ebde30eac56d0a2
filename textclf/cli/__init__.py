"""The `textclf` command: one subcommand for every job a person runs, one module per room.

pipeline (validate, train, export, evaluate, select, build, repro), the loop (retrain, promote,
rollback), serving (serve, tls-cert, predict-batch), bench (bench, drift-eval, abstain-eval), docs
(readme), data (`textclf data add`) and auth (`textclf auth ...`, `textclf token`).
"""

from __future__ import annotations

import typer

from textclf.cli import auth, bench, data, docs, loop, monitor, pipeline, serving, spark
from textclf.cli.serving import serve_argv
from textclf.core.offline import go_offline

go_offline()
app = typer.Typer(help="Train, convert, serve and use text classifiers.", no_args_is_help=True)
for _room in (pipeline, loop, serving, spark, bench, docs, monitor):
    app.registered_commands.extend(_room.app.registered_commands)
app.add_typer(auth.app, name="auth")
app.add_typer(data.app, name="data", help="Bring your own labelled dataset.")
app.command()(auth.token)

__all__ = ["app", "serve_argv"]
