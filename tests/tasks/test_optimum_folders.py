"""Plain Optimum export folders (graph, config.json, tokenizer; no bundle.json) served as the retrieval /
NLU tasks: a feature-extraction export as sentence-embedding (mean pooling, as sentence-transformers pools a
plain checkpoint), a text-classification export of an NLI head as zero-shot and of a cross-encoder as
rerank; each equal to its reference at fp32."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bertrt
from tests.fixtures_runtime import _export_with_optimum
from tests.tasks.test_sparse_rerank import cross_encoder  # noqa: F401 (fixture)
from tests.tasks.test_zq_parity import ZS_CASES, ZS_TEXTS, _reference, _same_zero_shot
from tests.tasks.zq_models import zq_checkpoint

st = pytest.importorskip("sentence_transformers")
pytest.importorskip("optimum")

TOL = 1e-4
TEXTS = ["Maria loves Groningen.", "John Smith works at Acme Corp. in New York City!", "a"]


def test_a_feature_extraction_folder_as_sentence_embedding(tiny_checkpoint, optimum_folder):
    checkpoint = tiny_checkpoint("bert", "feature-extraction")
    pipe = bertrt.pipeline(
        "sentence-embedding", optimum_folder("bert", "feature-extraction"), precision="fp32"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = st.SentenceTransformer(str(checkpoint), device="cpu").encode(TEXTS)
    assert np.abs(pipe(TEXTS) - reference).max() <= TOL


def test_a_text_classification_folder_as_zero_shot(model_cache):
    task = "zero-shot-classification"
    checkpoint = zq_checkpoint(model_cache, "bert", task)
    folder = model_cache.get(
        "optimum-nli-bert", lambda out: _export_with_optimum(checkpoint, out, "text-classification")
    )
    pipe = bertrt.pipeline(task, folder, precision="fp32")
    ref = _reference(task, checkpoint)
    for options in ZS_CASES[:3]:
        for got, want in zip(pipe(ZS_TEXTS, **options), ref(ZS_TEXTS, **options)):
            _same_zero_shot(got, want)


def test_a_text_classification_folder_as_rerank(cross_encoder, model_cache):  # noqa: F811
    folder, _ = cross_encoder("bert")
    exported = model_cache.get(
        "optimum-ce-bert", lambda out: _export_with_optimum(folder, out, "text-classification")
    )
    pipe = bertrt.pipeline("rerank", exported, precision="fp32")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = st.CrossEncoder(str(folder), device="cpu").predict([(TEXTS[0], d) for d in TEXTS])
    for r in pipe(TEXTS[0], documents=TEXTS):
        assert abs(r["score"] - float(scores[r["index"]])) <= TOL
