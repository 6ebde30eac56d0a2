"""What the export adds to every variant: a temperature fitted on the validation split the model never
trained on, and the drift reference of that split (plus a raw-string model's vocabulary), travelling
into the BentoML store sealed or plain. Also the zero-token text an int8 token model once mis-scored."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import bentoml
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from converters.calibration import fit_temperature
from converters.store import store_tag
from monitoring.profiles import read_reference, view_from_bytes
from tests.conftest import REPO, TINY_EXPORT, Workspace, make_workspace
from tests.helpers import write_csv
from textclf.core.artifacts import SEALED_SUFFIX, ModelFiles
from textclf.core.contract import (
    METADATA_FILE,
    MODEL_FILE,
    PROBABILITIES_OUTPUT,
    REFERENCE_FILE,
    VOCABULARY_FILE,
    check_exported_folder,
    model_version,
)
from textclf.core.crypto import DATA_KEY_ENV, DATA_KEY_FILE_ENV, decode_data_key, new_data_key
from textclf.core.features import FEATURES
from textclf.core.runtime import OnnxClassifier, apply_temperature
from training.families import load_family
from training.params import load_params
from training.splits import training_part, validation_examples

pytestmark = pytest.mark.integration  # trains models, uses the BentoML store

VARIANTS = [
    ("trained_logreg", "fp32"),
    ("trained_lstm", "fp32"),
    ("trained_lstm", "int8"),
    ("trained_bert", "fp32"),
    ("trained_bert", "int8"),
]
TEXTS = ["my pin is blocked please", "how do i get a refund", "where is my new card now", "fx rate today"]


def _variant(request: pytest.FixtureRequest, fixture: str) -> tuple[Workspace, str]:
    return request.getfixturevalue(fixture), fixture.removeprefix("trained_")


def _copy_at(folder: Path, tmp_path: Path, temperature: float) -> OnnxClassifier:
    """The same graph served at another temperature (1: the probabilities the ONNX graph gives)."""
    copy = tmp_path / f"t{temperature}"
    shutil.copytree(folder, copy)
    metadata = json.loads((copy / METADATA_FILE).read_text()) | {"temperature": temperature}
    (copy / METADATA_FILE).write_text(json.dumps(metadata))
    return OnnxClassifier(copy)


@pytest.mark.parametrize(("fixture", "precision"), VARIANTS)
def test_every_variant_is_calibrated_on_its_validation_split(
    fixture: str, precision: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ws, family = _variant(request, fixture)
    folder = ws.onnx_dir(family, precision)
    _, metadata = check_exported_folder(folder)
    report = json.loads((ws.reports / f"calibration_{family}.json").read_text())[precision]
    validation = validation_examples(load_params(ws.params_file), family)
    assert report["temperature"] == metadata.temperature > 0
    assert report["validation_rows"] == len(validation) > 0 and report["test_rows"] == 50
    # fitted on the graph's own probabilities of exactly the validation rows
    graph = _copy_at(folder, tmp_path, 1.0)
    targets = np.array([graph.labels.index(label) for label in validation.labels])
    assert fit_temperature(graph.predict_proba(validation.texts), targets) == metadata.temperature
    # T minimises the validation NLL over a range that includes T = 1 (up to the stored rounding)
    assert report["val_nll_after"] <= report["val_nll_before"] + 1e-4
    for key in ("val_ece_before", "val_ece_after", "test_ece_before", "test_ece_after"):
        assert 0.0 <= report[key] <= 1.0
    run_id = metadata.mlflow_run_id
    logged = MlflowClient().get_run(run_id).data.metrics
    assert logged[f"calibration_{precision}_temperature"] == pytest.approx(metadata.temperature)
    assert logged[f"calibration_{precision}_test_ece_after"] == pytest.approx(report["test_ece_after"])


@pytest.fixture(scope="module")
def noisy_logreg(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The tiny dataset is too easy to need a temperature (every validation text comes out right, and
    then T stays 1): with one train label in five changed, the model errs and calibration has work."""
    from converters.export import export
    from training.train import train
    from training.validate import prepare

    ws = make_workspace(tmp_path_factory.mktemp("noisy"), export=TINY_EXPORT)
    params = load_params(ws.params_file)
    with params.data.train_path.open(newline="", encoding="utf-8") as handle:
        header, *rows = list(csv.reader(handle))
    names = sorted({label for _, label in rows})
    for i in range(0, len(rows), 5):
        rows[i][1] = names[(names.index(rows[i][1]) + 1) % len(names)]
    write_csv(params.data.train_path, [tuple(r) for r in rows], header=tuple(header))
    prepare(params.data, ws.reports / "data.json")
    train("logreg", params, ws.model_dir("logreg"), ws.reports)
    export(params, ws.model_dir("logreg"), ws.export_dir("logreg"), ws.reports)
    return ws


