"""Fixtures of the pytest-benchmark micro-benchmarks (``make bench``; not part of ``make test``).

The NER workload of ``benchmarks.harness`` (fine-tuned MiniLM when present, else the labelled fallback),
bertrt int8, on 256 WNUT-16 sentences.
"""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_TEXTS = 256


@pytest.fixture(scope="session")
def ner_workload():
    from benchmarks.workloads import load_workload

    return load_workload("ner", N_TEXTS)


@pytest.fixture(scope="session")
def ner_pipe(ner_workload):
    import bertrt

    return bertrt.pipeline(ner_workload.task, str(ner_workload.bundle), precision="int8")


@pytest.fixture(scope="session")
def ner_texts(ner_workload):
    return ner_workload.texts
