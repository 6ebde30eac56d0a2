"""Run every target of `textclf bench` one after the other on this machine and build the report."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench import report
from bench.batch import run_predict_batch, write_input
from bench.cpu import add_outside_model, model_us_per_text, tree_cpu_split, tree_rss_mb
from bench.load import LoadError, LoadResult, WrkRun, run_wrk, write_bodies
from bench.peers import (
    ensure_pytriton,
    pytriton_argv,
    pytriton_env,
    triton_infer_url,
    triton_ready_url,
    write_triton_bodies,
)
from bench.processes import free_port, running
from bench.raw import measure_best, measure_planner, measure_raw, remeasure
from bench.report import median_ratio
from bench.rounds import SECURITY_OFF, combine_rounds, secure_env
from bench.security_parts import measure_security_parts
from textclf.core.served_model import write_served_model

TARGETS = (
    "raw",
    "served",
    "bentoml_route",
    "security",
    "monitoring",
    "overhead",
    "pinning",
    "gather",
    "bentoml_batching",
    "fastapi_ort",
    "pytriton",
    "naive",
    "soak",
    "switch",
    "batch",
    "spark",
)
SOAK_SLICES = 10  # memory is read between this many equal slices of the soak target's load
# alternating on/off rounds of the security, monitoring, overhead, pinning and gather targets
# (¼ of --duration each)
PAIRED_ROUNDS = 6
# served/raw round pairs of the served target (a raw measurement, then a quarter of --duration of load)
RAW_PAIRS = 3
# the batch target's alternating rounds: served_batched's load, then predict-batch (half of --duration each)
BATCH_PAIRS = 3
# monitoring off: no model metrics, no profiles, no drift check (and no /metrics page)
MONITORING_OFF = {"TEXTCLF_METRICS": "false", "TEXTCLF_PROFILES": "false"}
ROOT = Path(__file__).resolve().parent.parent
BEFORE_FRONT_DOOR_ENV = {"TEXTCLF_CLASSIFY_ROUTE": "bentoml", "TEXTCLF_BENTOML_METRICS": "true"}
BENTOML_BATCHING_ENV = {
    "TEXTCLF_BATCHER": "bentoml",
    "TEXTCLF_WORKERS": "1",
    "TEXTCLF_MAX_BATCH_SIZE": "64",
    "TEXTCLF_MAX_LATENCY_MS": "20000",
}


@dataclass
class BenchConfig:
    """What to measure and how hard; the defaults are the documented benchmark."""

    variant: str
    model_folder: Path  # the ONNX model folder the Bento serves
    bento: str  # Bento tag to `bentoml serve`
    model_tag: str  # BentoML model tag the Bento serves
    texts: list[str]
    workdir: Path  # request bodies and server logs
    checkpoint: Path | None = None  # fine-tuned transformers checkpoint, for the naive target
    targets: tuple[str, ...] = TARGETS
    connections: int = 64
    duration_s: float = 20.0
    warmup_s: float = 5.0
    batch_texts: int = 32
    raw_seconds: float = 2.0
    soak_s: float = 600.0  # the soak target's load (memory over time)
    switch_to: str | None = None  # the switch target's other model (a store tag with the same labels)
    switches: int = 6  # model changes under load in the switch target
    # input sizes of the batch target's memory runs (its throughput runs are sized to their paired load)
    batch_rows: tuple[int, ...] = (10_000, 1_000_000)
    # the batch target's model for sizes after the first (memory does not depend on the model; a slow one
    # would take long): a Bento and its model tag; None = the benchmarked model for every size
    batch_memory_bento: tuple[str, str] | None = None
    spark_rows: int = 30_000  # the spark target's input (the texts repeated), Parquet
    served_env: dict[str, str] = field(default_factory=dict)  # extra env for `bentoml serve`
    authorization: str = ""  # Authorization header value for the served targets; "" = mint one
    secure: bool = True  # serve as shipped (tokens, rate limit, audit); False = security layer off
    command: str = "textclf bench"


def _machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import bentoml
    import onnxruntime

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "bentoml": bentoml.__version__,
    }


class Bench:
    """One benchmark run; `log` receives a line per step (the CLI shows them)."""

    def __init__(self, config: BenchConfig, log: Callable[[str], None] = print):
        self.config = config
        self.log = log
        self.single = write_bodies(config.texts, 1, config.workdir / "bodies-1.jsonl")
        self.batched = write_bodies(config.texts, config.batch_texts, config.workdir / "bodies-n.jsonl")
        self.probe_body = self.single.read_text(encoding="utf-8").splitlines()[0]
        self._pids: dict[str, int] = {}  # a running server's /classify URL → its process (group) id
        self.secure_env: dict[str, str] = dict(SECURITY_OFF)
        self.authorization = config.authorization
        if config.secure:
            self.secure_env, minted = secure_env(config.workdir)
            self.authorization = self.authorization or minted

    def _load(self, url: str, bodies: Path, per_request: int, seconds: float, **kw) -> LoadResult:
        return run_wrk(
            url,
            bodies,
            texts_per_request=per_request,
            connections=self.config.connections,
            duration_s=seconds,
            **kw,
        )

    def _drain(self, url: str, probe: str, authorization: str = "", timeout_s: float = 120) -> None:
        """Wait until requests left over by the last load run are answered: a probe queues behind them,
        and a quick answer means the server is idle again (else the next run pays for the last one)."""
        body = probe
        headers = {"content-type": "application/json"}
        if authorization:
            headers["authorization"] = authorization
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                httpx.post(url, content=body, headers=headers, timeout=timeout_s)
            except httpx.HTTPError:
                time.sleep(0.5)
                continue
            if time.monotonic() - started < 0.25:
                return

    def _saturate(
        self,
        name: str,
        url: str,
        bodies: Path,
        per_request: int,
        seconds: float | None = None,
        warmup: bool = True,
        **kw,
    ) -> dict:
        probe = _first_line(bodies)
        self._drain(url, probe, **kw)
        if warmup and self.config.warmup_s > 0:
            self._load(url, bodies, per_request, self.config.warmup_s, **kw)
            self._drain(url, probe, **kw)
        pid = self._pids.get(url)
        main_before, other_before = tree_cpu_split(pid) if pid else (0.0, 0.0)
        result = self._load(url, bodies, per_request, seconds or self.config.duration_s, **kw)
        data = result.as_dict()
        if pid and result.requests:
            main_after, other_after = tree_cpu_split(pid)
            main_us = (main_after - main_before) * 1e6 / result.requests
            other_us = (other_after - other_before) * 1e6 / result.requests
            data["server_cpu_us_per_request"] = round(main_us + other_us, 1)
            data["main_threads_cpu_us_per_request"] = round(main_us, 1)
        self.log(
            f"{name}: {result.texts_per_s:,.0f} texts/s, p99 {result.p99_ms:.0f} ms, {result.errors} errors"
        )
        return data

    def _half_load(self, name: str, url: str, saturated: dict, **kw) -> dict:
        """Closed loop with random pauses, calibrated so the offered rate is half the saturated one."""
        c = self.config.connections
        target = saturated["requests_per_s"] / 2
        think = c * 1000 / target
        self._drain(url, self.probe_body, **kw)
        probe = self._load(url, self.single, 1, max(3.0, self.config.duration_s / 3), think_ms=think, **kw)
        if probe.requests_per_s > 0:  # rate = c / (think + latency): solve for the pause
            latency_ms = c * 1000 / probe.requests_per_s - think
            think = max(0.0, c * 1000 / target - latency_ms)
        self._drain(url, self.probe_body, **kw)
        result = self._load(url, self.single, 1, self.config.duration_s, think_ms=think, **kw).as_dict()
        result["offered_fraction"] = round(result["requests_per_s"] / saturated["requests_per_s"], 3)
        self.log(
            f"{name}: {result['requests_per_s']:,.0f} req/s "
            f"({result['offered_fraction']:.2f} of saturation), p99 {result['p99_ms']:.0f} ms"
        )
        return result

    @contextmanager
    def _bento(
        self, name: str, env: dict[str, str], follow: Path | None = None, bento: tuple[str, str] | None = None
    ) -> Iterator[str]:
        """`bentoml serve` of the benchmarked Bento on a free loopback port; yields /classify's URL. It
        serves the benchmarked model, or with `follow` whatever that served-model file names, or with
        `bento` another (Bento, model tag). Each server profiles its traffic into its own folder of the
        run's workdir: synthetic load must not reach the drift window of a real server of the same model
        (HOME/profiles), and a server's drift check reads only its own traffic."""
        c = self.config
        tag, model = bento or (c.bento, c.model_tag)
        env = {"TEXTCLF_PROFILES_DIR": str(c.workdir / "profiles" / name), **env}
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [str(Path(sys.executable).with_name("bentoml")), "serve", tag]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        if follow is None:
            env = {"TEXTCLF_MODEL": model, "TEXTCLF_FOLLOW": "false", **env}  # no shadow lane
        else:
            env = {**env, "TEXTCLF_SERVED_MODEL_FILE": str(follow), "TEXTCLF_RELOAD_CHECK_S": "0.5"}
        with running(argv, f"{url}/readyz", c.workdir / f"{name}.log", env=env, cwd=ROOT) as process:
            self._pids[f"{url}/classify"] = process.pid
            yield f"{url}/classify"

    def served(self, raw: dict | None = None) -> dict[str, dict]:
        c = self.config
        auth = {"authorization": self.authorization}
        with self._bento("served", {**self.secure_env, **c.served_env}) as url:
            single = self._saturate("served_single", url, self.single, 1, **auth)
            half = self._half_load("served_half_load", url, single, **auth)
            batched = self._saturate("served_batched", url, self.batched, c.batch_texts, **auth)
            if raw is not None:
                self._against_raw(url, raw, single, batched)
        return {"served_single": single, "served_half_load": half, "served_batched": batched}

    def _against_raw(self, url: str, raw: dict, single: dict, batched: dict) -> None:
        """served/raw in round pairs, as the security and monitoring targets measure on/off: the raw
        limit's best setting measured again (the server idle), then the server's single-text and
        32-text load for a quarter of --duration each. Each served figure is divided by the raw one
        taken right before it, so the drift of a shared machine between the raw sweep and the served
        runs (and one slow moment in a 20 s window) does not decide the ratio; the median pair does."""
        c = self.config
        seconds = max(1.0, c.duration_s * 0.25)
        auth = {"authorization": self.authorization}
        rounds: list[dict] = []
        for i in range(RAW_PAIRS):
            limit = measure_best(c.model_folder, c.texts, raw, seconds=c.raw_seconds)
            label = f"round {i + 1}/{RAW_PAIRS} against raw ({limit:,.0f} texts/s)"
            one = self._saturate(f"served_single {label}", url, self.single, 1, seconds, warmup=False, **auth)
            many = self._saturate(
                f"served_batched {label}", url, self.batched, c.batch_texts, seconds, warmup=False, **auth
            )
            rounds.append(
                {"raw": limit, "served_single": one["texts_per_s"], "served_batched": many["texts_per_s"]}
            )
        for result, name in ((single, "served_single"), (batched, "served_batched")):
            pairs = [round(r[name] / r["raw"], 3) if r["raw"] else 0.0 for r in rounds]
            result["paired_with"] = {"raw": pairs}
            result["raw_rounds"] = [{"raw": r["raw"], "served": r[name]} for r in rounds]
            self.log(f"{name}/raw per round pair {pairs}, median {median_ratio(pairs):.3f}")

    def bentoml_route(self) -> dict[str, dict]:
        """The same Bento as it served before the front door (`/classify` through BentoML's API route,
        BentoML's own per-request metrics), measured in the same run: new vs old."""
        c = self.config
        env = {**self.secure_env, **c.served_env, **BEFORE_FRONT_DOOR_ENV}
        with self._bento("bentoml_route", env) as url:
            single = self._saturate(
                "bentoml_route_single", url, self.single, 1, authorization=self.authorization
            )
        return {"bentoml_route_single": single}

    def bentoml_batching(self) -> dict[str, dict]:
        """The same Bento with BentoML's own batchable dispatcher (ONNX Runtime on every core, a latency
        budget high enough for no 503s): what our batcher is measured against."""
        c = self.config
        env = {**self.secure_env, **c.served_env, **BENTOML_BATCHING_ENV}
        env["TEXTCLF_ORT_THREADS"] = str(os.cpu_count() or 1)
        auth = {"authorization": self.authorization}
        with self._bento("bentoml_batching", env) as url:
            single = self._saturate("bentoml_batching_single", url, self.single, 1, **auth)
            half = self._half_load("bentoml_batching_half_load", url, single, **auth)
        return {"bentoml_batching_single": single, "bentoml_batching_half_load": half}

    def security(self) -> dict[str, dict]:
        """What the security layer costs: the Bento with it (tokens verified, rate limit, audit lines)
        and without."""
        c = self.config
        if not c.secure:
            raise ValueError("the security target compares against the secure server: leave secure on")
        on = {**self.secure_env, **c.served_env}
        return self._paired("security", (on, self.authorization), ({**c.served_env, **SECURITY_OFF}, ""))

    def monitoring(self) -> dict[str, dict]:
        """What monitoring costs (model metrics, the profiler, the server's drift check), security as
        shipped on both sides."""
        on = {**self.secure_env, **self.config.served_env}
        return self._paired(
            "monitoring", (on, self.authorization), ({**on, **MONITORING_OFF}, self.authorization)
        )

    def overhead(self) -> dict[str, dict]:
        """Security and monitoring together against both off: everything around the model."""
        c = self.config
        if not c.secure:
            raise ValueError("the overhead target compares against the secure server: leave secure on")
        on = {**self.secure_env, **c.served_env}
        off = {**c.served_env, **SECURITY_OFF, **MONITORING_OFF}
        return self._paired("overhead", (on, self.authorization), (off, ""))

    def pinning(self) -> dict[str, dict]:
        """What pinning each worker to its own CPU gives (TEXTCLF_PIN_WORKERS as shipped, `auto`,
        against `false`), everything else as shipped."""
        on = {**self.secure_env, **self.config.served_env}
        off = {**on, "TEXTCLF_PIN_WORKERS": "false"}
        return self._paired("pinning", (on, self.authorization), (off, self.authorization))

    def gather(self) -> dict[str, dict]:
        """What a lane's hold for the clients it just answered gives (TEXTCLF_GATHER_MS as shipped,
        against 0: a free lane takes what is queued at once), everything else as shipped."""
        on = {**self.secure_env, **self.config.served_env}
        off = {**on, "TEXTCLF_GATHER_MS": "0"}
        return self._paired("gather", (on, self.authorization), (off, self.authorization))

    def _paired(
        self, name: str, on: tuple[dict[str, str], str], off: tuple[dict[str, str], str]
    ) -> dict[str, dict]:
        """The same Bento served twice at once (`on` and `off`: env and Authorization), measured in
        alternating rounds, so drift of this shared machine hits both alike."""
        c = self.config
        on_name, off_name = f"{name}_on", f"{name}_off"
        rounds: dict[str, list[dict]] = {on_name: [], off_name: []}
        seconds = max(1.0, c.duration_s * 0.25)
        with self._bento(on_name, on[0]) as on_url, self._bento(off_name, off[0]) as off_url:
            for i in range(PAIRED_ROUNDS):
                for label, url, auth in ((on_name, on_url, on[1]), (off_name, off_url, off[1])):
                    rounds[label].append(
                        self._saturate(
                            f"{label} round {i + 1}/{PAIRED_ROUNDS}",
                            url,
                            self.single,
                            1,
                            seconds,
                            warmup=i == 0,
                            authorization=auth,
                        )
                    )
        combined = {label: combine_rounds(results) for label, results in rounds.items()}
        pairs = [
            round(a["texts_per_s"] / b["texts_per_s"], 3) if b["texts_per_s"] else 0.0
            for a, b in zip(rounds[on_name], rounds[off_name], strict=True)
        ]
        combined[on_name]["paired_with"] = {off_name: pairs}
        self.log(f"{name}: on/off per round pair {pairs}, median {median_ratio(pairs):.3f}")
        return combined

    def soak(self) -> dict:
        """Memory under a long load: the Bento as shipped (security and monitoring on) saturated with
        single texts for `soak_s`, every server process's resident memory read between equal slices."""
        c = self.config
        auth = {"authorization": self.authorization}
        with self._bento("soak", {**self.secure_env, **c.served_env}) as url:
            self._saturate("soak warm-up", url, self.single, 1, seconds=max(5.0, c.warmup_s), **auth)
            pid = self._pids[url]
            samples = [{"at_s": 0.0, "rss_mb": tree_rss_mb(pid)}]
            requests = errors = texts = 0
            piece = c.soak_s / SOAK_SLICES
            for i in range(SOAK_SLICES):
                result = self._load(url, self.single, 1, piece, **auth)
                requests, errors = requests + result.requests, errors + result.errors
                texts += round(result.texts_per_s * piece)
                samples.append({"at_s": round(piece * (i + 1), 1), "rss_mb": tree_rss_mb(pid)})
                rss = samples[-1]["rss_mb"]
                self.log(f"soak {i + 1}/{SOAK_SLICES}: {result.texts_per_s:,.0f} texts/s, RSS MB {rss}")
        first, last = samples[0]["rss_mb"], samples[-1]["rss_mb"]
        growth = {name: round(last.get(name, 0.0) - mb, 1) for name, mb in first.items()}
        return {
            "seconds": c.soak_s,
            "requests": requests,
            "texts_per_s": round(texts / c.soak_s, 1),
            "errors": errors,
            "samples": samples,
            "rss_growth_mb": growth,
        }

    def switch(self) -> dict:
        """Model changes without a restart: the Bento as shipped, following a served-model file, switched
        `switches` times between the benchmarked model and `switch_to` under a saturating wrk load; every
        answer counted, every worker's resident memory read after each switch."""
        c = self.config
        if c.switch_to is None:
            raise ValueError("the switch target needs a second model (--switch-to)")
        served = c.workdir / "served-model.json"
        write_served_model(served, c.model_tag, None, "textclf bench")
        env = {**self.secure_env, **c.served_env}
        env.pop("TEXTCLF_MODEL", None)
        with self._bento("switch", env, follow=served) as url:
            auth = {"authorization": self.authorization}
            self._saturate("switch warm-up", url, self.single, 1, seconds=max(5.0, c.warmup_s), **auth)
            pid, base = self._pids[url], url.removesuffix("/classify")
            samples = [{"serving": c.model_tag, "switch_s": 0.0, "rss_mb": tree_rss_mb(pid)}]
            workers = len(samples[0]["rss_mb"]) - 1  # every process but BentoML's arbiter
            load = WrkRun(url, self.single, texts_per_request=1, connections=c.connections, **auth)
            try:
                for i in range(c.switches):
                    tag = c.switch_to if i % 2 == 0 else c.model_tag
                    started = time.monotonic()
                    write_served_model(served, tag, None, "textclf bench")
                    _wait_serving(base, tag, switched=workers * (i + 1), timeout_s=180)
                    samples.append(
                        {
                            "serving": tag,
                            "switch_s": round(time.monotonic() - started, 2),
                            "rss_mb": tree_rss_mb(pid),
                        }
                    )
                    self.log(f"switch {i + 1}/{c.switches}: serving {tag}, RSS MB {samples[-1]['rss_mb']}")
            finally:
                result = load.stop()
        return {
            "switches": c.switches,
            "load": result.as_dict(),
            "samples": samples,
            "models": [c.model_tag, c.switch_to],
        }

    def batch(self, served_batched: dict | None) -> dict[str, dict]:
        """`textclf predict-batch` as a user runs it, against the Bento as shipped. Throughput: BATCH_PAIRS
        alternating rounds on one server, served_batched's own load (wrk, `batch_texts` per request) for
        half of --duration, then a predict-batch run sized to last as long at that round's rate, so the
        drift of a shared machine hits both alike and the run's ramp-up and drain weigh on it no more than
        on wrk's window; the ratio is the median pair's. Then the client's peak RSS at every size of
        `batch_rows` (the later ones on `batch_memory_bento` when given)."""
        c = self.config
        env = {**self.secure_env, **c.served_env}
        token = self.authorization.removeprefix("Bearer ")
        auth = {"authorization": self.authorization}
        seconds = max(1.0, c.duration_s / 2)
        paired: list[dict] = []  # the throughput runs, each with its load's texts/s
        loads: list[dict] = []
        runs: list[dict] = []  # the memory runs
        sizes = list(c.batch_rows)
        with self._bento("batch", env) as url:
            if served_batched is None:
                served_batched = self._saturate("served_batched", url, self.batched, c.batch_texts, **auth)
            for i in range(BATCH_PAIRS):
                name = f"batch pair {i + 1}/{BATCH_PAIRS}, served_batched's load"
                load = self._saturate(name, url, self.batched, c.batch_texts, seconds, warmup=i == 0, **auth)
                rows = throughput_rows(load["texts_per_s"], seconds, len(c.texts))
                self._drain(url, _first_line(self.batched), **auth)  # wrk leaves requests in flight
                run = self._batch_run(url, token, rows, c.variant)
                run |= {
                    "purpose": f"throughput {i + 1}/{BATCH_PAIRS}",
                    "paired_texts_per_s": load["texts_per_s"],
                }
                loads.append(load)
                paired.append(run)
            same = sizes if c.batch_memory_bento is None else sizes[:1]
            runs += [{**self._batch_run(url, token, n, c.variant), "purpose": "memory"} for n in same]
        if c.batch_memory_bento is not None and len(sizes) > 1:
            with self._bento("batch-memory", env, bento=c.batch_memory_bento) as url:
                model = c.batch_memory_bento[1]
                runs += [{**self._batch_run(url, token, n, model), "purpose": "memory"} for n in sizes[1:]]
        runs = paired + runs
        for run in runs:
            if run["model"] == c.variant and served_batched["texts_per_s"]:
                run["ratio_to_served_batched"] = round(run["texts_per_s"] / served_batched["texts_per_s"], 3)
        pairs = [
            round(run["texts_per_s"] / run["paired_texts_per_s"], 3) if run["paired_texts_per_s"] else 0.0
            for run in paired
        ]
        self.log(
            f"batch: predict-batch / served_batched's load per round pair {pairs}, median "
            f"{median_ratio(pairs):.3f}"
        )
        seconds_in = sum(run["classify_s"] for run in paired)
        batch = {
            "texts_per_s": round(sum(run["rows"] for run in paired) / seconds_in, 1) if seconds_in else 0.0,
            "errors": sum(run["errors"] for run in paired),
            "paired_with": {"served_batched": pairs},
            "paired_load": combine_rounds(loads),
            "runs": runs,
        }
        return {"served_batched": served_batched, "batch": batch}

    def spark(self) -> dict:
        """`textclf predict-spark`'s path on `local[2]` (Parquet in and out) with the benchmarked model
        folder: steady texts/s after a warm-up run; Spark's start-up and the warm-up reported apart."""
        from bench.spark_run import measure_spark

        c = self.config
        result = measure_spark(c.model_folder, c.texts, rows=max(c.spark_rows, len(c.texts)))
        spark_labels = result.pop("labels")
        served = self._served_labels(c.texts)
        same = sum(a == b for a, b in zip(spark_labels, served, strict=True))
        self.log(
            f"spark {result['rows']:,} rows on {result['master']}: {result['texts_per_s']:,.0f} texts/s "
            f"(start-up {result['startup_s']:.1f} s, warm-up run {result['warmup_s']:.1f} s); "
            f"labels equal to the served Bento's on {same:,} of {len(served):,} texts"
        )
        return {**result, "labels_equal_served": same, "labels_compared": len(served), "errors": 0}

    def _served_labels(self, texts: list[str]) -> list[str | None]:
        """The label the Bento as shipped answers for each text (requests of `batch_texts` texts)."""
        c = self.config
        size = c.batch_texts
        with self._bento("spark-labels", {**self.secure_env, **c.served_env}) as url:
            headers = {"authorization": self.authorization} if self.authorization else {}
            labels: list[str | None] = []
            with httpx.Client(timeout=60) as client:
                for start in range(0, len(texts), size):
                    answer = client.post(url, json={"texts": texts[start : start + size]}, headers=headers)
                    answer.raise_for_status()
                    labels += [item["label"] for item in answer.json()]
        return labels

    def _batch_run(self, url: str, token: str, rows: int, model: str) -> dict:
        source = write_input(self.config.texts, rows, self.config.workdir / f"batch-{rows}.csv")
        try:
            run = run_predict_batch(source, url.removesuffix("/classify"), token, self.config.workdir, rows)
        finally:
            source.unlink(missing_ok=True)
        run["model"] = model
        self.log(
            f"batch {rows:,} rows ({model}): {run['texts_per_s']:,.0f} texts/s classifying, "
            f"{run['wall_s']:.1f} s in all, client peak RSS {run['peak_rss_mb']:.1f} MB"
        )
        return run

    def plain_app(self, name: str, module: str, source: Path, options: tuple[str, ...] = ()) -> dict:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        argv = [sys.executable, "-m", module, str(source.resolve()), "--port", str(port), *options]
        env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
        with running(
            argv, f"{url}/readyz", self.config.workdir / f"{name}.log", env=env, cwd=ROOT
        ) as process:
            self._pids[f"{url}/classify"] = process.pid
            return self._saturate(name, f"{url}/classify", self.single, 1)

    def pytriton(self) -> dict | None:
        """PyTriton (Triton's dynamic batcher) in front of the same ONNX file and runtime, from a venv of
        its own (it needs NumPy < 2), made on first use; skipped with the reason when it cannot be made."""
        c = self.config
        python, reason = ensure_pytriton(self.log)
        if python is None:
            self.log(f"pytriton: skipped ({reason})")
            return None
        port = free_port()
        bodies = write_triton_bodies(c.texts, c.workdir / "bodies-triton.jsonl")
        argv = pytriton_argv(python, c.model_folder.resolve(), port)
        log = c.workdir / "pytriton.log"
        with running(
            argv, triton_ready_url(port), log, env=pytriton_env(ROOT), cwd=ROOT, timeout_s=300
        ) as process:
            url = triton_infer_url(port)
            self._pids[url] = process.pid
            return self._saturate("pytriton", url, bodies, 1)

    def run(self) -> dict:
        c = self.config
        results: dict[str, dict | None] = {}
        if "raw" in c.targets:
            results["raw"] = measure_raw(c.model_folder, c.texts, seconds=c.raw_seconds)
            best = results["raw"]
            self.log(
                f"raw: {best['texts_per_s']:,.0f} texts/s "
                f"(batch {best['batch']}, {best['processes']} process(es) x {best['lanes']} parallel call(s) "
                f"x {best['threads']} thread(s){', pinned' if best.get('pinned') else ''})"
            )
        planner = None
        if "raw" in c.targets and _token_model(c.model_folder):
            planner = measure_planner(c.model_folder, c.texts)
            self.log(f"sub-batch planner, µs per text by call cost: {planner['us_per_text']}")
        if "served" in c.targets:
            results.update(self.served(results.get("raw")))
        if "bentoml_route" in c.targets:
            results.update(self.bentoml_route())
        parts = None
        if "security" in c.targets:
            results.update(self.security())
            parts = measure_security_parts(c.workdir / "security-parts")
            self.log(f"security layer in process: {parts['steps_us']}")
        for paired in ("monitoring", "overhead", "pinning", "gather"):
            if paired in c.targets:
                results.update(getattr(self, paired)())
        if "bentoml_batching" in c.targets:
            results.update(self.bentoml_batching())
        if "fastapi_ort" in c.targets:
            cores = str(os.cpu_count() or 1)
            for name, workers, threads in (("fastapi_ort", cores, "1"), ("fastapi_ort_1worker", "1", cores)):
                options = ("--workers", workers, "--threads", threads, "--sub-batch", "8")
                results[name] = self.plain_app(name, "bench.apps.fastapi_ort", c.model_folder, options)
        if "pytriton" in c.targets:
            results["pytriton"] = self.pytriton()
        if "naive" in c.targets:
            if c.checkpoint is None:
                self.log("naive: skipped (no transformers checkpoint for this model family)")
                results["naive"] = None
            else:
                results["naive"] = self.plain_app("naive", "bench.apps.naive_torch", c.checkpoint)
        if "batch" in c.targets:
            results.update(self.batch(results.get("served_batched")))
        if "spark" in c.targets:
            results["spark"] = self.spark()
        soak = self.soak() if "soak" in c.targets else None
        switch = self.switch() if "switch" in c.targets else None
        if results.get("raw") and len(c.targets) > 1:
            results["raw"] = remeasure(c.model_folder, c.texts, results["raw"], seconds=c.raw_seconds)
        model_us = model_us_per_text(results["raw"]) if results.get("raw") else None
        if model_us is not None:
            add_outside_model(results, model_us)
            raw = results["raw"]
            after, mean = raw["texts_per_s_after"], raw["texts_per_s"]
            self.log(f"raw again: {after:,.0f} texts/s; the limit is the mean, {mean:,.0f}")
        measured = report.ratios(results)
        return {
            "when": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": c.command,
            "machine": _machine(),
            "model": {"variant": c.variant, "bento": c.bento, "model_tag": c.model_tag},
            "settings": {
                "connections": c.connections,
                "duration_s": c.duration_s,
                "warmup_s": c.warmup_s,
                "texts_per_batched_request": c.batch_texts,
                "served_env": {k: v for k, v in c.served_env.items() if "KEY" not in k and "SECRET" not in k},
                "security_layer": "on (tokens, rate limit, audit)" if c.secure else "off",
            },
            "results": results,
            "security_parts": parts,
            "planner": planner,
            "soak": soak,
            "switch": switch,
            "ratios": measured,
            "targets_met": report.verdicts(results, measured),
        }


