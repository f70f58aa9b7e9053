"""The compatible routes over real HTTP (requests, urllib, httpx, and the real ``openai`` and
``huggingface_hub`` clients): text-embeddings-inference's ``/ /embed /embed_all /similarity /predict
/rerank /tokenize /decode /info``, OpenAI's ``/v1/embeddings``, the Inference API's shape of
``/models/{name}/predict``, and ``/ner``.

Each route's answer must have the shape of the recorded example of the original API
(``fixtures/compat_examples.json``: the same keys, nesting and JSON types), and its numbers must equal
direct pipeline calls on the same fp32 bundles within 1e-4 (a batch pads texts to a common length, which
moves fp32 results by float rounding only). Model selection: two embedding models are served, so the
embedding routes must be told which (``?model=`` / ``model``), and answer 400/404 naming the served
models otherwise.
"""

from __future__ import annotations

import base64
import json
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
import requests

from tests.serve.fakes import FakePipe
from tests.serve.test_serve_faults import ThreadServer

TOL = 1e-4
EXAMPLES = json.loads((Path(__file__).parent / "fixtures" / "compat_examples.json").read_text())
TEXTS = ["Maria loves Groningen.", "Paris is in France and Berlin is in Germany", "x"]


def same_shape(got, example, where="answer"):
    """``got`` has ``example``'s JSON shape: dict keys (the example's, at least), list nesting, types."""
    if example is None:  # a nullable field: any value
        return
    if isinstance(example, dict):
        assert isinstance(got, dict), f"{where}: {got!r} is not an object"
        missing = set(example) - set(got)
        assert not missing, f"{where}: missing keys {sorted(missing)}"
        for key in example:
            same_shape(got[key], example[key], f"{where}.{key}")
    elif isinstance(example, list):
        assert isinstance(got, list), f"{where}: {type(got).__name__} is not a list"
        if example:
            assert got, f"{where}: empty"
            for i, item in enumerate(got):
                same_shape(item, example[min(i, len(example) - 1)], f"{where}[{i}]")
    elif isinstance(example, bool):
        assert isinstance(got, bool), f"{where}: {got!r} is not a bool"
    elif isinstance(example, (int, float)):
        assert isinstance(got, (int, float)) and not isinstance(got, bool), (
            f"{where}: {got!r} is not a number"
        )
    else:
        assert isinstance(got, type(example)), f"{where}: {got!r} is not a {type(example).__name__}"


def close(got, expected, where="value"):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{where}: shape {got.shape} != {expected.shape}"
    assert np.abs(got - expected).max(initial=0) <= TOL, f"{where}: max diff {np.abs(got - expected).max()}"


@pytest.fixture(scope="module")
def pipes(tiny_bundle):
    import bertrt

    folders = {
        "emb": tiny_bundle("bert", "feature-extraction"),
        "ner": tiny_bundle("bert", "token-classification"),
        "cls": tiny_bundle("bert", "text-classification"),
    }
    made = {name: bertrt.pipeline(None, f, precision="fp32", threads=1) for name, f in folders.items()}
    made["emb2"] = bertrt.pipeline(None, folders["emb"], precision="fp32", threads=1)
    return made


@pytest.fixture(scope="module")
def server(pipes):
    from bertrt.serve import ServeSettings

    srv = ThreadServer(dict(pipes), ServeSettings(max_wait_ms=5, max_texts=8, max_body_bytes=100_000))
    yield srv
    srv.stop()


def _post(server, route, body, model=None):
    params = {"model": model} if model else None
    return requests.post(f"{server.url}{route}", json=body, params=params, timeout=60)


# -- text-embeddings-inference ----------------------------------------------------------------------------
def test_embed_matches_the_example_and_the_pipeline(server, pipes):
    for key in ("tei_embed", "tei_embed_batch"):
        example = EXAMPLES[key]
        response = _post(server, "/embed", example["request"], model="emb")
        assert response.status_code == 200, response.text
        same_shape(response.json(), example["response"])
    got = _post(server, "/embed", {"inputs": TEXTS}, model="emb").json()
    close(got, pipes["emb"](TEXTS, pooling="mean", normalize=True), "/embed")
    raw = _post(server, "/embed", {"inputs": TEXTS[0], "normalize": False}, model="emb").json()
    close(raw, [pipes["emb"](TEXTS[0], pooling="mean")], "/embed normalize=false")


