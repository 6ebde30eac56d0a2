"""TF-IDF + LR parity on any Unicode text: accented Latin, Cyrillic, Greek (final sigma), CJK, emoji,
combining marks, `ß`, `İ`, ligatures and non-breaking spaces. The served graph (RE2 tokens, Python's
lower-casing in the runtime) must give scikit-learn's probabilities, where skl2onnx's defaults did not."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from converters.sklearn_onnx import TFIDF_OPTIONS, pipeline_to_onnx
from textclf.core.contract import ModelMetadata, model_version, write_model_folder
from textclf.core.runtime import OnnxClassifier
from training.families.logreg import LogregFamily
from training.params import LogregParams

pytestmark = pytest.mark.integration
ALPHABET = [
    *"abcdeéèêëàâäîïôöùûüçñßæøåÉÈÀÇÑÆ",
    *"приветмирПРИВЕТ",
    *"ΕλληνικάσςΣΩω",
    *"東京タワー大好き",
    "😀",
    "🎉",
    *" ,.'-!?_0123456789",
    "e\u0301",  # e + combining acute
    "\u00a0",  # no-break space
    "ﬁ",
    "İ",
    "ǅ",
]


def corpus(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(4, 40))) for _ in range(n)]


def serve(onnx: bytes, labels: list[str], folder: Path, lowercase: bool) -> OnnxClassifier:
    metadata = ModelMetadata(
        family="logreg",
        version=model_version(onnx, lowercase=lowercase),
        input_kind="text",
        data_sha256="test",
        lowercase=lowercase,
    )
    write_model_folder(folder, onnx, labels, metadata)
    return OnnxClassifier(folder)


def test_served_probabilities_equal_scikit_learns_on_any_unicode(tmp_path: Path) -> None:
    texts = corpus(600, seed=1)
    labels = [f"class_{i % 4}" for i in range(len(texts))]
    model = LogregFamily(LogregParams(C=10.0)).fit(texts, labels)
    assert model.lowercase_input
    served = serve(pipeline_to_onnx(model.pipeline), model.labels, tmp_path / "served", lowercase=True)
    unseen = [*corpus(2000, seed=2), "Clichés", "CRÈME BRÛLÉE", "crème brûlée", "STRAßE", "ΟΔΟΣ", "İstanbul"]
    ours, theirs = served.predict_proba(unseen), model.predict_proba(unseen)
    assert np.abs(ours - theirs).max() < 1e-5
    assert (ours.argmax(axis=1) == theirs.argmax(axis=1)).all()


def test_the_graph_alone_would_not_match(tmp_path: Path) -> None:
    """skl2onnx's defaults (the pattern handed to RE2, the graph lower-casing in a C locale) on the same
    model disagree on some of these texts: what the test above guards against."""
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import StringTensorType
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    texts = corpus(600, seed=1)
    labels = [f"class_{i % 4}" for i in range(len(texts))]
    model = LogregFamily(LogregParams(C=10.0))
    model.pipeline.named_steps["tfidf"].set_params(lowercase=True)  # lower-cased by the graph
    model.fit(texts, labels)
    graph = to_onnx(
        model.pipeline,
        initial_types=[("text", StringTensorType([None, 1]))],
        options={TfidfVectorizer: dict(TFIDF_OPTIONS), LogisticRegression: {"zipmap": False}},
        target_opset={"": 17, "ai.onnx.ml": 3},
    ).SerializeToString()
    served = serve(graph, model.labels, tmp_path / "defaults", lowercase=False)
    unseen = corpus(2000, seed=2)
    assert np.abs(served.predict_proba(unseen) - model.predict_proba(unseen)).max() > 1e-3
