"""The strongest simple server we compare against: FastAPI + the same ONNX model folder the Bento serves.

By default one uvicorn worker process per core, each with one ONNX Runtime thread, and a request's texts
sorted by length and run in chunks of 8 through the product's own runtime (one ORT call per chunk, no
cross-request batching): what a careful engineer writes in forty lines. `--workers 1 --threads N` is the
one-process variant, kept as a second row. Settings reach each worker through the environment, since
uvicorn's workers import the app factory themselves.
"""

from __future__ import annotations

import os

import uvicorn
from fastapi import FastAPI

from bench.apps.common import Body, new_app, parse_args
from textclf.core.offline import go_offline
from textclf.core.runtime import OnnxClassifier

ENV = {"model": "FASTAPI_ORT_MODEL", "threads": "FASTAPI_ORT_THREADS", "sub_batch": "FASTAPI_ORT_SUB_BATCH"}


def create_app() -> FastAPI:
    """One worker's app (a uvicorn factory)."""
    go_offline()
    classifier = OnnxClassifier(
        os.environ[ENV["model"]],
        threads=int(os.environ[ENV["threads"]]),
        sub_batch=int(os.environ[ENV["sub_batch"]]),  # fixed, length-sorted chunks (call_cost_tokens=0)
    )
    app = new_app("fastapi_ort")

    @app.post("/classify")
    def classify(body: Body) -> list[dict]:
        probs = classifier.predict_proba(body.texts)
        return [{"label": best[0].label, "score": best[0].score} for best in classifier.top_k(probs, 1)]

    return app


def main() -> None:
    cores = os.cpu_count() or 1
    args = parse_args(
        __doc__ or "",
        "model folder (model.onnx, labels.json, metadata.json)",
        workers=(cores, "uvicorn worker processes"),
        threads=(1, "ONNX Runtime intra-op threads per worker"),
        sub_batch=(8, "most texts per ONNX Runtime call, after sorting by length"),
    )
    os.environ.update(
        {ENV["model"]: args.source, ENV["threads"]: str(args.threads), ENV["sub_batch"]: str(args.sub_batch)}
    )
    uvicorn.run(
        "bench.apps.fastapi_ort:create_app",
        factory=True,
        workers=args.workers,
        host="127.0.0.1",
        port=args.port,
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
