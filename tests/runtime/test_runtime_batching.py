"""Batching: plans, padding, and results independent of batch size and order (fp32, <= 1e-5)."""

from __future__ import annotations

import numpy as np
import pytest

from bertrt.batching import pad_batch, plan_batches, run_batched
from bertrt.errors import InputError
from bertrt.tokenize import TokenSequence
from tests.corpus import PARITY_TEXTS


def _enc(n: int, start: int = 5) -> TokenSequence:
    ids = np.arange(start, start + n, dtype=np.int64)
    zeros = np.zeros(n, dtype=np.int64)
    return TokenSequence(ids, zeros, np.zeros((n, 2), dtype=np.int64), zeros, zeros)


def test_plan_sorts_by_length_and_cuts_by_count():
    lengths = [5, 1, 9, 3, 7, 2]
    plan = plan_batches(lengths, batch_size=4)
    assert [b.tolist() for b in plan] == [[1, 5, 3, 0], [4, 2]]
    assert sorted(np.concatenate(plan).tolist()) == list(range(len(lengths)))


def test_plan_respects_token_budget():
    lengths = [10, 10, 10, 10, 40]
    plan = plan_batches(lengths, batch_size=32, max_tokens_per_batch=30)
    for batch in plan:
        rows, longest = len(batch), max(lengths[i] for i in batch)
        assert rows == 1 or rows * longest <= 30
    assert [b.tolist() for b in plan] == [[0, 1, 2], [3], [4]]  # 40 > budget: alone, never dropped


@pytest.mark.parametrize("batch_size, max_tokens", [(0, None), (-1, None), (2.5, None), (True, None), (4, 0)])
def test_plan_rejects_bad_sizes(batch_size, max_tokens):
    with pytest.raises(InputError):
        plan_batches([3, 4], batch_size, max_tokens)


def test_pad_batch_pads_right():
    batch = pad_batch([_enc(2), _enc(4)], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 0, 0], [5, 6, 7, 8]]
    assert batch["attention_mask"].tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert batch["input_ids"].dtype == np.int64


def test_run_batched_restores_order():
    items = [_enc(n, start=n * 10) for n in (4, 1, 3, 2)]
    seen_shapes = []

    def forward(batch):
        seen_shapes.append(batch["input_ids"].shape)
        return batch["input_ids"] * 2

    out = run_batched(items, forward, lambda o, r, e: o[r, : len(e)].tolist(), pad_id=0, batch_size=2)
    assert out == [(e.ids * 2).tolist() for e in items]
    assert seen_shapes == [(2, 2), (2, 4)]  # lengths 1,2 then 3,4: sorted, little padding


TEXTS = PARITY_TEXTS + ["short", "Paris"]


@pytest.mark.parametrize("task", ["feature-extraction", "text-classification", "token-classification"])
def test_fp32_results_do_not_depend_on_batch_size_or_order(task, runtime_bundle):
    import bertrt

    pipe = bertrt.pipeline(task, runtime_bundle("bert", task), precision="fp32")
    options = {"aggregation_strategy": "simple", "stride": 8} if task == "token-classification" else {}
    if task == "text-classification":
        options = {"top_k": None}
    one = [pipe(t, **options) for t in TEXTS]
    perm = np.random.default_rng(0).permutation(len(TEXTS))
    for batch_size, max_tokens in ((1, None), (3, None), (32, None), (32, 64)):
        shuffled = pipe(
            [TEXTS[i] for i in perm], batch_size=batch_size, max_tokens_per_batch=max_tokens, **options
        )
        restored = [None] * len(TEXTS)
        for pos, i in enumerate(perm):
            restored[i] = shuffled[pos]
        for a, b in zip(one, restored):
            _close(a, b)


def _close(a, b):
    if isinstance(a, np.ndarray):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            _close(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _close(x, y)
    elif isinstance(a, float):
        assert abs(a - b) <= 1e-5
    else:
        assert a == b
