"""Micro-benchmarks of each runtime stage on the NER workload (pytest-benchmark; run by ``make bench``).

tokenize -> plan + pad -> session run -> post-processing (NER aggregation), plus the two other tasks'
post-processing and the whole pipeline for scale. Each benchmark also checks what its stage produced.
"""

from __future__ import annotations

import numpy as np
import pytest

from bertrt.batching import pad_batch, plan_batches, run_batched
from bertrt.tasks import feature_extraction as embeddings
from bertrt.tasks import text_classification as classification
from bertrt.tasks import token_classification as ner


@pytest.fixture(scope="module")
def windows(ner_pipe, ner_texts):
    return [w for text_windows in ner_pipe.tokenizer.encode_windows(ner_texts) for w in text_windows]


@pytest.fixture(scope="module")
def padded_batches(ner_pipe, windows):
    pad = ner_pipe.tokenizer.pad_token_id
    return [pad_batch([windows[i] for i in idx], pad) for idx in plan_batches([len(w) for w in windows], 32)]


def test_tokenize(benchmark, ner_pipe, ner_texts):
    out = benchmark(ner_pipe.tokenizer.encode_windows, ner_texts)
    assert len(out) == len(ner_texts) and all(len(w) >= 1 for w in out)


def test_plan_and_pad(benchmark, ner_pipe, windows):
    pad = ner_pipe.tokenizer.pad_token_id
    lengths = [len(w) for w in windows]

    def plan_and_pad():
        return [pad_batch([windows[i] for i in idx], pad) for idx in plan_batches(lengths, 32)]

    batches = benchmark(plan_and_pad)
    assert sum(b["input_ids"].shape[0] for b in batches) == len(windows)
    assert all(b["attention_mask"][:, 0].all() for b in batches)  # every row holds a real first token


def test_session_run_batch32(benchmark, ner_pipe, padded_batches):
    batch = max(padded_batches, key=lambda b: b["input_ids"].shape[0])
    logits = benchmark(ner_pipe.session.run, batch)
    assert logits.shape[:2] == batch["input_ids"].shape and np.isfinite(logits).all()


def test_ner_postprocess(benchmark, ner_pipe, ner_texts):
    tok = ner_pipe.tokenizer
    per_text = tok.encode_windows(ner_texts)
    flat = [w for ws in per_text for w in ws]
    logits = run_batched(
        flat,
        ner_pipe.session.run,
        lambda out, row, enc: out[row, : len(enc)].astype(np.float32),
        tok.pad_token_id,
        32,
    )
    hooks = ner.tokenizer_hooks(tok.raw, unk_token=tok.special_tokens.get("unk_token"))

    def postprocess():
        results, cursor = [], 0
        for text, ws in zip(ner_texts, per_text):
            records = []
            for enc in ws:
                records.append(
                    {
                        "input_ids": enc.ids,
                        "offsets": enc.offsets,
                        "special_tokens_mask": enc.special_tokens_mask,
                        "word_ids": enc.word_ids,
                        "logits": logits[cursor],
                    }
                )
                cursor += 1
            results.append(
                ner.entities_for_text(text, records, ner_pipe.id2label, aggregation_strategy="first", **hooks)
            )
        return results

    results = benchmark(postprocess)
    assert results == ner_pipe(ner_texts, aggregation_strategy="first")  # same as the pipeline's own


def test_classify_postprocess(benchmark):
    logits = np.random.default_rng(0).standard_normal((1024, 2)).astype(np.float32)
    out = benchmark(classification.classify, logits, {0: "negative", 1: "positive"}, "softmax", 1, True)
    assert len(out) == 1024 and out[0]["label"] == ("positive" if logits[0, 1] > logits[0, 0] else "negative")


def test_mean_pooling(benchmark):
    rng = np.random.default_rng(0)
    hidden = rng.standard_normal((32, 48, 384)).astype(np.float32)
    mask = (np.arange(48)[None, :] < rng.integers(5, 48, size=(32, 1))).astype(np.int64)
    pooled = benchmark(embeddings.pool, hidden, mask, "mean")
    expected = (hidden[0] * mask[0][:, None]).sum(0) / mask[0].sum()
    assert pooled.shape == (32, 384) and np.allclose(pooled[0], expected, atol=1e-5)


def test_pipeline_end_to_end(benchmark, ner_pipe, ner_texts):
    out = benchmark(ner_pipe, ner_texts, batch_size=32, aggregation_strategy="first")
    assert len(out) == len(ner_texts)
