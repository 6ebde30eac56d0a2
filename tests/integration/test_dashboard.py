"""The Grafana dashboard: well-formed, generated from monitoring/dashboard.py, every query valid PromQL, and
every panel showing data from a real `bentoml serve` scraped by a real Prometheus.

No Grafana server is installable here, so Grafana's part is played by this test: it substitutes the
dashboard's variables as Grafana would (one job, all instances) and sends each panel's queries to
Prometheus's HTTP API. `$__rate_interval` becomes 5m: Grafana makes it at least four scrapes, and five
minutes covers the whole test, so the rates include the short load however slow the machine is.
"""

from __future__ import annotations

import json
import math
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitoring import dashboard
from tests.conftest import REPO, SECURITY_OFF
from tests.helpers import bentoml_serve, tiny_rows, wait_for
from tests.integration.test_alert_rules import (
    ALERT_RULES,
    METRICS,
    PROMETHEUS_CONFIG,
    RECORDING_RULES,
    prometheus,
    query,
    rule_metrics,
    run_tool,
    tool,
)
from textclf.core.crypto import new_data_key
from textclf.core.features import FEATURES
from textclf.core.served_model import write_served_model

GRAFANA = REPO / "monitoring" / "grafana"
VARIABLES = {"__rate_interval": "5m", "job": "textclf", "instance": ".*"}  # .* is the "All" value
# Queries that may stay empty in a short healthy run, each with the reason. Everything else must answer
# with at least one finite number.
MAY_BE_EMPTY = {
    ("textclf alerts", "{{alertname}} {{alertstate}}"): "no alert is pending or firing in a healthy run",
}
RULES_MAY_BE_EMPTY = {
    "job:textclf_http_overloaded:rate5m": "no request is shed (503) in a healthy run",
}


def substitute(expr: str) -> str:
    """The query as Grafana sends it with VARIABLES chosen."""
    text = re.sub(r"\$(\w+)", lambda m: VARIABLES[m.group(1)], expr)
    assert "$" not in text, text
    return text


