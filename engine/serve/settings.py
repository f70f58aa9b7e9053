"""The server's batching knobs and request limits: the one place their defaults are stated.

``bertrt serve``'s flags (:mod:`bertrt.serve.cli`) read their defaults, and the numbers in their help,
from :class:`ServeSettings`, so the library and the command line cannot disagree. The one exception is
the served bundles' tuned batch size (``bertrt tune``), which :func:`apply_tuned_batch_size` puts in place
of the ``pipeline_batch_size`` default once the models are loaded.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

__all__ = ["ServeSettings", "apply_tuned_batch_size"]


def _bound(default, bound: str):
    """A field with a lower bound that :meth:`ServeSettings.problems` checks, stated where it is declared:
    ``"positive"`` (> 0; the ``--flag`` of the same name) or ``"seconds"`` (finite and > 0; the flag is the
    name without ``_s``)."""
    return field(default=default, metadata={"bound": bound})


def _bounded(settings, bound: str) -> list[str]:
    return [f.name for f in dataclasses.fields(settings) if f.metadata.get("bound") == bound]


@dataclass(frozen=True)
class ServeSettings:
    """Batching knobs and request limits (one set for every model)."""

    max_batch_size: int = _bound(32, "positive")  # texts per pipeline call
    max_wait_ms: float = 2.0  # longest wait for a batch to fill, from its oldest request's arrival
    # the pipeline sorts a micro-batch by length and runs sub-batches of this size
    pipeline_batch_size: int = _bound(8, "positive")
    max_queue: int = _bound(1024, "positive")  # texts waiting per model; beyond it requests get 503
    batching: bool = True  # False: every request runs alone
    max_body_bytes: int = _bound(1 << 20, "positive")  # 413 beyond
    max_texts: int = _bound(64, "positive")  # texts per request, 422 beyond
    max_chars: int = _bound(20_000, "positive")  # characters per text, 422 beyond
    retry_after_s: int = 1  # the Retry-After of a 503
    # seconds from a request's acceptance to its answer, 504 beyond (0: no deadline). A queued request
    # past it is dropped unrun; a running one is answered at once and its results are discarded (a
    # pipeline call cannot be interrupted mid-batch, so the model stays busy until that call ends).
    request_timeout_s: float = 30.0
    # tokens per pipeline call, as text-embeddings-inference's --max-batch-tokens (0: no token budget). A
    # request's tokens are counted with the model's tokenizer, each text capped at the model's max length
    # (what one sequence holds); a batch always takes its first request, even one over the budget.
    max_batch_tokens: int = 16384
    # faults: slow or many clients
    # a connection must deliver a request's headers within this (else closed), and its body within
    # body_timeout_s after the headers (else 408)
    header_timeout_s: float = _bound(10.0, "seconds")
    body_timeout_s: float = _bound(30.0, "seconds")
    keep_alive_s: float = _bound(5.0, "seconds")  # an idle keep-alive connection is closed after this
    max_connections: int = _bound(1024, "positive")  # open connections; one beyond gets a 503 and is closed
    # a body over max_body_bytes is read and discarded up to this many bytes before the 413, so the client
    # sees the answer instead of a reset socket; beyond it the connection is closed after the 413
    max_drain_bytes: int = 64 << 20

    def problems(self) -> list[str]:
        """Every invalid setting, phrased with its command-line flag; empty when the settings are usable."""
        found = []
        for name in _bounded(self, "positive"):
            if getattr(self, name) <= 0:
                found.append(f"--{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        if not (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0):
            found.append(f"--max-wait-ms must be a finite number >= 0, got {self.max_wait_ms}")
        if not (math.isfinite(self.request_timeout_s) and self.request_timeout_s >= 0):
            found.append(
                f"--request-timeout must be a finite number of seconds >= 0 (0: no deadline), "
                f"got {self.request_timeout_s}"
            )
        for name in _bounded(self, "seconds"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                found.append(
                    f"--{name[:-2].replace('_', '-')} must be a finite number of seconds > 0, got {value}"
                )
        if self.max_batch_tokens < 0:
            found.append(f"--max-batch-tokens must be >= 0 (0: no token budget), got {self.max_batch_tokens}")
        if self.max_drain_bytes < 0:
            found.append(f"max_drain_bytes must be >= 0, got {self.max_drain_bytes}")
        if self.retry_after_s < 0:
            found.append(f"retry_after_s must be >= 0, got {self.retry_after_s}")
        if self.max_texts > self.max_queue:
            found.append(
                f"--max-texts ({self.max_texts}) must not exceed --max-queue ({self.max_queue}): "
                f"a full-size request could never be queued"
            )
        return found


def apply_tuned_batch_size(
    settings: ServeSettings, pipelines: dict, given=frozenset()
) -> tuple[ServeSettings, str]:
    """(``settings`` with the models' tuned batch size, why). The tuned size (``bertrt tune``: sequences
    per session run, the pipeline's ``batch_size``) becomes ``pipeline_batch_size`` when that flag is not
    in ``given`` (field names set by the user) and every model's plan follows tuning.json on this CPU with
    the same size (the settings are one set for every model); ``max_batch_size``, when not given, is raised
    to at least it so a micro-batch can fill one such run. Otherwise the settings stay as they are."""
    static = settings.pipeline_batch_size
    if "pipeline_batch_size" in given:
        return settings, f"pipeline batch size {static}: given (--pipeline-batch-size)"
    chosen = {}
    for name, pipe in pipelines.items():
        plan = getattr(pipe, "plan", None)
        chosen[name] = plan.default_batch_size(static) if plan is not None else (static, "static")
    tuned = {size for size, source in chosen.values() if source == "tuned"}
    if not tuned:
        return settings, f"pipeline batch size {static}: the default (no model has a tuned one for this CPU)"
    if len(tuned) > 1 or any(source != "tuned" for _, source in chosen.values()):
        sizes = ", ".join(
            f"{name}: {size if source == 'tuned' else 'none'}" for name, (size, source) in chosen.items()
        )
        return settings, (
            f"pipeline batch size {static}: the default, as the models' tuned batch sizes differ ({sizes}); "
            "pass --pipeline-batch-size"
        )
    size = tuned.pop()
    changes = {"pipeline_batch_size": size}
    if "max_batch_size" not in given and settings.max_batch_size < size:
        changes["max_batch_size"] = size
    why = f"pipeline batch size {size}: tuned (tuning.json, this CPU)"
    return dataclasses.replace(settings, **changes), why
