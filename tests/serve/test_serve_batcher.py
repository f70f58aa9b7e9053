"""The server's parts without a model or a socket: the batcher on a fake pipeline (plain asyncio), the
mapping of errors to HTTP answers (in process, over ASGI), and the CLI defaults read from ServeSettings.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

from bertrt.errors import InputError, ServeError
from bertrt.serve import ModelWorker, ServeSettings, add_arguments, create_app
from bertrt.serve.app import problem_for
from bertrt.serve.cli import settings_from_args
from bertrt.serve.metrics import Metrics
from bertrt.serve.schemas import PredictRequest, parse_request

_OPTIONS = ("upper", "type_error")


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
        unknown = sorted(set(options) - set(_OPTIONS))
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


async def _started(pipe: FakePipe, **settings) -> ModelWorker:
    """A started worker whose warm-up is over; the pipe's records cleared."""
    worker = ModelWorker("m", pipe, ServeSettings(**settings), Metrics(32))
    worker.start()
    while not (worker.ready or worker.failed):
        await asyncio.sleep(0.001)
    pipe.calls.clear()
    pipe.shaped.clear()
    return worker


async def _results(futures) -> list:
    return [json.loads(raw) for raw in await asyncio.gather(*futures)]


def _texts_per_call(pipe: FakePipe) -> list[list[str]]:
    return [texts for texts, _, _ in pipe.calls]


# -- the batcher ------------------------------------------------------------------------------------------
def test_warm_up_runs_the_pipelines_warm_up_text_single_and_batched():
    async def main():
        pipe = FakePipe()
        worker = ModelWorker("m", pipe, ServeSettings(max_batch_size=4, pipeline_batch_size=2), Metrics(4))
        worker.start()
        while not worker.ready:
            await asyncio.sleep(0.001)
        await worker.stop()
        return pipe.calls

    assert asyncio.run(main()) == [(["warm"], 32, {}), (["warm"] * 4, 2, {})]


def test_failed_warm_up_is_reported_and_no_request_runs():
    # issue 14: a model whose warm-up failed is broken; its requests are refused, not run and failed
    async def main():
        pipe = FakePipe(fail_warm_up=True)
        worker = await _started(pipe)
        assert not worker.ready and worker.failed == "RuntimeError: warm-up broke"
        outcome = (await asyncio.gather(worker.submit("a", {}), return_exceptions=True))[0]
        await worker.stop()
        return pipe, outcome

    pipe, outcome = asyncio.run(main())
    assert isinstance(outcome, ServeError) and "failed its warm-up (RuntimeError: warm-up broke)" in str(
        outcome
    )
    assert pipe.calls == []


def test_requests_batch_only_with_equal_parameters():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_wait_ms=50, pipeline_batch_size=3)
        futures = [
            worker.submit("a", {}),
            worker.submit(["b", "c"], {"upper": True}),
            worker.submit(["d"], {}),
            worker.submit("e", {"upper": True}),
        ]
        results = await _results(futures)
        await worker.stop()
        return pipe, results

    pipe, results = asyncio.run(main())
    assert pipe.calls == [(["a", "d"], 3, {}), (["b", "c", "e"], 3, {"upper": True})]
    assert results == [
        {"one": {"text": "a"}},
        [{"text": "B"}, {"text": "C"}],
        [{"text": "d"}],
        {"one": {"text": "E"}},
    ]


def test_a_full_batch_runs_at_once_and_never_exceeds_max_batch_size():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_batch_size=4, max_wait_ms=60_000)
        started = time.monotonic()
        futures = [worker.submit(f"t{i}", {}) for i in range(8)]
        await _results(futures)  # two full batches: neither waits for the (minute-long) deadline
        elapsed = time.monotonic() - started
        # a request larger than the rest of the batch waits for the next one; one larger than a batch runs alone
        worker.settings = dataclasses.replace(worker.settings, max_wait_ms=0)
        futures = [
            worker.submit(["a", "b", "c"], {}),
            worker.submit(["d", "e"], {}),
            worker.submit(["f", "g", "h", "i", "j"], {}),
        ]
        await _results(futures)
        await worker.stop()
        return pipe, elapsed

    pipe, elapsed = asyncio.run(main())
    assert elapsed < 30
    assert _texts_per_call(pipe) == [
        ["t0", "t1", "t2", "t3"],
        ["t4", "t5", "t6", "t7"],
        ["a", "b", "c"],
        ["d", "e"],
        ["f", "g", "h", "i", "j"],
    ]


def test_the_oldest_request_waits_at_most_max_wait_ms_for_company():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_wait_ms=150)
        started = time.monotonic()
        first = worker.submit("a", {})
        await asyncio.sleep(0.03)
        second = worker.submit("b", {})  # arrives within the first one's wait: joins its batch
        await _results([first, second])
        elapsed = time.monotonic() - started
        await worker.stop()
        return pipe, elapsed

    pipe, elapsed = asyncio.run(main())
    assert _texts_per_call(pipe) == [["a", "b"]]
    assert 0.14 <= elapsed < 10


