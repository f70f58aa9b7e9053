"""``bertrt serve``: bundles over HTTP with dynamic micro-batching (extra ``bertrt[serve]``).

This package is the only place that imports fastapi, uvicorn and prometheus_client; ``bertrt`` never
imports it, so the runtime installs and imports without them.

- :mod:`.settings`  ServeSettings: batching knobs and request limits, the one source of their defaults
- :mod:`.batcher`   ModelWorker: one model's queue, micro-batcher and worker thread (plain asyncio)
- :mod:`.requests`  reading (bounded, drained, timed) and parsing a request; HTTPProblem, the JSON error
- :mod:`.metrics`   the Prometheus metrics of one app
- :mod:`.service`   what every route shares: picking the model, running through the batcher, disconnects
- :mod:`.app`       create_app: bertrt's routes (and /ner), and which error becomes which HTTP status
- :mod:`.compat_tei`, :mod:`.compat_openai`  text-embeddings-inference's and OpenAI's embeddings routes
- :mod:`.middleware` request ids and the optional API key (plain ASGI)
- :mod:`.protocol`  uvicorn's h11 protocol with a header deadline and a connection cap; the uvicorn config
- :mod:`.cli`       the ``bertrt serve`` command (add_arguments, run)
"""

from __future__ import annotations

from .app import create_app
from .batcher import ModelWorker
from .cli import add_arguments, parse_model_specs, run
from .settings import ServeSettings

__all__ = ["ModelWorker", "ServeSettings", "add_arguments", "create_app", "parse_model_specs", "run"]
