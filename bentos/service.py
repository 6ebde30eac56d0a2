"""The BentoML service: one process, validation ▸ adaptive batching ▸ ONNX Runtime."""

from __future__ import annotations

import bentoml
from fastapi import FastAPI
from fastapi.responses import RedirectResponse

from bentos.guard import RequestGuard
from bentos.runtime import OnnxClassifier
from bentos.schemas import ClassifyInput, ModelInfo, Prediction, Queries
from bentos.settings import SETTINGS
from textclf.offline import go_offline

go_offline()

info_app = FastAPI(title="textclf model info", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    name="textclf",
    workers=SETTINGS.workers,
    traffic={"timeout": SETTINGS.timeout_s},
)
class TextClassifier:
    """Classifies short texts with an ONNX model exported by the textclf pipeline."""

    bento_model = bentoml.models.BentoModel(SETTINGS.model)

    def __init__(self) -> None:
        self.classifier = OnnxClassifier(
            self.bento_model.path, threads=SETTINGS.ort_threads, sub_batch=SETTINGS.sub_batch
        )
        meta = self.classifier.metadata
        self.info = ModelInfo(
            name=str(self.bento_model.tag.name),
            version=str(self.bento_model.tag.version),
            family=meta.family,
            precision=meta.precision,
            labels=len(self.classifier.labels),
            metrics=meta.metrics,
            data_sha256=meta.data_sha256,
            mlflow_run_id=meta.mlflow_run_id,
            registered_version=meta.registered_version,
        )

    @bentoml.api(
        route="/classify",
        input_spec=ClassifyInput,
        batchable=True,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
    )
    def classify(self, queries: Queries, /) -> list[Prediction]:
        """Label each text; the answer lists one result per text, in request order."""
        probs = self.classifier.predict_proba([q.text for q in queries])
        widest = max((q.top_k or 1) for q in queries)
        ranked = self.classifier.top_k(probs, widest)
        return [
            Prediction(
                label=best[0].label,
                score=best[0].score,
                top_k=[{"label": s.label, "score": s.score} for s in best[: q.top_k]] if q.top_k else None,
            )
            for q, best in zip(queries, ranked, strict=True)
        ]

    @info_app.get("/docs", include_in_schema=False)
    def docs(self) -> RedirectResponse:
        """The interactive API docs (BentoML's Swagger UI at /, the schema at /docs.json)."""
        return RedirectResponse("/")

    @info_app.get("/model", response_model=ModelInfo)
    def model(self) -> ModelInfo:
        """Name, version, family and metrics of the served model."""
        return self.info


TextClassifier.add_asgi_middleware(
    RequestGuard, json_routes=("/classify",), max_body_bytes=SETTINGS.max_body_bytes
)
