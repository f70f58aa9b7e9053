"""Requests and errors in process (the app over ASGI, fake pipelines): strict JSON, texts that are not
valid Unicode, the typed request, and which failure becomes which answer ({"error", "code"}).
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx
import pytest

from bertrt.errors import InputError, ServeError
from bertrt.serve import ServeSettings, create_app
from bertrt.serve.requests import MAX_JSON_DEPTH, HTTPProblem
from bertrt.serve.schemas import PredictRequest, parse_request
from bertrt.serve.service import problem_for
from tests.serve.fakes import (
    BrokenPipe,
    FakePipe,
    SlowPipe,
    client_of,
    over_http,
    post,
)


# -- the request: typed, strict JSON, valid Unicode -------------------------------------------------------
def test_parse_request_gives_a_typed_request():
    settings = ServeSettings()
    assert parse_request(b'{"inputs": "a"}', settings) == PredictRequest(inputs="a")
    parsed = parse_request(b'{"inputs": ["a", "b"], "parameters": {"top_k": 2}}', settings)
    assert parsed.texts == ["a", "b"] and parsed.parameters == {"top_k": 2}


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
            post(client, b'{"inputs": "x"}'),
            post(client, b'{"inputs": ["y", "\\udfff"]}'),
            post(client, b'{"inputs": "x", "parameters": {"upper": "\\ud83d"}}'),
        )

    good, bad, bad_param = over_http(pipe, calls)
    assert good.status_code == 200 and good.json() == {"one": {"text": "x"}}
    assert bad.status_code == 400 and bad.json()["code"] == "bad_input"
    assert "text at index 1 is not valid Unicode" in bad.json()["error"]
    assert bad_param.status_code == 400 and bad_param.json()["code"] == "bad_parameters"
    assert "'upper'" in bad_param.json()["error"] and "U+D83D" in bad_param.json()["error"]
    assert [texts for texts, _, _ in pipe.calls if texts != ["warm"] * len(texts)] == [["x"]]


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
        return await post(client, body), await post(client, b'{"inputs": "after"}')

    nested, after = over_http(FakePipe(), calls)
    assert nested.status_code == 400 and nested.json()["code"] == "malformed_json"
    assert after.status_code == 200


# -- which failure becomes which answer -------------------------------------------------------------------
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


def test_404_405_422_and_500_have_the_error_shape():
    app = create_app({"m": FakePipe()}, ServeSettings(max_wait_ms=0))

    @app.get("/typed")
    async def typed(n: int):  # a validated parameter: a bad one is FastAPI's RequestValidationError
        return {"n": n}

    def broken_describe():
        raise RuntimeError("describe broke")

    async def main():
        async with await client_of(app) as client:
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
        "request_id": crashed.headers["x-request-id"],  # every 500 names its request
    }


def test_a_model_whose_warm_up_failed_answers_503_never_blames_the_client():
    pipe = BrokenPipe()

    async def calls(client, app):
        return await client.get("/health"), await post(client, b'{"inputs": "x"}')

    health, predict = over_http(pipe, calls)
    assert health.status_code == 503 and health.json()["models"] == {"m": "failed"}
    assert "label id 3 is missing" in health.json()["errors"]["m"]
    assert predict.status_code == 503 and predict.json()["code"] == "model_unavailable"
    assert "failed its warm-up" in predict.json()["error"]
    assert [texts for texts, _, _ in pipe.calls if texts != ["warm"] * len(texts)] == []  # never run


def test_a_request_past_its_deadline_is_504_over_http():
    pipe = SlowPipe()

    async def calls(client, app):
        started = time.monotonic()
        response = await post(client, b'{"inputs": "slow"}')
        elapsed = time.monotonic() - started
        pipe.release.set()
        body, content_type = app.state.metrics.exposition()
        return response, elapsed, body.decode()

    response, elapsed, metrics = over_http(pipe, calls, ServeSettings(max_wait_ms=0, request_timeout_s=0.3))
    assert response.status_code == 504 and elapsed < 5
    payload = response.json()
    assert payload["code"] == "timeout" and payload["limit"] == "request_timeout_s" and payload["max"] == 0.3
    assert "request_timeout_s=0.3" in payload["error"]
    assert 'bertrt_errors_total{code="timeout",model="m"} 1.0' in metrics
    assert 'bertrt_timeouts_total{model="m",stage="running"} 1.0' in metrics
    assert 'bertrt_responses_total{model="m",status="504"} 1.0' in metrics
