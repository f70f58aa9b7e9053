"""Plain ASGI middleware of every request: its id, and the optional API key.

Request id: the client's ``X-Request-ID`` when it is 1-64 characters of ``[A-Za-z0-9._-]``, otherwise a
new random one; it is put in ``request.state.request_id``, sent back in the ``X-Request-ID`` header of
every answer, named in the body of a 500 and in the log line with its traceback.

API key (``bertrt serve --api-key`` or ``BERTRT_API_KEY``): every route but ``GET /health`` (liveness
probes carry no secrets) needs ``Authorization: Bearer KEY`` (what OpenAI's and text-embeddings-inference's
clients send) or ``X-API-Key: KEY``, compared in constant time (:func:`hmac.compare_digest`); otherwise
401 ``unauthorized`` with ``WWW-Authenticate: Bearer``. The refused request's body is read (bounded) and
discarded first, so the client sees the 401 instead of a reset socket.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import uuid

from .metrics import Metrics
from .requests import HTTPProblem
from .service import error_payload, style_of

__all__ = ["OPEN_PATHS", "RequestGuard", "discard_body", "send_json"]

#: paths served without the API key
OPEN_PATHS = frozenset({"/health"})

_ID = re.compile(rb"^[A-Za-z0-9._-]{1,64}$")


async def discard_body(receive, limit: int, timeout: float) -> None:
    """Read and drop the request body, at most ``limit`` bytes and ``timeout`` seconds."""

    async def drain():
        size, more = 0, True
        while more and size <= limit:
            message = await receive()
            if message["type"] != "http.request":
                return
            size += len(message.get("body", b""))
            more = message.get("more_body", False)

    try:
        await asyncio.wait_for(drain(), timeout)
    except asyncio.TimeoutError:
        pass


async def send_json(send, status: int, payload: dict, headers: list | tuple = ()) -> None:
    """Answer an ASGI request with ``payload`` as JSON (for answers given outside the app)."""
    body = json.dumps(payload).encode()
    head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


class RequestGuard:
    """ASGI middleware: request ids on every answer, and the API key check when ``api_key`` is set."""

    def __init__(
        self,
        app,
        metrics: Metrics,
        api_key: str | None = None,
        drain_bytes: int = 1 << 20,
        drain_timeout_s: float = 5.0,
    ):
        self.app = app
        self.metrics = metrics
        self.key = api_key.encode() if api_key else None
        self.drain_bytes, self.drain_timeout_s = drain_bytes, drain_timeout_s

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        given = headers.get(b"x-api-key")
        auth = headers.get(b"authorization", b"")
        if given is None and auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        # compare_digest on bytes: its time does not depend on where the strings first differ
        return given is not None and hmac.compare_digest(given, self.key)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or ())
        given = headers.get(b"x-request-id", b"")
        rid = given.decode() if _ID.match(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        id_header = (b"x-request-id", rid.encode())

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), id_header]}
            await send(message)

        if self.key is not None and scope.get("path") not in OPEN_PATHS and not self._authorized(headers):
            self.metrics.errors.labels("", "unauthorized").inc()
            await discard_body(receive, self.drain_bytes, self.drain_timeout_s)
            why = "missing" if b"authorization" not in headers and b"x-api-key" not in headers else "wrong"
            message = f"API key {why}: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'"
            problem = HTTPProblem(401, "unauthorized", message)
            payload = error_payload(problem, style_of(scope.get("path", "")))
            await send_json(send_with_id, 401, payload, [(b"www-authenticate", b"Bearer")])
            return None
        return await self.app(scope, receive, send_with_id)