def test_embed_all_matches_the_example_and_the_pipeline(server, pipes):
    example = EXAMPLES["tei_embed_all"]
    response = _post(server, "/embed_all", example["request"], model="emb")
    assert response.status_code == 200, response.text
    same_shape(response.json(), example["response"])
    got = _post(server, "/embed_all", {"inputs": TEXTS[:2]}, model="emb").json()
    for i, text in enumerate(TEXTS[:2]):
        close(got[i], pipes["emb"](text)[0], f"/embed_all[{i}]")


def test_truncate_false_is_tei_s_413_for_a_long_input(server, pipes):
    long = " ".join(["word"] * 200)  # the tiny models take 64 tokens
    response = _post(server, "/embed", {"inputs": long}, model="emb")
    assert response.status_code == 413 and response.json()["code"] == "input_too_long"
    assert response.json()["error_type"] == "Validation"
    cut = _post(server, "/embed", {"inputs": long, "truncate": True}, model="emb").json()
    close(cut, [pipes["emb"](long, pooling="mean", normalize=True)], "/embed truncate=true")


def test_predict_single_pair_and_batch_match_the_examples_and_the_pipeline(server, pipes):
    cls = pipes["cls"]
    for key in ("tei_predict", "tei_predict_pair", "tei_predict_batch"):
        example = EXAMPLES[key]
        response = _post(server, "/predict", example["request"])  # one classifier served: no model needed
        assert response.status_code == 200, response.text
        same_shape(response.json(), example["response"])
    one = _post(server, "/predict", {"inputs": TEXTS[0]}).json()
    expected = cls(TEXTS[0], top_k=None)
    assert [e["label"] for e in one] == [e["label"] for e in expected]
    close([e["score"] for e in one], [e["score"] for e in expected])
    pair = _post(
        server, "/predict", {"inputs": ["a question", "an answer"]}
    ).json()  # TEI: 2 strings = 1 pair
    close(
        [e["score"] for e in pair],
        [e["score"] for e in cls({"text": "a question", "text_pair": "an answer"}, top_k=None)],
    )
    batch = _post(
        server, "/predict", {"inputs": [TEXTS[0], [TEXTS[1], TEXTS[2]], TEXTS[2]], "raw_scores": True}
    ).json()
    items = [TEXTS[0], {"text": TEXTS[1], "text_pair": TEXTS[2]}, TEXTS[2]]
    for got, want in zip(batch, cls(items, top_k=None, function_to_apply="none")):
        assert [e["label"] for e in got] == [e["label"] for e in want]
        close([e["score"] for e in got], [e["score"] for e in want])


def test_rerank_needs_a_cross_encoder(server):
    response = _post(server, "/rerank", EXAMPLES["tei_rerank"]["request"])
    assert response.status_code == 400 and response.json()["code"] == "not_a_reranker"
    assert "3 labels" in response.json()["error"] and "/predict" in response.json()["error"]


