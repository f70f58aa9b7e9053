"""text-embeddings-inference's routes, so that its clients can call ``bertrt serve`` unchanged.

========================  ====================================================================================
``POST /embed``           ``{inputs: str | [str], normalize=true, truncate=false, truncation_direction="Right",
                          prompt_name=null}`` -> ``[[float]]``: one pooled vector per input (the bundle's
                          sentence-transformers pooling, ``1_Pooling/config.json``, else mean)
``POST /embed_all``       same fields but ``normalize`` -> ``[[[float]]]``: the token vectors of each input
``POST /predict``         ``{inputs, raw_scores=false, truncate=false}`` -> every label with its score, best
                          first: ``[{label, score}]`` for one input, ``[[...]]`` for a list. As in TEI, an
                          input is a str or a pair ``[str, str]``, and a list of exactly two strings is
                          *one* pair; any other list is a batch of inputs
``POST /rerank``          ``{query, texts, raw_scores=false, return_text=false, truncate=false}`` ->
                          ``[{index, score, text?}]``, best first; needs a cross-encoder (a
                          text-classification model with one label), else 400 ``not_a_reranker``
``POST /tokenize``        ``{inputs, add_special_tokens=true}`` -> ``[[{id, text, special, start, stop}]]``
                          (character offsets; special tokens have ``start``/``stop`` null)
``POST /decode``          ``{ids: [int] | [[int]], skip_special_tokens=true}`` -> ``[str]``
``GET /info``             the model: ``model_id``, ``model_type``, ``max_input_length``, batching limits...
========================  ====================================================================================

The model is picked by ``?model=NAME`` (or a ``model`` field in the body) among the served models of the
route's task (any task for ``/tokenize``, ``/decode``, ``/info``); see :meth:`Service.pick`. The model
routes run on the same batcher as ``/models/{name}/predict``. ``truncate=false`` (TEI's default) makes an
input over the model's max length a 413 ``input_too_long``, as TEI answers. Errors are bertrt's
``{"error", "code"}`` with TEI's ``error_type`` added. Unknown fields are a 400 naming the accepted ones.
``/tokenize`` and ``/decode`` need no model run: they use the tokenizer directly (in a thread for
large inputs).
"""

from __future__ import annotations

import asyncio
import json
import threading

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from .requests import HTTPProblem, check_texts
from .service import Service, json_response

__all__ = ["add_routes", "embedding_pooling"]

_POOLING_MODES = (
    ("pooling_mode_cls_token", "cls"),
    ("pooling_mode_mean_tokens", "mean"),
    ("pooling_mode_max_tokens", "max"),
)
_INLINE_CHARS = 8192  # inputs up to this many characters are tokenized on the event loop, larger in a thread


def embedding_pooling(pipe) -> str:
    """The pooling of a feature-extraction bundle: its sentence-transformers ``1_Pooling/config.json``
    (cls / mean / max), else "mean"."""
    path = pipe.bundle.root / "1_Pooling" / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "mean"
    for key, mode in _POOLING_MODES:
        if config.get(key) is True:
            return mode
    return "mean"


def _fields(body, route: str, fields: dict) -> dict:
    """The body's fields with their defaults; 400 for a non-object, an unknown field or a wrong type.

    ``fields``: {name: (default, accepted types, required)}.
    """
    if not isinstance(body, dict):
        raise HTTPProblem(
            400, "bad_request", f"{route}: the body must be a JSON object, got {type(body).__name__}"
        )
    unknown = sorted(set(body) - set(fields) - {"model"})
    if unknown:
        raise HTTPProblem(
            400,
            "bad_request",
            f"{route}: unknown field(s) {', '.join(unknown)}; accepted: {', '.join([*fields, 'model'])}",
        )
    out = {}
    for name, (default, types, required) in fields.items():
        if name not in body:
            if required:
                raise HTTPProblem(400, "bad_request", f"{route}: missing field {name!r}")
            out[name] = default
            continue
        value = body[name]
        if types is not None and not (
            isinstance(value, types) and (bool in types or not isinstance(value, bool))
        ):
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise HTTPProblem(
                400, "bad_request", f"{route}: {name!r} must be {names}, got {json.dumps(value)[:60]}"
            )
        out[name] = value
    return out


