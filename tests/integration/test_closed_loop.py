"""The whole loop with real parts, on loopback: two real `bentoml serve` (TF-IDF + LR), a real Prometheus
scraping and alerting, a real Alertmanager routing to the real `textclf retrain-webhook`, and the real
pipeline in a git + DVC project.

The followed server gets traffic whose words the champion never saw, and feedback that shows it is
wrong → the accuracy alert fires → Alertmanager calls the webhook → one retraining job registers a
challenger → the gate promotes it (auto mode) → the server switches to it, under a wrk load that sees
only 200s. A control server gets traffic like the training data over the same time: none of the model's
alerts (accuracy, drift, low confidence) fires for it.
Every process is stopped by PID; every wait has a deadline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from bench.load import WrkRun, write_bodies
from bench.processes import free_port, running
from tests.conftest import SECURITY_OFF
from tests.helpers import bentoml_serve, bin_path, shifted_rows, tiny_rows, wait_for
from tests.integration.test_alert_rules import (
    RECORDING_RULES,
    _fast_alert_rules,
    _fast_alertmanager_config,
    alertmanager_on,
    prometheus,
    query,
    tool,
)
from tests.loop_project import Project, make_project
from textclf.core.served_model import write_served_model

pytestmark = pytest.mark.integration
MODEL = "tests-closed-loop"
SECRET = "closed-loop-webhook-secret"
MODEL_ALERTS = 'alertname=~"TextclfLiveAccuracyDrop|TextclfDriftDetected"'
CONTROL_ALERTS = 'alertname=~"TextclfLiveAccuracyDrop|TextclfDriftDetected|TextclfLowConfidenceRate"'


def _labelled_traffic(url: str, rows: list[tuple[str, str]], stop: threading.Event, sent: list[int]) -> None:
    """Classify texts and send back their true labels with the answer given, as a labelling client does."""
    with httpx.Client(base_url=url, timeout=30) as client:
        i = 0
        while not stop.is_set():
            batch = [rows[(i + k) % len(rows)] for k in range(5)]
            i += 5
            answers = client.post("/classify", json={"texts": [t for t, _ in batch]}).json()
            items = [
                {"text": text, "label": label, "predicted": answer["label"]}
                for (text, label), answer in zip(batch, answers, strict=True)
            ]
            if client.post("/feedback", json={"items": items}).status_code == 200:
                sent[0] += len(items)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Project:
    return make_project(
        tmp_path_factory.mktemp("loopproject"),
        MODEL,
        logreg_c=8.0,
        retrain={"auto_promote": True, "min_interval_s": 3600},
        promotion={"min_slice_rows": 5},
    )


@pytest.fixture
def servers(built_bento: dict[str, str], project: Project, tmp_path: Path) -> Iterator[tuple[str, str, str]]:
    """(followed server URL, control server URL, the champion's tag)."""
    champion = project.alias("champion").tags["bentoml_model"]
    write_served_model(project.root / "served-model.json", champion, None, "deployment")
    common = {
        **SECURITY_OFF,
        "TEXTCLF_WORKERS": "1",
        "TEXTCLF_DATA_KEY": project.key,
        "TEXTCLF_PROFILE_INTERVAL_S": "1",
        "TEXTCLF_DRIFT_CHECK_S": "1",
        "TEXTCLF_DRIFT_MIN_TEXTS": "50",
    }
    followed = {
        **common,
        "TEXTCLF_SERVED_MODEL_FILE": str(project.root / "served-model.json"),
        "TEXTCLF_RELOAD_CHECK_S": "0.2",
        "TEXTCLF_FEEDBACK_DIR": str(project.logs),  # where the retraining job reads
        "TEXTCLF_PROFILES_DIR": str(tmp_path / "profiles-followed"),
    }
    control = {
        **common,
        "TEXTCLF_MODEL": champion,
        "TEXTCLF_FOLLOW": "false",
        "TEXTCLF_FEEDBACK_DIR": str(tmp_path / "feedback-control"),
        "TEXTCLF_PROFILES_DIR": str(tmp_path / "profiles-control"),
    }
    with ExitStack() as stack:
        followed_url = stack.enter_context(
            bentoml_serve(built_bento["bento"], followed, cwd=tmp_path / "followed")
        )
        control_url = stack.enter_context(
            bentoml_serve(built_bento["bento"], control, cwd=tmp_path / "control")
        )
        yield followed_url, control_url, champion


def test_drifted_traffic_retrains_promotes_and_switches_with_zero_failed_requests(
    project: Project, servers: tuple[str, str, str], tmp_path: Path
) -> None:
    tool("prometheus")
    tool("alertmanager", "prometheus-alertmanager")
    followed, control, champion = servers
    before = httpx.get(f"{followed}/model").json()["version"]
    assert champion.endswith(before)
    secret = tmp_path / "webhook.secret"
    secret.write_text(SECRET)
    port = free_port()
    webhook = [
        bin_path("textclf"),
        "retrain-webhook",
        "--port",
        str(port),
        "--feedback-dir",
        str(project.logs),
    ]
    stop = threading.Event()
    sent = {"followed": [0], "control": [0]}
    shifted = shifted_rows(15, seed=21)
    usual = tiny_rows(15, seed=22)
    bodies = write_bodies([text for text, _ in shifted], 1, tmp_path / "bodies.jsonl")
    with ExitStack() as stack:
        stack.enter_context(
            running(
                webhook,
                f"http://127.0.0.1:{port}/healthz",
                tmp_path / "webhook.log",
                env={**project.env, "TEXTCLF_WEBHOOK_SECRET": SECRET},
                cwd=project.root,
            )
        )
        config = _fast_alertmanager_config(f"http://127.0.0.1:{port}/alerts", secret)
        am = stack.enter_context(alertmanager_on(tmp_path, config))
        targets = {
            "textclf": [followed.removeprefix("http://")],
            "control": [control.removeprefix("http://")],
        }
        rules = [RECORDING_RULES, _fast_alert_rules(tmp_path / "alerts.yml")]
        prom = stack.enter_context(prometheus(tmp_path, targets, rules, alertmanager=am))
        load = WrkRun(f"{followed}/classify", bodies, texts_per_request=1, connections=8)
        clients = [
            threading.Thread(target=_labelled_traffic, args=(followed, shifted, stop, sent["followed"])),
            threading.Thread(target=_labelled_traffic, args=(control, usual, stop, sent["control"])),
        ]
        for client in clients:
            client.start()
        try:
            fired = wait_for(
                lambda: query(prom, f'ALERTS{{job="textclf", alertstate="firing", {MODEL_ALERTS}}}'),
                120,
                "a model alert for the drifted server",
            )
            wait_for(
                lambda: project.state().get("status") in ("running", "challenger"), 120, "the retraining job"
            )
            wait_for(
                lambda: httpx.get(f"{followed}/model").json()["version"] != before,
                300,
                "the promoted challenger to serve",
            )
            after = httpx.get(f"{followed}/model").json()["version"]
            live_control = query(prom, 'job:textclf_live_accuracy:ratio_1h{job="control"}')
            # the model's alerts; service alerts (latency, load) answer to this busy 2-core test machine
            control_alerts = query(prom, f'count_over_time(ALERTS{{job="control", {CONTROL_ALERTS}}}[30m])')
        finally:
            stop.set()
            for client in clients:
                client.join(60)
            result = load.stop()

    assert {sample["metric"]["alertname"] for sample in fired} <= {
        "TextclfLiveAccuracyDrop",
        "TextclfDriftDetected",
    }
    assert result.requests > 0 and result.errors == 0 and set(result.statuses) == {"200"}, result
    assert sum(result.socket_errors.values()) == 0, result
    assert project.served()["champion"].endswith(after) and project.served()["by"] == "textclf promote"
    assert project.version("champion") != project.version("previous-champion")
    assert project.alias("champion").tags["bentoml_model"].endswith(after)
    state = project.state()
    assert state["status"] == "challenger" and state["last"]["new"] > 0
    audit = (project.root / "audit" / "audit-cli.jsonl").read_text()
    for action in ("retrain-queued", "retrain-done", "promote", "retrain-finished"):
        assert f'"action":"{action}"' in audit, action
    # the control server, same distribution over the same time: measured, and nothing fired
    assert sent["control"][0] >= 50 and live_control and float(live_control[0]["value"][1]) >= 0.85
    assert control_alerts == [], control_alerts
