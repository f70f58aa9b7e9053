"""text-embeddings-inference's routes, so that its clients can call ``bertrt serve`` unchanged.

========================  ====================================================================================
``POST /``                 routed by the model's type, as TEI does: an embedding model's ``/embed`` (or
                          ``/similarity`` for ``{"inputs": {"source_sentence", "sentences"}}``), a
                          classifier's ``/predict``, a reranker's (one label) ``/rerank`` when the body
                          has ``query``, any other task's ``/models/{name}/predict``
``POST /embed``           ``{inputs: str | [str], normalize=true, truncate=false, truncation_direction="Right",
                          prompt_name=null}`` -> ``[[float]]``: one pooled vector per input, as the
                          bundle's sentence-transformers settings make it (pooling, Normalize,
                          max_seq_length; a sentence-embedding model, or a feature-extraction one: mean
                          without settings)
``POST /similarity``      ``{inputs: {source_sentence, sentences}}`` -> ``[float]``: cosine similarities
``POST /embed_sparse``    ``{inputs, truncate=false}`` -> ``[[{index, value}]]``: the sparse-embedding (SPLADE)
                          vector of each input, by index
``POST /embed_all``       same fields but ``normalize`` -> ``[[[float]]]``: the token vectors of each input
``POST /predict``         ``{inputs, raw_scores=false, truncate=false}`` -> every label with its score, best
                          first: ``[{label, score}]`` for one input, ``[[...]]`` for a list. As in TEI, an
                          input is a str or a pair ``[str, str]``, and a list of exactly two strings is
                          *one* pair; any other list is a batch of inputs, each a str, a ``[str]`` or a
                          ``[str, str]`` pair (TEI's batch form ``[["a"], ["b", "c"]]``)
``POST /rerank``          ``{query, texts, raw_scores=false, return_text=false, truncate=false}`` ->
                          ``[{index, score, text?}]``, best first; needs a cross-encoder (a rerank
                          model, or a text-classification model with one label), else 400
                          ``not_a_reranker``
``POST /tokenize``        ``{inputs, add_special_tokens=true}`` -> ``[[{id, text, special, start, stop}]]``
                          (``start``/``stop``: UTF-8 *byte* offsets into the input, as TEI gives them;
                          null for special tokens. bertrt's own tokenize keeps character offsets)
``POST /decode``          ``{ids: [int] | [[int]], skip_special_tokens=true}`` -> ``[str]``
``GET /info``             the model: ``model_id``, ``model_type``, ``max_input_length``, batching limits...
========================  ====================================================================================

The model is picked by ``?model=NAME`` (or a ``model`` field in the body) among the served models of the
route's task (any task for ``/tokenize``, ``/decode``, ``/info``); see :meth:`Service.pick`. The model
routes run on the same batcher as ``/models/{name}/predict``. ``truncate=false`` (TEI's default) makes an
input over the model's max length a 413 ``input_too_long``, as TEI answers. Errors are bertrt's
``{"error", "code"}`` with TEI's ``error_type`` added. Unknown fields are ignored, as TEI ignores them
(``huggingface_hub`` always sends ``parameters``). With one model served, ``model`` is informational.
``/tokenize`` and ``/decode`` need no model run: they use the tokenizer directly (in a thread for
large inputs).
"""

from __future__ import annotations

import asyncio
import threading
import weakref

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from .native import (
    EMBEDDING_TASKS,
    embedding_params,
    embedding_pooling,
    max_input_length,
    model_route,
    run_predict,
    service_of,
    similarity,
)
from .requests import HTTPProblem, check_texts
from .schemas import (
    DecodeRequest,
    EmbedAllRequest,
    EmbedRequest,
    PredictRequest,
    RerankRequest,
    SimilarityRequest,
    TeiPredictRequest,
    TokenizeRequest,
    parse,
    parse_request,
)
from .service import Service, json_response

__all__ = ["byte_offsets", "check_length", "embedding_pooling", "router"]

router = APIRouter(tags=["text-embeddings-inference"])

_INLINE_CHARS = 8192  # inputs up to this many characters are tokenized on the event loop, larger in a thread
_plain_tokenizers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_plain_lock = threading.Lock()


def _route(path: str, model, summary: str):
    return model_route(router, path, model, summary)


