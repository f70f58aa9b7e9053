"""``bertrt serve``: bundles over HTTP with dynamic micro-batching (extra ``bertrt[serve]``).

This package is the only place that imports fastapi, uvicorn and prometheus_client; ``bertrt`` never
imports it, so the runtime installs and imports without them.

- :mod:`.settings`  ServeSettings: batching knobs and request limits, the one source of their defaults
- :mod:`.batcher`   ModelWorker: one model's queue, micro-batcher and worker thread (plain asyncio)
- :mod:`.requests`  reading and parsing a predict request; HTTPProblem, the JSON error answer
- :mod:`.metrics`   the Prometheus metrics of one app
- :mod:`.app`       create_app: the routes, and which error becomes which HTTP status
- :mod:`.cli`       the ``bertrt serve`` command (add_arguments, run)
"""

from __future__ import annotations

from .app import create_app
from .batcher import ModelWorker
from .cli import add_arguments, parse_model_specs, run
from .settings import ServeSettings

__all__ = ["ModelWorker", "ServeSettings", "add_arguments", "create_app", "parse_model_specs", "run"]