def test_tokenize_and_decode_match_the_examples_and_the_tokenizer(server, pipes):
    example = EXAMPLES["tei_tokenize"]
    response = _post(server, "/tokenize", example["request"], model="ner")
    assert response.status_code == 200, response.text
    same_shape(response.json(), example["response"])
    text = "Maria loves Groningen"
    (tokens,) = _post(server, "/tokenize", {"inputs": text}, model="ner").json()
    view = pipes["ner"].tokenize(text)
    assert [t["id"] for t in tokens] == view["ids"]
    assert [t["special"] for t in tokens] == [w is None for w in view["word_ids"]]
    for token, (start, stop) in zip(tokens, view["offsets"]):
        if not token["special"]:
            assert (token["start"], token["stop"]) == (start, stop) and token["text"] == text[start:stop]
        else:
            assert token["start"] is None and token["stop"] is None
    (plain,) = _post(server, "/tokenize", {"inputs": text, "add_special_tokens": False}, model="ner").json()
    assert [t["id"] for t in plain] == [t["id"] for t in tokens if not t["special"]]

    example = EXAMPLES["tei_decode"]
    ids = view["ids"]
    decoded = _post(server, "/decode", {"ids": ids}, model="ner").json()
    same_shape(decoded, example["response"])
    assert decoded == [pipes["ner"].tokenizer.decode(ids, skip_special_tokens=True)]
    both = _post(server, "/decode", {"ids": [ids, ids[:2]], "skip_special_tokens": False}, model="ner").json()
    assert both == [pipes["ner"].tokenizer.decode(ids), pipes["ner"].tokenizer.decode(ids[:2])]
    bad = _post(server, "/decode", {"ids": [10**9]}, model="ner")
    assert bad.status_code == 422 and bad.json()["code"] == "bad_ids"


def test_info_matches_the_example(server, pipes):
    response = requests.get(f"{server.url}/info", params={"model": "emb"})
    assert response.status_code == 200, response.text
    same_shape(response.json(), EXAMPLES["tei_info"]["response"])
    info = response.json()
    assert info["model_id"] == "emb" and info["model_type"] == {"embedding": {"pooling": "mean"}}
    assert info["max_input_length"] == pipes["emb"].max_length and info["max_client_batch_size"] == 8
    cls = requests.get(f"{server.url}/info", params={"model": "cls"}).json()
    assert cls["model_type"]["classifier"]["id2label"] == {"0": "negative", "1": "neutral", "2": "positive"}


