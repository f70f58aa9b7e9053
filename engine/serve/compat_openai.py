"""OpenAI's embeddings route, so that OpenAI clients (the ``openai`` SDK, LangChain, ...) can call bertrt.

``POST /v1/embeddings`` ``{input: str | [str], model?, encoding_format="float"|"base64", dimensions?,
user?}`` -> ``{object: "list", data: [{object: "embedding", index, embedding}], model, usage:
{prompt_tokens, total_tokens}}``.

- ``model`` names a served sentence-embedding (or feature-extraction) model; it may be left out when only one is served
  (OpenAI requires it; bertrt picks the only one), and with one model served it is informational (any
  name is that model, as in TEI). The answer's ``model`` is the served name.
- The vectors are pooled as ``/embed`` pools them (the bundle's sentence-transformers settings) and
  normalized to unit length (as OpenAI's are).
- ``encoding_format`` "base64": each embedding is the base64 of its little-endian float32 bytes (what
  the ``openai`` SDK decodes with ``numpy.frombuffer(base64.b64decode(s), dtype="<f4")``).
- ``dimensions``: the first ``dimensions`` values, then unit length again, as OpenAI shortens its
  vectors (Matryoshka models are trained for it); more than the model's width is a 400 naming it.
- Token-id inputs (``[int]``, ``[[int]]``) and an empty list are 400s. An input over the model's max
  length is a 400 ``bad_input`` (OpenAI refuses inputs over the context length too); the max length is
  a sentence-transformers model's ``max_seq_length``.
- ``usage``: the tokens of the inputs, special tokens included, counted with the model's tokenizer.

Errors, on every ``/v1/`` path, are OpenAI's object ``{"error": {"message", "type", "param", "code"}}``
(``code``: bertrt's code), the shape the ``openai`` SDK shows the reason of; unknown fields are refused,
as OpenAI refuses them.
"""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from .compat_tei import check_length
from .native import EMBEDDING_TASKS, embedding_params, embedding_pooling, model_route, service_of
from .requests import HTTPProblem, check_texts
from .schemas import EmbeddingsRequest, parse
from .service import json_response

__all__ = ["b64_float32", "router"]

router = APIRouter(tags=["OpenAI"])


def b64_float32(vector) -> str:
    """The base64 of ``vector`` as little-endian float32 bytes (OpenAI's ``encoding_format: base64``)."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")


def _width(pipe) -> int | None:
    """The width of the model's pooled vectors: the hidden size once per pooling mode."""
    config = pipe.bundle.config
    width = config.get("hidden_size", config.get("dim"))
    if not isinstance(width, int) or isinstance(width, bool):
        return None
    return width * len(embedding_pooling(pipe).split("+"))


async def _embeddings(request: Request, call) -> Response:
    service = service_of(request)
    req = parse(EmbeddingsRequest, await service.json(request), "/v1/embeddings")
    worker = service.pick(req.model, EMBEDDING_TASKS, "/v1/embeddings", informational=True)
    call.use(worker)
    texts = [req.input] if isinstance(req.input, str) else req.input
    if any(not isinstance(t, str) for t in texts):
        raise HTTPProblem(
            400, "bad_request", "'input' as token ids is not supported: send the text", param="input"
        )
    check_texts(texts, service.settings, field="input")
    if not texts:
        raise HTTPProblem(400, "bad_request", "'input' must not be an empty list", param="input")
    if req.dimensions is not None:
        width = _width(worker.pipe)
        if req.dimensions <= 0 or (width is not None and req.dimensions > width):
            raise HTTPProblem(
                400,
                "bad_request",
                f"dimensions={req.dimensions!r}: model {worker.name!r} gives {width}-dimensional vectors; "
                f"send 1 to {width}, or leave dimensions out",
                param="dimensions",
            )
    params, shorten = embedding_params(worker.pipe, dimensions=req.dimensions)
    prepared = await service.prepare(worker, texts, params)
    try:
        check_length(worker, texts, prepared, False, "/v1/embeddings")
    except HTTPProblem as exc:
        raise HTTPProblem(400, "bad_input", exc.message, param="input") from None
    tokens = prepared.tokens  # the encodings that run: special tokens included
    name, base64_out = worker.name, req.encoding_format == "base64"

    def transform(vectors):
        vectors = shorten(vectors) if shorten is not None else vectors
        data = [
            {"object": "embedding", "index": i, "embedding": b64_float32(v) if base64_out else v}
            for i, v in enumerate(vectors)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        return {"object": "list", "data": data, "model": name, "usage": usage}

    return json_response(await service.run(worker, request, texts, params, transform, prepared))


@model_route(router, "/v1/embeddings", EmbeddingsRequest, "OpenAI: embeddings of one text or a list")
async def embeddings(request: Request):
    return await service_of(request).serve(request, _embeddings, style="openai")
