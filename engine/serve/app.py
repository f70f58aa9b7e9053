"""The ASGI app of ``bertrt serve``: routes, and the mapping of errors to HTTP answers.

Endpoints::

    POST /models/{name}/predict   {"inputs": str | [str, ...], "parameters": {...}} -> the pipeline's result
    GET  /models                  every model: task, labels, precision, model file, max length
    GET  /health                  503 until every model is warmed up, then 200
    GET  /metrics                 Prometheus text: requests, errors, queue depth, batch sizes, latencies
    GET  /openapi.json, /docs     the OpenAPI document and its UI
    POST /ner                     {"inputs", "parameters"?, "model"?}: the token-classification model's
                                  entities (aggregation_strategy "simple" unless given)
    text-embeddings-inference     POST / /embed /embed_all /similarity /predict /rerank /tokenize /decode,
                                  GET /info (:mod:`bertrt.serve.compat_tei`)
    OpenAI                        POST /v1/embeddings (:mod:`bertrt.serve.compat_openai`)

The routes live in one module per family, their handlers at module level: :mod:`.native` (bertrt's
own), :mod:`.compat_tei`, :mod:`.compat_openai`; the request bodies are pydantic models
(:mod:`.schemas`), and the OpenAPI document is generated from them.

With several models served, a route of one task picks its model by ``model`` (a body field, or ``?model=``
on the text-embeddings-inference routes): 400 ``model_required`` when several fit, 404
``model_not_found`` for an unknown name, 400 ``wrong_task`` for a model of another task; each names the
served models.

Every error, of any route but ``/v1/*`` (OpenAI's error object there, :func:`.service.answer`), is JSON
``{"error": message, "code": ..., ...}``: 400 malformed or
pathological JSON (:mod:`bertrt.serve.requests`) / request shape (:mod:`bertrt.serve.schemas`) / a text
that is not valid Unicode,
400 ``bad_parameters`` for unknown or bad parameters (the pipeline's own validation, run on no texts
before queueing), 400 ``bad_input`` for any other :class:`~bertrt.errors.BertrtError` the pipeline raises
on a request (its message is the answer), 404 ``model_not_found`` (unknown model) or ``not_found``
(unknown route), 405 ``method_not_allowed`` (with Allow), 413 body over ``max_body_bytes``, 422 too many
texts or a too long text (naming the limit), 401 ``unauthorized`` (an API key is set and the request
lacks it), 408 ``body_timeout`` (the body did not arrive within ``body_timeout_s``) or ``invalid_request`` (a route's own parameter validation),
503 ``queue_full`` (with Retry-After) or ``model_unavailable`` (the model failed its warm-up: the bundle
is broken, so no request runs), 504 ``timeout`` past ``request_timeout_s`` (a queued request is dropped
unrun; a running pipeline call cannot be interrupted, so it finishes and its results are discarded).
Anything else is the server's own fault: 500 ``internal_error`` naming the ``request_id`` (also in the
``X-Request-ID`` header of every answer), the traceback logged under that id, and the server keeps
serving. A client that disconnects before its answer has its request dropped (see
:mod:`bertrt.serve.service`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

from ..errors import ServeError
from . import compat_openai, compat_tei, native, schemas
from .batcher import ModelWorker
from .metrics import Metrics
from .middleware import RequestGuard
from .requests import HTTPProblem
from .service import Service, answer, request_id, style_of
from .settings import ServeSettings

__all__ = ["create_app"]

log = logging.getLogger("bertrt.serve")

#: the ``code`` of the framework's own HTTP errors (routing); any other status is "http_error"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}

#: the request models of every route, in the OpenAPI document's components
_MODELS = [
    schemas.PredictRequest,
    schemas.NerRequest,
    schemas.EmbedRequest,
    schemas.EmbedAllRequest,
    schemas.SimilarityRequest,
    schemas.TeiPredictRequest,
    schemas.RerankRequest,
    schemas.TokenizeRequest,
    schemas.DecodeRequest,
    schemas.EmbeddingsRequest,
]
_ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
    "description": "bertrt's error; on /v1/* OpenAI's {error: {message, type, param, code}}",
}


def create_app(pipelines: dict, settings: ServeSettings | None = None, api_key: str | None = None) -> FastAPI:
    """The ASGI app serving ``pipelines`` ({name: Pipeline}); batchers start in its lifespan.

    ``api_key``: every route but ``GET /health`` then needs it (:mod:`bertrt.serve.middleware`).
    """
    settings = settings or ServeSettings()
    problems = settings.problems()
    if problems:
        raise ServeError("; ".join(problems))
    metrics = Metrics(settings.max_batch_size)
    workers = {name: ModelWorker(name, pipe, settings, metrics) for name, pipe in pipelines.items()}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for worker in workers.values():
            worker.start()
        yield
        await asyncio.gather(*(worker.stop() for worker in workers.values()))

    from .. import __version__

    app = FastAPI(
        title="bertrt serve",
        version=__version__,
        lifespan=lifespan,
        description="BERT-family ONNX pipelines over HTTP with dynamic micro-batching.",
    )
    app.state.workers = workers
    app.state.settings = settings
    app.state.metrics = metrics
    app.state.service = Service(workers, settings, metrics)
    app.add_middleware(
        RequestGuard,
        metrics=metrics,
        api_key=api_key,
        drain_bytes=min(settings.max_drain_bytes, max(settings.max_body_bytes, 1 << 20)),
        drain_timeout_s=settings.body_timeout_s,
    )
    for handler_of in (HTTPException, RequestValidationError, Exception):
        app.add_exception_handler(handler_of, _framework_error)
    for module in (native, compat_tei, compat_openai):
        app.include_router(module.router)
    app.openapi = lambda: _openapi(app, workers)
    return app


def _openapi(app: FastAPI, workers: dict) -> dict:
    """The OpenAPI document: the routes, and the request models as components, with the parameters of
    each served model's task (:func:`~bertrt.serve.schemas.parameters_model`)."""
    if app.openapi_schema is None:
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        components = doc.setdefault("components", {}).setdefault("schemas", {})
        models = list(_MODELS)
        models += [w.parameters for w in workers.values() if w.parameters is not None]
        components.update(schemas.openapi_schemas(models))
        components["Error"] = _ERROR_SCHEMA
        app.openapi_schema = doc
    return app.openapi_schema


