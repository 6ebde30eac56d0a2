"""Prometheus rules and the Alertmanager config, checked by the tools that run them, then for real.

`promtool check` and `promtool test rules` (monitoring/prometheus/tests/*.yml: a firing and a quiet case for
every alert), `amtool check-config` and `amtool config routes test`; then a real Prometheus on loopback
scrapes a page whose drift verdict is 1 and a target that is down, evaluates the real rules every second
and sends to a real Alertmanager, whose real routing delivers the drift alert to a webhook in this test.

The tools come from the Debian packages prometheus and prometheus-alertmanager (`make tools`). Without
them these tests skip, saying so, unless REQUIRE_PROMETHEUS=1 (CI sets it: there a missing tool fails).
The variable has no TEXTCLF_ prefix because tests/conftest.py clears every TEXTCLF_* variable.

The Prometheus helpers here are shared with tests/integration/test_dashboard.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bench.processes import free_port, running
from tests.conftest import REPO
from tests.helpers import wait_for

PROMETHEUS_DIR = REPO / "monitoring" / "prometheus"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
RECORDING_RULES = PROMETHEUS_DIR / "rules" / "recording.yml"
ALERT_RULES = PROMETHEUS_DIR / "rules" / "alerts.yml"
ALERTMANAGER_CONFIG = REPO / "monitoring" / "alertmanager" / "alertmanager.yml"
RETRAIN_WEBHOOK = "http://127.0.0.1:8090/alerts"  # the receiver a later part of issue 12 implements
RETRAIN_ALERTS = {"TextclfDriftDetected", "TextclfLiveAccuracyDrop"}
REQUIRE_ENV = "REQUIRE_PROMETHEUS"
# The metric names of the server (monitoring/http_metrics.py, monitoring/model_metrics.py): a rule that
# names anything else is a typo that would never fire.
METRICS = {
    "up",
    "textclf_http_requests_total",
    "textclf_http_request_duration_seconds",
    "textclf_predictions_total",
    "textclf_prediction_confidence",
    "textclf_low_confidence_total",
    "textclf_abstained_total",
    "textclf_input_chars",
    "textclf_input_tokens",
    "textclf_batch_size",
    "textclf_queue_wait_seconds",
    "textclf_tokenize_seconds",
    "textclf_inference_seconds",
    "textclf_model_info",
    "textclf_drift_p_value",
    "textclf_drift_detected",
    "textclf_drift_window_texts",
    "textclf_drift_check_timestamp_seconds",
    "textclf_estimated_accuracy",
    "textclf_profile_dropped_total",
    "textclf_profile_errors_total",
    "textclf_feedback_total",
    "textclf_shadow_texts_total",
    "textclf_shadow_confidence",
    "textclf_shadow_feedback_total",
    "textclf_shadow_model_info",
    "textclf_model_switches_total",
}
HISTOGRAM_PARTS = re.compile(r"_(bucket|sum|count)$")


def tool(*names: str) -> str:
    """The first of `names` on PATH; skip the test without any (fail instead under REQUIRE_PROMETHEUS)."""
    for name in names:
        if found := shutil.which(name):
            return found
    why = (
        f"{' / '.join(names)} not on PATH (`make tools`: Debian packages prometheus, prometheus-alertmanager)"
    )
    if os.environ.get(REQUIRE_ENV):
        pytest.fail(f"{REQUIRE_ENV} is set but {why}")
    pytest.skip(why)


def run_tool(argv: Sequence[str], cwd: Path = REPO) -> str:
    result = subprocess.run(list(argv), cwd=cwd, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{' '.join(argv)} failed ({result.returncode}):\n{output}"
    return output


def alert_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def rule_metrics(expr: str) -> set[str]:
    """Names of the raw metrics an expression selects (recording-rule names, with a colon, left out)."""
    names = set(re.findall(r"(?<![\w:])(textclf_\w+|up)(?![\w:])", expr))
    return {HISTOGRAM_PARTS.sub("", name) for name in names}


# ---------------------------------------------------------------------------------------------------------
# Real Prometheus and Alertmanager on loopback, for this file and tests/integration/test_dashboard.py


def query(prometheus_url: str, expr: str) -> list[dict[str, Any]]:
    """An instant query through Prometheus's HTTP API; fails the test on a query error."""
    answer = httpx.post(f"{prometheus_url}/api/v1/query", data={"query": expr}, timeout=10).json()
    assert answer["status"] == "success", f"{expr}: {answer}"
    return answer["data"]["result"]


