"""Metrics of the model's lifecycle in a running server: model switches, and the challenger's shadow traffic.

Like the other metrics these are module globals written to BentoML's multi-process folder. The shadow
lane (bentos.shadow) runs a share of live texts on the challenger, off the response path: how often the
two models agree, how sure the challenger is, texts skipped because the lane was busy, and both models'
accuracy on labelled feedback (each run on the same feedback texts, so the two figures compare).
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from monitoring.model_metrics import CONFIDENCE_BUCKETS

SWITCH_OUTCOMES = ("switched", "refused")
SHADOW_OUTCOMES = ("agree", "disagree", "skipped")
FEEDBACK_OUTCOMES = ("correct", "wrong")
MODELS = ("champion", "challenger")

MODEL_SWITCHES = Counter(
    "textclf_model_switches",
    "Changes of the served model without a restart: switched (counted once the old model is released), "
    "or refused (a broken, tampered or incompatible new model; the old one keeps serving).",
    ["outcome"],
)
SHADOW_TEXTS = Counter(
    "textclf_shadow_texts",
    "Live texts mirrored to the challenger: whether it agreed with the champion's answer, or the text "
    "was skipped (the shadow lane was busy).",
    ["outcome"],
)
SHADOW_CONFIDENCE = Histogram(
    "textclf_shadow_confidence",
    "The challenger's top probability on mirrored texts.",
    buckets=CONFIDENCE_BUCKETS,
)
SHADOW_FEEDBACK = Counter(
    "textclf_shadow_feedback",
    "Labelled feedback texts run on both models in the shadow lane, by model and outcome.",
    ["model", "outcome"],
)
SHADOW_INFO = Gauge(
    "textclf_shadow_model_info",
    "The challenger running in the shadow lane (1; 0 once it stopped).",
    ["name", "version"],
    multiprocess_mode="max",
)


def start_counting() -> None:
    """Every child at 0 from the start, so that rates and increases see the first event."""
    for outcome in SWITCH_OUTCOMES:
        MODEL_SWITCHES.labels(outcome=outcome)
    for outcome in SHADOW_OUTCOMES:
        SHADOW_TEXTS.labels(outcome=outcome)
    for model in MODELS:
        for outcome in FEEDBACK_OUTCOMES:
            SHADOW_FEEDBACK.labels(model=model, outcome=outcome)
