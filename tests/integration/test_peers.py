"""The PyTriton peer for real: its own venv (made on demand), the tiny BERT, Triton on loopback, briefly.

Skipped with the reason when the peer venv cannot be made (no package index). Labels are compared on the
fp32 folder: dynamic int8 quantisation scales activations per call, so an int8 score depends on which
texts share the batch, and a close call could flip.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from bench.apps.pytriton_ort import PORTS_PREFIX
from bench.load import run_wrk
from bench.peers import (
    ensure_pytriton,
    pytriton_argv,
    pytriton_env,
    triton_body,
    triton_infer_url,
    triton_ready_url,
    write_triton_bodies,
)
from bench.processes import free_port, running
from tests.conftest import REPO, Workspace
from tests.helpers import tiny_rows, wait_for
from textclf.core.runtime import OnnxClassifier

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pytriton_python() -> Path:
    python, reason = ensure_pytriton(print)
    if python is None:
        pytest.skip(reason)
    return python


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.MULTILINE)
    assert match, name
    return float(match.group(1))


def test_pytriton_serves_the_products_labels_and_batches(
    trained_bert: Workspace, pytriton_python: Path, tmp_path: Path
) -> None:
    folder = trained_bert.onnx_dir("bert", "fp32")
    texts = [text for text, _ in tiny_rows(4, seed=5)] + ["héllo ünïcode €", "x"]
    local = OnnxClassifier(folder)
    expected = {text: local.top_k(local.predict_proba([text]), 1)[0][0] for text in texts}
    port = free_port()
    log = tmp_path / "pytriton.log"
    argv = pytriton_argv(pytriton_python, folder, port, instances=2, threads=1)
    with running(argv, triton_ready_url(port), log, env=pytriton_env(REPO), cwd=REPO) as process:
        url = triton_infer_url(port)
        with httpx.Client(timeout=30) as client:

            def ask(text: str) -> tuple[str, dict]:
                answer = client.post(url, json=triton_body(text))
                assert answer.status_code == 200, answer.text
                return text, {out["name"]: out for out in answer.json()["outputs"]}

            first = ask(texts[0])[1]
            assert first["label"]["datatype"] == "BYTES" and first["label"]["shape"] == [1, 1]
            assert first["score"]["datatype"] == "FP32" and first["score"]["shape"] == [1, 1]
            with ThreadPoolExecutor(16) as pool:  # concurrent: Triton puts several in one batch
                answers = list(pool.map(ask, texts * 2))
        for text, outputs in answers:
            assert outputs["label"]["data"] == [expected[text].label], text
            assert outputs["score"]["data"][0] == pytest.approx(expected[text].score, abs=1e-4), text

        bodies = write_triton_bodies(texts, tmp_path / "bodies.jsonl", count=200)
        result = run_wrk(url, bodies, texts_per_request=1, connections=4, duration_s=1)
        assert result.requests > 0 and result.errors == 0, result.statuses
        assert set(result.statuses) == {"200"}

        line = next(x for x in log.read_text().splitlines() if x.startswith(PORTS_PREFIX))
        ports = json.loads(line.removeprefix(PORTS_PREFIX))
        assert ports["http"] == port
        metrics = httpx.get(f"http://127.0.0.1:{ports['metrics']}/metrics", timeout=10).text
        texts_seen = _metric(metrics, "nv_inference_count")
        assert texts_seen >= result.requests + len(answers)
        assert _metric(metrics, "nv_inference_exec_count") < texts_seen  # some batches held several texts
    assert process.returncode == 0  # SIGTERM stopped it cleanly, within the harness's grace period
    wait_for(lambda: _group_gone(process.pid), 30, "Triton and its backend stubs to end with the app")


def _group_gone(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return True
    return False