def _plain_tokenizer(pipe):
    """A private copy of the model's tokenizer without truncation (the shared one's truncation is
    per-call state of the pipeline's)."""
    with _plain_lock:
        if pipe not in _plain_tokenizers:
            from tokenizers import Tokenizer

            tok = Tokenizer.from_str(pipe.tokenizer.raw.to_str())
            tok.no_truncation()
            tok.no_padding()
            _plain_tokenizers[pipe] = tok
        return _plain_tokenizers[pipe]


def _check_truncation(req, route: str, prompts: bool = False) -> None:
    """400 for what bertrt does not do: left truncation, and ``prompt_name`` where no prompt applies
    (``prompts``: /embed, where the model's own prompts do)."""
    if getattr(req, "truncation_direction", "Right").lower() == "left":
        raise HTTPProblem(
            400,
            "unsupported",
            f"{route}: truncation_direction 'Left' is not supported; bertrt cuts on the right",
        )
    if not prompts and getattr(req, "prompt_name", None) is not None:
        raise HTTPProblem(
            400, "unsupported", f"{route}: prompt_name is not supported: bertrt serves no prompts"
        )


def _pair_items(value) -> tuple[bool, list]:
    """(single, items) of TEI's ``/predict`` inputs: a str, a [str, str] pair, or a list of str, [str]
    and [str, str] (TEI's batch form)."""
    if isinstance(value, str):
        return True, [value]
    if len(value) == 2 and all(isinstance(v, str) for v in value):
        return True, [{"text": value[0], "text_pair": value[1]}]  # TEI: two strings are one pair
    items = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            items.append(item)
        elif len(item) == 1:
            items.append(item[0])
        elif len(item) == 2:
            items.append({"text": item[0], "text_pair": item[1]})
        else:
            raise HTTPProblem(
                400, "bad_request", f"/predict: 'inputs' at index {i} must be a string, [string] or a pair"
            )
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


def check_length(worker, items: list, prepared, truncate: bool, route: str) -> None:
    """With ``truncate`` false, 413 ``input_too_long`` (TEI's answer) for an input over the model's max
    length. The prepared encodings are cut at that length, so only an input whose encoding reaches it
    is tokenized again, uncut, to tell."""
    if truncate:
        return
    pipe, limit = worker.pipe, max_input_length(worker.pipe)
    sequences = prepared.encoded.sequences
    one_each = len(sequences) == len(items)
    suspects = [i for i in range(len(items)) if not one_each or len(sequences[i]) >= limit]
    if not suspects:
        return
    pieces = [
        (items[i]["text"], items[i]["text_pair"]) if isinstance(items[i], dict) else items[i]
        for i in suspects
    ]
    found = dict(zip(suspects, (len(e) for e in pipe.tokenizer.encode_batch(pieces, truncate=False))))
    long = [i for i in suspects if found[i] > limit]
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


async def _run(service, worker, request, items, params, transform, truncate, route) -> Response:
    """``items`` prepared once (their length checked unless ``truncate``), then run through the batcher."""
    prepared = await service.prepare(worker, items, params)
    check_length(worker, items, prepared, truncate, route)
    return json_response(await service.run(worker, request, items, params, transform, prepared))


def _pick(service: Service, call, req, model: str | None, tasks: tuple, route: str):
    worker = service.pick(req.model if req.model is not None else model, tasks, route, informational=True)
    call.use(worker)
    return worker


async def _tei(request: Request, model: str | None, work) -> Response:
    """Serve a TEI route: ``await work(service, request, call, body, model)`` on the body's JSON."""
    service = service_of(request)

    async def handler(request, call):
        return await work(service, request, call, await service.json(request), model)

    return await service.serve(request, handler, style="tei")


# -- the model routes ----------------------------------------------------------------------------------------
async def _embed(service, request, call, body, model, pooled: bool = True):
    route = "/embed" if pooled else "/embed_all"
    req = parse(EmbedRequest if pooled else EmbedAllRequest, body, route)
    tasks = EMBEDDING_TASKS if pooled else ("feature-extraction",)
    worker = _pick(service, call, req, model, tasks, route)
    _check_truncation(req, route, prompts=pooled)
    items = [req.inputs] if isinstance(req.inputs, str) else req.inputs
    check_texts(items, service.settings)
    if pooled:
        params, transform = embedding_params(
            worker.pipe, req.normalize is not False, prompt_name=req.prompt_name
        )
    else:
        params = {}

        def transform(results):  # (1, tokens, dim) per input -> (tokens, dim)
            return [r[0] for r in results]

    return await _run(service, worker, request, items, params, transform, bool(req.truncate), route)


