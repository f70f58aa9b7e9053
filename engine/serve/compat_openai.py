"""OpenAI's embeddings route, so that OpenAI clients (the ``openai`` SDK, LangChain, ...) can call bertrt.

``POST /v1/embeddings`` ``{input: str | [str], model?, encoding_format="float"|"base64", dimensions?,
user?}`` -> ``{object: "list", data: [{object: "embedding", index, embedding}], model, usage:
{prompt_tokens, total_tokens}}``.

- ``model`` names a served feature-extraction model; it may be left out when only one is served
  (OpenAI requires it; bertrt picks the only one). The answer's ``model`` is the served name.
- The vectors are pooled as ``/embed`` pools them and normalized to unit length (as OpenAI's are).
- ``encoding_format`` "base64": each embedding is the base64 of its little-endian float32 bytes (what
  the ``openai`` SDK decodes with ``numpy.frombuffer(base64.b64decode(s), dtype="<f4")``).
- ``dimensions``: accepted only when it equals the model's width (these models are not trained to be
  shortened); another value is a 400 naming the width.
- Token-id inputs (``[int]``, ``[[int]]``) and an empty list are 400s. An input over the model's max
  length is a 400 ``bad_input`` (OpenAI refuses inputs over the context length too).
- ``usage``: the tokens of the inputs, special tokens included, counted with the model's tokenizer.

Errors keep bertrt's ``{"error": message, "code": ...}`` shape.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import Response

from .compat_tei import embedding_pooling
from .requests import HTTPProblem, check_texts
from .service import Service, json_response

__all__ = ["add_routes", "b64_float32"]

_FIELDS = ("input", "model", "encoding_format", "dimensions", "user")


def b64_float32(vector) -> str:
    """The base64 of ``vector`` as little-endian float32 bytes (OpenAI's ``encoding_format: base64``)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _width(pipe) -> int | None:
    config = pipe.bundle.config
    width = config.get("hidden_size", config.get("dim"))
    return width if isinstance(width, int) and not isinstance(width, bool) else None


def add_routes(app: FastAPI, service: Service) -> None:
    """Register ``POST /v1/embeddings`` on ``app``."""
    settings = service.settings

    @app.post(
        "/v1/embeddings",
        summary="OpenAI: embeddings of one text or a list",
        response_class=Response,
        tags=["OpenAI"],
    )
    async def embeddings(request: Request):
        async def handler(request, call):
            body = await service.json(request)
            if not isinstance(body, dict):
                raise HTTPProblem(
                    400, "bad_request", f"the body must be a JSON object, got {type(body).__name__}"
                )
            unknown = sorted(set(body) - set(_FIELDS))
            if unknown:
                raise HTTPProblem(
                    400,
                    "bad_request",
                    f"unknown field(s) {', '.join(unknown)}; accepted: {', '.join(_FIELDS)}",
                )
            worker = service.pick(body.get("model"), ("feature-extraction",), "/v1/embeddings")
            call.use(worker)
            if "input" not in body:
                raise HTTPProblem(400, "bad_request", "missing field 'input' (a string or a list of strings)")
            value = body["input"]
            texts = [value] if isinstance(value, str) else value
            if isinstance(texts, list) and any(
                isinstance(t, (int, list)) and not isinstance(t, bool) for t in texts
            ):
                raise HTTPProblem(400, "bad_request", "'input' as token ids is not supported: send the text")
            check_texts(texts, settings, field="input")
            if not texts:
                raise HTTPProblem(400, "bad_request", "'input' must not be an empty list")
            encoding = body.get("encoding_format", "float")
            if encoding not in ("float", "base64"):
                raise HTTPProblem(
                    400, "bad_request", f"encoding_format must be 'float' or 'base64', got {encoding!r}"
                )
            width = _width(worker.pipe)
            dimensions = body.get("dimensions")
            if dimensions is not None and dimensions != width:
                raise HTTPProblem(
                    400,
                    "unsupported",
                    f"dimensions={dimensions!r}: model {worker.name!r} gives {width}-dimensional vectors and "
                    f"cannot shorten them; leave dimensions out or send {width}",
                )
            tokens = worker.count_tokens(texts)
            name = worker.name

            def transform(vectors):
                data = [
                    {
                        "object": "embedding",
                        "index": i,
                        "embedding": b64_float32(v) if encoding == "base64" else v,
                    }
                    for i, v in enumerate(vectors)
                ]
                return {
                    "object": "list",
                    "data": data,
                    "model": name,
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }

            params = {"pooling": embedding_pooling(worker.pipe), "normalize": True, "truncation": False}
            return json_response(await service.run(worker, request, texts, params, transform, tokens))

        return await service.serve(request, handler)
