"""`textclf readme`: rewrite (or check) the README's generated tables from their sources."""

from __future__ import annotations

from pathlib import Path

import typer

from textclf import paths
from textclf.cli.common import console, fail

app = typer.Typer()


@app.command()
def readme(
    file: Path = typer.Option(Path("README.md"), "--readme", help="The README to write or check."),
    check: bool = typer.Option(False, "--check", help="Change nothing; exit 1 when a table is stale."),
) -> None:
    """Regenerate the README's tables (comparison, throughput, settings) from reports/ and the code."""
    from textclf.readme import generated, read_block, replace_block, stale_blocks

    if check:
        stale = stale_blocks(file, paths.REPORTS)
        if stale:
            raise fail(f"{file}: stale generated block(s): {', '.join(stale)}; run `textclf readme`")
        console.print(f"[green]{file} matches reports/ and the settings[/]")
        return
    for name, text in generated(paths.REPORTS).items():
        if read_block(file, name) is None:
            console.print(f"[yellow]warning:[/] {file} has no {name} block; not written")
        elif replace_block(file, name, text):
            console.print(f"wrote the {name} block")
