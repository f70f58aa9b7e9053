"""One model's queue, micro-batcher and worker thread: plain asyncio, no HTTP.

A request is prepared once, on arrival (``pipe.prepare``: its options checked, its texts encoded) and
joins a bounded queue (``max_queue`` texts). One batcher task takes the oldest request and every later
request with the *same parameters* (canonical JSON key, so options never mix) until ``max_batch_size``
texts or ``max_batch_tokens`` tokens are collected (text-embeddings-inference's token budget; a
request's tokens are those of its encodings, each text cut at the model's max length: the padded length
it will have) or the oldest request has waited ``max_wait_ms``; the batch's encodings then run as one
``pipe.run_prepared`` (sorted by token length into sub-batches of ``pipeline_batch_size``, so little
padding is run, and the caller's order is restored) in the model's worker thread (onnxruntime releases the GIL, so the event loop keeps
accepting meanwhile), and hands each request its own slice of the results, re-shaped by
``pipe.shape`` as a call with that request's inputs would have returned them and encoded as JSON bytes
(in the worker thread too, so a large result never blocks the loop). Calls for one model run one at a
time, so batches never compete for the cores. A batch that fails as a whole is rerun request by request,
so one bad input only fails its own request.

The batcher knows nothing of tasks: warm-up runs ``pipe.warm_up_text``, shaping is ``pipe.shape``, and
parameters are checked for their types (the task's options as a pydantic model,
:func:`bertrt.serve.schemas.parameters_model`), then by the pipeline's own validation on no texts.

A model whose warm-up fails is never served: it answers every request :class:`ModelUnavailable` (503),
never running it (``bertrt serve`` warms every model up before it opens its port, and refuses to start).

When a caller goes away (the client disconnected), :meth:`ModelWorker.abandon` drops its request: still
queued, it leaves the queue and never runs; running, its results are discarded. Both are counted
(``bertrt_disconnects_total{stage=queued|running}``).

Deadline: with ``request_timeout_s`` > 0, a request not answered that many seconds after it was queued
fails with :class:`DeadlineExceeded` (504). Still queued, it is taken out of the queue and never runs;
already running, its caller is answered at once, but the pipeline call itself cannot be interrupted
mid-batch: the model stays busy until the call ends, and the request's results are discarded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ..errors import InputError, ServeError
from ..results import to_jsonable
from .schemas import parameters_model, validation_message
from .settings import ServeSettings

if TYPE_CHECKING:
    from .metrics import Metrics

__all__ = [
    "SERVER_OPTIONS",
    "DeadlineExceeded",
    "Job",
    "ModelUnavailable",
    "ModelWorker",
    "parameters_key",
    "to_json_bytes",
]

log = logging.getLogger("bertrt.serve")

#: call options the server owns; a client may not set them
SERVER_OPTIONS = ("batch_size", "max_tokens_per_batch")
_INLINE_CHARS = 8192  # requests up to this many characters are prepared on the event loop, larger in a thread


class DeadlineExceeded(ServeError):
    """A request was not answered within ``request_timeout_s``; ``stage`` is "queued" or "running"."""

    def __init__(self, model: str, timeout_s: float, stage: str):
        self.model, self.timeout_s, self.stage = model, timeout_s, stage
        dropped = (
            "it was dropped from the queue unrun"
            if stage == "queued"
            else "its running batch cannot be interrupted; the results will be discarded"
        )
        super().__init__(
            f"model {model!r} did not answer within request_timeout_s={timeout_s:g} s: {dropped}"
        )


class ModelUnavailable(ServeError):
    """The model failed its warm-up, so it serves no request (the bundle is broken, not the request)."""


def parameters_key(params: dict) -> str:
    """Canonical JSON of ``params``: requests batch together only when their keys are equal.

    InputError for parameters JSON cannot hold or that nest too deep to canonicalise.
    """
    try:
        return json.dumps(params, sort_keys=True, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError) as exc:
        problem = "they nest too deep" if isinstance(exc, RecursionError) else str(exc)
        raise InputError(f"parameters cannot be written as canonical JSON: {problem}") from None


def to_json_bytes(value) -> bytes:
    """Compact UTF-8 JSON of a pipeline result; ValueError for what JSON cannot hold (NaN, ...)."""
    return json.dumps(to_jsonable(value), ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


@dataclass
class Job:
    """One accepted request waiting for (or in) a batch."""

    inputs: str | list  # as the caller gave them: ``pipe.shape`` re-shapes the results to match
    texts: list[str]
    params: dict
    key: str  # parameters_key(params)
    future: asyncio.Future  # JSON bytes of the result, or the exception that failed the request
    arrived: float  # loop time
    tokens: int = 0  # tokens of its texts, as counted for max_batch_tokens
    transform: Callable | None = None  # applied to the shaped result (worker thread), before JSON
    prepared: Any = None  # pipe.prepare(inputs, **params): the encoded texts the batch runs
    deadline: asyncio.TimerHandle | None = None  # fails it past request_timeout_s (None: no deadline)
    state: str = "queued"  # "queued", then "running" once taken into a batch
    expired: bool = False  # its deadline passed: the worker thread skips it (set on the loop, read there)


class ModelWorker:
    """The queue and batcher of one model; pipeline calls run one at a time in its own worker thread."""

    def __init__(self, name: str, pipe, settings: ServeSettings, metrics: Metrics):
        self.name = name
        self.pipe = pipe
        self.settings = settings
        self.metrics = metrics
        self.pending: deque[Job] = deque()
        self.queued_texts = 0
        self.texts_per_key: Counter = Counter()
        self.tokens_per_key: Counter = Counter()
        self.jobs: dict[asyncio.Future, Job] = {}  # every job not yet answered, by its future
        self.ready = False
        self.failed: str | None = None
        spec = getattr(pipe, "spec", None)
        #: the task's request parameters (pydantic), None for a pipe without a task spec
        self.parameters = parameters_model(spec) if spec is not None and hasattr(spec, "options") else None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"bertrt-{name}")
        self._wakeup: asyncio.Event | None = None
        self._task: asyncio.Task | None = None
        self._idle = True

    def describe(self) -> dict:
        """The model as ``GET /models`` lists it."""
        labels = [self.pipe.id2label[i] for i in sorted(self.pipe.id2label)] if self.pipe.id2label else []
        return {
            "name": self.name,
            "task": self.pipe.task,
            "labels": labels,
            "precision": self.pipe.precision,
            "model_file": self.pipe.bundle.model_path.name,
            "max_length": self.pipe.max_length,
            "ready": self.ready,
        }

    def check_parameters(self, params: dict) -> None:
        """InputError for unknown or bad options: their types (the task's :func:`parameters_model`), then
        the pipeline's own checks, on no texts (no model run)."""
        bad = [name for name in SERVER_OPTIONS if name in params]
        if bad:
            raise InputError(
                f"parameter(s) {', '.join(bad)} are set by the server (--max-batch-size), not per request"
            )
        if "inputs" in params:  # the call's own argument: Python would raise TypeError, not an InputError
            raise InputError("'inputs' is not a parameter: the texts go in the request's 'inputs' field")
        if self.parameters is not None:
            try:
                self.parameters.model_validate(params)
            except ValidationError as exc:
                raise InputError(validation_message(exc, self.parameters, params, "parameter")[0]) from None
        self.pipe([], **params)

    async def prepare(self, inputs, params: dict):
        """``pipe.prepare(inputs, **params)``: the request checked and its texts encoded, once (the token
        budget counts these encodings and the batch runs them). On the event loop for small inputs, in
        a thread for large ones; raises what the pipeline's checks raise (InputError: the caller's)."""
        texts = [inputs] if isinstance(inputs, (str, dict)) else inputs
        size = sum(len(t) if isinstance(t, str) else sum(map(len, t.values())) for t in texts)
        if size <= _INLINE_CHARS:
            return self.pipe.prepare(inputs, **params)
        return await asyncio.to_thread(self.pipe.prepare, inputs, **params)

    def submit(
        self,
        inputs: str | list,
        params: dict,
        tokens: int | None = None,
        transform: Callable | None = None,
        prepared: Any = None,
    ) -> asyncio.Future | None:
        """Queue a request (a str or a list of str); its future, or None when the queue has no room.

        ``prepared``: :meth:`prepare`'s result for it (prepared here, on the loop, when None). ``tokens``:
        its tokens for ``max_batch_tokens`` (default: those of its encodings, ``prepared.tokens``). The
        future fails with DeadlineExceeded once ``request_timeout_s`` passes without an answer.
        ``transform`` re-shapes the result (in the worker thread) before it is encoded.
        """
        texts = [inputs] if isinstance(inputs, (str, dict)) else list(inputs)
        if self.queued_texts + len(texts) > self.settings.max_queue:
            return None
        if prepared is None:
            prepared = self.pipe.prepare(inputs, **params)
        if tokens is None:
            tokens = prepared.tokens
        loop = asyncio.get_running_loop()
        job = Job(
            inputs,
            texts,
            params,
            parameters_key(params),
            loop.create_future(),
            loop.time(),
            tokens,
            transform,
            prepared,
        )
        self.pending.append(job)
        self.jobs[job.future] = job
        job.future.add_done_callback(self._forget)
        self.queued_texts += len(texts)
        self.texts_per_key[job.key] += len(texts)
        self.tokens_per_key[job.key] += tokens
        self.metrics.queue_depth.labels(self.name).set(self.queued_texts)
        timeout = self.settings.request_timeout_s
        if timeout > 0:
            job.deadline = loop.call_later(timeout, self.expire, job, timeout)
            job.future.add_done_callback(lambda _: job.deadline.cancel())
        if self._wakeup is not None:
            self._wakeup.set()
        return job.future

    def _forget(self, future: asyncio.Future) -> None:
        self.jobs.pop(future, None)

    def _dequeue(self, job: Job) -> None:
        """Account for ``job`` leaving the queue (the caller takes it out of ``pending``)."""
        self.queued_texts -= len(job.texts)
        self.texts_per_key[job.key] -= len(job.texts)
        self.tokens_per_key[job.key] -= job.tokens
        if self.texts_per_key[job.key] <= 0:
            del self.texts_per_key[job.key]
            self.tokens_per_key.pop(job.key, None)

    def abandon(self, future: asyncio.Future) -> str | None:
        """The caller of ``future`` went away: drop its request if still queued (it never runs), or discard
        its results if running; counted in ``bertrt_disconnects_total``. Where it was ("queued" or
        "running"), or None when it was already answered."""
        job = self.jobs.get(future)
        if job is None or future.done():
            return None
        stage = job.state
        job.expired = True
        if stage == "queued":
            self.pending.remove(job)
            self._dequeue(job)
            self.metrics.queue_depth.labels(self.name).set(self.queued_texts)
            if self._wakeup is not None:  # a batcher waiting for company of this job stops waiting
                self._wakeup.set()
        self.metrics.disconnects.labels(self.name, stage).inc()
        log.info("model %s: a client went away while its request was %s", self.name, stage)
        future.cancel()
        return stage

    def expire(self, job: Job, timeout: float) -> None:
        """The job's deadline passed (its timer calls this): drop it from the queue, or abandon its running
        call; answer 504."""
        if job.future.done():
            return
        job.expired = True
        if job.state == "queued":
            self.pending.remove(job)
            self._dequeue(job)
            self.metrics.queue_depth.labels(self.name).set(self.queued_texts)
            if self._wakeup is not None:  # a batcher waiting for company of this job stops waiting
                self._wakeup.set()
        self.metrics.timeouts.labels(self.name, job.state).inc()
        log.info("model %s: a request passed its %g s deadline while %s", self.name, timeout, job.state)
        job.future.set_exception(DeadlineExceeded(self.name, timeout, job.state))

    def start(self) -> None:
        """Start the batcher task on the running loop; it warms the model up first (unless already done)."""
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
                job.future.set_exception(
                    ServeError(f"model {self.name!r} stopped before running the request")
                )
        self.executor.shutdown(wait=True)

    def warm_up(self) -> None:
        """Run the warm-up calls (in the calling thread) and mark the model ready; raises what they raise.

        ``bertrt serve`` calls it before opening its port; the batcher then skips its own warm-up.
        """
        text = self.pipe.warm_up_text
        options = getattr(getattr(self.pipe, "spec", None), "warm_up_options", {})  # a bare pipe: none
        self.pipe(text, **options)
        self.pipe(
            [text] * min(self.settings.max_batch_size, 32),
            batch_size=self.settings.pipeline_batch_size,
            **options,
        )
        self.ready = True

    def unavailable(self) -> ModelUnavailable:
        """The error of every request to a model whose warm-up failed."""
        return ModelUnavailable(
            f"model {self.name!r} failed its warm-up ({self.failed}); it serves no requests: "
            f"the bundle is broken, not the request"
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        if not self.ready:
            try:
                await loop.run_in_executor(self.executor, self.warm_up)
                log.info("model %s warmed up", self.name)
            except Exception as exc:  # reported by /health; every request is refused (503), none runs
                self.failed = f"{type(exc).__name__}: {exc}"
                log.error("warm-up of model %s failed: %s", self.name, self.failed)
        while True:
            if not self.pending:
                self._idle = True
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            self._idle = False
            if self.failed:
                self._refuse_pending()
                continue
            batch = await self._collect()
            if batch:
                await self._execute(batch)

    def _refuse_pending(self) -> None:
        while self.pending:
            job = self.pending.popleft()
            self._dequeue(job)
            if not job.future.done():
                job.future.set_exception(self.unavailable())
        self.metrics.queue_depth.labels(self.name).set(self.queued_texts)

    async def _collect(self) -> list[Job]:
        """Wait for a full batch of the oldest request's parameters, or its wait limit; take that batch.

        Empty when the oldest request's own deadline passed meanwhile (it left the queue).
        """
        loop = asyncio.get_running_loop()
        first = self.pending[0]
        limit = self.settings.max_batch_size
        budget = self.settings.max_batch_tokens or float("inf")
        if self.settings.batching:
            deadline = first.arrived + self.settings.max_wait_ms / 1000.0
            while self.texts_per_key[first.key] < limit and self.tokens_per_key[first.key] < budget:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
                if first.expired:
                    return []
            batch, kept, total, tokens = [], deque(), 0, 0
            for job in self.pending:
                fits = total + len(job.texts) <= limit and tokens + job.tokens <= budget
                if job.key == first.key and (not batch or fits):
                    batch.append(job)
                    total += len(job.texts)
                    tokens += job.tokens
                else:
                    kept.append(job)
            self.pending = kept
        else:
            batch = [self.pending.popleft()]
        for job in batch:
            job.state = "running"
            self._dequeue(job)
        self.metrics.queue_depth.labels(self.name).set(self.queued_texts)
        return batch

    async def _execute(self, batch: list[Job]) -> None:
        loop = asyncio.get_running_loop()
        self.metrics.batch_texts.labels(self.name).observe(sum(len(job.texts) for job in batch))
        self.metrics.batch_requests.labels(self.name).observe(len(batch))
        self.metrics.batch_tokens.labels(self.name).observe(sum(job.tokens for job in batch))
        try:
            outcomes = await loop.run_in_executor(self.executor, self._infer, batch)
        except Exception as exc:  # the executor itself failed: fail the batch, keep serving
            outcomes = [exc] * len(batch)
        for job, outcome in zip(batch, outcomes):
            if job.future.done():  # the caller went away
                continue
            if isinstance(outcome, BaseException):
                job.future.set_exception(outcome)
            else:
                job.future.set_result(outcome)

    # worker thread ---------------------------------------------------------------------------------------
    def _infer(self, batch: list[Job]) -> list:
        """One pipeline run of the batch's prepared requests; JSON bytes (or the exception) per job.

        Jobs whose deadline passed before the call started are left out (their outcome is None: the
        caller has had its answer).
        """
        live = [job for job in batch if not job.expired]  # ``expired`` may turn True meanwhile: read once
        if len(live) < len(batch):
            ran = dict(zip(map(id, live), self._infer(live) if live else []))
            return [ran.get(id(job)) for job in batch]
        started = time.perf_counter()
        try:
            results = self.pipe.run_prepared(
                [job.prepared for job in batch], batch_size=self.settings.pipeline_batch_size
            )
        except Exception as exc:  # handed to the caller(s) as their error
            if len(batch) == 1:
                return [exc]
            log.info("batch of %d requests failed (%s); rerunning them one by one", len(batch), exc)
            return [self._infer([job])[0] for job in batch]
        finally:
            self.metrics.inference.labels(self.name).observe(time.perf_counter() - started)
        # an expired job's results are discarded unshaped
        return [None if job.expired else self._finish(job, r) for job, r in zip(batch, results)]

    def _finish(self, job: Job, results: list):
        """The job's results shaped as its own call would return them, as JSON bytes; or the exception."""
        try:
            shaped = self.pipe.shape(results, job.inputs, **job.params)
            if job.transform is not None:
                shaped = job.transform(shaped)
        except Exception as exc:  # handed to the caller as its error
            return exc
        try:
            return to_json_bytes(shaped)
        except (TypeError, ValueError, RecursionError) as exc:  # a result JSON cannot hold: a server fault
            return ServeError(f"cannot encode the result as JSON: {exc}")
