"""What every route shares: picking a model, running a request through its batcher, and the answer.

:class:`Service` holds the app's workers, settings and metrics. A route hands :meth:`Service.serve` a
handler ``handler(request, call)``; the handler picks its model (:meth:`Service.pick`, which names the
served models when the choice is ambiguous or unknown), says so with ``call.use(worker)`` (from then on
the request is counted for that model), prepares its texts once (:meth:`Service.prepare`) and runs them
with :meth:`Service.run`. ``serve`` turns any exception into the error answer (:func:`problem_for`) in the
route family's shape (:func:`answer`: bertrt's, TEI's, OpenAI's), counts the response and its latency.

:meth:`Service.run` watches the connection while the request waits: a client that disconnects has its
request dropped from the queue (or its results discarded, if it is already running), counted in
``bertrt_disconnects_total``, and the response is recorded with status 499 (nginx's "client closed
request"; nothing is sent). Every answer carries the request's id (``X-Request-ID``, see
:mod:`bertrt.serve.middleware`); a 500's body names it too, and so does its log line.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from ..errors import BertrtError, ServeError
from .batcher import DeadlineExceeded, ModelUnavailable, ModelWorker
from .metrics import Metrics
from .requests import HTTPProblem, load_json, read_body
from .settings import ServeSettings

__all__ = [
    "STYLES",
    "Call",
    "ClientGone",
    "Service",
    "answer",
    "error_payload",
    "problem_for",
    "request_id",
    "style_of",
]

log = logging.getLogger("bertrt.serve")

#: status recorded for a request whose client went away before the answer (nothing is sent)
CLIENT_CLOSED = 499

#: text-embeddings-inference's ``error_type`` by status, added to the answers of its routes
_TEI_ERROR_TYPES = {408: "Validation", 413: "Validation", 422: "Validation", 503: "Overloaded"}

#: the error shapes: bertrt's ``{"error", "code", ...}``, the same with TEI's ``error_type``, OpenAI's object
STYLES = ("bertrt", "tei", "openai")


class ClientGone(Exception):
    """The client disconnected before its answer."""


def request_id(request) -> str | None:
    """The id :mod:`bertrt.serve.middleware` gave ``request`` (None outside that middleware)."""
    return getattr(request.state, "request_id", None)


def problem_for(exc: Exception, model: str, rid: str | None = None) -> HTTPProblem:
    """The answer to a request that raised ``exc``.

    A :class:`BertrtError` is the caller's (an unusable input or option, raised by the pipeline on
    purpose): 400 with its message. A passed deadline is 504, a model that failed its warm-up 503.
    Any other :class:`ServeError` (the server failed the request) and anything else are the server's:
    500 naming the request id ``rid`` (when known), with the traceback logged under that id.
    """
    if isinstance(exc, HTTPProblem):
        return exc
    if isinstance(exc, DeadlineExceeded):
        return HTTPProblem(504, "timeout", str(exc), limit="request_timeout_s", max=exc.timeout_s)
    if isinstance(exc, ModelUnavailable):
        return HTTPProblem(503, "model_unavailable", str(exc))
    if isinstance(exc, BertrtError) and not isinstance(exc, ServeError):
        return HTTPProblem(400, "bad_input", str(exc))
    log.error("request %s: model %s failed it", rid or "-", model or "-", exc_info=exc)
    extra = {} if rid is None else {"request_id": rid}
    return HTTPProblem(500, "internal_error", f"{type(exc).__name__}: {exc}", **extra)


def style_of(path: str) -> str:
    """The error shape of a path that no route claimed: OpenAI's under ``/v1/``, else bertrt's."""
    return "openai" if path == "/v1" or path.startswith("/v1/") else "bertrt"


def answer(problem: HTTPProblem, style: str = "bertrt") -> JSONResponse:
    """The JSON answer to ``problem`` in the route family's ``style`` (:func:`error_payload`)."""
    return JSONResponse(error_payload(problem, style), status_code=problem.status, headers=problem.headers)


def error_payload(problem: HTTPProblem, style: str = "bertrt") -> dict:
    """The body answering ``problem`` in ``style`` (:data:`STYLES`): bertrt's ``{"error", "code", ...}``;
    ``tei`` adds text-embeddings-inference's ``error_type``; ``openai`` is ``{"error": {"message",
    "type", "param", "code"}}``, the object OpenAI's SDK shows the reason of."""
    payload = problem.payload()
    status = problem.status
    if style == "tei":
        payload["error_type"] = (
            "Unhealthy"
            if problem.code == "model_unavailable"
            else _TEI_ERROR_TYPES.get(status, "Validation" if status < 500 else "Backend")
        )
    elif style == "openai":
        kind = "invalid_request_error" if status < 500 else "server_error"
        kind = {401: "authentication_error", 404: "not_found_error", 503: "overloaded_error"}.get(
            status, kind
        )
        payload = {
            "error": {"message": problem.message, "type": kind, "param": problem.param, "code": problem.code}
        }
    return payload


