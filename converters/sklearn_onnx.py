"""TF-IDF + logistic regression → one ONNX graph that takes raw strings."""

from __future__ import annotations

from skl2onnx import to_onnx
from skl2onnx.common.data_types import StringTensorType
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from converters.onnx_graph import sort_opset_imports
from textclf.core.contract import PROBABILITIES_OUTPUT

# ONNX Runtime's StringNormalizer asks for en_US.UTF-8 by default, which slim machines and images
# lack; C.UTF-8 exists everywhere and lower-cases ASCII the same way.
TFIDF_OPTIONS = {"locale": "C.UTF-8"}
# RE2 (ONNX Runtime's Tokenizer) for training.families.logreg.TOKEN_PATTERN: Python's Unicode \w is exactly
# letters, numbers and `_`, and its \b\w\w+\b finds the maximal runs of two or more of them, as this does.
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
TOKEN_EXP = r"[\p{L}\p{N}_]{2,}"


def pipeline_to_onnx(pipeline: Pipeline, opset: int = 17) -> bytes:
    """Convert a fitted TfidfVectorizer → LogisticRegression pipeline to serialized ONNX."""
    vectorizer = pipeline.named_steps.get("tfidf")
    if not isinstance(vectorizer, TfidfVectorizer) or vectorizer.analyzer != "word":
        raise ValueError("only word-analyzer TF-IDF pipelines convert to ONNX (skl2onnx limit)")
    if vectorizer.sublinear_tf:
        raise ValueError("sublinear_tf=True does not convert faithfully to ONNX; set it to false")
    tfidf = dict(TFIDF_OPTIONS)
    if vectorizer.token_pattern == TOKEN_PATTERN:
        tfidf["tokenexp"] = TOKEN_EXP
    options = {
        TfidfVectorizer: tfidf,
        LogisticRegression: {"zipmap": False},
    }
    onx = to_onnx(
        pipeline,
        initial_types=[("text", StringTensorType([None, 1]))],
        options=options,
        target_opset={"": opset, "ai.onnx.ml": 3},
        final_types=None,
    )
    outputs = [o.name for o in onx.graph.output]
    # skl2onnx names the outputs label / probabilities; keep the contract explicit.
    if PROBABILITIES_OUTPUT not in outputs:
        raise ValueError(f"converted graph lacks a {PROBABILITIES_OUTPUT!r} output: {outputs}")
    return sort_opset_imports(onx).SerializeToString()
