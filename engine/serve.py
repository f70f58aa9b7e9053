"""``bertrt serve BUNDLE [BUNDLE ...]``: an HTTP server with dynamic micro-batching (extra ``bertrt[serve]``).

This module is the only place that imports fastapi, uvicorn and prometheus_client; ``bertrt`` never
imports it, so the runtime installs and imports without them.

Endpoints::

    POST /models/{name}/predict   {"inputs": str | [str, ...], "parameters": {...}} -> the pipeline's result
    GET  /models                  every model: task, labels, precision, model file, max length
    GET  /health                  503 until every model is warmed up, then 200
    GET  /metrics                 Prometheus text: requests, errors, queue depth, batch sizes, latencies
    GET  /openapi.json, /docs     the OpenAPI document and its UI

Micro-batching, per model: an accepted request joins a bounded queue (``--max-queue`` texts); one
batcher task takes the oldest request and every later request with the *same parameters* (canonical
JSON key, so options never mix) until ``--max-batch-size`` texts are collected or the oldest request
has waited ``--max-wait-ms``, runs one pipeline call in the model's worker thread (onnxruntime releases
the GIL, so the event loop keeps accepting meanwhile), and hands each request its own slice of the
results, in order. Calls for one model run one at a time, so batches never compete for the cores.
A batch that fails as a whole is rerun request by request, so one bad input only fails its own request.

Errors are JSON ``{"error": message, "code": ..., ...}``: 400 malformed JSON / request shape / unknown or
bad parameters (checked with the pipeline's own validation before queueing: a call on no texts runs every
option check and no model), 404 unknown model, 413 body over ``--max-body-bytes``, 422 too many texts or
a too long text (naming the limit), 503 queue full (with Retry-After).

SIGTERM: uvicorn stops listening and waits for every in-flight request; the batchers keep running until
the queues are empty, then the lifespan shutdown stops them and the process exits 0.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import re
import signal
import socket
import sys
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import prometheus_client as prom
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .errors import BertrtError, InputError, ServeError
from .results import to_jsonable as _jsonable

__all__ = ["ModelWorker", "ServeSettings", "add_arguments", "create_app", "parse_model_specs", "run"]

log = logging.getLogger("bertrt.serve")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
#: call options the server owns; a client may not set them
_SERVER_OPTIONS = ("batch_size", "max_tokens_per_batch")
_REQUEST_KEYS = ("inputs", "parameters")
_WARMUP_TEXT = "Warm-up: Maria flew from Groningen to New York on Monday."


@dataclass(frozen=True)
class ServeSettings:
    """Batching knobs and request limits (one set for every model)."""

    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    pipeline_batch_size: int = 8  # the pipeline sorts a micro-batch by length and runs sub-batches of this size
    max_queue: int = 1024  # texts waiting per model
    batching: bool = True
    max_body_bytes: int = 1 << 20
    max_texts: int = 64
    max_chars: int = 20_000
    retry_after_s: int = 1

    def problems(self) -> list[str]:
        found = []
        for name in ("max_batch_size", "pipeline_batch_size", "max_queue", "max_body_bytes", "max_texts", "max_chars"):
            if getattr(self, name) <= 0:
                found.append(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            found.append(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.max_texts > self.max_queue:
            found.append(f"--max-texts ({self.max_texts}) must not exceed --max-queue ({self.max_queue}): "
                         f"a full-size request could never be queued")
        return found


# -- errors as JSON -------------------------------------------------------------------------------------
class _HTTPProblem(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.message, "code": self.code, **self.extra}, status_code=self.status,
                            headers=self.headers)


def _dumps(value) -> bytes:
    return json.dumps(_jsonable(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


# -- metrics --------------------------------------------------------------------------------------------
class _Metrics:
    """One registry per app, so several apps (tests) never share counters."""

    def __init__(self, max_batch_size: int):
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter("bertrt_requests", "Predict requests received, by model", ["model"], registry=r)
        self.responses = prom.Counter("bertrt_responses", "Predict responses, by model and HTTP status",
                                      ["model", "status"], registry=r)
        self.errors = prom.Counter("bertrt_errors", "Predict requests answered with an error, by model and code",
                                   ["model", "code"], registry=r)
        self.queue_depth = prom.Gauge("bertrt_queue_depth", "Texts waiting in the model's queue", ["model"],
                                      registry=r)
        self.in_flight = prom.Gauge("bertrt_requests_in_flight", "Accepted predict requests not yet answered",
                                    ["model"], registry=r)
        buckets = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch_size})
        self.batch_texts = prom.Histogram("bertrt_batch_texts", "Texts per pipeline call", ["model"],
                                          buckets=buckets, registry=r)
        self.batch_requests = prom.Histogram("bertrt_batch_requests", "Requests per pipeline call", ["model"],
                                             buckets=buckets, registry=r)
        latency = (.001, .0025, .005, .01, .025, .05, .075, .1, .25, .5, .75, 1, 2.5, 5, 10)
        self.latency = prom.Histogram("bertrt_request_latency_seconds", "Predict latency in the server, by model",
                                      ["model"], buckets=latency, registry=r)
        self.inference = prom.Histogram("bertrt_inference_seconds", "Duration of one pipeline call", ["model"],
                                        buckets=latency, registry=r)


# -- one model: queue, batcher, worker thread -------------------------------------------------------------
@dataclass
class _Job:
    texts: list[str]
    params: dict
    key: str
    single: bool
    future: asyncio.Future
    arrived: float
    started: float = field(default=0.0)


def _parameters_key(params: dict) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


class ModelWorker:
    """The queue and batcher of one model; pipeline calls run one at a time in its own worker thread."""

    def __init__(self, name: str, pipe, settings: ServeSettings, metrics: _Metrics):
        self.name = name
        self.pipe = pipe
        self.settings = settings
        self.metrics = metrics
        self.pending: deque[_Job] = deque()
        self.queued_texts = 0
        self.texts_per_key: Counter = Counter()
        self.ready = False
        self.failed: str | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bertrt-{name}")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._idle = True

    # Description for GET /models
    def describe(self) -> dict:
        labels = [self.pipe.id2label[i] for i in sorted(self.pipe.id2label)] if self.pipe.id2label else []
        return {"name": self.name, "task": self.pipe.task, "labels": labels, "precision": self.pipe.precision,
                "model_file": self.pipe.bundle.model_path.name, "max_length": self.pipe.max_length,
                "ready": self.ready}

    def check_parameters(self, params: dict) -> None:
        """InputError (or TypeError) for unknown or bad options: the pipeline's own checks, on no texts."""
        bad = [name for name in _SERVER_OPTIONS if name in params]
        if bad:
            raise InputError(f"parameter(s) {', '.join(bad)} are set by the server (--max-batch-size), not per "
                             f"request")
        self.pipe([], **params)

    def submit(self, job: _Job) -> bool:
        """Queue ``job``; False when the queue has no room for its texts."""
        if self.queued_texts + len(job.texts) > self.settings.max_queue:
            return False
        self.pending.append(job)
        self.queued_texts += len(job.texts)
        self.texts_per_key[job.key] += len(job.texts)
        self.metrics.queue_depth.labels(self.name).set(self.queued_texts)
        if self._wakeup is not None:
            self._wakeup.set()
        return True

    def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"bertrt-batcher-{self.name}")

    async def stop(self) -> None:
        """Run everything still queued, then stop the batcher and the worker thread."""
        while (self.pending or not self._idle) and self._task is not None and not self._task.done():
            await asyncio.sleep(0.01)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for job in self.pending:  # only if the batcher died: never leave a caller hanging
            if not job.future.done():
                job.future.set_exception(ServeError(f"model {self.name!r} stopped before running the request"))
        self.executor.shutdown(wait=True)

    def _warm_up(self) -> None:
        text = _WARMUP_TEXT
        if self.pipe.task == "fill-mask":
            text = text.replace("Groningen", self.pipe.tokenizer.mask_token)
        self.pipe(text)
        self.pipe([text] * min(self.settings.max_batch_size, 32), batch_size=self.settings.pipeline_batch_size)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self.executor, self._warm_up)
            self.ready = True
            log.info("model %s warmed up", self.name)
        except Exception as exc:  # noqa: BLE001 - reported by /health; requests still run (and fail) individually
            self.failed = f"{type(exc).__name__}: {exc}"
            log.error("warm-up of model %s failed: %s", self.name, self.failed)
        while True:
            if not self.pending:
                self._idle = True
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._idle = False
            batch = await self._collect()
            await self._execute(batch)

    async def _collect(self) -> list[_Job]:
        """Wait for a full batch of the oldest request's parameters, or its deadline; take that batch."""
        loop = asyncio.get_running_loop()
        first = self.pending[0]
        limit = self.settings.max_batch_size
        if self.settings.batching:
            deadline = first.arrived + self.settings.max_wait_ms / 1000.0
            while self.texts_per_key[first.key] < limit:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch, kept, total = [], deque(), 0
            for job in self.pending:
                if job.key == first.key and (not batch or total + len(job.texts) <= limit):
                    batch.append(job)
                    total += len(job.texts)
                else:
                    kept.append(job)
            self.pending = kept
        else:
            batch = [self.pending.popleft()]
        for job in batch:
            self.queued_texts -= len(job.texts)
            self.texts_per_key[job.key] -= len(job.texts)
            if self.texts_per_key[job.key] <= 0:
                del self.texts_per_key[job.key]
        self.metrics.queue_depth.labels(self.name).set(self.queued_texts)
        return batch

    async def _execute(self, batch: list[_Job]) -> None:
        loop = asyncio.get_running_loop()
        texts = sum(len(job.texts) for job in batch)
        self.metrics.batch_texts.labels(self.name).observe(texts)
        self.metrics.batch_requests.labels(self.name).observe(len(batch))
        try:
            outcomes = await loop.run_in_executor(self.executor, self._infer, batch)
        except Exception as exc:  # noqa: BLE001 - the executor itself failed: fail the batch, keep serving
            outcomes = [exc] * len(batch)
        for job, outcome in zip(batch, outcomes):
            if job.future.done():  # the caller went away
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    # worker thread ---------------------------------------------------------------------------------------
    def _shape(self, job: _Job, results: list):
        if not job.single:
            return results
        # A single str gives the one result, except text-classification's legacy form (no top_k), which
        # transformers (and the pipeline) return as a one-element list.
        if self.pipe.task == "text-classification" and "top_k" not in job.params:
            return [results[0]]
        return results[0]

    def _infer(self, batch: list[_Job]) -> list:
        """One pipeline call for the batch; JSON bytes (or the exception) per job, in order."""
        texts = [text for job in batch for text in job.texts]
        started = time.perf_counter()
        try:
            results = self.pipe(texts, batch_size=self.settings.pipeline_batch_size, **batch[0].params) if texts else []
        except Exception as exc:  # noqa: BLE001 - handed to the caller(s) as their error
            if len(batch) == 1:
                return [exc]
            log.info("batch of %d requests failed (%s); rerunning them one by one", len(batch), exc)
            return [self._infer([job])[0] for job in batch]
        finally:
            self.metrics.inference.labels(self.name).observe(time.perf_counter() - started)
        outcomes, cursor = [], 0
        for job in batch:
            mine = results[cursor: cursor + len(job.texts)]
            cursor += len(job.texts)
            try:
                outcomes.append(_dumps(self._shape(job, mine)))
            except (TypeError, ValueError) as exc:  # a result JSON cannot hold (NaN, ...): a server fault (500)
                outcomes.append(ServeError(f"cannot encode the result as JSON: {exc}"))
        return outcomes