async def _embed_all(service, request, call, body, model):
    return await _embed(service, request, call, body, model, pooled=False)


async def _similarity(service, request, call, body, model):
    req = parse(SimilarityRequest, body, "/similarity")
    worker = _pick(service, call, req, model, EMBEDDING_TASKS, "/similarity")
    return json_response(await similarity(service, worker, request, req.inputs))


async def _predict(service, request, call, body, model):
    req = parse(TeiPredictRequest, body, "/predict")
    worker = _pick(service, call, req, model, ("text-classification",), "/predict")
    _check_truncation(req, "/predict")
    single, items = _pair_items(req.inputs)
    check_texts(_strings(items), service.settings, count=len(items))
    params = {"top_k": None}
    if req.raw_scores:
        params["function_to_apply"] = "none"
    transform = (lambda results: results[0]) if single else None
    return await _run(service, worker, request, items, params, transform, bool(req.truncate), "/predict")


async def _rerank(service, request, call, body, model):
    req = parse(RerankRequest, body, "/rerank")
    worker = _pick(service, call, req, model, ("rerank", "text-classification"), "/rerank")
    if worker.pipe.task == "rerank":  # the cross-encoder task: its own activation, one ranked list
        _check_truncation(req, "/rerank")
        texts = check_texts(req.texts, service.settings, field="texts")
        check_texts([req.query], service.settings, field="query")
        params = {"documents": texts, "raw_scores": bool(req.raw_scores)}
        params["return_documents"] = bool(req.return_text)
        return await _run(
            service, worker, request, [req.query], params, lambda r: r[0], bool(req.truncate), "/rerank"
        )
    if worker.pipe.num_labels != 1:
        raise HTTPProblem(
            400,
            "not_a_reranker",
            f"/rerank needs a cross-encoder (a text-classification model with one output); model "
            f"{worker.name!r} has {worker.pipe.num_labels} labels: use /predict for it",
        )
    _check_truncation(req, "/rerank")
    texts = check_texts(req.texts, service.settings, field="texts")
    check_texts([req.query], service.settings, field="query")
    items = [{"text": req.query, "text_pair": text} for text in texts]
    return_text = req.return_text

    def transform(results):
        ranked = []
        for index, scores in enumerate(results):
            entry = {"index": index, "score": scores[0]["score"]}
            if return_text:
                entry["text"] = texts[index]
            ranked.append(entry)
        return sorted(ranked, key=lambda e: -e["score"])

    params = {"top_k": None, "function_to_apply": "none" if req.raw_scores else "sigmoid"}
    return await _run(service, worker, request, items, params, transform, bool(req.truncate), "/rerank")


async def _embed_sparse(service, request, call, body, model):
    req = parse(EmbedAllRequest, body, "/embed_sparse")
    worker = _pick(service, call, req, model, ("sparse-embedding",), "/embed_sparse")
    _check_truncation(req, "/embed_sparse")
    items = [req.inputs] if isinstance(req.inputs, str) else req.inputs
    check_texts(items, service.settings)

    def transform(results):  # TEI: [{index, value}] per input, by index
        return [
            [{"index": int(i), "value": float(v)} for i, v in zip(r["indices"], r["values"])] for r in results
        ]

    return await _run(service, worker, request, items, {}, transform, bool(req.truncate), "/embed_sparse")


async def _by_model_type(service, request, call, body, model):
    """``POST /``: the route of the model's type, as TEI routes it."""
    name = body.get("model") if isinstance(body, dict) and isinstance(body.get("model"), str) else model
    worker = service.pick(name, (), "/", informational=True)
    task = worker.pipe.task
    if task in EMBEDDING_TASKS:
        similar = isinstance(body, dict) and isinstance(body.get("inputs"), dict)
        return await (_similarity if similar else _embed)(service, request, call, body, worker.name)
    if task == "sparse-embedding":
        return await _embed_sparse(service, request, call, body, worker.name)
    if task == "rerank" and isinstance(body, dict) and "query" in body:
        return await _rerank(service, request, call, body, worker.name)
    if task == "text-classification":
        rerank = worker.pipe.num_labels == 1 and isinstance(body, dict) and "query" in body
        return await (_rerank if rerank else _predict)(service, request, call, body, worker.name)
    call.use(worker)
    if worker.failed:
        raise worker.unavailable()
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k in PredictRequest.model_fields}
    req = parse_request(body, service.settings, route="/")
    return json_response(await run_predict(service, worker, request, req))


