"""LSTM and BERT: the shared loop, learning, MLflow epochs, export parity, int8 agreement, the runtime."""

from __future__ import annotations

import json

import bentoml
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from converters.store import store_tag
from tests.conftest import Workspace
from textclf.core.contract import TOKENIZER_FILE, read_model_folder
from textclf.core.runtime import OnnxClassifier, apply_temperature
from training import torch_loop
from training.families import load_family

pytestmark = pytest.mark.integration  # trains a model or uses the BentoML store

TEXTS = [
    "my pin is blocked please",
    "how do i get a refund",
    "where is my new card now",
    "fx rate today",
    "hi",
]


def test_length_batches_cover_every_index_once_with_little_padding() -> None:
    lengths = np.random.default_rng(0).integers(1, 50, size=1000)
    batches = torch_loop.length_batches(lengths, 32, np.random.default_rng(1))
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1000))
    spread = np.mean([lengths[b].max() - lengths[b].min() for b in batches])
    assert spread < 5  # random batches of 32 would spread ~45 tokens


def test_pad_and_schedule() -> None:
    ids, mask = torch_loop.pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]] and mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    factor = torch_loop.linear_warmup_decay(total_steps=100, warmup_ratio=0.1)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(55) == pytest.approx(0.5) and factor(100) == 0.0
    train, val = torch_loop.split_validation(100, 0.1, seed=3)
    assert len(val) == 10 and not set(train) & set(val)


@pytest.mark.parametrize("fixture", ["trained_lstm", "trained_bert"])
def test_training_learns_and_logs_every_epoch(fixture: str, request: pytest.FixtureRequest) -> None:
    ws: Workspace = request.getfixturevalue(fixture)
    family = fixture.removeprefix("trained_")
    model = load_family(ws.model_dir(family))
    assert model.name == family and len(model.labels) == 5
    metrics = json.loads((ws.reports / f"train_{family}.json").read_text())
    assert metrics["accuracy"] >= 0.9
    run = json.loads((ws.model_dir(family) / "mlflow_run.json").read_text())
    history = MlflowClient().get_metric_history(run["run_id"], "train_loss")
    assert len(history) >= 2 and history[-1].value < history[0].value
    assert [h.step for h in history] == list(range(1, len(history) + 1))
    assert (ws.reports / f"curves_{family}.png").stat().st_size > 1000


def test_lstm_scores_a_text_the_same_however_much_padding_its_batch_has(trained_lstm: Workspace) -> None:
    model = load_family(trained_lstm.model_dir("lstm"))
    alone = model.logits(["refund"])
    ids = model.encode(["refund", "where is my new card now please it has been weeks"])
    padded_ids, mask = torch_loop.pad(ids, model.pad_id)
    with torch.inference_mode():
        batched = model.forward(model.model, padded_ids, mask)[:1].numpy()
    np.testing.assert_allclose(alone, batched, atol=1e-5)


@pytest.mark.parametrize("fixture", ["trained_lstm", "trained_bert"])
def test_export_parity_and_int8_agreement(fixture: str, request: pytest.FixtureRequest) -> None:
    ws: Workspace = request.getfixturevalue(fixture)
    family = fixture.removeprefix("trained_")
    report = json.loads((ws.reports / f"parity_{family}.json").read_text())
    assert report["fp32"]["max_proba_diff"] < 1e-4 and report["fp32"]["label_agreement"] == 1.0
    assert report["int8"]["label_agreement"] >= 0.9
    for precision in ("fp32", "int8"):
        folder = ws.onnx_dir(family, precision)
        _labels, meta = read_model_folder(folder)
        assert (folder / TOKENIZER_FILE).is_file() and meta.input_kind == "tokens"
        assert meta.precision == precision and meta.pad_id is not None and meta.max_length
        assert bentoml.models.get(store_tag(meta)).tag.name == f"textclf-{family}" + (
            "-int8" if precision == "int8" else ""
        )
    _, int8_meta = read_model_folder(ws.onnx_dir(family, "int8"))
    int8_report = json.loads((ws.reports / f"parity_{family}.json").read_text())["int8"]
    assert set(int8_meta.metrics) == {"accuracy", "macro_f1"} and int8_report["rows"] == 50
    served = OnnxClassifier(ws.onnx_dir(family, "int8"))
    test = [
        json.loads(line) for line in (ws.root / "artifacts" / "data" / "test.jsonl").read_text().splitlines()
    ]
    predicted = [served.labels[i] for i in served.predict_proba([r["text"] for r in test]).argmax(axis=1)]
    own_accuracy = np.mean([p == r["label"] for p, r in zip(predicted, test, strict=True)])
    assert int8_meta.metrics["accuracy"] == pytest.approx(own_accuracy, abs=0.03)
    assert (ws.onnx_dir(family, "int8") / "model.onnx").stat().st_size < (
        ws.onnx_dir(family, "fp32") / "model.onnx"
    ).stat().st_size


@pytest.mark.parametrize("fixture", ["trained_lstm", "trained_bert"])
def test_runtime_matches_pytorch_and_keeps_order(fixture: str, request: pytest.FixtureRequest) -> None:
    ws: Workspace = request.getfixturevalue(fixture)
    family = fixture.removeprefix("trained_")
    model = load_family(ws.model_dir(family))
    texts = TEXTS * 3
    served = OnnxClassifier(ws.onnx_dir(family), sub_batch=4)
    probs = served.predict_proba(texts)
    expected = apply_temperature(model.predict_proba(texts), served.metadata.temperature)  # served calibrated
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    one_by_one = np.concatenate([served.predict_proba([t]) for t in texts])
    np.testing.assert_allclose(probs, one_by_one, atol=1e-5)


def test_lstm_tokenizer_is_learned_deterministically() -> None:
    from training.tokenization import train_wordpiece

    texts = ["Refund my card", "card arrived?", "where is my refund", "top up", "TOP UP!"] * 3
    first, second = train_wordpiece(texts, 50, 16), train_wordpiece(list(reversed(texts)), 50, 16)
    assert first.get_vocab() == second.get_vocab() and first.token_to_id("[PAD]") == 0
    assert first.encode("refunds").tokens == ["refund", "##s"]  # unknown word: longest known prefix
    assert len(first.encode(" ".join(["card"] * 40)).ids) == 16  # truncated to max_length
