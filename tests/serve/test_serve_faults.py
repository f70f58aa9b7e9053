"""Faults over real HTTP: a real uvicorn (the protocol and config ``bertrt serve`` runs) in a
thread of this process, on fake pipelines, driven by real clients (urllib, requests, httpx, raw sockets).

Oversized bodies answered 413 to every client; 100 clients that disconnect mid-flight (their work dropped
and counted, the server healthy, no queue entry left); slow-loris headers and bodies; the connection cap;
the API key; a crash answered 500 with its request id.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import httpx
import pytest
import requests
import uvicorn

from bertrt.errors import UsageError
from bertrt.serve import ServeSettings, add_arguments, create_app
from bertrt.serve.cli import api_key_from
from bertrt.serve.protocol import uvicorn_config
from tests.serve.fakes import FakePipe, SlowPipe


class ThreadServer:
    """``create_app(pipelines, settings)`` under uvicorn with ``bertrt serve``'s config, in a thread."""

    def __init__(self, pipelines: dict, settings: ServeSettings, api_key: str | None = None):
        self.app = create_app(pipelines, settings, api_key=api_key)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn_config(self.app, settings, log_level="warning"))
        self.thread = threading.Thread(target=lambda: self.server.run(sockets=[self.sock]), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.01)
        workers = self.app.state.workers.values()
        while not all(w.ready or w.failed for w in workers):
            time.sleep(0.01)

    def sample(self, name: str, **labels) -> float:
        return self.app.state.metrics.registry.get_sample_value(name, labels) or 0.0

    def stop(self):
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()