def targets(board: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, legend, expression) of every query of the dashboard."""
    return [
        (panel["title"], target["legendFormat"], target["expr"])
        for panel in dashboard.panels(board)
        for target in panel["targets"]
    ]


@pytest.fixture(scope="module")
def board() -> dict[str, Any]:
    return json.loads(dashboard.OUTPUT.read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------------------
# The JSON itself


def test_the_committed_json_is_what_monitoring_dashboard_builds(board: dict[str, Any]) -> None:
    assert dashboard.main(["--check"]) == 0, "run `python -m monitoring.dashboard`"
    assert board == dashboard.render()


def test_every_panel_queries_prometheus_through_the_datasource_variable(board: dict[str, Any]) -> None:
    panels = dashboard.panels(board)
    assert len(panels) >= 15
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids))
    assert len({panel["title"] for panel in panels}) == len(panels)
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}, panel["title"]
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        assert len({target["refId"] for target in panel["targets"]}) == len(panel["targets"])
        for target in panel["targets"]:
            assert target["datasource"] == panel["datasource"]
            assert target["expr"].strip(), panel["title"]
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    used = {name for *_, expr in targets(board) for name in re.findall(r"\$(\w+)", expr)}
    assert used <= set(variables) | {"__rate_interval"}


def test_panels_tile_the_grid_without_overlap(board: dict[str, Any]) -> None:
    taken: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= dashboard.GRID_COLUMNS, panel["title"]
        cells = {(grid["x"] + dx, grid["y"] + dy) for dx in range(grid["w"]) for dy in range(grid["h"])}
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_the_dashboard_shows_what_the_issue_asks_for(board: dict[str, Any]) -> None:
    shown = set().union(*(rule_metrics(expr) for *_, expr in targets(board)))
    assert shown <= METRICS
    assert METRICS - shown == set(), f"metrics on no panel: {METRICS - shown}"


def test_every_query_is_valid_promql(tmp_path: Path, board: dict[str, Any]) -> None:
    """promtool parses each query (variables substituted) as a recording rule: no server needed."""
    rules = [
        {"record": f"dashboard:query_{i}:check", "expr": substitute(expr)}
        for i, (*_, expr) in enumerate(targets(board))
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    run_tool([tool("promtool"), "check", "rules", str(path)])


def test_provisioning_points_grafana_at_prometheus_and_the_dashboard_folder() -> None:
    (source,) = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())[
        "datasources"
    ]
    assert source["type"] == "prometheus" and source["isDefault"]
    alerting = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))["global"]
    assert source["jsonData"]["timeInterval"] == alerting["scrape_interval"]  # $__rate_interval's unit
    (provider,) = yaml.safe_load((GRAFANA / "provisioning/dashboards/textclf.yml").read_text())["providers"]
    assert provider["type"] == "file" and provider["options"]["path"].startswith("/")
    assert [path.name for path in (GRAFANA / "dashboards").glob("*.json")] == [dashboard.OUTPUT.name]


# ---------------------------------------------------------------------------------------------------------
# Every panel against a real server and a real Prometheus


def _classify(client: httpx.Client, texts: list[str]) -> int:
    return client.post("/classify", json={"texts": texts}).status_code


def _send_feedback(client: httpx.Client, rows: list[tuple[str, str]]) -> int:
    """True labels for `rows`, each saying what the server answered (live accuracy and recall)."""
    answers = client.post("/classify", json={"texts": [text for text, _ in rows]}).json()
    items = [
        {"text": text, "label": label, "predicted": answer["label"]}
        for (text, label), answer in zip(rows, answers, strict=True)
    ]
    return client.post("/feedback", json={"items": items}).status_code


def _has_number(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


@pytest.mark.integration
def test_every_panel_shows_data_from_a_real_server(
    built_bento: dict[str, str], second_logreg: str, tmp_path: Path, board: dict[str, Any]
) -> None:
    tool("prometheus")  # skip (or fail) before starting a server for nothing
    write_served_model(tmp_path / "served-model.json", built_bento["model"], second_logreg, "test")
    env = {
        "TEXTCLF_SERVED_MODEL_FILE": str(tmp_path / "served-model.json"),  # a challenger in the shadow lane
        "TEXTCLF_SHADOW_FRACTION": "1.0",
        "TEXTCLF_MODEL": built_bento["model"],
        **SECURITY_OFF,
        "TEXTCLF_PROFILES_DIR": str(tmp_path / "profiles"),
        "TEXTCLF_PROFILE_INTERVAL_S": "1",
        "TEXTCLF_DRIFT_CHECK_S": "1",
        "TEXTCLF_DRIFT_MIN_TEXTS": "20",
        "TEXTCLF_FEEDBACK_DIR": str(tmp_path / "feedback"),
        "TEXTCLF_DATA_KEY": new_data_key(),
    }
    texts = [text for text, _ in tiny_rows(60, seed=7)]  # 300 texts like the training data
    batches = [texts[i : i + 1 + i % 3] for i in range(len(texts))]  # 300 requests of 1 to 3 texts
    with bentoml_serve(built_bento["bento"], env, cwd=tmp_path) as url:
        host = url.removeprefix("http://")
        with prometheus(tmp_path, {"textclf": [host]}, [RECORDING_RULES, ALERT_RULES]) as prometheus_url:
            with httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(8) as pool:
                # Every series the load moves must be in a scrape before it, or rates see no change.
                warm_up = [_classify(client, batches[0]), _classify(client, [])]
                wait_for(
                    lambda: query(prometheus_url, 'textclf_http_requests_total{route="/classify"}')[1:],
                    30,
                    "a scrape of the warm-up's 200 and 4xx",
                )
                statuses = list(pool.map(lambda batch: _classify(client, batch), batches))
                labelled = tiny_rows(4, seed=8)
                feedback = _send_feedback(client, labelled)
                refused = [_classify(client, texts) for texts in ([], [""], ["   "])]  # bad input: 4xx
                version = client.get("/model").json()["version"]
            assert warm_up[0] == 200 and statuses == [200] * len(batches), (warm_up, set(statuses))
            assert feedback == 200
            assert all(400 <= status < 500 for status in [warm_up[1], *refused]), (warm_up, refused)
            sent = len(batches[0]) + sum(map(len, batches)) + len(labelled)
            wait_for(
                lambda: query(prometheus_url, f"sum(textclf_predictions_total) == {sent}"),
                30,
                "every prediction",
            )
            # a drift check over the load (the first ones may cover only the warm-up's text: no verdict)
            wait_for(lambda: query(prometheus_url, "textclf_drift_window_texts >= 20"), 60, "a drift window")
            wait_for(
                lambda: query(prometheus_url, 'textclf_drift_p_value{feature="overall"} >= 0'),
                30,
                "a verdict",
            )
            wait_for(  # the shadow lane runs behind the answers: its counts arrive a little later
                lambda: query(
                    prometheus_url,
                    "sum(textclf_shadow_feedback_total) > 0"
                    ' and sum(textclf_shadow_texts_total{outcome="agree"}) > 0',
                ),
                30,
                "the challenger's shadow counts",
            )
            wait_for(lambda: _rules_evaluated(prometheus_url), 30, "every rule evaluated")
            answers = {
                (title, legend): query(prometheus_url, substitute(expr))
                for title, legend, expr in targets(board)
            }
            recorded = {name: query(prometheus_url, name) for name in _recording_rule_names()}
            info = query(prometheus_url, "textclf_model_info")
            requests = query(
                prometheus_url, 'sum by (status) (textclf_http_requests_total{route="/classify"})'
            )
    empty = {key for key, result in answers.items() if not _has_number(result)}
    assert empty <= set(MAY_BE_EMPTY), f"panels without data: {sorted(empty - set(MAY_BE_EMPTY))}"
    for title in {title for title, _ in answers}:  # every panel shows something
        assert any(_has_number(r) for (t, _), r in answers.items() if t == title) or all(
            (t, legend) in MAY_BE_EMPTY for (t, legend) in answers if t == title
        ), title
    empty_rules = {name for name, result in recorded.items() if not _has_number(result)}
    assert empty_rules <= set(RULES_MAY_BE_EMPTY), f"recording rules without data: {empty_rules}"
    assert [sample["metric"]["version"] for sample in info] == [version]
    verdicts = answers[("Drift verdicts", "{{feature}}")]
    assert {sample["metric"]["feature"] for sample in verdicts} == {*FEATURES, "model_outputs", "overall"}
    by_status = {sample["metric"]["status"]: float(sample["value"][1]) for sample in requests}
    assert by_status.get("200") == 2 + len(batches)  # the warm-up, the load, the labelled texts
    assert sum(n for status, n in by_status.items() if status.startswith("4")) == 1 + len(refused)


def _recording_rule_names() -> list[str]:
    groups = yaml.safe_load(RECORDING_RULES.read_text(encoding="utf-8"))["groups"]
    return [rule["record"] for group in groups for rule in group["rules"]]


def _rules_evaluated(prometheus_url: str) -> bool:
    """True once every rule has been evaluated; fails at once if one evaluation failed (e.g. a vector
    matching error that only real label sets reveal)."""
    groups = httpx.get(f"{prometheus_url}/api/v1/rules", timeout=10).json()["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    errors = [(rule["name"], rule.get("lastError")) for rule in rules if rule["health"] == "err"]
    assert not errors, errors
    return bool(rules) and all(rule["health"] == "ok" for rule in rules)
