"""Request and response schemas of the HTTP API (published as OpenAPI at /docs and /schema.json)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from _bentoml_sdk.io_models import IORootModel
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, GetCoreSchemaHandler, TypeAdapter
from pydantic_core import core_schema
from starlette.responses import Response

from bentos.config import SETTINGS


def _not_blank(text: str) -> str:
    if not text.strip():
        raise ValueError("text is empty or only whitespace")
    return text


Text = Annotated[
    str,
    Field(max_length=SETTINGS.max_text_chars, description="A text to classify."),
    AfterValidator(_not_blank),
]


class ClassifyRequest(BaseModel):
    """Body of POST /classify."""

    model_config = ConfigDict(extra="forbid", strict=True)

    texts: list[Text] = Field(
        min_length=1,
        max_length=SETTINGS.max_texts,
        description=f"1 to {SETTINGS.max_texts} non-blank texts, each at most "
        f"{SETTINGS.max_text_chars} characters.",
    )
    top_k: int | None = Field(
        default=None,
        ge=1,
        le=SETTINGS.max_top_k,
        description="Also return the k most probable labels per text.",
    )


@dataclass(frozen=True, slots=True)
class Query:
    """One text of a request, carrying its request's options through adaptive batching (a plain slotted
    object: one is made per text on the hot path, already validated as part of `ClassifyRequest`)."""

    text: str
    top_k: int | None = None


class Queries(list[Query]):
    """The texts of one request as a list, so the batcher can merge requests text by text.

    A request's options (top_k) travel with each of its texts. Validates from, and documents itself
    as, `ClassifyRequest`.
    """

    @classmethod
    def __get_pydantic_core_schema__(
        cls, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        def from_request(request: ClassifyRequest) -> Queries:
            return cls(Query(text=t, top_k=request.top_k) for t in request.texts)

        return core_schema.no_info_after_validator_function(
            from_request,
            handler.generate_schema(ClassifyRequest),
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda q: {"texts": [x.text for x in q], "top_k": q[0].top_k if q else None}
            ),
        )


_REQUEST = TypeAdapter(ClassifyRequest)


def parse_classify(body: str | bytes | bytearray) -> Queries:
    """A `/classify` body, parsed and validated in one pydantic-core pass; raises ValidationError."""
    request = _REQUEST.validate_json(body)
    return Queries(Query(text=t, top_k=request.top_k) for t in request.texts)


def encode_predictions(predictions: list[dict[str, Any]]) -> bytes:
    """The `/classify` answer as JSON bytes (the batch function's plain dicts, written as they are)."""
    return orjson.dumps(predictions)


class ClassifyInput(IORootModel[Queries]):
    """BentoML input spec: the whole body is one `ClassifyRequest`, parsed by pydantic.

    Pydantic parses the JSON itself, so malformed JSON or invalid UTF-8 is a 400 with a
    validation error body rather than a server error.
    """

    @classmethod
    def model_validate_json(cls, json_data: str | bytes | bytearray, **kwargs: Any) -> Any:
        return cls.model_construct(root=parse_classify(json_data))


ClassifyInput.__root_input__ = True  # type: ignore[attr-defined]


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    """The result for one text: the best label, its probability, and optionally the top k."""

    label: str | None = Field(
        description="The most probable label; null when the server abstained (the text fits no class "
        "well enough)."
    )
    score: float = Field(description="Probability of the most probable label, in [0, 1].")
    abstained: bool = Field(
        default=False,
        description="True when the score is below the model's abstention threshold (set at export from "
        "a target precision; off by default): `label` is null and `top_k` lists the best candidates.",
    )
    top_k: list[LabelScore] | None = None


class ModelInfo(BaseModel):
    """What GET /model reports about the served model."""

    name: str
    version: str
    family: str
    precision: str
    labels: int
    metrics: dict[str, float]
    data_sha256: str
    mlflow_run_id: str | None = None
    registered_version: str | None = None
    abstain_below: float | None = Field(
        default=None, description="Top scores below this get `abstained: true` (null: never abstains)."
    )


class ClassifyOutput(IORootModel[list[Prediction]]):
    """BentoML output spec: documents the answer as a list of `Prediction`, and writes the plain
    dicts the batch function returns straight to JSON (no per-request model building or schema work:
    BentoML's generic path derives the media type from the JSON schema on every response)."""

    media_type = "application/json"

    @classmethod
    async def to_http_response(cls, obj: Any, serde: Any) -> Response:
        return Response(encode_predictions(obj), media_type="application/json")


class FeedbackItem(BaseModel):
    """One true label, for live accuracy and retraining."""

    model_config = ConfigDict(extra="forbid", strict=True)

    text: Text
    label: str = Field(
        min_length=1, max_length=200, description="The true label (one of the model's labels)."
    )
    predicted: str | None = Field(
        default=None, max_length=200, description="What the server answered, if known."
    )


FeedbackItems = Annotated[
    list[FeedbackItem],
    Field(min_length=1, max_length=SETTINGS.max_texts, description="True labels, one per text."),
]
"""The `items` of POST /feedback."""


class FeedbackReceipt(BaseModel):
    accepted: int = Field(description="Records stored (encrypted at rest).")