class Call:
    """One request's bookkeeping: which model it is counted for, once the route has picked it."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.model = ""
        self.tracked = False

    def use(self, worker: ModelWorker) -> None:
        self.model = worker.name
        if not self.tracked:
            self.tracked = True
            self.metrics.requests.labels(worker.name).inc()
            self.metrics.in_flight.labels(worker.name).inc()


class Service:
    """The workers, settings and metrics of one app, and what its routes do with them."""

    def __init__(self, workers: dict[str, ModelWorker], settings: ServeSettings, metrics: Metrics):
        self.workers, self.settings, self.metrics = workers, settings, metrics

    # -- models --------------------------------------------------------------------------------------
    def served(self) -> str:
        return ", ".join(f"{name} ({w.pipe.task})" for name, w in self.workers.items()) or "none"

    def worker(self, name: str) -> ModelWorker:
        """The model named ``name``; 404 ``model_not_found`` naming the served models otherwise."""
        worker = self.workers.get(name)
        if worker is None:
            raise HTTPProblem(
                404,
                "model_not_found",
                f"no model named {name!r}; served: {self.served()}",
                param="model",
                models=list(self.workers),
            )
        return worker

    def pick(
        self, name: str | None, tasks: tuple[str, ...], route: str, informational: bool = False
    ) -> ModelWorker:
        """The model ``route`` runs: ``name`` if given (404 unknown, 400 of another task), else the only
        served model of ``tasks`` (any task when empty); 400 ``model_required`` when several fit, 404
        when none does. Each message names the served models. ``informational``: with one model served,
        ``name`` is ignored (TEI's and OpenAI's clients always send one)."""
        needs = " or ".join(tasks)
        if informational and len(self.workers) == 1 and isinstance(name, str):
            name = None
        if name is not None:
            if not isinstance(name, str):
                raise HTTPProblem(400, "bad_request", f"'model' must be a string, got {type(name).__name__}")
            worker = self.worker(name)
            if tasks and worker.pipe.task not in tasks:
                raise HTTPProblem(
                    400,
                    "wrong_task",
                    f"model {name!r} is a {worker.pipe.task} model; {route} needs {needs}; "
                    f"served: {self.served()}",
                    param="model",
                    models=list(self.workers),
                )
            return worker
        fits = [w for w in self.workers.values() if not tasks or w.pipe.task in tasks]
        if len(fits) == 1:
            return fits[0]
        if not fits:
            raise HTTPProblem(
                404,
                "model_not_found",
                f"{route} needs a {needs} model and none is served; served: {self.served()}",
                models=list(self.workers),
            )
        raise HTTPProblem(
            400,
            "model_required",
            f"{len(fits)} served models fit {route} ({', '.join(w.name for w in fits)}): name one with "
            f"'model' (the request field, or ?model= on the text-embeddings-inference routes); "
            f"served: {self.served()}",
            param="model",
            models=[w.name for w in fits],
        )

    # -- requests ------------------------------------------------------------------------------------
    async def body(self, request) -> bytes:
        """The request body within max_body_bytes (413 after draining) and body_timeout_s (408)."""
        s = self.settings
        try:
            return await read_body(request, s.max_body_bytes, s.max_drain_bytes, s.body_timeout_s)
        except HTTPProblem as problem:
            if problem.code == "body_timeout":
                self.metrics.slow_clients.labels("body").inc()
            raise

    async def json(self, request):
        """The request body's strict JSON (400 ``malformed_json`` otherwise)."""
        return load_json(await self.body(request))

    async def prepare(self, worker: ModelWorker, inputs, params: dict):
        """The request checked and its texts encoded, once (:meth:`ModelWorker.prepare`): 503 for a model
        that failed its warm-up, 400 ``bad_parameters`` for unknown or bad parameters; an unusable input
        raises the pipeline's InputError (400 ``bad_input``)."""
        if worker.failed:  # a broken bundle: no request runs, and none is blamed for it
            raise worker.unavailable()
        try:
            worker.check_parameters(params)
        except BertrtError as exc:  # an unknown or bad option (anything else is the server's bug: 500)
            raise HTTPProblem(
                400, "bad_parameters", f"invalid parameters for {worker.pipe.task}: {exc}"
            ) from None
        return await worker.prepare(inputs, params)

    async def run(
        self,
        worker: ModelWorker,
        request,
        inputs,
        params: dict,
        transform: Callable | None = None,
        prepared=None,
    ) -> bytes:
        """``inputs`` through ``worker``'s batcher with ``params``: the JSON bytes of the result (shaped as
        a call on ``inputs``, then ``transform``-ed, in the worker thread). ``prepared``: the request's
        :meth:`prepare` (done here when None; its encodings are what runs). Raises ClientGone when the
        client disconnects meanwhile (its request dropped or discarded), HTTPProblem 400 for bad
        parameters, 503 for a full queue; what the call raised otherwise."""
        if prepared is None:
            prepared = await self.prepare(worker, inputs, params)
        future = worker.submit(inputs, params, transform=transform, prepared=prepared)
        if future is None:
            s = self.settings
            raise HTTPProblem(
                503,
                "queue_full",
                f"model {worker.name!r} is overloaded: its queue holds max_queue={s.max_queue} texts; "
                f"retry later",
                limit="max_queue",
                max=s.max_queue,
                headers={"Retry-After": str(s.retry_after_s)},
            )
        watcher = asyncio.ensure_future(request.receive())
        try:
            await asyncio.wait({future, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not future.done() and watcher.result().get("type") == "http.disconnect":
                worker.abandon(future)
                raise ClientGone
            return await future
        finally:
            watcher.cancel()

    async def serve(self, request, handler, style: str = "bertrt") -> Response:
        """``await handler(request, call)``, every failure turned into its answer, counted and timed."""
        started = time.perf_counter()
        call = Call(self.metrics)
        try:
            response = await handler(request, call)
        except (ClientGone, ClientDisconnect):
            response = Response(status_code=CLIENT_CLOSED)
        except Exception as exc:  # every failure becomes an answer; the server keeps serving
            problem = problem_for(exc, call.model, request_id(request))
            self.metrics.errors.labels(call.model, problem.code).inc()
            response = answer(problem, style)
        finally:
            if call.tracked:
                self.metrics.in_flight.labels(call.model).dec()
        if call.tracked:
            self.metrics.responses.labels(call.model, str(response.status_code)).inc()
            self.metrics.latency.labels(call.model).observe(time.perf_counter() - started)
        return response


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")
