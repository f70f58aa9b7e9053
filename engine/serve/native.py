"""bertrt's own routes: the models, health, metrics, ``/models/{name}/predict`` and ``/ner``.

``POST /models/{name}/predict`` ``{"inputs", "parameters"?}`` (:class:`~.schemas.PredictRequest`) answers
what the Hugging Face Inference API answers, so ``huggingface_hub.InferenceClient`` parses it: the task's
result shaped as ``transformers.pipeline`` returns it, except

- one input whose result is a classification (``{label, score}`` entries: text classification) is
  answered ``[[{label, score}, ...]]``, as the Inference API does (``InferenceClient.text_classification``
  takes element 0); a list of inputs is answered as transformers answers it;
- ``{"source_sentence", "sentences"}`` on a feature-extraction model is the sentence-similarity task:
  the cosine of the source sentence to each sentence (the model's pooling, unit vectors).

The parameters are the task's options (:func:`~.schemas.parameters_model`): 400 ``bad_parameters`` for
an unknown or mistyped one, or one the pipeline's own checks refuse.
"""

from __future__ import annotations

import json

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .requests import HTTPProblem, check_texts
from .schemas import NerRequest, PredictRequest, SimilarityInputs, parse_request
from .service import Service, json_response

__all__ = [
    "RESPONSES",
    "embedding_params",
    "embedding_pooling",
    "predict",
    "model_route",
    "router",
    "run_predict",
    "service_of",
    "similarity",
]

router = APIRouter()

_ERRORS = {
    400: "malformed JSON, wrong request shape, unknown or bad parameters, an unusable input",
    404: "no model of that name",
    413: "request body larger than max_body_bytes",
    422: "more texts than max_texts, or a text longer than max_chars",
    500: "the server's own fault (its traceback is logged)",
    503: "the model's queue is full (see Retry-After), or the model failed its warm-up",
    504: "no answer within request_timeout_s: the request's work was dropped",
}
#: the error answers every model route documents (schema: components/schemas/Error)
RESPONSES = {
    status: {
        "description": text,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    for status, text in _ERRORS.items()
}


def service_of(request: Request) -> Service:
    """The app's :class:`~.service.Service` (set by :func:`bertrt.serve.create_app`)."""
    return request.app.state.service


def model_route(router: APIRouter, path: str, model, summary: str):
    """``router.post`` of a route that reads the JSON body ``model`` (a pydantic model: its schema is in
    the OpenAPI components) and answers JSON bytes or one of :data:`RESPONSES`."""
    ref = {"$ref": f"#/components/schemas/{model.__name__}"}
    body = {"requestBody": {"required": True, "content": {"application/json": {"schema": ref}}}}
    return router.post(
        path, summary=summary, response_class=Response, responses=RESPONSES, openapi_extra=body
    )


@router.get("/health", summary="200 once every model is warmed up, 503 before")
async def health(request: Request):
    workers = service_of(request).workers
    states = {n: ("ready" if w.ready else "failed" if w.failed else "warming_up") for n, w in workers.items()}
    ok = all(state == "ready" for state in states.values())
    body = {"status": "ok" if ok else "unavailable", "models": states}
    failures = {n: w.failed for n, w in workers.items() if w.failed}
    if failures:
        body["errors"] = failures
    return JSONResponse(body, status_code=200 if ok else 503)


@router.get("/models", summary="the served models: task, labels, precision")
async def models(request: Request):
    service = service_of(request)
    s = service.settings
    batching = (
        "batching",
        "max_batch_size",
        "max_batch_tokens",
        "pipeline_batch_size",
        "max_wait_ms",
        "max_queue",
    )
    limits = ("max_body_bytes", "max_texts", "max_chars", "request_timeout_s", "header_timeout_s")
    limits += ("body_timeout_s", "max_connections")
    return {
        "models": [w.describe() for w in service.workers.values()],
        "batching": {("enabled" if k == "batching" else k): getattr(s, k) for k in batching},
        "limits": {k: getattr(s, k) for k in limits},
    }


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def prometheus_metrics(request: Request):
    body, media_type = service_of(request).metrics.exposition()
    return Response(body, media_type=media_type)


_POOLING_MODES = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_max_tokens", "max"),
)


