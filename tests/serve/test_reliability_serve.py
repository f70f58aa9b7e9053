"""Issue 14, the server's side: invalid text, pathological JSON, a model whose warm-up fails, port and
flag ranges, the error shape of every answer, and the per-request deadline.

All in process on fake pipelines (no model, no socket): the batcher in plain asyncio, the app over ASGI,
the command line through ``bertrt.cli.main``.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from bertrt.errors import InputError, ServeError
from bertrt.serve import ModelWorker, ServeSettings, create_app
from bertrt.serve.batcher import DeadlineExceeded, Job, ModelUnavailable, parameters_key
from bertrt.serve.metrics import Metrics
from bertrt.serve.requests import MAX_JSON_DEPTH, HTTPProblem
from bertrt.serve.schemas import parse_request
from tests.serve.test_serve_batcher import FakePipe, _started


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


async def _client_of(app):
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def _over_http(pipe, calls, settings: ServeSettings | None = None, wait_ready: bool = True):
    """Run ``calls(client, app)`` (a coroutine function) against an app whose lifespan runs."""
    app = create_app({"m": pipe}, settings or ServeSettings(max_wait_ms=0))

    async def main():
        async with app.router.lifespan_context(app):
            async with await _client_of(app) as client:
                worker = app.state.workers["m"]
                while wait_ready and not (worker.ready or worker.failed):
                    await asyncio.sleep(0.001)
                return await calls(client, app)

    return asyncio.run(main())


def _post(client, body: bytes):
    return client.post("/models/m/predict", content=body, headers={"content-type": "application/json"})


# -- item 4: a text that is not valid Unicode is refused before it is queued -------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"inputs": ["fine", "also fine", "bro\\ud800ken"]}',  # a JSON escape: a lone surrogate
        b'{"inputs": ["fine", "also fine", "bro\xed\xa0\x80ken"]}',  # the same surrogate, UTF-8-encoded
    ],
)
def test_a_lone_surrogate_is_400_naming_its_index(body):
    with pytest.raises(HTTPProblem) as caught:
        parse_request(body, ServeSettings())
    problem = caught.value
    assert problem.status == 400 and problem.code == "bad_input"
    assert "index 2" in problem.message and "U+D800" in problem.message and "character 3" in problem.message
    assert problem.payload()["indexes"] == [2]


def test_a_lone_surrogate_never_reaches_the_batch():
    pipe = FakePipe()

    async def calls(client, app):
        return await asyncio.gather(
            _post(client, b'{"inputs": "x"}'),
            _post(client, b'{"inputs": ["y", "\\udfff"]}'),
            _post(client, b'{"inputs": "x", "parameters": {"upper": "\\ud83d"}}'),
        )

    good, bad, bad_param = _over_http(pipe, calls)
    assert good.status_code == 200 and good.json() == {"one": {"text": "x"}}
    assert bad.status_code == 400 and bad.json()["code"] == "bad_input"
    assert "text at index 1 is not valid Unicode" in bad.json()["error"]
    assert bad_param.status_code == 400 and bad_param.json()["code"] == "bad_parameters"
    assert "'upper'" in bad_param.json()["error"] and "U+D83D" in bad_param.json()["error"]
    assert [texts for texts, _, _ in pipe.calls if texts != ["warm"] * len(texts)] == [["x"]]


# -- item 5: pathological JSON is a 400, never a 500 -------------------------------------------------------
def _nested(depth: int) -> bytes:
    return b'{"inputs": "x", "parameters": {"a": ' + b"[" * depth + b"]" * depth + b"}}"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (_nested(1000), f"more than {MAX_JSON_DEPTH} levels"),  # json.loads itself raises RecursionError
        (_nested(100_000), f"more than {MAX_JSON_DEPTH} levels"),
        (
            _nested(MAX_JSON_DEPTH),
            f"more than {MAX_JSON_DEPTH} levels",
        ),  # parses, but deeper than the limit
        (b'{"inputs": "x", "parameters": {"top_k": 1' + b"0" * 5000 + b"}}", "digits"),
        (b'{"inputs": "x", "parameters": {"top_k": NaN}}', "NaN"),
        (b'{"inputs": "x", "parameters": {"top_k": -Infinity}}', "-Infinity"),
        (b'{"inputs": "x", "parameters": {"top_k": 1e999}}', "1e999"),
    ],
)
def test_pathological_json_is_a_400(body, needle):
    with pytest.raises(HTTPProblem) as caught:
        parse_request(body, ServeSettings())
    assert caught.value.status == 400 and caught.value.code == "malformed_json"
    assert needle in caught.value.message


def test_nesting_up_to_the_limit_parses():
    body = b'{"inputs": "x", "parameters": {"a": ' + b"[" * (MAX_JSON_DEPTH - 2) + b"]" * (MAX_JSON_DEPTH - 2)
    parsed = parse_request(body + b"}}", ServeSettings())
    assert parsed.inputs == "x"


def test_a_2kb_body_of_1000_nested_arrays_is_400_over_http():
    body = _nested(1000)
    assert len(body) < 2100

    async def calls(client, app):
        return await _post(client, body), await _post(client, b'{"inputs": "after"}')

    nested, after = _over_http(FakePipe(), calls)
    assert nested.status_code == 400 and nested.json()["code"] == "malformed_json"
    assert after.status_code == 200


def test_parameters_key_refuses_what_json_cannot_canonicalise():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InputError, match="parameters"):
        parameters_key({"a": deep})
    with pytest.raises(InputError, match="parameters"):
        parameters_key({"a": object()})


# -- item 6: a model whose warm-up fails is never served ---------------------------------------------------
def test_serve_refuses_to_start_before_binding_when_warm_up_fails(monkeypatch, capsys, tmp_path):
    import bertrt.pipelines
    import bertrt.serve.cli
    from bertrt.cli import main

    bound = []

    def no_bind(host, port):
        bound.append((host, port))
        raise ServeError("the test stops here")

    monkeypatch.setattr(bertrt.pipelines, "pipeline", lambda *args, **kwargs: BrokenPipe())
    monkeypatch.setattr(bertrt.serve.cli, "_bind", no_bind)
    assert main(["serve", "--port", "0", f"m={tmp_path}"]) == 1
    err = capsys.readouterr().err
    assert "model 'm' failed its warm-up" in err and "label id 3 is missing" in err and "not starting" in err
    assert bound == []  # the port never opened


def test_a_model_whose_warm_up_failed_answers_503_never_blames_the_client():
    pipe = BrokenPipe()

    async def calls(client, app):
        return await client.get("/health"), await _post(client, b'{"inputs": "x"}')

    health, predict = _over_http(pipe, calls)
    assert health.status_code == 503 and health.json()["models"] == {"m": "failed"}
    assert "label id 3 is missing" in health.json()["errors"]["m"]
    assert predict.status_code == 503 and predict.json()["code"] == "model_unavailable"
    assert "failed its warm-up" in predict.json()["error"]
    assert [texts for texts, _, _ in pipe.calls if texts != ["warm"] * len(texts)] == []  # never run


def test_requests_queued_during_a_failing_warm_up_are_failed_not_run():
    async def main():
        pipe = BrokenPipe()
        worker = ModelWorker("m", pipe, ServeSettings(), Metrics(32))
        future = worker.submit("x", {})  # queued before the batcher (and its warm-up) started
        worker.start()
        outcome = (await asyncio.gather(future, return_exceptions=True))[0]
        await worker.stop()
        return pipe, outcome

    pipe, outcome = asyncio.run(main())
    assert isinstance(outcome, ModelUnavailable) and "failed its warm-up" in str(outcome)
    assert [texts for texts, _, _ in pipe.calls] == [["warm"]]


# -- item 8: ports and the other numeric flags are range-checked (usage errors: exit 2) --------------------
@pytest.mark.parametrize("port", ["70000", "-1", "65536"])
def test_a_port_out_of_range_is_a_usage_error(port, capsys):
    from bertrt.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["serve", "--port", port, "m=nowhere"])
    assert caught.value.code == 2
    assert f"--port: must be an integer in 0..65535, got {port}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--threads", "0"], "--threads: must be an integer >= 1, got 0"),
        (["--shutdown-timeout", "nan"], "--shutdown-timeout: must be a finite number >= 0, got nan"),
    ],
)
def test_other_flags_out_of_range_are_usage_errors(flags, needle, capsys):
    from bertrt.cli import main

    with pytest.raises(SystemExit) as caught:
        main(["serve", *flags, "m=nowhere"])
    assert caught.value.code == 2 and needle in capsys.readouterr().err


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--max-wait-ms", "nan"], "--max-wait-ms must be a finite number >= 0, got nan"),
        (["--max-wait-ms", "inf"], "--max-wait-ms must be a finite number >= 0, got inf"),
        (["--request-timeout", "-1"], "--request-timeout must be a finite number of seconds >= 0"),
        (["--max-queue", "0"], "--max-queue must be > 0, got 0"),
    ],
)
def test_settings_out_of_range_are_usage_errors(flags, needle, capsys):
    from bertrt.cli import main

    assert main(["serve", *flags, "m=nowhere"]) == 2
    assert needle in capsys.readouterr().err


def test_problems_check_every_numeric_setting():
    assert ServeSettings().problems() == []
    found = ServeSettings(
        max_wait_ms=float("nan"), request_timeout_s=float("inf"), retry_after_s=-1
    ).problems()
    assert len(found) == 3 and any("--request-timeout" in p for p in found)


# -- item 9: every error has bertrt's {"error", "code"} shape ---------------------------------------------
def test_404_405_422_and_500_have_the_error_shape():
    app = create_app({"m": FakePipe()}, ServeSettings(max_wait_ms=0))

    @app.get("/typed")
    async def typed(n: int):  # a validated parameter: a bad one is FastAPI's RequestValidationError
        return {"n": n}

    def broken_describe():
        raise RuntimeError("describe broke")

    async def main():
        async with await _client_of(app) as client:
            missing = await client.get("/no/such/route")
            wrong_method = await client.get("/models/m/predict")
            post_health = await client.post("/health")
            invalid = await client.get("/typed", params={"n": "x"})
            app.state.workers["m"].describe = broken_describe
            crashed = await client.get("/models")
            return missing, wrong_method, post_health, invalid, crashed

    missing, wrong_method, post_health, invalid, crashed = asyncio.run(main())
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert "/no/such/route" in missing.json()["error"] and "detail" not in missing.json()
    assert wrong_method.status_code == 405 and wrong_method.json()["code"] == "method_not_allowed"
    assert "GET" in wrong_method.json()["error"] and "POST" in wrong_method.headers["allow"]
    assert post_health.status_code == 405 and post_health.json()["code"] == "method_not_allowed"
    assert invalid.status_code == 422 and invalid.json()["code"] == "invalid_request"
    assert "'n'" in invalid.json()["error"] and "detail" not in invalid.json()
    assert crashed.status_code == 500 and crashed.json() == {
        "error": "RuntimeError: describe broke",
        "code": "internal_error",
        "request_id": crashed.headers["x-request-id"],  # issue 13: every 500 names its request
    }


# -- item 9: a per-request deadline answers 504 and drops the work -----------------------------------------
def test_a_running_request_past_its_deadline_is_answered_at_once_and_a_queued_one_is_never_run():
    async def main():
        pipe = SlowPipe()
        worker = await _started(pipe, batching=False, request_timeout_s=0.3)
        started = time.monotonic()
        running = worker.submit("slow", {})
        await pipe.wait_entered()
        queued = worker.submit("queued", {})
        outcomes = await asyncio.wait_for(asyncio.gather(running, queued, return_exceptions=True), 10)
        elapsed = time.monotonic() - started
        assert worker.queued_texts == 0 and not worker.pending
        pipe.release.set()  # the pipeline call ends: its results are discarded
        after = await asyncio.wait_for(worker.submit("after", {}), 10)
        await worker.stop()
        return pipe, worker, outcomes, elapsed, after

    pipe, worker, (running, queued), elapsed, after = asyncio.run(main())
    assert elapsed < 5  # answered when the deadline passed, not when the call ended (30 s)
    assert isinstance(running, DeadlineExceeded) and running.stage == "running"
    assert isinstance(queued, DeadlineExceeded) and queued.stage == "queued"
    assert "request_timeout_s=0.3" in str(running)
    assert [texts for texts, _, _ in pipe.calls] == [["slow"], ["after"]]  # "queued" never ran
    assert json.loads(after) == {"one": {"text": "after"}}
    sample = worker.metrics.registry.get_sample_value
    assert sample("bertrt_timeouts_total", {"model": "m", "stage": "running"}) == 1
    assert sample("bertrt_timeouts_total", {"model": "m", "stage": "queued"}) == 1


def test_a_deadline_passing_while_the_batch_fills_drops_the_job():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_wait_ms=60_000, request_timeout_s=0.2)
        started = time.monotonic()
        outcome = (
            await asyncio.wait_for(asyncio.gather(worker.submit("a", {}), return_exceptions=True), 10)
        )[0]
        elapsed = time.monotonic() - started
        await asyncio.sleep(0.05)
        idle = worker._idle
        worker.settings = ServeSettings(max_wait_ms=0, request_timeout_s=0.2)
        after = await asyncio.wait_for(worker.submit("b", {}), 10)
        await worker.stop()
        return pipe, outcome, elapsed, idle, after

    pipe, outcome, elapsed, idle, after = asyncio.run(main())
    assert isinstance(outcome, DeadlineExceeded) and outcome.stage == "queued"
    assert elapsed < 5 and idle  # the batcher stopped waiting for company of a dropped job
    assert [texts for texts, _, _ in pipe.calls] == [["b"]] and json.loads(after) == {"one": {"text": "b"}}


def test_a_job_expired_before_its_call_starts_is_left_out_of_the_call():
    async def main():
        pipe = FakePipe()
        worker = ModelWorker("m", pipe, ServeSettings(), Metrics(32))
        loop = asyncio.get_running_loop()
        jobs = [
            Job(t, [t], {}, "{}", loop.create_future(), loop.time(), prepared=pipe.prepare(t))
            for t in ("gone", "kept")
        ]
        jobs[0].expired = True
        outcomes = await loop.run_in_executor(worker.executor, worker._infer, jobs)
        worker.executor.shutdown()
        return pipe, outcomes

    pipe, outcomes = asyncio.run(main())
    assert [texts for texts, _, _ in pipe.calls] == [["kept"]]
    assert outcomes[0] is None and json.loads(outcomes[1]) == {"one": {"text": "kept"}}


def test_request_timeout_zero_disables_the_deadline():
    async def main():
        pipe = SlowPipe()
        worker = await _started(pipe, request_timeout_s=0)
        future = worker.submit("slow", {})
        await asyncio.sleep(0.3)
        assert not future.done()
        pipe.release.set()
        result = await asyncio.wait_for(future, 10)
        await worker.stop()
        return result

    assert json.loads(asyncio.run(main())) == {"one": {"text": "slow"}}


def test_a_request_past_its_deadline_is_504_over_http():
    pipe = SlowPipe()

    async def calls(client, app):
        started = time.monotonic()
        response = await _post(client, b'{"inputs": "slow"}')
        elapsed = time.monotonic() - started
        pipe.release.set()
        body, content_type = app.state.metrics.exposition()
        return response, elapsed, body.decode()

    response, elapsed, metrics = _over_http(pipe, calls, ServeSettings(max_wait_ms=0, request_timeout_s=0.3))
    assert response.status_code == 504 and elapsed < 5
    payload = response.json()
    assert payload["code"] == "timeout" and payload["limit"] == "request_timeout_s" and payload["max"] == 0.3
    assert "request_timeout_s=0.3" in payload["error"]
    assert 'bertrt_errors_total{code="timeout",model="m"} 1.0' in metrics
    assert 'bertrt_timeouts_total{model="m",stage="running"} 1.0' in metrics
    assert 'bertrt_responses_total{model="m",status="504"} 1.0' in metrics
