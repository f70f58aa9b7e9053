"""The batcher (:class:`bertrt.serve.ModelWorker`) in plain asyncio on fake pipelines: warm-up, batching by
parameters, count and tokens, the queue, failing batches, shaping, stopping, deadlines and abandoned
requests. Waits are on events and futures, never on sleeps or elapsed time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time

import pytest

from bertrt.errors import InputError, ServeError
from bertrt.serve import ModelWorker, ServeSettings
from bertrt.serve.batcher import DeadlineExceeded, Job, ModelUnavailable, parameters_key
from bertrt.serve.metrics import Metrics
from tests.serve.fakes import (
    BrokenPipe,
    FakePipe,
    SlowPipe,
    json_results,
    started_worker,
    texts_per_call,
)


# -- warm-up ----------------------------------------------------------------------------------------------
def test_warm_up_runs_the_pipelines_warm_up_text_single_and_batched():
    async def main():
        pipe = FakePipe()
        worker = ModelWorker("m", pipe, ServeSettings(max_batch_size=4, pipeline_batch_size=2), Metrics(4))
        worker.start()
        while not (worker.ready or worker.failed):  # bounded: a failed warm-up ends it too
            await asyncio.sleep(0.001)
        await worker.stop()
        return pipe.calls

    assert asyncio.run(main()) == [(["warm"], 32, {}), (["warm"] * 4, 2, {})]


def test_failed_warm_up_is_reported_and_no_request_runs():
    # a model whose warm-up failed is broken: its requests are refused, not run and failed
    async def main():
        pipe = FakePipe(fail_warm_up=True)
        worker = await started_worker(pipe)
        assert not worker.ready and worker.failed == "RuntimeError: warm-up broke"
        outcome = (await asyncio.gather(worker.submit("a", {}), return_exceptions=True))[0]
        await worker.stop()
        return pipe, outcome

    pipe, outcome = asyncio.run(main())
    assert isinstance(outcome, ServeError) and "failed its warm-up (RuntimeError: warm-up broke)" in str(
        outcome
    )
    assert pipe.calls == []


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


# -- batching: equal parameters, max_batch_size, max_wait_ms, the token budget ----------------------------
def test_requests_batch_only_with_equal_parameters():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_wait_ms=50, pipeline_batch_size=3)
        futures = [
            worker.submit("a", {}),
            worker.submit(["b", "c"], {"upper": True}),
            worker.submit(["d"], {}),
            worker.submit("e", {"upper": True}),
        ]
        results = await json_results(futures)
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


def test_parameters_key_refuses_what_json_cannot_canonicalise():
    deep: list = []
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(InputError, match="parameters"):
        parameters_key({"a": deep})
    with pytest.raises(InputError, match="parameters"):
        parameters_key({"a": object()})


def test_a_full_batch_runs_at_once_and_never_exceeds_max_batch_size():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_batch_size=4, max_wait_ms=60_000)
        started = time.monotonic()
        futures = [worker.submit(f"t{i}", {}) for i in range(8)]
        await json_results(futures)  # two full batches: neither waits for the (minute-long) deadline
        elapsed = time.monotonic() - started
        # a request larger than the rest of the batch waits for the next one; one larger than a batch runs alone
        worker.settings = dataclasses.replace(worker.settings, max_wait_ms=0)
        futures = [
            worker.submit(["a", "b", "c"], {}),
            worker.submit(["d", "e"], {}),
            worker.submit(["f", "g", "h", "i", "j"], {}),
        ]
        await json_results(futures)
        await worker.stop()
        return pipe, elapsed

    pipe, elapsed = asyncio.run(main())
    assert elapsed < 30
    assert texts_per_call(pipe) == [
        ["t0", "t1", "t2", "t3"],
        ["t4", "t5", "t6", "t7"],
        ["a", "b", "c"],
        ["d", "e"],
        ["f", "g", "h", "i", "j"],
    ]


def test_the_oldest_request_waits_at_most_max_wait_ms_for_company():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_wait_ms=150)
        started = time.monotonic()
        first = worker.submit("a", {})
        second = worker.submit("b", {})  # arrives within the first one's wait: joins its batch
        await json_results([first, second])
        elapsed = time.monotonic() - started
        await worker.stop()
        return pipe, elapsed

    pipe, elapsed = asyncio.run(main())
    assert texts_per_call(pipe) == [["a", "b"]]
    assert elapsed >= 0.14  # the batch (2 of max_batch_size 32) waited for company, max_wait_ms long


def test_no_batching_runs_every_request_alone():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, batching=False, max_wait_ms=60_000)
        await json_results([worker.submit("a", {}), worker.submit(["b", "c"], {}), worker.submit("d", {})])
        await worker.stop()
        return pipe

    assert texts_per_call(asyncio.run(main())) == [["a"], ["b", "c"], ["d"]]


def test_batches_are_cut_by_the_token_budget_as_well_as_by_count():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_wait_ms=100, max_batch_size=32, max_batch_tokens=10)
        futures = [worker.submit(f"t{i}", {}, tokens=4) for i in range(5)]  # 2 requests (8 tokens) fit
        futures.append(worker.submit(["big1", "big2"], {}, tokens=25))  # over the budget: runs alone
        await json_results(futures)
        metrics = worker.metrics
        await worker.stop()
        return pipe, metrics

    pipe, metrics = asyncio.run(main())
    assert texts_per_call(pipe) == [["t0", "t1"], ["t2", "t3"], ["t4"], ["big1", "big2"]]
    sample = metrics.registry.get_sample_value
    assert sample("bertrt_batch_tokens_sum", {"model": "m"}) == 8 + 8 + 4 + 25


def test_a_full_token_budget_ends_the_wait_at_once():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_wait_ms=5000, max_batch_size=32, max_batch_tokens=8)
        started = time.perf_counter()
        await json_results([worker.submit("a", {}, tokens=4), worker.submit("b", {}, tokens=4)])
        elapsed = time.perf_counter() - started
        await worker.stop()
        return pipe, elapsed

    pipe, elapsed = asyncio.run(main())
    assert texts_per_call(pipe) == [["a", "b"]] and elapsed < 2.0


def test_no_token_budget_batches_by_count_only():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_wait_ms=50, max_batch_size=3, max_batch_tokens=0)
        await json_results([worker.submit(f"t{i}", {}, tokens=10_000) for i in range(4)])
        await worker.stop()
        return pipe

    assert texts_per_call(asyncio.run(main())) == [["t0", "t1", "t2"], ["t3"]]


def test_a_requests_tokens_are_those_of_its_encodings():
    class Tokenizer:
        def encode_batch(self, items, truncate=True):
            assert truncate  # the budget counts what the model sees: texts cut at its max length
            return [[0] * min(16, 2 + len(i if isinstance(i, str) else i[0] + i[1])) for i in items]

    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe)
        estimated = worker.submit(["abcdefgh", ""], {})  # no tokenizer: 2 + chars / 4
        first = worker.jobs[estimated].tokens
        pipe.tokenizer = Tokenizer()
        counted = worker.submit(["abc", "x" * 40, {"text": "ab", "text_pair": "cd"}], {})
        second = worker.jobs[counted].tokens
        await json_results([estimated, counted])
        await worker.stop()
        return first, second

    assert asyncio.run(main()) == ((2 + 2) + 2, 5 + 16 + 6)


# -- the queue, failures, shaping, stopping ---------------------------------------------------------------
def test_submit_refuses_what_the_queue_has_no_room_for():
    async def main():
        pipe = FakePipe()
        worker = ModelWorker("m", pipe, ServeSettings(max_queue=3, max_texts=3, max_wait_ms=0), Metrics(32))
        accepted = [worker.submit(["a", "b"], {}), worker.submit(["c", "d"], {}), worker.submit("e", {})]
        depth = worker.metrics.registry.get_sample_value("bertrt_queue_depth", {"model": "m"})
        worker.start()
        results = await json_results([f for f in accepted if f is not None])
        await worker.stop()
        return accepted, depth, results

    accepted, depth, results = asyncio.run(main())
    assert [f is not None for f in accepted] == [True, False, True]
    assert depth == 3
    assert results == [[{"text": "a"}, {"text": "b"}], {"one": {"text": "e"}}]


def test_a_failing_batch_is_rerun_request_by_request():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_wait_ms=50)
        futures = [worker.submit("x", {}), worker.submit(["bad", "y"], {}), worker.submit("z", {})]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        await worker.stop()
        return pipe, outcomes

    pipe, outcomes = asyncio.run(main())
    assert texts_per_call(pipe) == [["x", "bad", "y", "z"], ["x"], ["bad", "y"], ["z"]]
    assert json.loads(outcomes[0]) == {"one": {"text": "x"}} and json.loads(outcomes[2]) == {
        "one": {"text": "z"}
    }
    assert isinstance(outcomes[1], InputError) and "bad text" in str(outcomes[1])


def test_results_are_shaped_by_the_pipeline_per_request():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_wait_ms=50)
        results = await json_results(
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
        worker = await started_worker(pipe)
        outcome = (await asyncio.gather(worker.submit("a", {}), return_exceptions=True))[0]
        await worker.stop()
        return outcome

    outcome = asyncio.run(main())
    assert isinstance(outcome, ServeError) and "cannot encode the result as JSON" in str(outcome)


def test_stop_runs_everything_still_queued():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_batch_size=2, max_wait_ms=100)
        futures = [worker.submit(f"t{i}", {}) for i in range(5)]
        await worker.stop()
        return pipe, futures, worker

    pipe, futures, worker = asyncio.run(main())
    assert all(f.done() and not f.exception() for f in futures)
    assert [json.loads(f.result()) for f in futures] == [{"one": {"text": f"t{i}"}} for i in range(5)]
    assert texts_per_call(pipe) == [["t0", "t1"], ["t2", "t3"], ["t4"]]
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


# -- deadlines (request_timeout_s) and abandoned requests -------------------------------------------------
def test_a_running_request_past_its_deadline_is_answered_at_once_and_a_queued_one_is_never_run():
    async def main():
        pipe = SlowPipe()
        worker = await started_worker(pipe, batching=False, request_timeout_s=30)
        running = worker.submit("slow", {})
        await pipe.wait_entered()
        queued = worker.submit("queued", {})
        armed = [worker.jobs[f].deadline.when() - worker.jobs[f].arrived for f in (running, queued)]
        for future in (running, queued):  # their deadlines pass: what each one's timer calls
            worker.expire(worker.jobs[future], 30)
        outcomes = await asyncio.gather(running, queued, return_exceptions=True)  # before the call ends
        assert worker.queued_texts == 0 and not worker.pending
        pipe.release.set()  # the pipeline call ends: its results are discarded
        after = await asyncio.wait_for(worker.submit("after", {}), 60)
        await worker.stop()
        return pipe, worker, outcomes, armed, after

    pipe, worker, (running, queued), armed, after = asyncio.run(main())
    assert armed == [pytest.approx(30, abs=1)] * 2  # each request's timer: request_timeout_s after arrival
    assert isinstance(running, DeadlineExceeded) and running.stage == "running"
    assert isinstance(queued, DeadlineExceeded) and queued.stage == "queued"
    assert "request_timeout_s=30" in str(running)
    assert [texts for texts, _, _ in pipe.calls] == [["slow"], ["after"]]  # "queued" never ran
    assert json.loads(after) == {"one": {"text": "after"}}
    sample = worker.metrics.registry.get_sample_value
    assert sample("bertrt_timeouts_total", {"model": "m", "stage": "running"}) == 1
    assert sample("bertrt_timeouts_total", {"model": "m", "stage": "queued"}) == 1


def test_a_deadline_passing_while_the_batch_fills_drops_the_job():
    async def main():
        pipe = FakePipe()
        worker = await started_worker(pipe, max_wait_ms=600_000, request_timeout_s=600)
        future = worker.submit("a", {})
        while not worker.pending or worker._idle:  # the batcher is waiting for company of "a"
            await asyncio.sleep(0)
        worker.expire(worker.jobs[future], 600)  # its deadline passes (what its timer calls)
        outcome = (await asyncio.gather(future, return_exceptions=True))[0]
        while not worker._idle:  # the batcher stops waiting for company of a dropped job
            await asyncio.sleep(0)
        worker.settings = ServeSettings(max_wait_ms=0)
        after = await asyncio.wait_for(worker.submit("b", {}), 60)
        await worker.stop()
        return pipe, outcome, after

    pipe, outcome, after = asyncio.run(main())
    assert isinstance(outcome, DeadlineExceeded) and outcome.stage == "queued"
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
        worker = await started_worker(pipe, request_timeout_s=0)
        future = worker.submit("slow", {})
        armed = worker.jobs[future].deadline
        await pipe.wait_entered()
        pipe.release.set()
        result = await asyncio.wait_for(future, 60)
        await worker.stop()
        return armed, result

    armed, result = asyncio.run(main())
    assert armed is None and json.loads(result) == {"one": {"text": "slow"}}  # no timer, so never a 504


def test_an_abandoned_queued_request_never_runs_and_a_running_one_is_discarded():
    async def main():
        pipe = SlowPipe()
        worker = await started_worker(pipe, max_wait_ms=0)
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
    assert texts_per_call(pipe) == [["slow"], ["kept"]]  # the queued ones never ran
    assert [r for r, _, _ in pipe.shaped] == [[{"text": "kept"}]]  # the running one's results discarded
    assert not worker.pending and worker.queued_texts == 0 and not worker.texts_per_key
    assert not worker.tokens_per_key and not worker.jobs
    sample = worker.metrics.registry.get_sample_value
    assert sample("bertrt_disconnects_total", {"model": "m", "stage": "queued"}) == 3
    assert sample("bertrt_disconnects_total", {"model": "m", "stage": "running"}) == 1
    assert sample("bertrt_queue_depth", {"model": "m"}) == 0
