"""The BentoML service: validation ▸ adaptive batching (bentos.batcher) ▸ ONNX Runtime lanes."""

from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import bentoml
from fastapi import FastAPI
from fastapi.responses import JSONResponse, RedirectResponse, Response

from auth.audit import record_operator_action, worker_tag
from auth.keys import KeyRingError
from auth.middleware import AuthMiddleware
from auth.oauth import TOKEN_OPENAPI
from auth.scopes import JWKS_PATH, OPEN_PATHS, ROUTE_SCOPES
from bentos import http_write
from bentos.batcher import GreedyBatcher, Overloaded
from bentos.config import SETTINGS
from bentos.feedback import FeedbackStore
from bentos.front import FrontDoor, HotRoute, json_error
from bentos.lifecycle import Lifecycle, freeze_heap, wait_released
from bentos.model_choice import NoModelError, default_model, followed_champion
from bentos.schemas import (
    ClassifyInput,
    ClassifyOutput,
    FeedbackItems,
    FeedbackReceipt,
    ModelInfo,
    Queries,
    Query,
    encode_predictions,
    parse_classify,
)
from bentos.security import admin_status, auth_config
from bentos.served import ModelRefused, Served, load_served, verify_model
from monitoring.http_metrics import HttpMetrics, metrics_page
from monitoring.model_metrics import ModelMetrics
from textclf.core.cpus import pin_process
from textclf.core.crypto import load_data_key
from textclf.core.offline import go_offline
from textclf.core.runtime import Timings, answer, ranks_needed
from textclf.core.served_model import ServedModelError

if TYPE_CHECKING:  # whylogs loads only where profiles are on
    from monitoring.profiler import DriftWatcher, Profiler

go_offline()
http_write.install()  # one write per response (head and body) on this worker's connections
log = logging.getLogger(__name__)
AUTH = auth_config(SETTINGS)
RETRY_LATER = ((b"retry-after", b"1"),)
NO_HEADERS = ()
# `POST /classify` answered by the front door itself (bentos.front), once this worker's instance binds it
CLASSIFY = HotRoute()

try:  # TEXTCLF_MODEL, else the followed champion, else the model this Bento was built with
    MODEL_TAG = SETTINGS.model or followed_champion(SETTINGS) or default_model(Path(__file__))
except (NoModelError, ServedModelError) as exc:
    raise SystemExit(f"textclf: cannot start: {exc}") from None

