"""huggingface_hub's real ``InferenceClient`` against ``POST /models/{name}/predict`` of a served
zero-shot-classification and question-answering bundle (loopback only): ``zero_shot_classification`` and
``question_answering`` parse the answers, which equal direct pipeline calls."""

from __future__ import annotations

import numpy as np
import pytest

from tests.serve.test_serve_compat import TOL, hub  # noqa: F401  (the fixture)
from tests.serve.test_serve_faults import ThreadServer
from tests.tasks.zq_models import zq_bundle

ZS, QA = "zero-shot-classification", "question-answering"
CONTEXT = "Maria works at Acme Corp. in Groningen. She flew to New York on Monday."


@pytest.fixture(scope="module")
def pipes(model_cache):
    import bertrt

    return {
        "zs": bertrt.pipeline(ZS, zq_bundle(model_cache, "bert", ZS), precision="fp32", threads=1),
        "qa": bertrt.pipeline(QA, zq_bundle(model_cache, "bert", QA), precision="fp32", threads=1),
    }


@pytest.fixture(scope="module")
def server(pipes):
    from bertrt.serve import ServeSettings

    srv = ThreadServer(dict(pipes), ServeSettings(max_wait_ms=5, max_texts=8, max_body_bytes=100_000))
    yield srv
    srv.stop()


def test_inference_client_zero_shot_classification(server, pipes, hub):  # noqa: F811
    client = hub(model=f"{server.url}/models/zs/predict")
    for multi in (False, True):
        got = client.zero_shot_classification(
            "Maria flew to Paris.", ["travel", "food", "sport"], multi_label=multi
        )
        want = pipes["zs"](
            "Maria flew to Paris.", candidate_labels=["travel", "food", "sport"], multi_label=multi
        )
        assert [e.label for e in got] == want["labels"]
        assert np.allclose([e.score for e in got], want["scores"], atol=TOL)
    got = client.zero_shot_classification(
        "Maria flew to Paris.", ["travel", "food"], hypothesis_template="The topic is {}."
    )
    want = pipes["zs"](
        "Maria flew to Paris.", candidate_labels=["travel", "food"], hypothesis_template="The topic is {}."
    )
    assert [e.label for e in got] == want["labels"]


def test_inference_client_question_answering(server, pipes, hub):  # noqa: F811
    client = hub(model=f"{server.url}/models/qa/predict")
    got = client.question_answering("Where does Maria work?", CONTEXT)
    want = pipes["qa"](question="Where does Maria work?", context=CONTEXT)
    assert (got.answer, got.start, got.end) == (want["answer"], want["start"], want["end"])
    assert abs(got.score - want["score"]) <= TOL
    top = client.question_answering("Where does Maria work?", CONTEXT, top_k=3, max_answer_len=5)
    want = pipes["qa"](question="Where does Maria work?", context=CONTEXT, top_k=3, max_answer_len=5)
    assert [(e.answer, e.start, e.end) for e in top] == [(w["answer"], w["start"], w["end"]) for w in want]