def _wait_serving(base: str, tag: str, switched: int, timeout_s: float) -> None:
    """Until every worker serves `tag` and has let go of its previous model: the version's info series at 1
    and no other at 1 (the gauge is the max over workers), and `switched` completed switches (a worker
    counts one once the old model is released), read from /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    version = tag.rpartition(":")[2]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        page = httpx.get(f"{base}/metrics", timeout=10).text
        families = {family.name: family for family in text_string_to_metric_families(page)}
        info = {s.labels["version"]: s.value for s in families["textclf_model_info"].samples}
        done = sum(
            s.value
            for s in families["textclf_model_switches"].samples
            if s.name.endswith("_total") and s.labels.get("outcome") == "switched"
        )
        if (
            info.get(version) == 1
            and all(v == 0 for k, v in info.items() if k != version)
            and done >= switched
        ):
            return
        time.sleep(0.2)
    raise LoadError(f"the server did not switch to {tag} within {timeout_s:.0f} s")


def _token_model(folder: Path) -> bool:
    from textclf.core.contract import read_model_folder

    return read_model_folder(folder)[1].input_kind == "tokens"


def throughput_rows(texts_per_s: float, duration_s: float, minimum: int) -> int:
    """Rows for predict-batch's throughput run: about `duration_s` of work at `texts_per_s` (served_batched's
    rate), never fewer than one pass over the test set."""
    return max(minimum, round(texts_per_s * duration_s))


def _first_line(path: Path) -> str:
    with path.open(encoding="utf-8") as handle:
        return handle.readline().rstrip("\n")


def write_report(data: dict, output: Path) -> None:
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
