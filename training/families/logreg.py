"""TF-IDF + logistic regression: the fast, strong baseline that converts to ONNX exactly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from training.epochs import EpochStats
from training.families.base import ModelFamily
from training.params import LogregParams

# Words of two or more letters, digits or underscores, in any script. skl2onnx would hand this pattern to
# ONNX Runtime's RE2, whose \w and \b know ASCII only (`clichés` → `clich`): the export uses
# converters.sklearn_onnx.TOKEN_EXP, the same words written for RE2. Lower-casing happens in Python on both
# sides (`str.lower`, here and in the runtime: metadata `lowercase`), since the graph's own lower-casing
# follows a C locale, not Unicode. Together: the same tokens from any Unicode text (tests fuzz it).
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
MODEL_FILE = "pipeline.joblib"


class LogregFamily(ModelFamily):
    """Word n-gram TF-IDF features into a multinomial logistic regression."""

    name = "logreg"
    input_kind = "text"  # skl2onnx's graph tokenises raw strings itself: no tokenizer, no padding

    def __init__(self, params: LogregParams | None = None, pipeline: Pipeline | None = None):
        self.hparams = params or LogregParams()
        self.pipeline: Pipeline = pipeline or self._build(self.hparams)

    @staticmethod
    def _build(p: LogregParams) -> Pipeline:
        return Pipeline(
            [
                (
                    "tfidf",
                    TfidfVectorizer(
                        lowercase=False,  # done in Python, see TOKEN_PATTERN
                        analyzer="word",
                        token_pattern=TOKEN_PATTERN,
                        ngram_range=(1, p.ngram_max),
                        min_df=p.min_df,
                        sublinear_tf=p.sublinear_tf,
                        dtype=np.float32,
                    ),
                ),
                ("clf", LogisticRegression(C=p.C, max_iter=p.max_iter, random_state=p.seed)),
            ]
        )

    @property
    def labels(self) -> list[str]:
        return [str(c) for c in self.pipeline.classes_]

    def fit(
        self,
        texts: list[str],
        labels: list[str],
        on_epoch: Callable[[EpochStats], None] | None = None,
        always_train: int = 0,
        validation: tuple[list[str], list[str]] | None = None,
    ) -> LogregFamily:
        self.pipeline.fit(self._prepare(texts), labels)
        return self

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        return self.pipeline.predict_proba(self._prepare(texts))

    @property
    def lowercase_input(self) -> bool:
        """Whether texts are lower-cased in Python before the pipeline (models trained before that
        lower-case inside the vectorizer)."""
        return not self.pipeline.named_steps["tfidf"].lowercase

    def _prepare(self, texts: list[str]) -> list[str]:
        return [text.lower() for text in texts] if self.lowercase_input else texts

    def params(self) -> dict[str, object]:
        return self.hparams.model_dump()

    def log_to_mlflow(self) -> str:
        """The scikit-learn pipeline (it expects lower-cased texts: `lowercase_input`)."""
        import mlflow.sklearn
        import sklearn

        info = mlflow.sklearn.log_model(
            self.pipeline,
            name="model",
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
        )
        return info.model_uri

    def save(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump({"params": self.hparams.model_dump(), "pipeline": self.pipeline}, directory / MODEL_FILE)

    @classmethod
    def load(cls, directory: Path) -> LogregFamily:
        saved = joblib.load(directory / MODEL_FILE)
        return cls(LogregParams(**saved["params"]), saved["pipeline"])