@pytest.fixture
def serve():
    started = []

    def start(pipelines, api_key=None, **settings):
        server = ThreadServer(pipelines, ServeSettings(**settings), api_key)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _raw_request(port: int, body: bytes, path: str = "/models/m/predict", extra: str = "") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{extra}\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _wait_for(condition, timeout: float = 20, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# -- 413 reaches every client -----------------------------------------------------------------------------
def test_an_oversized_body_is_a_413_for_urllib_requests_and_httpx(serve):
    srv = serve({"m": FakePipe()}, max_body_bytes=20_000)
    big = json.dumps({"inputs": "a" * (5 << 20)}).encode()  # 5 MB, declared in Content-Length
    url = f"{srv.url}/models/m/predict"
    with pytest.raises(urllib.error.HTTPError) as caught:  # the ConnectionResetError before the fix
        urllib.request.urlopen(
            urllib.request.Request(url, data=big, headers={"Content-Type": "application/json"})
        )
    assert caught.value.code == 413
    assert json.loads(caught.value.read())["code"] == "body_too_large"
    for _ in range(3):  # requests, several times (the reset was a race)
        response = requests.post(url, data=big, headers={"Content-Type": "application/json"}, timeout=30)
        assert response.status_code == 413 and response.json()["limit"] == "max_body_bytes"
        assert response.headers["connection"] == "close"

    def chunks():  # chunked: no Content-Length, the limit found while streaming
        for _ in range(50):
            yield b"a" * 100_000

    response = requests.post(url, data=chunks(), headers={"Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 413 and response.json()["code"] == "body_too_large"
    assert httpx.post(url, content=big, timeout=30).status_code == 413
    assert httpx.post(url, json={"inputs": "fine"}).json() == {"one": {"text": "fine"}}


# -- clients that go away ---------------------------------------------------------------------------------
def test_100_clients_that_disconnect_mid_flight_leave_a_healthy_server_and_consistent_metrics(serve):
    pipe = SlowPipe()
    srv = serve({"m": pipe}, max_wait_ms=0, max_queue=1024)
    worker = srv.app.state.workers["m"]
    running = _raw_request(srv.port, b'{"inputs": "slow"}')
    _wait_for(lambda: any(job.state == "running" for job in list(worker.jobs.values())), what="running")
    queued = [_raw_request(srv.port, json.dumps({"inputs": f"gone {i}"}).encode()) for i in range(99)]
    _wait_for(lambda: worker.queued_texts == 99, what="99 queued")
    for sock in [running, *queued]:
        sock.close()
    gone = lambda stage: srv.sample("bertrt_disconnects_total", model="m", stage=stage)  # noqa: E731
    _wait_for(lambda: gone("queued") == 99 and gone("running") == 1, what="100 disconnects counted")
    pipe.release.set()
    assert httpx.post(f"{srv.url}/models/m/predict", json={"inputs": "after"}).json() == {
        "one": {"text": "after"}
    }
    assert httpx.get(f"{srv.url}/health").status_code == 200
    ran = [text for texts, _, _ in pipe.calls for text in texts if text != "warm"]
    assert ran == ["slow", "after"]  # none of the 99 queued ones ran
    assert not worker.pending and worker.queued_texts == 0 and not worker.jobs and not worker.texts_per_key
    assert srv.sample("bertrt_queue_depth", model="m") == 0
    assert srv.sample("bertrt_requests_in_flight", model="m") == 0
    assert srv.sample("bertrt_requests_total", model="m") == 101
    assert srv.sample("bertrt_responses_total", model="m", status="499") == 100
    assert srv.sample("bertrt_responses_total", model="m", status="200") == 1


# -- slow clients -----------------------------------------------------------------------------------------
def test_slow_headers_and_slow_bodies_time_out_without_holding_up_others(serve):
    srv = serve({"m": FakePipe()}, header_timeout_s=0.5, body_timeout_s=0.5, max_wait_ms=0)
    idle = socket.create_connection(("127.0.0.1", srv.port))  # sends nothing at all
    loris = socket.create_connection(("127.0.0.1", srv.port))
    loris.sendall(b"POST /models/m/predict HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    answered_meanwhile = []
    closed_after = None
    for i in range(50):  # a header line every 0.1 s, for ever: the head never ends
        try:
            loris.sendall(f"X-Slow-{i}: 1\r\n".encode())
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.monotonic() - started
            break
        answered_meanwhile.append(httpx.post(f"{srv.url}/models/m/predict", json={"inputs": "x"}).status_code)
        time.sleep(0.1)
    assert closed_after is not None and 0.4 < closed_after < 2.0, closed_after  # trickling bought no time
    answer = _read_all(idle)
    assert answer.startswith(b"HTTP/1.1 408") and b'"code": "header_timeout"' in answer
    assert answered_meanwhile and set(answered_meanwhile) == {200}  # others were served meanwhile

    trickle = socket.create_connection(("127.0.0.1", srv.port))
    trickle.sendall(
        b"POST /models/m/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100\r\n\r\n" + b'{"inputs": "'
    )
    answer = _read_all(trickle)
    assert answer.startswith(b"HTTP/1.1 408") and b"body_timeout" in answer
    assert srv.sample("bertrt_slow_clients_total", stage="headers") == 2
    assert srv.sample("bertrt_slow_clients_total", stage="body") == 1
    assert httpx.get(f"{srv.url}/health").status_code == 200


def test_a_keep_alive_connection_gets_the_header_deadline_for_each_request(serve):
    srv = serve({"m": FakePipe()}, header_timeout_s=0.5, keep_alive_s=30, max_wait_ms=0)
    with httpx.Client(base_url=srv.url) as client:  # one connection, requests 0.3 s apart: all answered
        for _ in range(4):
            assert client.post("/models/m/predict", json={"inputs": "x"}).status_code == 200
            time.sleep(0.3)
    sock = _raw_request(srv.port, b'{"inputs": "x"}')
    time.sleep(0.2)
    sock.sendall(b"POST /models/m/predict HTTP/1.1\r\nHost: x\r\n")  # the next request's head never ends
    answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200") and b"HTTP/1.1 408" in answer


def test_connections_beyond_the_cap_get_503_and_the_server_recovers(serve):
    srv = serve({"m": FakePipe()}, max_connections=4, header_timeout_s=30, max_wait_ms=0)
    holders = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(4)]
    _wait_for(lambda: len(srv.server.server_state.connections) == 4, what="4 connections")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(
            urllib.request.Request(f"{srv.url}/models/m/predict", data=b'{"inputs": "x"}', method="POST")
        )
    assert caught.value.code == 503 and caught.value.headers["retry-after"] == "1"
    assert json.loads(caught.value.read())["code"] == "too_many_connections"
    assert srv.sample("bertrt_refused_connections_total") == 1
    for sock in holders:
        sock.close()
    _wait_for(lambda: len(srv.server.server_state.connections) == 0, what="connections closed")
    assert httpx.post(f"{srv.url}/models/m/predict", json={"inputs": "x"}).status_code == 200


# -- a crash is a 500 with an id --------------------------------------------------------------------------
def test_a_crash_is_a_500_naming_the_request_id_and_the_server_stays_healthy(serve, caplog):
    srv = serve({"m": FakePipe()}, max_wait_ms=0)
    crash = requests.post(
        f"{srv.url}/models/m/predict", json={"inputs": "crash"}, headers={"X-Request-ID": "abc-1"}
    )
    assert crash.status_code == 500
    assert crash.json()["request_id"] == "abc-1" == crash.headers["x-request-id"]
    assert any("request abc-1" in r.getMessage() for r in caplog.records)
    fine = requests.post(
        f"{srv.url}/models/m/predict", json={"inputs": "ok"}, headers={"X-Request-ID": "bad id!"}
    )
    assert fine.status_code == 200 and len(fine.headers["x-request-id"]) == 32  # an unusable id is replaced
    assert requests.get(f"{srv.url}/health").status_code == 200


# -- the API key ------------------------------------------------------------------------------------------
def test_the_api_key_guards_every_route_but_health(serve):
    srv = serve({"m": FakePipe()}, api_key="s3cret", max_wait_ms=0)
    url = f"{srv.url}/models/m/predict"
    missing = requests.post(url, json={"inputs": "x"})
    assert missing.status_code == 401 and missing.json()["code"] == "unauthorized"
    assert missing.headers["www-authenticate"] == "Bearer" and "missing" in missing.json()["error"]
    wrong = requests.post(url, json={"inputs": "x"}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "wrong" in wrong.json()["error"]
    assert (
        requests.post(url, json={"inputs": "x"}, headers={"Authorization": "Bearer s3cret"}).status_code
        == 200
    )
    assert requests.post(url, json={"inputs": "x"}, headers={"X-API-Key": "s3cret"}).status_code == 200
    assert requests.get(f"{srv.url}/metrics").status_code == 401
    assert requests.get(f"{srv.url}/health").status_code == 200  # liveness probes stay open
    big = json.dumps({"inputs": "a" * 500_000}).encode()  # a refused body is drained: urllib reads the 401
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(url, data=big))
    assert caught.value.code == 401


def test_binding_beyond_loopback_needs_a_key_unless_insecure(monkeypatch):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    monkeypatch.delenv("BERTRT_API_KEY", raising=False)
    assert api_key_from(parser.parse_args(["b"])) is None  # loopback: no key needed
    with pytest.raises(UsageError, match="--host 0.0.0.0 is reachable from other machines"):
        api_key_from(parser.parse_args(["b", "--host", "0.0.0.0"]))
    assert api_key_from(parser.parse_args(["b", "--host", "0.0.0.0", "--insecure"])) is None
    assert api_key_from(parser.parse_args(["b", "--host", "::", "--api-key", "k"])) == "k"
    monkeypatch.setenv("BERTRT_API_KEY", "from-env")
    assert api_key_from(parser.parse_args(["b", "--host", "0.0.0.0"])) == "from-env"
    monkeypatch.setenv("BERTRT_API_KEY", " ")
    with pytest.raises(UsageError, match="empty"):
        api_key_from(parser.parse_args(["b"]))
