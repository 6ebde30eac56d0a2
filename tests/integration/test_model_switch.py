"""A running `bentoml serve` (2 workers) follows the served-model file under a real wrk load: a challenger
is shadowed (agreement, confidence and feedback accuracy of both models exported), the champion switches
without a restart, a tampered model is refused while the old one keeps serving, and through all of it wrk
sees only 200s and no connection error. Resident memory is measured across repeated switches."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import bentoml
import httpx
import pytest

from bench.load import WrkRun, write_bodies
from tests.conftest import SECURITY_OFF
from tests.helpers import bentoml_serve, serve_workers, tiny_rows, wait_for
from tests.integration.test_monitoring_server import samples
from textclf.core.crypto import new_data_key
from textclf.core.served_model import write_served_model

pytestmark = pytest.mark.integration
WAIT_S = 60


@dataclass(frozen=True)
class Models:
    first: str  # the built Bento's model
    second: str  # the same labels, trained with other settings: another version
    tampered: str  # the second's files stored under a version its ONNX bytes do not hash to


@pytest.fixture(scope="module")
def models(built_bento: dict[str, str], second_logreg: str) -> Models:
    second = second_logreg
    tampered = bentoml.Tag.from_taglike(f"{second.split(':')[0]}:0123456789abcdef")
    with contextlib.suppress(bentoml.exceptions.NotFound):
        bentoml.models.delete(tampered)
    with bentoml.models.create(tampered, labels={"family": "logreg"}) as model:
        for item in Path(bentoml.models.get(second).path).iterdir():
            if item.is_file() and item.name != "model.yaml":
                shutil.copy2(item, Path(model.path) / item.name)
    return Models(built_bento["model"], second, str(tampered))


@dataclass(frozen=True)
class Following:
    url: str
    file: Path
    audit: Path
    port: int


@pytest.fixture(scope="module")
def following(
    built_bento: dict[str, str], models: Models, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Following]:
    root = tmp_path_factory.mktemp("following")
    file = root / "served-model.json"
    write_served_model(file, models.first, None, "test")
    env = {
        **SECURITY_OFF,
        "TEXTCLF_AUDIT": "true",  # the model changes are audited
        "TEXTCLF_AUDIT_DIR": str(root / "audit"),
        "TEXTCLF_AUDIT_STDOUT": "false",
        "TEXTCLF_SERVED_MODEL_FILE": str(file),
        "TEXTCLF_RELOAD_CHECK_S": "0.2",
        "TEXTCLF_SHADOW_FRACTION": "1.0",
        "TEXTCLF_WORKERS": "2",
        "TEXTCLF_PIN_WORKERS": "true",  # each worker on its half of the CPUs, wherever they split evenly
        "TEXTCLF_FEEDBACK_DIR": str(root / "feedback"),
        "TEXTCLF_DATA_KEY": new_data_key(),
        "TEXTCLF_PROFILES_DIR": str(root / "profiles"),
    }
    with bentoml_serve(built_bento["bento"], env, cwd=root) as url:  # no TEXTCLF_MODEL: it follows
        yield Following(url, file, root / "audit", int(url.rsplit(":", 1)[1]))


def _info(url: str) -> dict[str, float]:
    """textclf_model_info by version (max over workers: 1 while any worker serves it)."""
    return {dict(k)["version"]: v for k, v in samples(url).get("textclf_model_info", {}).items()}


def _count(url: str, name: str, **labels: str) -> float:
    return sum(v for k, v in samples(url).get(name, {}).items() if labels.items() <= dict(k).items())


def _workers_rss_mb(port: int) -> list[float]:
    """Resident memory of the server's worker processes (children of `bentoml serve` on `port`)."""
    return sorted(worker.memory_info().rss / 2**20 for worker in serve_workers(port))


def _audited_by_worker(folder: Path, action: str) -> list[list[dict]]:
    """Each worker's audit records of `action` (model changes go to audit-model-<worker>.jsonl)."""
    return [
        [record for line in path.read_text().splitlines() if (record := json.loads(line))["action"] == action]
        for path in sorted(folder.glob("audit-model-*.jsonl"))
    ]


def _audited(folder: Path, action: str) -> list[dict]:
    """The workers' audit records of `action`, all together."""
    return [record for records in _audited_by_worker(folder, action) for record in records]


def _switches_by_worker(folder: Path) -> list[int]:
    """How many switches each worker has audited. Its audit line is the last step of a switch (after the
    old model is released and the switch counted), so this says each worker is done, not just started:
    the served version changes (info, /model) before that."""
    return sorted(len(records) for records in _audited_by_worker(folder, "model-switched"))