def test_no_batching_runs_every_request_alone():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, batching=False, max_wait_ms=60_000)
        await _results([worker.submit("a", {}), worker.submit(["b", "c"], {}), worker.submit("d", {})])
        await worker.stop()
        return pipe

    assert _texts_per_call(asyncio.run(main())) == [["a"], ["b", "c"], ["d"]]


def test_submit_refuses_what_the_queue_has_no_room_for():
    async def main():
        pipe = FakePipe()
        worker = ModelWorker("m", pipe, ServeSettings(max_queue=3, max_texts=3, max_wait_ms=0), Metrics(32))
        accepted = [worker.submit(["a", "b"], {}), worker.submit(["c", "d"], {}), worker.submit("e", {})]
        depth = worker.metrics.registry.get_sample_value("bertrt_queue_depth", {"model": "m"})
        worker.start()
        results = await _results([f for f in accepted if f is not None])
        await worker.stop()
        return accepted, depth, results

    accepted, depth, results = asyncio.run(main())
    assert [f is not None for f in accepted] == [True, False, True]
    assert depth == 3
    assert results == [[{"text": "a"}, {"text": "b"}], {"one": {"text": "e"}}]


def test_a_failing_batch_is_rerun_request_by_request():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_wait_ms=50)
        futures = [worker.submit("x", {}), worker.submit(["bad", "y"], {}), worker.submit("z", {})]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        await worker.stop()
        return pipe, outcomes

    pipe, outcomes = asyncio.run(main())
    assert _texts_per_call(pipe) == [["x", "bad", "y", "z"], ["x"], ["bad", "y"], ["z"]]
    assert json.loads(outcomes[0]) == {"one": {"text": "x"}} and json.loads(outcomes[2]) == {
        "one": {"text": "z"}
    }
    assert isinstance(outcomes[1], InputError) and "bad text" in str(outcomes[1])


def test_results_are_shaped_by_the_pipeline_per_request():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_wait_ms=50)
        results = await _results(
            [
                worker.submit("a", {"upper": True}),
                worker.submit(["b", "c"], {"upper": True}),
                worker.submit([], {"upper": True}),
            ]
        )
        await worker.stop()
        return pipe, results

    pipe, results = asyncio.run(main())
    assert pipe.shaped == [
        ([{"text": "A"}], "a", {"upper": True}),
        ([{"text": "B"}, {"text": "C"}], ["b", "c"], {"upper": True}),
        ([], [], {"upper": True}),
    ]
    assert results == [{"one": {"text": "A"}}, [{"text": "B"}, {"text": "C"}], []]


def test_a_result_json_cannot_hold_is_a_serve_error():
    async def main():
        pipe = FakePipe()
        pipe.shape = lambda results, inputs, **options: {"score": float("nan")}
        worker = await _started(pipe)
        outcome = (await asyncio.gather(worker.submit("a", {}), return_exceptions=True))[0]
        await worker.stop()
        return outcome

    outcome = asyncio.run(main())
    assert isinstance(outcome, ServeError) and "cannot encode the result as JSON" in str(outcome)


def test_stop_runs_everything_still_queued():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_batch_size=2, max_wait_ms=100)
        futures = [worker.submit(f"t{i}", {}) for i in range(5)]
        await worker.stop()
        return pipe, futures, worker

    pipe, futures, worker = asyncio.run(main())
    assert all(f.done() and not f.exception() for f in futures)
    assert [json.loads(f.result()) for f in futures] == [{"one": {"text": f"t{i}"}} for i in range(5)]
    assert _texts_per_call(pipe) == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    assert worker.queued_texts == 0 and not worker.pending


def test_stop_without_a_batcher_fails_the_waiting_requests():
    async def main():
        worker = ModelWorker("m", FakePipe(), ServeSettings(), Metrics(32))
        future = worker.submit("a", {})
        await worker.stop()
        return future

    future = asyncio.run(main())
    assert isinstance(future.exception(), ServeError) and "stopped before running" in str(future.exception())


def test_check_parameters_uses_the_pipelines_validation():
    worker = ModelWorker("m", FakePipe(), ServeSettings(), Metrics(32))
    try:
        worker.check_parameters({"upper": True})
        with pytest.raises(InputError, match="set by the server"):
            worker.check_parameters({"batch_size": 4})
        with pytest.raises(InputError, match="'inputs' is not a parameter"):
            worker.check_parameters({"inputs": "x"})
        with pytest.raises(InputError, match="unknown option.*nope"):
            worker.check_parameters({"nope": 1})
        assert worker.describe() == {
            "name": "m",
            "task": "fake-task",
            "labels": ["A", "B"],
            "precision": "fp32",
            "model_file": "model.onnx",
            "max_length": 16,
            "ready": False,
        }
    finally:
        worker.executor.shutdown()


