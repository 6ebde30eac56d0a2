"""FastAPI + the same ONNX model folder the Bento serves, one ONNX Runtime call per request."""

from __future__ import annotations

import os

from bench.apps.common import Body, new_app, parse_args, serve
from textclf.core.offline import go_offline
from textclf.core.runtime import OnnxClassifier


def main() -> None:
    go_offline()
    args = parse_args(__doc__ or "", "model folder (model.onnx, labels.json, metadata.json)")
    # ONNX Runtime's default: one intra-op thread per core
    classifier = OnnxClassifier(args.source, threads=os.cpu_count() or 1, sub_batch=1024)
    app = new_app("fastapi_ort")

    @app.post("/classify")
    def classify(body: Body) -> list[dict]:
        probs = classifier.predict_proba(body.texts)
        return [{"label": best[0].label, "score": best[0].score} for best in classifier.top_k(probs, 1)]

    serve(app, args.port)


if __name__ == "__main__":
    main()