def test_shadow_switch_refusal_and_rollback_under_load(
    following: Following, models: Models, tmp_path: Path
) -> None:
    first, second = (tag.split(":")[1] for tag in (models.first, models.second))
    assert httpx.get(f"{following.url}/model").json()["version"] == first
    bodies = write_bodies([text for text, _ in tiny_rows(20, seed=11)], 1, tmp_path / "bodies.jsonl")
    load = WrkRun(f"{following.url}/classify", bodies, texts_per_request=1, connections=16)
    try:
        # a challenger: mirrored live texts and feedback run on both models
        write_served_model(following.file, models.first, models.second, "test")
        wait_for(
            lambda: _count(following.url, "textclf_shadow_model_info", version=second) == 1, WAIT_S, "shadow"
        )
        wait_for(
            lambda: (
                _count(following.url, "textclf_shadow_texts_total", outcome="agree")
                + _count(following.url, "textclf_shadow_texts_total", outcome="disagree")
                > 0
            ),
            WAIT_S,
            "mirrored texts",
        )
        rows = tiny_rows(2, seed=12)
        items = [{"text": text, "label": label} for text, label in rows]
        assert httpx.post(f"{following.url}/feedback", json={"items": items}).status_code == 200
        wait_for(
            lambda: all(
                _count(following.url, "textclf_shadow_feedback_total", model=model) == len(rows)
                for model in ("champion", "challenger")
            ),
            WAIT_S,
            "feedback run on both models",
        )
        rss = [_workers_rss_mb(following.port)]

        # promotion: both workers switch, the old version's info series drops to 0
        write_served_model(following.file, models.second, None, "test")
        wait_for(
            lambda: _info(following.url).get(second) == 1 and _info(following.url).get(first) == 0,
            WAIT_S,
            "switch",
        )
        assert httpx.get(f"{following.url}/model").json()["version"] == second
        wait_for(lambda: _switches_by_worker(following.audit) == [1, 1], WAIT_S, "both workers switched")
        wait_for(
            lambda: _count(following.url, "textclf_shadow_model_info", version=second) == 0,
            WAIT_S,
            "no shadow",
        )

        # a tampered model is refused by every worker; the champion keeps serving
        write_served_model(following.file, models.tampered, None, "test")
        wait_for(
            lambda: _count(following.url, "textclf_model_switches_total", outcome="refused") == 2,
            WAIT_S,
            "refusals",
        )
        assert _info(following.url).get(second) == 1
        assert httpx.get(f"{following.url}/model").json()["version"] == second
        # each worker counts the refusal, then writes its audit line: wait for both lines
        wait_for(lambda: len(_audited(following.audit, "model-refused")) == 2, WAIT_S, "refusals audited")
        refused = _audited(following.audit, "model-refused")
        assert "changed since it was exported" in refused[0]["reason"]

        # back and forth: memory does not grow with each switch (the old model is released)
        for done, (tag, version) in enumerate([(models.first, first), (models.second, second)] * 3, start=2):
            write_served_model(following.file, tag, None, "test")
            wait_for(
                lambda v=version: (
                    _info(following.url).get(v) == 1
                    and httpx.get(f"{following.url}/model").json()["version"] == v
                ),
                WAIT_S,
                f"switch to {version}",
            )
            wait_for(
                lambda n=done: _switches_by_worker(following.audit) == [n, n], WAIT_S, "both workers switched"
            )
            rss.append(_workers_rss_mb(following.port))
    finally:
        result = load.stop()
    assert result.requests > 0 and result.errors == 0, result
    assert set(result.statuses) == {"200"} and sum(result.socket_errors.values()) == 0, result
    growth = [after - before for before, after in zip(rss[1], rss[-1], strict=True)]
    print(f"worker RSS (MB) after each switch: {rss}")
    assert max(growth) < 50, rss
    assert _count(following.url, "textclf_model_switches_total", outcome="switched") == 2 * 7
    switched = _audited(following.audit, "model-switched")
    assert {a["model"] for a in switched} == {models.first, models.second}
    log = "".join(path.read_text() for path in following.audit.parent.glob("serve-*.log"))
    assert "still referenced" not in log  # every old model was released at once


def test_each_worker_runs_every_thread_on_its_own_half_of_the_cpus(following: Following) -> None:
    allowed = os.sched_getaffinity(0)
    if len(allowed) % 2:
        pytest.skip(f"{len(allowed)} CPUs do not split between two workers")
    shares = []
    for worker in serve_workers(following.port):
        cpus = {frozenset(os.sched_getaffinity(thread.id)) for thread in worker.threads()}
        assert len(cpus) == 1, f"worker {worker.pid}'s threads run on different CPU sets: {cpus}"
        shares.append(set(cpus.pop()))
    assert len(shares) == 2 and all(len(share) == len(allowed) // 2 for share in shares)
    assert shares[0] | shares[1] == allowed  # disjoint halves: together every CPU
