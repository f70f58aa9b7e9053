"""The HTTP connection side of ``bertrt serve``: uvicorn's h11 protocol with deadlines and a connection cap.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` (``keep_alive_s``) and caps a
request head's size (h11's 16 KiB), but it gives a client all the time it wants to send a request's
headers: a slow-loris client that trickles header bytes holds its connection forever. This protocol

- closes a connection whose request headers have not all arrived ``header_timeout_s`` after it opened
  (or after its previous answer), with a 408 JSON answer, counted in ``bertrt_slow_clients{stage=headers}``;
  a trickling *body* is the route's to time out (``body_timeout_s``, 408, in :func:`read_body`);
- answers a connection beyond ``max_connections`` open ones with a 503 JSON answer (``Retry-After``) after
  reading its request, and closes it, counted in ``bertrt_refused_connections``.

No thread or batcher worker is held by a slow client: connections live on the event loop, and a request
reaches its model's queue only once its body is complete.
"""

from __future__ import annotations

import json

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from .metrics import Metrics
from .middleware import discard_body, send_json
from .settings import ServeSettings

__all__ = ["guarded_protocol", "uvicorn_config"]


def _raw_answer(status: int, reason: str, payload: dict, extra: str = "") -> bytes:
    body = json.dumps(payload).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
        f"connection: close\r\n{extra}\r\n"
    )
    return head.encode() + body


def guarded_protocol(settings: ServeSettings, metrics: Metrics) -> type[H11Protocol]:
    """An H11Protocol class with the header deadline and the connection cap of ``settings``."""
    header_timeout = settings.header_timeout_s
    cap = settings.max_connections
    refusal = {
        "error": f"too many open connections (max_connections={cap}); retry later",
        "code": "too_many_connections",
        "limit": "max_connections",
        "max": cap,
    }

    async def refuse(scope, receive, send):  # the ASGI app of a connection beyond the cap
        await discard_body(receive, settings.max_body_bytes, 2.0)
        extra = [(b"retry-after", str(settings.retry_after_s).encode()), (b"connection", b"close")]
        await send_json(send, 503, refusal, extra)

    class GuardedH11Protocol(H11Protocol):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._header_timer = None
            self._waiting_cycle = None
            if len(self.connections) > cap:
                metrics.refused_connections.inc()
                self.app = refuse
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._waiting_cycle = self.cycle
            self._header_timer = self.loop.call_later(header_timeout, self._headers_late)

        def _disarm(self) -> None:
            if self._header_timer is not None:
                self._header_timer.cancel()
                self._header_timer = None

        def _headers_late(self) -> None:
            self._header_timer = None
            busy = self.cycle is not None and not self.cycle.response_complete
            if self.cycle is not self._waiting_cycle or busy or self.transport.is_closing():
                return  # a request started meanwhile
            metrics.slow_clients.labels("headers").inc()
            payload = {
                "error": f"the request headers did not arrive within header_timeout_s={header_timeout:g} s",
                "code": "header_timeout",
                "limit": "header_timeout_s",
                "max": header_timeout,
            }
            self.transport.write(_raw_answer(408, "Request Timeout", payload))
            self.transport.close()

        def handle_events(self) -> None:
            super().handle_events()
            if self._header_timer is not None and self.cycle is not self._waiting_cycle:
                self._disarm()  # the headers of a new request arrived

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self.cycle is not None and self._header_timer is None:
                self._arm()  # the next request's headers are due within header_timeout_s too

        def connection_lost(self, exc) -> None:
            self._disarm()
            super().connection_lost(exc)

    return GuardedH11Protocol


def uvicorn_config(app, settings: ServeSettings, **options) -> uvicorn.Config:
    """The uvicorn Config ``bertrt serve`` runs ``app`` with (tests run the same)."""
    return uvicorn.Config(
        app,
        http=guarded_protocol(settings, app.state.metrics),
        timeout_keep_alive=settings.keep_alive_s,
        lifespan="on",
        **options,
    )