info_app = FastAPI(title="textclf model info", docs_url=None, redoc_url=None, openapi_url=None)


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(
    name="textclf",
    workers=SETTINGS.server_workers,
    traffic={"timeout": SETTINGS.timeout_s},
    logging={"access": {"enabled": SETTINGS.access_log}},
    metrics={"enabled": SETTINGS.bentoml_metrics},  # ours (monitoring.http_metrics) cost far less
    tracing={"excluded_urls": None if SETTINGS.tracing else ["classify"]},
)
class TextClassifier:
    """Classifies short texts with an ONNX model exported by the textclf pipeline."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    @bentoml.on_deployment
    def check_model() -> None:
        """Once, in `bentoml serve`'s own process before any worker: a wrongly-keyed, tampered or
        incomplete model, or a key ring that cannot verify tokens, stops the server with its error
        (a failing worker would respawn forever). The reason is one line on stderr, not a traceback."""
        try:
            AUTH.check()
            load_data_key()  # a malformed data key stops it too, even with a plain model
            model = TextClassifier.inner.bento_model.resolve()
            verify_model(str(model.tag), Path(model.path))
        except (KeyRingError, ValueError, ModelRefused) as exc:  # ours name the problem
            raise SystemExit(f"textclf: cannot start: {exc}") from None

    def __init__(self) -> None:
        _pin_this_worker()
        served = load_served(str(self.bento_model.tag), Path(self.bento_model.path))
        self.info = served.info
        labels = served.classifier.labels
        # BentoML resolves the API method on every request, re-reading its signature each time; the
        # bound method, computed once, shadows that (the descriptor has no __set__).
        self.classify = type(self).classify.__get__(self, type(self))
        self.feedback_store = FeedbackStore(SETTINGS.path("feedback_dir"), labels=labels)
        self.metrics = (
            ModelMetrics(
                labels,
                name=self.info.name,
                version=self.info.version,
                family=self.info.family,
                precision=self.info.precision,
                low_confidence=SETTINGS.low_confidence,
                abstain_below=served.classifier.abstain_below,
            ).start()
            if SETTINGS.metrics
            else None
        )
        self.state = self._monitored(served)
        self.lifecycle: Lifecycle | None = None
        if SETTINGS.follow:
            self.lifecycle = Lifecycle(
                SETTINGS.served_model_path,
                champion=served,
                pinned=SETTINGS.model is not None,
                every_s=SETTINGS.reload_check_s,
                shadow_fraction=SETTINGS.shadow_fraction,
                shadow_queue=SETTINGS.shadow_queue,
                on_switch=self._switch,
                audit=_audit_model_change,
            )
        self.batcher: GreedyBatcher[Query, dict] = GreedyBatcher(
            self._predict,
            lanes=SETTINGS.model_lanes,
            max_batch_size=SETTINGS.max_batch_size,
            max_queued=SETTINGS.max_queued,
            on_batch=None if self.metrics is None else self.metrics.note_queue_wait,
            gather_s=SETTINGS.gather_ms / 1000,
        )
        if SETTINGS.batcher == "textclf" and SETTINGS.classify_route == "front":
            CLASSIFY.bind(self._answer_classify)
        if bentoml.server_context.worker_index is not None:  # a server worker, not a test or a script
            freeze_heap()
        if self.lifecycle is not None:
            # only now: a switch thaws and refreezes the heap (wait_released); had the freeze come while
            # a switch was waiting for the old model, that model would be frozen and never freed
            self.lifecycle.start()

    def _monitored(self, served: Served) -> Serving:
        """A model with its own profiler and drift check (profiles and references are per model)."""
        if not SETTINGS.profiles:
            return Serving(served, None, None)
        # whylogs and pandas load only where profiles are on (the Bento's import stays lean)
        from monitoring.profiler import start_monitoring

        profiler, watcher = start_monitoring(
            SETTINGS,
            labels=served.classifier.labels,
            stats=served.classifier.input_stats,
            model_folder=served.folder,
            model_version=served.info.version,
            metrics=self.metrics,
            drift_checks=bentoml.server_context.worker_index in (None, 1),  # one worker checks
        )
        return Serving(served, profiler, watcher)

    def _switch(self, new: Served) -> None:
        """Serve `new` from the next batch on (bentos.lifecycle calls this off the request path)."""
        old, state = self.state, self._monitored(new)
        self.state, self.info = state, new.info  # one assignment each: lanes read `state` per batch
        if self.metrics is not None:
            previous = old.served.info
            self.metrics.set_model(
                name=new.info.name,
                version=new.info.version,
                family=new.info.family,
                precision=new.info.precision,
                previous={
                    "name": previous.name,
                    "version": previous.version,
                    "family": previous.family,
                    "precision": previous.precision,
                },
                abstain_below=new.classifier.abstain_below,
            )
        old.stop()
        gone = weakref.ref(old.served.classifier)
        del old
        if not wait_released(gone):
            log.warning("the previous model is still referenced 30 s after the switch; its memory stays")

    @bentoml.on_shutdown
    def stop_lanes(self) -> None:
        self.batcher.close()
        if self.lifecycle is not None:
            self.lifecycle.stop()
        self.state.stop()
        if self.metrics is not None:
            self.metrics.stop()

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
                    {"error": _overloaded(exc)}, status_code=503, headers={"Retry-After": "1"}
                )

    async def _answer_classify(self, body: bytes) -> tuple[int, bytes, tuple[tuple[bytes, bytes], ...]]:
        """The front door's `/classify`: the same validation, batcher and answer as the API method
        above, without BentoML's per-request machinery; raises ValidationError for a bad body."""
        queries = parse_classify(body)
        try:
            return 200, encode_predictions(await self.batcher.submit(queries)), NO_HEADERS
        except Overloaded as exc:
            return 503, json_error(_overloaded(exc)), RETRY_LATER

    def _predict(self, queries: list[Query]) -> list[dict]:
        """One batch, run in a model lane: probabilities, notes for the metrics, the profiler and the
        shadow lane (all only append here; their threads do the work), then each text's answer."""
        state = self.state  # the model of this whole batch, even if a switch happens meanwhile
        classifier = state.served.classifier
        texts = [q.text for q in queries]
        timings = Timings()
        probs, encodings = classifier.predict(texts, timings)
        if self.metrics is not None:
            self.metrics.note_batch(texts, probs, encodings, timings.tokenize_s, timings.inference_s)
        if state.profiler is not None:
            state.profiler.offer(texts, probs, encodings)
        threshold = classifier.abstain_below
        ranked = classifier.top_k(probs, ranks_needed(max((q.top_k or 1) for q in queries), threshold))
        shadow = self.lifecycle.shadow if self.lifecycle is not None else None
        if shadow is not None:
            shadow.offer(texts, [best[0].label for best in ranked])
        return [answer(best, q.top_k, threshold) for q, best in zip(queries, ranked, strict=True)]

    @bentoml.api(route="/feedback")
    def feedback(self, items: FeedbackItems, ctx: bentoml.Context) -> FeedbackReceipt:
        """Store true labels (encrypted at rest) for live accuracy and retraining."""
        subject = ctx.request.scope.get("state", {}).get("subject")
        problem = self.feedback_store.append(items, subject)
        if problem is not None:
            status, message = problem
            ctx.response.status_code = status  # BentoML sets the status from the context when one is used
            return JSONResponse({"error": message}, status_code=status)  # type: ignore[return-value]
        if self.metrics is not None:  # live accuracy: counted once stored, never before
            self.metrics.count_feedback([(item.label, item.predicted) for item in items])
        shadow = self.lifecycle.shadow if self.lifecycle is not None else None
        if shadow is not None:  # both models on the same labelled texts, off this request's path
            shadow.offer_feedback(
                [item.text for item in items], [item.label for item in items], self.state.served.classifier
            )
        return FeedbackReceipt(accepted=len(items))

    @info_app.get("/admin/status")
    def admin_status(self) -> dict[str, Any]:
        """Limits, workers and signing key ids of this server (admin scope; nothing secret)."""
        return admin_status(SETTINGS, AUTH, self.info.model_dump())

    # The security layer (auth.middleware) answers these two before they reach the app; the routes
    # document them in the OpenAPI schema and answer only when the layer is off.
    @info_app.post("/token", openapi_extra=TOKEN_OPENAPI)
    def token(self) -> JSONResponse:
        return JSONResponse({"error": "token auth is off on this server (TEXTCLF_AUTH=false)"}, 404)

    @info_app.get(JWKS_PATH, summary="The public keys that verify access tokens (a JSON Web Key Set)")
    def jwks(self) -> JSONResponse:
        return JSONResponse({"error": "token auth is off on this server (TEXTCLF_AUTH=false)"}, 404)

    @info_app.get("/docs", include_in_schema=False)
    def docs(self) -> RedirectResponse:
        """The interactive API docs (BentoML's Swagger UI at /, the schema at /docs.json)."""
        return RedirectResponse("/")

    @info_app.get("/metrics", include_in_schema=False)
    def metrics(self) -> Response:
        """Prometheus metrics of every worker (BentoML's own page takes this route when it is on)."""
        if not SETTINGS.metrics:
            return JSONResponse({"error": "metrics are off on this server (TEXTCLF_METRICS=false)"}, 404)
        page, media_type = metrics_page()
        return Response(page, media_type=media_type)

    @info_app.get("/model", response_model=ModelInfo)
    def model(self) -> ModelInfo:
        """Name, version, family and metrics of the served model."""
        return self.info


