"""The real all-MiniLM-L6-v2 exported with no --task: sentence-embedding (inferred from modules.json),
equal to ``SentenceTransformer.encode`` at fp32 (max_seq_length 256, not the tokenizer's 512) through the
API and ``bertrt predict``; int8 cosine to fp32 >= 0.99 mean; a tiny CLS-pooled checkpoint exported the
same way; ``bertrt batch``'s result type."""

from __future__ import annotations

import io
import json
import sys

import numpy as np
import pytest

import bertrt
from bertrt.bundle import MANIFEST
from bertrt.cli import main
from tests.corpus import SENTENCES

TEXTS = [
    *SENTENCES,
    " ".join(["Groningen is a city in the north of the Netherlands."] * 40),  # ~480 tokens: cut at 256
]


@pytest.fixture(scope="module")
def minilm_se(minilm_checkpoint, model_cache):
    from bertrt.export import export_model

    out = model_cache.get("bundle-minilm-se", lambda out: export_model(minilm_checkpoint, out))
    return out, json.loads((out / MANIFEST).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def reference(minilm_checkpoint):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(minilm_checkpoint), device="cpu")


def test_the_task_is_inferred_and_equals_sentence_transformers(minilm_se, reference):
    folder, manifest = minilm_se
    assert manifest["task"] == "sentence-embedding"
    assert manifest["sentence_transformers"]["max_seq_length"] == 256
    pipe = bertrt.pipeline(None, folder, precision="fp32")
    want = reference.encode(TEXTS)
    got = pipe(TEXTS)
    assert got.shape == want.shape == (len(TEXTS), 384) and got.dtype == np.float32
    assert np.abs(got - want).max() <= 1e-4
    assert np.abs(pipe(TEXTS[0]) - want[0]).max() <= 1e-4
    cut = pipe(TEXTS, truncate_dim=64, normalize_embeddings=True)
    assert np.abs(cut - reference.encode(TEXTS, truncate_dim=64, normalize_embeddings=True)).max() <= 1e-4
    assert bertrt.tasks.get_task("sentence-embedding").max_input_length(pipe) == 256


def test_int8_cosine_to_fp32(minilm_se):
    folder, _ = minilm_se
    fp32 = bertrt.pipeline(None, folder, precision="fp32")(TEXTS)
    int8 = bertrt.pipeline(None, folder, precision="int8")(TEXTS)
    cos = (fp32 * int8).sum(axis=1)  # both unit length (the Normalize module)
    print(f"MiniLM int8 cosine to fp32: mean {cos.mean():.5f}, min {cos.min():.5f}")
    assert cos.mean() >= 0.99 and cos.min() >= 0.98


def test_bertrt_predict_flags(minilm_se, reference, monkeypatch, capsys):
    folder, _ = minilm_se
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    argv = ["predict", str(folder), "--precision", "fp32", "--truncate-dim", "32", "--normalize-embeddings"]
    assert main([*argv, TEXTS[0], TEXTS[3]]) == 0
    got = [json.loads(line)["result"] for line in capsys.readouterr().out.splitlines()]
    want = reference.encode([TEXTS[0], TEXTS[3]], truncate_dim=32, normalize_embeddings=True)
    assert np.abs(np.asarray(got) - want).max() <= 1e-4


def test_batch_result_type(minilm_se):
    import pyarrow as pa

    folder, _ = minilm_se
    pipe = bertrt.pipeline(None, folder, precision="fp32")
    spec = pipe.spec.result_spec(pipe, {"truncate_dim": 16})
    assert spec.type == pa.list_(pa.float32(), 16)


def test_a_tiny_cls_checkpoint_exports_as_sentence_embedding(tiny_checkpoint, model_cache, tmp_path):
    from sentence_transformers import SentenceTransformer

    from bertrt.export import export_model
    from tests.tasks.st_models import build_st_checkpoint

    checkpoint = tiny_checkpoint("bert", "feature-extraction")
    st = model_cache.get("st-bert-cls", lambda out: build_st_checkpoint(checkpoint, "cls", out))
    manifest = export_model(st, tmp_path / "b", quantize="none")
    assert manifest["task"] == "sentence-embedding"  # inferred from modules.json
    assert manifest["sentence_transformers"]["pooling"] == "cls"
    got = bertrt.pipeline(None, tmp_path / "b", precision="fp32")(TEXTS[:4])
    assert np.abs(got - SentenceTransformer(str(st), device="cpu").encode(TEXTS[:4])).max() <= 1e-4


def test_bench_reference_is_sentence_transformers_encode(minilm_se, minilm_checkpoint):
    from bertrt.export.bench_reference import reference_call

    folder, _ = minilm_se
    call = reference_call("sentence-embedding", minilm_checkpoint, threads=1)
    got = bertrt.pipeline(None, folder, precision="fp32")(TEXTS)
    want = call(TEXTS, 4)
    assert np.abs(np.asarray(want) - got).max() <= 1e-4
    spec = bertrt.tasks.get_task("sentence-embedding")
    assert spec.agreement(want, list(got))["cosine_min"] >= 0.9999


def test_bertrt_export_task_flag(tiny_checkpoint, tmp_path):
    checkpoint = tiny_checkpoint("bert", "text-classification")  # a head model embeds too
    code = main(
        ["export", str(checkpoint), str(tmp_path / "b"), "--task", "sentence-embedding", "--quantize", "none"]
    )
    assert code == 0
    manifest = json.loads((tmp_path / "b" / MANIFEST).read_text(encoding="utf-8"))
    assert manifest["task"] == "sentence-embedding" and "sentence_transformers" not in manifest
    vector = bertrt.pipeline(None, tmp_path / "b", precision="fp32")(TEXTS[0])
    assert vector.shape == (32,) and vector.dtype == np.float32  # mean-pooled, as for a plain checkpoint
