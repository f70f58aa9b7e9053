"""``bertrt serve``: a real server subprocess on a free loopback port, driven with a real HTTP client.

Results are compared with direct pipeline calls at fp32 (the same bundle, in this process): labels,
words and offsets exactly, scores within 1e-4 (a batch pads texts to a common length, which moves fp32
scores by float rounding only). The default int8 recipe is batch-invariant too, but the older "dynamic"
recipe takes its activation scales from the whole batch, so fp32 keeps this test recipe-independent.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCORE_TOL = 1e-4

SENTENCES = [
    "Maria loves Groningen.",
    "Paris is in France and Berlin is in Germany",
    "the quick brown fox",
    "New York Times reporter John Smith visited Amsterdam on Monday",
    "x",
    "",
    "@user omg just landed in London !!! #travel",
    "Apple and Google compete in Silicon Valley",
]


class Server:
    """A ``bertrt serve`` subprocess; stderr is collected by a thread so the pipe never fills."""

    def __init__(self, models: list[str], *options: str):
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}
        cmd = [
            sys.executable,
            "-m",
            "bertrt.cli",
            "serve",
            *models,
            "--port",
            "0",
            "--precision",
            "fp32",
            "--threads",
            "1",
            *options,
        ]
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self.lines: list[str] = []
        self._port = threading.Event()
        self.url = None
        threading.Thread(target=self._read, daemon=True).start()
        if not self._port.wait(120) or self.url is None:
            self.stop()
            raise AssertionError(f"server did not start:\n{self.stderr}")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if httpx.get(f"{self.url}/health", timeout=5).status_code == 200:
                return
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"server never became healthy:\n{self.stderr}")

    def _read(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            found = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
            if found:
                self.url = found.group(1)
                self._port.set()
        self._port.set()

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def metrics(self) -> dict[str, float]:
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


def _post_all(url: str, requests: list[tuple[str, dict]], timeout: float = 120) -> list[httpx.Response]:
    """Send every (model, body) at once, on as many connections; responses in order."""

    async def main():
        limits = httpx.Limits(max_connections=len(requests), max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=timeout) as client:
            return await asyncio.gather(*(client.post(f"/models/{m}/predict", json=b) for m, b in requests))

    return asyncio.run(main())


def _served(model: str, inputs, result):
    """What /models/{name}/predict answers for a pipeline's ``result``: the Inference API's
    ``[[{label, score}, ...]]`` for one text of the classifier, else the pipeline's own shape."""
    if model == "cls" and isinstance(inputs, str):
        return [result if isinstance(result, list) else [result]]
    return result