@contextmanager
def prometheus(
    workdir: Path,
    targets: Mapping[str, Sequence[str]],
    rule_files: Sequence[Path],
    alertmanager: str | None = None,
) -> Iterator[str]:
    """The repo's prometheus.yml with its own ports: scrape and evaluate every second, one scrape job per
    entry of `targets` (job name → host:port list) shaped like the repo's `textclf` job."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(path) for path in rule_files]
    (template,) = config["scrape_configs"]
    config["scrape_configs"] = [
        {**template, "job_name": job, "static_configs": [{"targets": list(hosts)}]}
        for job, hosts in targets.items()
    ]
    if alertmanager:
        config["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [alertmanager]}]}]
    else:
        del config["alerting"]
    path = workdir / f"prometheus-{free_port()}.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"
    argv = [
        tool("prometheus"),
        f"--config.file={path}",
        f"--storage.tsdb.path={workdir / (path.stem + '-data')}",
        f"--web.listen-address={address}",
        "--log.level=warn",
    ]
    with running(argv, f"http://{address}/-/ready", workdir / f"{path.stem}.log", cwd=workdir, timeout_s=60):
        yield f"http://{address}"


@contextmanager
def alertmanager_on(workdir: Path, config: dict[str, Any]) -> Iterator[str]:
    """A real Alertmanager with `config`, on loopback, with clustering off; yields host:port."""
    path = workdir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    address = f"127.0.0.1:{free_port()}"
    argv = [
        tool("alertmanager", "prometheus-alertmanager"),
        f"--config.file={path}",
        f"--storage.path={workdir / 'alertmanager-data'}",
        f"--web.listen-address={address}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with running(argv, f"http://{address}/-/ready", workdir / "alertmanager.log", cwd=workdir, timeout_s=60):
        yield address


class LoopbackHub:
    """A tiny HTTP server on 127.0.0.1: `GET /metrics` serves a fixed Prometheus page (a stand-in exporter)
    and `POST /alerts` records each webhook notification Alertmanager sends."""

    def __init__(self, page: str):
        self.page = page.encode()
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = (200, hub.page) if self.path == "/metrics" else (404, b"")
                self.send_response(status)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.path == "/alerts":
                    with hub._lock:
                        note = json.loads(body)
                        hub.notifications.append({**note, "authorization": self.headers.get("Authorization")})
                self.send_response(200 if self.path == "/alerts" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackHub:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def received(self) -> list[dict[str, Any]]:
        """Every alert of every notification so far, with its notification's receiver and status."""
        with self._lock:
            return [
                {
                    **alert,
                    "receiver": note["receiver"],
                    "notification_status": note["status"],
                    "authorization": note["authorization"],
                }
                for note in self.notifications
                for alert in note["alerts"]
            ]


# ---------------------------------------------------------------------------------------------------------
# The tools' own checks


def test_prometheus_config_and_rules_pass_promtool_check() -> None:
    promtool = tool("promtool")
    output = run_tool([promtool, "check", "config", str(PROMETHEUS_CONFIG)])
    assert "SUCCESS: 2 rule files found" in output
    run_tool([promtool, "check", "rules", str(RECORDING_RULES), str(ALERT_RULES)])


def test_rules_pass_their_promtool_unit_tests() -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert {path.name for path in tests} >= {"alerts_test.yml", "recording_test.yml"}
    output = run_tool([tool("promtool"), "test", "rules", *map(str, tests)])
    assert output.count("SUCCESS") == len(tests), output


