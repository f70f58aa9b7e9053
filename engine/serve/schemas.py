"""The request bodies of every route as pydantic models, and the one mapping of a validation error to an answer.

A route reads its body itself (bounded, timed, strict JSON: :mod:`bertrt.serve.requests`) and validates
the parsed value with :func:`parse`; the OpenAPI document is generated from these models
(:func:`openapi_schemas`). The models are strict (no "3" for 3, no 1 for true).

- bertrt's own routes refuse unknown fields (a typo is an error, named with the accepted fields);
- text-embeddings-inference's routes ignore them, as TEI does (``huggingface_hub`` always sends
  ``parameters``);
- OpenAI's route refuses them, as OpenAI does.

A task's request parameters are :func:`parameters_model`, derived from the task's ``options``
(:class:`bertrt.tasks.base.Option`): serve holds no task's parameter list.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from .requests import HTTPProblem, check_texts, check_unicode, load_json
from .settings import ServeSettings

__all__ = [
    "DecodeRequest",
    "EmbedAllRequest",
    "EmbedRequest",
    "EmbeddingsRequest",
    "NerRequest",
    "PredictRequest",
    "QAInputs",
    "RerankRequest",
    "SimilarityInputs",
    "TeiPredictRequest",
    "TextPair",
    "TokenizeRequest",
    "openapi_schemas",
    "parameters_model",
    "parse",
    "parse_request",
    "validation_message",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class TextPair(_Strict):
    """One input of a task that takes pairs (text-classification, cross-encoders)."""

    text: str
    text_pair: str | None = None


class QAInputs(_Strict):
    """One question-answering input: the question and the context holding its answer."""

    question: str
    context: str


class RerankInputs(_Strict):
    """One rerank input: a query and the documents to rank for it (per-query documents)."""

    query: str
    documents: list[str]


class SimilarityInputs(_Strict):
    """The Inference API's sentence-similarity input: cosine of ``source_sentence`` to each sentence."""

    source_sentence: str
    sentences: list[str]


_INPUTS = (
    "a string or a list of strings (or {'text', 'text_pair'} objects; question-answering: "
    "{'question', 'context'} objects; rerank: {'query', 'documents'} objects)"
)


class PredictRequest(_Strict):
    """``POST /models/{name}/predict`` (and the Hugging Face Inference API's shape of it)."""

    inputs: (
        str
        | TextPair
        | QAInputs
        | RerankInputs
        | SimilarityInputs
        | list[str | TextPair | QAInputs | RerankInputs]
    ) = Field(description=_INPUTS)
    parameters: dict[str, Any] | None = Field(
        None, description="a JSON object: the task's options (see the *Parameters schemas)"
    )

    @property
    def items(self) -> str | dict | list:
        """The inputs as the pipeline takes them (pairs as dicts)."""
        return _plain(self.inputs)

    @property
    def texts(self) -> list[str]:
        """Every string of the inputs, for the request limits."""
        return _strings(self.items)


class NerRequest(PredictRequest):
    """``POST /ner``: the token-classification model's entities."""

    model: str | None = Field(None, description="the served model's name (needed when several fit)")


def _plain(value):
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _strings(items) -> list[str]:
    items = items if isinstance(items, list) else [items]
    out = []
    for item in items:
        if isinstance(item, dict):
            out.extend(v for v in item.values() if isinstance(v, str))
            out.extend(s for v in item.values() if isinstance(v, list) for s in v)
        else:
            out.append(item)
    return out


# -- text-embeddings-inference -------------------------------------------------------------------------
class _TeiRequest(_Lenient):
    model: str | None = Field(None, description="the served model's name (bertrt; or ?model=)")
    truncate: bool | None = Field(False, description="cut inputs at the max length (false: 413 beyond)")
    truncation_direction: Literal["Right", "Left", "right", "left"] = "Right"


class EmbedAllRequest(_TeiRequest):
    inputs: str | list[str] = Field(description="a string or a list of strings")
    prompt_name: str | None = None


class EmbedRequest(EmbedAllRequest):
    normalize: bool | None = True


class TeiPredictRequest(_TeiRequest):
    inputs: str | list[str | list[str]] = Field(
        description="a string, a [string, string] pair, or a list of strings, pairs, or [string] lists"
    )
    raw_scores: bool | None = False


class RerankRequest(_TeiRequest):
    query: str
    texts: list[str]
    raw_scores: bool | None = False
    return_text: bool | None = False


class TokenizeRequest(_Lenient):
    model: str | None = None
    inputs: str | list[str] = Field(description="a string or a list of strings")
    add_special_tokens: bool | None = True
    prompt_name: str | None = None


