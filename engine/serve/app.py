"""The ASGI app of ``bertrt serve``: routes, and the mapping of errors to HTTP answers.

Endpoints::

    POST /models/{name}/predict   {"inputs": str | [str, ...], "parameters": {...}} -> the pipeline's result
    GET  /models                  every model: task, labels, precision, model file, max length
    GET  /health                  503 until every model is warmed up, then 200
    GET  /metrics                 Prometheus text: requests, errors, queue depth, batch sizes, latencies
    GET  /openapi.json, /docs     the OpenAPI document and its UI
    POST /ner                     {"inputs", "parameters"?, "model"?}: the token-classification model's
                                  entities (aggregation_strategy "simple" unless given)
    text-embeddings-inference     POST /embed /embed_all /predict /rerank /tokenize /decode, GET /info
                                  (:mod:`bertrt.serve.compat_tei`)
    OpenAI                        POST /v1/embeddings (:mod:`bertrt.serve.compat_openai`)

With several models served, a route of one task picks its model by ``model`` (a body field, or ``?model=``
on the text-embeddings-inference routes): 400 ``model_required`` when several fit, 404
``model_not_found`` for an unknown name, 400 ``wrong_task`` for a model of another task; each names the
served models.

Every error, of any route, is JSON ``{"error": message, "code": ..., ...}``: 400 malformed or
pathological JSON / request shape / a text that is not valid Unicode (:mod:`bertrt.serve.requests`),
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
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ..errors import ServeError
from . import compat_openai, compat_tei
from .batcher import ModelWorker
from .metrics import Metrics
from .middleware import RequestGuard
from .requests import HTTPProblem, parse_request, request_from
from .service import Service, json_response, problem_for, request_id
from .settings import ServeSettings

__all__ = ["create_app", "problem_for"]  # problem_for: from .service, kept here for callers

log = logging.getLogger("bertrt.serve")

_PREDICT_SCHEMA = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["inputs"],
                "additionalProperties": False,
                "properties": {
                    "inputs": {
                        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                        "description": "one text (one result) or a list of texts (a list of results)",
                    },
                    "parameters": {
                        "type": "object",
                        "description": "the task's pipeline options, e.g. "
                        '{"aggregation_strategy": "simple"} for token-classification, {"top_k": 3} '
                        'for text-classification / fill-mask, {"pooling": "mean"} for feature-extraction',
                    },
                },
            },
            "example": {
                "inputs": "Maria flew to Groningen",
                "parameters": {"aggregation_strategy": "simple"},
            },
        }
    },
}


def _error_doc(text: str) -> dict:
    return {
        "description": text,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}, "code": {"type": "string"}},
                }
            }
        },
    }


_PREDICT_RESPONSES = {
    200: {"description": "the pipeline's result, shaped as transformers.pipeline returns it"},
    400: _error_doc("malformed JSON, wrong request shape, unknown or bad parameters, an unusable input"),
    404: _error_doc("no model of that name"),
    413: _error_doc("request body larger than max_body_bytes"),
    422: _error_doc("more texts than max_texts, or a text longer than max_chars"),
    500: _error_doc("the server's own fault (its traceback is logged)"),
    503: _error_doc("the model's queue is full (see Retry-After), or the model failed its warm-up"),
    504: _error_doc("no answer within request_timeout_s: the request's work was dropped"),
}

#: the ``code`` of the framework's own HTTP errors (routing); any other status is "http_error"
_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


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
    service = Service(workers, settings, metrics)

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
    app.state.service = service
    app.add_middleware(
        RequestGuard,
        metrics=metrics,
        api_key=api_key,
        drain_bytes=min(settings.max_drain_bytes, max(settings.max_body_bytes, 1 << 20)),
        drain_timeout_s=settings.body_timeout_s,
    )
    _install_error_handlers(app, metrics)

    @app.get("/health", summary="200 once every model is warmed up, 503 before")
    async def health():
        states = {
            n: ("ready" if w.ready else "failed" if w.failed else "warming_up") for n, w in workers.items()
        }
        ok = all(state == "ready" for state in states.values())
        body = {"status": "ok" if ok else "unavailable", "models": states}
        failures = {n: w.failed for n, w in workers.items() if w.failed}
        if failures:
            body["errors"] = failures
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/models", summary="the served models: task, labels, precision")
    async def models():
        return {
            "models": [w.describe() for w in workers.values()],
            "batching": {
                "enabled": settings.batching,
                "max_batch_size": settings.max_batch_size,
                "max_batch_tokens": settings.max_batch_tokens,
                "pipeline_batch_size": settings.pipeline_batch_size,
                "max_wait_ms": settings.max_wait_ms,
                "max_queue": settings.max_queue,
            },
            "limits": {
                "max_body_bytes": settings.max_body_bytes,
                "max_texts": settings.max_texts,
                "max_chars": settings.max_chars,
                "request_timeout_s": settings.request_timeout_s,
                "header_timeout_s": settings.header_timeout_s,
                "body_timeout_s": settings.body_timeout_s,
                "max_connections": settings.max_connections,
            },
        }

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics():
        body, media_type = metrics.exposition()
        return Response(body, media_type=media_type)

    @app.post(
        "/models/{name}/predict",
        summary="run the model's pipeline on one text or a list of texts",
        openapi_extra={"requestBody": _PREDICT_SCHEMA},
        responses=_PREDICT_RESPONSES,
        response_class=Response,
    )
    async def predict(name: str, request: Request):
        async def handler(request, call):
            worker = workers.get(name)
            if worker is None:
                raise HTTPProblem(
                    404,
                    "model_not_found",
                    f"no model named {name!r}; served: {', '.join(workers)}",
                    models=list(workers),
                )
            call.use(worker)
            if worker.failed:  # a broken bundle: no request runs, and none is blamed for it
                raise worker.unavailable()
            parsed = parse_request(await service.body(request), settings)
            return json_response(await service.run(worker, request, parsed.inputs, parsed.parameters))

        return await service.serve(request, handler)

    @app.post(
        "/ner",
        summary="named entities of one text or a list of texts (the token-classification model)",
        responses=_PREDICT_RESPONSES,
        response_class=Response,
    )
    async def ner(request: Request, model: str | None = None):
        """``{"inputs", "parameters"?, "model"?}`` (or ``?model=``): ``/models/{name}/predict`` of the
        served token-classification model, with ``aggregation_strategy`` "simple" unless given."""

        async def handler(request, call):
            body = await service.json(request)
            name = body.get("model", model) if isinstance(body, dict) else model
            worker = service.pick(name, ("token-classification",), "/ner")
            call.use(worker)
            if isinstance(body, dict):
                body = {k: v for k, v in body.items() if k != "model"}
            parsed = request_from(body, settings)
            params = {"aggregation_strategy": "simple", **parsed.parameters}
            return json_response(await service.run(worker, request, parsed.inputs, params))

        return await service.serve(request, handler)

    compat_tei.add_routes(app, service)
    compat_openai.add_routes(app, service)
    return app


def _install_error_handlers(app: FastAPI, metrics: Metrics) -> None:
    """The framework's own errors (unknown route, wrong method, a route's parameter validation, an
    unhandled exception outside predict) answered in bertrt's ``{"error", "code"}`` shape."""

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        method, path = request.method, request.url.path
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        default = exc.detail == HTTPStatus(exc.status_code).phrase
        if exc.status_code == 404 and default:
            message = f"no route {path}; the routes are listed at /openapi.json"
        elif exc.status_code == 405 and default:
            allowed = (exc.headers or {}).get("Allow", "")
            message = f"method {method} is not allowed on {path}; allowed: {allowed or 'none'}"
        else:
            message = str(exc.detail)
        metrics.errors.labels("", code).inc()
        return JSONResponse(
            {"error": message, "code": code}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors():
            where = [str(part) for part in error.get("loc", ())]
            name = f"{where[0]} parameter {where[-1]!r}" if len(where) > 1 else ".".join(where) or "request"
            problems.append(f"{name}: {error.get('msg', 'invalid')}")
        metrics.errors.labels("", "invalid_request").inc()
        return JSONResponse(
            {"error": "; ".join(problems) or "invalid request", "code": "invalid_request"}, status_code=422
        )

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):  # starlette logs the traceback itself
        metrics.errors.labels("", "internal_error").inc()
        rid = request_id(request) or "-"
        log.error("request %s failed outside a route's own handling", rid)
        return JSONResponse(
            {"error": f"{type(exc).__name__}: {exc}", "code": "internal_error", "request_id": rid},
            status_code=500,
            headers={"X-Request-ID": rid},
        )