@_route(
    "/",
    PredictRequest,
    "TEI: the route of the model's type (embed, predict, rerank; else the model's predict)",
)
async def root(request: Request, model: str | None = None):
    return await _tei(request, model, _by_model_type)


@_route("/embed_sparse", EmbedAllRequest, "TEI: one sparse (SPLADE) vector per input")
async def embed_sparse(request: Request, model: str | None = None):
    return await _tei(request, model, _embed_sparse)


@_route("/embed", EmbedRequest, "TEI: one pooled embedding per input")
async def embed(request: Request, model: str | None = None):
    return await _tei(request, model, _embed)


@_route("/embed_all", EmbedAllRequest, "TEI: the token embeddings of each input")
async def embed_all(request: Request, model: str | None = None):
    return await _tei(request, model, _embed_all)


@_route("/similarity", SimilarityRequest, "TEI: cosine similarity of a sentence to each of others")
async def similarity_route(request: Request, model: str | None = None):
    return await _tei(request, model, _similarity)


@_route("/predict", TeiPredictRequest, "TEI: every label's score for each input (or text pair)")
async def predict(request: Request, model: str | None = None):
    return await _tei(request, model, _predict)


@_route("/rerank", RerankRequest, "TEI: the texts ranked by a cross-encoder's score against the query")
async def rerank(request: Request, model: str | None = None):
    return await _tei(request, model, _rerank)


# -- the tokenizer routes ------------------------------------------------------------------------------------
def byte_offsets(text: str) -> np.ndarray:
    """``out[i]``: the UTF-8 byte offset of character ``i`` of ``text`` (``out[len(text)]``: its size)."""
    sizes = np.fromiter(
        (len(c.encode("utf-8", "surrogatepass")) for c in text), dtype=np.int64, count=len(text)
    )
    return np.concatenate(([0], np.cumsum(sizes)))


async def _tokenize(service, request, call, body, model):
    req = parse(TokenizeRequest, body, "/tokenize")
    worker = _pick(service, call, req, model, (), "/tokenize")
    _check_truncation(req, "/tokenize")
    texts = check_texts([req.inputs] if isinstance(req.inputs, str) else req.inputs, service.settings)
    tok = _plain_tokenizer(worker.pipe)
    add_special = req.add_special_tokens is not False

    def run():
        out = []
        for text, enc in zip(texts, tok.encode_batch(texts, add_special_tokens=add_special)):
            at = byte_offsets(text)
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
                            "start": int(at[start]),
                            "stop": int(at[stop]),
                        }
                    )
            out.append(tokens)
        return out

    return JSONResponse(await _off_loop(sum(map(len, texts)), run))


async def _decode(service, request, call, body, model):
    req = parse(DecodeRequest, body, "/decode")
    worker = _pick(service, call, req, model, (), "/decode")
    ids = req.ids
    batch = [ids] if not ids or not isinstance(ids[0], list) else ids
    settings = service.settings
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
    skip = req.skip_special_tokens is not False

    def run():
        return [tokenizer.decode(seq, skip_special_tokens=skip) for seq in batch]

    return JSONResponse(await _off_loop(sum(map(len, batch)), run))


@_route("/tokenize", TokenizeRequest, "TEI: the tokens of each input, with their UTF-8 byte offsets")
async def tokenize(request: Request, model: str | None = None):
    return await _tei(request, model, _tokenize)


@_route("/decode", DecodeRequest, "TEI: the text of token ids")
async def decode(request: Request, model: str | None = None):
    return await _tei(request, model, _decode)


@router.get("/info", summary="TEI: the model and the server's limits")
async def info(request: Request, model: str | None = None):
    service = service_of(request)

    async def handler(request, call):
        worker = service.pick(model, (), "/info", informational=True)
        pipe = worker.pipe
        settings = service.settings
        labels = {int(i): name for i, name in sorted(pipe.id2label.items())} if pipe.id2label else {}
        mapping = {
            "id2label": {str(i): n for i, n in labels.items()},
            "label2id": {n: i for i, n in labels.items()},
        }
        if pipe.task in EMBEDDING_TASKS:
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
                "max_input_length": max_input_length(pipe),
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

    return await service.serve(request, handler, style="tei")