# -- OpenAI -----------------------------------------------------------------------------------------------
def _urllib_post(server, route, body):
    request = urllib.request.Request(
        f"{server.url}{route}", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_openai_embeddings_float_and_base64(server, pipes):
    example = EXAMPLES["openai_embeddings"]
    got = _urllib_post(server, "/v1/embeddings", {**example["request"], "model": "emb"})
    same_shape(got, example["response"])
    text = example["request"]["input"]
    assert got["model"] == "emb" and got["data"][0]["index"] == 0
    close(got["data"][0]["embedding"], pipes["emb"](text, pooling="mean", normalize=True))
    tokens = len(pipes["emb"].tokenize(text)["ids"])
    assert got["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}

    example = EXAMPLES["openai_embeddings_base64"]
    got = _urllib_post(server, "/v1/embeddings", {**example["request"], "model": "emb2"})
    same_shape(got, example["response"])
    expected = pipes["emb"](example["request"]["input"], pooling="mean", normalize=True)
    for item, want in zip(got["data"], expected):
        vector = np.frombuffer(base64.b64decode(item["embedding"]), dtype="<f4")  # as the openai SDK decodes
        close(vector, want, "base64")
    assert [d["index"] for d in got["data"]] == [0, 1]


def test_openai_errors(server):
    url = f"{server.url}/v1/embeddings"
    cases = [
        ({"input": "x"}, 400, "model_required"),
        ({"input": "x", "model": "gpt"}, 404, "model_not_found"),
        ({"input": "x", "model": "ner"}, 400, "wrong_task"),
        ({"input": [1, 2, 3], "model": "emb"}, 400, "bad_request"),
        ({"input": [], "model": "emb"}, 400, "bad_request"),
        ({"input": "x", "model": "emb", "encoding_format": "int8"}, 400, "bad_request"),
        ({"input": "x", "model": "emb", "dimensions": 1000}, 400, "bad_request"),
        ({"input": "x", "model": "emb", "temperature": 1}, 400, "bad_request"),
    ]
    with httpx.Client() as client:
        for body, status, code in cases:
            response = client.post(url, json=body)
            error = response.json()["error"]  # OpenAI's error object on /v1/*
            assert (response.status_code, error["code"]) == (status, code), (body, response.text)
            assert set(error) == {"message", "type", "param", "code"} and error["message"]
            assert error["type"] == ("not_found_error" if status == 404 else "invalid_request_error")
    served = httpx.post(url, json={"input": "x"}).json()["error"]
    assert served["param"] == "model" and "emb2 (feature-extraction)" in served["message"]
    unknown = httpx.post(url, json={"input": "x", "model": "emb", "temperature": 1}).json()["error"]
    assert unknown["param"] == "temperature" and "temperature" in unknown["message"]
    no_route = httpx.post(f"{server.url}/v1/chat/completions", json={}).json()
    assert no_route["error"]["code"] == "not_found"  # the framework's own 404 in OpenAI's shape too
    assert httpx.post(f"{server.url}/nope", json={}).json()["code"] == "not_found"  # bertrt's elsewhere


# -- model selection and /ner -----------------------------------------------------------------------------
def test_a_route_picks_its_model_or_names_the_served_ones(server):
    ambiguous = _post(server, "/embed", {"inputs": "x"})
    assert ambiguous.status_code == 400 and ambiguous.json()["code"] == "model_required"
    assert ambiguous.json()["models"] == ["emb", "emb2"] and ambiguous.json()["error_type"] == "Validation"
    unknown = _post(server, "/embed", {"inputs": "x"}, model="nope")
    assert unknown.status_code == 404 and "served: emb (feature-extraction)" in unknown.json()["error"]
    wrong = _post(server, "/embed", {"inputs": "x"}, model="cls")
    assert wrong.status_code == 400 and wrong.json()["code"] == "wrong_task"
    in_body = _post(server, "/embed", {"inputs": "x", "model": "emb2"})
    assert in_body.status_code == 200
    assert _post(server, "/tokenize", {"inputs": "x"}).json()["code"] == "model_required"
    assert requests.get(f"{server.url}/info").status_code == 400
    ignored = _post(server, "/embed", {"inputs": "x", "pooling": "cls", "parameters": {}}, model="emb")
    assert ignored.status_code == 200  # TEI ignores unknown fields (huggingface_hub sends parameters)


def test_ner_route_gives_entity_groups(server, pipes):
    got = _post(server, "/ner", {"inputs": TEXTS}).json()
    expected = pipes["ner"](TEXTS, aggregation_strategy="simple")
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert [(x["entity_group"], x["start"], x["end"]) for x in g] == [
            (x["entity_group"], x["start"], x["end"]) for x in e
        ]
        close([x["score"] for x in g], [x["score"] for x in e])
    tokens = _post(
        server, "/ner", {"inputs": TEXTS[0], "parameters": {"aggregation_strategy": "none"}}
    ).json()
    assert [t["word"] for t in tokens] == [t["word"] for t in pipes["ner"](TEXTS[0])]
    assert _post(server, "/ner", {"inputs": "x", "model": "cls"}).json()["code"] == "wrong_task"


def test_tei_route_metrics_are_counted_per_model(server):
    before = server.sample("bertrt_requests_total", model="emb2")
    _post(server, "/embed", {"inputs": "x"}, model="emb2")
    _post(server, "/embed", {"inputs": ["a"] * 9}, model="emb2")  # over max_texts: 422
    assert server.sample("bertrt_requests_total", model="emb2") == before + 2
    assert server.sample("bertrt_errors_total", model="emb2", code="too_many_texts") >= 1


# -- rerank on a cross-encoder (a fake one: the tiny classifiers have 3 labels) ----------------------------
class CrossEncoderPipe(FakePipe):
    """A one-label text-classification pipe whose score of a pair is len(text_pair) / 100."""

    task = "text-classification"
    num_labels = 1
    id2label = {0: "LABEL_0"}
    max_length = 64
    tokenizer = SimpleNamespace(encode_batch=lambda items, truncate=True: [[0] * 5 for _ in items])

    def __call__(self, inputs, batch_size: int = 32, top_k=None, function_to_apply=None):
        items = inputs if isinstance(inputs, list) else [inputs]
        if not items:  # the parameter check (no texts)
            return []
        self.calls.append((items, batch_size, {"function_to_apply": function_to_apply}))
        scores = [len(i["text_pair"]) / 100 if isinstance(i, dict) else 0.5 for i in items]
        return [[{"label": "LABEL_0", "score": s}] for s in scores]

    def shape(self, results, inputs, **options):
        return results


def test_rerank_orders_the_texts_by_the_cross_encoder_score(serve):
    srv = serve({"rr": CrossEncoderPipe()}, max_wait_ms=0)
    example = EXAMPLES["tei_rerank"]
    texts = ["short", "a much longer text", "medium text"]
    response = requests.post(f"{srv.url}/rerank", json={"query": "q", "texts": texts, "return_text": True})
    assert response.status_code == 200, response.text
    same_shape(response.json(), example["response"])
    assert response.json() == [
        {"index": 1, "score": 0.18, "text": "a much longer text"},
        {"index": 2, "score": 0.11, "text": "medium text"},
        {"index": 0, "score": 0.05, "text": "short"},
    ]
    plain = requests.post(f"{srv.url}/rerank", json={"query": "q", "texts": texts, "raw_scores": True}).json()
    assert [r["index"] for r in plain] == [1, 2, 0] and all("text" not in r for r in plain)
    calls = srv.app.state.workers["rr"].pipe.calls
    assert calls[-1][2] == {"function_to_apply": "none"} and calls[-2][2] == {"function_to_apply": "sigmoid"}
    assert calls[-1][0][0] == {"text": "q", "text_pair": "short"}


@pytest.fixture
def serve():
    from bertrt.serve import ServeSettings

    started = []

    def start(pipelines, **settings):
        srv = ThreadServer(pipelines, ServeSettings(**settings))
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


# -- the real clients: openai and huggingface_hub -----------------------------------------------------------
def test_the_openai_sdk_gets_vectors_and_shows_the_reason_of_an_error(server, pipes):
    import openai

    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    got = client.embeddings.create(model="emb", input=TEXTS)  # the SDK asks for base64 by default
    close([d.embedding for d in got.data], pipes["emb"](TEXTS, pooling="mean", normalize=True))
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="gpt", input="x")
    assert "no model named 'gpt'" in str(caught.value) and caught.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model="emb", input="x", dimensions=1000)
    assert "32-dimensional" in str(caught.value) and caught.value.param == "dimensions"


