"""The textclf Grafana dashboard, written as code: `python -m monitoring.dashboard` writes
monitoring/grafana/dashboards/textclf.json, which Grafana provisions (monitoring/grafana/provisioning/).

Why code and not hand-edited JSON: a dashboard's Grafana boilerplate hides the part that matters,
the PromQL. Here each panel is a title, a description and its queries; `render` adds the layout and the
boilerplate the same way for all. Tests check that the committed JSON is what this module builds
(`--check`), that every query parses (promtool) and that every panel shows data from a real server.

The datasource is the dashboard variable `DS_PROMETHEUS`, so the JSON imports into any Grafana; `job` and
`instance` pick the deployment. Queries read the raw metrics with `$__rate_interval` (Grafana's window,
at least four scrapes), so zooming never shows the fixed windows of the recording rules.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "grafana" / "dashboards" / "textclf.json"
UID = "textclf"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
GRID_COLUMNS = 24
RATE = "$__rate_interval"
SEL = 'job=~"$job", instance=~"$instance"'  # every query's selector
LATENCY_BUDGET_S = 0.25  # as TextclfLatencyP99OverBudget (monitoring/prometheus/rules/alerts.yml)
ACCURACY_FLOOR = 0.85  # as TextclfLiveAccuracyDrop
DRIFT_ALPHA = 0.01  # the server's default TEXTCLF_DRIFT_ALPHA


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    """One panel: what it shows (queries), how to read it (description) and a few display choices."""

    title: str
    description: str
    queries: tuple[Query, ...]
    unit: str = "short"
    kind: str = "timeseries"  # timeseries | stat | state-timeline
    width: int = 12
    height: int = 8
    threshold: float | None = None  # a red line (timeseries) or a red step (stat) at this value
    mappings: tuple[tuple[str, str, str], ...] = ()  # (value, text, colour) for verdicts and states
    stacked: bool = False
    log_scale: bool = False
    text_mode: str = "auto"  # stat panels: "name" shows the legend (e.g. the model's version)
    max_value: float | None = None


@dataclass(frozen=True)
class Row:
    title: str
    panels: tuple[Panel, ...] = field(default_factory=tuple)


def quantile(q: float, metric: str, extra: str = "") -> str:
    """The q-quantile of a histogram over every worker and instance of the selection."""
    labels = f"{SEL}, {extra}" if extra else SEL
    return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{labels}}}[{RATE}])))"


def rate(metric: str, extra: str = "", by: str = "") -> str:
    labels = f"{SEL}, {extra}" if extra else SEL
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} (rate({metric}{{{labels}}}[{RATE}]))"


def mean(metric: str) -> str:
    return f"{rate(metric + '_sum')} / {rate(metric + '_count')}"


def live_accuracy(by: str = "") -> str:
    """Right answers among the last hour's feedback items that say what the server answered (the window
    of the recording rules and TextclfLiveAccuracyDrop), over the selection, optionally per label."""
    grouping = f" by ({by})" if by else ""

    def stated(outcome: str) -> str:
        return f'sum{grouping} (increase(textclf_feedback_total{{{SEL}, outcome=~"{outcome}"}}[1h]))'

    return f"{stated('correct')} / {stated('correct|wrong')}"


AGREE, COMPARED = 'outcome="agree"', 'outcome=~"agree|disagree"'  # shadowed texts the models agree on


def shadow_feedback_accuracy() -> str:
    """Each model's accuracy on the last hour's feedback run in the shadow lane."""

    def count(outcome: str) -> str:
        return f'sum by (model) (increase(textclf_shadow_feedback_total{{{SEL}, outcome=~"{outcome}"}}[1h]))'

    return f"{count('correct')} / {count('correct|wrong')}"


VERDICT = (("0", "no drift", "green"), ("1", "drift", "red"))

ROWS: tuple[Row, ...] = (
    Row(
        "Overview",
        (
            Panel(
                "Model",
                "The model each selected server loaded (textclf_model_info): name, version (a hash of the "
                "ONNX bytes), family and precision. Two lines mean two versions are serving.",
                (
                    Query(
                        f"max by (name, version, family, precision) (textclf_model_info{{{SEL}}})",
                        "{{name}} {{version}} · {{family}} {{precision}}",
                    ),
                ),
                kind="stat",
                width=10,
                height=4,
                text_mode="name",
            ),
            Panel(
                "Servers up",
                "Servers whose /metrics Prometheus scraped last time (TextclfWorkerDown fires on a miss).",
                (Query(f"sum(up{{{SEL}}})", "up"),),
                kind="stat",
                width=4,
                height=4,
            ),
            Panel(
                "Drift verdict",
                "The overall verdict of the server's last drift check (Holm-corrected over every feature).",
                (Query(f'max(textclf_drift_detected{{{SEL}, feature="overall"}})', "overall"),),
                kind="stat",
                width=5,
                height=4,
                mappings=VERDICT,
            ),
            Panel(
                "Last drift check",
                "Seconds since the last completed drift check (TextclfDriftCheckStale fires past 900 s).",
                (Query(f"time() - max(textclf_drift_check_timestamp_seconds{{{SEL}}})", "age"),),
                unit="s",
                kind="stat",
                width=5,
                height=4,
                threshold=900,
            ),
        ),
    ),
    Row(
        "Traffic and latency",
        (
            Panel(
                "Throughput",
                "Requests answered per second by route, and texts classified per second (a request may "
                "carry many texts).",
                (
                    Query(rate("textclf_http_requests_total", by="route"), "{{route}} requests/s"),
                    Query(rate("textclf_predictions_total"), "texts classified/s"),
                ),
                unit="reqps",
                width=8,
            ),
            Panel(
                "/classify latency",
                f"Percentiles of /classify latency, arrival to last byte as the server measures it. The red "
                f"line is the {LATENCY_BUDGET_S} s p99 budget of TextclfLatencyP99OverBudget.",
                tuple(
                    Query(quantile(q, "textclf_http_request_duration_seconds", 'route="/classify"'), f"p{p}")
                    for q, p in ((0.5, 50), (0.95, 95), (0.99, 99))
                ),
                unit="s",
                width=8,
                threshold=LATENCY_BUDGET_S,
            ),
            Panel(
                "Answers other than 2xx",
                "Refusals and failures per second by route and status: 4xx is the client's (bad input, "
                "401/403 tokens, 429 rate limit), 503 is load shedding, any other 5xx a server fault.",
                (
                    Query(
                        rate("textclf_http_requests_total", 'status!~"2.."', by="route, status"),
                        "{{route}} {{status}}",
                    ),
                ),
                unit="reqps",
                width=8,
            ),
        ),
    ),
    Row(
        "Batching",
        (
            Panel(
                "Batch size",
                "Texts per model batch: adaptive batching grows batches with the load.",
                (
                    Query(mean("textclf_batch_size"), "mean"),
                    Query(quantile(0.95, "textclf_batch_size"), "p95"),
                ),
                width=8,
            ),
            Panel(
                "Queue wait",
                "How long a request waited for a free model lane; growing waits mean too little CPU.",
                (
                    Query(quantile(0.5, "textclf_queue_wait_seconds"), "p50"),
                    Query(quantile(0.99, "textclf_queue_wait_seconds"), "p99"),
                ),
                unit="s",
                width=8,
            ),
            Panel(
                "Time per batch",
                "Tokenising (outside ONNX Runtime) and inference (ONNX Runtime) per model batch, p95.",
                (
                    Query(quantile(0.95, "textclf_tokenize_seconds"), "tokenize p95"),
                    Query(quantile(0.95, "textclf_inference_seconds"), "inference p95"),
                ),
                unit="s",
                width=8,
            ),
        ),
    ),
    Row(
        "Model outputs and inputs",
        (
            Panel(
                "Class mix",
                "Share of answers per predicted label. A class that grows or vanishes is often the "
                "first sign of drift.",
                (
                    Query(
                        f"{rate('textclf_predictions_total', by='label')} / "
                        f"scalar({rate('textclf_predictions_total')})",
                        "{{label}}",
                    ),
                ),
                unit="percentunit",
                width=8,
                stacked=True,
                max_value=1,
            ),
            Panel(
                "Confidence",
                "Mean top probability, its 10th percentile, the share of answers under "
                "TEXTCLF_LOW_CONFIDENCE (TextclfLowConfidenceRate fires above 25%), and the share the "
                "model abstained on (below its abstention threshold, when it has one).",
                (
                    Query(mean("textclf_prediction_confidence"), "mean confidence"),
                    Query(quantile(0.1, "textclf_prediction_confidence"), "p10 confidence"),
                    Query(
                        f"{rate('textclf_low_confidence_total')} / {rate('textclf_predictions_total')}",
                        "low-confidence share",
                    ),
                    Query(
                        f"{rate('textclf_abstained_total')} / {rate('textclf_predictions_total')}",
                        "abstained share",
                    ),
                ),
                unit="percentunit",
                width=8,
                max_value=1,
            ),
            Panel(
                "Input length",
                "Characters and model tokens per text (words for the TF-IDF model), p50 and p95.",
                (
                    Query(quantile(0.5, "textclf_input_chars"), "chars p50"),
                    Query(quantile(0.95, "textclf_input_chars"), "chars p95"),
                    Query(quantile(0.5, "textclf_input_tokens"), "tokens p50"),
                    Query(quantile(0.95, "textclf_input_tokens"), "tokens p95"),
                ),
                width=8,
            ),
        ),
    ),
    Row(
        "Drift and accuracy",
        (
            Panel(
                "Drift p-values",
                f"p-value of each feature's test against the training reference in the last check (KS for "
                f"numbers, chi-square for the predicted class), the model's outputs together, and overall "
                f"(Holm-adjusted). The line is alpha = {DRIFT_ALPHA}; only the overall value decides.",
                (Query(f"max by (feature) (textclf_drift_p_value{{{SEL}}})", "{{feature}}"),),
                unit="none",
                width=8,
                threshold=DRIFT_ALPHA,
                log_scale=True,
            ),
            Panel(
                "Drift verdicts",
                "Each feature's verdict over time (green: like the reference, red: drifted).",
                (Query(f"max by (feature) (textclf_drift_detected{{{SEL}}})", "{{feature}}"),),
                kind="state-timeline",
                width=8,
                mappings=VERDICT,
            ),
            Panel(
                "Accuracy",
                "Estimated accuracy (mean calibrated confidence over the drift window) and live accuracy "
                f"(on labelled feedback). The line is the {ACCURACY_FLOOR} floor of TextclfLiveAccuracyDrop.",
                (
                    Query(f"max(textclf_estimated_accuracy{{{SEL}}})", "estimated"),
                    Query(live_accuracy(), "live (feedback)"),
                ),
                unit="percentunit",
                width=8,
                threshold=ACCURACY_FLOOR,
                max_value=1,
            ),
            Panel(
                "Live recall, weakest classes",
                "Per true label, the share of the last hour's labelled feedback the served model got right "
                "(feedback items that say what the server answered): the ten lowest.",
                (Query(f"bottomk(10, {live_accuracy('label')})", "{{label}}"),),
                unit="percentunit",
                width=24,
                threshold=ACCURACY_FLOOR,
                max_value=1,
            ),
        ),
    ),
    Row(
        "Challenger (shadow traffic) and model changes",
        (
            Panel(
                "Challenger vs champion",
                "On the live texts mirrored to the challenger (TEXTCLF_SHADOW_FRACTION): how often it gives "
                "the champion's answer, and how sure each model is.",
                (
                    Query(
                        rate("textclf_shadow_texts_total", AGREE)
                        + " / "
                        + rate("textclf_shadow_texts_total", COMPARED),
                        "agreement",
                    ),
                    Query(mean("textclf_shadow_confidence"), "challenger mean confidence"),
                    Query(mean("textclf_prediction_confidence"), "champion mean confidence"),
                ),
                unit="percentunit",
                width=8,
                max_value=1,
            ),
            Panel(
                "Both models on feedback",
                "Accuracy over the last hour of each model on the same labelled feedback texts, run in the "
                "shadow lane: the challenger's record on real traffic before a promotion.",
                (Query(shadow_feedback_accuracy(), "{{model}}"),),
                unit="percentunit",
                width=8,
                threshold=ACCURACY_FLOOR,
                max_value=1,
            ),
            Panel(
                "Shadow lane and model switches",
                "Texts mirrored and skipped (the shadow lane was busy) per second, and changes of the served "
                "model in the last hour: switched without a restart, or refused (the old one kept serving).",
                (
                    Query(rate("textclf_shadow_texts_total", by="outcome"), "shadow {{outcome}}/s"),
                    Query(
                        f"sum by (outcome) (increase(textclf_model_switches_total{{{SEL}}}[1h]))",
                        "model {{outcome}} (1 h)",
                    ),
                    Query(
                        f"max by (version) (textclf_shadow_model_info{{{SEL}}})",
                        "challenger {{version}} running",
                    ),
                ),
                width=8,
            ),
        ),
    ),
    Row(
        "Monitoring health",
        (
            Panel(
                "Drift window",
                "Texts in the last drift check's window; under TEXTCLF_DRIFT_MIN_TEXTS no verdict is given.",
                (Query(f"sum(textclf_drift_window_texts{{{SEL}}})", "texts in window"),),
                width=8,
            ),
            Panel(
                "Profiler drops and errors",
                "Texts whose features the profiler dropped (its queue was full) and profile or drift-check "
                "errors by kind, per second.",
                (
                    Query(rate("textclf_profile_dropped_total"), "dropped texts/s"),
                    Query(rate("textclf_profile_errors_total", by="kind"), "{{kind}} errors/s"),
                ),
                unit="short",
                width=8,
            ),
            Panel(
                "textclf alerts",
                "Alerts of these rules that are pending or firing now (Prometheus's ALERTS series).",
                (
                    Query(
                        'sum by (alertname, alertstate) (ALERTS{job=~"$job", alertname=~"Textclf.+"})',
                        "{{alertname}} {{alertstate}}",
                    ),
                ),
                width=8,
            ),
        ),
    ),
)


def _field_config(panel: Panel) -> dict[str, Any]:
    steps: list[dict[str, Any]] = [{"color": "green", "value": None}]
    if panel.threshold is not None:
        steps.append({"color": "red", "value": panel.threshold})
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "mappings": [
            {"type": "value", "options": {value: {"text": text, "color": colour, "index": i}}}
            for i, (value, text, colour) in enumerate(panel.mappings)
        ],
        "color": {"mode": "thresholds" if panel.kind != "timeseries" else "palette-classic"},
    }
    if panel.max_value is not None:
        defaults["max"] = panel.max_value
    if panel.kind == "timeseries":
        defaults["min"] = 0 if not panel.log_scale else None
        defaults["custom"] = {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 30 if panel.stacked else 10,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if panel.stacked else "none", "group": "A"},
            "scaleDistribution": {"type": "log", "log": 10} if panel.log_scale else {"type": "linear"},
            "thresholdsStyle": {"mode": "line" if panel.threshold is not None else "off"},
        }
        defaults = {k: v for k, v in defaults.items() if v is not None}
    return {"defaults": defaults, "overrides": []}


def _options(panel: Panel) -> dict[str, Any]:
    if panel.kind == "stat":
        return {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "textMode": panel.text_mode,
            "colorMode": "value",
            "graphMode": "none",
            "justifyMode": "auto",
            "orientation": "auto",
        }
    legend = {"displayMode": "list", "placement": "bottom", "showLegend": True}
    if panel.kind == "state-timeline":
        return {"legend": legend, "showValue": "never", "mergeValues": True, "rowHeight": 0.9}
    return {"legend": legend, "tooltip": {"mode": "multi", "sort": "desc"}}


def _targets(panel: Panel) -> list[dict[str, Any]]:
    instant = panel.kind == "stat"
    return [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": query.expr,
            "legendFormat": query.legend,
            "range": not instant,
            "instant": instant,
        }
        for i, query in enumerate(panel.queries)
    ]


def render(rows: tuple[Row, ...] = ROWS) -> dict[str, Any]:
    """The dashboard JSON model: rows laid out top to bottom, panels left to right, wrapped at 24 columns."""
    panels: list[dict[str, Any]] = []
    y = 0
    next_id = iter(range(1, 1000))
    for row in rows:
        panels.append(
            {
                "id": next(next_id),
                "type": "row",
                "title": row.title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": GRID_COLUMNS, "h": 1},
                "panels": [],
            }
        )
        y += 1
        x = row_height = 0
        for panel in row.panels:
            if x + panel.width > GRID_COLUMNS:
                x, y, row_height = 0, y + row_height, 0
            panels.append(
                {
                    "id": next(next_id),
                    "type": panel.kind,
                    "title": panel.title,
                    "description": panel.description,
                    "datasource": DATASOURCE,
                    "gridPos": {"x": x, "y": y, "w": panel.width, "h": panel.height},
                    "fieldConfig": _field_config(panel),
                    "options": _options(panel),
                    "targets": _targets(panel),
                }
            )
            x += panel.width
            row_height = max(row_height, panel.height)
        y += row_height
    return {
        "uid": UID,
        "title": "textclf",
        "description": "Serving, model outputs, drift and accuracy of textclf (monitoring/dashboard.py).",
        "tags": ["textclf"],
        "timezone": "",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-3h", "to": "now"},
        "timepicker": {},
        "links": [],
        "annotations": {"list": []},
        "templating": {"list": _variables()},
        "panels": panels,
    }


def _variables() -> list[dict[str, Any]]:
    def query_variable(name: str, query: str, include_all: bool) -> dict[str, Any]:
        return {
            "type": "query",
            "name": name,
            "label": name,
            "datasource": DATASOURCE,
            "definition": query,
            "query": {"query": query, "refId": f"{name}-values"},
            "refresh": 2,  # on time-range change: new servers appear without a reload
            "sort": 1,
            "multi": False,
            "includeAll": include_all,
            "allValue": ".*" if include_all else None,
            "current": {"text": "All", "value": "$__all"} if include_all else {},
            "hide": 0,
        }

    return [
        {
            "type": "datasource",
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "query": "prometheus",
            "current": {},
            "hide": 0,
            "refresh": 1,
            "regex": "",
        },
        query_variable("job", "label_values(textclf_http_requests_total, job)", include_all=False),
        query_variable(
            "instance", 'label_values(textclf_http_requests_total{job=~"$job"}, instance)', include_all=True
        ),
    ]


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """The panels of a dashboard JSON that show data (rows left out)."""
    return [panel for panel in dashboard["panels"] if panel["type"] != "row"]


def dumps(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON file differs from the code")
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    text = dumps(render())
    if args.check:
        current = args.out.read_text(encoding="utf-8") if args.out.is_file() else ""
        if current != text:
            print(f"{args.out} is out of date: run `python -m monitoring.dashboard`", file=sys.stderr)
            return 1
        return 0
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({len(panels(render()))} panels)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
