"""bertrt's own routes: the models, health, metrics, ``/models/{name}/predict`` and ``/ner``.

``POST /models/{name}/predict`` ``{"inputs", "parameters"?}`` (:class:`~.schemas.PredictRequest`) answers
what the Hugging Face Inference API answers, so ``huggingface_hub.InferenceClient`` parses it: the task's
result shaped as ``transformers.pipeline`` returns it, except

- one input whose result is a classification (``{label, score}`` entries: text classification) is
  answered ``[[{label, score}, ...]]``, as the Inference API does (``InferenceClient.text_classification``
  takes element 0); a list of inputs is answered as transformers answers it;
- ``{"source_sentence", "sentences"}`` on a sentence-embedding or feature-extraction model is the
  sentence-similarity task: the cosine of the source sentence to each sentence (the bundle's
  sentence-transformers pooling, unit vectors).

The parameters are the task's options (:func:`~.schemas.parameters_model`): 400 ``bad_parameters`` for
an unknown or mistyped one, or one the pipeline's own checks refuse.
"""

from __future__ import annotations

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .requests import HTTPProblem, check_texts
from .schemas import NerRequest, PredictRequest, SimilarityInputs, parse_request
from .service import Service, json_response

__all__ = [
    "RESPONSES",
    "EMBEDDING_TASKS",
    "embedding_params",
    "embedding_pooling",
    "max_input_length",
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


#: the tasks whose models the embedding routes (/embed, /similarity, /v1/embeddings) serve
EMBEDDING_TASKS = ("sentence-embedding", "feature-extraction")
_FE_POOLINGS = ("cls", "mean", "max")


def embedding_pooling(pipe) -> str:
    """How the bundle pools, from its sentence-transformers settings (bundle.json, recorded by the
    exporter); "mean" without settings, as sentence-transformers pools a plain checkpoint. Several modes
    are joined with "+"."""
    st = pipe.bundle.sentence_transformers
    modes = tuple(st.pooling) if st is not None and st.pooling else ("mean",)
    return "+".join(m.removesuffix("_tokens") if m == "mean_sqrt_len_tokens" else m for m in modes)


def max_input_length(pipe) -> int:
    """The longest input the model embeds / runs (a sentence-transformers model's ``max_seq_length``)."""
    spec = getattr(pipe, "spec", None)  # a pipe without a task spec (tests' fakes): its max length
    return spec.max_input_length(pipe) if spec is not None else pipe.max_length


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def embedding_params(
    pipe, normalize: bool = True, dimensions: int | None = None, prompt_name: str | None = None
) -> tuple[dict, object]:
    """``(params, transform)`` of one pooled vector per input of ``pipe`` as the bundle's
    sentence-transformers settings make it: a sentence-embedding model gets its own options; a
    feature-extraction one its settings' pooling (cls, mean or max; 400 for what it cannot pool) with
    ``dimensions`` cut (then unit length again when ``normalize``) in ``transform`` (None: as it comes)."""
    if pipe.task == "sentence-embedding":
        return {
            "normalize_embeddings": normalize,
            "truncate_dim": dimensions,
            "prompt_name": prompt_name,
        }, None
    st = pipe.bundle.sentence_transformers
    pooling = embedding_pooling(pipe)
    problem = None
    if prompt_name is not None:
        problem = "prompt_name needs a sentence-embedding model"
    elif pooling not in _FE_POOLINGS or (st is not None and st.dense):
        problem = f"its sentence-transformers modules ({pooling} pooling{', Dense' if st.dense else ''})"
    if problem is not None:
        raise HTTPProblem(
            400,
            "bad_parameters",
            f"this {pipe.task} bundle cannot serve {problem}; export it with --task sentence-embedding",
        )
    params = {"pooling": pooling, "normalize": normalize or bool(st is not None and st.normalize)}
    if dimensions is None:
        return params, None

    def transform(vectors):
        cut = [np.asarray(v, dtype=np.float32)[:dimensions] for v in vectors]
        return [_unit(v) if normalize else v for v in cut]

    return params, transform


async def similarity(service: Service, worker, request, inputs: SimilarityInputs) -> bytes:
    """The cosine of ``inputs.source_sentence`` to each of ``inputs.sentences`` (an embedding model, its
    own pooling): the Inference API's sentence-similarity answer, a list of floats."""
    texts = check_texts([inputs.source_sentence, *inputs.sentences], service.settings)

    def transform(vectors):
        unit = np.asarray(vectors, dtype=np.float64)
        return [float(x) for x in unit[1:] @ unit[0]]

    params, _ = embedding_params(worker.pipe)
    return await service.run(worker, request, texts, params, transform)


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
        if worker.pipe.task not in EMBEDDING_TASKS:
            raise HTTPProblem(
                400,
                "wrong_task",
                f"sentence similarity needs a sentence-embedding or feature-extraction model; "
                f"{worker.name!r} is a "
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
