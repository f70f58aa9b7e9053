"""The embedding routes serve what the bundle's sentence-transformers settings say (issue 18 item 1):
CLS-, mean- and max-pooled models, as sentence-embedding bundles and as feature-extraction bundles that
carry the settings, through TEI's /embed and OpenAI's /v1/embeddings (the real ``openai`` client), equal
to ``SentenceTransformer.encode``; ``dimensions`` cuts then renormalizes; /info reports max_seq_length."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest
import requests

from tests.serve.test_serve_faults import ThreadServer
from tests.tasks.test_sentence_embedding import st_model  # noqa: F401  (the fixture)

TEXTS = ["Maria loves Groningen.", "Paris is in France and Berlin is in Germany", "x"]
TOL = 1e-4
POOLINGS = ("cls", "mean-norm", "max")


@pytest.fixture(scope="module")
def served(st_model, tmp_path_factory):  # noqa: F811
    """A server of each pooling as sentence-embedding (``se-KEY``) and feature-extraction (``fe-KEY``)
    bundles, plus the max_seq_length=12 model; and the reference models."""
    import bertrt
    from bertrt.bundle import MANIFEST
    from bertrt.serve import ServeSettings

    pipes, models = {}, {}
    for key in (*POOLINGS, "short"):
        model, bundle = st_model("bert", key)
        models[key] = model
        pipes[f"se-{key}"] = bertrt.pipeline(None, bundle, precision="fp32", threads=1)
        fe = tmp_path_factory.mktemp("fe") / key
        shutil.copytree(bundle, fe)
        manifest = json.loads((fe / MANIFEST).read_text())
        (fe / MANIFEST).write_text(json.dumps({**manifest, "task": "feature-extraction"}))
        pipes[f"fe-{key}"] = bertrt.pipeline(None, fe, precision="fp32", threads=1)
    assert pipes["se-cls"].task == "sentence-embedding" and pipes["fe-cls"].task == "feature-extraction"
    server = ThreadServer(pipes, ServeSettings(max_wait_ms=2, max_texts=16))
    yield server, models
    server.stop()


def close(got, expected, where):
    got, expected = np.asarray(got, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    assert got.shape == expected.shape, f"{where}: {got.shape} != {expected.shape}"
    assert np.abs(got - expected).max() <= TOL, f"{where}: max diff {np.abs(got - expected).max()}"


@pytest.mark.parametrize("kind", ["se", "fe"])
@pytest.mark.parametrize("key", POOLINGS)
def test_embed_and_openai_serve_the_checkpoint_s_pooling(served, key, kind):
    import openai

    server, models = served
    name = f"{kind}-{key}"
    want = models[key].encode(TEXTS, normalize_embeddings=True)
    got = requests.post(f"{server.url}/embed", json={"inputs": TEXTS, "model": name}, timeout=60)
    assert got.status_code == 200, got.text
    close(got.json(), want, f"/embed {name}")
    client = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0)
    answer = client.embeddings.create(model=name, input=TEXTS)  # the SDK asks for base64 and decodes it
    close([d.embedding for d in answer.data], want, f"/v1/embeddings {name} base64")
    answer = client.embeddings.create(model=name, input=TEXTS, encoding_format="float")
    close([d.embedding for d in answer.data], want, f"/v1/embeddings {name} float")
    raw = client.embeddings.create(model=name, input=TEXTS[:1], encoding_format="base64").data[0].embedding
    close(np.frombuffer(base64.b64decode(raw), dtype="<f4"), want[0], f"/v1/embeddings {name} raw base64")
    short = client.embeddings.create(model=name, input=TEXTS, dimensions=8)
    cut = models[key].encode(TEXTS, truncate_dim=8, normalize_embeddings=True)
    close([d.embedding for d in short.data], cut, f"/v1/embeddings {name} dimensions=8")
    info = requests.get(f"{server.url}/info", params={"model": name}, timeout=60).json()
    assert info["model_type"]["embedding"]["pooling"] == key.removesuffix("-norm")


def test_max_seq_length_is_the_served_input_length(served):
    server, models = served
    long = "Paris is in France and Berlin is in Germany, and both are large cities."
    info = requests.get(f"{server.url}/info", params={"model": "se-short"}, timeout=60).json()
    assert info["max_input_length"] == 12
    refused = requests.post(f"{server.url}/embed", json={"inputs": long, "model": "se-short"}, timeout=60)
    assert refused.status_code == 413 and refused.json()["code"] == "input_too_long"
    cut = requests.post(
        f"{server.url}/embed", json={"inputs": long, "model": "se-short", "truncate": True}, timeout=60
    )
    close(cut.json(), models["short"].encode([long], normalize_embeddings=True), "/embed truncate")


def test_prompt_name_on_embed(served):
    server, models = served
    # ST >= 5.4 saves empty "query" / "document" prompts: the name resolves, the vector is unchanged
    got = requests.post(
        f"{server.url}/embed", json={"inputs": TEXTS, "model": "se-cls", "prompt_name": "query"}, timeout=60
    )
    assert got.status_code == 200, got.text
    close(got.json(), models["cls"].encode(TEXTS, prompt_name="query", normalize_embeddings=True), "prompt")
    bad = requests.post(
        f"{server.url}/embed", json={"inputs": TEXTS, "model": "se-cls", "prompt_name": "nope"}, timeout=60
    )
    assert bad.status_code == 400 and "nope" in bad.text


def test_inference_client_on_the_model_route(served, monkeypatch):
    from huggingface_hub import InferenceClient, constants
    from huggingface_hub.utils import reset_sessions

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite runs offline; loopback is fine
    reset_sessions()
    try:
        server, models = served
        client = InferenceClient(model=f"{server.url}/models/se-cls/predict")
        vector = np.asarray(client.feature_extraction(TEXTS[0])).reshape(-1)
        close(vector, models["cls"].encode(TEXTS[0]), "feature_extraction")
        scores = client.sentence_similarity(TEXTS[0], other_sentences=TEXTS[1:])
        unit = models["cls"].encode(TEXTS, normalize_embeddings=True)
        close(scores, unit[1:] @ unit[0], "sentence_similarity")
    finally:
        monkeypatch.undo()
        reset_sessions()