@pytest.fixture
def hub(monkeypatch):
    """huggingface_hub's InferenceClient class, allowed to reach the loopback servers (the suite runs
    offline: HF_HUB_OFFLINE=1 makes its HTTP session refuse every address)."""
    from huggingface_hub import InferenceClient, constants
    from huggingface_hub.utils import reset_sessions

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    reset_sessions()
    yield InferenceClient
    monkeypatch.undo()
    reset_sessions()


@pytest.fixture(scope="module")
def one_model(pipes):
    """A server of one embedding model (its name is informational, and POST / is its /embed)."""
    from bertrt.serve import ServeSettings

    srv = ThreadServer({"emb": pipes["emb"]}, ServeSettings(max_wait_ms=1))
    yield srv
    srv.stop()


def test_with_one_model_served_the_model_name_is_informational(one_model, pipes):
    import openai

    client = openai.OpenAI(base_url=f"{one_model.url}/v1", api_key="unused", max_retries=0)
    got = client.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
    assert got.model == "emb"
    close(got.data[0].embedding, pipes["emb"]("x", pooling="mean", normalize=True))
    assert _post(one_model, "/embed", {"inputs": "x", "model": "anything"}).status_code == 200


def test_inference_client_on_the_root_route_embeds_and_compares_sentences(one_model, pipes, hub):
    client = hub(model=one_model.url)  # posts to /, always with "parameters"
    vector = client.feature_extraction(TEXTS[0])
    close(np.asarray(vector).reshape(-1), pipes["emb"](TEXTS[0], pooling="mean", normalize=True))
    scores = client.sentence_similarity(TEXTS[0], other_sentences=TEXTS[1:])
    unit = np.asarray(pipes["emb"](TEXTS, pooling="mean", normalize=True))
    close(scores, unit[1:] @ unit[0])