def embedding_pooling(pipe) -> str:
    """The pooling of a feature-extraction bundle: its sentence-transformers ``1_Pooling/config.json``
    (cls / mean / max), else "mean"."""
    path = pipe.bundle.root / "1_Pooling" / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "mean"
    for key, mode in _POOLING_MODES:
        if config.get(key) is True:
            return mode
    return "mean"


def embedding_params(pipe, normalize: bool = True) -> dict:
    """The call options of a pooled embedding of ``pipe``: its bundle's pooling, unit vectors or not."""
    return {"pooling": embedding_pooling(pipe), "normalize": normalize}


async def similarity(service: Service, worker, request, inputs: SimilarityInputs) -> bytes:
    """The cosine of ``inputs.source_sentence`` to each of ``inputs.sentences`` (a feature-extraction
    model, its own pooling): the Inference API's sentence-similarity answer, a list of floats."""
    texts = check_texts([inputs.source_sentence, *inputs.sentences], service.settings)

    def transform(vectors):
        unit = np.asarray(vectors, dtype=np.float64)
        return [float(x) for x in unit[1:] @ unit[0]]

    return await service.run(worker, request, texts, embedding_params(worker.pipe), transform)


def _is_label(entry) -> bool:
    return isinstance(entry, dict) and set(entry) == {"label", "score"}


def _inference_api_shape(shaped):
    """One input's answer as the Inference API gives it: a classification (one ``{label, score}`` or a
    list of them) as ``[[{label, score}, ...]]``; any other result as it is."""
    if _is_label(shaped):
        return [[shaped]]
    if isinstance(shaped, list) and shaped and all(map(_is_label, shaped)):
        return [shaped]
    return shaped


async def run_predict(service: Service, worker, request, body: PredictRequest, defaults: dict | None = None):
    """``body`` (checked by :func:`~.schemas.parse_request`) through ``worker``: the answer's JSON bytes
    (see the module's docstring)."""
    if isinstance(body.inputs, SimilarityInputs):
        if worker.pipe.task != "feature-extraction":
            raise HTTPProblem(
                400,
                "wrong_task",
                f"sentence similarity needs a feature-extraction model; {worker.name!r} is a "
                f"{worker.pipe.task} model",
            )
        return await similarity(service, worker, request, body.inputs)
    items = body.items
    many = isinstance(items, list)
    params = {**(defaults or {}), **(body.parameters or {})}
    transform = None if many else _inference_api_shape
    return await service.run(worker, request, items, params, transform)


@model_route(
    router, "/models/{name}/predict", PredictRequest, "run the model's pipeline on one text or a list"
)
async def predict(name: str, request: Request):
    service = service_of(request)

    async def handler(request, call):
        worker = service.worker(name)
        call.use(worker)
        if worker.failed:  # a broken bundle: no request runs, and none is blamed for it
            raise worker.unavailable()
        body = parse_request(await service.body(request), service.settings, route=f"/models/{name}/predict")
        return json_response(await run_predict(service, worker, request, body))

    return await service.serve(request, handler)


@model_route(
    router, "/ner", NerRequest, "named entities of one text or a list (the token-classification model)"
)
async def ner(request: Request, model: str | None = None):
    """``{"inputs", "parameters"?, "model"?}`` (or ``?model=``): ``/models/{name}/predict`` of the served
    token-classification model, with ``aggregation_strategy`` "simple" unless given."""
    service = service_of(request)

    async def handler(request, call):
        body = parse_request(await service.body(request), service.settings, NerRequest, "/ner")
        worker = service.pick(body.model or model, ("token-classification",), "/ner")
        call.use(worker)
        defaults = {"aggregation_strategy": "simple"}
        return json_response(await run_predict(service, worker, request, body, defaults))

    return await service.serve(request, handler)