def test_a_fitted_temperature_is_served_and_versions_the_model(noisy_logreg: Workspace) -> None:
    folder = noisy_logreg.onnx_dir("logreg")
    _, metadata = check_exported_folder(folder)
    report = json.loads((noisy_logreg.reports / "calibration_logreg.json").read_text())["fp32"]
    assert report["val_accuracy"] < 1.0 and metadata.temperature == report["temperature"] != 1.0
    assert report["val_nll_after"] < report["val_nll_before"]
    # a new calibration of the same graph is a new model version, in the store too
    onnx = (folder / MODEL_FILE).read_bytes()
    assert metadata.lowercase  # TF-IDF texts are lower-cased by the runtime: part of the version too
    calibrated = model_version(onnx, metadata.temperature, metadata.lowercase)
    assert metadata.version == calibrated != model_version(onnx, lowercase=metadata.lowercase)
    stored = bentoml.models.get(store_tag(metadata))
    assert stored.info.metadata["temperature"] == metadata.temperature
    model = load_family(noisy_logreg.model_dir("logreg"))
    served = OnnxClassifier(Path(stored.path))
    expected = apply_temperature(model.predict_proba(TEXTS), metadata.temperature)
    np.testing.assert_allclose(served.predict_proba(TEXTS), expected, atol=1e-5)