def _assert_same(got, expected, where="result"):
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), f"{where}: {got} != {expected}"
        for key in expected:
            _assert_same(got[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, (list, tuple)):
        assert isinstance(got, list) and len(got) == len(expected), f"{where}: {got} != {expected}"
        for i, (g, e) in enumerate(zip(got, expected)):
            _assert_same(g, e, f"{where}[{i}]")
    elif isinstance(expected, float):
        assert abs(got - expected) <= SCORE_TOL, f"{where}: {got} != {expected}"
    else:
        assert got == expected, f"{where}: {got!r} != {expected!r}"


# -- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folders(tiny_bundle):
    return {
        "ner": tiny_bundle("bert", "token-classification"),
        "cls": tiny_bundle("bert", "text-classification"),
        "fill": tiny_bundle("bert", "fill-mask"),
    }


@pytest.fixture(scope="module")
def pipes(folders):
    import bertrt

    return {
        name: bertrt.pipeline(None, folder, precision="fp32", threads=1) for name, folder in folders.items()
    }


@pytest.fixture(scope="module")
def server(folders):
    models = [f"{name}={folder}" for name, folder in folders.items()]
    srv = Server(
        models,
        "--max-wait-ms",
        "20",
        "--max-batch-size",
        "16",
        "--max-body-bytes",
        "20000",
        "--max-texts",
        "8",
        "--max-chars",
        "300",
        "--max-queue",
        "2000",
    )
    yield srv
    srv.stop()


# -- endpoints --------------------------------------------------------------------------------------------
def test_health_models_openapi_docs(server, pipes):
    health = httpx.get(f"{server.url}/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "models": {"ner": "ready", "cls": "ready", "fill": "ready"}}

    listed = {m["name"]: m for m in httpx.get(f"{server.url}/models").json()["models"]}
    assert set(listed) == {"ner", "cls", "fill"}
    assert listed["ner"]["task"] == "token-classification"
    assert listed["ner"]["labels"] == [pipes["ner"].id2label[i] for i in sorted(pipes["ner"].id2label)]
    assert listed["cls"]["task"] == "text-classification"
    assert listed["cls"]["labels"] == ["negative", "neutral", "positive"]
    assert listed["fill"]["task"] == "fill-mask" and listed["fill"]["labels"] == []
    assert {m["precision"] for m in listed.values()} == {"fp32"}
    assert {m["model_file"] for m in listed.values()} == {"model.onnx"}

    spec = httpx.get(f"{server.url}/openapi.json").json()
    predict = spec["paths"]["/models/{name}/predict"]["post"]
    ref = predict["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schemas = spec["components"]["schemas"]
    assert "inputs" in schemas[ref.rsplit("/", 1)[-1]]["properties"]  # generated from the request model
    parameters = schemas["TokenClassificationParameters"]["properties"]  # from the task's options
    assert "simple" in parameters["aggregation_strategy"]["enum"]
    assert {"400", "404", "413", "422", "503"} <= set(predict["responses"])
    assert {"/health", "/models", "/metrics"} <= set(spec["paths"])
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_predict_single_and_list_equal_the_pipeline(server, pipes):
    cases = [
        ("ner", SENTENCES[1], {}),
        ("ner", SENTENCES[:4], {"aggregation_strategy": "simple"}),
        ("ner", SENTENCES[3], {"aggregation_strategy": "first", "ignore_labels": []}),
        ("cls", SENTENCES[0], {}),  # one text: the Inference API's [[{label, score}]]
        ("cls", SENTENCES[:3], {}),
        ("cls", SENTENCES[2], {"top_k": 2}),
        ("cls", SENTENCES[:2], {"top_k": None, "function_to_apply": "sigmoid"}),
        ("fill", "Maria [MASK] Groningen.", {"top_k": 3}),
        ("fill", ["Maria [MASK] Groningen.", "the [MASK] brown [MASK]"], {}),
        ("ner", [], {}),
    ]
    for model, inputs, params in cases:
        response = httpx.post(
            f"{server.url}/models/{model}/predict", json={"inputs": inputs, "parameters": params}
        )
        assert response.status_code == 200, response.text
        assert response.headers["content-type"] == "application/json"
        expected = _served(model, inputs, pipes[model](inputs, **params))
        _assert_same(response.json(), expected, f"{model}({inputs!r}, {params})")


def test_200_concurrent_requests_equal_direct_calls(server, pipes):
    before = server.metrics()
    ner_params = [{}, {"aggregation_strategy": "simple"}, {"aggregation_strategy": "max"}]
    cls_params = [{}, {"top_k": 2}]
    requests = []
    for i in range(200):
        texts = SENTENCES[i % len(SENTENCES) :][: 1 + i % 4]
        inputs = texts[0] if i % 3 == 0 else texts
        if i % 5 == 4:
            requests.append(("cls", {"inputs": inputs, "parameters": cls_params[i % 2]}))
        else:
            requests.append(("ner", {"inputs": inputs, "parameters": ner_params[i % 3]}))
    responses = _post_all(server.url, requests)
    assert [r.status_code for r in responses] == [200] * 200, [
        r.text for r in responses if r.status_code != 200
    ][:3]
    for (model, body), response in zip(requests, responses):
        expected = _served(model, body["inputs"], pipes[model](body["inputs"], **body["parameters"]))
        _assert_same(response.json(), expected, f"{model}({body})")

    after = server.metrics()
    ner_requests = sum(1 for m, _ in requests if m == "ner")
    ner_calls = (
        after['bertrt_batch_requests_count{model="ner"}'] - before['bertrt_batch_requests_count{model="ner"}']
    )
    assert (
        after['bertrt_requests_total{model="ner"}'] - before['bertrt_requests_total{model="ner"}']
        == ner_requests
    )
    assert (
        after['bertrt_responses_total{model="ner",status="200"}']
        - before['bertrt_responses_total{model="ner",status="200"}']
        == ner_requests
    )
    # micro-batching happened: fewer pipeline calls than requests, none over --max-batch-size texts
    assert ner_calls < ner_requests
    assert (
        after['bertrt_batch_texts_bucket{le="16.0",model="ner"}']
        == after['bertrt_batch_texts_count{model="ner"}']
    )
    assert after['bertrt_queue_depth{model="ner"}'] == 0
    assert after['bertrt_requests_in_flight{model="ner"}'] == 0
    assert after['bertrt_request_latency_seconds_count{model="ner"}'] >= ner_requests


def test_one_bad_input_fails_only_its_own_request(server, pipes):
    good = {"inputs": "Maria [MASK] Groningen.", "parameters": {"top_k": 2}}
    bad = {"inputs": "no mask token here", "parameters": {"top_k": 2}}
    requests = [("fill", good)] * 6 + [("fill", bad)] + [("fill", good)] * 6
    responses = _post_all(server.url, requests)
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 6 + [400] + [200] * 6
    assert "mask token" in responses[6].json()["error"] and responses[6].json()["code"] == "bad_input"
    expected = pipes["fill"](good["inputs"], top_k=2)
    for r in responses[:6] + responses[7:]:
        _assert_same(r.json(), expected)


@pytest.mark.parametrize(
    ("body", "status", "code", "needle"),
    [
        (b'{"inputs": "x",', 400, "malformed_json", "not valid JSON"),
        (b"[1, 2]", 400, "bad_request", "JSON object"),
        (b'{"parameters": {}}', 400, "bad_request", "missing field 'inputs'"),
        (b'{"inputs": "x", "options": {}}', 400, "bad_request", "unknown field(s) options"),
        (b'{"inputs": 3}', 400, "bad_request", "string or a list of strings"),
        (b'{"inputs": ["a", 3]}', 400, "bad_request", "index(es) 1"),
        (b'{"inputs": "x", "parameters": [1]}', 400, "bad_parameters", "JSON object"),
        (b'{"inputs": "x", "parameters": {"no_such_option": 1}}', 400, "bad_parameters", "no_such_option"),
        (b'{"inputs": "x", "parameters": {"aggregation_strategy": "bogus"}}', 400, "bad_parameters", "bogus"),
        (
            b'{"inputs": "x", "parameters": {"stride": -1, "aggregation_strategy": "simple"}}',
            400,
            "bad_parameters",
            "stride",
        ),
        (b'{"inputs": "x", "parameters": {"batch_size": 4}}', 400, "bad_parameters", "set by the server"),
        (json.dumps({"inputs": ["a"] * 9}).encode(), 422, "too_many_texts", "max_texts=8"),
        (json.dumps({"inputs": ["a", "b" * 301]}).encode(), 422, "text_too_long", "max_chars=300"),
        (json.dumps({"inputs": "a" * 20001}).encode(), 413, "body_too_large", "max_body_bytes=20000"),
    ],
)
def test_request_errors(server, body, status, code, needle):
    response = httpx.post(
        f"{server.url}/models/ner/predict", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["code"] == code
    assert needle in payload["error"]
    if status in (413, 422):
        assert (
            payload["limit"] in ("max_texts", "max_chars", "max_body_bytes")
            and payload["limit"] in payload["error"]
        )


def test_body_limit_applies_without_content_length(server):
    def chunks():  # chunked transfer: no Content-Length to check up front
        yield b'{"inputs": "'
        for _ in range(30):
            yield b"a" * 1000
        yield b'"}'

    response = httpx.post(
        f"{server.url}/models/ner/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413 and response.json()["limit"] == "max_body_bytes"


def test_unknown_model_and_error_metrics(server):
    before = server.metrics()
    response = httpx.post(f"{server.url}/models/nope/predict", json={"inputs": "x"})
    assert response.status_code == 404
    assert response.json()["code"] == "model_not_found" and response.json()["models"] == [
        "ner",
        "cls",
        "fill",
    ]
    httpx.post(f"{server.url}/models/cls/predict", json={"inputs": ["a"] * 9})
    after = server.metrics()
    key = 'bertrt_errors_total{code="model_not_found",model=""}'
    assert after[key] - before.get(key, 0) == 1
    key = 'bertrt_errors_total{code="too_many_texts",model="cls"}'
    assert after[key] - before.get(key, 0) == 1
    key = 'bertrt_responses_total{model="cls",status="422"}'
    assert after[key] - before.get(key, 0) == 1


# -- overload and SIGTERM ---------------------------------------------------------------------------------
def test_overload_gives_503_then_sigterm_drains_every_accepted_request(folders, pipes):
    # A long wait and a batch larger than the queue: requests sit in the queue, so the queue fills.
    srv = Server(
        [f"ner={folders['ner']}"],
        "--max-queue",
        "24",
        "--max-texts",
        "4",
        "--max-batch-size",
        "64",
        "--max-wait-ms",
        "2500",
    )
    try:
        responses = _post_all(srv.url, [("ner", {"inputs": s}) for s in SENTENCES * 5])
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}, statuses
        assert statuses.count(200) >= 24 and statuses.count(503) >= 1
        full = next(r for r in responses if r.status_code == 503)
        assert full.headers["retry-after"] == "1"
        assert full.json()["code"] == "queue_full" and full.json()["limit"] == "max_queue"
        for sentence, response in zip(SENTENCES * 5, responses):
            if response.status_code == 200:
                _assert_same(response.json(), pipes["ner"](sentence))
        assert srv.proc.poll() is None
        assert httpx.get(f"{srv.url}/health").status_code == 200

        # SIGTERM while 10 accepted requests (23 texts, all fit the queue) wait: every one is answered.
        base = srv.metrics()['bertrt_requests_total{model="ner"}']
        bodies = [{"inputs": SENTENCES[i % 8] if i % 2 else SENTENCES[i % 8 : i % 8 + 4]} for i in range(10)]
        assert sum(1 if isinstance(b["inputs"], str) else len(b["inputs"]) for b in bodies) <= 24
        results: list = []
        sender = threading.Thread(
            target=lambda: results.extend(_post_all(srv.url, [("ner", b) for b in bodies]))
        )
        sender.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            metrics = srv.metrics()
            if metrics['bertrt_requests_total{model="ner"}'] - base == len(bodies):
                break
            time.sleep(0.02)
        assert metrics['bertrt_queue_depth{model="ner"}'] > 0  # the drain has work to do
        srv.proc.send_signal(signal.SIGTERM)
        assert srv.proc.wait(60) == 0, srv.stderr
        sender.join(60)
        assert [r.status_code for r in results] == [200] * len(bodies)
        for body, response in zip(bodies, results):
            _assert_same(response.json(), pipes["ner"](body["inputs"]))
        assert "Traceback" not in srv.stderr
        with pytest.raises(httpx.ConnectError):  # no longer accepting
            httpx.get(f"{srv.url}/health", timeout=5)
    finally:
        srv.stop()


# -- in process -------------------------------------------------------------------------------------------
def test_health_is_503_until_warm_up(pipes):
    from bertrt.serve import create_app

    app = create_app({"ner": pipes["ner"]})  # lifespan not run: nothing warmed up

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/health")

    response = asyncio.run(main())
    assert response.status_code == 503
    assert response.json()["models"] == {"ner": "warming_up"}


def test_model_specs_settings_and_cli_errors(folders, capsys):
    from bertrt.cli import main
    from bertrt.errors import ServeError
    from bertrt.serve import ServeSettings, create_app, parse_model_specs

    assert parse_model_specs([str(folders["ner"]), f"other={folders['cls']}"]) == {
        folders["ner"].name: folders["ner"],
        "other": folders["cls"],
    }
    with pytest.raises(ServeError, match="used twice"):
        parse_model_specs([f"a={folders['ner']}", f"a={folders['cls']}"])
    with pytest.raises(ServeError, match="max-texts .* must not exceed --max-queue"):
        create_app({}, ServeSettings(max_texts=10, max_queue=5))
    assert main(["serve", "--port", "0", f"bad={folders['ner'].parent / 'missing'}"]) == 1
    err = capsys.readouterr().err
    assert "bertrt serve: error: model 'bad'" in err
    # a setting out of range is a usage error (exit 2)
    assert main(["serve", "--port", "0", "--max-batch-size", "0", str(folders["ner"])]) == 2
    assert "--max-batch-size must be > 0" in capsys.readouterr().err


def test_listening_socket_is_tcp_so_asyncio_sets_nodelay():
    import socket

    from bertrt.serve.cli import _bind

    # proto 0 would make asyncio skip TCP_NODELAY: every keep-alive response then waits ~40 ms for an ACK
    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert ipaddress_is_loopback(sock.getsockname()[0])
    finally:
        sock.close()


def ipaddress_is_loopback(host: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(host).is_loopback


def test_runtime_imports_without_the_server_stack():
    code = (
        "import sys, bertrt; bertrt.pipeline; import bertrt.pipelines, bertrt.cli; "
        "print(sorted(m for m in ('fastapi', 'uvicorn', 'prometheus_client', 'starlette', 'bertrt.serve') "
        "if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_a_new_task_is_served_with_its_own_parameters(folders):
    """The registry's toy task (tests/toy_task.py): served, typed and documented with no serve code."""
    import bertrt
    from bertrt import tasks
    from bertrt.serve import ServeSettings
    from tests.serve.fakes import over_http

    tasks.register_task("cls-logit", "tests.toy_task", aliases=("logits",), heads=("ForClsLogit",))
    try:
        pipe = bertrt.pipeline("cls-logit", folders["cls"], precision="fp32", threads=1)

        async def calls(client, app):
            good = await client.post(
                "/models/m/predict", json={"inputs": SENTENCES[:2], "parameters": {"scale": 2}}
            )
            one = await client.post("/models/m/predict", json={"inputs": SENTENCES[0]})
            typed = await client.post(
                "/models/m/predict", json={"inputs": "x", "parameters": {"scale": "big"}}
            )
            unknown = await client.post("/models/m/predict", json={"inputs": "x", "parameters": {"top_k": 1}})
            return good, one, typed, unknown, (await client.get("/openapi.json")).json()

        good, one, typed, unknown, spec = over_http(pipe, calls, ServeSettings(max_wait_ms=0))
        _assert_same(good.json(), pipe(SENTENCES[:2], scale=2))
        _assert_same(one.json(), pipe(SENTENCES[0]))  # not a classification: the pipeline's own shape
    finally:
        tasks.unregister_task("cls-logit")
    assert typed.status_code == 400 and typed.json()["code"] == "bad_parameters"
    assert "'scale'" in typed.json()["error"]
    assert (
        unknown.status_code == 400
        and "top_k" in unknown.json()["error"]
        and "scale" in unknown.json()["error"]
    )
    assert "scale" in spec["components"]["schemas"]["ClsLogitParameters"]["properties"]
