"""Ratios, targets and the tables `textclf bench` prints (terminal) and writes (JSON, README block)."""

from __future__ import annotations

BASELINES = ("fastapi_ort", "fastapi_ort_1worker")  # simple servers; ratios use the faster one of a run
BEST_BASELINE = "fastapi_ort_best"
RATIOS = {
    "served_single/raw": ("served_single", "raw"),
    "served_batched/raw": ("served_batched", "raw"),
    "served_single/fastapi_ort": ("served_single", BEST_BASELINE),
    "served_single/naive": ("served_single", "naive"),
    "served_single/pytriton": ("served_single", "pytriton"),
    "served_single/bentoml_route": ("served_single", "bentoml_route_single"),
    "served_single/bentoml_batching": ("served_single", "bentoml_batching_single"),
    "security_on/security_off": ("security_on", "security_off"),
    "monitoring_on/monitoring_off": ("monitoring_on", "monitoring_off"),
    "overhead_on/overhead_off": ("overhead_on", "overhead_off"),
    "pinning_on/pinning_off": ("pinning_on", "pinning_off"),
    "gather_on/gather_off": ("gather_on", "gather_off"),
    "batch/served_batched": ("batch", "served_batched"),
    "spark/served_batched": ("spark", "served_batched"),
}
TARGETS = {
    "served_single/raw": 0.8,
    "served_batched/raw": 0.95,
    "served_single/fastapi_ort": 1.3,  # against the best simple server of the run
    "served_single/naive": 5.0,
    "security_on/security_off": 0.95,
    "monitoring_on/monitoring_off": 0.95,
    "overhead_on/overhead_off": 0.93,
    "batch/served_batched": 0.9,  # `textclf predict-batch` keeps the server as busy as 64 wrk connections
}
HALF_LOAD_P99_MS = 50.0
HALF_LOAD_VERDICT = "half_load_p99"
DESCRIPTIONS = {
    "raw": "ONNX Runtime in-process, sorted by length, best batch and parallelism (the limit)",
    "served_single": "Bento (`bentoml serve`, security on), 1 text per request",
    "served_batched": "Bento (`bentoml serve`), 32 texts per request",
    "served_half_load": "Bento, 1 text per request, at half the saturated rate",
    "bentoml_route_single": "same Bento as before the front door: BentoML's API route and HTTP metrics",
    "security_on": "same Bento, security on (token check, rate limit, audit line), 1 text per request",
    "security_off": "same Bento, security layer off, measured in rounds alternating with the above",
    "monitoring_on": "same Bento, monitoring on (model metrics, profiles, drift check), security on",
    "monitoring_off": "same Bento, monitoring off, security on, in rounds alternating with the above",
    "overhead_on": "same Bento, security and monitoring on, 1 text per request",
    "overhead_off": "same Bento, security and monitoring off, in rounds alternating with the above",
    "pinning_on": "same Bento, each worker pinned to its own CPU (`TEXTCLF_PIN_WORKERS=auto`, as shipped)",
    "pinning_off": "same Bento, workers left to the scheduler, in rounds alternating with the above",
    "gather_on": "same Bento, a lane briefly holds queued texts for the clients it answered (as shipped)",
    "gather_off": "same Bento, `TEXTCLF_GATHER_MS=0`, in rounds alternating with the above",
    "bentoml_batching_single": "same Bento on BentoML's batchable dispatcher, 1 text per request",
    "bentoml_batching_half_load": "same, at half its saturated rate",
    "fastapi_ort": "FastAPI + same ONNX file, a uvicorn worker per core (1 ORT thread), sorted chunks of 8",
    "fastapi_ort_1worker": "same, 1 uvicorn worker with ONNX Runtime on every core",
    "pytriton": "PyTriton 0.7, Triton dynamic batching (max 64, 2 ms), same ORT code, an instance per core",
    "naive": "FastAPI + transformers pipeline (PyTorch), 1 text per request",
    "batch": "`textclf predict-batch` (the CLI, defaults) on a CSV through the Bento as shipped",
    "spark": "`textclf predict-spark`'s path on `local[2]`, Parquet in and out, after a warm-up run",
}
ROWS = tuple(DESCRIPTIONS)  # the table's rows, in this order