# -- request parsing -------------------------------------------------------------------------------------
async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_large = _HTTPProblem(413, "body_too_large", f"request body exceeds max_body_bytes={limit}",
                             limit="max_body_bytes", max=limit)
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def _parse_request(raw: bytes, settings: ServeSettings) -> tuple[bool, list[str], dict]:
    """(single, texts, parameters) from the body; _HTTPProblem 400/422 naming the problem."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise _HTTPProblem(400, "malformed_json", f"request body is not valid JSON{where}: "
                           f"{getattr(exc, 'msg', str(exc))}") from None
    if not isinstance(body, dict):
        raise _HTTPProblem(400, "bad_request", f"request body must be a JSON object with 'inputs', got "
                                               f"{type(body).__name__}")
    unknown = sorted(set(body) - set(_REQUEST_KEYS))
    if unknown:
        raise _HTTPProblem(400, "bad_request", f"unknown field(s) {', '.join(unknown)}; accepted: inputs, parameters")
    if "inputs" not in body:
        raise _HTTPProblem(400, "bad_request", "missing field 'inputs' (a string or a list of strings)")
    inputs, params = body["inputs"], body.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise _HTTPProblem(400, "bad_parameters", f"'parameters' must be a JSON object, got {type(params).__name__}")
    single = isinstance(inputs, str)
    texts = [inputs] if single else inputs
    if not isinstance(texts, list):
        raise _HTTPProblem(400, "bad_request", f"'inputs' must be a string or a list of strings, got "
                                               f"{type(inputs).__name__}")
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise _HTTPProblem(400, "bad_request", f"'inputs' must hold strings only; not a string at index(es) "
                                               f"{', '.join(map(str, bad[:20]))}")
    if len(texts) > settings.max_texts:
        raise _HTTPProblem(422, "too_many_texts", f"{len(texts)} texts in one request exceed max_texts="
                           f"{settings.max_texts}", limit="max_texts", max=settings.max_texts, got=len(texts))
    long = [i for i, text in enumerate(texts) if len(text) > settings.max_chars]
    if long:
        raise _HTTPProblem(422, "text_too_long", f"text(s) at index {', '.join(map(str, long[:20]))} exceed "
                           f"max_chars={settings.max_chars} characters", limit="max_chars", max=settings.max_chars,
                           indexes=long[:20])
    return single, texts, params


_PREDICT_SCHEMA = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "inputs": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
                       "description": "one text (one result) or a list of texts (a list of results)"},
            "parameters": {"type": "object", "description": "the task's pipeline options, e.g. "
                           "{\"aggregation_strategy\": \"simple\"} for token-classification, {\"top_k\": 3} "
                           "for text-classification / fill-mask, {\"pooling\": \"mean\"} for feature-extraction"},
        },
    }, "example": {"inputs": "Maria flew to Groningen", "parameters": {"aggregation_strategy": "simple"}}}},
}


def _error_doc(text: str) -> dict:
    return {"description": text, "content": {"application/json": {"schema": {
        "type": "object", "properties": {"error": {"type": "string"}, "code": {"type": "string"}}}}}}


_PREDICT_RESPONSES = {
    200: {"description": "the pipeline's result, shaped as transformers.pipeline returns it"},
    400: _error_doc("malformed JSON, wrong request shape, unknown or bad parameters"),
    404: _error_doc("no model of that name"),
    413: _error_doc("request body larger than max_body_bytes"),
    422: _error_doc("more texts than max_texts, or a text longer than max_chars"),
    503: _error_doc("the model's queue is full (see Retry-After)"),
}


# -- the app ---------------------------------------------------------------------------------------------
def create_app(pipelines: dict, settings: ServeSettings | None = None) -> FastAPI:
    """The ASGI app serving ``pipelines`` ({name: Pipeline}); batchers start in its lifespan."""
    settings = settings or ServeSettings()
    problems = settings.problems()
    if problems:
        raise ServeError("; ".join(problems))
    metrics = _Metrics(settings.max_batch_size)
    workers = {name: ModelWorker(name, pipe, settings, metrics) for name, pipe in pipelines.items()}

    @contextlib.asynccontextmanager
    async def lifespan(app):
        for worker in workers.values():
            worker.start()
        yield
        await asyncio.gather(*(worker.stop() for worker in workers.values()))

    from . import __version__

    app = FastAPI(title="bertrt serve", version=__version__, lifespan=lifespan,
                  description="BERT-family ONNX pipelines over HTTP with dynamic micro-batching.")
    app.state.workers = workers
    app.state.settings = settings
    app.state.metrics = metrics

    @app.get("/health", summary="200 once every model is warmed up, 503 before")
    async def health():
        states = {n: ("ready" if w.ready else "failed" if w.failed else "warming_up") for n, w in workers.items()}
        ok = all(state == "ready" for state in states.values())
        body = {"status": "ok" if ok else "unavailable", "models": states}
        failures = {n: w.failed for n, w in workers.items() if w.failed}
        if failures:
            body["errors"] = failures
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/models", summary="the served models: task, labels, precision")
    async def models():
        return {"models": [w.describe() for w in workers.values()],
                "batching": {"enabled": settings.batching, "max_batch_size": settings.max_batch_size,
                             "pipeline_batch_size": settings.pipeline_batch_size,
                             "max_wait_ms": settings.max_wait_ms, "max_queue": settings.max_queue},
                "limits": {"max_body_bytes": settings.max_body_bytes, "max_texts": settings.max_texts,
                           "max_chars": settings.max_chars}}

    @app.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def prometheus_metrics():
        return Response(prom.generate_latest(metrics.registry), media_type=prom.CONTENT_TYPE_LATEST)

    @app.post("/models/{name}/predict", summary="run the model's pipeline on one text or a list of texts",
              openapi_extra={"requestBody": _PREDICT_SCHEMA}, responses=_PREDICT_RESPONSES,
              response_class=Response)
    async def predict(name: str, request: Request):
        started = time.perf_counter()
        worker = workers.get(name)
        if worker is None:
            metrics.errors.labels("", "model_not_found").inc()
            return _HTTPProblem(404, "model_not_found", f"no model named {name!r}; served: "
                                f"{', '.join(workers)}", models=list(workers)).response()
        metrics.requests.labels(name).inc()
        metrics.in_flight.labels(name).inc()
        try:
            response = await _predict(worker, request)
        except _HTTPProblem as problem:
            response = problem.response()
        except (InputError, ValueError, TypeError) as exc:  # the pipeline rejected an input at run time
            response = _HTTPProblem(400, "bad_input", str(exc)).response()
        except Exception as exc:
            log.exception("model %s failed a request", name)
            response = _HTTPProblem(500, "internal_error", f"{type(exc).__name__}: {exc}").response()
        finally:
            metrics.in_flight.labels(name).dec()
        metrics.responses.labels(name, str(response.status_code)).inc()
        if response.status_code >= 400:
            metrics.errors.labels(name, json.loads(response.body)["code"]).inc()
        metrics.latency.labels(name).observe(time.perf_counter() - started)
        return response

    async def _predict(worker: ModelWorker, request: Request) -> Response:
        raw = await _read_body(request, settings.max_body_bytes)
        single, texts, params = _parse_request(raw, settings)
        try:
            worker.check_parameters(params)
        except (ValueError, TypeError) as exc:  # InputError, and TypeError for an unexpected keyword
            raise _HTTPProblem(400, "bad_parameters", f"invalid parameters for {worker.pipe.task}: {exc}") from None
        loop = asyncio.get_running_loop()
        job = _Job(texts, params, _parameters_key(params), single, loop.create_future(), loop.time())
        if not worker.submit(job):
            raise _HTTPProblem(503, "queue_full", f"model {worker.name!r} is overloaded: its queue holds "
                               f"max_queue={settings.max_queue} texts; retry later", limit="max_queue",
                               max=settings.max_queue, headers={"Retry-After": str(settings.retry_after_s)})
        return Response(await job.future, media_type="application/json")

    return app


# -- command line ----------------------------------------------------------------------------------------
def parse_model_specs(specs: list[str]) -> dict[str, Path]:
    """``PATH`` (named after the folder) or ``NAME=PATH`` -> {name: path}; ServeError on bad/duplicate names."""
    models: dict[str, Path] = {}
    problems = []
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not _NAME.match(name):
            name, path = Path(spec).resolve().name, spec
        if not _NAME.match(name):
            problems.append(f"{spec!r}: model name {name!r} must match {_NAME.pattern} (use NAME=PATH)")
        elif name in models:
            problems.append(f"{spec!r}: model name {name!r} is used twice (use NAME=PATH)")
        else:
            models[name] = Path(path)
    if problems:
        raise ServeError("; ".join(problems))
    return models


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundles", nargs="+", metavar="BUNDLE",
                        help="bundle folder, served as /models/<folder name>; or NAME=PATH")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    parser.add_argument("--port", type=int, default=8000, help="port (0: any free port; the line "
                        "'listening on http://HOST:PORT' on stderr names it)")
    parser.add_argument("--precision", choices=("int8", "fp32"), default="int8")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads per model")
    group = parser.add_argument_group("micro-batching")
    group.add_argument("--max-batch-size", type=int, default=32, help="texts per pipeline call (default 32)")
    group.add_argument("--max-wait-ms", type=float, default=2.0,
                       help="longest wait for a batch to fill, from its oldest request's arrival (default 2); "
                            "requests that arrive while a call runs join the next batch without waiting")
    group.add_argument("--pipeline-batch-size", type=int, default=8,
                       help="the pipeline sorts a micro-batch by length and runs it in sub-batches of this many "
                            "sequences (less padding; default 8)")
    group.add_argument("--max-queue", type=int, default=1024,
                       help="texts waiting per model; beyond it requests get 503 (default 1024)")
    group.add_argument("--no-batching", action="store_true", help="run every request alone (for comparison)")
    limits = parser.add_argument_group("request limits")
    limits.add_argument("--max-body-bytes", type=int, default=1 << 20, help="413 beyond (default 1 MiB)")
    limits.add_argument("--max-texts", type=int, default=64, help="texts per request, 422 beyond (default 64)")
    limits.add_argument("--max-chars", type=int, default=20_000, help="characters per text, 422 beyond")
    parser.add_argument("--shutdown-timeout", type=float, default=60.0,
                        help="seconds to finish in-flight requests after SIGTERM (default 60)")
    parser.add_argument("--access-log", action="store_true", help="log every request")


def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ServeError(f"cannot resolve --host {host!r}: {exc}") from None
    family, _, _, _, address = infos[0]
    # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and without
    # it a keep-alive client waits for a delayed ACK (~40 ms) on every response.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def run(args) -> int:
    from .pipelines import pipeline

    settings = ServeSettings(max_batch_size=args.max_batch_size, max_wait_ms=args.max_wait_ms,
                             pipeline_batch_size=args.pipeline_batch_size,
                             max_queue=args.max_queue, batching=not args.no_batching,
                             max_body_bytes=args.max_body_bytes, max_texts=args.max_texts, max_chars=args.max_chars)
    problems = settings.problems()
    if problems:
        raise ServeError("; ".join(problems))
    specs = parse_model_specs(args.bundles)
    pipelines = {}
    for name, path in specs.items():  # load everything first: a bad bundle fails before the port opens
        try:
            pipelines[name] = pipeline(None, path, precision=args.precision, threads=args.threads)
        except BertrtError as exc:
            raise ServeError(f"model {name!r}: {exc}") from None
    app = create_app(pipelines, settings)
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    if not (host.startswith("127.") or host in ("::1", "localhost")):
        log.warning("listening on %s: reachable from other machines", host)
    config = uvicorn.Config(app, log_level="info" if log.isEnabledFor(logging.INFO) else "warning",
                            access_log=args.access_log, timeout_graceful_shutdown=args.shutdown_timeout,
                            lifespan="on")
    server = uvicorn.Server(config)
    stopped_by = []
    # uvicorn re-raises the signal that stopped it once it has shut down; a handler of ours turns that
    # into a normal return (exit 0) instead of death by SIGTERM.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stopped_by.append(signum))
    shown = f"[{host}]" if ":" in host else host
    sys.stderr.write(f"bertrt serve: listening on http://{shown}:{port} "
                     f"(models: {', '.join(pipelines)}; batching {'on' if settings.batching else 'off'})\n")
    sys.stderr.flush()
    try:
        server.run(sockets=[sock])
    finally:
        signal.signal(signal.SIGTERM, previous)
        sock.close()
    if not server.started:
        raise ServeError("the server did not start (see the log above)")
    if stopped_by:
        log.info("stopped by SIGTERM after draining every accepted request")
    return 0
