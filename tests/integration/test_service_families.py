"""Every family loads into the same Bento and classifies through real HTTP, like the TF-IDF model."""

from __future__ import annotations

import httpx
import pytest

from converters.bundle import build_bento
from tests.conftest import REPO, SECURITY_OFF, SERVER_LIMITS, Workspace
from tests.helpers import bentoml_serve
from textclf.core.runtime import OnnxClassifier

pytestmark = pytest.mark.integration

TEXTS = ["my pin is blocked please", "how do i get a refund", "where is my new card", "fx rate today"]


@pytest.mark.parametrize(("fixture", "precision"), [("trained_lstm", "int8"), ("trained_bert", "fp32")])
def test_token_model_served_over_http(
    fixture: str, precision: str, request: pytest.FixtureRequest, tmp_path
) -> None:
    ws: Workspace = request.getfixturevalue(fixture)
    family = fixture.removeprefix("trained_")
    folder = ws.onnx_dir(family, precision)
    tags = build_bento(folder, tmp_path / "bento.json", bentofile=REPO / "bentofile.yaml")
    fixed_chunks = {"TEXTCLF_SUB_BATCH": "2", "TEXTCLF_CALL_COST_TOKENS": "0"}  # as the local model below
    env = {"TEXTCLF_MODEL": tags["model"], **fixed_chunks, **SECURITY_OFF, **SERVER_LIMITS}
    with bentoml_serve(tags["bento"], env, cwd=tmp_path) as url:
        info = httpx.get(f"{url}/model", timeout=10).json()
        assert (info["family"], info["precision"]) == (family, precision)
        response = httpx.post(f"{url}/classify", json={"texts": TEXTS, "top_k": 2}, timeout=10)
        assert response.status_code == 200
        results = response.json()
        local = OnnxClassifier(folder, sub_batch=2)  # int8 activations are quantised per call
        expected = local.top_k(local.predict_proba(TEXTS), 2)
        assert [r["label"] for r in results] == [e[0].label for e in expected]
        assert [r["score"] for r in results] == pytest.approx([e[0].score for e in expected], abs=1e-5)
        bad = httpx.post(f"{url}/classify", json={"texts": ["   "]}, timeout=10)
        assert bad.status_code == 422
