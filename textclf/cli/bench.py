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
        "raw,served,bentoml_route,security,monitoring,overhead,pinning,gather,bentoml_batching,fastapi_ort,"
        "pytriton,naive,batch,spark",
        help="Comma-separated targets to run.",
    ),
    soak: float = typer.Option(600.0, min=10, help="Seconds of load for the soak target (memory over time)."),
    switch_to: str = typer.Option(
        "lstm-int8", "--switch-to", help="The switch target's other model: a variant with the same labels."
    ),
    batch_rows: str = typer.Option(
        "10000,1000000",
        help="Input rows of the batch target's memory runs (comma-separated); its throughput runs are sized "
        "to last half of --duration each, at the rate of the served_batched round just before.",
    ),
    batch_memory_model: str = typer.Option(
        "logreg",
        help="Variant served for the batch target's later (bigger) sizes: client memory does not depend on "
        "the model, and a slow one would take long; '' = the benchmarked model for every size.",
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
    other = None
    if "switch" in wanted:
        from converters.store import save_to_store

        other = save_to_store(variant(switch_to, params_file)[1])
        if other == tags["model"]:
            raise fail(f"--switch-to {switch_to} is the benchmarked model itself: choose another variant")
    try:
        rows = tuple(int(x) for x in batch_rows.split(",") if x.strip())
    except ValueError:
        raise fail(f"--batch-rows takes comma-separated whole numbers, got {batch_rows!r}") from None
    if "batch" in wanted and (not rows or min(rows) < 1):
        raise fail(f"--batch-rows needs at least one size of 1 row or more, got {batch_rows!r}")
    memory_bento = None
    if "batch" in wanted and batch_memory_model and len(rows) > 1:
        memory_variant, memory_folder = variant(batch_memory_model, params_file)
        if memory_variant.name != chosen.name:
            built = build_bento(memory_folder, paths.bento_record(memory_variant.name))
            memory_bento = (built["bento"], built["model"])
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
            soak_s=soak,
            switch_to=other,
            batch_rows=rows,
            batch_memory_bento=memory_bento,
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


@app.command("drift-eval")
def drift_eval(
    model: str = typer.Option(
        "champion", "--model", "-m", help="Variant (family or family-int8), or champion."
    ),
    window: int = typer.Option(500, min=10, help="Texts per window (the headline rates)."),
    windows: int = typer.Option(20, min=1, help="Windows per shift and window size."),
    accuracy_window: int = typer.Option(1000, min=10, help="Texts per window for the accuracy estimate."),
    alpha: float | None = typer.Option(
        None, help="False-alarm rate of one check (default: TEXTCLF_DRIFT_ALPHA)."
    ),
    sizes: str = typer.Option(
        "10,20,30,50,100,200,500,1000",
        help="Window sizes tried for the smallest window that catches each shift.",
    ),
    held_out_classes: int = typer.Option(
        15, min=1, help="Classes the unseen-intents model is trained without."
    ),
    seed: int = typer.Option(0, help="Seed of every sample and shift."),
    output: Path = typer.Option(
        Path("reports/drift_eval.json"), "--output", "-o", help="Where to write the JSON."
    ),
    readme: Path | None = typer.Option(
        None, help="Also write the table into this README's drift_eval block."
    ),
    params_file: Path = ParamsOption,
) -> None:
    """Measure the drift check: false alarms, detection per shift, label-free accuracy estimate."""
    from bench.drift_eval import EvalData, evaluate, markdown
    from monitoring.profiles import read_reference
    from textclf.core.contract import REFERENCE_FILE
    from textclf.core.runtime import OnnxClassifier
    from textclf.core.settings import load_settings

    try:
        grid = sorted({int(x) for x in sizes.split(",") if x.strip()})
    except ValueError:
        raise fail(f"--sizes takes comma-separated whole numbers, got {sizes!r}") from None
    if not grid or grid[0] < 2:
        raise fail(f"--sizes needs window sizes of at least 2 texts, got {sizes!r}")
    chosen, folder = variant(model, params_file)
    if not (folder / REFERENCE_FILE).is_file():
        raise fail(f"{folder} has no {REFERENCE_FILE}: re-export it (`dvc repro export@{chosen.family}`)")
    (train_texts, train_labels), (test_texts, test_labels) = _prepared_splits(params_file)
    if held_out_classes >= len(set(train_labels)) - 1:
        raise fail(f"--held-out-classes must leave at least 2 of the {len(set(train_labels))} classes seen")
    data = evaluate(
        OnnxClassifier(folder),
        read_reference(folder / REFERENCE_FILE),
        EvalData(train_texts, train_labels, test_texts, test_labels),
        windows=windows,
        window=window,
        accuracy_window=accuracy_window,
        sizes=grid,
        held_out_classes=held_out_classes,
        alpha=load_settings().drift_alpha if alpha is None else alpha,
        seed=seed,
        log=lambda line: console.print(f"[cyan]drift-eval[/] {line}"),
    )
    data = {"model": chosen.name, "command": " ".join(["textclf", "drift-eval", *sys.argv[2:]]), **data}
    _write_eval(data, output, readme, "drift_eval", markdown(data))


@app.command("abstain-eval")
def abstain_eval(
    held_out: int = typer.Option(10, min=1, help="Intents held out of training: the out-of-scope texts."),
    target_precision: float = typer.Option(
        0.95, min=0.01, max=1.0, help="Precision the abstention threshold is fitted for (validation split)."
    ),
    families: str = typer.Option("logreg,lstm,bert", help="Comma-separated model families to build."),
    overrides: list[str] = typer.Option(
        [], "--set", help="A parameter changed for this run, section.key=value (e.g. bert.epochs=4)."
    ),
    seed: int = typer.Option(0, help="Seed of the held-out draw."),
    workdir: Path = typer.Option(
        Path("artifacts/abstain-eval"), help="Private project folder (own MLflow store and BentoML home)."
    ),
    output: Path = typer.Option(
        Path("reports/abstain_eval.json"), "--output", "-o", help="Where to write the JSON."
    ),
    readme: Path | None = typer.Option(
        None, help="Also write the table into this README's abstain_eval block."
    ),
    params_file: Path = ParamsOption,
) -> None:
    """Measure abstention: train every family without some intents, then AUROC, FPR at 95% recall and
    in-scope accuracy with abstention on the test split (long: it trains each family)."""
    import yaml

    from bench.abstain_eval import Split, evaluate, markdown
    from training.families.factory import FAMILIES

    chosen = [f.strip() for f in families.split(",") if f.strip()]
    unknown = [f for f in chosen if f not in FAMILIES]
    if not chosen or unknown:
        raise fail(f"unknown model families {unknown or 'none given'}; use some of {', '.join(FAMILIES)}")
    train, test = (Split(*split) for split in _prepared_splits(params_file))
    try:
        data = evaluate(
            yaml.safe_load(params_file.read_text(encoding="utf-8")),
            train,
            test,
            workdir=workdir.resolve(),
            families=chosen,
            held_out=held_out,
            target_precision=target_precision,
            seed=seed,
            overrides=overrides,
            command=" ".join(["textclf", "abstain-eval", *sys.argv[2:]]),
            log=lambda line: console.print(f"[cyan]abstain-eval[/] {line}"),
        )
    except (ValueError, RuntimeError) as exc:
        raise fail(str(exc)) from None
    _write_eval(data, output, readme, "abstain_eval", markdown(data))


def _prepared_splits(params_file: Path) -> tuple[tuple[list[str], list[str]], tuple[list[str], list[str]]]:
    """The validated train and test splits (texts, labels), or a clear failure saying what to run."""
    from textclf.core.records import RecordFormatError
    from training.data import load_texts_labels

    p = load(params_file).data
    for split in (p.prepared_train, p.prepared_test):
        if not split.is_file():
            raise fail(f"{split} not found: run `dvc repro validate` first")
    try:
        return (
            load_texts_labels(p.prepared_train, "text", "label"),
            load_texts_labels(p.prepared_test, "text", "label"),
        )
    except (OSError, RecordFormatError) as exc:
        raise fail(f"cannot read the prepared splits: {exc}") from None


def _write_eval(data: dict, output: Path, readme: Path | None, block: str, table: str) -> None:
    """An evaluation's JSON report, its table on the console, and its README block when asked."""
    from textclf.readme import replace_block

    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    console.print(table)
    if readme is not None and not replace_block(readme, block, table):
        console.print(f"[yellow]warning:[/] {readme} has no {block} block; not updated")
