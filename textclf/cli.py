"""The `textclf` command: one subcommand for every job a person runs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer
from rich.console import Console

from textclf import auth_cli, paths
from textclf.offline import go_offline

go_offline()
app = typer.Typer(help="Train, convert, serve and use text classifiers.", no_args_is_help=True)
app.add_typer(auth_cli.app, name="auth")
app.command()(auth_cli.token)
console = Console(stderr=True)

ParamsOption = typer.Option(Path("params.yaml"), "--params", help="Pipeline parameters file.")
ModelOption = typer.Option("logreg", "--model", "-m", help="Model family.")


def _fail(message: str, code: int = 1) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(code)


def _load(params_file: Path):
    from training.params import ParamsError, load_params

    try:
        return load_params(params_file)
    except ParamsError as exc:
        raise _fail(str(exc)) from None


def _check_family(name: str) -> None:
    from training.families import FAMILIES

    if name not in FAMILIES:
        raise _fail(f"unknown model family {name!r}; choose one of: {', '.join(FAMILIES)}")


def _print_json(data: object) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.command()
def validate(params_file: Path = ParamsOption) -> None:
    """Check the raw dataset and write the clean splits the pipeline trains on."""
    from training.validate import DataValidationError, prepare

    params = _load(params_file)
    try:
        report = prepare(params.data, paths.REPORTS / "data.json")
    except DataValidationError as exc:
        raise _fail(str(exc)) from None
    for warning in report.warnings:
        console.print(f"[yellow]warning:[/] {warning}")
    console.print(
        f"[green]data ok:[/] {report.train_rows} train / {report.test_rows} test rows, {report.labels} labels"
    )


@app.command()
def train(model: str = ModelOption, params_file: Path = ParamsOption) -> None:
    """Train a model family, evaluate it on the test split and track the run in MLflow."""
    _check_family(model)
    from training.train import train as run_training

    params = _load(params_file)
    if not params.data.prepared_train.is_file():
        raise _fail("no prepared data: run `textclf validate` (or `dvc repro`) first")
    with console.status(f"training {model}…"):
        result = run_training(model, params, paths.model_dir(model), paths.REPORTS)
    if result.champion:
        verdict = "now the champion"
    elif result.passed_gate:
        verdict = "registered; the current champion is at least as accurate"
    else:
        verdict = "registered, below the quality gate"
    console.print(
        f"[green]{model}:[/] accuracy {result.metrics['accuracy']:.4f}, "
        f"macro-F1 {result.metrics['macro_f1']:.4f} in {result.train_seconds:.1f}s; "
        f"version {result.registered_version} {verdict}"
    )


@app.command()
def export(model: str = ModelOption, params_file: Path = ParamsOption) -> None:
    """Convert a trained model to ONNX (fp32, and int8 where configured) and check parity."""
    _check_family(model)
    from converters.export import export as run_export
    from converters.parity import ParityError

    params = _load(params_file)
    if not (paths.model_dir(model) / "family.json").is_file():
        raise _fail(f"no trained {model} model: run `textclf train --model {model}` first")
    try:
        with console.status(f"exporting {model} to ONNX…"):
            results = run_export(params, paths.model_dir(model), paths.onnx_dir(model), paths.REPORTS)
    except ParityError as exc:
        raise _fail(str(exc)) from None
    for precision, r in results.items():
        console.print(
            f"[green]{model} {precision}:[/] labels agree on {r['label_agreement']:.2%}, "
            f"max gap {r['max_proba_diff']:.1e}, {r['onnx_bytes'] / 1e6:.1f} MB"
        )


@app.command()
def evaluate(model: str = ModelOption, params_file: Path = ParamsOption) -> None:
    """Evaluate every exported variant as the server runs it; write reports/eval/metrics_<model>.json."""
    _check_family(model)
    from training.data import load_texts_labels
    from training.evaluate import evaluate_model_folder, headline
    from training.validate import PREPARED_LABEL, PREPARED_TEXT

    params = _load(params_file)
    variants = sorted(p for p in paths.onnx_dir(model).glob("*") if p.is_dir())
    if not variants:
        raise _fail(f"no exported {model} model: run `textclf export --model {model}` first")
    texts, labels = load_texts_labels(params.data.prepared_test, PREPARED_TEXT, PREPARED_LABEL)
    results = {}
    for folder in variants:
        with console.status(f"evaluating {model} {folder.name}…"):
            plot = paths.REPORTS / f"confusion_onnx_{model}_{folder.name}.png"
            results[folder.name] = headline(evaluate_model_folder(folder, texts, labels, plot))
    paths.EVALUATIONS.mkdir(parents=True, exist_ok=True)
    out = paths.EVALUATIONS / f"metrics_{model}.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    _print_json(results)


@app.command()
def select(
    params_file: Path = ParamsOption,
    readme: Path | None = typer.Option(None, help="Also write the comparison table into this README."),
) -> None:
    """Compare every variant, choose the champion by the rule in params.yaml, register it in MLflow."""
    from training.compare import (
        NoChampionError,
        choose,
        collect,
        register_champion,
        table,
        update_readme,
        write_reports,
    )

    params = _load(params_file)
    missing = [f for f in params.families if not (paths.EVALUATIONS / f"metrics_{f}.json").is_file()]
    if missing:
        raise _fail(f"not evaluated yet: {', '.join(missing)} (run `textclf evaluate --model NAME`)")
    candidates = collect(params.families, paths.EVALUATIONS, paths.ARTIFACTS / "onnx")
    try:
        champion = choose(candidates, params)
    except NoChampionError as exc:
        raise _fail(str(exc)) from None
    write_reports(candidates, champion, paths.REPORTS)
    register_champion(params, champion)
    if readme is not None and not update_readme(readme, table(candidates, champion)):
        console.print(f"[yellow]warning:[/] {readme} is missing or has no comparison markers; not updated")
    typer.echo(table(candidates, champion))
    console.print(f"[green]champion:[/] {champion.variant} ({champion.model_tag})")


def _variant(name: str, params_file: Path) -> tuple[str, Path]:
    """A variant name, or `champion` (the MLflow champion alias) → (variant, model folder)."""
    if name == "champion":
        from training.tracking import champion_variant

        champion = champion_variant(_load(params_file).registry.model_name)
        if champion is None:
            raise _fail("no champion in MLflow yet: run `dvc repro` (or `textclf select`), or pass --model")
        name = champion
    folder = paths.variant_dir(name)
    if not (folder / "model.onnx").is_file():
        family = name.partition("-")[0]
        raise _fail(f"no exported model {name!r}: run `textclf export --model {family}` first")
    return name, folder


VariantOption = typer.Option(
    "champion",
    "--model",
    "-m",
    help="Variant: champion (MLflow alias), logreg, lstm, lstm-int8, bert, bert-int8.",
)


@app.command()
def build(model: str = VariantOption, params_file: Path = ParamsOption) -> None:
    """Save a variant to the BentoML model store and build the Bento that serves it."""
    from converters.bundle import build_bento

    variant, folder = _variant(model, params_file)
    with console.status("building the Bento…"):
        result = build_bento(folder, paths.bento_record(model))
    console.print(f"[green]built[/] {result['bento']} serving {variant} ({result['model']})")


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
    from bentos.settings import load_settings
    from converters.bundle import ensure_bento

    bentoml = str(Path(sys.executable).with_name("bentoml"))
    try:  # check the TLS options and the token keys before the (slow) Bento build
        serve_argv(bentoml, "-", host, port, ssl_certfile, ssl_keyfile)
        env = https_env(os.environ) if ssl_certfile else {}
        auth_config(load_settings()).check()
    except (TLSError, KeyRingError, ValueError) as exc:
        raise _fail(str(exc)) from None
    variant, folder = _variant(model, params_file)
    tags = ensure_bento(folder, paths.bento_record(model))
    argv = serve_argv(bentoml, tags["bento"], host, port, ssl_certfile, ssl_keyfile)
    scheme = "https" if ssl_certfile else "http"
    console.print(f"serving {tags['bento']} ({variant}: {tags['model']}) on {scheme}://{host}:{port}")
    os.environ.update(env, TEXTCLF_MODEL=tags["model"])
    os.execv(bentoml, argv)


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
        raise _fail(str(exc)) from None
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
    chunk_size: int = typer.Option(64, min=1, help="Texts per request."),
    concurrency: int = typer.Option(4, min=1, max=64, help="Requests in flight at once."),
    retries: int = typer.Option(3, min=0, help="Retries per failed chunk."),
    top_k: int | None = typer.Option(None, min=1, help="Also write the k best labels."),
    token: str | None = typer.Option(
        None, envvar="TEXTCLF_TOKEN", help="Bearer token with the classify scope (`textclf token`)."
    ),
) -> None:
    """Classify a file through a running server, streaming it in chunks (memory stays flat)."""
    from bentos.batch import BatchError, predict_file

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
        )
    except BatchError as exc:
        raise _fail(str(exc)) from None
    console.print(
        f"[green]{summary.rows_out}/{summary.rows_in} rows[/] written to {output} "
        f"({summary.retried} retried requests)"
    )
    if summary.failed_rows:
        console.print(
            f"[yellow]warning:[/] {summary.failed_rows} row(s) not classified; "
            "their reason is in the `error` column"
        )


def _env_pairs(pairs: list[str]) -> dict[str, str]:
    env = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _fail(f"--env takes KEY=VALUE, got {pair!r}")
        env[key] = value
    return env


@app.command()
def bench(
    model: str = typer.Option("bert-int8", "--model", "-m", help="Variant to benchmark (or champion)."),
    connections: int = typer.Option(64, min=1, max=1024, help="Concurrent clients (closed loop)."),
    duration: float = typer.Option(20.0, min=1, help="Seconds of load per target."),
    warmup: float = typer.Option(5.0, min=0, help="Seconds of load before each measurement."),
    batch_texts: int = typer.Option(32, min=2, help="Texts per request for the served_batched target."),
    targets: str = typer.Option(
        "raw,served,security,bentoml_batching,fastapi_ort,naive", help="Comma-separated targets to run."
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

    chosen = tuple(t.strip() for t in targets.split(",") if t.strip())
    unknown = sorted(set(chosen) - set(TARGETS))
    if unknown or not chosen:
        raise _fail(f"unknown targets {unknown}; choose from {', '.join(TARGETS)}")
    variant, folder = _variant(model, params_file)
    texts_file = _load(params_file).data.prepared_test
    if not texts_file.is_file():
        raise _fail(f"{texts_file} not found: run `dvc repro validate` first")
    texts, _ = load_texts_labels(texts_file, "text", "label")
    family = variant.partition("-")[0]
    checkpoint = paths.model_dir(family)
    with console.status("building the Bento from the current code…"):
        tags = build_bento(folder, paths.bento_record(variant))
    with tempfile.TemporaryDirectory(prefix="textclf-bench-") as workdir:
        config = BenchConfig(
            variant=variant,
            model_folder=folder,
            bento=tags["bento"],
            model_tag=tags["model"],
            texts=texts,
            workdir=Path(workdir),
            checkpoint=checkpoint if family == "bert" and (checkpoint / "config.json").is_file() else None,
            targets=chosen,
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
            raise _fail(str(exc)) from None
    write_report(data, output)
    typer.echo(json.dumps(data, indent=2))
    console.print(markdown(data))
    if readme is not None and not replace_block(readme, readme_block, markdown(data)):
        console.print(f"[yellow]warning:[/] {readme} has no {readme_block} block; not updated")


if __name__ == "__main__":
    app()