class DecodeRequest(_Lenient):
    model: str | None = None
    ids: list = Field(description="token ids: a list of ints, or a list of such lists")
    skip_special_tokens: bool | None = True


class SimilarityRequest(_Lenient):
    model: str | None = None
    inputs: SimilarityInputs


# -- OpenAI ------------------------------------------------------------------------------------------------
class EmbeddingsRequest(_Strict):
    """``POST /v1/embeddings``."""

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="a string or a list of strings (token ids are refused)"
    )
    model: str | None = Field(None, description="informational when one model is served")
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


# -- task parameters ---------------------------------------------------------------------------------------
def _optional(kind) -> Any:
    """``kind | None`` as a pydantic field type; Any for a type pydantic cannot check (the pipeline's own
    checks still run)."""
    try:
        TypeAdapter(kind | None)
    except Exception:  # any type an Option may carry: the pipeline checks it instead
        return Any
    return kind | None


def parameters_model(task) -> type[BaseModel]:
    """The request parameters of ``task`` (a :class:`~bertrt.tasks.base.Task`): one optional field per
    option, of the option's type (choices and defaults are documented; the pipeline checks the values)."""
    fields = {}
    for option in task.options:
        extra = {"enum": list(option.choices)} if option.choices else None
        fields[option.name] = (
            _optional(option.type),
            Field(None, description=option.help or None, json_schema_extra=extra),
        )
    name = "".join(part.title() for part in task.name.replace("_", "-").split("-")) + "Parameters"
    return create_model(name, __config__=ConfigDict(extra="forbid", strict=True), **fields)


# -- validation errors ---------------------------------------------------------------------------------------
def validation_message(exc: ValidationError, model: type[BaseModel], body, what: str = "field") -> tuple:
    """(message, first field) of ``exc``: unknown and missing fields named with the accepted ones, a wrong
    value named with what the field takes and, inside a list, the failing indexes."""
    errors = exc.errors(include_url=False)
    accepted = ", ".join(model.model_fields)
    if any(
        e["type"] in ("model_type", "model_attributes_type", "dict_type") and not e["loc"] for e in errors
    ):
        return f"the body must be a JSON object, got {type(body).__name__}", None
    unknown = sorted({str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden" and e["loc"]})
    if unknown:
        return f"unknown {what}(s) {', '.join(unknown)}; accepted: {accepted}", unknown[0]
    missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing" and len(e["loc"]) == 1]
    if missing:
        field = model.model_fields[missing[0]]
        takes = f" ({field.description})" if field.description else ""
        return f"missing {what} {missing[0]!r}{takes}", missing[0]
    name = str(errors[0]["loc"][0]) if errors[0]["loc"] else "body"
    ours = [e for e in errors if e["loc"] and str(e["loc"][0]) == name]
    value = body.get(name) if isinstance(body, dict) else None
    field = model.model_fields.get(name)
    takes = field.description if field is not None and field.description else None
    if takes is None:
        takes = "; ".join(sorted({e["msg"] for e in ours}))
    at = (next((p for p in e["loc"][1:] if isinstance(p, int)), None) for e in ours)
    indexes = sorted({p for p in at if p is not None})
    if isinstance(value, list) and indexes:
        where = ", ".join(map(str, indexes[:20]))
        return f"{what} {name!r} must be {takes}; not so at index(es) {where}", name
    shown = json.dumps(value)[:60] if value is not None else "null"
    return f"{what} {name!r} must be {takes}, got {type(value).__name__} {shown}", name


def parse(model: type[BaseModel], body, route: str) -> BaseModel:
    """``body`` (parsed JSON) as ``model``; HTTPProblem 400 naming the problem otherwise (code
    ``bad_parameters`` when it is in ``parameters``, else ``bad_request``)."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        message, field = validation_message(exc, model, body)
        code = "bad_parameters" if field == "parameters" else "bad_request"
        raise HTTPProblem(400, code, f"{route}: {message}", param=field) from None


def openapi_schemas(models: list[type[BaseModel]]) -> dict:
    """JSON schemas of ``models`` and of every model they use, for ``components/schemas``."""
    out: dict = {}
    for model in models:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        out.update(schema.pop("$defs", {}))
        out[model.__name__] = schema
    return out


def parse_request(
    body, settings: ServeSettings, model: type[PredictRequest] = PredictRequest, route: str = "predict"
) -> PredictRequest:
    """A predict-shaped request from ``body`` (raw bytes: strict JSON first, or a parsed value), its texts
    within the request limits (422) and valid Unicode, as are its parameters (400)."""
    request = parse(model, load_json(body) if isinstance(body, bytes) else body, route)
    items = request.items
    check_texts(request.texts, settings, count=len(items) if isinstance(items, list) else 1)
    check_unicode([], request.parameters or {})
    return request
