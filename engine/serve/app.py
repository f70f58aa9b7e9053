"""The ASGI app of ``bertrt serve``: routes, and the mapping of errors to HTTP answers.

Endpoints::

    POST /models/{name}/predict   {"inputs": str | [str, ...], "parameters": {...}} -> the pipeline's result
    GET  /models                  every model: task, labels, precision, model file, max length
    GET  /health                  503 until every model is warmed up, then 200
    GET  /metrics                 Prometheus text: requests, errors, queue depth, batch sizes, latencies
    GET  /openapi.json, /docs     the OpenAPI document and its UI

Every error, of any route, is JSON ``{"error": message, "code": ..., ...}``: 400 malformed or
pathological JSON / request shape / a text that is not valid Unicode (:mod:`bertrt.serve.requests`),
400 ``bad_parameters`` for unknown or bad parameters (the pipeline's own validation, run on no texts
before queueing), 400 ``bad_input`` for any other :class:`~bertrt.errors.BertrtError` the pipeline raises
on a request (its message is the answer), 404 ``model_not_found`` (unknown model) or ``not_found``
(unknown route), 405 ``method_not_allowed`` (with Allow), 413 body over ``max_body_bytes``, 422 too many
texts or a too long text (naming the limit) or ``invalid_request`` (a route's own parameter validation),
503 ``queue_full`` (with Retry-After) or ``model_unavailable`` (the model failed its warm-up: the bundle
is broken, so no request runs), 504 ``timeout`` past ``request_timeout_s`` (a queued request is dropped
unrun; a running pipeline call cannot be interrupted, so it finishes and its results are discarded).
Anything else is the server's own fault: 500 ``internal_error``, the traceback logged, and the server
keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from ..errors import BertrtError, ServeError
from .batcher import DeadlineExceeded, ModelUnavailable, ModelWorker
from .metrics import Metrics
from .requests import HTTPProblem, parse_request, read_body
from .settings import ServeSettings

__all__ = ["create_app", "problem_for"]

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


def problem_for(exc: Exception, model: str) -> HTTPProblem:
    """The answer to a request that raised ``exc``.

    A :class:`BertrtError` is the caller's (an unusable input or option, raised by the pipeline on
    purpose): 400 with its message. A passed deadline is 504, a model that failed its warm-up 503.
    Any other :class:`ServeError` (the server failed the request) and anything else are the server's:
    500, with the traceback logged.
    """
    if isinstance(exc, HTTPProblem):
        return exc
    if isinstance(exc, DeadlineExceeded):
        return HTTPProblem(504, "timeout", str(exc), limit="request_timeout_s", max=exc.timeout_s)
    if isinstance(exc, ModelUnavailable):
        return HTTPProblem(503, "model_unavailable", str(exc))
    if isinstance(exc, BertrtError) and not isinstance(exc, ServeError):
        return HTTPProblem(400, "bad_input", str(exc))
    log.error("model %s failed a request", model, exc_info=exc)
    return HTTPProblem(500, "internal_error", f"{type(exc).__name__}: {exc}")


def _answer(problem: HTTPProblem) -> JSONResponse:
    return JSONResponse(problem.payload(), status_code=problem.status, headers=problem.headers)


def create_app(pipelines: dict, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app serving ``pipelines`` ({name: Pipeline}); batchers start in its lifespan."""
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
                "pipeline_batch_size": settings.pipeline_batch_size,
                "max_wait_ms": settings.max_wait_ms,
                "max_queue": settings.max_queue,
            },
            "limits": {
                "max_body_bytes": settings.max_body_bytes,
                "max_texts": settings.max_texts,
                "max_chars": settings.max_chars,
                "request_timeout_s": settings.request_timeout_s,
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
        started = time.perf_counter()
        worker = workers.get(name)
        if worker is None:
            metrics.errors.labels("", "model_not_found").inc()
            return _answer(
                HTTPProblem(
                    404,
                    "model_not_found",
                    f"no model named {name!r}; served: {', '.join(workers)}",
                    models=list(workers),
                )
            )
        metrics.requests.labels(name).inc()
        metrics.in_flight.labels(name).inc()
        try:
            response = Response(await _predict(worker, request), media_type="application/json")
        except Exception as exc:  # every failure becomes an answer; the server keeps serving
            problem = problem_for(exc, name)
            metrics.errors.labels(name, problem.code).inc()
            response = _answer(problem)
        finally:
            metrics.in_flight.labels(name).dec()
        metrics.responses.labels(name, str(response.status_code)).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response

    async def _predict(worker: ModelWorker, request: Request) -> bytes:
        if worker.failed:  # a broken bundle: no request runs, and none is blamed for it
            raise worker.unavailable()
        parsed = parse_request(await read_body(request, settings.max_body_bytes), settings)
        try:
            worker.check_parameters(parsed.parameters)
        except BertrtError as exc:  # an unknown or bad option (anything else is the server's bug: 500)
            raise HTTPProblem(
                400, "bad_parameters", f"invalid parameters for {worker.pipe.task}: {exc}"
            ) from None
        future = worker.submit(parsed.inputs, parsed.parameters)
        if future is None:
            raise HTTPProblem(
                503,
                "queue_full",
                f"model {worker.name!r} is overloaded: its queue holds "
                f"max_queue={settings.max_queue} texts; retry later",
                limit="max_queue",
                max=settings.max_queue,
                headers={"Retry-After": str(settings.retry_after_s)},
            )
        return await future

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
        return JSONResponse(
            {"error": f"{type(exc).__name__}: {exc}", "code": "internal_error"}, status_code=500
        )