def best_baseline(results: dict[str, dict | None]) -> dict | None:
    """The faster of the simple servers measured in this run (None when none was)."""
    measured = [r for r in (results.get(name) for name in BASELINES) if r]
    return max(measured, key=lambda r: r["texts_per_s"], default=None)


def median_ratio(pairs: list[float]) -> float:
    """The median of per-round ratios (mean of the middle two for an even count)."""
    ordered = sorted(pairs)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def ratios(results: dict[str, dict | None]) -> dict[str, float | None]:
    """Throughput ratios; a target measured in back-to-back round pairs (security; served against raw)
    is the median of its pairs' ratios, so the drift of a shared machine between rounds and one odd
    round do not decide it."""
    results = {**results, BEST_BASELINE: best_baseline(results)}
    out: dict[str, float | None] = {}
    for name, (top, bottom) in RATIOS.items():
        a, b = results.get(top), results.get(bottom)
        pairs = (a.get("paired_with") or {}).get(bottom) if a else None
        if pairs and b:
            out[name] = round(median_ratio(pairs), 3)
        else:
            out[name] = (
                round(a["texts_per_s"] / b["texts_per_s"], 3) if a and b and b["texts_per_s"] else None
            )
    return out


def verdicts(results: dict[str, dict | None], measured: dict[str, float | None]) -> dict[str, bool | None]:
    """Which targets were met (None where the run did not measure what a target needs)."""
    out: dict[str, bool | None] = {
        name: None if measured.get(name) is None else measured[name] >= floor  # type: ignore[operator]
        for name, floor in TARGETS.items()
    }
    half = results.get("served_half_load")
    out[HALF_LOAD_VERDICT] = None if half is None else half["p99_ms"] <= HALF_LOAD_P99_MS
    out["zero_errors"] = all(r.get("errors", 0) == 0 for r in results.values() if r)
    return out


