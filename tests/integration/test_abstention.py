"""Out of scope, end to end: `abstain.target_precision` fits a threshold per variant at export (on the
validation split, into the model's metadata and version), and a real server abstains below it: label
null, `abstained: true`, the best candidates listed, counted on /metrics."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import httpx
import numpy as np
import pytest

from converters.abstention import fit_threshold
from converters.store import save_to_store
from tests.conftest import SECURITY_OFF, SERVER_LIMITS, Workspace, run_pipeline
from tests.helpers import bentoml_serve, wait_for
from tests.integration.test_monitoring_server import samples
from textclf.core.contract import MODEL_FILE, check_exported_folder, version_of, write_metadata
from textclf.core.runtime import ABSTAIN_CANDIDATES, OnnxClassifier
from training.params import load_params
from training.splits import validation_examples

pytestmark = pytest.mark.integration

TARGET = 0.99
IN_SCOPE = ["my pin is blocked please", "how do i get a refund", "where is my new card now"]
OUT_OF_SCOPE = ["zebra violin quantum marmalade", "the weather on mars is cold", "sing me a lullaby", "ok"]


@pytest.fixture(scope="module")
def abstaining(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return run_pipeline(tmp_path_factory.mktemp("abstain"), "logreg", abstain={"target_precision": TARGET})


def test_the_threshold_is_fitted_on_the_validation_split_and_is_part_of_the_version(
    abstaining: Workspace, trained_logreg: Workspace
) -> None:
    folder = abstaining.onnx_dir("logreg")
    _, metadata = check_exported_folder(folder)
    report = json.loads((abstaining.reports / "calibration_logreg.json").read_text())["fp32"]["abstention"]
    assert report["threshold"] == metadata.abstain_below and report["target_precision"] == TARGET
    # refitted from the served (calibrated) scores of exactly the validation rows
    classifier = OnnxClassifier(folder)
    validation = validation_examples(load_params(abstaining.params_file), "logreg")
    probs = classifier.predict_proba(validation.texts)
    correct = np.array(classifier.labels)[probs.argmax(axis=1)] == np.array(validation.labels)
    assert fit_threshold(probs.max(axis=1), correct, TARGET).as_dict() == report
    # the same graph and temperature without abstention is another version
    onnx = (folder / MODEL_FILE).read_bytes()
    assert metadata.version == version_of(onnx, metadata)
    _, plain = check_exported_folder(trained_logreg.onnx_dir("logreg"))
    assert (
        plain.abstain_below is None
        and "abstention"
        not in json.loads((trained_logreg.reports / "calibration_logreg.json").read_text())["fp32"]
    )


def _with_threshold(source: Path, folder: Path, threshold: float) -> Path:
    """A copy of a model folder that abstains below `threshold` (metadata and version as export writes
    them): the tiny dataset's validation split is all right, so its fitted threshold is 0."""
    shutil.copytree(source, folder)
    _, metadata = check_exported_folder(folder)
    changed = replace(metadata, abstain_below=threshold)
    write_metadata(folder, replace(changed, version=version_of((folder / MODEL_FILE).read_bytes(), changed)))
    return folder


def test_a_server_abstains_below_the_threshold(
    trained_logreg: Workspace, built_bento: dict[str, str], tmp_path: Path
) -> None:
    texts = IN_SCOPE + OUT_OF_SCOPE
    scores = OnnxClassifier(trained_logreg.onnx_dir("logreg")).predict_proba(texts).max(axis=1)
    threshold = round(float(np.median(scores)), 4)
    folder = _with_threshold(trained_logreg.onnx_dir("logreg"), tmp_path / "model", threshold)
    classifier = OnnxClassifier(folder)
    expected = [bool(s < threshold) for s in scores]
    assert any(expected) and not all(expected), (threshold, scores)  # both kinds of answer are exercised
    tag = save_to_store(folder)
    env = {"TEXTCLF_MODEL": tag, **SECURITY_OFF, **SERVER_LIMITS}
    with bentoml_serve(built_bento["bento"], env, cwd=tmp_path / "serve") as url:
        assert httpx.get(f"{url}/model", timeout=10).json()["abstain_below"] == threshold
        answers = httpx.post(f"{url}/classify", json={"texts": texts}, timeout=30).json()
        assert [a["abstained"] for a in answers] == expected
        for a, best in zip(answers, classifier.answers(classifier.predict_proba(texts)), strict=True):
            assert a["score"] == pytest.approx(best["score"], abs=1e-6)
            if a["abstained"]:
                assert a["label"] is None and len(a["top_k"]) == ABSTAIN_CANDIDATES
                assert a["top_k"][0]["label"] == best["top_k"][0]["label"]
            else:
                assert a["label"] == best["label"] and a["top_k"] is None
        asked = httpx.post(f"{url}/classify", json={"texts": texts, "top_k": 2}, timeout=30).json()
        assert all(len(a["top_k"]) == 2 for a in asked)
        abstained = 2 * sum(expected)
        wait_for(
            lambda: sum(samples(url).get("textclf_abstained_total", {}).values()) == abstained,
            30,
            "the abstentions on /metrics",
        )
        assert sum(samples(url)["textclf_predictions_total"].values()) == 2 * len(texts)  # every answer