def _check_truncation(fields: dict, route: str) -> None:
    direction = fields.get("truncation_direction", "Right")
    if not isinstance(direction, str) or direction.lower() not in ("right", "left"):
        raise HTTPProblem(400, "bad_request", f"{route}: truncation_direction must be 'Right' or 'Left'")
    if direction.lower() == "left":
        raise HTTPProblem(
            400,
            "unsupported",
            f"{route}: truncation_direction 'Left' is not supported; bertrt cuts on the right",
        )
    if fields.get("prompt_name") is not None:
        raise HTTPProblem(
            400, "unsupported", f"{route}: prompt_name is not supported: bertrt serves no prompts"
        )


def _items(value, route: str, pairs: bool) -> tuple[bool, list]:
    """(single, items) of TEI's ``inputs``: a str, a [str, str] pair (``pairs`` only), or a list of them."""
    if isinstance(value, str):
        return True, [value]
    if not isinstance(value, list):
        raise HTTPProblem(
            400, "bad_request", f"{route}: 'inputs' must be a string or a list, got {type(value).__name__}"
        )
    if pairs and len(value) == 2 and all(isinstance(v, str) for v in value):
        return True, [{"text": value[0], "text_pair": value[1]}]  # TEI: two strings are one pair
    items = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            items.append(item)
        elif pairs and isinstance(item, list) and len(item) == 2 and all(isinstance(v, str) for v in item):
            items.append({"text": item[0], "text_pair": item[1]})
        else:
            wanted = "a string or a [string, string] pair" if pairs else "a string"
            raise HTTPProblem(400, "bad_request", f"{route}: 'inputs' at index {i} must be {wanted}")
    return False, items


def _strings(items: list) -> list[str]:
    return [
        s
        for item in items
        for s in ((item["text"], item["text_pair"]) if isinstance(item, dict) else (item,))
    ]


async def _off_loop(size: int, fn, *args):
    """``fn(*args)``: on the loop when ``size`` (characters) is small, in a thread otherwise."""
    return fn(*args) if size <= _INLINE_CHARS else await asyncio.to_thread(fn, *args)


async def _tokens(worker, items: list, truncate: bool, route: str) -> int:
    """The items' tokens as the batcher counts them; with ``truncate`` false, 413 ``input_too_long`` for
    an input over the model's max length (TEI's answer)."""
    pipe = worker.pipe
    pieces = [(i["text"], i["text_pair"]) if isinstance(i, dict) else i for i in items]

    def lengths():
        return [len(e) for e in pipe.tokenizer.encode_batch(pieces, truncate=False)]

    found = await _off_loop(sum(map(len, _strings(items))), lengths)
    limit = pipe.max_length
    if not truncate:
        long = [i for i, n in enumerate(found) if n > limit]
        if long:
            raise HTTPProblem(
                413,
                "input_too_long",
                f"{route}: input(s) at index {', '.join(map(str, long[:20]))} have "
                f"{found[long[0]]} tokens; model {worker.name!r} takes at most {limit} "
                f'(send "truncate": true to cut them)',
                limit="max_input_length",
                max=limit,
                indexes=long[:20],
            )
    return sum(min(n, limit) for n in found)


