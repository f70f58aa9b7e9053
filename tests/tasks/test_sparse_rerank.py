"""sparse-embedding and rerank against sentence-transformers' own classes on tiny models of every
architecture row: ``SparseEncoder.encode`` (MLMTransformer + SpladePooling) and ``CrossEncoder.predict``
/ ``rank``, at fp32 within 1e-4; options, shapes, task inference from the checkpoint's files, the
command line and ``bertrt batch``'s result type."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

import bertrt
from bertrt.errors import InputError
from tests.builders import ARCHS
from tests.corpus import PARITY_TEXTS
from tests.tasks.sr_models import build_cross_encoder, build_splade

pytest.importorskip("torch")
st = pytest.importorskip("sentence_transformers")

TOL = 1e-4
QUERY = "Where does Maria work?"


@pytest.fixture(scope="session")
def splade(model_cache):
    """``splade(arch, strategy="max") -> (ST folder, bundle folder)``, cached."""
    from bertrt.export import export_model

    def get(arch: str, strategy: str = "max"):
        folder = model_cache.get(
            f"st-splade-{arch}-{strategy}", lambda out: build_splade(arch, out, strategy)
        )
        bundle = model_cache.get(f"bundle-splade-{arch}-{strategy}", lambda out: export_model(folder, out))
        return folder, bundle

    return get


@pytest.fixture(scope="session")
def cross_encoder(model_cache):
    """``cross_encoder(arch) -> (ST folder, bundle folder)``, cached."""
    from bertrt.export import export_model

    def get(arch: str):
        folder = model_cache.get(f"st-ce-{arch}", lambda out: build_cross_encoder(arch, out))
        bundle = model_cache.get(f"bundle-ce-{arch}", lambda out: export_model(folder, out))
        return folder, bundle

    return get


def _dense(results, width):
    out = np.zeros((len(results), width), dtype=np.float32)
    for i, r in enumerate(results):
        out[i, r["indices"]] = r["values"]
    return out


def _sparse_reference(folder, texts):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = st.SparseEncoder(str(folder), device="cpu")
        return model.encode(texts, convert_to_tensor=True).to_dense().numpy()


def _manifest(bundle):
    return json.loads((bundle / "bundle.json").read_text(encoding="utf-8"))


# -- sparse-embedding ------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ARCHS)
def test_sparse_embedding_equals_sparse_encoder(splade, arch):
    folder, bundle = splade(arch)
    assert _manifest(bundle)["task"] == "sparse-embedding"  # inferred from modules.json (SpladePooling)
    texts = PARITY_TEXTS
    ref = _sparse_reference(folder, texts)
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    got = pipe(texts, batch_size=4)
    for r in got:
        assert r["values"].dtype == np.float32 and np.all(np.diff(r["indices"]) > 0)
    assert np.abs(_dense(got, ref.shape[1]) - ref).max() <= TOL
    one = pipe(texts[0])
    assert np.array_equal(one["indices"], got[0]["indices"])


def test_sparse_embedding_sum_pooling(splade):
    folder, bundle = splade("bert", "sum")
    ref = _sparse_reference(folder, PARITY_TEXTS[:4])
    got = bertrt.pipeline(bundle=bundle, precision="fp32")(PARITY_TEXTS[:4])
    assert np.abs(_dense(got, ref.shape[1]) - ref).max() <= TOL * max(1.0, float(ref.max()))


def test_sparse_embedding_options(splade):
    _, bundle = splade("bert")
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    full = pipe(PARITY_TEXTS[1])
    top = pipe(PARITY_TEXTS[1], top_k=5, return_tokens=True)
    assert len(top["indices"]) == 5 and np.all(np.diff(top["indices"]) > 0)
    largest = np.sort(full["values"])[-5:]
    assert np.allclose(np.sort(top["values"]), largest)
    assert top["tokens"] == [pipe.tokenizer.id_to_token(int(i)) for i in top["indices"]]
    with pytest.raises(InputError, match="top_k"):
        pipe("x", top_k=0)
    with pytest.raises(InputError, match="unknown option"):
        pipe("x", documents=["a"])


def test_sparse_embedding_int8_keeps_the_top_terms(splade):
    _, bundle = splade("bert")
    int8 = _manifest(bundle)["validation"]["int8"]
    assert int8["top_terms_overlap"] >= 0.6
    fp32 = bertrt.pipeline(bundle=bundle, precision="fp32")
    q8 = bertrt.pipeline(bundle=bundle, precision="int8")
    figures = fp32.spec.agreement(fp32(PARITY_TEXTS), q8(PARITY_TEXTS))
    assert figures["top_terms_overlap"] >= 0.6


def test_sparse_embedding_batch_result_type(splade):
    pa = pytest.importorskip("pyarrow")
    from bertrt.batch.results import to_arrow

    _, bundle = splade("bert")
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    spec = pipe.spec.result_spec(pipe, {"return_tokens": True})
    array = to_arrow(spec, pipe(PARITY_TEXTS[:3], return_tokens=True))
    assert array.type == pa.struct(
        [
            ("indices", pa.list_(pa.int32())),
            ("values", pa.list_(pa.float32())),
            ("tokens", pa.list_(pa.string())),
        ]
    )


# -- rerank ----------------------------------------------------------------------------------------------
def _cross_encoder(folder):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return st.CrossEncoder(str(folder), device="cpu")


@pytest.mark.parametrize("arch", ARCHS)
def test_rerank_equals_cross_encoder(cross_encoder, arch):
    folder, bundle = cross_encoder(arch)
    assert _manifest(bundle)["task"] == "rerank"  # inferred from config_sentence_transformers.json
    docs = PARITY_TEXTS
    model = _cross_encoder(folder)
    scores = model.predict([(QUERY, d) for d in docs])
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    got = pipe(QUERY, documents=docs, batch_size=4)
    assert sorted(r["index"] for r in got) == list(range(len(docs)))
    assert [r["score"] for r in got] == sorted((r["score"] for r in got), reverse=True)
    for r in got:
        assert abs(r["score"] - float(scores[r["index"]])) <= TOL
    ranked = model.rank(QUERY, docs, return_documents=True)
    ours = pipe(QUERY, documents=docs, return_documents=True, top_k=3)
    for theirs, mine in zip(ranked[:3], ours):
        assert abs(theirs["score"] - mine["score"]) <= TOL and mine["text"] == docs[mine["index"]]
        if abs(theirs["score"] - mine["score"]) < 1e-6:
            pass
    assert len(ours) == 3


def test_rerank_options_and_shapes(cross_encoder):
    folder, bundle = cross_encoder("bert")
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    docs = PARITY_TEXTS[:4]
    raw = pipe(QUERY, documents=docs, raw_scores=True)
    logits = _cross_encoder(folder).predict(
        [(QUERY, d) for d in docs], activation_fn=__import__("torch").nn.Identity()
    )
    for r in raw:
        assert abs(r["score"] - float(logits[r["index"]])) <= TOL
    several = pipe([QUERY, "who is Maria?"], documents=docs)
    assert len(several) == 2 and all(len(r) == 4 for r in several)
    assert several[0] == pipe(QUERY, documents=docs)
    with pytest.raises(InputError, match="documents"):
        pipe(QUERY)
    with pytest.raises(InputError, match="documents"):
        pipe(QUERY, documents="one")
    with pytest.raises(InputError, match="top_k"):
        pipe(QUERY, documents=docs, top_k=0)


def test_rerank_activation_from_the_checkpoint(tmp_path, cross_encoder):
    import shutil

    folder, _ = cross_encoder("bert")
    own = tmp_path / "ce"
    shutil.copytree(folder, own)
    settings = json.loads((own / "config_sentence_transformers.json").read_text())
    settings["activation_fn"] = "torch.nn.modules.linear.Identity"
    (own / "config_sentence_transformers.json").write_text(json.dumps(settings))
    from bertrt.export import export_model

    export_model(own, tmp_path / "b", quantize="none")
    pipe = bertrt.pipeline(bundle=tmp_path / "b", precision="fp32")
    scores = _cross_encoder(own).predict([(QUERY, d) for d in PARITY_TEXTS[:3]])
    for r in pipe(QUERY, documents=PARITY_TEXTS[:3]):
        assert abs(r["score"] - float(scores[r["index"]])) <= TOL


def test_rerank_batch_result_type(cross_encoder):
    pa = pytest.importorskip("pyarrow")
    from bertrt.batch.results import to_arrow

    _, bundle = cross_encoder("bert")
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    spec = pipe.spec.result_spec(pipe, {"documents": ["a", "b"], "return_documents": True})
    array = to_arrow(spec, pipe(["q1", "q2"], documents=["a", "b"], return_documents=True))
    assert array.type == pa.list_(
        pa.struct([("index", pa.int32()), ("score", pa.float32()), ("text", pa.string())])
    )
    assert len(array) == 2


def test_predict_flags(cross_encoder, splade, capsys):
    from bertrt.cli import main

    _, bundle = cross_encoder("bert")
    assert (
        main(
            [
                "predict",
                str(bundle),
                "--precision",
                "fp32",
                "--documents",
                "a cat",
                "--documents",
                "a dog",
                "--top-k",
                "1",
                QUERY,
            ]
        )
        == 0
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(line["result"]) == 1 and line["result"][0]["index"] in (0, 1)
    _, bundle = splade("bert")
    assert (
        main(["predict", str(bundle), "--precision", "fp32", "--top-k", "3", "--return-tokens", "hello"]) == 0
    )
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(line["result"]["indices"]) == 3 and len(line["result"]["tokens"]) == 3


# -- serving ---------------------------------------------------------------------------------------------
def test_served_routes(splade, cross_encoder):
    requests = pytest.importorskip("requests")
    from bertrt.serve import ServeSettings
    from tests.serve.test_serve_faults import ThreadServer

    sparse = bertrt.pipeline(bundle=splade("bert")[1], precision="fp32")
    ce = bertrt.pipeline(bundle=cross_encoder("bert")[1], precision="fp32")
    srv = ThreadServer({"sp": sparse, "ce": ce}, ServeSettings(max_wait_ms=5))
    try:
        texts, docs = PARITY_TEXTS[:3], PARITY_TEXTS[3:7]
        got = requests.post(f"{srv.url}/embed_sparse", json={"inputs": texts}, timeout=60).json()
        want = sparse(texts)
        for terms, r in zip(got, want):
            assert [t["index"] for t in terms] == r["indices"].tolist()
            assert np.allclose([t["value"] for t in terms], r["values"], atol=TOL)
        body = {"query": QUERY, "texts": docs, "return_text": True}
        ranked = requests.post(f"{srv.url}/rerank", json=body, timeout=60).json()
        expect = ce(QUERY, documents=docs, return_documents=True)
        assert [r["index"] for r in ranked] == [r["index"] for r in expect]
        assert all(
            abs(a["score"] - b["score"]) <= TOL and a["text"] == b["text"] for a, b in zip(ranked, expect)
        )
        raw = requests.post(
            f"{srv.url}/rerank", json={"query": QUERY, "texts": docs, "raw_scores": True}
        ).json()
        assert all("text" not in r for r in raw) and raw[0]["score"] != ranked[0]["score"]
        root = requests.post(
            f"{srv.url}/", params={"model": "ce"}, json={"query": QUERY, "texts": docs}
        ).json()
        assert [r["index"] for r in root] == [r["index"] for r in expect]
        native = requests.post(
            f"{srv.url}/models/ce/predict",
            json={"inputs": QUERY, "parameters": {"documents": docs}},
            timeout=60,
        )
        assert native.status_code == 200, native.text
        assert [r["index"] for r in native.json()] == [r["index"] for r in expect]
        per_query = [{"query": QUERY, "documents": docs}, {"query": texts[0], "documents": docs[:2]}]
        native = requests.post(f"{srv.url}/models/ce/predict", json={"inputs": per_query}, timeout=60)
        assert native.status_code == 200, native.text
        want = ce(per_query)
        assert [[r["index"] for r in q] for q in native.json()] == [[r["index"] for r in q] for q in want]
        assert all(
            abs(a["score"] - b["score"]) <= TOL for q, w in zip(native.json(), want) for a, b in zip(q, w)
        )
        one = requests.post(f"{srv.url}/models/ce/predict", json={"inputs": per_query[0]}, timeout=60).json()
        assert [r["index"] for r in one] == [r["index"] for r in expect]
        native = requests.post(
            f"{srv.url}/models/sp/predict", json={"inputs": texts[0], "parameters": {"top_k": 4}}, timeout=60
        )
        assert native.status_code == 200, native.text
        assert len(native.json()["indices"]) == 4
    finally:
        srv.stop()


# -- eval, bench ------------------------------------------------------------------------------------------
def test_rerank_metrics():
    from bertrt.evaluate.rerank import mrr_at, ndcg_at

    assert mrr_at([3, 1, 2], frozenset({1})) == 0.5
    assert mrr_at([3, 1, 2], frozenset({7})) == 0.0
    assert ndcg_at([1, 0], frozenset({1})) == 1.0
    assert abs(ndcg_at([0, 1], frozenset({1})) - 1 / np.log2(3)) < 1e-12


def test_eval_scores_a_rerank_bundle(cross_encoder, tmp_path):
    from bertrt.evaluate.report import render_markdown
    from bertrt.evaluate.runner import evaluate_bundle, headline

    _, bundle = cross_encoder("bert")
    lines = [
        {"query": QUERY, "documents": PARITY_TEXTS[:5], "relevant": [1]},
        {"query": "who loves Groningen?", "documents": PARITY_TEXTS[:4], "relevant": [PARITY_TEXTS[0]]},
    ]
    data = tmp_path / "rr.jsonl"
    data.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    ev = evaluate_bundle(bundle, data)
    pipe = bertrt.pipeline(bundle=bundle, precision="fp32")
    want = []
    for item in lines:
        ranked = [r["index"] for r in pipe(item["query"], documents=item["documents"])]
        want.append(1 / (ranked.index(1 if item is lines[0] else 0) + 1))
    assert ev["systems"]["bertrt-fp32"]["mrr@10"] == round(100 * sum(want) / 2, 2)
    assert 0 <= headline("rerank", ev["systems"]["bertrt-int8"]) <= 100
    assert "MRR@10" in render_markdown([ev])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "q", "documents": ["a"], "relevant": [3]}\n', encoding="utf-8")
    with pytest.raises(InputError, match="bad.jsonl:1"):
        evaluate_bundle(bundle, bad)


@pytest.mark.parametrize("task", ["sparse-embedding", "rerank"])
def test_bench_reference_answers_as_bertrt(splade, cross_encoder, task):
    from bertrt.export.bench_reference import reference_call
    from bertrt.tasks import get_task

    folder, bundle = splade("bert") if task == "sparse-embedding" else cross_encoder("bert")
    spec = get_task(task)
    texts = PARITY_TEXTS[:4]
    theirs = reference_call(task, folder)(texts, 8)
    ours = bertrt.pipeline(bundle=bundle, precision="fp32")(texts, **spec.reference_options)
    figures = spec.agreement(theirs, ours)
    assert min(figures.values()) == 1.0


def test_export_refuses_a_multi_label_reranker_and_lists_the_new_tasks(tiny_checkpoint, tmp_path):
    from bertrt.errors import TaskError
    from bertrt.export import export_model
    from bertrt.tasks import compatible_tasks, infer_task

    assert compatible_tasks("BertForMaskedLM")[:2] == ("fill-mask", "sparse-embedding")
    assert "rerank" in compatible_tasks("BertForSequenceClassification")
    assert infer_task({"architectures": ["BertForMaskedLM"]}) == "fill-mask"  # never inferred from a head
    with pytest.raises(TaskError, match="one-label"):
        export_model(tiny_checkpoint("bert", "text-classification"), tmp_path / "out", task="rerank")
    assert not (tmp_path / "out").exists()
