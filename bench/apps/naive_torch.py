"""FastAPI + a transformers pipeline on the fine-tuned PyTorch checkpoint: the usual first attempt."""

from __future__ import annotations

from bench.apps.common import Body, new_app, parse_args, serve
from textclf.core.offline import go_offline


def main() -> None:
    go_offline()
    args = parse_args(__doc__ or "", "fine-tuned checkpoint folder (config.json, weights, tokenizer)")
    from transformers import pipeline

    classify_texts = pipeline("text-classification", model=args.source, tokenizer=args.source, device=-1)
    app = new_app("naive_torch")

    @app.post("/classify")
    def classify(body: Body) -> list[dict]:
        return [{"label": r["label"], "score": float(r["score"])} for r in classify_texts(body.texts)]

    serve(app, args.port)


if __name__ == "__main__":
    main()
