"""``bertrt eval --pytorch`` for rerank: sentence-transformers' ``CrossEncoder`` on the checkpoint is the
PyTorch row, its MRR@10 / nDCG@10 those of ``CrossEncoder.rank``, next to bertrt's; a checkpoint that is
no one-score cross-encoder is refused."""

from __future__ import annotations

import json

import pytest

from bertrt.cli import main
from bertrt.errors import TaskError
from bertrt.evaluate.rerank import mrr_at, ndcg_at
from bertrt.evaluate.runner import evaluate_bundle
from tests.corpus import PARITY_TEXTS
from tests.tasks.test_sparse_rerank import cross_encoder  # noqa: F401 (fixture)

st = pytest.importorskip("sentence_transformers")

LINES = [
    {"query": "Where does Maria work?", "documents": PARITY_TEXTS[:5], "relevant": [1]},
    {"query": "who loves Groningen?", "documents": PARITY_TEXTS[2:9], "relevant": [PARITY_TEXTS[4], 0]},
    {"query": "pizza", "documents": PARITY_TEXTS[3:5], "relevant": [0]},
]


def _data(tmp_path):
    data = tmp_path / "rr.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in LINES), encoding="utf-8")
    return data


def _cross_encoder_figures(folder) -> dict:
    model = st.CrossEncoder(str(folder), device="cpu")
    mrr = ndcg = 0.0
    for item in LINES:
        docs = item["documents"]
        relevant = frozenset(r if isinstance(r, int) else docs.index(r) for r in item["relevant"])
        ranked = [r["corpus_id"] for r in model.rank(item["query"], docs)]
        mrr += mrr_at(ranked, relevant)
        ndcg += ndcg_at(ranked, relevant)
    return {"mrr@10": round(100 * mrr / len(LINES), 2), "ndcg@10": round(100 * ndcg / len(LINES), 2)}


def test_pytorch_row_is_cross_encoder_rank(cross_encoder, tmp_path):  # noqa: F811
    folder, bundle = cross_encoder("bert")
    ev = evaluate_bundle(bundle, _data(tmp_path), checkpoint=folder, precisions=("fp32",))
    assert list(ev["systems"]) == ["pytorch", "bertrt-fp32"] and ev["checkpoint"] == str(folder)
    want = _cross_encoder_figures(folder)
    got = ev["systems"]["pytorch"]
    assert {k: got[k] for k in want} == want
    assert {k: ev["systems"]["bertrt-fp32"][k] for k in want} == want  # fp32 ranks as PyTorch does
    assert ev["agreement"] == {"bertrt-fp32 vs pytorch": 100.0}
    assert "CrossEncoder" in ev["system_names"]["pytorch"]


def test_cli_pytorch_row_and_a_wrong_checkpoint(cross_encoder, tiny_checkpoint, tmp_path, capsys):  # noqa: F811
    folder, bundle = cross_encoder("bert")
    data = _data(tmp_path)
    argv = ["eval", str(bundle), str(data), "--precision", "fp32", "--out", str(tmp_path / "res")]
    assert main([*argv, "--pytorch", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "sentence-transformers CrossEncoder (PyTorch fp32)" in out and "MRR@10" in out
    saved = json.loads((tmp_path / "res" / "eval.json").read_text())["evaluations"][0]
    assert set(saved["systems"]) == {"pytorch", "bertrt-fp32"}
    with pytest.raises(TaskError, match="one score per pair"):
        evaluate_bundle(bundle, data, checkpoint=tiny_checkpoint("bert", "text-classification"))