async def _framework_error(request: Request, exc: Exception):
    """The framework's own errors (unknown route, wrong method, a route's parameter validation, an
    unhandled exception outside a route's handling) answered in the path's error shape."""
    metrics = request.app.state.metrics
    method, path = request.method, request.url.path
    if isinstance(exc, HTTPException):
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        default = exc.detail == HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and default:
            message = f"no route {path}; the routes are listed at /openapi.json"
        elif exc.status_code == 405 and default:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method {method} is not allowed on {path}; allowed: {allowed or 'none'}"
        else:
            message = str(exc.detail)
        problem = HTTPProblem(exc.status_code, code, message, headers=exc.headers)
    elif isinstance(exc, RequestValidationError):
        problems = []
        for error in exc.errors():
            where = [str(part) for part in error.get("loc", ())]
            name = f"{where[0]} parameter {where[-1]!r}" if len(where) > 1 else ".".join(where) or "request"
            problems.append(f"{name}: {error.get('msg', 'invalid')}")
        param = next((str(e["loc"][-1]) for e in exc.errors() if e.get("loc")), None)
        problem = HTTPProblem(422, "invalid_request", "; ".join(problems) or "invalid request", param=param)
    else:  # starlette logs the traceback itself
        rid = request_id(request) or "-"
        log.error("request %s failed outside a route's own handling", rid)
        problem = HTTPProblem(
            500, "internal_error", f"{type(exc).__name__}: {exc}", {"X-Request-ID": rid}, request_id=rid
        )
    metrics.errors.labels("", problem.code).inc()
    return answer(problem, style_of(path))