# -- errors as HTTP answers (in process) ------------------------------------------------------------------
def _serve(pipe: FakePipe, requests: list[dict]) -> list[httpx.Response]:
    """Post every body in turn to model "m" of an app whose lifespan (warm-up, batchers) runs."""
    app = create_app({"m": pipe}, ServeSettings(max_wait_ms=0))

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                while (await client.get("/health")).status_code != 200:
                    await asyncio.sleep(0.001)
                return [await client.post("/models/m/predict", json=body) for body in requests]

    return asyncio.run(main())


def test_a_bug_is_500_with_a_logged_trace_and_the_server_keeps_serving(caplog):
    caplog.set_level(logging.ERROR, logger="bertrt.serve")
    crash, after = _serve(FakePipe(), [{"inputs": "crash"}, {"inputs": "fine"}])
    assert crash.status_code == 500
    rid = crash.headers["x-request-id"]  # the 500 names its request id, in the body and the header
    assert crash.json() == {
        "error": "RuntimeError: the pipeline crashed",
        "code": "internal_error",
        "request_id": rid,
    }
    assert after.status_code == 200 and after.json() == {"one": {"text": "fine"}}
    assert after.headers["x-request-id"] != rid
    logged = [r for r in caplog.records if r.exc_info and r.exc_info[0] is RuntimeError]
    assert logged and f"request {rid}: model m failed it" in logged[0].getMessage()


def test_a_bertrt_error_is_400_with_its_message():
    bad, unknown, server_option = _serve(
        FakePipe(),
        [
            {"inputs": ["ok", "bad"]},
            {"inputs": "x", "parameters": {"nope": 1}},
            {"inputs": "x", "parameters": {"max_tokens_per_batch": 9}},
        ],
    )
    assert bad.status_code == 400 and bad.json() == {"error": "bad text in the input", "code": "bad_input"}
    assert unknown.status_code == 400 and unknown.json()["code"] == "bad_parameters"
    assert (
        unknown.json()["error"] == "invalid parameters for fake-task: unknown option(s) for fake-task: nope"
    )
    assert server_option.status_code == 400 and "set by the server" in server_option.json()["error"]


def test_a_bug_in_option_checking_or_shaping_is_500_not_400():
    (checking,) = _serve(FakePipe(), [{"inputs": "x", "parameters": {"type_error": True}}])
    assert checking.status_code == 500 and checking.json()["error"] == "TypeError: a bug in the option check"
    shaping, again = _serve(
        FakePipe(shape_error=ValueError("shape bug")), [{"inputs": "x"}, {"inputs": ["y"]}]
    )
    assert shaping.status_code == 500 and shaping.json() == {
        "error": "ValueError: shape bug",
        "code": "internal_error",
        "request_id": shaping.headers["x-request-id"],
    }
    assert again.status_code == 500


def test_problem_for_maps_the_error_tree():
    assert problem_for(InputError("no"), "m").status == 400
    assert problem_for(ServeError("stopped"), "m").payload() == {
        "error": "ServeError: stopped",
        "code": "internal_error",
    }
    assert problem_for(KeyError("k"), "m").status == 500


def test_parse_request_gives_a_typed_request():
    settings = ServeSettings()
    assert parse_request(b'{"inputs": "a"}', settings) == PredictRequest(inputs="a")
    parsed = parse_request(b'{"inputs": ["a", "b"], "parameters": {"top_k": 2}}', settings)
    assert parsed.texts == ["a", "b"] and parsed.parameters == {"top_k": 2}


# -- settings and the command line ------------------------------------------------------------------------
def test_cli_defaults_are_the_settings_defaults():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = ServeSettings()
    flagged = [f.name for f in dataclasses.fields(ServeSettings) if parser.get_default(f.name) is not None]
    assert set(flagged) == {f.name for f in dataclasses.fields(ServeSettings)} - {"retry_after_s"}
    for name in flagged:
        assert parser.get_default(name) == getattr(defaults, name), name
    assert settings_from_args(parser.parse_args(["bundle"])) == defaults
    given = parser.parse_args(["bundle", "--max-batch-size", "7", "--max-wait-ms", "0.5", "--no-batching"])
    assert settings_from_args(given) == dataclasses.replace(
        defaults, max_batch_size=7, max_wait_ms=0.5, batching=False
    )
    text = " ".join(parser.format_help().split())
    assert f"(default {defaults.max_batch_size})" in text and f"(default {defaults.max_queue})" in text