def _cell(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 10 else f"{value:.2f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _cpu_table(results: dict[str, dict | None]) -> list[str]:
    """Server CPU per request, and what of it is spent outside the model (see bench/cpu.py)."""
    timed = [n for n in ROWS if (results.get(n) or {}).get("outside_model_us_per_request") is not None]
    if not timed:
        return []
    lines = [
        "",
        "| target | server CPU µs / request | outside the model µs / request | event loops µs / request |",
        "|---|---:|---:|---:|",
    ]
    for name in timed:
        r = results[name] or {}
        cpu, outside = r["server_cpu_us_per_request"], r["outside_model_us_per_request"]
        main = r.get("main_threads_cpu_us_per_request")
        lines.append(f"| {name} | {cpu:,.0f} | {outside:,.0f} | {'—' if main is None else f'{main:,.0f}'} |")
    return lines


def soak_table(soak: dict | None) -> list[str]:
    """Resident memory of every server process at the start and end of the soak target's load."""
    if not soak:
        return []
    first, last = soak["samples"][0]["rss_mb"], soak["samples"][-1]["rss_mb"]
    lines = [
        "",
        f"| process (soak: {soak['seconds'] / 60:.0f} min, {soak['texts_per_s']:,.0f} texts/s, "
        f"{soak['errors']} errors) | RSS at start, MB | at end, MB | growth, MB |",
        "|---|---:|---:|---:|",
    ]
    for name, mb in first.items():
        end = last.get(name)
        grown = "gone" if end is None else f"{end - mb:+.1f}"
        lines.append(f"| {name} | {mb:.1f} | {'—' if end is None else f'{end:.1f}'} | {grown} |")
    return lines


def switch_table(switch: dict | None) -> list[str]:
    """The served model switched back and forth under load: answers, time to switch, worker memory."""
    if not switch:
        return []
    load = switch["load"]
    workers = [name for name in switch["samples"][0]["rss_mb"] if not name.startswith("bentoml")]
    lines = [
        "",
        f"| after (switch target: {switch['switches']} switches under wrk, {load['requests']:,} requests, "
        f"{load['errors']} errors) | now serving | switched in, s | "
        + " | ".join(f"{name} RSS, MB" for name in workers)
        + " |",
        "|---|---|---:|" + "---:|" * len(workers),
    ]
    for i, sample in enumerate(switch["samples"]):
        rss = " | ".join(f"{sample['rss_mb'].get(name, float('nan')):.1f}" for name in workers)
        step = "start" if i == 0 else f"switch {i}"
        lines.append(f"| {step} | `{sample['serving']}` | {sample['switch_s']:.1f} | {rss} |")
    return lines


def batch_table(batch: dict | None) -> list[str]:
    """The batch target: predict-batch's throughput runs, each next to served_batched's load measured just
    before it on the same server, and the client's peak memory at each input size."""
    if not batch:
        return []
    lines = [
        "",
        "| run | predict-batch input rows | model | texts/s classifying | served_batched's load just before, "
        "texts/s | / that load | / served_batched | wall s (all in) | client peak RSS, MB |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for run in batch["runs"]:
        load = run.get("paired_texts_per_s")
        pair = round(run["texts_per_s"] / load, 3) if load else None
        shown_load = "—" if load is None else f"{load:,.0f}"
        lines.append(
            f"| {run.get('purpose', '—')} | {run['rows']:,} | `{run['model']}` | {run['texts_per_s']:,.0f} | "
            f"{shown_load} | {_cell(pair)} | {_cell(run.get('ratio_to_served_batched'))} | "
            f"{run['wall_s']:,.1f} | {run['peak_rss_mb']:.1f} |"
        )
    pairs = (batch.get("paired_with") or {}).get("served_batched")
    if pairs:
        lines += [
            "",
            f"`batch/served_batched` is the median of the {len(pairs)} pairs ({', '.join(map(str, pairs))}): "
            "each predict-batch run against served_batched's own load (wrk, the same requests) measured "
            "on the same server right before it.",
        ]
    return lines


def raw_pairs_lines(results: dict[str, dict | None]) -> list[str]:
    """How the served/raw ratios were paired (the served target's rounds against raw)."""
    lines: list[str] = []
    for name in ("served_single", "served_batched"):
        result = results.get(name) or {}
        rounds = result.get("raw_rounds")
        if rounds:
            shown = ", ".join(
                f"{r['served']:,.0f} / {r['raw']:,.0f} = {p}"
                for r, p in zip(rounds, result["paired_with"]["raw"], strict=True)
            )
            lines += [
                "",
                f"`{name}/raw` is the median of {len(rounds)} round pairs on the same server: {shown}.",
            ]
    if lines:
        lines += [
            "",
            "Each pair: the raw limit's best setting measured again (the server idle), then a quarter of the "
            "duration of that target's load; the table's rows above are the longer runs before them.",
        ]
    return lines


def spark_lines(spark: dict | None) -> list[str]:
    """The spark target's fixed costs and its labels against the served Bento's."""
    if not spark:
        return []
    return [
        "",
        f"`spark`: {spark['rows']:,} rows on `{spark['master']}` ({spark['workers']} Python workers, "
        f"{spark['sessions_per_worker']} ONNX Runtime session each over every run); Spark's start-up "
        f"{spark['startup_s']:.1f} s and a warm-up run of {spark['warmup_s']:.1f} s come before the steady "
        f"figure; its labels equal the served Bento's on {spark['labels_equal_served']:,} of "
        f"{spark['labels_compared']:,} test texts.",
    ]


def _security_parts_table(parts: dict | None) -> list[str]:
    """The security layer's own CPU per request, part by part (bench/security_parts.py)."""
    if not parts:
        return []
    lines = ["", "| security layer, in process | CPU µs / request | of which this part |", "|---|---:|---:|"]
    for step, total in parts["steps_us"].items():
        part = parts["parts_us"].get(step)
        lines.append(f"| {step} | {total:.1f} | {'—' if part is None else f'{part:.1f}'} |")
    return lines


def _planner_table(planner: dict | None) -> list[str]:
    """Model CPU per text on served-like batches, by the sub-batch planner's call cost."""
    if not planner:
        return []
    costs = planner["us_per_text"]
    head = " | ".join("fixed 8" if cost == "0" else cost for cost in costs)
    return [
        "",
        f"| `TEXTCLF_CALL_COST_TOKENS` ({planner['batch']} random texts per batch) | {head} |",
        "|---|" + "---:|" * len(costs),
        "| model CPU µs per text | " + " | ".join(f"{v:,.0f}" for v in costs.values()) + " |",
    ]


def markdown(report: dict) -> str:
    """The README's performance table, made from one bench report."""
    results = report["results"]
    lines = [
        "| target | what | texts/s | p50 ms | p95 ms | p99 ms | errors |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name in ROWS:
        r = results.get(name)
        if r is None:
            continue
        cells = [r.get(k) for k in ("texts_per_s", "p50_ms", "p95_ms", "p99_ms", "errors")]
        lines.append(f"| {name} | {DESCRIPTIONS[name]} | " + " | ".join(_cell(c) for c in cells) + " |")
    lines += ["", "| ratio | measured | target | met |", "|---|---:|---:|---|"]
    for name in RATIOS:
        value = report["ratios"].get(name)
        floor = TARGETS.get(name)
        met = report["targets_met"].get(name)
        shown = None if met is None else "✅" if met else "❌"
        wanted = "—" if floor is None else f"≥ {floor}"
        lines.append(f"| {name} | {_cell(value)} | {wanted} | {_cell(shown)} |")
    half = results.get("served_half_load")
    if half:
        met = report["targets_met"][HALF_LOAD_VERDICT]
        lines.append(
            f"| p99 at half load ({half.get('offered_fraction', 0):.2f} of saturation) | "
            f"{half['p99_ms']:.1f} ms | ≤ {HALF_LOAD_P99_MS:.0f} ms | {'✅' if met else '❌'} |"
        )
    lines += raw_pairs_lines(results)
    lines += _cpu_table(results)
    lines += _security_parts_table(report.get("security_parts"))
    lines += _planner_table(report.get("planner"))
    lines += batch_table(results.get("batch"))
    lines += spark_lines(results.get("spark"))
    lines += soak_table(report.get("soak"))
    lines += switch_table(report.get("switch"))
    machine = report["machine"]
    raw = results.get("raw")
    best = (
        f"; raw best: batch {raw['batch']}, {raw['processes']} process(es) x {raw['lanes']} parallel "
        f"call(s) x {raw['threads']} thread(s){', pinned one per CPU' if raw.get('pinned') else ''}"
        if raw
        else ""
    )
    lines += [
        "",
        f"Measured {report['when']} on {machine['cpu']} ({machine['cores']} cores), "
        f"model `{report['model']['variant']}`, {report['settings']['connections']} connections, "
        f"{report['settings']['duration_s']:.0f} s per target{best}. Command: `{report['command']}`.",
    ]
    return "\n".join(lines)


SCALING_TARGETS = ("served_single", "served_batched", "served_half_load")


def scaling_markdown(runs: list[dict]) -> str:
    """One row per `textclf bench --targets served --env TEXTCLF_WORKERS=N` report: how the server scales
    with worker processes on this machine."""
    lines = [
        "| workers x lanes | served_single texts/s | served_batched texts/s | p99 at half load | "
        "server CPU µs / request (1 text) |",
        "|---|---:|---:|---:|---:|",
    ]
    for run in sorted(runs, key=lambda r: int(r["settings"]["served_env"].get("TEXTCLF_WORKERS", "0"))):
        env, results = run["settings"]["served_env"], run["results"]
        single, batched, half = (results.get(n) or {} for n in SCALING_TARGETS)
        cpu = single.get("server_cpu_us_per_request")
        lines.append(
            f"| {env.get('TEXTCLF_WORKERS', 'default')} x {env.get('TEXTCLF_LANES', 'default')} | "
            f"{_cell(single.get('texts_per_s'))} | {_cell(batched.get('texts_per_s'))} | "
            f"{_cell(half.get('p99_ms'))} ms | {_cell(cpu)} |"
        )
    first = runs[0] if runs else None
    if first:
        machine = first["machine"]
        lines += [
            "",
            f"Measured {first['when']} on {machine['cpu']} ({machine['cores']} cores), model "
            f"`{first['model']['variant']}`, {first['settings']['connections']} connections, "
            f"{first['settings']['duration_s']:.0f} s per target. "
            f"Command of the first row: `{first['command']}`; the others differ only in `TEXTCLF_WORKERS`.",
        ]
    return "\n".join(lines)
