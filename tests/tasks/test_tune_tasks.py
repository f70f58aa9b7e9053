"""``bertrt tune`` on a tiny bundle of each retrieval / NLU task: every one is measured and gated (none is
refused), the fp32 candidate agrees with the reference; rerank's figures compare rankings per query."""

from __future__ import annotations

import shutil

import pytest

from bertrt import tune
from bertrt.tasks import get_task
from tests.corpus import PARITY_TEXTS
from tests.tasks.test_sentence_embedding import st_model  # noqa: F401 (fixture)
from tests.tasks.test_sparse_rerank import cross_encoder, splade  # noqa: F401 (fixtures)
from tests.tasks.zq_models import zq_bundle

QUICK = {"texts": list(PARITY_TEXTS)[:6], "batch_sizes": (4,), "repeats": 1, "backend_names": ["onnxruntime"]}
TASKS = ["sentence-embedding", "sparse-embedding", "rerank", "zero-shot-classification", "question-answering"]


@pytest.fixture
def task_bundle(request, model_cache, tmp_path):
    """``task_bundle(task)``: a private copy (tune writes into it) of a tiny bert bundle of ``task``."""

    def get(task: str):
        if task == "sentence-embedding":
            source = request.getfixturevalue("st_model")("bert", "mean-norm")[1]
        elif task == "sparse-embedding":
            source = request.getfixturevalue("splade")("bert")[1]
        elif task == "rerank":
            source = request.getfixturevalue("cross_encoder")("bert")[1]
        else:
            source = zq_bundle(model_cache, "bert", task)
        return shutil.copytree(source, tmp_path / "bundle")

    return get


@pytest.mark.parametrize("task", TASKS)
def test_tune_measures_and_gates_the_task(task_bundle, task):
    folder = task_bundle(task)
    entry = tune.tune(folder, precisions=["fp32", "int8"], **QUICK)
    assert entry["task"] == task and entry["gates"] == dict(get_task(task).gates)
    ran = [c for c in entry["candidates"] if c["available"]]
    assert ran, entry["candidates"]
    fp32 = next(c for c in ran if c["precision"] == "fp32")
    assert fp32["passed"], fp32["reasons"]
    for name in entry["gates"]:
        assert name in fp32["figures"]
    assert entry["winner"] is not None
    assert (folder / "tuning.json").is_file()


def test_rerank_agreement_compares_rankings_per_query():
    spec = get_task("rerank")

    def ranked(*scores):
        order = sorted(range(len(scores)), key=lambda i: -scores[i])
        return [{"index": i, "score": scores[i]} for i in order]

    same = spec.agreement([ranked(0.9, 0.5, 0.1)], [ranked(0.9, 0.5, 0.1)])
    assert same == {"top1_agreement": 1.0, "order_agreement": 1.0, "score_agreement": 1.0}
    # the two last swap (one pair of three out of order), the best stays; one score moves by 0.2
    swapped = spec.agreement([ranked(0.9, 0.5, 0.4)], [ranked(0.9, 0.4, 0.6)])
    assert swapped["top1_agreement"] == 1.0
    assert swapped["order_agreement"] == pytest.approx(2 / 3, abs=1e-6)
    assert swapped["score_agreement"] == pytest.approx(1 / 3, abs=1e-6)
    flipped = spec.agreement([ranked(0.9, 0.1), ranked(0.2, 0.8)], [ranked(0.1, 0.9), ranked(0.2, 0.8)])
    assert flipped["top1_agreement"] == 0.5 and flipped["order_agreement"] == 0.5
    # a candidate that breaks the ranking fails tune's gates
    reasons = tune._gate({f"accuracy.{k}": v for k, v in flipped.items()}, dict(spec.gates))
    assert any(r.startswith("accuracy.top1_agreement") for r in reasons)


def test_rerank_labelled_data_is_refused_with_where_it_is_scored(task_bundle, tmp_path):
    from bertrt.errors import InputError

    folder = task_bundle("rerank")
    data = tmp_path / "rr.jsonl"
    data.write_text('{"query": "q", "documents": ["a", "b"], "relevant": [0]}\n', encoding="utf-8")
    with pytest.raises(InputError, match="scored by bertrt eval"):
        tune.tune(folder, labelled=data, precisions=["fp32"], write=False, **QUICK)