def add_routes(app: FastAPI, service: Service) -> None:
    """Register the text-embeddings-inference routes on ``app``."""
    settings = service.settings
    private_tokenizers: dict[str, object] = {}
    tokenizer_lock = threading.Lock()

    def plain_tokenizer(worker):
        """A private copy of the model's tokenizer without truncation (the shared one's truncation is
        per-call state of the pipeline's)."""
        with tokenizer_lock:
            if worker.name not in private_tokenizers:
                from tokenizers import Tokenizer

                tok = Tokenizer.from_str(worker.pipe.tokenizer.raw.to_str())
                tok.no_truncation()
                tok.no_padding()
                private_tokenizers[worker.name] = tok
            return private_tokenizers[worker.name]

    async def body_and_model(request: Request, model: str | None):
        body = await service.json(request)
        if isinstance(body, dict) and "model" in body:
            model = body["model"]
        return body, model

    def route(path: str, summary: str):
        return app.post(path, summary=summary, response_class=Response, tags=["text-embeddings-inference"])

    async def embed_common(request: Request, call, model: str | None, route: str, pooled: bool):
        body, model = await body_and_model(request, model)
        spec = {
            "inputs": (None, None, True),
            "truncate": (False, (bool,), False),
            "truncation_direction": ("Right", (str,), False),
            "prompt_name": (None, (str, type(None)), False),
        }
        if pooled:
            spec["normalize"] = (True, (bool,), False)
        fields = _fields(body, route, spec)
        worker = service.pick(model, ("feature-extraction",), route)
        call.use(worker)
        _check_truncation(fields, route)
        _, items = _items(fields["inputs"], route, pairs=False)
        check_texts(items, settings)
        tokens = await _tokens(worker, items, fields["truncate"], route)
        if pooled:
            params = {"pooling": embedding_pooling(worker.pipe), "normalize": fields["normalize"]}
            transform = None
        else:
            params = {}

            def transform(results):  # (1, tokens, dim) per input -> (tokens, dim)
                return [r[0] for r in results]

        return json_response(await service.run(worker, request, items, params, transform, tokens))

    @route("/embed", "TEI: one pooled embedding per input")
    async def embed(request: Request, model: str | None = None):
        return await service.serve(request, lambda r, c: embed_common(r, c, model, "/embed", True), tei=True)

    @route("/embed_all", "TEI: the token embeddings of each input")
    async def embed_all(request: Request, model: str | None = None):
        return await service.serve(
            request, lambda r, c: embed_common(r, c, model, "/embed_all", False), tei=True
        )

    @route("/predict", "TEI: every label's score for each input (or text pair)")
    async def predict(request: Request, model: str | None = None):
        async def handler(request, call):
            body, name = await body_and_model(request, model)
            fields = _fields(
                body,
                "/predict",
                {
                    "inputs": (None, None, True),
                    "raw_scores": (False, (bool,), False),
                    "truncate": (False, (bool,), False),
                    "truncation_direction": ("Right", (str,), False),
                },
            )
            worker = service.pick(name, ("text-classification",), "/predict")
            call.use(worker)
            _check_truncation(fields, "/predict")
            single, items = _items(fields["inputs"], "/predict", pairs=True)
            check_texts(_strings(items), settings, count=len(items))
            tokens = await _tokens(worker, items, fields["truncate"], "/predict")
            params = {"top_k": None}
            if fields["raw_scores"]:
                params["function_to_apply"] = "none"
            transform = (lambda results: results[0]) if single else None
            return json_response(await service.run(worker, request, items, params, transform, tokens))

        return await service.serve(request, handler, tei=True)

    @route("/rerank", "TEI: the texts ranked by a cross-encoder's score against the query")
    async def rerank(request: Request, model: str | None = None):
        async def handler(request, call):
            body, name = await body_and_model(request, model)
            fields = _fields(
                body,
                "/rerank",
                {
                    "query": (None, (str,), True),
                    "texts": (None, (list,), True),
                    "raw_scores": (False, (bool,), False),
                    "return_text": (False, (bool,), False),
                    "truncate": (False, (bool,), False),
                    "truncation_direction": ("Right", (str,), False),
                },
            )
            worker = service.pick(name, ("text-classification",), "/rerank")
            call.use(worker)
            if worker.pipe.num_labels != 1:
                raise HTTPProblem(
                    400,
                    "not_a_reranker",
                    f"/rerank needs a cross-encoder (a text-classification model with one output); model "
                    f"{worker.name!r} has {worker.pipe.num_labels} labels: use /predict for it",
                )
            _check_truncation(fields, "/rerank")
            texts = check_texts(fields["texts"], settings, field="texts")
            check_texts([fields["query"]], settings, field="query")
            items = [{"text": fields["query"], "text_pair": text} for text in texts]
            tokens = await _tokens(worker, items, fields["truncate"], "/rerank")
            function = "none" if fields["raw_scores"] else "sigmoid"
            return_text = fields["return_text"]

            def transform(results):
                ranked = []
                for index, scores in enumerate(results):
                    entry = {"index": index, "score": scores[0]["score"]}
                    if return_text:
                        entry["text"] = texts[index]
                    ranked.append(entry)
                return sorted(ranked, key=lambda e: -e["score"])

            params = {"top_k": None, "function_to_apply": function}
            return json_response(await service.run(worker, request, items, params, transform, tokens))

        return await service.serve(request, handler, tei=True)

    @route("/tokenize", "TEI: the tokens of each input, with their character offsets")
    async def tokenize(request: Request, model: str | None = None):
        async def handler(request, call):
            body, name = await body_and_model(request, model)
            fields = _fields(
                body,
                "/tokenize",
                {
                    "inputs": (None, None, True),
                    "add_special_tokens": (True, (bool,), False),
                    "prompt_name": (None, (str, type(None)), False),
                },
            )
            worker = service.pick(name, (), "/tokenize")
            call.use(worker)
            _check_truncation(fields, "/tokenize")
            _, texts = _items(fields["inputs"], "/tokenize", pairs=False)
            check_texts(texts, settings)
            tok = plain_tokenizer(worker)

            def run():
                out = []
                for text, enc in zip(
                    texts, tok.encode_batch(texts, add_special_tokens=fields["add_special_tokens"])
                ):
                    tokens = []
                    for token_id, token, (start, stop), special in zip(
                        enc.ids, enc.tokens, enc.offsets, enc.special_tokens_mask
                    ):
                        if special:
                            tokens.append(
                                {"id": token_id, "text": token, "special": True, "start": None, "stop": None}
                            )
                        else:
                            tokens.append(
                                {
                                    "id": token_id,
                                    "text": text[start:stop],
                                    "special": False,
                                    "start": start,
                                    "stop": stop,
                                }
                            )
                    out.append(tokens)
                return out

            return JSONResponse(await _off_loop(sum(map(len, texts)), run))

        return await service.serve(request, handler, tei=True)

    @route("/decode", "TEI: the text of token ids")
    async def decode(request: Request, model: str | None = None):
        async def handler(request, call):
            body, name = await body_and_model(request, model)
            fields = _fields(
                body, "/decode", {"ids": (None, (list,), True), "skip_special_tokens": (True, (bool,), False)}
            )
            worker = service.pick(name, (), "/decode")
            call.use(worker)
            ids = fields["ids"]
            batch = [ids] if not ids or not isinstance(ids[0], list) else ids
            if len(batch) > settings.max_texts:
                raise HTTPProblem(
                    422,
                    "too_many_texts",
                    f"{len(batch)} id lists in one request exceed max_texts={settings.max_texts}",
                    limit="max_texts",
                    max=settings.max_texts,
                )
            vocab = worker.pipe.tokenizer.vocab_size
            for row, seq in enumerate(batch):
                if not isinstance(seq, list) or not all(
                    isinstance(i, int) and not isinstance(i, bool) and 0 <= i < vocab for i in seq
                ):
                    raise HTTPProblem(
                        422,
                        "bad_ids",
                        f"/decode: 'ids' row {row} must be a list of token ids in 0..{vocab - 1} "
                        f"(model {worker.name!r} has {vocab} tokens)",
                    )
            tokenizer = worker.pipe.tokenizer
            skip = fields["skip_special_tokens"]

            def run():
                return [tokenizer.decode(seq, skip_special_tokens=skip) for seq in batch]

            return JSONResponse(await _off_loop(sum(map(len, batch)), run))

        return await service.serve(request, handler, tei=True)

    @app.get("/info", summary="TEI: the model and the server's limits", tags=["text-embeddings-inference"])
    async def info(request: Request, model: str | None = None):
        async def handler(request, call):
            worker = service.pick(model, (), "/info")
            pipe = worker.pipe
            labels = {int(i): name for i, name in sorted(pipe.id2label.items())} if pipe.id2label else {}
            mapping = {
                "id2label": {str(i): n for i, n in labels.items()},
                "label2id": {n: i for i, n in labels.items()},
            }
            if pipe.task == "feature-extraction":
                model_type = {"embedding": {"pooling": embedding_pooling(pipe)}}
            elif pipe.task == "text-classification":
                model_type = {"reranker" if pipe.num_labels == 1 else "classifier": mapping}
            else:
                model_type = {pipe.task.replace("-", "_"): mapping}
            from .. import __version__

            return JSONResponse(
                {
                    "model_id": worker.name,
                    "model_sha": None,
                    "model_dtype": "float32" if pipe.precision == "fp32" else pipe.precision,
                    "model_type": model_type,
                    "max_concurrent_requests": settings.max_connections,
                    "max_input_length": pipe.max_length,
                    "max_batch_tokens": settings.max_batch_tokens,
                    "max_batch_requests": settings.max_batch_size,
                    "max_client_batch_size": settings.max_texts,
                    "auto_truncate": False,
                    "tokenization_workers": 1,
                    "version": __version__,
                    "sha": None,
                    "docker_label": None,
                    "task": pipe.task,
                    "served_models": list(service.workers),
                }
            )

        return await service.serve(request, handler, tei=True)
