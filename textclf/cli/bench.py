"""`textclf bench`: the served model against raw ONNX Runtime and plain servers, in one run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from textclf import paths
from textclf.cli.common import ParamsOption, console, fail, load, variant

app = typer.Typer()


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise fail(f"--env takes KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


@app.command()
def bench(
    model: str = typer.Option(
        "bert-int8", "--model", "-m", help="Variant to benchmark (family or family-int8), or champion."
    ),
    connections: int = typer.Option(64, min=1, max=1024, help="Concurrent clients (closed loop)."),
    duration: float = typer.Option(20.0, min=1, help="Seconds of load per target."),
    warmup: float = typer.Option(5.0, min=0, help="Seconds of load before each measurement."),
    batch_texts: int = typer.Option(32, min=2, help="Texts per request for the served_batched target."),
    targets: str = typer.Option(
        "raw,served,bentoml_route,security,bentoml_batching,fastapi_ort,pytriton,naive",
        help="Comma-separated targets to run.",
    ),
    secure: bool = typer.Option(
        True, "--secure/--insecure", help="Serve with the security layer on (as shipped) or off."
    ),
    env: list[str] = typer.Option(
        [], "--env", help="KEY=VALUE for the served Bento (e.g. TEXTCLF_SUB_BATCH=16)."
    ),
    output: Path = typer.Option(
        Path("reports/bench.json"), "--output", "-o", help="Where to write the JSON."
    ),
    readme: Path | None = typer.Option(None, help="Also write the table into this README's bench block."),
    readme_block: str = typer.Option(
        "bench", help="Name of the README block to write (<!-- NAME:start -->)."
    ),
    params_file: Path = ParamsOption,
) -> None:
    """Throughput and latency of the served model vs raw ONNX Runtime and plain servers (loopback)."""
    import tempfile

    from bench.load import LoadError
    from bench.processes import ServerError
    from bench.report import markdown
    from bench.run import TARGETS, Bench, BenchConfig, write_report
    from converters.bundle import build_bento
    from textclf.readme import replace_block
    from training.data import load_texts_labels

    wanted = tuple(t.strip() for t in targets.split(",") if t.strip())
    unknown = sorted(set(wanted) - set(TARGETS))
    if unknown or not wanted:
        raise fail(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    chosen, folder = variant(model, params_file)
    texts_file = load(params_file).data.prepared_test
    if not texts_file.is_file():
        raise fail(f"{texts_file} not found: run `dvc repro validate` first")
    texts, _ = load_texts_labels(texts_file, "text", "label")
    checkpoint = paths.model_dir(chosen.family)  # the naive target runs a transformers checkpoint
    naive_checkpoint = (
        checkpoint if chosen.family == "bert" and (checkpoint / "config.json").is_file() else None
    )
    with console.status("building the Bento from the current code…"):
        tags = build_bento(folder, paths.bento_record(chosen.name))
    with tempfile.TemporaryDirectory(prefix="textclf-bench-") as workdir:
        config = BenchConfig(
            variant=chosen.name,
            model_folder=folder,
            bento=tags["bento"],
            model_tag=tags["model"],
            texts=texts,
            workdir=Path(workdir),
            checkpoint=naive_checkpoint,
            targets=wanted,
            connections=connections,
            duration_s=duration,
            warmup_s=warmup,
            batch_texts=batch_texts,
            served_env=_env_pairs(env),
            secure=secure,
            command=" ".join(["textclf", "bench", *sys.argv[2:]]),
        )
        try:
            data = Bench(config, log=lambda line: console.print(f"[cyan]bench[/] {line}")).run()
        except (LoadError, ServerError) as exc:
            raise fail(str(exc)) from None
    write_report(data, output)
    typer.echo(json.dumps(data, indent=2))
    console.print(markdown(data))
    if readme is not None and not replace_block(readme, readme_block, markdown(data)):
        console.print(f"[yellow]warning:[/] {readme} has no {readme_block} block; not updated")