if SETTINGS.metrics:  # outermost: every answer is counted, refusals of the security layer included
    TextClassifier.add_asgi_middleware(HttpMetrics, routes={*ROUTE_SCOPES, *OPEN_PATHS, "/admin/status"})
if AUTH.enabled or AUTH.audit:  # then every request is authenticated and audited
    TextClassifier.add_asgi_middleware(AuthMiddleware, config=AUTH, workers=SETTINGS.server_workers)
TextClassifier.add_asgi_middleware(
    FrontDoor,
    json_routes=("/classify", "/feedback"),
    max_body_bytes=SETTINGS.max_body_bytes,
    hot_route=CLASSIFY,
)


@dataclass(frozen=True)
class Serving:
    """The served model with the monitoring that belongs to it."""

    served: Served
    profiler: Profiler | None
    drift_watcher: DriftWatcher | None

    def stop(self) -> None:
        if self.drift_watcher is not None:
            self.drift_watcher.stop()
        if self.profiler is not None:
            self.profiler.stop()  # writes the interval so far


def _pin_this_worker() -> None:
    """Before the model and its threads exist: this worker's threads on its share of the CPUs."""
    worker = bentoml.server_context.worker_index
    cpus = SETTINGS.worker_cpu_set(worker)
    if cpus is not None:
        pin_process(cpus)
        log.info("worker %s pinned to CPUs %s", worker, sorted(cpus))
    elif worker is not None and SETTINGS.pin_workers == "true":
        log.warning(
            "TEXTCLF_PIN_WORKERS=true but %d workers do not split this process's CPUs evenly: not pinned",
            SETTINGS.server_workers,
        )


def _audit_model_change(**fields: Any) -> None:
    record_operator_action(SETTINGS, client="server", log_name=f"audit-model-{worker_tag()}", **fields)


def _overloaded(exc: Overloaded) -> str:
    return f"server overloaded ({exc}); retry later"