def test_every_alert_has_a_firing_and_a_quiet_unit_test() -> None:
    cases = yaml.safe_load((PROMETHEUS_DIR / "tests" / "alerts_test.yml").read_text(encoding="utf-8"))
    firing, quiet = set(), set()
    for case in cases["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert set(alert_rules()) == firing == quiet


def test_alerts_carry_severity_team_and_what_to_do() -> None:
    for name, rule in alert_rules().items():
        assert name.startswith("Textclf"), name
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert rule["labels"]["team"] in {"ops", "ml"}, name
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, name
        assert all(len(text) > 20 for text in rule["annotations"].values()), name


def test_rules_select_only_metrics_the_server_exports() -> None:
    recorded = set()
    for path in (RECORDING_RULES, ALERT_RULES):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                name = rule.get("record") or rule["alert"]
                assert rule_metrics(rule["expr"]) <= METRICS, (name, rule["expr"])
                recorded.add(rule.get("record"))
                used = set(re.findall(r"\b\w+:\w+:\w+\b", rule["expr"]))
                assert used <= recorded, f"{rule['expr']} reads a rule recorded later (or never): {used}"


def test_alertmanager_config_is_valid_and_routes_model_alerts_to_the_retrain_webhook() -> None:
    amtool = tool("amtool")
    run_tool([amtool, "check-config", str(ALERTMANAGER_CONFIG)])
    for name in alert_rules():
        output = run_tool(
            [amtool, "config", "routes", "test", f"--config.file={ALERTMANAGER_CONFIG}", f"alertname={name}"]
        )
        receivers = output.strip().splitlines()[0].split(",")
        expected = ["retrain-webhook", "default"] if name in RETRAIN_ALERTS else ["default"]
        assert receivers == expected, (name, output)
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    urls = [hook["url"] for r in config["receivers"] for hook in r.get("webhook_configs", [])]
    assert urls == [RETRAIN_WEBHOOK]


# ---------------------------------------------------------------------------------------------------------
# For real: Prometheus scrapes and evaluates, Alertmanager routes, the webhook receives

DRIFTED_PAGE = """\
# HELP textclf_drift_detected 1 when the last drift check found drift.
# TYPE textclf_drift_detected gauge
textclf_drift_detected{feature="overall"} 1
textclf_drift_detected{feature="chars"} 1
"""


def _fast_alert_rules(path: Path) -> Path:
    """The real alert rules with every `for:` dropped, so that a test sees them fire within seconds."""
    rules = yaml.safe_load(ALERT_RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("for", None)
    path.write_text(yaml.safe_dump(rules), encoding="utf-8")
    return path


def _fast_alertmanager_config(webhook_url: str, secret_file: Path) -> dict[str, Any]:
    """The real Alertmanager config with its webhook pointed at the test (its credential read from
    `secret_file`) and group waits of a second."""
    config = yaml.safe_load(ALERTMANAGER_CONFIG.read_text(encoding="utf-8"))
    hooks = [hook for r in config["receivers"] for hook in r.get("webhook_configs", [])]
    assert [hook["url"] for hook in hooks] == [RETRAIN_WEBHOOK]
    hooks[0]["url"] = webhook_url
    assert hooks[0]["http_config"]["authorization"]["type"] == "Bearer"
    hooks[0]["http_config"]["authorization"]["credentials_file"] = str(secret_file)
    routes = [config["route"], *config["route"]["routes"]]
    for route in routes:
        route.update(group_wait="1s", group_interval="1s")
    return config


def _alertmanager_alerts(address: str, name: str) -> list[dict[str, Any]]:
    alerts = httpx.get(f"http://{address}/api/v2/alerts", timeout=5).json()
    return [alert for alert in alerts if alert["labels"]["alertname"] == name]


@pytest.mark.integration
def test_a_drift_alert_goes_from_prometheus_through_alertmanager_to_the_webhook(tmp_path: Path) -> None:
    tool("prometheus")  # skip (or fail) before starting anything
    tool("alertmanager", "prometheus-alertmanager")
    with LoopbackHub(DRIFTED_PAGE) as hub:
        secret = tmp_path / "webhook.secret"
        secret.write_text("a-webhook-secret-for-this-test\n")
        config = _fast_alertmanager_config(f"http://{hub.address}/alerts", secret)
        with alertmanager_on(tmp_path, config) as am_address:
            targets = {"textclf": [f"127.0.0.1:{free_port()}"], "textclf-canary": [hub.address]}
            rules = [RECORDING_RULES, _fast_alert_rules(tmp_path / "alerts.yml")]
            with prometheus(tmp_path, targets, rules, alertmanager=am_address) as prometheus_url:
                received = wait_for(
                    lambda: [a for a in hub.received() if a["labels"]["alertname"] == "TextclfDriftDetected"],
                    60,
                    "the drift alert at the webhook",
                )
                # The dead `textclf` target fires TextclfWorkerDown, which Alertmanager routes elsewhere.
                (down,) = wait_for(
                    lambda: _alertmanager_alerts(am_address, "TextclfWorkerDown"), 60, "TextclfWorkerDown"
                )
                alerts = query(prometheus_url, 'ALERTS{alertstate="firing"}')
        firing = {sample["metric"]["alertname"] for sample in alerts}
        assert {"TextclfDriftDetected", "TextclfWorkerDown"} <= firing
    alert = received[0]
    assert alert["receiver"] == "retrain-webhook"
    assert alert["authorization"] == "Bearer a-webhook-secret-for-this-test"  # what the receiver checks
    assert alert["status"] == alert["notification_status"] == "firing"
    assert alert["labels"] == {
        "alertname": "TextclfDriftDetected",
        "feature": "overall",  # the per-feature verdict (chars) alone does not alert
        "instance": hub.address,
        "job": "textclf-canary",
        "service": "textclf",  # prometheus.yml's external label
        "severity": "warning",
        "team": "ml",
    }
    annotations = alert_rules()["TextclfDriftDetected"]["annotations"]
    assert alert["annotations"] == {key: text.strip() for key, text in annotations.items()}
    assert [r["name"] for r in down["receivers"]] == ["default"]
    assert down["labels"]["job"] == "textclf" and down["status"]["state"] == "active"
    assert {a["labels"]["alertname"] for a in hub.received()} <= RETRAIN_ALERTS
