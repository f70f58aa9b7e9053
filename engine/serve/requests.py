"""A predict request: the body read within its size limit and parsed into a :class:`PredictRequest`.

Every problem is an :class:`HTTPProblem`: a status, a stable ``code`` and a message naming the problem,
answered as JSON ``{"error": message, "code": code, ...extra}`` (the extra fields name a broken limit).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .settings import ServeSettings

__all__ = ["HTTPProblem", "PredictRequest", "parse_request", "read_body"]

_REQUEST_KEYS = ("inputs", "parameters")


class HTTPProblem(Exception):
    """An error answered with ``status`` and the JSON body :meth:`payload`."""

    def __init__(self, status: int, code: str, message: str, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra

    def payload(self) -> dict:
        return {"error": self.message, "code": self.code, **self.extra}


@dataclass(frozen=True)
class PredictRequest:
    """A parsed ``POST /models/{name}/predict`` body."""

    inputs: str | list[str]  # one text (one result) or a list of texts (a list of results)
    parameters: dict  # the task's pipeline options

    @property
    def texts(self) -> list[str]:
        return [self.inputs] if isinstance(self.inputs, str) else self.inputs


async def read_body(request, limit: int) -> bytes:
    """The body of a starlette ``request``; 413 as soon as it passes ``limit`` bytes, declared or streamed."""
    declared = request.headers.get("content-length")
    too_large = HTTPProblem(
        413,
        "body_too_large",
        f"request body exceeds max_body_bytes={limit}",
        limit="max_body_bytes",
        max=limit,
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def parse_request(raw: bytes, settings: ServeSettings) -> PredictRequest:
    """The request in ``raw``; HTTPProblem 400 (shape) or 422 (a limit) naming the problem."""
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        raise HTTPProblem(
            400, "malformed_json", f"request body is not valid JSON{where}: {getattr(exc, 'msg', str(exc))}"
        ) from None
    if not isinstance(body, dict):
        raise HTTPProblem(
            400, "bad_request", f"request body must be a JSON object with 'inputs', got {type(body).__name__}"
        )
    unknown = sorted(set(body) - set(_REQUEST_KEYS))
    if unknown:
        raise HTTPProblem(
            400, "bad_request", f"unknown field(s) {', '.join(unknown)}; accepted: inputs, parameters"
        )
    if "inputs" not in body:
        raise HTTPProblem(400, "bad_request", "missing field 'inputs' (a string or a list of strings)")
    inputs, params = body["inputs"], body.get("parameters")
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise HTTPProblem(
            400, "bad_parameters", f"'parameters' must be a JSON object, got {type(params).__name__}"
        )
    texts = [inputs] if isinstance(inputs, str) else inputs
    if not isinstance(texts, list):
        raise HTTPProblem(
            400, "bad_request", f"'inputs' must be a string or a list of strings, got {type(inputs).__name__}"
        )
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise HTTPProblem(
            400,
            "bad_request",
            f"'inputs' must hold strings only; not a string at index(es) {', '.join(map(str, bad[:20]))}",
        )
    if len(texts) > settings.max_texts:
        raise HTTPProblem(
            422,
            "too_many_texts",
            f"{len(texts)} texts in one request exceed max_texts={settings.max_texts}",
            limit="max_texts",
            max=settings.max_texts,
            got=len(texts),
        )
    long = [i for i, text in enumerate(texts) if len(text) > settings.max_chars]
    if long:
        raise HTTPProblem(
            422,
            "text_too_long",
            f"text(s) at index {', '.join(map(str, long[:20]))} exceed "
            f"max_chars={settings.max_chars} characters",
            limit="max_chars",
            max=settings.max_chars,
            indexes=long[:20],
        )
    return PredictRequest(inputs, params)
