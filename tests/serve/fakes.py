"""The fake pipelines and helpers of the in-process serve tests (no model, no socket).

:class:`FakePipe` has a pipeline's surface as the server uses it (prepare, run_prepared, shape, warm-up);
:class:`SlowPipe` blocks a call until released and says when the call is entered (an event, never a
sleep); :class:`BrokenPipe` loads but fails every call. :func:`started` gives a worker whose warm-up is
over; :func:`over_http` runs calls against an app whose lifespan runs (ASGI, no socket).
"""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from types import SimpleNamespace

import httpx

from bertrt.errors import InputError
from bertrt.serve import ModelWorker, ServeSettings, create_app
from bertrt.serve.metrics import Metrics

__all__ = [
    "BrokenPipe",
    "FakePipe",
    "SlowPipe",
    "client_of",
    "json_results",
    "over_http",
    "post",
    "started_worker",
    "texts_per_call",
]


#: the options FakePipe accepts
OPTIONS = ("upper", "type_error")


class FakePipe:
    """A pipeline's surface as the server uses it; records every call with texts and every shape call.

    Text "bad" raises InputError (the caller's fault), "crash" RuntimeError (a bug); the option
    ``type_error`` makes the option check itself fail with a plain TypeError.
    """

    task = "fake-task"
    id2label = {0: "A", 1: "B"}
    precision = "fp32"
    max_length = 16
    bundle = SimpleNamespace(model_path=Path("model.onnx"))
    warm_up_text = "warm"

    def __init__(self, fail_warm_up: bool = False, shape_error: Exception | None = None):
        self.calls: list[tuple[list[str], int, dict]] = []
        self.prepared: list[list] = []  # the texts of every prepare call (a request's are prepared once)
        self.shaped: list[tuple[list, object, dict]] = []
        self.fail_warm_up = fail_warm_up
        self.shape_error = shape_error

    def __call__(self, inputs, batch_size: int = 32, **options):
        unknown = sorted(set(options) - set(OPTIONS))
        if unknown:
            raise InputError(f"unknown option(s) for {self.task}: {', '.join(unknown)}")
        if options.get("type_error"):
            raise TypeError("a bug in the option check")
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if not texts:
            return []
        self.calls.append((texts, batch_size, options))
        if self.fail_warm_up and "warm" in texts:
            raise RuntimeError("warm-up broke")
        if "bad" in texts:
            raise InputError("bad text in the input")
        if "crash" in texts:
            raise RuntimeError("the pipeline crashed")
        results = [{"text": text.upper() if options.get("upper") else text} for text in texts]
        return results[0] if isinstance(inputs, str) else results

    def prepare(self, inputs, **options):
        """The pipeline's first half: options checked, the texts "encoded" (tokens: the tokenizer's, when
        a test gives the pipe one, else 2 + characters / 4 per text)."""
        self([], **options)
        texts = [inputs] if isinstance(inputs, (str, dict)) else list(inputs)
        tokenizer = getattr(self, "tokenizer", None)
        if tokenizer is not None:
            pieces = [(t["text"], t["text_pair"]) if isinstance(t, dict) else t for t in texts]
            sequences = tokenizer.encode_batch(pieces, truncate=True) if pieces else []
        else:
            sequences = [
                [0] * (2 + len(t if isinstance(t, str) else "".join(t.values())) // 4) for t in texts
            ]
        self.prepared.append(texts)
        encoded = SimpleNamespace(sequences=sequences)
        return SimpleNamespace(
            inputs=inputs, texts=texts, options=options, encoded=encoded, tokens=sum(map(len, sequences))
        )

    def run_prepared(self, prepared: list, batch_size: int = 32):
        """The pipeline's second half: one call on every prepared request's texts, split per request."""
        texts = [t for p in prepared for t in p.texts]
        results = self(texts, batch_size, **prepared[0].options) if texts else []
        out, start = [], 0
        for p in prepared:
            out.append(results[start : start + len(p.texts)])
            start += len(p.texts)
        return out

    def shape(self, results: list, inputs, **options):
        self.shaped.append((results, inputs, options))
        if self.shape_error is not None:
            raise self.shape_error
        return {"one": results[0]} if isinstance(inputs, str) else results


class SlowPipe(FakePipe):
    """A FakePipe whose calls holding the text "slow" set :attr:`entered`, then block until :attr:`release`
    is set: a test waits for ``entered`` to know the call is running (an event, not a sleep)."""

    def __init__(self):
        super().__init__()
        self.entered = threading.Event()
        self.release = threading.Event()

    async def wait_entered(self) -> None:
        """Until a call holding "slow" is inside the pipeline."""
        if not await asyncio.to_thread(self.entered.wait, 60):
            raise TimeoutError("the slow call never reached the pipeline")

    def __call__(self, inputs, batch_size: int = 32, **options):
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if "slow" in texts:
            self.entered.set()
            self.release.wait(30)
        return super().__call__(inputs, batch_size, **options)


class BrokenPipe(FakePipe):
    """A bundle that loads but fails every call (e.g. an id2label with a hole) with an *input* error."""

    def __call__(self, inputs, batch_size: int = 32, **options):
        texts = [inputs] if isinstance(inputs, str) else list(inputs)
        if texts:
            self.calls.append((texts, batch_size, options))
            raise InputError("label id 3 is missing from id2label")
        return []


async def started_worker(pipe: FakePipe, **settings) -> ModelWorker:
    """A started worker whose warm-up is over; the pipe's records cleared."""
    worker = ModelWorker("m", pipe, ServeSettings(**settings), Metrics(32))
    worker.start()
    while not (worker.ready or worker.failed):
        await asyncio.sleep(0.001)
    pipe.calls.clear()
    pipe.shaped.clear()
    return worker


async def json_results(futures) -> list:
    return [json.loads(raw) for raw in await asyncio.gather(*futures)]


def texts_per_call(pipe: FakePipe) -> list[list[str]]:
    return [texts for texts, _, _ in pipe.calls]


async def client_of(app):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def over_http(pipe, calls, settings: ServeSettings | None = None, wait_ready: bool = True):
    """Run ``calls(client, app)`` (a coroutine function) against an app whose lifespan runs."""
    app = create_app({"m": pipe}, settings or ServeSettings(max_wait_ms=0))

    async def main():
        async with app.router.lifespan_context(app):
            async with await client_of(app) as client:
                worker = app.state.workers["m"]
                while wait_ready and not (worker.ready or worker.failed):
                    await asyncio.sleep(0.001)
                return await calls(client, app)

    return asyncio.run(main())


def post(client, body: bytes):
    return client.post("/models/m/predict", content=body, headers={"content-type": "application/json"})
