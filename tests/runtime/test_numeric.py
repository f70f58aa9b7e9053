"""bertrt.numeric: the one softmax and sigmoid, and the task modules that use them."""

from __future__ import annotations

import numpy as np
import pytest

from bertrt import numeric
from bertrt.tasks import fill_mask
from bertrt.tasks import text_classification as classification
from bertrt.tasks import token_classification as ner


def test_every_task_uses_the_one_softmax():
    assert ner.softmax is numeric.softmax and classification.softmax is numeric.softmax
    assert fill_mask.softmax is numeric.softmax and classification.sigmoid is numeric.sigmoid


@pytest.mark.parametrize(
    "dtype,out",
    [(np.float32, np.float32), (np.float64, np.float64), (np.float16, np.float32), (np.int64, np.float32)],
)
def test_dtypes(dtype, out):
    x = np.array([[1, 2, 3], [0, 0, 0]], dtype=dtype)
    assert numeric.softmax(x).dtype == out and numeric.sigmoid(x).dtype == out


def test_softmax_is_the_shift_exp_normalize_of_both_former_copies():
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((4, 7, 9)) * 8).astype(np.float32)
    shifted = np.exp(logits - np.max(logits, axis=-1, keepdims=True))
    assert np.array_equal(numeric.softmax(logits), shifted / shifted.sum(axis=-1, keepdims=True))
    first = np.exp(logits - logits.max(axis=0, keepdims=True))
    assert np.array_equal(numeric.softmax(logits, axis=0), first / first.sum(axis=0, keepdims=True))
    assert np.allclose(numeric.softmax([1000.0, 999.0]), [1 / (1 + np.exp(-1)), 1 / (1 + np.exp(1))])


def test_sigmoid():
    x = np.array([-30.0, 0.0, 2.0], dtype=np.float32)
    assert np.array_equal(numeric.sigmoid(x), 1.0 / (1.0 + np.exp(-x)))
    assert numeric.sigmoid(x)[1] == np.float32(0.5)