@pytest.mark.parametrize(("fixture", "precision"), VARIANTS)
def test_the_classifier_serves_calibrated_probabilities_and_raw_logits(
    fixture: str, precision: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ws, family = _variant(request, fixture)
    folder = ws.onnx_dir(family, precision)
    raw = _copy_at(folder, tmp_path, 1.0)
    graph = raw.predict_proba(TEXTS)
    served = OnnxClassifier(folder)
    np.testing.assert_allclose(
        served.predict_proba(TEXTS), apply_temperature(graph, served.temperature), atol=1e-6
    )
    softened = _copy_at(folder, tmp_path, 2.5)
    probs = softened.predict_proba(TEXTS)
    np.testing.assert_allclose(probs, apply_temperature(graph, 2.5), atol=1e-6)
    assert (probs.max(axis=1) < graph.max(axis=1)).all()  # softer: less confident, same labels
    assert (probs.argmax(axis=1) == graph.argmax(axis=1)).all()
    np.testing.assert_array_equal(softened.predict(TEXTS)[0], probs)
    np.testing.assert_array_equal(softened.output(TEXTS, PROBABILITIES_OUTPUT), probs)
    if family != "logreg":  # parity checks read the logits: untouched by calibration
        np.testing.assert_array_equal(softened.output(TEXTS, "logits"), raw.output(TEXTS, "logits"))


@pytest.mark.parametrize(("fixture", "precision"), VARIANTS)
def test_every_variant_ships_the_reference_of_its_validation_split(
    fixture: str, precision: str, request: pytest.FixtureRequest
) -> None:
    ws, family = _variant(request, fixture)
    folder = ws.onnx_dir(family, precision)
    validation = validation_examples(load_params(ws.params_file), family)
    view = read_reference(folder / REFERENCE_FILE)
    assert set(view.get_columns()) == set(FEATURES)
    assert (folder / REFERENCE_FILE).stat().st_mode & 0o777 == 0o644  # ships like model.onnx
    for name in FEATURES:
        assert view.get_column(name).get_metric("counts").n.value == len(validation), name
    # profiled from the calibrated scores, as the server will profile what it serves
    served = OnnxClassifier(folder)
    confidence = served.predict_proba(validation.texts).max(axis=1)
    mean = view.get_column("confidence").get_metric("distribution").mean.value
    assert mean == pytest.approx(float(confidence.mean()), abs=1e-5)
    assert view.get_column("oov_rate").get_metric("counts").null.value == 0  # every family has a vocabulary


def test_logreg_ships_its_vocabulary_and_never_trained_on_the_validation_split(
    trained_logreg: Workspace,
) -> None:
    folder = trained_logreg.onnx_dir("logreg")
    model = load_family(trained_logreg.model_dir("logreg"))
    words = json.loads((folder / VOCABULARY_FILE).read_text())
    assert words == sorted(model.pipeline.named_steps["tfidf"].vocabulary_) and len(words) > 20
    assert OnnxClassifier(folder).vocabulary == words
    # the saved model is exactly a fit on the train split less the validation rows
    params = load_params(trained_logreg.params_file)
    rows = [json.loads(line) for line in params.data.prepared_train.read_text().splitlines()]
    texts, labels = [r["text"] for r in rows], [r["label"] for r in rows]
    fit = training_part(params, "logreg", texts, labels)
    validation = validation_examples(params, "logreg")
    assert len(fit) + len(validation) == len(texts) and not set(fit.texts) & set(validation.texts)
    refit = type(model)(model.hparams).fit(fit.texts, fit.labels)
    np.testing.assert_allclose(refit.predict_proba(TEXTS), model.predict_proba(TEXTS), atol=1e-6)


def test_the_store_holds_the_reference_and_vocabulary(trained_logreg: Workspace) -> None:
    _, metadata = check_exported_folder(trained_logreg.onnx_dir("logreg"))
    stored = ModelFiles(bentoml.models.get(store_tag(metadata)).path)
    assert {MODEL_FILE, REFERENCE_FILE, VOCABULARY_FILE} <= set(stored.names())


def test_a_sealed_store_seals_the_reference_and_reads_it_back(
    trained_logreg: Workspace, tmp_path: Path
) -> None:
    """Saved with a data key (a child process with its own BentoML home: the session's store stays
    plain), the reference and vocabulary are sealed like every artifact and read back intact."""
    folder = trained_logreg.onnx_dir("logreg")
    key = new_data_key()
    home = tmp_path / "bentoml"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from pathlib import Path; from converters.store import save_to_store; "
            "print(save_to_store(Path(sys.argv[1])))",
            str(folder),
        ],
        env={**os.environ, "BENTOML_HOME": str(home), DATA_KEY_ENV: key, DATA_KEY_FILE_ENV: ""},
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    name, version = done.stdout.strip().splitlines()[-1].split(":")
    stored = home / "models" / name / version
    for artifact in (REFERENCE_FILE, VOCABULARY_FILE):
        assert (stored / (artifact + SEALED_SUFFIX)).is_file() and not (stored / artifact).exists()
    files = ModelFiles(stored, decode_data_key(key))
    assert files.read(VOCABULARY_FILE) == (folder / VOCABULARY_FILE).read_bytes()
    assert files.read(REFERENCE_FILE) == (folder / REFERENCE_FILE).read_bytes()
    view = view_from_bytes(files.read(REFERENCE_FILE))  # how a server reads a sealed reference
    assert set(view.get_columns()) == set(FEATURES)
    sealed = OnnxClassifier(stored, key=decode_data_key(key))
    assert sealed.vocabulary == json.loads((folder / VOCABULARY_FILE).read_text())
    assert sealed.temperature == OnnxClassifier(folder).temperature


def test_an_int8_token_model_scores_a_text_alike_beside_a_text_with_no_token(
    trained_lstm: Workspace,
) -> None:
    """Regression: a text with no token ("   ") once went in as an all-zero mask row, and a dynamically
    quantised graph's activation range, shared by the whole call, turned every other text in that call
    to noise. It is fed as one padding token now."""
    served = OnnxClassifier(trained_lstm.onnx_dir("lstm", "int8"), sub_batch=8)
    assert served.metadata.precision == "int8"
    empty = "   "
    assert served.tokenizer is not None and served.tokenizer.encode(empty).ids == []
    for text in TEXTS:
        alone = served.predict_proba([text])
        beside = served.predict_proba([empty, text, empty])  # one model call: sub_batch 8
        assert beside[1].argmax() == alone[0].argmax(), text
        np.testing.assert_allclose(beside[1], alone[0], atol=1e-3, err_msg=text)  # the old way: off by 0.5+
    assert np.isfinite(served.predict_proba([empty])).all()
