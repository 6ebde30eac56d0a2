"""The BentoML service: validation ▸ adaptive batching (bentos.batcher) ▸ ONNX Runtime lanes."""

from __future__ import annotations

from typing import Any

import bentoml
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse

from bentos.batcher import GreedyBatcher, Overloaded
from bentos.guard import RequestGuard
from bentos.runtime import OnnxClassifier
from bentos.schemas import ClassifyInput, ClassifyOutput, ModelInfo, Queries, Query
from bentos.settings import SETTINGS
from textclf.offline import go_offline

go_offline()

info_app = FastAPI(title="textclf model info", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    name="textclf",
    workers=SETTINGS.server_workers,
    traffic={"timeout": SETTINGS.timeout_s},
    logging={"access": {"enabled": SETTINGS.access_log}},
    metrics={"enabled": SETTINGS.metrics},
    tracing={"excluded_urls": None if SETTINGS.tracing else ["classify"]},
)
class TextClassifier:
    """Classifies short texts with an ONNX model exported by the textclf pipeline."""

    bento_model = bentoml.models.BentoModel(SETTINGS.model)

    def __init__(self) -> None:
        self.classifier = OnnxClassifier(
            self.bento_model.path,
            threads=SETTINGS.ort_threads,
            sub_batch=SETTINGS.sub_batch,
            call_cost_tokens=SETTINGS.call_cost_tokens,
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
        # BentoML resolves the API method on every request, re-reading its signature each time; the
        # bound method, computed once, shadows that (the descriptor has no __set__).
        self.classify = type(self).classify.__get__(self, type(self))
        self.batcher: GreedyBatcher[Query, dict] = GreedyBatcher(
            self._predict,
            lanes=SETTINGS.model_lanes,
            max_batch_size=SETTINGS.max_batch_size,
            max_queued=SETTINGS.max_queued,
        )

    if SETTINGS.batcher == "bentoml":  # BentoML's own dispatcher, kept to measure against

        @bentoml.api(
            route="/classify",
            input_spec=ClassifyInput,
            output_spec=ClassifyOutput,
            batchable=True,
            max_batch_size=SETTINGS.max_batch_size,
            max_latency_ms=SETTINGS.max_latency_ms,
        )
        def classify(self, queries: Queries, /) -> Any:
            """Label each text; the answer lists one `Prediction` per text, in request order."""
            return self._predict(queries)

    else:

        @bentoml.api(route="/classify", input_spec=ClassifyInput, output_spec=ClassifyOutput)
        async def classify(self, queries: Queries, /) -> Any:
            """Label each text; the answer lists one `Prediction` per text, in request order."""
            try:
                return await self.batcher.submit(queries)
            except Overloaded as exc:
                return JSONResponse(
                    {"error": f"server overloaded ({exc}); retry later"},
                    status_code=503,
                    headers={"Retry-After": "1"},
                )

    def _predict(self, queries: list[Query]) -> list[dict]:
        """One batch, run in a model lane: probabilities, then the answer for each text."""
        probs = self.classifier.predict_proba([q.text for q in queries])
        widest = max((q.top_k or 1) for q in queries)
        ranked = self.classifier.top_k(probs, widest)
        return [
            {
                "label": best[0].label,
                "score": best[0].score,
                "top_k": [{"label": s.label, "score": s.score} for s in best[: q.top_k]] if q.top_k else None,
            }
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