def test_inference_client_on_the_model_route(server, pipes, hub):
    cls = hub(model=f"{server.url}/models/cls/predict")
    top3 = cls.text_classification(TEXTS[0], top_k=3)  # parses [[{label, score}, ...]], takes element 0
    want = pipes["cls"](TEXTS[0], top_k=3)
    assert [e.label for e in top3] == [w["label"] for w in want]
    close([e.score for e in top3], [w["score"] for w in want])
    (best,) = cls.text_classification(TEXTS[0])
    assert best.label == want[0]["label"]
    ner = hub(model=f"{server.url}/models/ner/predict")
    entities = ner.token_classification(TEXTS[1], aggregation_strategy="simple")
    want = pipes["ner"](TEXTS[1], aggregation_strategy="simple")
    assert [(e.entity_group, e.start, e.end) for e in entities] == [
        (w["entity_group"], w["start"], w["end"]) for w in want
    ]
    similar = hub(model=f"{server.url}/models/emb/predict")
    unit = np.asarray(pipes["emb"](TEXTS, pooling="mean", normalize=True))
    close(similar.sentence_similarity(TEXTS[0], other_sentences=TEXTS[1:]), unit[1:] @ unit[0])


def test_the_model_route_takes_a_text_pair_as_the_inference_api_does(server, pipes):
    pair = {"text": TEXTS[0], "text_pair": TEXTS[1]}
    got = _post(server, "/models/cls/predict", {"inputs": pair, "parameters": {"top_k": None}})
    assert got.status_code == 200, got.text
    want = pipes["cls"](pair, top_k=None)
    assert [g["label"] for g in got.json()[0]] == [w["label"] for w in want]
    close([g["score"] for g in got.json()[0]], [w["score"] for w in want])


def test_tei_predict_takes_the_batch_form_and_ignores_parameters(server, pipes):
    body = {"inputs": [[TEXTS[0]], [TEXTS[1], TEXTS[2]]], "parameters": {"top_k": 1}}
    got = _post(server, "/predict", body, model="cls")
    assert got.status_code == 200, got.text
    want = pipes["cls"]([TEXTS[0], {"text": TEXTS[1], "text_pair": TEXTS[2]}], top_k=None)
    assert len(got.json()) == 2
    for g, w in zip(got.json(), want):
        assert [x["label"] for x in g] == [x["label"] for x in w]
        close([x["score"] for x in g], [x["score"] for x in w])


def test_tei_tokenize_gives_utf8_byte_offsets(server, pipes):
    text = "Zoë flew to Zürich ✈ today"
    (tokens,) = _post(server, "/tokenize", {"inputs": text}, model="ner").json()
    view = pipes["ner"].tokenize(text)  # bertrt's own view: character offsets
    assert [t["id"] for t in tokens] == view["ids"]
    for token, (start, stop) in zip(tokens, view["offsets"]):
        if token["special"]:
            assert token["start"] is None and token["stop"] is None
        else:
            assert token["start"] == len(text[:start].encode()) and token["stop"] == len(text[:stop].encode())
            assert text.encode()[token["start"] : token["stop"]].decode() == token["text"]
    assert any(t["stop"] is not None and t["stop"] > 20 for t in tokens)  # past the multi-byte characters


def test_a_request_is_tokenized_once(server, pipes, monkeypatch):
    """The token budget counts the encodings the batch then runs: one tokenizer call per request."""
    calls = []
    for name in ("cls", "emb"):
        tokenizer = pipes[name].tokenizer
        for method in ("encode_batch", "encode_windows"):
            original = getattr(tokenizer, method)

            def counted(*args, _original=original, _name=name, **kwargs):
                calls.append(_name)
                return _original(*args, **kwargs)

            monkeypatch.setattr(tokenizer, method, counted)
    for route, body, model in (
        ("/models/cls/predict", {"inputs": TEXTS}, None),
        ("/predict", {"inputs": TEXTS}, "cls"),
        ("/embed", {"inputs": TEXTS}, "emb"),
        ("/v1/embeddings", {"input": TEXTS, "model": "emb"}, None),
    ):
        calls.clear()
        response = _post(server, route, body, model=model)
        assert response.status_code == 200, response.text
        assert len(calls) == 1, (route, calls)
