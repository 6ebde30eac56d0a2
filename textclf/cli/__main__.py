"""`python -m textclf.cli`: the same as the `textclf` command."""

from textclf.cli import app

app()