# -- issue 13: token-budget batching and abandoned requests ------------------------------------------------
def test_batches_are_cut_by_the_token_budget_as_well_as_by_count():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_wait_ms=100, max_batch_size=32, max_batch_tokens=10)
        futures = [worker.submit(f"t{i}", {}, tokens=4) for i in range(5)]  # 2 requests (8 tokens) fit
        futures.append(worker.submit(["big1", "big2"], {}, tokens=25))  # over the budget: runs alone
        await _results(futures)
        metrics = worker.metrics
        await worker.stop()
        return pipe, metrics

    pipe, metrics = asyncio.run(main())
    assert _texts_per_call(pipe) == [["t0", "t1"], ["t2", "t3"], ["t4"], ["big1", "big2"]]
    sample = metrics.registry.get_sample_value
    assert sample("bertrt_batch_tokens_sum", {"model": "m"}) == 8 + 8 + 4 + 25


def test_a_full_token_budget_ends_the_wait_at_once():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_wait_ms=5000, max_batch_size=32, max_batch_tokens=8)
        started = time.perf_counter()
        await _results([worker.submit("a", {}, tokens=4), worker.submit("b", {}, tokens=4)])
        elapsed = time.perf_counter() - started
        await worker.stop()
        return pipe, elapsed

    pipe, elapsed = asyncio.run(main())
    assert _texts_per_call(pipe) == [["a", "b"]] and elapsed < 2.0


def test_no_token_budget_batches_by_count_only():
    async def main():
        pipe = FakePipe()
        worker = await _started(pipe, max_wait_ms=50, max_batch_size=3, max_batch_tokens=0)
        await _results([worker.submit(f"t{i}", {}, tokens=10_000) for i in range(4)])
        await worker.stop()
        return pipe

    assert _texts_per_call(asyncio.run(main())) == [["t0", "t1", "t2"], ["t3"]]


def test_a_requests_tokens_are_those_of_its_encodings():
    class Tokenizer:
        def encode_batch(self, items, truncate=True):
            assert truncate  # the budget counts what the model sees: texts cut at its max length
            return [[0] * min(16, 2 + len(i if isinstance(i, str) else i[0] + i[1])) for i in items]

    async def main():
        pipe = FakePipe()
        worker = await _started(pipe)
        estimated = worker.submit(["abcdefgh", ""], {})  # no tokenizer: 2 + chars / 4
        first = worker.jobs[estimated].tokens
        pipe.tokenizer = Tokenizer()
        counted = worker.submit(["abc", "x" * 40, {"text": "ab", "text_pair": "cd"}], {})
        second = worker.jobs[counted].tokens
        await _results([estimated, counted])
        await worker.stop()
        return first, second

    assert asyncio.run(main()) == ((2 + 2) + 2, 5 + 16 + 6)


def test_an_abandoned_queued_request_never_runs_and_a_running_one_is_discarded():
    from tests.serve.test_reliability_serve import SlowPipe

    async def main():
        pipe = SlowPipe()
        worker = await _started(pipe, max_wait_ms=0)
        running = worker.submit("slow", {})
        await pipe.wait_entered()  # the call holding "slow" is inside the pipeline
        queued = [worker.submit(f"q{i}", {}) for i in range(3)]
        kept = worker.submit("kept", {})
        stages = [worker.abandon(f) for f in (running, *queued)]
        assert worker.abandon(running) is None  # already abandoned
        depth = worker.queued_texts
        pipe.release.set()
        assert json.loads(await kept) == {"one": {"text": "kept"}}
        while worker.jobs:
            await asyncio.sleep(0.001)
        await worker.stop()
        return pipe, worker, stages, depth, running

    pipe, worker, stages, depth, running = asyncio.run(main())
    assert stages == ["running", "queued", "queued", "queued"] and depth == 1
    assert running.cancelled()
    assert _texts_per_call(pipe) == [["slow"], ["kept"]]  # the queued ones never ran
    assert [r for r, _, _ in pipe.shaped] == [[{"text": "kept"}]]  # the running one's results discarded
    assert not worker.pending and worker.queued_texts == 0 and not worker.texts_per_key
    assert not worker.tokens_per_key and not worker.jobs
    sample = worker.metrics.registry.get_sample_value
    assert sample("bertrt_disconnects_total", {"model": "m", "stage": "queued"}) == 3
    assert sample("bertrt_disconnects_total", {"model": "m", "stage": "running"}) == 1
    assert sample("bertrt_queue_depth", {"model": "m"}) == 0


def test_settings_refuse_bad_fault_limits():
    problems = ServeSettings(
        header_timeout_s=0, body_timeout_s=float("nan"), max_batch_tokens=-1, max_connections=0
    ).problems()
    text = "; ".join(problems)
    for flag in ("--header-timeout", "--body-timeout", "--max-batch-tokens", "--max-connections"):
        assert flag in text, text
