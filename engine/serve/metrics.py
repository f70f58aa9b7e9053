"""The server's Prometheus metrics, in a registry of their own per app (several apps never share counters)."""

from __future__ import annotations

import prometheus_client as prom

__all__ = ["Metrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10)


class Metrics:
    """Requests, responses, errors, timeouts, disconnects, slow or refused clients, queue depth, batch sizes
    (texts, requests, tokens) and latencies, labelled by model."""

    def __init__(self, max_batch_size: int):
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.requests = prom.Counter(
            "bertrt_requests", "Predict requests received, by model", ["model"], registry=r
        )
        self.responses = prom.Counter(
            "bertrt_responses", "Predict responses, by model and HTTP status", ["model", "status"], registry=r
        )
        self.errors = prom.Counter(
            "bertrt_errors",
            "Predict requests answered with an error, by model and code",
            ["model", "code"],
            registry=r,
        )
        self.timeouts = prom.Counter(
            "bertrt_timeouts",
            "Predict requests past their deadline (request_timeout_s), by model and where they were "
            "(queued: dropped unrun; running: answered at once, the call's results discarded)",
            ["model", "stage"],
            registry=r,
        )
        self.disconnects = prom.Counter(
            "bertrt_disconnects",
            "Predict requests whose client went away before the answer, by model and where they were "
            "(queued: dropped unrun; running: the call's results discarded)",
            ["model", "stage"],
            registry=r,
        )
        self.slow_clients = prom.Counter(
            "bertrt_slow_clients",
            "Connections closed (headers) or requests answered 408 (body) for not arriving in time",
            ["stage"],
            registry=r,
        )
        self.refused_connections = prom.Counter(
            "bertrt_refused_connections",
            "Connections answered 503 and closed because max_connections were open",
            registry=r,
        )
        self.queue_depth = prom.Gauge(
            "bertrt_queue_depth", "Texts waiting in the model's queue", ["model"], registry=r
        )
        self.in_flight = prom.Gauge(
            "bertrt_requests_in_flight", "Accepted predict requests not yet answered", ["model"], registry=r
        )
        buckets = sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, max_batch_size})
        token_buckets = (16, 64, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)

        def per_model(name: str, doc: str, bounds) -> prom.Histogram:
            return prom.Histogram(name, doc, ["model"], buckets=bounds, registry=r)

        self.batch_texts = per_model("bertrt_batch_texts", "Texts per pipeline call", buckets)
        self.batch_requests = per_model("bertrt_batch_requests", "Requests per pipeline call", buckets)
        self.batch_tokens = per_model(
            "bertrt_batch_tokens",
            "Tokens per pipeline call (as counted for --max-batch-tokens)",
            token_buckets,
        )
        self.latency = per_model(
            "bertrt_request_latency_seconds", "Predict latency in the server, by model", _LATENCY_BUCKETS
        )
        self.inference = per_model(
            "bertrt_inference_seconds", "Duration of one pipeline call", _LATENCY_BUCKETS
        )

    def exposition(self) -> tuple[bytes, str]:
        """The registry in Prometheus text format, and its content type."""
        return prom.generate_latest(self.registry), prom.CONTENT_TYPE_LATEST
