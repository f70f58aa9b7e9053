"""``bertrt serve``: bundles over HTTP with dynamic micro-batching (extra ``bertrt[serve]``).

This package is the only place that imports fastapi, uvicorn and prometheus_client; ``bertrt`` never
imports it, so the runtime installs and imports without them.

- :mod:`.settings`  ServeSettings: batching knobs and request limits, the one source of their defaults
- :mod:`.batcher`   ModelWorker: one model's queue, micro-batcher and worker thread (plain asyncio)
- :mod:`.requests`  reading a body (bounded, drained, timed), strict JSON, the text limits; HTTPProblem
- :mod:`.schemas`   every route's request body as a pydantic model (a task's parameters from its options)
- :mod:`.metrics`   the Prometheus metrics of one app
- :mod:`.service`   what every route shares: picking the model, running through the batcher, disconnects,
                    and each error's answer in its route family's shape (bertrt, TEI, OpenAI)
- :mod:`.native`    bertrt's own routes: /health, /models, /metrics, /models/{name}/predict, /ner
- :mod:`.compat_tei`, :mod:`.compat_openai`  text-embeddings-inference's and OpenAI's routes
- :mod:`.app`       create_app: the routers, the framework's own errors, the generated OpenAPI document
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
